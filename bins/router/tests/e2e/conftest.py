"""Fixtures for the end-to-end suite: the router under test, the in-memory oracle, and an
OpenAPI check of every JSON response the router sends.

The Rust runner (`bins/router/tests/e2e_python.rs`) starts one router and passes its URL in
`VR_E2E_URL`, the binary in `VR_E2E_ROUTER_BIN` and its snapshots directory in
`VR_E2E_SNAPSHOTS_DIR`. Run by hand, without `VR_E2E_URL`, the suite starts a router of its own
from `VR_E2E_ROUTER_BIN` (default `target/release/router`).
"""

from __future__ import annotations

import functools
import os
import pathlib

import pytest
from qdrant_client import QdrantClient
from qdrant_client.local import datetime_utils

from router_process import GRPC_PORTS, RouterProcess
from schema_check import SchemaChecker

REPO = pathlib.Path(__file__).resolve().parents[4]


# The oracle parses a payload's datetime string again for every point a datetime filter meets
# (a third of the random-filter test's time went to `strptime`). Parsing is a pure function of
# the string and a `datetime` is immutable, so the answers are memoised; anything unhashable
# goes through the original.
_parse_datetime = datetime_utils.parse
_parse_datetime_cached = functools.lru_cache(maxsize=1 << 16)(_parse_datetime)


def _parse_datetime_memoised(value):
    try:
        return _parse_datetime_cached(value)
    except TypeError:
        return _parse_datetime(value)


datetime_utils.parse = _parse_datetime_memoised


def router_binary() -> str:
    return os.environ.get("VR_E2E_ROUTER_BIN", str(REPO / "target" / "release" / "router"))


_CHECKERS: list[SchemaChecker] = []


@pytest.fixture(scope="session")
def schema_checker() -> SchemaChecker:
    checker = SchemaChecker(pathlib.Path(os.environ.get(
        "VR_E2E_OPENAPI", str(pathlib.Path(__file__).parent / "openapi.json"))))
    _CHECKERS.append(checker)
    return checker


def pytest_terminal_summary(terminalreporter):
    """Which operations were checked against openapi.json, and which schemas failed."""
    for checker in _CHECKERS:
        terminalreporter.write_line(checker.report())


@pytest.fixture(scope="session")
def router(tmp_path_factory):
    """(url, snapshots_dir) of the router under test."""
    url = os.environ.get("VR_E2E_URL")
    if url:
        yield url.rstrip("/"), pathlib.Path(os.environ["VR_E2E_SNAPSHOTS_DIR"])
        return
    base = tmp_path_factory.mktemp("router")
    proc = RouterProcess(router_binary(), base / "storage", base / "snapshots", base / "router.log")
    proc.start()
    try:
        yield proc.url, base / "snapshots"
    finally:
        code = proc.stop()
        assert code == 0, f"router exited with {code}; log in {base / 'router.log'}"


@pytest.fixture(scope="session")
def router_url(router) -> str:
    return router[0]


@pytest.fixture(scope="session")
def snapshots_dir(router) -> pathlib.Path:
    return router[1]


def checked_client(url: str, checker: SchemaChecker) -> QdrantClient:
    """REST, or gRPC when `VR_E2E_GRPC_PORT` is set (the gRPC port of the router at
    `VR_E2E_URL`; a router a test starts itself has its own, in `GRPC_PORTS`). The calls the
    client still makes over REST are schema-checked either way."""
    grpc_port = os.environ.get("VR_E2E_GRPC_PORT")
    if grpc_port:
        client = QdrantClient(url=url, grpc_port=GRPC_PORTS.get(url, int(grpc_port)),
                              prefer_grpc=True, timeout=30, check_compatibility=False)
    else:
        client = QdrantClient(url=url, prefer_grpc=False, timeout=30, check_compatibility=False)
    client.http.client.add_middleware(checker.middleware)
    return client


@pytest.fixture(scope="session")
def remote(router_url, schema_checker) -> QdrantClient:
    """The client against the router; every JSON response it receives is schema-checked."""
    return checked_client(router_url, schema_checker)


@pytest.fixture()
def oracle() -> QdrantClient:
    return QdrantClient(":memory:")


@pytest.fixture(autouse=True)
def no_schema_violations(schema_checker):
    """Fails the test during which the router sent a response the spec does not allow."""
    before = len(schema_checker.failures)
    yield
    new = schema_checker.failures[before:]
    assert not new, "responses that do not match openapi.json:\n" + "\n".join(new[:10])

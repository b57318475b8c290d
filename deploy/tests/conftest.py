"""Shared parts of the deployment kit's checks: the repository's paths, the router binary,
and routers started as a manifest or compose file configures them (ports and paths moved
into the test's own directory, nothing else changed)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parent.parent
REPO = DEPLOY.parent


def required_tool(name: str, require_env: str, package: str) -> str:
    """The path of the command `name`; where it is missing, a skip that names the Debian
    `package`, or a failure where `require_env` is set (as .ci/run sets it)."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get(require_env):
            pytest.fail(f"{require_env} is set and {name} is not installed")
        pytest.skip(f"{name} is not installed (Debian: apt-get install {package})")
    return path


def router_bin() -> str:
    path = os.environ.get("VR_ROUTER_BIN")
    if not path:
        pytest.fail("VR_ROUTER_BIN must name the router binary (cargo test sets it)")
    return path


class RunningRouter:
    """A router process; `url` is its REST address on loopback, `grpc_port` its gRPC port."""

    def __init__(self, proc: subprocess.Popen, url: str, grpc_port: int, log: Path):
        self.proc, self.url, self.grpc_port, self.log = proc, url, grpc_port, log

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def free_port() -> int:
    """A loopback port free now (for a process whose peers must know its port first)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_router(args: list[str], env: dict[str, str], workdir: Path,
                 http_port: int = 0) -> RunningRouter:
    """Starts the router with `args` and exactly `env` (on top of PATH), REST on `http_port`
    (a free one by default) and gRPC on a free port; waits for its address lines."""
    workdir.mkdir(parents=True, exist_ok=True)
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    full_env.update(env)
    full_env["QDRANT__SERVICE__HTTP_PORT"] = str(http_port)
    full_env["QDRANT__SERVICE__GRPC_PORT"] = "0"
    log = workdir / "router.log"
    proc = subprocess.Popen([router_bin(), *args], env=full_env, cwd=workdir,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=open(log, "wb"), text=True)
    first = proc.stdout.readline().strip()
    second = proc.stdout.readline().strip()
    m1 = re.match(r"listening on (https?)://[^:]+:(\d+)", first)
    m2 = re.match(r"gRPC listening on \S+:(\d+)", second)
    if not (m1 and m2):
        proc.kill()
        proc.wait()
        raise AssertionError(f"router did not start ({first!r}, {second!r}):\n{log.read_text()[-3000:]}")
    return RunningRouter(proc, f"{m1.group(1)}://127.0.0.1:{m1.group(2)}", int(m2.group(1)), log)


def http(method: str, url: str, body=None, key: str | None = None,
         timeout: float = 30) -> tuple[int, object, dict]:
    """Status, decoded JSON (or text) and headers of one request."""
    headers = {"api-key": key} if key else {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw, status, hdrs = resp.read(), resp.status, dict(resp.headers)
    except urllib.error.HTTPError as e:
        raw, status, hdrs = e.read(), e.code, dict(e.headers)
    try:
        return status, json.loads(raw), hdrs
    except ValueError:
        return status, raw.decode(errors="replace"), hdrs


def wait_ready(url: str, path: str = "/readyz", deadline_s: float = 30) -> None:
    end = time.monotonic() + deadline_s
    while True:
        try:
            if http("GET", url + path, timeout=2)[0] == 200:
                return
        except OSError:
            pass
        if time.monotonic() > end:
            raise AssertionError(f"{url}{path} never answered 200")
        time.sleep(0.1)


def router_env_names() -> set[str]:
    """The environment variables the router reads, as its --help lists them."""
    out = subprocess.run([router_bin(), "--help"], capture_output=True, text=True, check=True).stdout
    return set(re.findall(r"\[env: ([A-Z0-9_]+)", out))


def router_flags() -> set[str]:
    out = subprocess.run([router_bin(), "--help"], capture_output=True, text=True, check=True).stdout
    return set(re.findall(r"^\s+(?:-\w, )?(--[a-z0-9-]+)", out, re.M))

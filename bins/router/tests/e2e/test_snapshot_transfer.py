"""Snapshots moving between places: uploaded as a multipart file (with and without a
checksum, too large, malformed), downloaded by the server from an http and an https URL on
an allowed host (and refused from any other, also through a redirect), and full snapshots
of every collection with their aliases (create, list, download, delete, and restore at
start-up with `--storage-snapshot`). Each restored collection must answer as the original
did, compared point by point and query by query."""

from __future__ import annotations

import hashlib
import http.server
import pathlib
import random
import shutil
import ssl
import subprocess
import threading

import httpx
import pytest
from qdrant_client import models
from qdrant_client.http.exceptions import UnexpectedResponse

import data
from conftest import checked_client, router_binary
from router_process import RouterProcess


def state_of(client, name: str, seed: int) -> list:
    """What must come back after a restore: every point, and some filtered queries."""
    rng = random.Random(seed)
    points, offset = [], None
    while True:
        page, offset = client.scroll(name, limit=100, offset=offset, with_payload=True,
                                     with_vectors=True)
        points += page
        if offset is None:
            break
    out = [[(p.id, p.payload, p.vector) for p in points]]
    ids = [p.id for p in points]
    for _ in range(8):
        flt = data.random_filter(rng, ids)
        out.append(client.count(name, count_filter=flt, exact=True).count)
        hits = client.query_points(name, query=data.vector(rng, 8), query_filter=flt, limit=10,
                                   with_payload=True).points
        # Points of equal score (the data holds exact duplicates) in no promised order.
        out.append(sorted([(round(h.score, 4), str(h.id), h.payload) for h in hits],
                          key=lambda h: (-h[0], h[1])))
    return out


def fill(client, name: str, seed: int, shards: int = 2) -> None:
    rng = random.Random(seed)
    client.create_collection(name, vectors_config=models.VectorParams(
        size=8, distance=models.Distance.COSINE), shard_number=shards)
    pts = data.points(rng, 250, 8)
    for start in range(0, len(pts), 100):
        client.upsert(name, pts[start:start + 100], wait=True)


@pytest.fixture()
def router(tmp_path, schema_checker, request):
    """A router of its own; `request.param`: extra flags."""
    args = getattr(request, "param", [])
    proc = RouterProcess(router_binary(), tmp_path / "storage", tmp_path / "snapshots",
                         tmp_path / "router.log", extra_args=args)
    proc.start()
    client = checked_client(proc.url, schema_checker)
    yield proc, client
    client.close()
    assert proc.stop() == 0, f"router did not exit 0 on SIGTERM; log {proc.log}"


def snapshot_bytes(proc, client, name: str) -> tuple[bytes, str]:
    desc = client.create_snapshot(name, wait=True)
    r = httpx.get(f"{proc.url}/collections/{name}/snapshots/{desc.name}", timeout=60)
    assert r.status_code == 200, r.text
    assert hashlib.sha256(r.content).hexdigest() == desc.checksum
    return r.content, desc.checksum


@pytest.mark.parametrize("router", [["--max-snapshot-upload-mb", "1"]], indirect=True)
def test_upload_recovers_a_collection_and_checks_the_checksum(router, tmp_path):
    proc, client = router
    fill(client, "up_src", 1)
    want = state_of(client, "up_src", 2)
    content, checksum = snapshot_bytes(proc, client, "up_src")
    assert len(content) < 1 << 20, "the test's snapshot must fit the 1 MB upload limit"
    url = f"{proc.url}/collections/up_dst/snapshots/upload"
    with httpx.Client(timeout=60) as http:
        # A wrong checksum: refused, nothing created.
        r = http.post(url, params={"checksum": "0" * 64}, files={"snapshot": ("s", content)})
        assert r.status_code == 400 and "checksum" in r.text.lower(), r.text
        assert not client.collection_exists("up_dst")
        # No `snapshot` field; a body that is not multipart.
        r = http.post(url, files={"other": ("s", content)})
        assert r.status_code == 400 and "snapshot" in r.json()["status"]["error"], r.text
        r = http.post(url, json={"snapshot": "x"})
        assert r.status_code == 400, r.text
        # Damaged bytes: refused whole.
        broken = bytearray(content)
        broken[len(broken) // 2] ^= 0xFF
        r = http.post(url, files={"snapshot": ("s", bytes(broken))})
        assert r.status_code >= 400 and not client.collection_exists("up_dst"), r.text
        # Over the limit: 413.
        r = http.post(url, files={"snapshot": ("s", b"\0" * ((1 << 20) + 10))})
        assert r.status_code == 413, r.text
    # The Python client's own upload call, with the right checksum.
    with open(tmp_path / "up.snapshot", "wb") as f:
        f.write(content)
    with open(tmp_path / "up.snapshot", "rb") as f:
        r = client.http.snapshots_api.recover_from_uploaded_snapshot(
            collection_name="up_dst", wait=True, checksum=checksum, snapshot=f)
    assert r.result is True
    assert state_of(client, "up_dst", 2) == want
    # Uploading over an existing collection replaces it.
    client.delete(collection_name="up_dst", points_selector=models.FilterSelector(
        filter=models.Filter()), wait=True)
    with httpx.Client(timeout=60) as http:
        r = http.post(url, params={"wait": "true"}, files={"snapshot": ("s", content)})
        assert r.status_code == 200, r.text
    assert state_of(client, "up_dst", 2) == want
    # Nothing received is left behind.
    incoming = proc.snapshots / ".incoming"
    assert not incoming.exists() or not any(incoming.iterdir())


class Files(http.server.SimpleHTTPRequestHandler):
    """Serves a directory; `/hop?to=URL` redirects."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path.startswith("/hop?to="):
            self.send_response(302)
            self.send_header("Location", self.path.split("=", 1)[1])
            self.end_headers()
            return
        super().do_GET()


def serve(directory: pathlib.Path, context: ssl.SSLContext | None = None):
    handler = lambda *a, **k: Files(*a, directory=str(directory), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def make_certificates(d: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path, pathlib.Path]:
    """A test CA and a certificate it signs for 127.0.0.1."""
    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)
    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=vector-router test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=127.0.0.1")
    (d / "leaf.ext").write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                                "extendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "leaf.pem", "-days", "2", "-extfile", "leaf.ext")
    return d / "ca.pem", d / "leaf.pem", d / "leaf.key"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_recovery_downloads_only_from_allowed_hosts(tmp_path, schema_checker):
    files = tmp_path / "served"
    files.mkdir()
    certs = tmp_path / "certs"
    certs.mkdir()
    ca, leaf, key = make_certificates(certs)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(leaf, key)
    plain, secure = serve(files), serve(files, context)
    plain_port, secure_port = plain.server_address[1], secure.server_address[1]
    proc = RouterProcess(router_binary(), tmp_path / "storage", tmp_path / "snapshots",
                         tmp_path / "router.log", extra_args=[
                             "--snapshot-allowed-hosts",
                             f"127.0.0.1:{plain_port},127.0.0.1:{secure_port}",
                             "--snapshot-ca-file", str(ca)])
    proc.start()
    try:
        client = checked_client(proc.url, schema_checker)
        fill(client, "url_src", 3, shards=3)
        want = state_of(client, "url_src", 4)
        content, checksum = snapshot_bytes(proc, client, "url_src")
        (files / "s.snapshot").write_bytes(content)
        for n, base in enumerate([f"http://127.0.0.1:{plain_port}",
                                  f"https://127.0.0.1:{secure_port}"]):
            name = f"url_dst_{n}"
            assert client.recover_snapshot(name, location=f"{base}/s.snapshot",
                                           checksum=checksum, wait=True) is True
            assert state_of(client, name, 4) == want, base
        # A redirect to an allowed host is followed.
        hop = f"http://127.0.0.1:{plain_port}/hop?to=http://127.0.0.1:{plain_port}/s.snapshot"
        assert client.recover_snapshot("url_dst_hop", location=hop, wait=True) is True
        assert state_of(client, "url_dst_hop", 4) == want
        refusals = [
            # Another host name for the same server: not on the list.
            (f"http://localhost:{plain_port}/s.snapshot", 403),
            # A redirect off the list.
            (f"http://127.0.0.1:{plain_port}/hop?to=http://localhost:{plain_port}/s.snapshot",
             400),
            # Missing file; wrong checksum.
            (f"http://127.0.0.1:{plain_port}/nope.snapshot", 400),
        ]
        for location, status in refusals:
            with pytest.raises(UnexpectedResponse) as e:
                client.recover_snapshot("url_refused", location=location, wait=True)
            assert e.value.status_code == status, (location, e.value.content)
        with pytest.raises(UnexpectedResponse) as e:
            client.recover_snapshot("url_refused", location=f"http://127.0.0.1:{plain_port}/"
                                    "s.snapshot", checksum="1" * 64, wait=True)
        assert e.value.status_code == 400
        assert not client.collection_exists("url_refused")
        client.close()
    finally:
        plain.shutdown()
        secure.shutdown()
        assert proc.stop() == 0, f"router did not exit 0 on SIGTERM; log {proc.log}"


def test_full_snapshot_restores_every_collection_and_alias(tmp_path, schema_checker):
    proc = RouterProcess(router_binary(), tmp_path / "storage", tmp_path / "snapshots",
                         tmp_path / "router.log")
    proc.start()
    try:
        client = checked_client(proc.url, schema_checker)
        fill(client, "full_a", 5, shards=1)
        fill(client, "full_b", 6, shards=3)
        client.update_collection_aliases(change_aliases_operations=[
            models.CreateAliasOperation(create_alias=models.CreateAlias(
                collection_name="full_b", alias_name="full_b_live"))])
        want = {n: state_of(client, n, 7) for n in ["full_a", "full_b"]}
        desc = client.create_full_snapshot(wait=True)
        assert desc.name.startswith("full-snapshot-") and desc.size > 0
        assert desc.name in [s.name for s in client.list_full_snapshots()]
        r = httpx.get(f"{proc.url}/snapshots/{desc.name}", timeout=60)
        assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == desc.checksum
        archive = tmp_path / "full.snapshot"
        archive.write_bytes(r.content)
        r = httpx.get(f"{proc.url}/snapshots/{desc.name}x", timeout=60)
        assert r.status_code == 404
        assert client.delete_full_snapshot(desc.name, wait=True) is True
        assert desc.name not in [s.name for s in client.list_full_snapshots()]
        # Changes after the snapshot; full_a is dropped, full_b loses points.
        client.delete_collection("full_a")
        client.delete(collection_name="full_b", points_selector=models.FilterSelector(
            filter=models.Filter()), wait=True)
        client.close()
        assert proc.stop() == 0

        # Restored at start-up without force: full_a comes back, full_b (which exists) is kept.
        proc.extra_args = ["--storage-snapshot", str(archive)]
        proc.start()
        client = checked_client(proc.url, schema_checker)
        assert state_of(client, "full_a", 7) == want["full_a"]
        assert client.count("full_b").count == 0
        client.close()
        assert proc.stop() == 0
        # With force, full_b is replaced too, and its alias answers.
        proc.extra_args = ["--storage-snapshot", str(archive), "--force-snapshot"]
        proc.start()
        client = checked_client(proc.url, schema_checker)
        assert state_of(client, "full_b", 7) == want["full_b"]
        assert state_of(client, "full_b_live", 7) == want["full_b"]
        assert state_of(client, "full_a", 7) == want["full_a"]
        client.close()
        assert proc.stop() == 0
        # A damaged archive stops start-up with an error, touching nothing.
        broken = bytearray(archive.read_bytes())
        broken[len(broken) // 3] ^= 0x55
        (tmp_path / "broken.snapshot").write_bytes(bytes(broken))
        proc.extra_args = ["--storage-snapshot", str(tmp_path / "broken.snapshot")]
        with pytest.raises(RuntimeError):
            proc.start()
        proc.extra_args = []
        proc.start()
        client = checked_client(proc.url, schema_checker)
        assert state_of(client, "full_b", 7) == want["full_b"]
        client.close()
        assert proc.stop() == 0
    finally:
        # A failing assertion above must not leave its router running.
        if proc.proc is not None and proc.proc.poll() is None:
            proc.stop()

"""The pieces the replica-set tests share: router processes in replica mode on loopback, a
fault-injecting proxy for their Raft traffic (a partition: `isolate`, `heal`), waiting for a
set to settle, and one step of the register workload a linearizability check reads."""

from __future__ import annotations

import os
import pathlib
import random
import signal
import socket
import subprocess
import threading
import time

import http.client
import http.server

import httpx
from qdrant_client import QdrantClient, models

from linearizability import READ, WRITE, Op

BIN = os.environ.get("VR_ROUTER_BIN", "target/release/router")
DIM = 8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Replica:
    """One router process in replica mode, on fixed ports (its address is in the set's
    membership, so a restart must come back on it)."""

    def __init__(self, rid: int, root: pathlib.Path, snapshot_entries: int = 10_000):
        self.rid = rid
        self.port = free_port()
        self.grpc_port = free_port()
        self.dir = root / f"replica-{rid}"
        self.snapshot_entries = snapshot_entries
        self.proc: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{self.port}"
        # Flags added at each start.
        self.extra: list[str] = []

    def start(self) -> None:
        (self.dir / "storage").mkdir(parents=True, exist_ok=True)
        log = open(self.dir / "log.txt", "ab")
        self.proc = subprocess.Popen(
            [BIN, "--host", "127.0.0.1", "--http-port", str(self.port),
             "--grpc-port", str(self.grpc_port),
             "--storage-path", str(self.dir / "storage"),
             "--snapshots-path", str(self.dir / "snapshots"),
             "--replica-id", str(self.rid),
             "--replica-snapshot-entries", str(self.snapshot_entries),
             "--replica-heartbeat-ms", "100",
             "--request-timeout-secs", "10", *self.extra],
            stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
        )
        log.close()
        line = self.proc.stdout.readline().decode()
        assert line.startswith("listening on "), f"replica {self.rid} did not start: {line!r}"

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            assert self.proc.wait(timeout=60) == 0
            self.proc = None

    def alive(self) -> bool:
        return self.proc is not None

    def status(self) -> dict:
        return httpx.get(self.url + "/cluster/replica", timeout=5).json()["result"]

    def client(self) -> QdrantClient:
        return QdrantClient(url=self.url, timeout=10, prefer_grpc=False)


class Proxy:
    """An HTTP proxy in front of one replica's REST port, for the other replicas' Raft calls
    (the set's membership names the proxies). A call from a replica in `cut` is dropped: the
    connection closes without an answer, as a partition would leave it."""

    def __init__(self, target_port: int):
        self.cut: set[str] = set()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.headers.get("x-vector-router-replica-from", "") in proxy.cut:
                    self.close_connection = True
                    return
                conn = http.client.HTTPConnection("127.0.0.1", target_port, timeout=30)
                try:
                    headers = {k: v for k, v in self.headers.items()
                               if k.lower() not in ("host", "connection")}
                    conn.request("POST", self.path, body=body, headers=headers)
                    answer = conn.getresponse()
                    data = answer.read()
                except OSError:
                    self.close_connection = True
                    return
                finally:
                    conn.close()
                self.send_response(answer.status)
                self.send_header("content-type", answer.getheader("content-type", ""))
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # a caller that gave up (a Raft call timed out) closed its connection

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def wait_for(what, check, timeout=30.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except Exception as e:  # a replica restarting answers nothing for a moment
            last = e
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout} s (last: {last!r})")


def leader_of(replicas) -> Replica:
    def find():
        for r in replicas:
            if r.alive():
                s = r.status()
                if s["state"] == "Leader":
                    return r
        return None
    return wait_for("a leader", find)


def start_set(root, n=3, snapshot_entries=10_000, proxies=None):
    replicas = [Replica(i + 1, root, snapshot_entries) for i in range(n)]
    for r in replicas:
        r.start()
    if proxies is not None:
        proxies.extend(Proxy(r.port) for r in replicas)
        members = {str(r.rid): p.url for r, p in zip(replicas, proxies)}
    else:
        members = {str(r.rid): r.url for r in replicas}
    answer = httpx.post(replicas[0].url + "/cluster/replica/initialize",
                        json={"members": members}, timeout=10)
    assert answer.status_code == 200, answer.text
    leader_of(replicas)
    return replicas


def vector(i: int, version: int) -> list[float]:
    rng = random.Random(i * 1_000 + version)
    return [rng.uniform(-1, 1) for _ in range(DIM)]


def all_points(r: Replica) -> dict:
    c = r.client()
    out = {}
    offset = None
    while True:
        points, offset = c.scroll("c", limit=1000, offset=offset, with_payload=True,
                                  with_vectors=True)
        for p in points:
            out[p.id] = (p.payload["version"], p.vector, p.payload)
        if offset is None:
            return out


def converged(replicas) -> bool:
    """Every replica has applied the same last entry."""
    applied = {r.status()["applied_index"] for r in replicas}
    return len(applied) == 1




def isolate(replica, replicas, proxies) -> None:
    """Cuts `replica` off from the rest of its set both ways (its Raft calls to the others,
    and theirs to it), through the proxies `start_set` put in front of each replica."""
    others = {str(o.rid) for o in replicas if o is not replica}
    for r, p in zip(replicas, proxies):
        p.cut = set(others) if r is replica else {str(replica.rid)}


def heal(proxies) -> None:
    """Ends every cut."""
    for p in proxies:
        p.cut = set()


def register_step(client: QdrantClient, key: int, value=None, owner: int = 0):
    """One operation of the register workload (a point's payload `v` as a register): with
    `value`, a write of it to point `key`; without, a `consistency=majority` read of it.
    The operation as the client saw it, for `linearizability.check`; `None` when it tells
    nothing: a read whose answer was lost, or a write refused before a connection was made
    (the replica was down: nothing was sent, so it is no write). A write whose answer was
    lost may have been applied: it returns at infinity."""
    call = time.monotonic()
    if value is not None:
        try:
            client.upsert("c", [models.PointStruct(id=key, vector=[1.0] * DIM,
                                                   payload={"v": value})], wait=True)
            return Op(key, WRITE, value, call, time.monotonic(), owner)
        except Exception as e:
            if isinstance(getattr(e, "source", None), httpx.ConnectError):
                return None
            return Op(key, WRITE, value, call, float("inf"), owner)
    try:
        points = client.retrieve("c", [key], with_payload=True,
                                 consistency=models.ReadConsistencyType.MAJORITY)
    except Exception:
        return None
    return Op(key, READ, points[0].payload["v"] if points else None, call, time.monotonic(),
              owner)

"""What a resharding costs the queries it runs under (issue 12): three node routers and a
cluster router on loopback, one collection placed by hash over the three nodes, two
closed-loop clients sending approximate (HNSW) queries. Four phases, each reporting the
clients' latency p50/p99 and queries per second: steady on three shards; while the collection
is resharded down to two (the third node's points move to the other two); steady on two; while
it is resharded up to three again (a third of the points move back). The resharding phases
also report how long the resharding took and the points it moved per second. The result cache
is off everywhere; every answer is checked to hold `limit` points.

    cargo build --release -p router
    python3 benches/reshard_bench.py    # N=100000 DIM=64 STEADY_SECS=10 BATCH=256
"""

from __future__ import annotations

import os
import random
import tempfile
import threading
import time

import httpx

from shard_key_bench import start  # the same node and coordinator processes

N = int(os.environ.get("N", "100000"))
DIM = int(os.environ.get("DIM", "64"))
STEADY = float(os.environ.get("STEADY_SECS", "10"))
BATCH = os.environ.get("BATCH", "256")
CLIENTS = int(os.environ.get("CLIENTS", "2"))


class Load:
    """Closed-loop query clients, each recording its latencies until stopped."""

    def __init__(self, base: str, queries: list[dict]):
        self.base, self.queries = base, queries
        self.lat: list[float] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.client, args=(i,)) for i in range(CLIENTS)]

    def client(self, i: int) -> None:
        with httpx.Client(base_url=self.base, timeout=60) as c:
            k = i
            while not self.stop.is_set():
                body = self.queries[k % len(self.queries)]
                k += CLIENTS
                t = time.perf_counter()
                r = c.post("/collections/b/points/query", json=body)
                dt = time.perf_counter() - t
                assert r.status_code == 200, r.text
                assert len(r.json()["result"]["points"]) == body["limit"], r.text
                with self.lock:
                    self.lat.append(dt)

    def take(self) -> list[float]:
        with self.lock:
            out, self.lat = self.lat, []
        return out

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join()


def report(phase: str, lat: list[float], secs: float, extra: str = "") -> None:
    lat = sorted(lat)
    p50 = lat[len(lat) // 2] * 1e3
    p99 = lat[int(len(lat) * 0.99)] * 1e3
    print(f"{phase:<28} p50 {p50:6.2f} ms  p99 {p99:7.2f} ms  {len(lat) / secs:7.0f} QPS  {extra}",
          flush=True)


def reshard(c: httpx.Client, direction: str) -> tuple[float, int]:
    t = time.perf_counter()
    r = c.post("/collections/b/cluster", json={"start_resharding": {"direction": direction}})
    assert r.status_code == 200, r.text
    moved = 0
    while True:
        info = c.get("/collections/b/cluster").json()["result"]
        if not info["resharding_operations"]:
            return time.perf_counter() - t, moved
        moved = max(moved, info["resharding_progress"]["points_moved"])
        time.sleep(0.05)


def main() -> None:
    rng = random.Random(5)
    work = tempfile.mkdtemp(prefix="reshard-bench-")
    procs = []
    try:
        nodes = []
        for k in range(3):
            procs.append(start(work, f"node{k}", 7801 + k, 7901 + k))
            nodes.append(f"http://127.0.0.1:{7901 + k}")
        procs.append(start(work, "coord", 7800, 7900, "--cluster-nodes", ",".join(nodes),
                           "--cluster-reshard-batch", BATCH))
        c = httpx.Client(base_url="http://127.0.0.1:7800", timeout=120)
        c.delete("/collections/b")
        r = c.put("/collections/b", json={"vectors": {"size": DIM, "distance": "Cosine"}})
        assert r.status_code == 200, r.text
        for lo in range(0, N, 1000):
            pts = [{"id": i, "vector": [rng.gauss(0, 1) for _ in range(DIM)],
                    "payload": {"n": i}} for i in range(lo, min(N, lo + 1000))]
            r = c.put("/collections/b/points?wait=true", json={"points": pts})
            assert r.status_code == 200, r.text
        while c.get("/collections/b").json()["result"]["status"] != "green":
            time.sleep(0.5)
        queries = [{"query": [rng.gauss(0, 1) for _ in range(DIM)], "limit": 10,
                    "params": {"hnsw_ef": 64}} for _ in range(2000)]
        print(f"{N} points x {DIM}, {CLIENTS} clients, batch {BATCH}", flush=True)
        with Load("http://127.0.0.1:7800", queries) as load:
            time.sleep(1)
            load.take()
            time.sleep(STEADY)
            report("steady, 3 shards", load.take(), STEADY)
            secs, moved = reshard(c, "down")
            report("resharding 3 -> 2", load.take(), secs,
                   f"{secs:5.1f} s, {moved} points moved, {moved / secs:6.0f} points/s")
            while c.get("/collections/b").json()["result"]["status"] != "green":
                time.sleep(0.5)
            load.take()
            time.sleep(STEADY)
            report("steady, 2 shards", load.take(), STEADY)
            secs, moved = reshard(c, "up")
            report("resharding 2 -> 3", load.take(), secs,
                   f"{secs:5.1f} s, {moved} points moved, {moved / secs:6.0f} points/s")
        count = c.post("/collections/b/points/count", json={"exact": True}).json()["result"]
        assert count["count"] == N, count
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()


if __name__ == "__main__":
    main()

"""What a shard key saves a query in cluster mode (issue 12): three node routers and a cluster
router on loopback, one collection sharded by hash over the three nodes and one sharded by key
(three keys, one per node, the same points split between them by `i % 3`), then one
closed-loop client sending the same query vectors: to the hash collection (every node
searches), to the keyed one naming a key (one node searches a third of the points), and to the
keyed one naming none (every node again). Latency p50/p99 and queries per second, in two
rounds (the second in reverse order), once both collections are green; the result cache is off
everywhere; exact search, so each node scans its points.

    cargo build --release -p router
    python3 benches/shard_key_bench.py    # N=60000 DIM=64 QUERIES=2000 CLIENTS=4
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
import time

import httpx

N = int(os.environ.get("N", "60000"))
DIM = int(os.environ.get("DIM", "64"))
QUERIES = int(os.environ.get("QUERIES", "2000"))
BIN = os.environ.get("ROUTER_BIN", "target/release/router")


def start(work: str, name: str, http: int, grpc: int, *extra: str) -> subprocess.Popen:
    out = open(os.path.join(work, f"{name}.out"), "w")
    proc = subprocess.Popen(
        [BIN, "--http-port", str(http), "--grpc-port", str(grpc), "--cache-ttl-secs", "0",
         "--storage-path", os.path.join(work, name, "storage"),
         "--snapshots-path", os.path.join(work, name, "snapshots"), "--log-level", "warn",
         *extra],
        stdout=out, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            httpx.get(f"http://127.0.0.1:{http}/readyz", timeout=1)
            return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    sys.exit(f"{name} did not start")


def run(client: httpx.Client, path: str, bodies: list[dict]) -> tuple[float, float, float]:
    lat = []
    start_all = time.perf_counter()
    for b in bodies:
        t = time.perf_counter()
        r = client.post(path, json=b)
        lat.append(time.perf_counter() - t)
        assert r.status_code == 200, r.text
    total = time.perf_counter() - start_all
    lat.sort()
    return (lat[len(lat) // 2] * 1e3, lat[int(len(lat) * 0.99)] * 1e3, len(bodies) / total)


def run_concurrent(url: str, path: str, bodies: list[dict], clients: int) -> float:
    """Queries per second with `clients` closed-loop clients sharing `bodies`."""
    from concurrent.futures import ThreadPoolExecutor

    def one(k: int) -> None:
        with httpx.Client(base_url=url, timeout=120) as c:
            for b in bodies[k::clients]:
                r = c.post(path, json=b)
                assert r.status_code == 200, r.text

    start_all = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(clients)))
    return len(bodies) / (time.perf_counter() - start_all)


def main() -> None:
    rng = random.Random(7)
    work = tempfile.mkdtemp()
    procs = []
    try:
        nodes = []
        for k in range(3):
            procs.append(start(work, f"node{k}", 17510 + k, 17610 + k))
            nodes.append(f"http://127.0.0.1:{17610 + k}")
        procs.append(start(work, "cluster", 17500, 17600, "--cluster-nodes", ",".join(nodes)))
        c = httpx.Client(base_url="http://127.0.0.1:17500", timeout=120)
        vectors = {"size": DIM, "distance": "Cosine"}
        assert c.put("/collections/hash", json={"vectors": vectors}).status_code == 200
        assert c.put("/collections/keyed", json={"vectors": vectors,
                                                 "sharding_method": "custom"}).status_code == 200
        for k in range(3):
            r = c.put("/collections/keyed/shards", json={"shard_key": f"k{k}", "placement": [k]})
            assert r.status_code == 200, r.text
        points = [{"id": i, "vector": [rng.gauss(0, 1) for _ in range(DIM)]} for i in range(N)]
        for i in range(0, N, 1000):
            chunk = points[i:i + 1000]
            r = c.put("/collections/hash/points?wait=true", json={"points": chunk})
            assert r.status_code == 200, r.text
            for k in range(3):
                part = [p for p in chunk if p["id"] % 3 == k]
                r = c.put("/collections/keyed/points?wait=true",
                          json={"points": part, "shard_key": f"k{k}"})
                assert r.status_code == 200, r.text
        # Measured once the nodes are done indexing (green), so no optimizer shares the cores.
        for _ in range(600):
            states = [c.get(f"/collections/{n}").json()["result"]["status"]
                      for n in ("hash", "keyed")]
            if states == ["green", "green"]:
                break
            time.sleep(0.5)
        queries = [[rng.gauss(0, 1) for _ in range(DIM)] for _ in range(QUERIES)]
        base = [{"query": q, "limit": 10, "params": {"exact": True}} for q in queries]
        keyed = [dict(b, shard_key=f"k{i % 3}") for i, b in enumerate(base)]
        # One warm-up pass over each, then the measured ones.
        for path, bodies in [("/collections/hash/points/query", base[:200]),
                             ("/collections/keyed/points/query", keyed[:200])]:
            run(c, path, bodies)
        print(f"N={N} DIM={DIM} queries={QUERIES}, exact")
        cases = [
            ("hash over 3 nodes", "/collections/hash/points/query", base),
            ("keyed, naming one key (1 node)", "/collections/keyed/points/query", keyed),
            ("keyed, naming none (3 nodes)", "/collections/keyed/points/query", base),
        ]
        # Two rounds, the second in reverse order, so that neither case always runs first.
        # Beside one client's latency, the throughput of CLIENTS concurrent ones: what the
        # nodes' work per query decides once the cores are busy.
        clients = int(os.environ.get("CLIENTS", "4"))
        print(f"| collection, request | p50 ms | p99 ms | QPS, 1 client | QPS, {clients} clients |")
        print("|---|---|---|---|---|")
        for round_cases in (cases, cases[::-1]):
            for label, path, bodies in round_cases:
                p50, p99, qps = run(c, path, bodies)
                many = run_concurrent("http://127.0.0.1:17500", path, bodies, clients)
                print(f"| {label} | {p50:.2f} | {p99:.2f} | {qps:,.0f} | {many:,.0f} |")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()


if __name__ == "__main__":
    main()

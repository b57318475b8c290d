"""What placement by region saves a geo-filtered query in cluster mode (issue 12): three node
routers and a cluster router on loopback, the same points (random 64-dimensional vectors, each
with a random location on land-sized boxes of the world) in two collections:
- `hash`, sharded by hash over the three nodes;
- `regions` (`sharding_method: custom`, `shard_region_field: "loc"`), with three keys, one per
  node: Europe (a box), the Americas (a polygon), and the rest of the world (no region).

One closed-loop client, then CLIENTS concurrent ones, send the same exact queries, each
filtered by a 1,000 km `geo_radius` around a point in Europe or the Americas: the hash
collection asks every node; the regions collection asks the region the circle meets and the
key without a region. Two rounds, the second in reverse order; the result cache is off
everywhere; both collections are green before anything is measured.

    cargo build --release -p router
    data/e2e-venv/bin/python benches/region_bench.py    # N=60000 DIM=64 QUERIES=2000 CLIENTS=4
"""

from __future__ import annotations

import os
import random
import tempfile
import time

import httpx

from shard_key_bench import run, run_concurrent, start

N = int(os.environ.get("N", "60000"))
DIM = int(os.environ.get("DIM", "64"))
QUERIES = int(os.environ.get("QUERIES", "2000"))

EUROPE = {"geo_bounding_box": {"top_left": {"lat": 72.0, "lon": -25.0},
                               "bottom_right": {"lat": 34.0, "lon": 45.0}}}
AMERICAS = {"geo_polygon": {"exterior": {"points": [
    {"lat": 72.0, "lon": -170.0}, {"lat": 72.0, "lon": -30.0}, {"lat": -56.0, "lon": -30.0},
    {"lat": -56.0, "lon": -170.0}, {"lat": 72.0, "lon": -170.0}]}}}
# Where points are: Europe, the Americas, Asia and Oceania, a third of the points each.
AREAS = [(36.0, 70.0, -10.0, 40.0), (-50.0, 65.0, -160.0, -40.0), (-40.0, 60.0, 60.0, 150.0)]


def location(rng: random.Random) -> dict:
    lat0, lat1, lon0, lon1 = rng.choice(AREAS)
    return {"lat": rng.uniform(lat0, lat1), "lon": rng.uniform(lon0, lon1)}


def main() -> None:
    rng = random.Random(7)
    work = tempfile.mkdtemp()
    procs = []
    try:
        nodes = []
        for k in range(3):
            procs.append(start(work, f"node{k}", 17530 + k, 17630 + k))
            nodes.append(f"http://127.0.0.1:{17630 + k}")
        procs.append(start(work, "cluster", 17520, 17620, "--cluster-nodes", ",".join(nodes)))
        c = httpx.Client(base_url="http://127.0.0.1:17520", timeout=120)
        vectors = {"size": DIM, "distance": "Cosine"}
        assert c.put("/collections/hash", json={"vectors": vectors}).status_code == 200
        r = c.put("/collections/regions", json={"vectors": vectors, "sharding_method": "custom",
                                                "shard_region_field": "loc"})
        assert r.status_code == 200, r.text
        for k, (key, region) in enumerate([("eu", EUROPE), ("am", AMERICAS), ("rest", None)]):
            body = {"shard_key": key, "placement": [k]}
            if region is not None:
                body["region"] = region
            r = c.put("/collections/regions/shards", json=body)
            assert r.status_code == 200, r.text
        for name in ("hash", "regions"):
            r = c.put(f"/collections/{name}/index?wait=true",
                      json={"field_name": "loc", "field_schema": "geo"})
            assert r.status_code == 200, r.text
        points = [{"id": i, "vector": [rng.gauss(0, 1) for _ in range(DIM)],
                   "payload": {"loc": location(rng)}} for i in range(N)]
        for i in range(0, N, 1000):
            for name in ("hash", "regions"):
                r = c.put(f"/collections/{name}/points?wait=true",
                          json={"points": points[i:i + 1000]})
                assert r.status_code == 200, r.text
        per_key = [c.post("/collections/regions/points/count",
                          json={"shard_key": k, "exact": True}).json()["result"]["count"]
                   for k in ("eu", "am", "rest")]
        for _ in range(600):
            states = [c.get(f"/collections/{n}").json()["result"]["status"]
                      for n in ("hash", "regions")]
            if states == ["green", "green"]:
                break
            time.sleep(0.5)
        bodies = []
        for q in range(QUERIES):
            area = AREAS[q % 2]
            centre = {"lat": (area[0] + area[1]) / 2 + rng.uniform(-10, 10),
                      "lon": (area[2] + area[3]) / 2 + rng.uniform(-15, 15)}
            bodies.append({"query": [rng.gauss(0, 1) for _ in range(DIM)], "limit": 10,
                           "params": {"exact": True},
                           "filter": {"must": [{"key": "loc", "geo_radius": {
                               "center": centre, "radius": 1_000_000.0}}]}})
        # The answers agree: the same points, whichever collection holds them.
        for b in bodies[:50]:
            a = c.post("/collections/hash/points/query", json=b).json()["result"]["points"]
            z = c.post("/collections/regions/points/query", json=b).json()["result"]["points"]
            assert [p["id"] for p in a] == [p["id"] for p in z], (a, z)
        for path in ("/collections/hash/points/query", "/collections/regions/points/query"):
            run(c, path, bodies[:200])
        print(f"N={N} DIM={DIM} queries={QUERIES}, exact, points per key (eu, am, rest) {per_key}")
        cases = [
            ("hash over 3 nodes", "/collections/hash/points/query"),
            ("regions (2 of 3 nodes)", "/collections/regions/points/query"),
        ]
        clients = int(os.environ.get("CLIENTS", "4"))
        print(f"| collection | p50 ms | p99 ms | QPS, 1 client | QPS, {clients} clients |")
        print("|---|---|---|---|---|")
        for round_cases in (cases, cases[::-1]):
            for label, path in round_cases:
                p50, p99, qps = run(c, path, bodies)
                many = run_concurrent("http://127.0.0.1:17520", path, bodies, clients)
                print(f"| {label} | {p50:.2f} | {p99:.2f} | {qps:,.0f} | {many:,.0f} |")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()


if __name__ == "__main__":
    main()

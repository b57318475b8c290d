#!/usr/bin/env python3
"""Measure filtered vector search over Qdrant's REST API, against any Qdrant-compatible server.

The REST peer of `benches/examples/filtered.rs` and `benches/filtered_peer.py`: a TexMex
dataset (cosine), four keyword payload fields with seeded selectivities (50%, 10%, 1% and
0.1% of the points have the value "in"), recall@10 against an exact filtered scan, and the
QPS of one client over an `hnsw_ef` sweep. Point --url at our router or at a real Qdrant:
the same requests measure both.

Payloads are bit-for-bit those of the Rust example: point `i` has, for each field `s{p}`
(p in 5000, 1000, 100, 10: hundredths of a percent, field index f = 0..3), the value "in"
when `splitmix64(i * 4 + f) % 10000 < p`, else "out".

Steps:

1. Load (unless --skip-load): delete the collection if it exists, create it (Cosine,
   HNSW m=16 ef_construct=200), upsert points 0..n-1 with their payloads in batches of
   --batch over one keep-alive connection (`PUT .../points?wait=true`), then poll
   `GET /collections/{c}` every second until `status` is "green" and print the time.
2. With --payload-index: create a keyword payload index on each of the four fields
   (`PUT .../index?wait=true`; after the load, or on the existing collection with
   --skip-load), then wait for green again.
3. Ground truth: the exact filtered top-10 by dot product (numpy; vectors normalised) for
   no filter and for each field == "in".
4. Measure with one client (one keep-alive `http.client` connection, sequential requests):
   per filter case the first request is timed alone (it may pay for building a filter
   cache on the server), nine more warm up, then for each ef every query is sent as a
   pre-serialised body `{"query": [...], "limit": 10, "params": {"hnsw_ef": ef},
   "filter": {"must": [{"key": name, "match": {"value": "in"}}]}}` (no filter for "none"),
   --repeat times; QPS is that of the best pass, p50/p99 its latencies. Every returned id
   is checked against the payload formula; one that fails the filter stops the run.
5. Print a markdown table and, with --out, write the results as JSON.

Our router caches search results by default (`--cache-ttl-secs`, 60 s): start it with
`--cache-ttl-secs 0` (or VR_CACHE_TTL_SECS=0) for this benchmark, or the repeated passes
measure the cache. The script reads `vector_router_cache_hits_total` from /metrics where
the server exposes it and warns when the measurement hit the cache.

Needs numpy (not only the standard library, unlike `http_bench.py`): run it with the
peers virtual environment, from the repository root:

    data/peers-venv/bin/python benches/http_filtered.py --url http://127.0.0.1:6333 \\
        --data data/glove-50-angular --payload-index --out filtered-http.json
    data/peers-venv/bin/python benches/http_filtered.py --skip-load --efs 64,128
    data/peers-venv/bin/python benches/http_filtered.py --limit-points 30000 \\
        --queries 200 --efs 32,64                      # quick check on a subset
"""

import argparse
import http.client
import json
import os
import re
import sys
import time
import urllib.parse

import numpy as np

from filtered_workload import FIELDS, K, cases, pass_masks, read_fvecs
from http_bench import find


class Conn:
    """One keep-alive HTTP connection; JSON in and out, errors raised with the body."""

    def __init__(self, url, api_key=None, timeout=600):
        u = urllib.parse.urlparse(url)
        self.conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=timeout)
        self.headers = {"content-type": "application/json"}
        if api_key:
            self.headers["api-key"] = api_key

    def raw(self, method, path, body=None):
        if body is not None and not isinstance(body, (bytes, bytearray)):
            body = json.dumps(body).encode()
        self.conn.request(method, path, body=body, headers=self.headers)
        r = self.conn.getresponse()
        return r.status, r.read()

    def call(self, method, path, body=None):
        status, data = self.raw(method, path, body)
        if status >= 300:
            raise RuntimeError(f"{method} {path}: {status} {data[:500]!r}")
        return json.loads(data) if data else None


def cache_hits(c):
    """Our router's result-cache hit counter, or None where /metrics does not expose it."""
    try:
        status, data = c.raw("GET", "/metrics")
    except (OSError, http.client.HTTPException):
        return None
    if status != 200:
        return None
    m = re.search(rb"^vector_router_cache_hits_total(?:\{[^}]*\})?\s+([0-9.eE+]+)", data, re.M)
    return float(m.group(1)) if m else None


def wait_green(c, collection, t0, timeout):
    while True:
        info = c.call("GET", f"/collections/{collection}")["result"]
        if info.get("status") == "green":
            return info, time.perf_counter() - t0
        if time.perf_counter() - t0 > timeout:
            sys.exit(f"error: collection not green after {timeout} s: status {info.get('status')!r}")
        time.sleep(1.0)


def load(c, a, base, masks):
    """Create the collection and upsert the points; returns (upload_s, green_s)."""
    status, data = c.raw("DELETE", f"/collections/{a.collection}")
    if status >= 300 and status != 404:
        print(f"note: DELETE /collections/{a.collection}: {status} {data[:200]!r}", flush=True)
    c.call("PUT", f"/collections/{a.collection}", {
        "vectors": {"size": int(base.shape[1]), "distance": "Cosine"},
        "hnsw_config": {"m": 16, "ef_construct": 200},
    })
    n = len(base)
    values = np.where(masks, "in", "out")
    t0 = time.perf_counter()
    for s in range(0, n, a.batch):
        e = min(n, s + a.batch)
        vecs = base[s:e].tolist()
        points = [
            {"id": i, "vector": vecs[i - s],
             "payload": {name: str(values[f, i]) for f, (_, name) in enumerate(FIELDS)}}
            for i in range(s, e)
        ]
        c.call("PUT", f"/collections/{a.collection}/points?wait=true",
               json.dumps({"points": points}).encode())
    upload_s = time.perf_counter() - t0
    print(f"uploaded {n} points in {upload_s:.1f} s ({n / upload_s:,.0f} points/s, "
          f"batch {a.batch}, wait=true)", flush=True)
    info, green_s = wait_green(c, a.collection, t0, a.green_timeout)
    print(f"green {green_s:.1f} s after the upload began ({green_s - upload_s:.1f} s after it ended); "
          f"{info.get('points_count')} points, {info.get('segments_count')} segments", flush=True)
    return upload_s, green_s


def create_indexes(c, a):
    t0 = time.perf_counter()
    for _, name in FIELDS:
        c.call("PUT", f"/collections/{a.collection}/index?wait=true",
               {"field_name": name, "field_schema": "keyword"})
    index_s = time.perf_counter() - t0
    info, green_s = wait_green(c, a.collection, t0, a.green_timeout)
    print(f"keyword payload indexes on {', '.join(n for _, n in FIELDS)} in {index_s:.1f} s; "
          f"green after {green_s:.1f} s; payload_schema: "
          f"{json.dumps(info.get('payload_schema'), sort_keys=True)}", flush=True)
    return index_s, green_s


def percentile(sorted_values, q):
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, int(round(q * (len(sorted_values) - 1)))))
    return sorted_values[k]


class Client:
    """Sequential queries over one keep-alive connection."""

    def __init__(self, c, collection):
        self.c = c
        self.path = f"/collections/{collection}/points/query"

    def one(self, body):
        """(seconds, ids) of one request."""
        t = time.perf_counter()
        self.c.conn.request("POST", self.path, body=body, headers=self.c.headers)
        r = self.c.conn.getresponse()
        data = r.read()
        dt = time.perf_counter() - t
        if r.status != 200:
            raise RuntimeError(f"POST {self.path}: {r.status} {data[:500]!r}")
        return dt, [p["id"] for p in json.loads(data)["result"]["points"]]


def bodies_for(qlist, ef, flt):
    out = []
    for q in qlist:
        req = {"query": q, "limit": K, "params": {"hnsw_ef": ef}}
        if flt is not None:
            req["filter"] = flt
        out.append(json.dumps(req).encode())
    return out


def check_ids(label, found, allowed, n):
    flat = np.fromiter((i for f in found for i in f), dtype=np.int64)
    if flat.size and (flat.min() < 0 or flat.max() >= n):
        sys.exit(f"FAIL: filter {label}: returned ids outside 0..{n - 1}: "
                 f"{sorted(set(flat[(flat < 0) | (flat >= n)].tolist()))[:20]}")
    bad = flat[~allowed[flat]] if flat.size else flat
    if bad.size:
        sys.exit(f"FAIL: filter {label}: {bad.size} returned ids fail the filter, e.g. "
                 f"{sorted(set(bad.tolist()))[:20]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:6333")
    ap.add_argument("--data", default="data/glove-50-angular", help="directory with base.fvecs, query.fvecs")
    ap.add_argument("--collection", default="filtered")
    ap.add_argument("--limit-points", type=int, default=None, help="load only the first N base vectors")
    ap.add_argument("--queries", type=int, default=1000, help="use the first N queries")
    ap.add_argument("--efs", default="16,32,64,128,256", help="comma-separated hnsw_ef values")
    ap.add_argument("--payload-index", action="store_true",
                    help="create keyword payload indexes on the four fields (after the load)")
    ap.add_argument("--skip-load", action="store_true", help="reuse an existing, loaded collection")
    ap.add_argument("--batch", type=int, default=1000, help="points per upsert request")
    ap.add_argument("--repeat", type=int, default=3, help="passes per ef; QPS is the best pass")
    ap.add_argument("--green-timeout", type=float, default=7200, help="seconds to wait for green")
    ap.add_argument("--api-key", default=None, help="sent as the api-key header")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    a = ap.parse_args()
    efs = [int(x) for x in a.efs.split(",") if x]

    base = read_fvecs(find(a.data, "base.fvecs"), a.limit_points)
    queries = read_fvecs(find(a.data, "query.fvecs"), a.queries)
    n, dim = base.shape
    nq = len(queries)
    masks = pass_masks(n)
    print(f"dataset {os.path.basename(os.path.normpath(a.data))} ({n} x {dim}, {nq} queries); "
          f"passing: {', '.join(f'{name} {int(m.sum())}' for (_, name), m in zip(FIELDS, masks))}",
          flush=True)

    c = Conn(a.url, a.api_key)
    out = {"url": a.url, "data": a.data, "collection": a.collection, "points": n, "dim": dim,
           "queries": nq, "repeat": a.repeat, "payload_index": a.payload_index,
           "skip_load": a.skip_load, "clients": 1}
    if not a.skip_load:
        out["upload_s"], out["green_s"] = load(c, a, base, masks)
    if a.payload_index:
        out["index_s"], out["index_green_s"] = create_indexes(c, a)
    info = c.call("GET", f"/collections/{a.collection}")["result"]
    out["collection_info"] = {k: info.get(k) for k in
                              ("status", "points_count", "indexed_vectors_count", "segments_count",
                               "payload_schema")}
    if info.get("points_count") not in (None, n):
        sys.exit(f"error: collection {a.collection} has {info.get('points_count')} points, expected {n} "
                 f"(--limit-points must match the load)")

    base_n = base / np.linalg.norm(base, axis=1, keepdims=True)
    queries_n = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    qlist = queries.tolist()
    client = Client(c, a.collection)
    hits_before = cache_hits(c)

    rows = []
    print()
    print("| filter | passing | first query ms | ef | recall@10 | QPS | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for case, allowed, label, passing, truth_sets, expected in cases(masks, base_n, queries_n):
        flt = None if case is None else {"must": [{"key": FIELDS[case][1], "match": {"value": "in"}}]}

        # The first request of a filter is timed alone; the next nine warm up.
        warm = bodies_for(qlist[:10], efs[0], flt)
        first_s, first_ids = client.one(warm[0])
        check_ids(label, [first_ids], allowed, n)
        for body in warm[1:]:
            _, ids = client.one(body)
            check_ids(label, [ids], allowed, n)
        first_ms = first_s * 1e3

        for ef in efs:
            bodies = bodies_for(qlist, ef, flt)
            best = None
            for _ in range(a.repeat):
                lat = []
                found = []
                t0 = time.perf_counter()
                for body in bodies:
                    dt, ids = client.one(body)
                    lat.append(dt)
                    found.append(ids)
                wall = time.perf_counter() - t0
                check_ids(label, found, allowed, n)
                if best is None or wall < best[0]:
                    best = (wall, sorted(lat), found)
            wall, lat, found = best
            hits = sum(len(truth_sets[qi].intersection(f)) for qi, f in enumerate(found))
            short = sum(1 for f in found if len(f) < min(K, passing))
            r = {"filter": label, "field": None if case is None else FIELDS[case][1],
                 "passing": passing, "first_query_ms": first_ms, "ef": ef,
                 "recall": hits / expected if expected else float("nan"),
                 "qps": nq / wall, "p50_ms": percentile(lat, 0.50) * 1e3,
                 "p99_ms": percentile(lat, 0.99) * 1e3, "requests": nq,
                 "short_results": short}
            rows.append(r)
            print(f"| {label} | {passing} | {first_ms:.2f} | {ef} | {r['recall']:.4f} | "
                  f"{r['qps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} |", flush=True)
            if short:
                print(f"  warning: {short} of {nq} answers had fewer than {min(K, passing)} points",
                      flush=True)
    out["results"] = rows

    hits_after = cache_hits(c)
    if hits_before is not None and hits_after is not None:
        out["server_cache_hits"] = hits_after - hits_before
        if hits_after > hits_before:
            print(f"\nwarning: the server answered {hits_after - hits_before:.0f} requests from its "
                  f"result cache; restart it with --cache-ttl-secs 0 to measure search", flush=True)
    print()
    indexed = sorted((info.get("payload_schema") or {}).keys())
    print(f"{a.url} collection {a.collection}: Cosine, HNSW m=16 ef_construct=200; payload indexes "
          f"(payload_schema): {', '.join(indexed) if indexed else 'none'}; one client, one "
          f"keep-alive connection, sequential POST /points/query; QPS best of {a.repeat} passes, "
          f"p50/p99 of that pass; filter must[{{key, match: {{value: \"in\"}}}}]")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()

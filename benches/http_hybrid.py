#!/usr/bin/env python3
"""Hybrid query latency over Qdrant's REST API: a dense query, a sparse query, and the RRF
fusion of both as prefetches, p50 and p99 of each, and the hybrid's against the sum of its
parts.

Data: the BM25 document vectors of `benches/make_sparse.py` (sparse vector `text`, `idf`
modifier) and, per document, a seeded random unit vector of `--dim` dimensions (dense vector
`dense`, cosine; its values are not text embeddings, but a graph walk costs the same on
them). Queries: the set's sparse queries, each with a seeded random dense vector. The three
requests per query:

    dense:  {"query": [..], "using": "dense", "limit": 10}
    sparse: {"query": {"indices": [..], "values": [..]}, "using": "text", "limit": 10}
    hybrid: {"prefetch": [{dense, "limit": L}, {sparse, "limit": L}],
             "query": {"fusion": "rrf"}, "limit": 10}

One client, one keep-alive connection, requests sent in turn (dense, sparse, hybrid for one
query, then the next), each timed from send to the last byte. Start the router with
`--cache-ttl-secs 0`. From the repository root:

    target/release/router --cache-ttl-secs 0 --http-port 16402 --grpc-port 0 \\
        --storage-path /tmp/hy/storage --snapshots-path /tmp/hy/snapshots &
    data/peers-venv/bin/python benches/http_hybrid.py --url http://127.0.0.1:16402
"""

import argparse
import json
import os
import time

import numpy as np

from http_filtered import Conn, percentile
from sparse_peer import read_sparse, rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:6333")
    ap.add_argument("--data", default="data/sparse-stdlib")
    ap.add_argument("--collection", default="hybrid")
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--prefetch-limit", type=int, default=50)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--skip-load", action="store_true")
    a = ap.parse_args()
    c = Conn(a.url)
    docs = list(rows(read_sparse(os.path.join(a.data, "docs.sparse"))))
    queries = list(rows(read_sparse(os.path.join(a.data, "queries.sparse"))))[:a.queries]
    rng = np.random.default_rng(11)

    def unit(n):
        v = rng.standard_normal((n, a.dim)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    dense_docs = unit(len(docs))
    dense_queries = unit(len(queries))
    if not a.skip_load:
        c.raw("DELETE", f"/collections/{a.collection}")
        c.call("PUT", f"/collections/{a.collection}", {
            "vectors": {"dense": {"size": a.dim, "distance": "Cosine"}},
            "sparse_vectors": {"text": {"modifier": "idf"}},
            "hnsw_config": {"m": 16, "ef_construct": 100}})
        t = time.perf_counter()
        for s in range(0, len(docs), 1000):
            pts = [{"id": i, "vector": {"dense": dense_docs[i].tolist(),
                                        "text": {"indices": docs[i][0], "values": docs[i][1]}}}
                   for i in range(s, min(s + 1000, len(docs)))]
            c.call("PUT", f"/collections/{a.collection}/points?wait=true", {"points": pts})
        while c.call("GET", f"/collections/{a.collection}")["result"]["status"] != "green":
            time.sleep(1)
        print(f"loaded {len(docs)} points and indexed in {time.perf_counter() - t:.0f} s")

    path = f"/collections/{a.collection}/points/query"
    kinds = {"dense": [], "sparse": [], "hybrid": []}
    for qi, (idx, val) in enumerate(queries):
        dense = {"query": dense_queries[qi].tolist(), "using": "dense"}
        sparse = {"query": {"indices": idx, "values": val}, "using": "text"}
        bodies = {
            "dense": {**dense, "limit": 10},
            "sparse": {**sparse, "limit": 10},
            "hybrid": {"prefetch": [{**dense, "limit": a.prefetch_limit},
                                    {**sparse, "limit": a.prefetch_limit}],
                       "query": {"fusion": "rrf"}, "limit": 10},
        }
        for kind, body in bodies.items():
            raw = json.dumps(body).encode()
            t = time.perf_counter()
            status, data = c.raw("POST", path, raw)
            kinds[kind].append(time.perf_counter() - t)
            assert status == 200, data[:300]
    print(f"{len(queries)} queries each, one keep-alive client, prefetch limit {a.prefetch_limit}")
    print("| request | p50 ms | p99 ms |")
    print("|---|---|---|")
    p = {}
    for kind, lat in kinds.items():
        lat.sort()
        p[kind] = (percentile(lat, 0.50) * 1e3, percentile(lat, 0.99) * 1e3)
        print(f"| {kind} | {p[kind][0]:.3f} | {p[kind][1]:.3f} |")
    for i, name in enumerate(("p50", "p99")):
        parts = p["dense"][i] + p["sparse"][i]
        print(f"hybrid {name} / (dense + sparse) = {p['hybrid'][i] / parts:.2f}")


if __name__ == "__main__":
    main()

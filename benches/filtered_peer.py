"""Filtered vector search in Qdrant's embedded engine (qdrant-edge-py), the peer of
`benches/examples/filtered.rs`.

Same workload as the Rust example: a TexMex dataset (cosine), four keyword payload fields
with seeded selectivities (50%, 10%, 1%, 0.1% of the points have the value "in"),
recall@10 against an exact filtered scan, and single-thread QPS over an `ef` sweep.

Payloads are bit-for-bit those of the Rust example: point `i` has, for each field `s{p}`
(p in 5000, 1000, 100, 10: hundredths of a percent, field index f = 0..3), the value "in"
when `splitmix64(i * 4 + f) % 10000 < p`, else "out".

Usage (from the repository root):

    data/peers-venv/bin/python benches/filtered_peer.py --data data/glove-50-angular
    data/peers-venv/bin/python benches/filtered_peer.py --data data/glove-50-angular \\
        --no-payload-index                       # no keyword index on the fields
    data/peers-venv/bin/python benches/filtered_peer.py --data data/glove-50-angular \\
        --n 20000 --queries 200                  # quick check on a subset

The shard is built in a fresh directory each run (`--workdir`, a temporary directory by
default, removed afterwards). By default a keyword payload index is created on all four
fields after the upsert and before `optimize()`, so the HNSW build sees it (Qdrant then adds
payload-aware links for the indexed keyword values) and the query planner can estimate
filter cardinality. The first query of each filter is timed apart from the sweep, then nine
more warm it up, as in the Rust example.
"""

import argparse
import importlib.metadata
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import qdrant_edge as q

from filtered_workload import FIELDS, K, cases, pass_masks, read_fvecs

# Qdrant's default HNSW full_scan_threshold (KB of vector data); qdrant_edge requires a value.
FULL_SCAN_THRESHOLD_KB = 10_000


def build(base, masks, workdir, payload_index, threads):
    path = os.path.join(workdir, "shard")
    cfg = q.EdgeConfig(
        vectors=q.EdgeVectorParams(size=base.shape[1], distance=q.Distance.Cosine),
        hnsw_config=q.HnswIndexConfig(m=16, ef_construct=200,
                                      full_scan_threshold=FULL_SCAN_THRESHOLD_KB,
                                      max_indexing_threads=threads),
        optimizers=q.EdgeOptimizersConfig(default_segment_number=1,
                                          max_segment_size=10**9, indexing_threshold=1000),
        max_search_threads=1, wal_enabled=False)
    sh = q.EdgeShard.create(path, cfg)
    values = np.where(masks, "in", "out")  # (4, n) strings
    names = [name for _, name in FIELDS]
    t = time.perf_counter()
    step = 10000
    for s in range(0, base.shape[0], step):
        chunk = base[s:s + step].tolist()
        vals = values[:, s:s + step].T.tolist()
        sh.update(q.UpdateOperation.upsert_points(
            [q.Point(s + j, v, dict(zip(names, pv)))
             for j, (v, pv) in enumerate(zip(chunk, vals))]))
    t_up = time.perf_counter() - t
    if payload_index:
        for name in names:
            sh.update(q.UpdateOperation.create_field_index(name, q.PayloadSchemaType.Keyword))
    t_idx = time.perf_counter() - t - t_up
    sh.optimize()
    t_opt = time.perf_counter() - t - t_up - t_idx
    sh.flush()
    return sh, t_up, t_idx, t_opt


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/glove-50-angular")
    ap.add_argument("--queries", type=int, default=1000, help="use the first N queries")
    ap.add_argument("--ef", default="16,32,64,128,256", help="comma-separated hnsw_ef values")
    ap.add_argument("--workdir", default=None, help="shard directory parent (temp dir default)")
    ap.add_argument("--no-payload-index", action="store_true",
                    help="do not create keyword payload indexes on the fields")
    ap.add_argument("--n", type=int, default=None, help="use only the first N base vectors")
    ap.add_argument("--threads", type=int, default=0,
                    help="max_indexing_threads for the HNSW build (0 = auto)")
    args = ap.parse_args()
    efs = [int(x) for x in args.ef.split(",") if x]
    payload_index = not args.no_payload_index

    base = read_fvecs(os.path.join(args.data, "base.fvecs"), args.n)
    queries = read_fvecs(os.path.join(args.data, "query.fvecs"), args.queries)
    n, dim = base.shape
    nq = len(queries)
    name = os.path.basename(os.path.normpath(args.data))
    version = importlib.metadata.version("qdrant-edge-py")
    print(f"dataset {name} ({n} x {dim}, {nq} queries); payload index: {payload_index}")

    masks = pass_masks(n)
    own_workdir = args.workdir is None
    workdir = tempfile.mkdtemp(prefix="filtered-peer-") if own_workdir else args.workdir
    os.makedirs(workdir, exist_ok=True)
    try:
        sh, t_up, t_idx, t_opt = build(base, masks, workdir, payload_index, args.threads)
        info = sh.info()
        print(f"built in {t_up + t_idx + t_opt:.1f} s (upsert {t_up:.1f} s, payload index "
              f"{t_idx:.1f} s, optimize {t_opt:.1f} s); segments={info.segments_count} "
              f"points={info.points_count} indexed={info.indexed_vectors_count} "
              f"payload_schema={sorted(info.payload_schema)}")
        if info.points_count != n:
            raise SystemExit(f"error: shard has {info.points_count} points, expected {n}")

        base_n = base / np.linalg.norm(base, axis=1, keepdims=True)
        queries_n = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        qlist = queries.tolist()

        print()
        print("| filter | passing | first query ms | ef | recall@10 | QPS |")
        print("|---|---|---|---|---|---|")
        for case, allowed, label, passing, truth_sets, expected in cases(masks, base_n, queries_n):
            flt = None if case is None else q.Filter(must=[q.FieldCondition(
                key=FIELDS[case][1], match=q.MatchValue("in"))])

            def request(qi, ef):
                return q.QueryRequest(limit=K, query=q.Query.Nearest(qlist[qi]), filter=flt,
                                      params=q.SearchParams(hnsw_ef=ef))

            # The first query of a filter is timed apart; the next few warm up the caches.
            t = time.perf_counter()
            first = sh.query(request(0, efs[0]))
            first_ms = (time.perf_counter() - t) * 1e3
            assert all(allowed[p.id] for p in first), "first query returned a filtered-out id"
            for qi in range(1, min(10, nq)):
                sh.query(request(qi, efs[0]))

            for ef in efs:
                batch = q.QueryBatchRequest([request(qi, ef) for qi in range(nq)])
                best = float("inf")
                for _ in range(2):
                    t = time.perf_counter()
                    res = sh.query_batch(batch)
                    best = min(best, time.perf_counter() - t)
                found = [[p.id for p in r] for r in res]
                flat = np.fromiter((i for f in found for i in f), dtype=np.int64)
                assert flat.size == 0 or (flat.min() >= 0 and flat.max() < n), "id out of range"
                assert allowed[flat].all(), \
                    f"filter {label}: {int((~allowed[flat]).sum())} returned ids fail the filter"
                assert all(len(f) == min(K, passing) for f in found), "short result list"
                hits = sum(len(truth_sets[qi].intersection(f)) for qi, f in enumerate(found))
                recall = hits / max(expected, 1)
                print(f"| {label} | {passing} | {first_ms:.2f} | {ef} | {recall:.4f} | "
                      f"{nq / best:.0f} |", flush=True)
        print()
        print(f"qdrant-edge-py {version}: EdgeShard, Cosine, HNSW m=16 ef_construct=200 "
              f"full_scan_threshold={FULL_SCAN_THRESHOLD_KB} KB (Qdrant default) "
              f"max_indexing_threads={args.threads}, default_segment_number=1, "
              f"indexing_threshold=1000 KB, max_search_threads=1, wal_enabled=False, payload "
              f"memory default; keyword payload index on all four fields: "
              f"{'yes (before optimize)' if payload_index else 'no'}; query_batch, one thread, "
              f"QPS best of 2 runs; filter must[FieldCondition(key, MatchValue('in'))]")
        sh.close()
    finally:
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

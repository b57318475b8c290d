"""Multivector (late-interaction) search in Qdrant's embedded engine (qdrant-edge-py), the
peer of `benches/examples/multivector.rs`: the ColBERT-shaped set
`benches/make_multivector.py` builds, one cosine multivector scored by MaxSim, single-thread
QPS and recall@10 against the exact answers: through Qdrant's HNSW graph (whose distance is
MaxSim itself; m 16, ef_construct 100, as ours) at several `hnsw_ef`, and exactly.

Usage (from the repository root):

    data/peers-venv/bin/python benches/make_multivector.py
    data/peers-venv/bin/python benches/multivector_peer.py --data data/multi-synth

The shard is built in a fresh temporary directory, optimised, then each query is run once to
warm up and the timed passes follow (best of `--passes`).
"""

import argparse
import importlib.metadata
import os
import shutil
import tempfile
import time

import numpy as np
import qdrant_edge as q

K = 10


def matrices(data, rows, starts):
    r = np.load(os.path.join(data, rows))
    s = np.load(os.path.join(data, starts)).ravel()
    return [r[s[i]:s[i + 1]].tolist() for i in range(len(s) - 1)]


def recall(got_scores, truth_scores):
    """Share of the true top-10 slots filled by a point scoring at least the true 10th."""
    kth = truth_scores[-1]
    return min(len(truth_scores),
               sum(1 for s in got_scores if s >= kth - 1e-4 * abs(kth))) / len(truth_scores)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="data/multi-synth")
    ap.add_argument("--passes", type=int, default=3)
    args = ap.parse_args()
    docs = matrices(args.data, "docs.npy", "doc-starts.npy")
    queries = matrices(args.data, "queries.npy", "query-starts.npy")
    truth = np.load(os.path.join(args.data, "truth-scores.npy"))
    dim = len(docs[0][0])

    work = tempfile.mkdtemp()
    try:
        cfg = q.EdgeConfig(
            vectors={"colbert": q.EdgeVectorParams(
                size=dim, distance=q.Distance.Cosine,
                multivector_config=q.MultiVectorConfig(q.MultiVectorComparator.MaxSim))},
            hnsw_config=q.HnswIndexConfig(m=16, ef_construct=100, full_scan_threshold=10),
            optimizers=q.EdgeOptimizersConfig(default_segment_number=1,
                                              max_segment_size=10**9, indexing_threshold=10),
            max_search_threads=1, wal_enabled=False)
        sh = q.EdgeShard.create(os.path.join(work, "shard"), cfg)
        t = time.perf_counter()
        for start in range(0, len(docs), 1000):
            sh.update(q.UpdateOperation.upsert_points(
                [q.Point(i, {"colbert": docs[i]}) for i in range(start, min(start + 1000,
                                                                           len(docs)))]))
        t_up = time.perf_counter() - t
        sh.optimize()
        t_opt = time.perf_counter() - t - t_up
        version = importlib.metadata.version("qdrant-edge-py")
        print(f"qdrant-edge-py {version}: {len(docs)} documents, upsert {t_up:.1f} s, "
              f"optimize (graph build) {t_opt:.1f} s")

        def measure(params):
            def run(qi):
                return sh.query(q.QueryRequest(limit=K, params=params, query=q.Query.Nearest(
                    queries[qi], using="colbert")))
            got = [run(qi) for qi in range(len(queries))]
            r = float(np.mean([recall([p.score for p in g], truth[qi])
                               for qi, g in enumerate(got)]))
            best = 0.0
            for _ in range(args.passes):
                t = time.perf_counter()
                for qi in range(len(queries)):
                    run(qi)
                best = max(best, len(queries) / (time.perf_counter() - t))
            return r, best

        r, qps = measure(q.SearchParams(exact=True))
        print(f"qdrant-edge-py exact: recall@10 {r:.4f}, QPS {qps:.1f} (one thread, "
              f"best of {args.passes})")
        for ef in [None, 200, 400, 800]:
            r, qps = measure(q.SearchParams(hnsw_ef=ef))
            print(f"qdrant-edge-py HNSW, hnsw_ef {ef or 'default'}: recall@10 {r:.4f}, "
                  f"QPS {qps:.1f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

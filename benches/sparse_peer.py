"""Sparse search in Qdrant's embedded engine (qdrant-edge-py), the peer of
`benches/examples/sparse.rs`: the set `benches/make_sparse.py` builds (BM25 document
vectors over Python's standard library, queries of 2 to 6 terms), a sparse vector with the
`idf` modifier, single-thread QPS and recall@10 against the exact answers.

Usage (from the repository root):

    data/peers-venv/bin/python benches/make_sparse.py
    data/peers-venv/bin/python benches/sparse_peer.py --data data/sparse-stdlib

The shard is built in a fresh temporary directory, optimised, then each query is run once to
warm up and the timed passes follow (best of `--passes`).
"""

import argparse
import importlib.metadata
import os
import shutil
import struct
import tempfile
import time
import zlib

import numpy as np
import qdrant_edge as q

K = 10


def read_sparse(path):
    """(row_starts, indices, values) of a `make_sparse.py` file, checked."""
    raw = open(path, "rb").read()
    assert raw[:8] == b"VRSPARSE", f"{path}: not a sparse file"
    version, rows, entries = struct.unpack_from("<IQQ", raw, 8)
    assert version == 1, f"{path}: version {version}"
    (crc,) = struct.unpack_from("<I", raw, 28)
    body = raw[32:]
    assert zlib.crc32(body) == crc, f"{path}: checksum mismatch"
    starts = np.frombuffer(body, "<u8", rows + 1)
    at = (rows + 1) * 8
    indices = np.frombuffer(body, "<u4", entries, at)
    values = np.frombuffer(body, "<f4", entries, at + entries * 4)
    return starts, indices, values


def rows(data):
    starts, indices, values = data
    for r in range(len(starts) - 1):
        a, b = int(starts[r]), int(starts[r + 1])
        yield indices[a:b].tolist(), values[a:b].tolist()


def recall(got_scores, truth_scores):
    """Share of the true top-10 slots filled by a point scoring at least the true 10th
    (ties count whichever point came)."""
    want = truth_scores[truth_scores > 0]
    if len(want) == 0:
        return 1.0
    kth = want[-1]
    return min(len(want), sum(1 for s in got_scores if s >= kth - 1e-4 * abs(kth))) / len(want)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="data/sparse-stdlib")
    ap.add_argument("--passes", type=int, default=3)
    args = ap.parse_args()
    docs = read_sparse(os.path.join(args.data, "docs.sparse"))
    queries = list(rows(read_sparse(os.path.join(args.data, "queries.sparse"))))
    truth = np.load(os.path.join(args.data, "truth-scores.npy"))

    work = tempfile.mkdtemp()
    try:
        cfg = q.EdgeConfig(
            vectors={},
            sparse_vectors={"text": q.EdgeSparseVectorParams(modifier=q.Modifier.Idf)},
            optimizers=q.EdgeOptimizersConfig(default_segment_number=1,
                                              max_segment_size=10**9, indexing_threshold=1000),
            max_search_threads=1, wal_enabled=False)
        sh = q.EdgeShard.create(os.path.join(work, "shard"), cfg)
        t = time.perf_counter()
        batch = []
        for i, (idx, val) in enumerate(rows(docs)):
            batch.append(q.Point(i, {"text": q.SparseVector(idx, val)}))
            if len(batch) == 5000:
                sh.update(q.UpdateOperation.upsert_points(batch))
                batch = []
        if batch:
            sh.update(q.UpdateOperation.upsert_points(batch))
        t_up = time.perf_counter() - t
        sh.optimize()
        t_opt = time.perf_counter() - t - t_up

        def run(qi):
            idx, val = queries[qi]
            return sh.query(q.QueryRequest(
                limit=K, query=q.Query.Nearest(q.SparseVector(idx, val), using="text")))

        got = [run(qi) for qi in range(len(queries))]
        r = float(np.mean([recall([p.score for p in g], truth[qi]) for qi, g in enumerate(got)]))
        best = 0.0
        for _ in range(args.passes):
            t = time.perf_counter()
            for qi in range(len(queries)):
                run(qi)
            best = max(best, len(queries) / (time.perf_counter() - t))
        print(f"qdrant-edge-py {importlib.metadata.version('qdrant-edge-py')}: "
              f"{len(docs[0]) - 1} docs, upsert {t_up:.1f} s, optimize {t_opt:.1f} s, "
              f"recall@10 {r:.4f}, QPS {best:,.0f} (one thread, best of {args.passes})")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Measure recommendation queries over Qdrant's REST API: QPS and recall@10 against exact.

A user liked three items and disliked two: for glove query `i`, the positives are the ids
the dataset's ground truth ranks 0, 1 and 2 for that query, the negatives those it ranks 10
and 20 (items close to the liked ones: the hard case, where a negative changes the answer).
Each request is `{"query": {"recommend": {"positive": [...], "negative": [...], "strategy":
s}}, "limit": 10, "params": {"hnsw_ef": ef}}` for s in `average_vector` and `best_score`,
over an `hnsw_ef` sweep; the examples are point ids, so the server reads their vectors and
leaves them out of the results, as Qdrant does.

The exact answers come from numpy over the whole set (vectors normalised, cosine): for
`average_vector` the nearest points to `2·mean(positive) − mean(negative)`; for
`best_score` Qdrant's score (the best similarity to a positive squashed by
`0.5·(1 + x/(1+|x|))` when it beats the best to a negative, else minus the squashed best
negative). Recall@10 is the share of the exact top-10 ids returned; a tie at the 10th score
counts whichever tied id came.

One client, one keep-alive connection, sequential requests; QPS of the best of --repeat
passes. Start our router with `--cache-ttl-secs 0`, or the repeated passes measure the cache.
Loads the collection like `http_filtered.py` (same points, payloads and HNSW settings) unless
--skip-load. From the repository root, with the peers virtual environment (numpy):

    data/peers-venv/bin/python benches/http_recommend.py --url http://127.0.0.1:6333 \\
        --data data/glove-50-angular --skip-load --collection filtered
"""

import argparse
import json
import os
import sys
import time

import numpy as np

from filtered_workload import pass_masks, read_fvecs
from http_filtered import Conn, cache_hits, load, percentile

K = 10
POSITIVE_RANKS = (0, 1, 2)
NEGATIVE_RANKS = (10, 20)


def read_ivecs(path):
    raw = np.fromfile(path, dtype=np.int32)
    dim = int(raw[0])
    return raw.reshape(-1, dim + 1)[:, 1:]


def squash(x):
    return 0.5 * (x / (1.0 + np.abs(x)) + 1.0)


def exact_answers(base, examples, strategy):
    """The exact top-K ids per query (examples left out) and the K-th score."""
    out = []
    for pos, neg in examples:
        if strategy == "average_vector":
            q = 2 * base[pos].mean(axis=0) - base[neg].mean(axis=0)
            q /= np.linalg.norm(q)
            scores = base @ q
        else:
            p = (base @ base[pos].T).max(axis=1)
            n = (base @ base[neg].T).max(axis=1)
            scores = np.where(p > n, squash(p), -squash(n))
        scores[list(pos) + list(neg)] = -np.inf
        top = np.argpartition(-scores, K)[:K]
        top = top[np.argsort(-scores[top])]
        out.append((set(int(i) for i in top), float(scores[top[-1]]), scores))
    return out


def run(c, path, bodies):
    """(seconds per request, answers) of one sequential pass."""
    times, answers = [], []
    for body in bodies:
        t = time.perf_counter()
        c.conn.request("POST", path, body=body, headers=c.headers)
        r = c.conn.getresponse()
        data = r.read()
        times.append(time.perf_counter() - t)
        if r.status != 200:
            raise RuntimeError(f"POST {path}: {r.status} {data[:500]!r}")
        answers.append([(p["id"], p["score"]) for p in json.loads(data)["result"]["points"]])
    return times, answers


def recall(answers, truth):
    found = 0
    for got, (ids, kth, scores) in zip(answers, truth):
        for pid, score in got[:K]:
            # A tie at the K-th score counts whichever tied id came.
            found += pid in ids or abs(scores[pid] - kth) <= 1e-6 * max(1.0, abs(kth))
    return found / (K * len(truth))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:6333")
    p.add_argument("--data", default="data/glove-50-angular")
    p.add_argument("--collection", default="filtered")
    p.add_argument("--skip-load", action="store_true")
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--green-timeout", type=float, default=1800)
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--efs", default="16,32,64,128")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--exact-queries", type=int, default=20,
                   help="queries also sent with exact=true (a scan of every point)")
    p.add_argument("--out")
    a = p.parse_args()

    base = read_fvecs(os.path.join(a.data, "base.fvecs"))
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    gt = read_ivecs(os.path.join(a.data, "groundtruth.ivecs"))
    c = Conn(a.url)
    if not a.skip_load:
        load(c, a, base, pass_masks(len(base)))
    examples = [([int(gt[i, r]) for r in POSITIVE_RANKS], [int(gt[i, r]) for r in NEGATIVE_RANKS])
                for i in range(a.queries)]
    path = f"/collections/{a.collection}/points/query"
    hits_before = cache_hits(c)
    results = []
    for strategy in ("average_vector", "best_score"):
        t = time.perf_counter()
        truth = exact_answers(base, examples, strategy)
        print(f"{strategy}: exact answers in {time.perf_counter() - t:.1f} s", flush=True)

        def bodies(params, n=len(examples)):
            return [json.dumps({"query": {"recommend": {"positive": pos, "negative": neg,
                                                        "strategy": strategy}},
                                "limit": K, "params": params}).encode()
                    for pos, neg in examples[:n]]

        for ef in [int(x) for x in a.efs.split(",")]:
            body = bodies({"hnsw_ef": ef})
            run(c, path, body[:20])  # warm-up
            best = None
            for _ in range(a.repeat):
                times, answers = run(c, path, body)
                if best is None or sum(times) < sum(best[0]):
                    best = (times, answers)
            times, answers = best
            lat = sorted(times)
            row = {"strategy": strategy, "ef": ef, "recall": recall(answers, truth),
                   "qps": len(times) / sum(times), "p50_ms": percentile(lat, 0.5) * 1e3,
                   "p99_ms": percentile(lat, 0.99) * 1e3}
            results.append(row)
            print(f"{strategy} ef {ef}: recall@10 {row['recall']:.4f}, {row['qps']:,.0f} QPS, "
                  f"p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms", flush=True)
        if a.exact_queries:
            times, answers = run(c, path, bodies({"exact": True}, a.exact_queries))
            row = {"strategy": strategy, "ef": "exact",
                   "recall": recall(answers, truth[:a.exact_queries]),
                   "qps": len(times) / sum(times), "p50_ms": percentile(sorted(times), 0.5) * 1e3,
                   "p99_ms": percentile(sorted(times), 0.99) * 1e3}
            results.append(row)
            print(f"{strategy} exact: recall@10 {row['recall']:.4f}, {row['qps']:,.1f} QPS, "
                  f"p50 {row['p50_ms']:.1f} ms", flush=True)
    hits_after = cache_hits(c)
    if hits_before is not None and hits_after is not None and hits_after > hits_before:
        print(f"WARNING: {hits_after - hits_before:.0f} result-cache hits during the run: "
              "start the router with --cache-ttl-secs 0", file=sys.stderr)
    print("\n| strategy | ef | recall@10 | QPS | p50 ms | p99 ms |\n|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['strategy']} | {r['ef']} | {r['recall']:.4f} | {r['qps']:,.0f} | "
              f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} |")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()

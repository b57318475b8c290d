#!/usr/bin/env python3
"""Writes a seeded clustered dataset unlike glove, in the TexMex layout of
../shared/datasets/prepare.sh, so that the same benchmarks (ours and ../shared/bench/peers.py)
run on it: a second set on which a gain tuned to glove must hold.

The vectors are built like real embeddings of higher dimension: 1,000 cluster centres on a
128-dimensional latent space, each point a centre plus a Gaussian spread wide enough that the clusters overlap (with
narrow clusters a graph finds the top-10 at ef 16, and the set tells nothing), mapped to DIM dimensions
by a fixed random linear map, plus a little noise in every dimension, then L2-normalised
(angular, as glove-50-angular: inner product = cosine). Queries are drawn the same way with
another seed. Ground truth: exact top-100 by inner product, best first, ties to the lower id.

    data/peers-venv/bin/python benches/make_clustered.py                    # data/clustered-384-angular
    data/peers-venv/bin/python benches/make_clustered.py --dim 768 --n 100000 --out data/clustered-768-angular
"""
import argparse
import json
import os

import numpy as np

LATENT = 128
CENTRES = 1000
K = 100
CHUNK = 1_000_000


def write_vecs(path, arr):
    arr = np.ascontiguousarray(arr)
    rows, dim = arr.shape
    out = np.empty((rows, dim + 1), dtype=np.int32)
    out[:, 0] = dim
    out[:, 1:] = arr.view(np.int32)
    out.tofile(path)


def draw(rng, n, dim, centres, mapping, spread):
    which = rng.integers(0, CENTRES, size=n)
    latent = centres[which] + spread * rng.standard_normal((n, LATENT), dtype=np.float32)
    x = latent @ mapping + 0.1 * rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--nq", type=int, default=1_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    out = args.out or f"data/clustered-{args.dim}-angular"
    os.makedirs(out, exist_ok=True)

    fixed = np.random.default_rng(args.seed)
    mapping = (fixed.standard_normal((LATENT, args.dim)) / np.sqrt(LATENT)).astype(np.float32)
    centres = fixed.uniform(-1, 1, (CENTRES, LATENT)).astype(np.float32)
    rng = np.random.default_rng(args.seed + 1)
    if args.n <= CHUNK:
        base = draw(rng, args.n, args.dim, centres, mapping, 0.8)
    else:
        # Past a million points, drawn a million at a time (the latent draw alone would take
        # 512 bytes a point at once); sets up to a million are the same as before.
        base = np.empty((args.n, args.dim), dtype=np.float32)
        for start in range(0, args.n, CHUNK):
            rows = min(CHUNK, args.n - start)
            base[start:start + rows] = draw(rng, rows, args.dim, centres, mapping, 0.8)
    queries = draw(np.random.default_rng(args.seed + 2), args.nq, args.dim, centres, mapping, 0.8)

    ids = np.empty((args.nq, K), dtype=np.int32)
    scores = np.empty((args.nq, K), dtype=np.float32)
    # Score blocks of queries against the whole base: at most about 400 MB of scores at once.
    block = max(1, min(100, 100_000_000 // args.n))
    for start in range(0, args.nq, block):
        q = queries[start:start + block]
        s = q @ base.T
        top = np.argpartition(-s, K, axis=1)[:, :K]
        for r in range(q.shape[0]):
            cand = top[r]
            # best first; ties to the lower id (lexsort: last key is primary)
            order = np.lexsort((cand, -s[r, cand]))
            ids[start + r] = cand[order]
            scores[start + r] = s[r, cand[order]]

    write_vecs(os.path.join(out, "base.fvecs"), base)
    write_vecs(os.path.join(out, "query.fvecs"), queries)
    write_vecs(os.path.join(out, "groundtruth.ivecs"), ids.view(np.float32))
    write_vecs(os.path.join(out, "groundtruth_scores.fvecs"), scores)
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump({"generator": "benches/make_clustered.py", "dim": args.dim, "n": args.n,
                   "nq": args.nq, "seed": args.seed, "latent": LATENT, "centres": CENTRES,
                   "metric": "angular (unit vectors, inner product)", "k": K}, f, indent=1)
    print(f"wrote {out}: {args.n} x {args.dim}, {args.nq} queries, exact top-{K}")


if __name__ == "__main__":
    main()

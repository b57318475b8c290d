"""A seeded late-interaction set (ColBERT-shaped) for the multivector benchmarks: documents of
16 to 48 unit rows of 128 dimensions, each row near one of the document's four topics (of
1,024 topic directions), and queries of 16 rows near two topics of a document they are
written about; exact MaxSim top-10 answers computed here with numpy.

No real ColBERT embeddings can be fetched here (no network beyond package registries), so the
set is synthetic; its shape follows ColBERTv2 on MS MARCO passages (128-dimensional unit
token vectors, 32-token queries are usually padded, passages of tens of tokens), and its
clustering makes the nearest documents those sharing a query's topics, as with real text.

Usage (from the repository root):

    data/peers-venv/bin/python benches/make_multivector.py [--docs 5000] [--queries 200]

Writes to data/multi-synth/: docs.npy (every document row, f32, rows × 128), doc-starts.npy
(i32, documents + 1: where each document's rows begin), queries.npy, query-starts.npy,
truth-scores.npy (f32, queries × 10, best first) and truth-ids.npy (i32).
"""

import argparse
import os

import numpy as np

DIM = 128
TOPICS = 1024
SPREAD = 0.9  # noise norm relative to the unit topic direction, before normalising


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def rows_near(rng, centres, topics, n):
    picks = centres[rng.choice(topics, n)]
    noise = rng.standard_normal((n, DIM)).astype(np.float32) * (SPREAD / np.sqrt(DIM))
    return unit(picks + noise).astype(np.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=5000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--out", default="data/multi-synth")
    ap.add_argument("--seed", type=int, default=17)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    centres = unit(rng.standard_normal((TOPICS, DIM))).astype(np.float32)

    doc_topics = [rng.choice(TOPICS, 4, replace=False) for _ in range(args.docs)]
    doc_rows = [rows_near(rng, centres, t, int(rng.integers(16, 49))) for t in doc_topics]
    starts = np.zeros(args.docs + 1, dtype=np.int32)
    starts[1:] = np.cumsum([len(r) for r in doc_rows])
    docs = np.concatenate(doc_rows)

    q_rows = []
    for _ in range(args.queries):
        about = doc_topics[int(rng.integers(args.docs))]
        q_rows.append(rows_near(rng, centres, rng.choice(about, 2, replace=False), 16))
    q_starts = np.zeros(args.queries + 1, dtype=np.int32)
    q_starts[1:] = np.cumsum([len(r) for r in q_rows])
    queries = np.concatenate(q_rows)

    scores = np.zeros((args.queries, 10), dtype=np.float32)
    ids = np.zeros((args.queries, 10), dtype=np.int32)
    for qi, q in enumerate(q_rows):
        sims = q @ docs.T  # query rows × every document row
        best = np.maximum.reduceat(sims, starts[:-1], axis=1)  # query rows × documents
        total = best.sum(axis=0)
        top = np.argsort(-total, kind="stable")[:10]
        scores[qi], ids[qi] = total[top], top

    os.makedirs(args.out, exist_ok=True)
    for name, arr in [("docs", docs), ("doc-starts", starts.reshape(-1, 1)),
                      ("queries", queries), ("query-starts", q_starts.reshape(-1, 1)),
                      ("truth-scores", scores), ("truth-ids", ids)]:
        np.save(os.path.join(args.out, f"{name}.npy"), arr)
    print(f"{args.out}: {args.docs} documents ({len(docs)} rows), {args.queries} queries")


if __name__ == "__main__":
    main()

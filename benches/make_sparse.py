"""A real sparse set: BM25 document vectors over the paragraphs of Python's standard library
source (what every Python installation ships: public, versioned, reproducible), and short
queries drawn from it, with their exact top-10 under Qdrant's IDF modifier.

Each paragraph (text between blank lines) of every `.py` file under the interpreter's
`stdlib` directory, `site-packages` left out, is a document when it has at least 3 tokens;
tokens are lowercase runs `[a-z][a-z0-9]+` (identifiers, words), numbered by sorted term. A
document's weight for a term is BM25's saturated term frequency
`tf (k1 + 1) / (tf + k1 (1 − b + b · len / avg_len))` (k1 1.2, b 0.75), the weights Qdrant's
BM25 stores; the inverse document frequency is applied at query time by the `idf` modifier.
A query is 2 to 6 distinct tokens of a random document, each weighted 1. Its truth is the
exact top-10 by `Σ idf(t) · w(d, t)` with `idf = ln((N − df + 0.5)/(df + 0.5) + 1)`, N the
documents, computed here with NumPy, independent of the engines measured.

Output in `--out` (default `data/sparse-stdlib`):
- `docs.sparse`, `queries.sparse`: the vectors, in the layout below;
- `truth-ids.npy` (`<i4`, queries × 10; -1 past the matches) and `truth-scores.npy` (`<f4`);
- `meta.json`: Python version, the counts, and the SHA-256 of the corpus text.

Sparse file layout (little-endian), version 1:

    [magic "VRSPARSE"][version u32 = 1][rows u64][entries u64][crc32 of the rest u32]
    [row_start u64 × (rows + 1)][index u32 × entries][value f32 × entries]

Usage: `data/peers-venv/bin/python benches/make_sparse.py` (about a minute).
"""

import argparse
import hashlib
import json
import math
import pathlib
import random
import re
import struct
import sys
import sysconfig
import zlib

import numpy as np

K1, B = 1.2, 0.75
TOP = 10


def corpus():
    root = pathlib.Path(sysconfig.get_paths()["stdlib"])
    token = re.compile(r"[a-z][a-z0-9]+")
    sha = hashlib.sha256()
    docs = []
    for path in sorted(root.rglob("*.py")):
        if "site-packages" in path.parts:
            continue
        text = path.read_text(errors="replace")
        sha.update(text.encode())
        for para in re.split(r"\n\s*\n", text):
            toks = token.findall(para.lower())
            if len(toks) >= 3:
                docs.append(toks)
    return docs, sha.hexdigest()


def write_sparse(path, rows):
    """rows: list of (indices uint32 array ascending, values float32 array)."""
    starts = np.zeros(len(rows) + 1, dtype="<u8")
    starts[1:] = np.cumsum([len(i) for i, _ in rows])
    indices = np.concatenate([i for i, _ in rows]).astype("<u4")
    values = np.concatenate([v for _, v in rows]).astype("<f4")
    body = starts.tobytes() + indices.tobytes() + values.tobytes()
    head = b"VRSPARSE" + struct.pack("<IQQ", 1, len(rows), len(indices))
    with open(path, "wb") as f:
        f.write(head + struct.pack("<I", zlib.crc32(body)) + body)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="data/sparse-stdlib")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    docs, sha = corpus()
    terms = sorted({t for d in docs for t in d})
    term_id = {t: i for i, t in enumerate(terms)}
    avg = sum(len(d) for d in docs) / len(docs)
    rows = []
    for d in docs:
        tf = {}
        for t in d:
            tf[term_id[t]] = tf.get(term_id[t], 0) + 1
        idx = np.array(sorted(tf), dtype=np.uint32)
        norm = K1 * (1 - B + B * len(d) / avg)
        val = np.array([tf[i] * (K1 + 1) / (tf[i] + norm) for i in idx], dtype=np.float32)
        rows.append((idx, val))
    write_sparse(out / "docs.sparse", rows)

    rng = random.Random(args.seed)
    queries = []
    for _ in range(args.queries):
        d = sorted({term_id[t] for t in rng.choice(docs)})
        picked = sorted(rng.sample(d, min(len(d), rng.randint(2, 6))))
        queries.append((np.array(picked, dtype=np.uint32), np.ones(len(picked), dtype=np.float32)))
    write_sparse(out / "queries.sparse", queries)

    # Exact answers: per term, its postings; scores accumulated per query.
    n = len(rows)
    postings_docs = [[] for _ in terms]
    postings_w = [[] for _ in terms]
    for doc, (idx, val) in enumerate(rows):
        for i, v in zip(idx.tolist(), val.tolist()):
            postings_docs[i].append(doc)
            postings_w[i].append(v)
    postings = [(np.array(d, dtype=np.int64), np.array(w, dtype=np.float32))
                for d, w in zip(postings_docs, postings_w)]
    ids = np.full((len(queries), TOP), -1, dtype="<i4")
    scores = np.zeros((len(queries), TOP), dtype="<f4")
    for qi, (idx, val) in enumerate(queries):
        acc = np.zeros(n, dtype=np.float64)
        hit = np.zeros(n, dtype=bool)
        for i, qv in zip(idx.tolist(), val.tolist()):
            d, w = postings[i]
            idf = math.log((n - len(d) + 0.5) / (len(d) + 0.5) + 1)
            acc[d] += qv * idf * w.astype(np.float64)
            hit[d] = True
        cand = np.flatnonzero(hit)
        order = cand[np.lexsort((cand, -acc[cand]))][:TOP]
        ids[qi, :len(order)] = order
        scores[qi, :len(order)] = acc[order]
    np.save(out / "truth-ids.npy", ids)
    np.save(out / "truth-scores.npy", scores)
    meta = {"python": sys.version.split()[0], "docs": n, "terms": len(terms),
            "entries": int(sum(len(i) for i, _ in rows)), "queries": len(queries),
            "corpus_sha256": sha, "k1": K1, "b": B, "seed": args.seed}
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(json.dumps(meta))


if __name__ == "__main__":
    main()

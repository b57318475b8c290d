"""The filtered-search workload shared by `benches/filtered_peer.py` and
`benches/http_filtered.py` (and, in Rust, by `benches/examples/filtered.rs`): TexMex readers,
the seeded keyword payloads and the exact filtered top-K.

Point `i` has, for each field `s{p}` (p in 5000, 1000, 100, 10: hundredths of a percent;
field index f = 0..3), the value "in" when `splitmix64(i * 4 + f) % 10000 < p`, else "out".
"""

import numpy as np

K = 10
# Selectivities in hundredths of a percent, and their field names (index = field index f).
FIELDS = [(5000, "s5000"), (1000, "s1000"), (100, "s100"), (10, "s10")]


def read_fvecs(path, limit=None):
    """Rows of an .fvecs file as a float32 (n, dim) array."""
    raw = np.fromfile(path, dtype=np.int32)
    if raw.size == 0:
        raise SystemExit(f"error: {path} is empty")
    dim = int(raw[0])
    rows = raw.reshape(-1, dim + 1)
    if not (rows[:, 0] == dim).all():
        raise SystemExit(f"error: {path}: rows of mixed dimension")
    if limit is not None:
        rows = rows[:limit]
    return np.ascontiguousarray(rows[:, 1:]).view(np.float32)


def splitmix64(x):
    """Vectorised splitmix64 over a numpy uint64 array (wrapping arithmetic)."""
    x = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


assert int(splitmix64(np.array([0], dtype=np.uint64))[0]) == 0xE220A8397B1DCDAF


def pass_masks(n):
    """Boolean (4, n): whether point i has the value "in" in field f."""
    i = np.arange(n, dtype=np.uint64)
    masks = np.empty((len(FIELDS), n), dtype=bool)
    for f, (threshold, _) in enumerate(FIELDS):
        masks[f] = splitmix64(i * np.uint64(4) + np.uint64(f)) % np.uint64(10_000) < np.uint64(threshold)
    return masks


def cases(masks, base_n, queries_n):
    """Each filter case, unfiltered first: (field index or None, allowed mask, label, number
    passing, exact top-K id sets per query, total ids in them)."""
    n = masks.shape[1]
    for case in [None] + list(range(len(FIELDS))):
        allowed = np.ones(n, dtype=bool) if case is None else masks[case]
        label = "none" if case is None else f"{FIELDS[case][0] / 100:g}%"
        truth = exact_topk(base_n, queries_n, allowed)
        yield case, allowed, label, int(allowed.sum()), [set(t) for t in truth], sum(len(t) for t in truth)


def exact_topk(base_n, queries_n, allowed):
    """Exact top-K ids by dot product (vectors normalised) over the allowed base rows."""
    ids = np.flatnonzero(allowed)
    if len(ids) == 0:
        return [[] for _ in range(len(queries_n))]
    sub = base_n[ids]
    k = min(K, len(ids))
    out = []
    for s in range(0, len(queries_n), 100):
        scores = queries_n[s:s + 100] @ sub.T
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        ps = np.take_along_axis(scores, part, axis=1)
        order = np.argsort(-ps, axis=1, kind="stable")
        out.extend(ids[np.take_along_axis(part, order, axis=1)].tolist())
    return out

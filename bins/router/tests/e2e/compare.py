"""Comparing the router's answers with the oracle's.

Scores agree to a relative 1e-4. Points with equal scores may come in any order, and a group
of equal scores cut by `limit` may be cut differently, so a result is checked as: the same
number of points, the score at every rank close to the oracle's, and every returned id one the
oracle scores (close to) the same, with the same payload and vector.
"""

from __future__ import annotations

import math
import os
from typing import Any

REL = 1e-4
ABS = 1e-5

# Over gRPC the client reads a scored point's empty payload map as `None` (protobuf cannot tell
# an empty map from an absent one; qdrant_client's `convert_scored_point` maps length 0 to
# None), against any server. There `None` from the router stands for the oracle's `{}`.
GRPC = bool(os.environ.get("VR_E2E_GRPC_PORT"))


def close(a: float, b: float, rel: float = REL, abs_tol: float = ABS) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_tol)


def same_json(a: Any, b: Any, path: str = "") -> str | None:
    """None when equal (floats exact: JSON round-trips them), else where they differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return f"{path}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            d = same_json(a[k], b[k], f"{path}.{k}")
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            d = same_json(x, y, f"{path}[{i}]")
            if d:
                return d
        return None
    if type(a) is not type(b) and not (isinstance(a, (int, float)) and isinstance(b, (int, float))
                                       and not isinstance(a, bool) and not isinstance(b, bool)):
        return f"{path}: {a!r} != {b!r}"
    if a != b:
        return f"{path}: {a!r} != {b!r}"
    return None


def same_vector(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, dict):
        return isinstance(b, dict) and set(a) == set(b) and all(same_vector(a[k], b[k]) for k in a)
    if hasattr(a, "indices") or hasattr(b, "indices"):
        # Sparse vectors: the same indices (answered sorted), values as dense ones compare.
        return (hasattr(a, "indices") and hasattr(b, "indices")
                and list(a.indices) == list(b.indices) and same_vector(a.values, b.values))
    if (a and isinstance(a[0], list)) or (b and isinstance(b[0], list)):
        # Multivectors: row by row.
        return (len(a) == len(b) and all(isinstance(x, list) and isinstance(y, list)
                                         and same_vector(x, y) for x, y in zip(a, b)))
    return len(a) == len(b) and all(close(x, y, 1e-5, 1e-6) for x, y in zip(a, b))


def record_diff(r, o, what: str) -> str | None:
    """A Record or ScoredPoint of the router against the oracle's."""
    if r.id != o.id:
        return f"{what}: id {r.id} != {o.id}"
    payload = {} if GRPC and r.payload is None and o.payload == {} else r.payload
    d = same_json(payload, o.payload, "payload")
    if d:
        return f"{what} id {r.id}: {d}"
    if not same_vector(r.vector, o.vector):
        return f"{what} id {r.id}: vector {r.vector} != {o.vector}"
    return None


def check_scored(got: list, full: list, offset: int, limit: int, ctx: str) -> None:
    """`got`: the router's page; `full`: the oracle's answer from rank 0 with room to spare."""
    want = full[offset:offset + limit]
    assert len(got) == len(want), (
        f"{ctx}: {len(got)} points, oracle {len(want)}\n got {[p.id for p in got]}\n"
        f" want {[p.id for p in want]}")
    by_id = {p.id: p for p in full}
    seen = set()
    for rank, (g, w) in enumerate(zip(got, want)):
        assert close(g.score, w.score), (
            f"{ctx}: rank {rank} score {g.score} != oracle {w.score}\n"
            f" got {[(p.id, p.score) for p in got]}\n want {[(p.id, p.score) for p in want]}")
        assert g.id not in seen, f"{ctx}: id {g.id} twice"
        seen.add(g.id)
        o = by_id.get(g.id)
        assert o is not None and close(g.score, o.score), (
            f"{ctx}: rank {rank}: id {g.id} (score {g.score}) is not what the oracle ranks there:"
            f" {w.id} (score {w.score}); oracle scores it {o.score if o else 'not at all'}")
        d = record_diff(g, o, ctx)
        assert d is None, d


def check_records(got: list, want: list, ctx: str, ordered: bool = True) -> None:
    if not ordered:
        got = sorted(got, key=lambda r: str(r.id))
        want = sorted(want, key=lambda r: str(r.id))
    assert [r.id for r in got] == [r.id for r in want], (
        f"{ctx}: ids differ\n got {[r.id for r in got]}\n want {[r.id for r in want]}")
    for g, w in zip(got, want):
        d = record_diff(g, w, ctx)
        assert d is None, d

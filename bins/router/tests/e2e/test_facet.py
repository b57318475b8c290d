"""Facets (`/collections/{name}/facet`): counts of a payload key's values under a filter,
over keyword, integer, boolean, array, nested and UUID-valued fields, with and without a
payload index, on one and three shards, compared with the oracle (order included: most
frequent first, ties by value)."""

from __future__ import annotations

import random
import uuid

import pytest
from qdrant_client import models

import data
from pair import Pair


def payload_of(rng: random.Random, i: int) -> dict:
    p = {
        "brand": f"b{rng.randrange(8)}",
        "n": rng.randrange(-3, 6),
        "flag": rng.random() < 0.3,
        "tags": rng.sample(["x", "y", "z", "w"], rng.randint(0, 3)),
        "nested": {"kind": rng.choice(["k1", "k2", "k3"])},
        "mixed": rng.choice(["s", 3, True, 2.5, None, ["s", "t"]]),
    }
    u = uuid.UUID(int=rng.randrange(4))
    # The same UUID spelt with and without hyphens counts as one value.
    p["owner"] = str(u) if rng.random() < 0.5 else u.hex
    if rng.random() < 0.1:
        del p["brand"]
    return p


@pytest.mark.parametrize("shards,index", [(1, False), (3, False), (2, True)])
def test_facet_matches_oracle(remote, oracle, shards, index):
    rng = random.Random(500 + shards + 10 * index)
    pair = Pair(remote, oracle, f"facet_{shards}_{int(index)}")
    pair.create(models.VectorParams(size=4, distance=models.Distance.DOT), shard_number=shards)
    pts = data.points(rng, 500, 4)
    for i, p in enumerate(pts):
        p.payload = payload_of(rng, i)
    pair.upsert(pts, rng)
    ids = [p.id for p in pts]
    if index:
        for key, schema in [("brand", "keyword"), ("n", "integer"), ("flag", "bool")]:
            remote.create_payload_index(pair.name, field_name=key, field_schema=schema, wait=True)
    for q in range(40):
        key = rng.choice(["brand", "n", "flag", "tags", "nested.kind", "mixed", "owner"])
        limit = rng.choice([1, 3, 10, 50])
        flt = data.random_filter(rng, ids) if rng.random() < 0.4 else None
        got = remote.facet(pair.name, key=key, facet_filter=flt, limit=limit, exact=True)
        want = oracle.facet(pair.name, key=key, facet_filter=flt, limit=limit)
        assert [(h.value, h.count) for h in got.hits] == [(h.value, h.count) for h in want.hits], (
            f"query {q} key={key} limit={limit} filter={flt}")
        assert [type(h.value) for h in got.hits] == [type(h.value) for h in want.hits]
    pair.drop()

"""Grouped searches (`query_points_groups`, and the legacy `/points/search/groups` and
`/points/recommend/groups`): groups by a keyword, an integer and an array field, group sizes
and limits, filters, `with_lookup` from another collection, on one and three shards, exact
and on HNSW-indexed segments, compared with the oracle."""

from __future__ import annotations

import json
import random

import httpx
import pytest
from qdrant_client import models

import data
from compare import check_scored, close, record_diff
from pair import Pair
from test_indexed import wait_green


def check_groups(got, want, ctx: str) -> None:
    """Same groups in the same order (ties between groups' best scores in either order), each
    with the oracle's hits."""
    assert len(got) == len(want), (
        f"{ctx}: {len(got)} groups, oracle {len(want)}\n got {[g.id for g in got]}\n"
        f" want {[g.id for g in want]}")
    by_id = {g.id: g for g in want}
    for rank, (g, w) in enumerate(zip(got, want)):
        assert close(g.hits[0].score, w.hits[0].score), (
            f"{ctx}: group {rank} best score {g.hits[0].score} != oracle {w.hits[0].score}")
        o = by_id.get(g.id)
        assert o is not None, f"{ctx}: group {g.id!r} is not one of the oracle's"
        check_scored(g.hits, o.hits, 0, len(o.hits), f"{ctx} group {g.id!r}")
        if o.lookup is None:
            assert g.lookup is None, f"{ctx}: group {g.id!r} lookup {g.lookup}"
        else:
            d = record_diff(g.lookup, o.lookup, f"{ctx} group {g.id!r} lookup")
            assert d is None, d


def payload_of(rng: random.Random, i: int) -> dict:
    p = data.payload(rng, i)
    p["brand"] = f"b{rng.randrange(12)}"
    p["author"] = rng.randrange(40)
    p["genres"] = rng.sample(["rock", "jazz", "pop", "folk", "soul"], rng.randint(0, 2))
    return p


@pytest.fixture(scope="module")
def http(router_url):
    with httpx.Client(base_url=router_url, timeout=60) as client:
        yield client


@pytest.mark.parametrize("shards", [1, 3])
def test_groups_match_oracle(remote, oracle, http, shards):
    rng = random.Random(1000 + shards)
    pair = Pair(remote, oracle, f"groups_{shards}")
    pair.create(models.VectorParams(size=8, distance=models.Distance.COSINE), shard_number=shards)
    pts = data.points(rng, 400, 8, uuid_share=0)
    for i, p in enumerate(pts):
        p.payload = payload_of(rng, i)
    pair.upsert(pts, rng)
    ids = [p.id for p in pts]
    # Authors looked up by their integer id.
    authors = Pair(remote, oracle, f"groups_authors_{shards}")
    authors.create(models.VectorParams(size=2, distance=models.Distance.DOT))
    authors.upsert([models.PointStruct(id=a, vector=[1.0, float(a)], payload={"name": f"a{a}"})
                    for a in range(0, 40, 3)], rng)

    for q in range(30):
        group_by = rng.choice(["brand", "author", "genres", "city", "tags"])
        limit, group_size = rng.choice([1, 3, 5]), rng.choice([1, 2, 4])
        flt = data.random_filter(rng, ids) if rng.random() < 0.3 else None
        kind = rng.choice(["nearest", "id", "recommend"])
        if kind == "nearest":
            query = data.vector(rng, 8)
        elif kind == "id":
            query = rng.choice(ids)
        else:
            query = models.RecommendQuery(recommend=models.RecommendInput(
                positive=[rng.choice(ids), rng.choice(ids)], negative=[rng.choice(ids)],
                strategy=rng.choice(list(models.RecommendStrategy))))
        lookup = None
        if group_by == "author" and rng.random() < 0.6:
            lookup = rng.choice([authors.name, models.WithLookup(
                collection=authors.name, with_payload=["name"], with_vectors=True)])
        ctx = f"query {q} {kind} group_by={group_by} limit={limit} size={group_size}"
        kw = dict(query=query, group_by=group_by, limit=limit, group_size=group_size,
                  query_filter=flt, with_payload=rng.choice([True, False, ["city"]]),
                  with_lookup=lookup,
                  search_params=models.SearchParams(exact=rng.random() < 0.5))
        got = remote.query_points_groups(pair.name, **kw).groups
        want = oracle.query_points_groups(pair.name, **kw).groups
        check_groups(got, want, ctx)

        if kind == "nearest" and lookup is None:
            body = {"vector": query, "group_by": group_by, "limit": limit,
                    "group_size": group_size, "with_payload": kw["with_payload"]}
            if flt is not None:
                body["filter"] = json.loads(flt.model_dump_json(by_alias=True, exclude_none=True))
            r = http.post(f"/collections/{pair.name}/points/search/groups", json=body)
            assert r.status_code == 200, f"{ctx}: {r.text[:300]}"
            legacy = models.GroupsResult(**r.json()["result"]).groups
            check_groups(legacy, want, f"{ctx} legacy search/groups")
        if kind == "recommend" and lookup is None and flt is None:
            rec = query.recommend
            body = {"positive": rec.positive, "negative": rec.negative,
                    "strategy": rec.strategy.value, "group_by": group_by, "limit": limit,
                    "group_size": group_size, "with_payload": kw["with_payload"]}
            r = http.post(f"/collections/{pair.name}/points/recommend/groups", json=body)
            assert r.status_code == 200, f"{ctx}: {r.text[:300]}"
            legacy = models.GroupsResult(**r.json()["result"]).groups
            check_groups(legacy, want, f"{ctx} legacy recommend/groups")
    pair.drop()
    authors.drop()


def test_groups_fill_from_deep_in_the_ranking(remote, oracle):
    """A rare group's members lie far below the first page: the search goes on until every
    returned group is full, on indexed segments."""
    rng = random.Random(77)
    name = "groups_indexed"
    if remote.collection_exists(name):
        remote.delete_collection(name)
    vectors = models.VectorParams(size=8, distance=models.Distance.EUCLID)
    remote.create_collection(name, vectors_config=vectors, shard_number=2,
                             optimizers_config=models.OptimizersConfigDiff(indexing_threshold=20))
    oracle.create_collection(name, vectors_config=vectors)
    pair = Pair(remote, oracle, name)
    pts = [models.PointStruct(id=i, vector=data.vector(rng, 8),
                              payload={"g": "rare" if i % 250 == 0 else f"c{i % 3}"})
           for i in range(3000)]
    pair.upsert(pts, rng, batch_size=300)
    wait_green(remote, name, timeout=180)
    for q in range(5):
        kw = dict(query=data.vector(rng, 8), group_by="g", limit=4, group_size=5,
                  search_params=models.SearchParams(exact=True))
        got = remote.query_points_groups(name, **kw).groups
        want = oracle.query_points_groups(name, **kw).groups
        assert [g.id for g in want][:4] and any(g.id == "rare" for g in want)
        check_groups(got, want, f"deep {q}")
    pair.drop()

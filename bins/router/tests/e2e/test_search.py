"""Collections of every distance, unnamed and named vectors, one and three shards: upsert,
then queries (by vector and by id, with filters, thresholds, offsets and selectors), retrieve,
scroll and count, all compared with the in-memory oracle."""

from __future__ import annotations

import random
import zlib

import pytest
from qdrant_client import models

import data
from compare import check_scored
from pair import SPARE, Pair

DISTANCES = [models.Distance.COSINE, models.Distance.EUCLID, models.Distance.DOT,
             models.Distance.MANHATTAN]

PAYLOAD_SELECTORS = [
    True, False, ["city", "nested.name"], ["nested.deep.x", "loc.lat"],
    models.PayloadSelectorInclude(include=["items", "nested.deep", "absent"]),
    models.PayloadSelectorExclude(exclude=["items", "nested.deep", "text"]),
    models.PayloadSelectorExclude(exclude=["nested.name", "tags"]),
]

CASES = [(d, False, 1) for d in DISTANCES] + [
    (models.Distance.COSINE, False, 3),
    (models.Distance.EUCLID, True, 3),
    (models.Distance.DOT, True, 1),
]


def vectors_config(distance, named: bool):
    if not named:
        return models.VectorParams(size=8, distance=distance)
    other = DISTANCES[(DISTANCES.index(distance) + 1) % 4]
    return {"a": models.VectorParams(size=8, distance=distance),
            "b": models.VectorParams(size=5, distance=other)}


def threshold_for(points) -> float | None:
    """A threshold that cuts inside the answer, halfway between two neighbouring scores: a
    score equal to the threshold is where the oracle (strict) and COMPAT.md (inclusive)
    disagree, tested on its own in `test_threshold_is_inclusive`."""
    for a, b in zip(points[len(points) // 2:], points[len(points) // 2 + 1:]):
        if a.score != b.score:
            return (a.score + b.score) / 2
    return None


@pytest.mark.parametrize("distance,named,shards", CASES,
                         ids=[f"{d.value}-{'named' if n else 'unnamed'}-{s}sh" for d, n, s in CASES])
def test_query_matches_oracle(remote, oracle, distance, named, shards):
    seed = zlib.crc32(f"{distance.value}-{named}-{shards}".encode()) % 10_000
    rng = random.Random(seed)
    pair = Pair(remote, oracle, f"search_{distance.value.lower()}_{int(named)}_{shards}")
    config = vectors_config(distance, named)
    pair.create(config, shard_number=shards)
    dims = {n: p.size for n, p in config.items()} if named else 8
    pts = data.points(rng, 400, dims)
    pair.upsert(pts, rng)
    ids = [p.id for p in pts]
    assert pair.count(f"seed {seed}") == len(pts)
    names = sorted(config) if named else [None]

    for q in range(40):
        using = rng.choice(names)
        dim = config[using].size if named else 8
        selector = rng.choice(PAYLOAD_SELECTORS)
        with_vector = rng.choice([False, True] + ([[using]] if named else []))
        ctx = f"seed {seed} query {q} using={using} with_payload={selector}"
        if rng.random() < 0.25:
            query = rng.choice(ids)
            if named and not _has_vector(pts, query, using):
                continue
        else:
            query = data.vector(rng, dim)
        flt = data.random_filter(rng, ids, vector_names=names if named else None) \
            if rng.random() < 0.4 else None
        limit, offset = rng.randrange(1, 30), rng.choice([0, 0, 3, 17])
        got = pair.query(ctx, query=query, using=using, query_filter=flt, limit=limit,
                         offset=offset, with_payload=selector, with_vectors=with_vector)
        if q % 4 == 0 and got:
            t = threshold_for(got)
            if t is not None:
                    pair.query(ctx + f" score_threshold={t}", query=query, using=using,
                           query_filter=flt, limit=limit, score_threshold=t, with_payload=True)

    # A batch of queries: one answer per request, in order.
    requests = []
    for _ in range(6):
        using = rng.choice(names)
        requests.append(models.QueryRequest(
            query=data.vector(rng, config[using].size if named else 8), using=using,
            filter=data.random_filter(rng, ids) if rng.random() < 0.5 else None,
            limit=rng.randrange(1, 15), with_payload=True))
    got = remote.query_batch_points(pair.name, requests=requests)
    want = oracle.query_batch_points(pair.name, requests=[
        r.model_copy(update={"limit": r.limit + SPARE}) for r in requests])
    assert len(got) == len(requests)
    for k, (g, w, r) in enumerate(zip(got, want, requests)):
        check_scored(g.points, w.points, 0, r.limit, f"seed {seed} batch {k}")

    # Query without a vector: points in id order.
    pair.query(f"seed {seed} no query", limit=25, with_payload=True)
    pair.retrieve(f"seed {seed} retrieve", rng.sample(ids, 20) + [123456789],
                  with_payload=True, with_vectors=True)
    pair.retrieve(f"seed {seed} retrieve selector", rng.sample(ids, 5),
                  with_payload=["nested.deep", "city"], with_vectors=names if named else False)
    pair.scroll_all(f"seed {seed} scroll", with_payload=True, with_vectors=True)
    pair.drop()


def _has_vector(pts, pid, name) -> bool:
    p = next(p for p in pts if p.id == pid)
    return name in p.vector


def test_random_filters(remote, oracle):
    """The filter language: many seeded random filters, in count, query and scroll, before
    and after payload indexes exist (an index changes the path a filter takes)."""
    seed = 4242
    rng = random.Random(seed)
    pair = Pair(remote, oracle, "filters")
    config = {"a": models.VectorParams(size=6, distance=models.Distance.COSINE),
              "b": models.VectorParams(size=4, distance=models.Distance.EUCLID)}
    pair.create(config, shard_number=3)
    pts = data.points(rng, 700, {"a": 6, "b": 4}, missing_named_share=0.3)
    pair.upsert(pts, rng)
    ids = [p.id for p in pts]

    def run(n: int, phase: str):
        for i in range(n):
            flt = data.random_filter(rng, ids, vector_names=["a", "b"])
            ctx = f"seed {seed} {phase} filter {i}: {flt.model_dump_json(exclude_none=True)}"
            pair.count(ctx, flt)
            pair.query(ctx, query=data.vector(rng, 6), using="a", query_filter=flt,
                       limit=12, with_payload=["nested", "city"])
            r_points, r_next = remote.scroll(pair.name, scroll_filter=flt, limit=15)
            o_points, o_next = oracle.scroll(pair.name, scroll_filter=flt, limit=15)
            assert [p.id for p in r_points] == [p.id for p in o_points], ctx
            assert r_next == o_next, ctx
            if i % 10 == 0:
                pair.scroll_all(ctx, page=rng.randrange(1, 40), scroll_filter=flt,
                                with_payload=["city", "count", "nested.deep"])

    run(220, "unindexed")
    for field, schema in [("city", models.PayloadSchemaType.KEYWORD),
                          ("count", models.PayloadSchemaType.INTEGER),
                          ("price", models.PayloadSchemaType.FLOAT),
                          ("flag", models.PayloadSchemaType.BOOL),
                          ("loc", models.PayloadSchemaType.GEO),
                          ("ts", models.PayloadSchemaType.DATETIME),
                          ("tags", models.PayloadSchemaType.KEYWORD),
                          ("nested.deep.x", models.PayloadSchemaType.INTEGER),
                          ("nums", models.PayloadSchemaType.INTEGER),
                          ("text", models.PayloadSchemaType.TEXT)]:
        r = remote.create_payload_index(pair.name, field, field_schema=schema, wait=True)
        assert r.status == models.UpdateStatus.COMPLETED
        oracle.create_payload_index(pair.name, field, field_schema=schema)
    info = remote.get_collection(pair.name)
    assert "city" in info.payload_schema and "nested.deep.x" in info.payload_schema, info.payload_schema
    run(120, "indexed")
    pair.drop()


@pytest.mark.parametrize("distance", DISTANCES, ids=[d.value for d in DISTANCES])
def test_threshold_is_inclusive(remote, distance):
    """COMPAT.md: `score >= t` for Cosine and Dot, `score <= t` for Euclid and Manhattan, so a
    point scored exactly at the threshold is returned (the in-memory client drops it)."""
    name = f"threshold_{distance.value.lower()}"
    if remote.collection_exists(name):
        remote.delete_collection(name)
    remote.create_collection(name, vectors_config=models.VectorParams(size=2, distance=distance))
    remote.upsert(name, points=[models.PointStruct(id=i, vector=[1.0, float(i)]) for i in range(5)])
    q = [0.5, 1.0]
    scores = remote.query_points(name, query=q, limit=5).points
    t = scores[2].score
    kept = remote.query_points(name, query=q, limit=5, score_threshold=t).points
    assert [p.id for p in kept] == [p.id for p in scores[:3]], (t, scores, kept)
    remote.delete_collection(name)

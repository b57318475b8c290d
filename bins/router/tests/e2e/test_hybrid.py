"""Hybrid queries: `prefetch` trees fused by RRF (plain, with `k` and weights) and DBSF,
re-scored with another vector (nearest, by id, recommend, discover), ordered by a payload
value or sampled; nested prefetches with filters at every level; MMR at the top and inside a
prefetch; on one and three shards, compared with the in-memory oracle, and in a query batch.

Exact duplicates of vectors are left out of the data: a tie cut by a prefetch's limit would
send different candidates upward on the router and in the oracle, and every answer above it
would differ for a reason that is not a fault. Scores the fusions give tie often (two points
at the same rank of different lists); `check_scored` takes ties in any order.
"""

from __future__ import annotations

import random
import zlib

import httpx
import pytest
from qdrant_client import models

import data
from compare import check_scored
from pair import SPARE, Pair
from test_indexed import wait_green
from test_order_by import check_ordered

VECTORS = {"a": (8, models.Distance.COSINE), "b": (6, models.Distance.EUCLID),
           "c": (5, models.Distance.DOT)}


def collection(remote, oracle, rng, name: str, shards: int) -> tuple[Pair, list]:
    pair = Pair(remote, oracle, name)
    pair.create({n: models.VectorParams(size=d, distance=dist) for n, (d, dist) in VECTORS.items()},
                shard_number=shards)
    pts = [p for p in data.points(rng, 500, {n: d for n, (d, _) in VECTORS.items()})
           if not (isinstance(p.id, int) and p.id >= 10_000_000)]
    pair.upsert(pts, rng)
    return pair, pts


class Ids(list):
    """The points' ids, and by vector name the ids of the points that have it."""

    def __init__(self, pts):
        super().__init__(p.id for p in pts)
        self.having = {n: [p.id for p in pts if n in p.vector] for n in VECTORS}


def nearest(rng: random.Random, ids: Ids, using: str):
    """A vector or, now and then, the id of a point that has it (left out of the answers
    below it)."""
    if rng.random() < 0.2:
        return rng.choice(ids.having[using])
    return data.vector(rng, VECTORS[using][0])


def leaf(rng: random.Random, ids: list, depth: int = 0) -> models.Prefetch:
    using = rng.choice(sorted(VECTORS))
    flt = data.random_filter(rng, ids) if rng.random() < 0.3 else None
    limit = rng.choice([5, 10, 20, 40])
    if depth < 1 and rng.random() < 0.25:
        # A prefetch over prefetches: fused, or re-scored with its own vector.
        inner = [leaf(rng, ids, depth + 1) for _ in range(rng.randint(1, 2))]
        if rng.random() < 0.5:
            query = models.FusionQuery(fusion=rng.choice([models.Fusion.RRF, models.Fusion.DBSF]))
            return models.Prefetch(prefetch=inner, query=query, filter=flt, limit=limit)
        return models.Prefetch(prefetch=inner, query=nearest(rng, ids, using), using=using,
                               filter=flt, limit=limit)
    if rng.random() < 0.15:
        query = models.NearestQuery(nearest=data.vector(rng, VECTORS[using][0]),
                                    mmr=models.Mmr(diversity=rng.choice([0.0, 0.3, 0.9]),
                                                   candidates_limit=limit * 2))
        return models.Prefetch(query=query, using=using, filter=flt, limit=limit)
    return models.Prefetch(query=nearest(rng, ids, using), using=using, filter=flt, limit=limit)


def root_query(rng: random.Random, ids: list, kind: str):
    """(query, using) of the top level."""
    using = rng.choice(sorted(VECTORS))
    if kind == "rrf":
        return models.FusionQuery(fusion=models.Fusion.RRF), None
    if kind == "dbsf":
        return models.FusionQuery(fusion=models.Fusion.DBSF), None
    if kind == "rrf_k":
        return models.RrfQuery(rrf=models.Rrf(k=rng.choice([1, 5, 60]))), None
    if kind == "nearest":
        return nearest(rng, ids, using), using
    if kind == "recommend":
        return models.RecommendQuery(recommend=models.RecommendInput(
            positive=[nearest(rng, ids, using) for _ in range(rng.randint(1, 2))],
            negative=[nearest(rng, ids, using)],
            strategy=rng.choice([models.RecommendStrategy.BEST_SCORE,
                                 models.RecommendStrategy.SUM_SCORES,
                                 models.RecommendStrategy.AVERAGE_VECTOR]))), using
    if kind == "discover":
        return models.DiscoverQuery(discover=models.DiscoverInput(
            target=nearest(rng, ids, using),
            context=[models.ContextPair(positive=nearest(rng, ids, using),
                                        negative=nearest(rng, ids, using))])), using
    assert kind == "mmr"
    return models.NearestQuery(nearest=data.vector(rng, VECTORS[using][0]),
                               mmr=models.Mmr(diversity=rng.choice([None, 0.2, 0.7, 1.0]),
                                              candidates_limit=rng.choice([None, 30, 80]))), using


KINDS = ["rrf", "dbsf", "rrf_k", "nearest", "recommend", "discover", "mmr"]


@pytest.mark.parametrize("shards", [1, 3])
def test_hybrid_queries_match_oracle(remote, oracle, shards):
    seed = zlib.crc32(f"hybrid-{shards}".encode()) % 10_000
    rng = random.Random(seed)
    pair, pts = collection(remote, oracle, rng, f"hybrid_{shards}", shards)
    ids = Ids(pts)
    batch = []
    for q in range(70):
        kind = KINDS[q % len(KINDS)]
        query, using = root_query(rng, ids, kind)
        prefetch = [leaf(rng, ids) for _ in range(rng.randint(1, 3))]
        if kind == "mmr" and rng.random() < 0.5:
            prefetch = None  # diversity over the whole collection
        if kind == "rrf_k" and rng.random() < 0.6:
            query.rrf.weights = [rng.choice([0.0, 0.5, 1.0, 3.0]) for _ in prefetch]
        flt = data.random_filter(rng, ids) if rng.random() < 0.3 else None
        limit, offset = rng.choice([1, 5, 10, 30]), rng.choice([0, 0, 2])
        with_payload = rng.random() < 0.5
        with_vectors = rng.choice([False, False, True, ["b"]])
        threshold = None
        ctx = f"seed {seed} query {q} {kind} using {using}: {query} prefetch {prefetch} filter {flt}"
        kw = dict(query=query, using=using, prefetch=prefetch, query_filter=flt,
                  with_payload=with_payload, with_vectors=with_vectors)
        full = oracle.query_points(pair.name, limit=limit + offset + SPARE, **kw).points
        if kind in ("rrf", "dbsf") and len(full) > 2 and rng.random() < 0.4:
            # A threshold between two distinct fused scores.
            mid = full[len(full) // 2]
            below = [p.score for p in full if p.score < mid.score]
            if below:
                threshold = (mid.score + max(below)) / 2
                kw["score_threshold"] = threshold
                full = oracle.query_points(pair.name, limit=limit + offset + SPARE, **kw).points
                ctx += f" threshold {threshold}"
        got = remote.query_points(pair.name, limit=limit, offset=offset, **kw).points
        if kind == "mmr":
            # MMR picks one point at a time: the answer is a sequence, compared in order.
            want = oracle.query_points(pair.name, limit=limit, offset=offset, **kw).points
            assert [p.id for p in got] == [p.id for p in want], (
                f"{ctx}\n got {[(p.id, p.score) for p in got]}\n"
                f" want {[(p.id, p.score) for p in want]}")
            check_scored(got, want, 0, limit, ctx)
        else:
            check_scored(got, full, offset, limit, ctx)
        if q % 5 == 0:
            batch.append((models.QueryRequest(limit=limit, offset=offset, filter=flt,
                                              query=query, using=using, prefetch=prefetch,
                                              score_threshold=threshold,
                                              with_payload=with_payload, with_vector=with_vectors),
                          full, offset, limit, ctx, kind))
    answers = remote.query_batch_points(pair.name, requests=[b[0] for b in batch])
    for answer, (_, full, offset, limit, ctx, kind) in zip(answers, batch):
        if kind != "mmr":
            check_scored(answer.points, full, offset, limit, f"{ctx} (batch)")
    pair.drop()


def test_order_by_and_id_order_over_prefetched_points(remote, oracle):
    rng = random.Random(4242)
    pair, pts = collection(remote, oracle, rng, "hybrid_order", 2)
    ids = Ids(pts)
    for q in range(20):
        prefetch = [leaf(rng, ids) for _ in range(rng.randint(1, 2))]
        order = models.OrderBy(key="price", direction=rng.choice(
            [models.Direction.ASC, models.Direction.DESC]))
        flt = data.random_filter(rng, ids) if rng.random() < 0.3 else None
        limit = rng.choice([3, 10, 50])
        ctx = f"order query {q}: {order} over {prefetch} filter {flt}"
        kw = dict(query=models.OrderByQuery(order_by=order), prefetch=prefetch, query_filter=flt,
                  with_payload=True)
        got = remote.query_points(pair.name, limit=limit, **kw).points
        full = oracle.query_points(pair.name, limit=1000, **kw).points
        check_ordered(got, full, limit, ctx)
        by_id = {p.id: p for p in full}
        for p in got:
            assert p.payload == by_id[p.id].payload, f"{ctx}: payload of {p.id}"
            assert p.score == 1.0
    pair.drop()


def test_random_samples(remote, oracle):
    rng = random.Random(515)
    pair, pts = collection(remote, oracle, rng, "hybrid_sample", 3)
    ids = Ids(pts)
    by_id = {p.id: p for p in oracle.scroll(pair.name, limit=10_000, with_payload=True)[0]}
    for q in range(12):
        flt = data.random_filter(rng, ids) if q % 2 else None
        passing = {p.id for p in oracle.scroll(pair.name, scroll_filter=flt, limit=10_000)[0]}
        limit = rng.choice([1, 10, 600])
        got = remote.query_points(pair.name, query=models.SampleQuery(sample=models.Sample.RANDOM),
                                  query_filter=flt, limit=limit, with_payload=True).points
        ctx = f"sample {q} filter {flt} limit {limit}"
        assert len(got) == min(limit, len(passing)), ctx
        assert len({p.id for p in got}) == len(got), f"{ctx}: a point drawn twice"
        assert {p.id for p in got} <= passing, f"{ctx}: a point outside the filter"
        for p in got:
            assert p.score == 1.0 and p.payload == by_id[p.id].payload, ctx
        # Sampling the points of prefetches draws only among them.
        prefetch = leaf(rng, ids)
        fetched = {p.id for p in oracle.query_points(pair.name, query=prefetch.query,
                                                     using=prefetch.using, limit=prefetch.limit,
                                                     prefetch=prefetch.prefetch,
                                                     query_filter=prefetch.filter).points}
        got = remote.query_points(pair.name, prefetch=prefetch,
                                  query=models.SampleQuery(sample=models.Sample.RANDOM),
                                  limit=limit).points
        assert {p.id for p in got} <= fetched and len(got) == min(limit, len(fetched)), (
            f"{ctx}: sample over {prefetch}")
    # Two identical requests are not answered from the result cache.
    draws = {tuple(p.id for p in remote.query_points(
        pair.name, query=models.SampleQuery(sample=models.Sample.RANDOM), limit=5).points)
        for _ in range(6)}
    assert len(draws) > 1, "six random samples of 5 out of ~500 points were all equal"
    pair.drop()


@pytest.fixture(scope="module")
def http(router_url):
    with httpx.Client(base_url=router_url, timeout=60) as client:
        yield client


def test_bad_hybrid_queries_are_refused(remote, oracle, http):
    rng = random.Random(9)
    pair, _ = collection(remote, oracle, rng, "hybrid_bad", 1)
    url = f"/collections/{pair.name}/points/query"
    near = {"query": [0.1] * 8, "using": "a"}
    deep = dict(near)
    for _ in range(10):
        deep = {"prefetch": deep, "query": [0.1] * 8, "using": "a"}
    bad = {
        "a query is needed to merge the prefetches": {"prefetch": near},
        "fusion needs prefetches": {"query": {"fusion": "rrf"}},
        "fusion query takes no `using`": {"prefetch": [near], "query": {"fusion": "dbsf"},
                                          "using": "a"},
        "weights": {"prefetch": [near, near], "query": {"rrf": {"weights": [1]}}},
        "rrf.k": {"prefetch": [near], "query": {"rrf": {"k": 0}}},
        "diversity": {"query": {"nearest": [0.1] * 8, "mmr": {"diversity": 1.5}}, "using": "a"},
        "candidates_limit": {"query": {"nearest": [0.1] * 8,
                                       "mmr": {"candidates_limit": 100_000}}, "using": "a"},
        "Not existing vector name": {"prefetch": {"query": [0.1] * 8, "using": "nope"},
                                     "query": {"fusion": "rrf"}},
        "nest at most": deep,
        "at most 64 queries": {"prefetch": [near] * 70, "query": {"fusion": "rrf"}},
        "a query is needed to use the score_threshold": {
            "prefetch": {"score_threshold": 0.5, "limit": 3}, "query": {"fusion": "rrf"}},
        "order_by query takes no score_threshold": {
            "prefetch": near, "query": {"order_by": "price"}, "score_threshold": 0.5},
        "prefetch.limit": {"prefetch": {**near, "limit": 0}, "query": {"fusion": "rrf"}},
        "unknown field": {"prefetch": {**near, "lmit": 3}, "query": {"fusion": "rrf"}},
        "fusion": {"prefetch": near, "query": {"fusion": "max"}},
    }
    for what, body in bad.items():
        r = http.post(url, json=body)
        assert r.status_code == 400, f"{what}: {r.status_code} {r.text[:300]}"
        err = r.json()["status"]["error"]
        assert what in err, f"{what}: {err}"
    # Features not served are named, not ignored.
    r = http.post(url, json={"prefetch": near, "query": {"relevance_feedback": {}}})
    assert r.status_code == 501 and "relevance_feedback" in r.json()["status"]["error"], r.text
    r = http.post(f"{url}/groups", json={"prefetch": near, "query": {"relevance_feedback": {}},
                                         "group_by": "city"})
    assert r.status_code == 501 and "relevance_feedback" in r.json()["status"]["error"], r.text
    pair.drop()


def test_hybrid_queries_on_indexed_segments(remote, oracle):
    """Segments large enough that a walk sees a small part of its graph: prefetches asked to
    be exact answer as the oracle does whatever fuses or re-scores them; approximate
    prefetches (the graph walk) keep their recall through a fusion and a re-scoring."""
    rng = random.Random(2718)
    name = "hybrid_indexed"
    if remote.collection_exists(name):
        remote.delete_collection(name)
    vectors = {"a": models.VectorParams(size=16, distance=models.Distance.COSINE),
               "b": models.VectorParams(size=8, distance=models.Distance.EUCLID)}
    # 64 KB of vectors a segment: about 1,000 points.
    remote.create_collection(name, vectors_config=vectors, shard_number=2,
                             optimizers_config=models.OptimizersConfigDiff(indexing_threshold=64),
                             hnsw_config=models.HnswConfigDiff(m=8, ef_construct=32,
                                                               full_scan_threshold=1))
    oracle.create_collection(name, vectors_config=vectors)
    pair = Pair(remote, oracle, name)
    centres = [data.vector(rng, 16) for _ in range(30)]
    pts = []
    for i in range(8000):
        a = [c + rng.gauss(0, 0.35) for c in rng.choice(centres)]
        pts.append(models.PointStruct(id=i, vector={"a": a, "b": data.vector(rng, 8)},
                                      payload={"g": i % 4}))
    pair.upsert(pts, rng, batch_size=250)
    wait_green(remote, name, timeout=240)
    info = remote.get_collection(name)
    assert info.indexed_vectors_count and info.indexed_vectors_count >= 6000, info
    found = wanted = 0
    for q in range(30):
        flt = models.Filter(must=[models.FieldCondition(
            key="g", match=models.MatchValue(value=rng.randrange(4)))]) if q % 3 == 0 else None
        va = [c + rng.gauss(0, 0.35) for c in rng.choice(centres)]
        vb = data.vector(rng, 8)
        fused = q % 2 == 0
        query = models.FusionQuery(fusion=models.Fusion.RRF) if fused else va
        using = None if fused else "a"
        for exact in (True, False):
            params = models.SearchParams(exact=exact, hnsw_ef=20)
            prefetch = [models.Prefetch(query=va, using="a", limit=20, params=params),
                        models.Prefetch(query=vb, using="b", limit=20, params=params)]
            kw = dict(query=query, using=using, prefetch=prefetch, query_filter=flt)
            got = remote.query_points(name, limit=10, **kw).points
            full = oracle.query_points(name, limit=10 + SPARE, **kw).points
            ctx = f"indexed query {q} exact={exact} fused={fused} filter {flt}"
            if exact:
                check_scored(got, full, 0, 10, ctx)
            else:
                assert len(got) == 10 and len({p.id for p in got}) == 10, ctx
                want = {p.id for p in full[:10]}
                found += len(want & {p.id for p in got})
                wanted += len(want)
    recall = found / wanted
    assert recall >= 0.9, f"recall@10 of hybrid queries over walked prefetches {recall:.3f}"
    pair.drop()


def random_formula(rng: random.Random):
    """A formula over the prefetch scores and payload values every point has (with a term
    that varies continuously, so ties stay rare)."""
    terms = ["$score", {"mult": [round(rng.uniform(0.001, 0.01), 4), "price"]}]
    extra = [
        lambda: {"mult": [{"key": "city", "match": {"value": rng.choice(data.CITIES)}},
                          round(rng.uniform(0.1, 2), 2)]},
        lambda: {"mult": [{"key": "flag", "match": {"value": True}}, "$score[1]"]},
        lambda: {"exp_decay": {"x": "count", "target": rng.randrange(-50, 100),
                               "scale": rng.choice([10, 50]), "midpoint": 0.3}},
        lambda: {"lin_decay": {"x": "nested.deep.x", "target": 10, "scale": 20}},
        lambda: {"gauss_decay": {"x": {"datetime_key": "ts"},
                                 "target": {"datetime": "2024-06-01T00:00:00Z"},
                                 "scale": 86400 * 60}},
        lambda: {"neg": {"div": {"left": {"geo_distance": {
            "origin": {"lat": rng.uniform(-50, 50), "lon": rng.uniform(-150, 150)}, "to": "loc"}},
            "right": 1e7}}},
        lambda: {"max": ["$score[1]", {"abs": "$score"}]},
        lambda: {"sqrt": {"abs": "count"}},
        lambda: {"pow": {"base": {"abs": "$score"}, "exponent": 2}},
        lambda: {"ln": {"sum": [1, {"abs": "count"}]}},
    ]
    for make in rng.sample(extra, rng.randint(1, 4)):
        terms.append(make())
    return {"sum": terms}


@pytest.mark.parametrize("shards", [1, 3])
def test_formula_queries_match_oracle(remote, oracle, router_url, shards):
    rng = random.Random(7100 + shards)
    pair, pts = collection(remote, oracle, rng, f"hybrid_formula_{shards}", shards)
    ids = Ids(pts)
    http = httpx.Client(base_url=router_url, timeout=60)
    for q in range(40):
        prefetch = [leaf(rng, ids) for _ in range(rng.randint(1, 3))]
        expression = random_formula(rng)
        defaults = {"$score[1]": 0.25} if rng.random() < 0.5 else None
        query = models.FormulaQuery(formula=expression, defaults=defaults)
        flt = data.random_filter(rng, ids) if rng.random() < 0.3 else None
        limit, offset = rng.choice([1, 5, 10, 30]), rng.choice([0, 0, 2])
        ctx = f"formula {q}: {expression} defaults {defaults} over {prefetch} filter {flt}"
        kw = dict(query=query, prefetch=prefetch, query_filter=flt, with_payload=True)
        full = oracle.query_points(pair.name, limit=limit + offset + SPARE, **kw).points
        got = remote.query_points(pair.name, limit=limit, offset=offset, **kw).points
        check_scored(got, full, offset, limit, ctx)
    # A step with no finite value is an error for the whole request, as in Qdrant.
    near = {"query": [0.1] * 8, "using": "a", "limit": 5}
    for formula, needle in [({"div": {"left": 1, "right": {"mult": [0, "price"]}}}, "non-finite"),
                            ({"ln": {"neg": {"abs": "price"}}}, "non-finite"),
                            ("no_such_key", "no value found"),
                            ({"max": []}, "at least one"),
                            ({"lin_decay": {"x": 1, "midpoint": 2}}, "midpoint")]:
        r = http.post(f"/collections/{pair.name}/points/query",
                      json={"prefetch": near, "query": {"formula": formula}})
        assert r.status_code == 400 and needle in r.json()["status"]["error"], (formula, r.text)
    r = http.post(f"/collections/{pair.name}/points/query",
                  json={"query": {"formula": "$score"}})
    assert r.status_code == 400 and "prefetch" in r.json()["status"]["error"], r.text
    pair.drop()


def test_grouped_hybrid_queries_match_oracle(remote, oracle):
    """Grouped queries over prefetches. The oracle raises every prefetch's limit to the
    collection's size before grouping; with limits at least that large the two agree."""
    rng = random.Random(8800)
    pair, pts = collection(remote, oracle, rng, "hybrid_groups", 2)
    ids = Ids(pts)
    everything = len(pts) + 10
    for q in range(20):
        prefetch = [models.Prefetch(query=data.vector(rng, VECTORS[u][0]), using=u,
                                    limit=everything) for u in rng.sample(sorted(VECTORS), 2)]
        kind = q % 3
        if kind == 0:
            query, using = models.FusionQuery(fusion=models.Fusion.DBSF), None
        elif kind == 1:
            using = rng.choice(sorted(VECTORS))
            query = data.vector(rng, VECTORS[using][0])
        else:
            query, using = models.FormulaQuery(formula={"sum": [
                "$score", {"mult": [0.001, "price"]}, "$score[1]"]}), None
        flt = data.random_filter(rng, ids) if rng.random() < 0.3 else None
        kw = dict(query=query, using=using, prefetch=prefetch, query_filter=flt,
                  group_by="city", limit=rng.choice([2, 4]), group_size=rng.choice([1, 3]),
                  with_payload=True)
        got = remote.query_points_groups(pair.name, **kw).groups
        want = oracle.query_points_groups(pair.name, **kw).groups
        ctx = f"groups {q}: {kw}"
        assert [g.id for g in got] == [g.id for g in want], ctx
        for g, w in zip(got, want):
            check_scored(g.hits, w.hits, 0, len(w.hits), f"{ctx} group {g.id}")
    pair.drop()


def test_grouped_mmr_fills_its_groups_within_the_mmr_bounds(remote, oracle):
    """Grouped MMR asks for more points round after round; a round never asks for more
    candidates than MMR accepts (before, a round of 3,840 was refused with a 400)."""
    rng = random.Random(8900)
    pair, pts = collection(remote, oracle, rng, "hybrid_groups_mmr", 1)
    query = models.NearestQuery(nearest=data.vector(rng, 8), mmr=models.Mmr(diversity=0.5))
    # 40 groups of 30 over ~480 points: the rounds grow until the points run out.
    groups = remote.query_points_groups(pair.name, query=query, using="a", group_by="city",
                                        limit=40, group_size=30, with_payload=True).groups
    cities = {p.payload.get("city") for p in pts if "a" in p.vector} - {None}
    assert {g.id for g in groups} == cities
    for g in groups:
        assert len({h.id for h in g.hits}) == len(g.hits) and all(
            h.payload["city"] == g.id for h in g.hits)
    pair.drop()

"""Recommend (every strategy), discover and context queries, through the universal query and
the legacy `/points/recommend` and `/points/discover` endpoints (and their batches): examples
by vector and by id, from this collection or another (`lookup_from`), with filters, score
thresholds and offsets, on one and three shards; exact answers compared with the in-memory
oracle, and the approximate path's recall measured on HNSW-indexed segments."""

from __future__ import annotations

import json
import random
import zlib

import httpx
import pytest
from qdrant_client import models

import data
from compare import check_scored
from pair import Pair
from test_indexed import wait_green

KINDS = ["average_vector", "best_score", "sum_scores", "discover", "context"]

CASES = [
    (models.Distance.COSINE, 1),
    (models.Distance.EUCLID, 3),
    (models.Distance.DOT, 1),
    (models.Distance.MANHATTAN, 3),
]


def example(rng: random.Random, ids: list, dim: int):
    return rng.choice(ids) if rng.random() < 0.6 else data.vector(rng, dim)


def random_query(rng: random.Random, ids: list, dim: int, kind: str):
    if kind in ("average_vector", "best_score", "sum_scores"):
        n_pos = rng.randint(1 if kind == "average_vector" else 0, 3)
        n_neg = rng.randint(0 if n_pos else 1, 2)
        return models.RecommendQuery(recommend=models.RecommendInput(
            positive=[example(rng, ids, dim) for _ in range(n_pos)],
            negative=[example(rng, ids, dim) for _ in range(n_neg)],
            strategy=models.RecommendStrategy(kind)))
    pairs = [models.ContextPair(positive=example(rng, ids, dim), negative=example(rng, ids, dim))
             for _ in range(rng.randint(1, 3))]
    if kind == "discover":
        return models.DiscoverQuery(discover=models.DiscoverInput(
            target=example(rng, ids, dim), context=pairs if rng.random() < 0.7 else pairs[0]))
    return models.ContextQuery(context=pairs)


def threshold_for(points) -> float | None:
    """A threshold between two neighbouring distinct scores of the answer."""
    for a, b in zip(points[len(points) // 2:], points[len(points) // 2 + 1:]):
        if a.score != b.score:
            return (a.score + b.score) / 2
    return None


def as_json(model) -> object:
    return json.loads(model.model_dump_json(by_alias=True, exclude_none=True)) if model is not None else None


def legacy_body(query, *, flt, limit, offset, threshold, using, with_payload):
    """The legacy endpoint and body asking what `query` asks."""
    body = {"limit": limit, "offset": offset, "with_payload": with_payload}
    if flt is not None:
        body["filter"] = as_json(flt)
    if using is not None:
        body["using"] = using
    if isinstance(query, models.RecommendQuery):
        r = query.recommend
        body.update(positive=r.positive, negative=r.negative, strategy=r.strategy.value)
        if threshold is not None:
            body["score_threshold"] = threshold
        return "recommend", body
    if isinstance(query, models.DiscoverQuery):
        pairs = query.discover.context
        pairs = pairs if isinstance(pairs, list) else [pairs]
        body["target"] = query.discover.target
    else:
        pairs = query.context
    body["context"] = [{"positive": p.positive, "negative": p.negative} for p in pairs]
    return "discover", body


def scored(points_json: list) -> list[models.ScoredPoint]:
    return [models.ScoredPoint(**p) for p in points_json]


@pytest.fixture(scope="module")
def http(router_url):
    with httpx.Client(base_url=router_url, timeout=60) as client:
        yield client


@pytest.mark.parametrize("distance,shards", CASES, ids=[f"{d.value}-{s}sh" for d, s in CASES])
def test_example_queries_match_oracle(remote, oracle, http, distance, shards):
    seed = zlib.crc32(f"reco-{distance.value}-{shards}".encode()) % 10_000
    rng = random.Random(seed)
    pair = Pair(remote, oracle, f"reco_{distance.value.lower()}_{shards}")
    pair.create(models.VectorParams(size=8, distance=distance), shard_number=shards)
    pts = data.points(rng, 400, 8)
    pair.upsert(pts, rng)
    ids = [p.id for p in pts]

    legacy_batches: dict[str, list] = {"recommend": [], "discover": []}
    for q in range(60):
        kind = KINDS[q % len(KINDS)]
        query = random_query(rng, ids, 8, kind)
        flt = data.random_filter(rng, ids) if rng.random() < 0.4 else None
        limit, offset = rng.choice([1, 5, 10, 25]), rng.choice([0, 0, 3])
        with_payload = rng.random() < 0.5
        ctx = f"seed {seed} query {q} {kind}: {query}"
        full = oracle.query_points(pair.name, query=query, query_filter=flt, limit=len(pts),
                                   with_payload=with_payload).points
        threshold = threshold_for(full[:limit + offset]) if rng.random() < 0.3 else None
        if threshold is not None:
            if kind == "average_vector":
                full = oracle.query_points(pair.name, query=query, query_filter=flt,
                                           limit=len(pts), with_payload=with_payload,
                                           score_threshold=threshold).points
            else:
                # Scores of example queries are higher-is-better under every metric, and the
                # server keeps those above the threshold; the oracle compares in the metric's
                # direction, dropping everything under Euclid and Manhattan
                # (qdrant/qdrant-client#1370).
                full = [p for p in full if p.score > threshold]
            ctx += f" threshold {threshold}"
        got = remote.query_points(pair.name, query=query, query_filter=flt, limit=limit,
                                  offset=offset, score_threshold=threshold,
                                  with_payload=with_payload,
                                  search_params=models.SearchParams(exact=rng.random() < 0.5))
        check_scored(got.points, full, offset, limit, ctx)

        endpoint, body = legacy_body(query, flt=flt, limit=limit, offset=offset,
                                     threshold=threshold, using=None, with_payload=with_payload)
        if endpoint == "discover" and threshold is not None:
            continue  # the legacy discovery has no score_threshold
        r = http.post(f"/collections/{pair.name}/points/{endpoint}", json=body)
        assert r.status_code == 200, f"{ctx} legacy {endpoint}: {r.status_code} {r.text[:300]}"
        check_scored(scored(r.json()["result"]), full, offset, limit, f"{ctx} legacy {endpoint}")
        legacy_batches[endpoint].append((body, full, offset, limit, ctx))

    for endpoint, items in legacy_batches.items():
        r = http.post(f"/collections/{pair.name}/points/{endpoint}/batch",
                      json={"searches": [b for b, *_ in items]})
        assert r.status_code == 200, f"seed {seed} {endpoint}/batch: {r.text[:300]}"
        answers = r.json()["result"]
        assert len(answers) == len(items)
        for answer, (_, full, offset, limit, ctx) in zip(answers, items):
            check_scored(scored(answer), full, offset, limit, f"{ctx} legacy {endpoint}/batch")

    # A batch of universal queries mixing every kind.
    queries = [random_query(rng, ids, 8, kind) for kind in KINDS]
    got = remote.query_batch_points(pair.name, requests=[
        models.QueryRequest(query=q, limit=7, with_payload=False) for q in queries])
    for q, answer in zip(queries, got):
        full = oracle.query_points(pair.name, query=q, limit=len(pts), with_payload=False).points
        check_scored(answer.points, full, 0, 7, f"seed {seed} batch {q}")
    pair.drop()


def test_lookup_from_another_collection(remote, oracle, http):
    rng = random.Random(77)
    main = Pair(remote, oracle, "reco_main")
    main.create({"a": models.VectorParams(size=8, distance=models.Distance.COSINE),
                 "b": models.VectorParams(size=4, distance=models.Distance.EUCLID)},
                shard_number=2)
    pts = data.points(rng, 300, {"a": 8, "b": 4}, missing_named_share=0)
    main.upsert(pts, rng)
    lookup = Pair(remote, oracle, "reco_lookup")
    lookup.create({"x": models.VectorParams(size=8, distance=models.Distance.DOT)})
    # The lookup collection shares ids with the searched one: those must not be left out.
    others = data.points(random.Random(78), 60, {"x": 8}, uuid_share=0, missing_named_share=0)
    for p, src in zip(others, pts):
        p.id = src.id
    lookup.upsert(others, rng)
    lookup_ids = [p.id for p in others]
    location = models.LookupLocation(collection=lookup.name, vector="x")

    for q in range(30):
        kind = KINDS[q % len(KINDS)]
        query = random_query(rng, lookup_ids, 8, kind)
        ctx = f"lookup query {q} {kind}: {query}"
        full = oracle.query_points(main.name, query=query, using="a", lookup_from=location,
                                   limit=len(pts)).points
        got = remote.query_points(main.name, query=query, using="a", lookup_from=location,
                                  limit=10)
        check_scored(got.points, full, 0, 10, ctx)
        endpoint, body = legacy_body(query, flt=None, limit=10, offset=0, threshold=None,
                                     using="a", with_payload=True)
        body["lookup_from"] = {"collection": lookup.name, "vector": "x"}
        r = http.post(f"/collections/{main.name}/points/{endpoint}", json=body)
        assert r.status_code == 200, f"{ctx}: {r.text[:300]}"
        check_scored(scored(r.json()["result"]), full, 0, 10, f"{ctx} legacy")

    # Ids from this collection's own other vector, by name, are left out.
    own = [p.id for p in pts]
    query = models.RecommendQuery(recommend=models.RecommendInput(
        positive=own[:2], negative=own[2:3], strategy=models.RecommendStrategy.BEST_SCORE))
    full = oracle.query_points(main.name, query=query, using="b", limit=len(pts)).points
    got = remote.query_points(main.name, query=query, using="b", limit=10).points
    check_scored(got, full, 0, 10, "using b")
    assert not {p.id for p in got} & set(own[:3])
    main.drop()
    lookup.drop()


def score_recall(got, want, k: int, higher_is_better: bool) -> float:
    """Share of the top-k slots filled with a point scoring at least as well as the oracle's
    k-th: ties count as found, whichever of them came."""
    if not want:
        return 1.0
    kth = want[min(k, len(want)) - 1].score
    good = (lambda s: s >= kth - 1e-5) if higher_is_better else (lambda s: s <= kth + 1e-5)
    return sum(1 for p in got[:k] if good(p.score)) / min(k, len(want))


@pytest.mark.parametrize("distance", [models.Distance.COSINE, models.Distance.EUCLID])
def test_example_queries_on_indexed_segments(remote, oracle, distance):
    """Segments large enough that a walk with ef 64 sees a small part of the graph: the
    approximate path (candidates around each example, scored exactly) against the exact scan."""
    rng = random.Random(404)
    name = f"reco_indexed_{distance.value.lower()}"
    if remote.collection_exists(name):
        remote.delete_collection(name)
    dim = 16
    vectors = models.VectorParams(size=dim, distance=distance)
    # 100 KB of 16-dimensional f32 vectors: segments of 1,600 points.
    remote.create_collection(name, vectors_config=vectors, shard_number=2,
                             optimizers_config=models.OptimizersConfigDiff(indexing_threshold=100),
                             hnsw_config=models.HnswConfigDiff(m=16, ef_construct=64,
                                                               full_scan_threshold=1))
    oracle.create_collection(name, vectors_config=vectors)
    pair = Pair(remote, oracle, name)
    centres = [data.vector(rng, dim) for _ in range(40)]
    pts = [models.PointStruct(id=i, vector=[c + rng.gauss(0, 0.15) for c in rng.choice(centres)],
                              payload={"g": i % 5}) for i in range(5000)]
    pair.upsert(pts, rng, batch_size=250)
    wait_green(remote, name, timeout=180)
    info = remote.get_collection(name)
    assert info.indexed_vectors_count and info.indexed_vectors_count >= 3000, info
    ids = [p.id for p in pts]

    recall: dict[str, list[float]] = {k: [] for k in KINDS}
    for q in range(50):
        kind = KINDS[q % len(KINDS)]
        query = random_query(rng, ids, dim, kind)
        flt = models.Filter(must=[models.FieldCondition(key="g", match=models.MatchValue(
            value=rng.randrange(5)))]) if q % 3 == 0 else None
        full = oracle.query_points(name, query=query, query_filter=flt, limit=len(pts)).points
        exact = remote.query_points(name, query=query, query_filter=flt, limit=10,
                                    search_params=models.SearchParams(exact=True)).points
        check_scored(exact, full, 0, 10, f"exact {q} {kind}: {query}")
        approx = remote.query_points(name, query=query, query_filter=flt, limit=10,
                                     search_params=models.SearchParams(hnsw_ef=64)).points
        # Example queries rank higher scores first under every metric; a nearest search
        # (average_vector) under Euclid ranks smaller distances first.
        higher = kind != "average_vector" or distance == models.Distance.COSINE
        recall[kind].append(score_recall(approx, full, 10, higher))
    for kind, values in recall.items():
        mean = sum(values) / len(values)
        assert mean >= 0.9, f"{kind}: recall@10 {mean:.3f} on indexed segments ({values})"
    pair.drop()

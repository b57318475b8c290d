"""Sparse vectors beside a dense one (and alone): collection config echoed, points written in
the list and batch forms (some without one or all sparse vectors), searched by a sparse vector
and by a point's id, with IDF weights counted over every shard, filters, offsets, thresholds
and vector selectors; through the legacy search; fused with dense prefetches (RRF, DBSF) and
re-scoring either way; read back by retrieve and scroll; their vectors updated and deleted; on
one and three shards, compared with the in-memory oracle; and kept across a snapshot recovery
and a restart."""

from __future__ import annotations

import random

import httpx
import pytest
from qdrant_client import models

import data
from compare import check_scored
from conftest import checked_client, router_binary
from pair import SPARE, Pair
from router_process import RouterProcess

SPARSE = {"text": models.SparseVectorParams(modifier=models.Modifier.IDF),
          "splade": models.SparseVectorParams(index=models.SparseIndexParams(on_disk=True))}


def sparse(rng: random.Random, vocabulary: int = 400) -> models.SparseVector:
    """A few indices, the low ones common (as words are), values of 4 decimals."""
    picked = {int(rng.random() ** 3 * vocabulary) for _ in range(rng.randint(1, 12))}
    indices = list(picked)
    rng.shuffle(indices)  # any order is accepted, and answered sorted
    return models.SparseVector(indices=indices, values=[round(rng.uniform(0.05, 2), 4)
                                                        for _ in indices])


def sparse_points(rng: random.Random, n: int, dense: bool = True) -> list[models.PointStruct]:
    pts = data.points(rng, n, {"d": 8}) if dense else data.points(rng, n, 8)
    pts = [p for p in pts if not (isinstance(p.id, int) and p.id >= 10_000_000)]
    for p in pts:
        v = p.vector if dense else {}
        for name, share in (("text", 0.85), ("splade", 0.5)):
            if rng.random() < share:
                v[name] = sparse(rng)
        p.vector = v
    return pts


def create(remote, oracle, name: str, shards: int, dense: bool = True) -> Pair:
    pair = Pair(remote, oracle, name)
    vectors = {"d": models.VectorParams(size=8, distance=models.Distance.COSINE)} if dense else {}
    if remote.collection_exists(name):
        remote.delete_collection(name)
    assert remote.create_collection(name, vectors_config=vectors, sparse_vectors_config=SPARSE,
                                    shard_number=shards)
    oracle.create_collection(name, vectors_config=vectors, sparse_vectors_config=SPARSE)
    info = remote.get_collection(name)
    assert info.config.params.sparse_vectors == SPARSE, info.config.params
    assert info.config.params.vectors == vectors
    return pair


def sparse_query(rng: random.Random, ids_with: dict, using: str):
    if rng.random() < 0.2 and ids_with[using]:
        return rng.choice(ids_with[using])
    return sparse(rng)


@pytest.mark.parametrize("shards", [1, 3])
def test_sparse_queries_match_oracle(remote, oracle, router_url, shards):
    rng = random.Random(600 + shards)
    pair = create(remote, oracle, f"sparse_{shards}", shards)
    pts = sparse_points(rng, 500)
    pair.upsert(pts, rng)
    ids = [p.id for p in pts]
    ids_with = {n: [p.id for p in pts if n in p.vector] for n in ("text", "splade", "d")}
    pair.scroll_all("scroll", with_payload=True, with_vectors=True)
    pair.retrieve("retrieve", ids[:40], with_vectors=["text"])
    for name in ("text", "splade"):
        pair.count(f"has_vector {name}", models.Filter(must=[models.HasVectorCondition(
            has_vector=name)]))

    for q in range(50):
        using = rng.choice(["text", "splade"])
        query = sparse_query(rng, ids_with, using)
        flt = data.random_filter(rng, ids) if rng.random() < 0.3 else None
        limit, offset = rng.choice([1, 5, 10, 30]), rng.choice([0, 0, 3])
        with_vectors = rng.choice([False, True, [using]])
        ctx = f"query {q} using {using}: {query} filter {flt}"
        kw = dict(query=query, using=using, query_filter=flt, with_payload=rng.random() < 0.5,
                  with_vectors=with_vectors)
        full = oracle.query_points(pair.name, limit=limit + offset + SPARE, **kw).points
        if len(full) > 1 and rng.random() < 0.3:
            # Between two distinct scores: the server keeps a score equal to the threshold,
            # the oracle drops it.
            mid = full[len(full) // 2]
            below = [p.score for p in full if p.score < mid.score]
            if below:
                kw["score_threshold"] = (mid.score + max(below)) / 2
                full = oracle.query_points(pair.name, limit=limit + offset + SPARE, **kw).points
                ctx += f" threshold {kw['score_threshold']}"
        got = remote.query_points(pair.name, limit=limit, offset=offset, **kw).points
        check_scored(got, full, offset, limit, ctx)

    # Recommend, discover and context over a sparse vector: examples by vector or by id.
    def example(using):
        return sparse_query(rng, ids_with, using)

    for q in range(30):
        using = rng.choice(["text", "splade"])
        kind = q % 5
        if kind < 3:
            strategy = [models.RecommendStrategy.AVERAGE_VECTOR, models.RecommendStrategy.BEST_SCORE,
                        models.RecommendStrategy.SUM_SCORES][kind]
            query = models.RecommendQuery(recommend=models.RecommendInput(
                positive=[example(using) for _ in range(rng.randint(1, 3))],
                negative=[example(using) for _ in range(rng.randint(0, 2))], strategy=strategy))
        elif kind == 3:
            query = models.DiscoverQuery(discover=models.DiscoverInput(
                target=example(using), context=[models.ContextPair(
                    positive=example(using), negative=example(using))]))
        else:
            query = models.ContextQuery(context=[models.ContextPair(
                positive=example(using), negative=example(using)) for _ in range(2)])
        flt = data.random_filter(rng, ids) if rng.random() < 0.3 else None
        ctx = f"example query {q} using {using}: {query} filter {flt}"
        kw = dict(query=query, using=using, query_filter=flt, with_payload=False)
        # Every point: a context query scores every point inside its zone 0, a tie of many.
        full = oracle.query_points(pair.name, limit=len(pts), **kw).points
        got = remote.query_points(pair.name, limit=10, **kw).points
        check_scored(got, full, 0, 10, ctx)

    # MMR over a sparse vector (without the idf modifier: the oracle measures relevance to the
    # query before its IDF weights, the server to the query it searched with), compared in
    # order: it picks one point at a time.
    for q in range(10):
        query = models.NearestQuery(nearest=sparse(rng), mmr=models.Mmr(
            diversity=rng.choice([0.0, 0.4, 0.9]), candidates_limit=rng.choice([None, 20, 60])))
        limit = rng.choice([3, 10])
        kw = dict(query=query, using="splade", limit=limit, with_payload=False)
        got = remote.query_points(pair.name, **kw).points
        want = oracle.query_points(pair.name, **kw).points
        assert [p.id for p in got] == [p.id for p in want], (
            f"sparse mmr {q}: {query}\n got {[(p.id, p.score) for p in got]}\n"
            f" want {[(p.id, p.score) for p in want]}")
        check_scored(got, want, 0, limit, f"sparse mmr {q}")

    # The legacy search, by a named sparse vector.
    http = httpx.Client(base_url=router_url, timeout=30)
    for q in range(10):
        v = sparse(rng)
        r = http.post(f"/collections/{pair.name}/points/search", json={
            "vector": {"name": "text", "vector": {"indices": v.indices, "values": v.values}},
            "limit": 10})
        assert r.status_code == 200, r.text
        got = [models.ScoredPoint(**p) for p in r.json()["result"]]
        full = oracle.query_points(pair.name, query=v, using="text", limit=10 + SPARE,
                                   with_payload=False).points
        check_scored(got, full, 0, 10, f"legacy search {q}")

    # Hybrid: dense and sparse prefetches fused, and each re-scored by the other.
    for q in range(30):
        dense = models.Prefetch(query=data.vector(rng, 8), using="d", limit=rng.choice([10, 30]))
        lexical = models.Prefetch(query=sparse(rng), using=rng.choice(["text", "splade"]),
                                  limit=rng.choice([10, 30]))
        flt = data.random_filter(rng, ids) if rng.random() < 0.3 else None
        kind = q % 4
        if kind == 0:
            kw = dict(prefetch=[dense, lexical], query=models.FusionQuery(fusion=models.Fusion.RRF))
        elif kind == 1:
            kw = dict(prefetch=[dense, lexical], query=models.FusionQuery(fusion=models.Fusion.DBSF))
        elif kind == 2:
            kw = dict(prefetch=dense, query=sparse(rng), using="text")
        else:
            kw = dict(prefetch=lexical, query=data.vector(rng, 8), using="d")
        ctx = f"hybrid {q}: {kw} filter {flt}"
        full = oracle.query_points(pair.name, query_filter=flt, limit=10 + SPARE, **kw).points
        got = remote.query_points(pair.name, query_filter=flt, limit=10, **kw).points
        check_scored(got, full, 0, 10, ctx)

    # Vectors updated and deleted: the rest of each point stays.
    changed = [models.PointVectors(id=i, vector={"text": sparse(rng)}) for i in ids_with["d"][:30]]
    pair.both("update_vectors", points=changed, wait=True)
    pair.both("delete_vectors", vectors=["splade"], points=ids[30:80], wait=True)
    pair.both("delete", points_selector=models.PointIdsList(points=ids[80:100]), wait=True)
    pair.scroll_all("after vector writes", with_payload=True, with_vectors=True)
    for q in range(10):
        v = sparse(rng)
        pair.query(f"after vector writes {q}", query=v, using="text", limit=10)
    pair.drop()


def test_sparse_only_collection_snapshot_and_restart(oracle, schema_checker, tmp_path):
    rng = random.Random(77)
    proc = RouterProcess(router_binary(), tmp_path / "storage", tmp_path / "snapshots",
                         tmp_path / "router.log")
    proc.start()
    try:
        remote = checked_client(proc.url, schema_checker)
        pair = create(remote, oracle, "sparse_only", 2, dense=False)
        pts = sparse_points(rng, 300, dense=False)
        pts = [p for p in pts if p.vector]
        pair.upsert(pts, rng)
        queries = [sparse(rng) for _ in range(10)]

        def state():
            out = [pair.scroll_all("state", with_payload=True, with_vectors=True)]
            for i, v in enumerate(queries):
                out.append(pair.query(f"state {i}", query=v, using="text", limit=10,
                                      with_vectors=True))
            return out

        before = state()
        desc = remote.create_snapshot(pair.name, wait=True)
        pair.both("delete", points_selector=models.PointIdsList(points=[p.id for p in pts[:50]]),
                  wait=True)
        location = f"file://{(tmp_path / 'snapshots' / pair.name / desc.name).resolve()}"
        assert remote.recover_snapshot(pair.name, location=location, wait=True) is True
        oracle.delete_collection(pair.name)
        oracle.create_collection(pair.name, vectors_config={}, sparse_vectors_config=SPARSE)
        oracle.upsert(pair.name, points=pts, wait=True)
        assert state() == before
        remote.close()
        assert proc.stop() == 0
        proc.start()
        pair.remote = checked_client(proc.url, schema_checker)
        assert state() == before
        pair.remote.close()
    finally:
        proc.stop()


def test_bad_sparse_input(remote, oracle, router_url):
    rng = random.Random(3)
    pair = create(remote, oracle, "sparse_bad", 1)
    pair.upsert(sparse_points(rng, 20), rng)
    http = httpx.Client(base_url=router_url, timeout=30)
    put = f"/collections/{pair.name}/points?wait=true"
    query = f"/collections/{pair.name}/points/query"
    cases = [
        ("PUT", put, {"points": [{"id": 1, "vector": {"text": {"indices": [1, 1],
                                                                "values": [1, 2]}}}]}, "unique"),
        ("PUT", put, {"points": [{"id": 1, "vector": {"text": {"indices": [1, 2],
                                                                "values": [1]}}}]}, "same length"),
        ("PUT", put, {"points": [{"id": 1, "vector": {"nope": {"indices": [1],
                                                                "values": [1]}}}]}, "nope"),
        ("PUT", put, {"points": [{"id": 1, "vector": {"d": {"indices": [1],
                                                             "values": [1]}}}]}, "d"),
        ("POST", query, {"query": {"indices": [1, 1], "values": [1, 1]}, "using": "text"},
         "unique"),
        ("POST", query, {"query": [0.1] * 8, "using": "text"}, "sparse vector"),
        ("POST", query, {"query": {"indices": [1], "values": [1]}, "using": "nope"}, "nope"),
        ("POST", query, {"query": {"recommend": {"positive": [[0.1] * 8]}}, "using": "text"},
         "sparse vector"),
        ("PUT", "/collections/sparse_bad_create", {"vectors": {"a": {"size": 2, "distance": "Dot"}},
                                                   "sparse_vectors": {"a": {}}}, "a"),
        ("PUT", "/collections/sparse_bad_create", {"vectors": {},
                                                   "sparse_vectors": {"s": {"modifier": "bm99"}}},
         "modifier"),
    ]
    for method, path, body, needle in cases:
        r = http.request(method, path, json=body)
        assert 400 <= r.status_code < 500 or r.status_code == 501, f"{body}: {r.status_code}"
        assert needle in r.json()["status"]["error"], f"{body}: {r.text}"
    # Nothing was half-written.
    pair.scroll_all("after bad input", with_payload=True, with_vectors=True)
    # A name given twice in one JSON object keeps its last vector, as Qdrant reads it.
    r = http.put(put, content=b'{"points": [{"id": 5, "vector": {"text": {"indices": [1], '
                              b'"values": [1.0]}, "text": {"indices": [7, 3], "values": [0.5, 2.0]}}}]}',
                 headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    got = remote.retrieve(pair.name, [5], with_vectors=True)[0].vector["text"]
    assert (got.indices, got.values) == ([3, 7], [2.0, 0.5]), got
    pair.drop()

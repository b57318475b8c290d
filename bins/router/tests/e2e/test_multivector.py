"""Multivectors (ColBERT-style late interaction) beside a dense vector and alone: collection
config echoed, points written in the list and batch forms (some without a matrix), searched by
a matrix, by one vector, by a point's id, with filters, offsets and thresholds, under every
distance; recommend, discover and context by example matrices; MMR; a dense prefetch
re-scored by MaxSim and fused with a MaxSim prefetch; read back by retrieve and scroll; their
matrices updated and deleted; on one and three shards, compared with the in-memory oracle;
kept across a snapshot recovery and a restart; bad input refused with a 4xx."""

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

MAX_SIM = models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM)


def matrix(rng: random.Random, dim: int, rows: tuple[int, int] = (1, 9)) -> list[list[float]]:
    return [data.vector(rng, dim) for _ in range(rng.randint(*rows))]


def vectors_config(distances: tuple[models.Distance, models.Distance]) -> dict:
    return {
        "d": models.VectorParams(size=8, distance=models.Distance.COSINE),
        "colbert": models.VectorParams(size=6, distance=distances[0], multivector_config=MAX_SIM),
        "late": models.VectorParams(size=4, distance=distances[1], multivector_config=MAX_SIM),
    }


DIMS = {"colbert": 6, "late": 4}


def multi_points(rng: random.Random, n: int) -> list[models.PointStruct]:
    pts = data.points(rng, n, {"d": 8})
    pts = [p for p in pts if not (isinstance(p.id, int) and p.id >= 10_000_000)]
    for p in pts:
        for name, share in (("colbert", 0.85), ("late", 0.6)):
            if rng.random() < share:
                p.vector[name] = matrix(rng, DIMS[name])
    # A matrix stored twice: equal scores, compared as ties.
    pts[1].vector["colbert"] = pts[0].vector.get("colbert") or matrix(rng, 6)
    pts[0].vector["colbert"] = pts[1].vector["colbert"]
    return pts


def create(remote, oracle, name: str, shards: int, config) -> Pair:
    pair = Pair(remote, oracle, name)
    if remote.collection_exists(name):
        remote.delete_collection(name)
    assert remote.create_collection(name, vectors_config=config, shard_number=shards)
    oracle.create_collection(name, vectors_config=config)
    info = remote.get_collection(name)
    assert info.config.params.vectors == config, info.config.params
    return pair


def threshold_between(oracle, pair, kw, limit) -> float | None:
    """A score between two distinct scores of the oracle's answer (the server keeps a score
    equal to the threshold, the oracle drops it)."""
    full = oracle.query_points(pair.name, limit=limit, **kw).points
    if len(full) < 2:
        return None
    mid = full[len(full) // 2]
    worse = [p.score for p in full[len(full) // 2:] if p.score != mid.score]
    if not worse:
        return None
    return (mid.score + worse[0]) / 2


@pytest.mark.parametrize("shards,distances", [
    (1, (models.Distance.COSINE, models.Distance.EUCLID)),
    (3, (models.Distance.DOT, models.Distance.MANHATTAN)),
])
def test_multivector_queries_match_oracle(remote, oracle, router_url, shards, distances):
    rng = random.Random(900 + shards)
    pair = create(remote, oracle, f"multi_{shards}", shards, vectors_config(distances))
    pts = multi_points(rng, 400)
    pair.upsert(pts, rng)
    ids = [p.id for p in pts]
    ids_with = {n: [p.id for p in pts if n in p.vector] for n in ("colbert", "late", "d")}
    pair.scroll_all("scroll", with_payload=True, with_vectors=True)
    pair.retrieve("retrieve", ids[:40], with_vectors=["colbert"])
    for name in ("colbert", "late"):
        pair.count(f"has_vector {name}", models.Filter(must=[models.HasVectorCondition(
            has_vector=name)]))

    def query_for(using):
        r = rng.random()
        if r < 0.15 and ids_with[using]:
            return rng.choice(ids_with[using])
        if r < 0.25:
            return data.vector(rng, DIMS[using])  # one vector: a matrix of one row
        return matrix(rng, DIMS[using], (1, 6))

    for q in range(60):
        using = rng.choice(["colbert", "late"])
        query = query_for(using)
        flt = data.random_filter(rng, ids) if rng.random() < 0.3 else None
        limit, offset = rng.choice([1, 5, 10, 30]), rng.choice([0, 0, 3])
        with_vectors = rng.choice([False, True, [using]])
        ctx = f"query {q} using {using}: {query} filter {flt}"
        kw = dict(query=query, using=using, query_filter=flt, with_payload=rng.random() < 0.5,
                  with_vectors=with_vectors)
        if isinstance(query, list) and not isinstance(query[0], list):
            # The oracle takes a matrix only; the server reads one vector as one row.
            okw = dict(kw, query=[query])
        else:
            okw = kw
        if rng.random() < 0.3:
            t = threshold_between(oracle, pair, okw, limit + offset + SPARE)
            if t is not None:
                kw["score_threshold"] = okw["score_threshold"] = t
                ctx += f" threshold {t}"
        full = oracle.query_points(pair.name, limit=limit + offset + SPARE, **okw).points
        got = remote.query_points(pair.name, limit=limit, offset=offset, **kw).points
        check_scored(got, full, offset, limit, ctx)

    # Recommend, discover and context by example matrices or ids.
    def example(using):
        if rng.random() < 0.3 and ids_with[using]:
            return rng.choice(ids_with[using])
        return matrix(rng, DIMS[using], (1, 5))

    for q in range(30):
        using = rng.choice(["colbert", "late"])
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

    # MMR over a multivector, compared in order: it picks one point at a time.
    for q in range(10):
        using = rng.choice(["colbert", "late"])
        query = models.NearestQuery(nearest=matrix(rng, DIMS[using], (1, 4)), mmr=models.Mmr(
            diversity=rng.choice([0.0, 0.4, 0.9]), candidates_limit=rng.choice([None, 20, 60])))
        limit = rng.choice([3, 10])
        kw = dict(query=query, using=using, limit=limit, with_payload=False)
        got = remote.query_points(pair.name, **kw).points
        want = oracle.query_points(pair.name, **kw).points
        assert [p.id for p in got] == [p.id for p in want], (
            f"multivector mmr {q}: {query}\n got {[(p.id, p.score) for p in got]}\n"
            f" want {[(p.id, p.score) for p in want]}")
        check_scored(got, want, 0, limit, f"multivector mmr {q}")

    # ColBERT-style re-scoring: a dense prefetch re-ranked by MaxSim; and fused with one.
    for q in range(30):
        dense = models.Prefetch(query=data.vector(rng, 8), using="d", limit=rng.choice([10, 40]))
        late = models.Prefetch(query=matrix(rng, 6, (1, 5)), using="colbert",
                               limit=rng.choice([10, 30]))
        flt = data.random_filter(rng, ids) if rng.random() < 0.3 else None
        kind = q % 4
        if kind == 0:
            kw = dict(prefetch=dense, query=matrix(rng, 6, (1, 6)), using="colbert")
        elif kind == 1:
            kw = dict(prefetch=[dense, late], query=models.FusionQuery(fusion=models.Fusion.RRF))
        elif kind == 2:
            kw = dict(prefetch=[dense, late], query=models.FusionQuery(fusion=models.Fusion.DBSF))
        else:
            kw = dict(prefetch=late, query=data.vector(rng, 8), using="d")
        ctx = f"hybrid {q}: {kw} filter {flt}"
        full = oracle.query_points(pair.name, query_filter=flt, limit=10 + SPARE, **kw).points
        got = remote.query_points(pair.name, query_filter=flt, limit=10, **kw).points
        check_scored(got, full, 0, 10, ctx)

    # Matrices updated and deleted: the rest of each point stays.
    changed = [models.PointVectors(id=i, vector={"colbert": matrix(rng, 6)})
               for i in ids_with["d"][:30]]
    pair.both("update_vectors", points=changed, wait=True)
    pair.both("delete_vectors", vectors=["late"], points=ids[30:80], wait=True)
    pair.both("delete", points_selector=models.PointIdsList(points=ids[80:100]), wait=True)
    pair.scroll_all("after vector writes", with_payload=True, with_vectors=True)
    for q in range(10):
        pair.query(f"after vector writes {q}", query=matrix(rng, 6, (1, 4)), using="colbert",
                   limit=10, with_vectors=True)
    pair.drop()


def test_unnamed_multivector_snapshot_and_restart(oracle, schema_checker, tmp_path):
    rng = random.Random(78)
    proc = RouterProcess(router_binary(), tmp_path / "storage", tmp_path / "snapshots",
                         tmp_path / "router.log")
    proc.start()
    try:
        remote = checked_client(proc.url, schema_checker)
        config = models.VectorParams(size=5, distance=models.Distance.COSINE,
                                     multivector_config=MAX_SIM)
        pair = create(remote, oracle, "multi_only", 2, config)
        pts = [models.PointStruct(id=i, vector=matrix(rng, 5), payload=data.payload(rng, i))
               for i in range(300)]
        pair.upsert(pts, rng)
        queries = [matrix(rng, 5, (1, 4)) for _ in range(10)]

        def state():
            out = [pair.scroll_all("state", with_payload=True, with_vectors=True)]
            for i, v in enumerate(queries):
                out.append(pair.query(f"state {i}", query=v, limit=10, with_vectors=True))
            return out

        before = state()
        desc = remote.create_snapshot(pair.name, wait=True)
        pair.both("delete", points_selector=models.PointIdsList(points=[p.id for p in pts[:50]]),
                  wait=True)
        location = f"file://{(tmp_path / 'snapshots' / pair.name / desc.name).resolve()}"
        assert remote.recover_snapshot(pair.name, location=location, wait=True) is True
        oracle.delete_collection(pair.name)
        oracle.create_collection(pair.name, vectors_config=config)
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


def test_bad_multivector_input(remote, oracle, router_url):
    rng = random.Random(4)
    pair = create(remote, oracle, "multi_bad", 1,
                  vectors_config((models.Distance.COSINE, models.Distance.EUCLID)))
    pair.upsert(multi_points(rng, 20), rng)
    http = httpx.Client(base_url=router_url, timeout=30)
    put = f"/collections/{pair.name}/points?wait=true"
    query = f"/collections/{pair.name}/points/query"
    cases = [
        ("PUT", put, {"points": [{"id": 1, "vector": {"colbert": [[0.1] * 6, [0.1] * 5]}}]},
         "same dimension"),
        ("PUT", put, {"points": [{"id": 1, "vector": {"colbert": [[0.1] * 5, [0.1] * 5]}}]},
         "dim"),
        ("PUT", put, {"points": [{"id": 1, "vector": {"colbert": [[]]}}]}, "non-empty"),
        ("PUT", put, {"points": [{"id": 1, "vector": {"colbert": [[0.1] * 6, None]}}]}, ""),
        ("PUT", put, {"points": [{"id": 1, "vector": {"d": [[0.1] * 8]}}]}, "d"),
        ("PUT", put, {"points": [{"id": 1, "vector": {"colbert": {"indices": [1],
                                                                   "values": [1]}}}]}, "colbert"),
        ("POST", query, {"query": [[0.1] * 6, [0.2] * 4], "using": "colbert"}, "same dimension"),
        ("POST", query, {"query": [[0.1] * 5], "using": "colbert"}, "dim"),
        ("POST", query, {"query": [[0.1] * 8], "using": "d"}, "multivector"),
        ("POST", query, {"query": {"indices": [1], "values": [1]}, "using": "colbert"}, "sparse"),
        ("POST", query, {"prefetch": {"query": [[0.1] * 6], "using": "nope"},
                         "query": [[0.1] * 6], "using": "colbert"}, "nope"),
        ("PUT", "/collections/multi_bad_create",
         {"vectors": {"size": 4, "distance": "Dot", "multivector_config": {"comparator": "min_sim"}}},
         "min_sim"),
        # A multivector's name taken by a single vector.
        ("PUT", f"/collections/{pair.name}/vectors/colbert",
         {"dense": {"size": 6, "distance": "Cosine"}}, "multivector"),
        # More query rows than a query may hold (examples' rows count too).
        ("POST", query, {"query": [[0.1] * 6] * 4097, "using": "colbert"}, "4096"),
        ("POST", query, {"query": {"recommend": {"positive": [[[0.1] * 6] * 2000] * 3}},
                         "using": "colbert"}, "4096"),
        ("POST", f"/collections/{pair.name}/points/search/matrix/pairs", {"using": "colbert"},
         "multivector"),
        # A multivector's graph is not turned off (or on) in place.
        ("PATCH", f"/collections/{pair.name}",
         {"vectors": {"colbert": {"hnsw_config": {"m": 0}}}}, "m: 0"),
    ]
    for method, path, body, needle in cases:
        r = http.request(method, path, json=body)
        assert 400 <= r.status_code < 500, f"{body}: {r.status_code} {r.text}"
        assert needle in r.json()["status"]["error"], f"{body}: {r.text}"
    # Nothing was half-written.
    pair.scroll_all("after bad input", with_payload=True, with_vectors=True)
    pair.drop()


def test_indexed_multivector_exact_and_approximate(remote, oracle):
    """Shards that seal and index segments every ~160 points: matrices found through the
    graph of their encodings and re-scored by MaxSim keep recall@10 against the oracle; exact
    searches, examples and re-scoring stay exact; has_vector and scroll are unchanged."""
    from test_indexed import wait_green

    rng = random.Random(55)
    name = "multi_indexed"
    dim = 16
    centres = [data.vector(rng, dim) for _ in range(40)]

    def clustered(rows: int) -> list[list[float]]:
        topics = [rng.choice(centres) for _ in range(3)]
        return [[round(x + rng.uniform(-0.35, 0.35), 4) for x in rng.choice(topics)]
                for _ in range(rows)]

    config = {"colbert": models.VectorParams(size=dim, distance=models.Distance.COSINE,
                                             multivector_config=MAX_SIM)}
    if remote.collection_exists(name):
        remote.delete_collection(name)
    # indexing_threshold is in KB: 10 KB of 16-dimensional f32 rows is 160 points.
    remote.create_collection(name, vectors_config=config, shard_number=2,
                             optimizers_config=models.OptimizersConfigDiff(indexing_threshold=10))
    oracle.create_collection(name, vectors_config=config)
    pair = Pair(remote, oracle, name)
    pts = [models.PointStruct(id=i, vector={"colbert": clustered(rng.randint(2, 10))},
                              payload={"group": i % 5}) for i in range(3000)]
    pair.upsert(pts, rng, batch_size=200)
    wait_green(remote, name)
    info = remote.get_collection(name)
    assert info.indexed_vectors_count and info.indexed_vectors_count >= 2500, info

    flt = models.Filter(must=[models.FieldCondition(key="group", match=models.MatchValue(value=2))])
    exact = models.SearchParams(exact=True)
    for i in range(15):
        pair.query(f"exact {i}", query=clustered(rng.randint(1, 5)), using="colbert", limit=10,
                   search_params=exact, query_filter=flt if i % 2 else None)
    found = wanted = 0
    for i in range(40):
        q = clustered(rng.randint(2, 5))
        got = remote.query_points(name, query=q, using="colbert", limit=10).points
        want = oracle.query_points(name, query=q, using="colbert", limit=10).points
        found += len({p.id for p in got} & {p.id for p in want})
        wanted += len(want)
        # Whatever the graph found is scored exactly.
        by_id = {p.id: p.score for p in oracle.query_points(
            name, query=q, using="colbert", limit=len(pts), with_payload=False).points}
        for p in got:
            assert abs(p.score - by_id[p.id]) <= 1e-4 * max(1.0, abs(p.score)), (p, by_id[p.id])
    assert found / wanted >= 0.9, f"recall@10 {found / wanted:.3f} through the encodings' graph"
    # A dense-free re-scoring and example queries are exact whatever the index.
    for i in range(5):
        kw = dict(prefetch=models.Prefetch(query=clustered(3), using="colbert", limit=50,
                                           params=exact),
                  query=clustered(4), using="colbert", limit=10)
        full = oracle.query_points(name, **{**kw, "limit": 10 + SPARE}).points
        check_scored(remote.query_points(name, **kw).points, full, 0, 10, f"re-scored {i}")
        query = models.RecommendQuery(recommend=models.RecommendInput(
            positive=[clustered(3)], negative=[rng.randrange(3000)],
            strategy=models.RecommendStrategy.SUM_SCORES))
        full = oracle.query_points(name, query=query, using="colbert", limit=10 + SPARE).points
        got = remote.query_points(name, query=query, using="colbert", limit=10).points
        check_scored(got, full, 0, 10, f"recommend {i}")
    pair.scroll_all("scroll", with_payload=True, with_vectors=True)
    pair.drop()


@pytest.mark.parametrize("shards", [1, 2])
def test_sparse_and_multivector_names_created_and_deleted(remote, oracle, shards):
    """A sparse vector and a multivector created on a collection holding points in indexed
    segments, written, searched, then deleted from it, and created again with another size,
    as the oracle does (restarts after such changes: `crates/storage`'s multi tests)."""
    from test_indexed import wait_green

    rng = random.Random(70 + shards)
    name = f"multi_names_{shards}"
    dense = {"d": models.VectorParams(size=8, distance=models.Distance.COSINE)}
    if remote.collection_exists(name):
        remote.delete_collection(name)
    remote.create_collection(name, vectors_config=dense, shard_number=shards,
                             optimizers_config=models.OptimizersConfigDiff(indexing_threshold=2))
    oracle.create_collection(name, vectors_config=dense)
    pair = Pair(remote, oracle, name)
    pts = data.points(rng, 300, {"d": 8})
    pair.upsert(pts, rng)
    wait_green(remote, name)
    ids = [p.id for p in pts]

    sparse_cfg = models.SparseVectorNameConfig(
        sparse=models.SparseVectorConfig(modifier=models.Modifier.IDF))
    multi_cfg = models.DenseVectorNameConfig(dense=models.DenseVectorConfig(
        size=4, distance=models.Distance.DOT, multivector_config=MAX_SIM))
    for client in (remote, oracle):
        assert client.create_vector_name(name, "s", sparse_cfg)
        assert client.create_vector_name(name, "m", multi_cfg)
        # Again with the same config: nothing changes.
        assert client.create_vector_name(name, "m", multi_cfg)
    info = remote.get_collection(name).config.params
    assert set(info.vectors) == {"d", "m"} and info.vectors["m"].multivector_config == MAX_SIM
    assert set(info.sparse_vectors) == {"s"}
    # Stored points have neither until written.
    pair.scroll_all("created", with_payload=True, with_vectors=True)
    changed = [models.PointVectors(id=i, vector={
        "s": models.SparseVector(indices=[rng.randrange(50) for _ in range(1)],
                                 values=[round(rng.uniform(0.1, 2), 3)]),
        "m": matrix(rng, 4, (1, 5))}) for i in ids[:120]]
    pair.both("update_vectors", points=changed, wait=True)
    more = multi_points(random.Random(shards), 60)
    for k, p in enumerate(more):
        p.id = 50_000 + k
        p.vector = {"d": p.vector["d"], "m": matrix(rng, 4, (1, 4))}
    pair.upsert(more, rng)
    pair.scroll_all("written", with_payload=True, with_vectors=True)
    for i in range(10):
        pair.query(f"multi {i}", query=matrix(rng, 4, (1, 4)), using="m", limit=10)
        pair.query(f"sparse {i}", query=models.SparseVector(indices=[rng.randrange(50)],
                                                            values=[1.0]), using="s", limit=10)
    pair.count("has m", models.Filter(must=[models.HasVectorCondition(has_vector="m")]))

    for client in (remote, oracle):
        assert client.delete_vector_name(name, "s")
        assert client.delete_vector_name(name, "m")
    info = remote.get_collection(name).config.params
    assert set(info.vectors) == {"d"} and not info.sparse_vectors, info
    pair.scroll_all("deleted", with_payload=True, with_vectors=True)
    pair.count("has m after delete",
               models.Filter(must=[models.HasVectorCondition(has_vector="m")]))
    # Created again with another size: empty.
    other = models.DenseVectorNameConfig(dense=models.DenseVectorConfig(
        size=6, distance=models.Distance.COSINE, multivector_config=MAX_SIM))
    for client in (remote, oracle):
        assert client.create_vector_name(name, "m", other)
    pair.scroll_all("created again", with_payload=True, with_vectors=True)
    pair.drop()

"""Custom sharding (`sharding_method: custom`): shard keys created, listed and deleted; points
upserted under a key; queries, counts, scrolls, retrievals, recommendations, facets and
payload writes with and without `shard_key_selector`, against the in-memory oracle holding
each key's points in a collection of its own (the local client has no shard keys) and all of
them in another.

Served in cluster mode, where each key has nodes of its own (the runner sets
`VR_E2E_CLUSTER_NODES`); a router holding its shards in process refuses such a collection
(501), which is checked there instead."""

from __future__ import annotations

import os
import random
import uuid

import pytest
from qdrant_client import models

import data
from compare import check_records, check_scored

NODES = int(os.environ.get("VR_E2E_CLUSTER_NODES", "0"))
DIM = 8
KEYS = ["en", "de", 7]


def canonical(point_id) -> str:
    """An id as the server spells it (UUIDs lowercase, hyphenated)."""
    return str(uuid.UUID(point_id)) if isinstance(point_id, str) else str(point_id)


def oracle_name(key) -> str:
    return f"keys_oracle_{key}"


def test_custom_sharding_is_refused_without_a_cluster(remote):
    if NODES:
        pytest.skip("a cluster router serves custom sharding")
    with pytest.raises(Exception) as e:
        remote.create_collection(
            "keys_refused",
            vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE),
            sharding_method=models.ShardingMethod.CUSTOM,
        )
    assert "custom" in str(e.value), e.value
    assert not remote.collection_exists("keys_refused")


@pytest.fixture()
def keyed(remote, oracle):
    """A collection sharded by key on the router, and the oracle's collections: one per key
    and `keys_oracle_all`, each key's points placed by its own random stream."""
    if not NODES:
        pytest.skip("custom sharding is served in cluster mode")
    name = "keys"
    if remote.collection_exists(name):
        remote.delete_collection(name)
    params = models.VectorParams(size=DIM, distance=models.Distance.COSINE)
    remote.create_collection(name, vectors_config=params,
                             sharding_method=models.ShardingMethod.CUSTOM)
    for k in KEYS + ["all"]:
        oracle.create_collection(oracle_name(k), vectors_config=params)
    remote.create_payload_index(name, field_name="brand", field_schema="keyword", wait=True)
    for i, k in enumerate(KEYS):
        # One key on a node of its own; one over every node; one placed by its hash.
        if i == 0:
            remote.create_shard_key(name, k, placement=[0])
        elif i == 1:
            remote.create_shard_key(name, k, shards_number=NODES)
        else:
            remote.create_shard_key(name, k)
    rng = random.Random(77)
    by_key = {}
    next_id = 0
    for k in KEYS:
        pts = data.points(rng, 300, DIM, uuid_share=0.2)
        for p in pts:
            # Distinct ids over the keys (a point held under two keys is answered once by a
            # query that spans both: see the compatibility notes).
            if isinstance(p.id, int):
                p.id = next_id
                next_id += 1
            p.payload = {"brand": f"b{rng.randrange(5)}", "n": rng.randrange(100),
                         "key": str(k)}
        by_key[k] = pts
        for chunk in range(0, len(pts), 100):
            part = pts[chunk:chunk + 100]
            remote.upsert(name, points=part, shard_key_selector=k, wait=True)
            oracle.upsert(oracle_name(k), points=part)
            oracle.upsert(oracle_name("all"), points=part)
    yield name, by_key
    remote.delete_collection(name)


def test_shard_keys_are_listed_and_points_land_under_theirs(remote, keyed):
    name, by_key = keyed
    listed = remote.list_shard_keys(name).shard_keys
    assert sorted(str(d.key) for d in listed) == sorted(str(k) for k in KEYS)
    assert remote.get_collection(name).config.params.sharding_method == \
        models.ShardingMethod.CUSTOM
    for k, pts in by_key.items():
        got = remote.count(name, shard_key_selector=k, exact=True).count
        assert got == len(pts), f"key {k}: {got} points"
    assert remote.count(name, exact=True).count == sum(len(p) for p in by_key.values())
    assert remote.get_collection(name).points_count == sum(len(p) for p in by_key.values())


def test_queries_with_and_without_keys_match_the_oracle(remote, oracle, keyed):
    name, by_key = keyed
    rng = random.Random(78)
    all_ids = [p.id for pts in by_key.values() for p in pts]
    selections = [("en",), ("de",), (7,), ("en", 7), None]
    for q in range(60):
        sel = rng.choice(selections)
        flt = data.random_filter(rng, all_ids) if rng.random() < 0.4 else None
        vec = data.vector(rng, DIM)
        limit = rng.choice([1, 5, 20])
        selector = None if sel is None else (sel[0] if len(sel) == 1 else list(sel))
        got = remote.query_points(name, query=vec, query_filter=flt, limit=limit,
                                  shard_key_selector=selector, with_payload=True,
                                  search_params=models.SearchParams(exact=True)).points
        keys = KEYS if sel is None else list(sel)
        full = []
        for k in keys:
            full += oracle.query_points(oracle_name(k), query=vec, query_filter=flt,
                                        limit=limit, with_payload=True).points
        full.sort(key=lambda p: -p.score)
        check_scored(got, full, 0, limit, f"query {q} keys {sel} filter {flt}")
        count = remote.count(name, count_filter=flt, shard_key_selector=selector,
                             exact=True).count
        want = sum(oracle.count(oracle_name(k), count_filter=flt, exact=True).count
                   for k in keys)
        assert count == want, f"count {q} keys {sel} filter {flt}"


def test_scroll_retrieve_recommend_and_facet_within_a_key(remote, oracle, keyed):
    name, by_key = keyed
    rng = random.Random(79)
    for k, pts in by_key.items():
        page, offset, got = 41, None, []
        while True:
            recs, offset = remote.scroll(name, limit=page, offset=offset, with_payload=True,
                                         shard_key_selector=k)
            got += recs
            if offset is None:
                break
        want, _ = oracle.scroll(oracle_name(k), limit=10_000, with_payload=True)
        check_records(got, want, f"scroll of key {k}")
        ids = [p.id for p in rng.sample(pts, 10)]
        other = next(kk for kk in KEYS if kk != k)
        foreign = [p.id for p in by_key[other][:3]]
        got = remote.retrieve(name, ids=ids + foreign, shard_key_selector=k, with_vectors=True)
        want = oracle.retrieve(oracle_name(k), ids=ids + foreign, with_vectors=True)
        check_records(got, want, f"retrieve from key {k}", ordered=False)
        # Without a key, every key's points are found.
        got = remote.retrieve(name, ids=ids + foreign)
        assert sorted(canonical(r.id) for r in got) == sorted(map(canonical, ids + foreign))
        positive = ids[:2]
        got = remote.query_points(name, query=models.RecommendQuery(
            recommend=models.RecommendInput(positive=positive)), limit=10,
            shard_key_selector=k, search_params=models.SearchParams(exact=True)).points
        full = oracle.query_points(oracle_name(k), query=models.RecommendQuery(
            recommend=models.RecommendInput(positive=positive)), limit=10).points
        check_scored(got, full, 0, 10, f"recommend within key {k}")
        got = remote.facet(name, key="brand", shard_key_selector=k, exact=True, limit=10)
        want = oracle.facet(oracle_name(k), key="brand", limit=10)
        assert [(h.value, h.count) for h in got.hits] == \
            [(h.value, h.count) for h in want.hits], f"facet of key {k}"


def test_writes_reach_the_keys_they_name(remote, oracle, keyed):
    name, by_key = keyed
    en, de = by_key["en"], by_key["de"]
    # A payload write named by key and ids.
    ids = [p.id for p in en[:20]]
    remote.set_payload(name, payload={"flag": True}, points=ids, shard_key_selector="en",
                       wait=True)
    oracle.set_payload(oracle_name("en"), payload={"flag": True}, points=ids)
    # A payload write by ids without a key reaches each id under the key holding it; an id
    # no key holds is a 404, and nothing is written then.
    spread = [p.id for p in en[20:25]] + [p.id for p in de[20:25]]
    remote.set_payload(name, payload={"spread": 1}, points=spread, wait=True)
    oracle.set_payload(oracle_name("en"), payload={"spread": 1}, points=spread[:5])
    oracle.set_payload(oracle_name("de"), payload={"spread": 1}, points=spread[5:])
    with pytest.raises(Exception) as e:
        remote.set_payload(name, payload={"never": 1}, points=spread + [123_456_789], wait=True)
    assert "123456789" in str(e.value), e.value
        # A delete by filter without a key reaches every key.
    flt = models.Filter(must=[models.FieldCondition(key="brand",
                                                    match=models.MatchValue(value="b1"))])
    remote.delete(name, points_selector=models.FilterSelector(filter=flt), wait=True)
    for k in KEYS:
        oracle.delete(oracle_name(k), points_selector=models.FilterSelector(filter=flt))
    # A delete by ids within one key leaves the others'.
    gone = [p.id for p in de[:15]]
    remote.delete(name, points_selector=models.PointIdsList(points=gone),
                  shard_key_selector="de", wait=True)
    oracle.delete(oracle_name("de"), points_selector=models.PointIdsList(points=gone))
    for k in KEYS:
        got, _ = remote.scroll(name, limit=10_000, with_payload=True, shard_key_selector=k)
        want, _ = oracle.scroll(oracle_name(k), limit=10_000, with_payload=True)
        check_records(got, want, f"key {k} after the writes")
    # An upsert names its key: without one it cannot be placed; an unknown key is refused;
    # with a fallback, the fallback takes it when the target does not exist.
    p = models.PointStruct(id=999_999, vector=data.vector(random.Random(1), DIM),
                           payload={"brand": "new"})
    with pytest.raises(Exception) as e:
        remote.upsert(name, points=[p], wait=True)
    assert "Shard key" in str(e.value), e.value
    with pytest.raises(Exception) as e:
        remote.upsert(name, points=[p], shard_key_selector="fr", wait=True)
    assert "fr" in str(e.value), e.value
    remote.upsert(name, points=[p], wait=True,
                  shard_key_selector=models.ShardKeyWithFallback(target="fr", fallback="en"))
    assert remote.retrieve(name, ids=[999_999], shard_key_selector="en")[0].payload == \
        {"brand": "new"}
    # A key deleted takes its points with it.
    before = remote.count(name, exact=True).count
    n7 = remote.count(name, shard_key_selector=7, exact=True).count
    remote.delete_shard_key(name, 7)
    assert remote.count(name, exact=True).count == before - n7
    listed = remote.list_shard_keys(name).shard_keys
    assert sorted(str(d.key) for d in listed) == ["de", "en"]
    with pytest.raises(Exception) as e:
        remote.count(name, shard_key_selector=7, exact=True)
    assert "not found" in str(e.value), e.value


def test_one_id_under_two_keys_is_two_points(remote, keyed):
    """As in Qdrant, a point id upserted under two keys is two points: each key answers its
    own; a read over both lists the id once (scroll pages never repeat it), counts both."""
    name, by_key = keyed
    shared = by_key["en"][0].id
    vec = data.vector(random.Random(3), DIM)
    remote.upsert(name, points=[models.PointStruct(id=shared, vector=vec,
                                                   payload={"copy": "de"})],
                  shard_key_selector="de", wait=True)
    got = remote.retrieve(name, ids=[shared], shard_key_selector="de")
    assert [r.payload for r in got] == [{"copy": "de"}]
    got = remote.retrieve(name, ids=[shared], shard_key_selector="en")
    assert got[0].payload["key"] == "en"
    total = sum(len(p) for p in by_key.values()) + 1
    assert remote.count(name, exact=True).count == total
    seen, offset = [], None
    while True:
        recs, offset = remote.scroll(name, limit=7, offset=offset)
        seen += [canonical(r.id) for r in recs]
        if offset is None:
            break
    assert len(seen) == len(set(seen)) == total - 1


def test_placement_by_payload_field(remote, oracle, router_url):
    """`shard_key_field` (an extension): an upsert is placed by each point's value of the
    field, and a read whose filter pins the field reaches only its keys."""
    if not NODES:
        pytest.skip("custom sharding is served in cluster mode")
    import httpx
    name = "keys_by_field"
    if remote.collection_exists(name):
        remote.delete_collection(name)
    r = httpx.put(f"{router_url}/collections/{name}", json={
        "vectors": {"size": DIM, "distance": "Cosine"}, "sharding_method": "custom",
        "shard_key_field": "lang"}, timeout=30)
    assert r.status_code == 200, r.text
    for k in ["en", "de"]:
        remote.create_shard_key(name, k)
        oracle.create_collection(oracle_name(f"f_{k}"), vectors_config=models.VectorParams(
            size=DIM, distance=models.Distance.COSINE))
    rng = random.Random(80)
    pts = [models.PointStruct(id=i, vector=data.vector(rng, DIM),
                              payload={"lang": "en" if i % 3 else "de", "n": i})
           for i in range(300)]
    remote.upsert(name, points=pts, wait=True)
    for p in pts:
        oracle.upsert(oracle_name(f"f_{p.payload['lang']}"), points=[p])
    for k in ["en", "de"]:
        assert remote.count(name, shard_key_selector=k, exact=True).count == \
            oracle.count(oracle_name(f"f_{k}"), exact=True).count
    for q in range(20):
        vec = data.vector(rng, DIM)
        k = rng.choice(["en", "de"])
        flt = models.Filter(must=[models.FieldCondition(key="lang",
                                                        match=models.MatchValue(value=k))])
        got = remote.query_points(name, query=vec, query_filter=flt, limit=10,
                                  search_params=models.SearchParams(exact=True)).points
        want = oracle.query_points(oracle_name(f"f_{k}"), query=vec, limit=10).points
        check_scored(got, want, 0, 10, f"pinned query {q} to {k}")
    # A value no key exists for: nothing passes.
    flt = models.Filter(must=[models.FieldCondition(key="lang",
                                                    match=models.MatchValue(value="fr"))])
    assert remote.query_points(name, query=vec, query_filter=flt, limit=5).points == []
    assert remote.count(name, count_filter=flt, exact=True).count == 0
    # Points do not move between keys through payload writes.
    with pytest.raises(Exception) as e:
        remote.set_payload(name, payload={"lang": "de"}, points=[1], wait=True)
    assert "lang" in str(e.value), e.value
    remote.set_payload(name, payload={"lang": "en", "x": 1}, points=[1],
                       shard_key_selector="en", wait=True)
    # A point without the field cannot be placed; one whose key does not exist is refused.
    for payload in [{"n": 1}, {"lang": "fr"}, {"lang": True}]:
        with pytest.raises(Exception) as e:
            remote.upsert(name, points=[models.PointStruct(id=5000, vector=vec,
                                                           payload=payload)], wait=True)
        assert "lang" in str(e.value) or "fr" in str(e.value), e.value
    assert remote.retrieve(name, ids=[5000]) == []
    remote.delete_collection(name)

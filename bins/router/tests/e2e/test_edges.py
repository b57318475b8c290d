"""Less travelled paths: creation options and a quantized collection (still exact when
small), upload helpers, scroll offsets that are not stored ids, duplicate ids, limits past
the end, payload keys through non-objects."""

from __future__ import annotations

import random
import uuid

from qdrant_client import models

import data
from pair import Pair


def test_creation_options_echo_and_quantized_search_is_exact(remote, oracle):
    rng = random.Random(8)
    name = "options"
    if remote.collection_exists(name):
        remote.delete_collection(name)
    vectors = models.VectorParams(size=8, distance=models.Distance.COSINE, on_disk=True)
    assert remote.create_collection(
        name, vectors_config=vectors, shard_number=2, replication_factor=1, on_disk_payload=True,
        hnsw_config=models.HnswConfigDiff(m=16, ef_construct=128, full_scan_threshold=10000,
                                          on_disk=False),
        optimizers_config=models.OptimizersConfigDiff(deleted_threshold=0.2,
                                                      default_segment_number=2,
                                                      indexing_threshold=20000),
        quantization_config=models.ScalarQuantization(scalar=models.ScalarQuantizationConfig(
            type=models.ScalarType.INT8, quantile=0.99, always_ram=True)))
    info = remote.get_collection(name)
    assert info.config.params.vectors == vectors
    assert info.config.params.shard_number == 2
    assert info.config.params.on_disk_payload is True
    assert (info.config.hnsw_config.m, info.config.hnsw_config.ef_construct,
            info.config.hnsw_config.full_scan_threshold) == (16, 128, 10000)
    assert info.config.optimizer_config.deleted_threshold == 0.2
    assert info.config.optimizer_config.default_segment_number == 2
    assert info.config.optimizer_config.indexing_threshold == 20000
    assert info.config.quantization_config == models.ScalarQuantization(
        scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8, quantile=0.99,
                                               always_ram=True))

    oracle.create_collection(name, vectors_config=vectors)
    pair = Pair(remote, oracle, name)
    pts = data.points(rng, 300, 8)
    pair.upsert(pts, rng)
    for i in range(20):
        pair.query(f"quantized query {i}", query=data.vector(rng, 8), limit=10,
                   with_payload=True)
    pair.drop()


def test_metadata_updates_merge_and_null_removes_a_key(remote):
    name = "metadata_merge"
    if remote.collection_exists(name):
        remote.delete_collection(name)
    remote.create_collection(
        name, vectors_config=models.VectorParams(size=4, distance=models.Distance.DOT),
        metadata={"team": "search", "tier": 2, "owner": {"name": "a"}})
    remote.update_collection(name, metadata={"tier": None, "region": "eu",
                                             "owner": {"name": "b"}})
    assert remote.get_collection(name).config.metadata == {
        "team": "search", "region": "eu", "owner": {"name": "b"}}
    remote.update_collection(name, metadata={"team": None, "region": None, "owner": None})
    assert not remote.get_collection(name).config.metadata
    remote.delete_collection(name)


def test_optimization_threads_auto_reads_back_as_the_schema_allows(remote):
    # The request takes a number or "auto"; the response schema (and the client's model) has
    # only an integer or null there. Found by Schemathesis: "auto" was echoed back, and the
    # client could not read the collection's info any more.
    for name, threads, expected in (("threads-auto", models.MaxOptimizationThreadsSetting.AUTO,
                                     None), ("threads-two", 2, 2)):
        if remote.collection_exists(name):
            remote.delete_collection(name)
        remote.create_collection(
            name, vectors_config=models.VectorParams(size=4, distance=models.Distance.DOT),
            optimizers_config=models.OptimizersConfigDiff(max_optimization_threads=threads))
        info = remote.get_collection(name)
        assert info.config.optimizer_config.max_optimization_threads == expected
        remote.delete_collection(name)


def test_upload_helpers_scroll_offsets_and_limits(remote, oracle):
    rng = random.Random(9)
    pair = Pair(remote, oracle, "edges")
    pair.create(models.VectorParams(size=4, distance=models.Distance.EUCLID), shard_number=3)
    pts = data.points(rng, 200, 4)
    for client in (remote, oracle):
        client.upload_points(pair.name, points=pts[:100], batch_size=17, wait=True)
        client.upload_collection(pair.name, vectors=[p.vector for p in pts[100:]],
                                 payload=[p.payload for p in pts[100:]],
                                 ids=[p.id for p in pts[100:]], batch_size=23, wait=True)
    everything = pair.scroll_all("after upload", with_payload=True, with_vectors=True)
    assert len(everything) == len(pts)

    ints = sorted(p.id for p in everything if isinstance(p.id, int))
    uuids = [p.id for p in everything if isinstance(p.id, str)]
    # Offsets that are not stored ids: scrolling starts at the next id in order.
    for offset in [ints[5] + 1, 0, ints[-1] + 1, str(uuid.UUID(int=0)),
                   uuids[len(uuids) // 2].upper(), str(uuid.UUID(int=2**128 - 1))]:
        r_points, r_next = remote.scroll(pair.name, offset=offset, limit=9)
        o_points, o_next = oracle.scroll(pair.name, offset=offset, limit=9)
        assert [p.id for p in r_points] == [p.id for p in o_points], offset
        assert r_next == o_next, offset

    some = rng.sample([p.id for p in everything], 5)
    pair.retrieve("duplicate ids", some + some[:2] + [424242], with_payload=True)
    pair.query("limit past the end", query=data.vector(rng, 4), limit=1000)
    pair.query("offset past the end", query=data.vector(rng, 4), limit=10, offset=500)
    r = remote.count(pair.name, exact=False).count
    assert r == len(pts)
    pair.drop()


def test_payload_key_paths(remote, oracle):
    rng = random.Random(10)
    pair = Pair(remote, oracle, "keys")
    pair.create(models.VectorParams(size=2, distance=models.Distance.DOT))
    pts = data.points(rng, 40, 2, uuid_share=0)
    pair.upsert(pts, rng)
    ids = [p.id for p in pts]
    steps = [
        ("into an object", {"payload": {"q": 1}, "key": "nested"}),
        ("two levels deep, new", {"payload": {"q": 2}, "key": "n1.n2"}),
        ("through a string", {"payload": {"q": 3}, "key": "nested.name"}),
        ("into array elements", {"payload": {"q": 4}, "key": "items[]"}),
        ("into one array element", {"payload": {"q": 5}, "key": "items[0]"}),
    ]
    for what, kw in steps:
        r_err = o_err = None
        try:
            remote.set_payload(pair.name, points=ids[:20], wait=True, **kw)
        except Exception as e:  # noqa: BLE001 - compared below
            r_err = e
        try:
            oracle.set_payload(pair.name, points=ids[:20], wait=True, **kw)
        except Exception as e:  # noqa: BLE001
            o_err = e
        if o_err is None:
            assert r_err is None, f"set_payload {what}: router refused ({r_err}), oracle accepted"
        pair.scroll_all(f"set_payload {what} (router error: {r_err}, oracle error: {o_err})",
                        with_payload=True)
    pair.drop()


def test_named_vector_subsets_empty_collections_and_names(remote, oracle):
    rng = random.Random(12)
    pair = Pair(remote, oracle, "my-coll.v1_2")
    config = {"a": models.VectorParams(size=3, distance=models.Distance.COSINE),
              "b": models.VectorParams(size=2, distance=models.Distance.EUCLID)}
    pair.create(config, shard_number=3)

    # An empty collection answers every read with nothing.
    pair.count("empty")
    pair.scroll_all("empty", with_payload=True)
    pair.query("empty query", query=[0.1, 0.2, 0.3], using="a", limit=5)
    pair.query("empty, no query", limit=5)
    pair.both("delete", points_selector=models.FilterSelector(filter=models.Filter(
        must=[models.FieldCondition(key="nothing", match=models.MatchValue(value=1))])), wait=True)

    pts = data.points(rng, 60, {"a": 3, "b": 2}, missing_named_share=0.5)
    pair.upsert(pts, rng)
    # Re-upserting a point replaces it whole: a vector it no longer carries is gone.
    swapped = []
    for p in pts[:20]:
        if set(p.vector) == {"a"}:
            v = {"b": data.vector(rng, 2)}
        elif set(p.vector) == {"b"}:
            v = {"a": data.vector(rng, 3)}
        else:
            v = {"a": p.vector["a"]}
        swapped.append(models.PointStruct(id=p.id, vector=v, payload={"swapped": True}))
    pair.both("upsert", points=swapped, wait=True)
    pair.scroll_all("after swapping vectors", with_payload=True, with_vectors=True)
    for name in ("a", "b"):
        flt = models.Filter(must=[models.HasVectorCondition(has_vector=name)])
        pair.count(f"has_vector {name}", flt)
        pair.query(f"using {name}", query=data.vector(rng, config[name].size), using=name,
                   limit=70, with_vectors=True)
    # A payload write into a nested key, by filter.
    pair.both("set_payload", payload={"k": 1}, key="deep.er",
              points=models.Filter(must=[models.HasVectorCondition(has_vector="b")]), wait=True)
    pair.scroll_all("after set_payload key by filter", with_payload=True)
    pair.drop()

"""Vector updates and conditional upserts: `update_vectors` (with and without
`update_filter`), `delete_vectors` (by ids and by filter), `upsert` with `update_mode`
(`insert_only`, `update_only`) and `update_filter`; on named vectors, one and three shards,
before and after the points are indexed, and after a restart. Compared with the oracle by
retrieving every point with its vectors and by searching each named vector."""

from __future__ import annotations

import random

import pytest
from qdrant_client import models
from qdrant_client.http.exceptions import UnexpectedResponse

import data
from conftest import checked_client, router_binary
from pair import Pair
from router_process import RouterProcess
from test_indexed import wait_green

CONFIG = {"a": models.VectorParams(size=6, distance=models.Distance.COSINE),
          "b": models.VectorParams(size=4, distance=models.Distance.EUCLID)}


def same_everywhere(pair: Pair, ids: list, rng: random.Random, ctx: str) -> None:
    pair.retrieve(ctx, ids, with_payload=True, with_vectors=True)
    for name, params in CONFIG.items():
        pair.query(f"{ctx} using {name}", query=data.vector(rng, params.size), using=name,
                   limit=15, with_payload=True, search_params=models.SearchParams(exact=True))
    pair.count(ctx)


def exercise(pair: Pair, rng: random.Random, ids: list, ctx: str) -> None:
    remote, oracle = pair.remote, pair.oracle
    # Replace one named vector of some points; the other vector and the payload stay.
    updates = [models.PointVectors(id=i, vector={"b": data.vector(rng, 4)})
               for i in rng.sample(ids, 30)]
    pair.both("update_vectors", points=updates, wait=True)
    same_everywhere(pair, ids, rng, f"{ctx} update_vectors")
    # Only where the filter passes.
    flt = models.Filter(must=[models.FieldCondition(key="city", match=models.MatchValue(
        value="Rome"))])
    updates = [models.PointVectors(id=i, vector={"a": data.vector(rng, 6)})
               for i in rng.sample(ids, 40)]
    pair.both("update_vectors", points=updates, update_filter=flt, wait=True)
    same_everywhere(pair, ids, rng, f"{ctx} update_vectors with filter")
    # An id that does not exist: the others are written, then 404.
    updates = [models.PointVectors(id=ids[0], vector={"b": data.vector(rng, 4)}),
               models.PointVectors(id=987_654_321, vector={"b": data.vector(rng, 4)})]
    with pytest.raises(UnexpectedResponse) as e:
        remote.update_vectors(pair.name, points=updates, wait=True)
    assert e.value.status_code == 404
    with pytest.raises(KeyError):
        oracle.update_vectors(pair.name, points=updates, wait=True)
    same_everywhere(pair, ids, rng, f"{ctx} update_vectors with a missing id")
    # Delete a vector by ids and by filter.
    pair.both("delete_vectors", vectors=["b"], points=rng.sample(ids, 25), wait=True)
    pair.both("delete_vectors", vectors=["a"], points=models.FilterSelector(filter=models.Filter(
        must=[models.FieldCondition(key="count", range=models.Range(lt=10))])), wait=True)
    same_everywhere(pair, ids, rng, f"{ctx} delete_vectors")
    # Conditional upserts.
    fresh = data.points(rng, 30, {"a": 6, "b": 4}, uuid_share=0, missing_named_share=0)
    for k, p in enumerate(fresh):
        p.id = ids[k] if k < 15 else 70_000_000 + k  # half existing, half new
    for mode in [models.UpdateMode.INSERT_ONLY, models.UpdateMode.UPDATE_ONLY]:
        for p in fresh:
            p.payload = dict(p.payload or {}, mode=mode.value)
        pair.both("upsert", points=fresh, update_mode=mode, wait=True)
        same_everywhere(pair, ids + [p.id for p in fresh], rng, f"{ctx} upsert {mode.value}")
    for p in fresh:
        p.payload = dict(p.payload or {}, mode="filtered")
    pair.both("upsert", points=fresh, update_filter=models.Filter(must=[models.FieldCondition(
        key="mode", match=models.MatchValue(value="insert_only"))]), wait=True)
    same_everywhere(pair, ids + [p.id for p in fresh], rng, f"{ctx} upsert with update_filter")


@pytest.mark.parametrize("shards,indexed", [(1, False), (3, False), (2, True)])
def test_vector_updates_and_conditional_upserts(remote, oracle, shards, indexed):
    rng = random.Random(300 + shards * 2 + indexed)
    name = f"vec_updates_{shards}_{int(indexed)}"
    pair = Pair(remote, oracle, name)
    if remote.collection_exists(name):
        remote.delete_collection(name)
    remote.create_collection(name, vectors_config=CONFIG, shard_number=shards,
                             optimizers_config=models.OptimizersConfigDiff(
                                 indexing_threshold=1 if indexed else None))
    oracle.create_collection(name, vectors_config=CONFIG)
    pts = data.points(rng, 300, {"a": 6, "b": 4}, uuid_share=0.2)
    pair.upsert(pts, rng)
    if indexed:
        wait_green(remote, name)
    exercise(pair, rng, [p.id for p in pts], f"{shards} shards indexed={indexed}")
    pair.drop()


def test_vector_updates_survive_a_restart(oracle, schema_checker, tmp_path):
    proc = RouterProcess(router_binary(), tmp_path / "storage", tmp_path / "snapshots",
                         tmp_path / "router.log")
    proc.start()
    try:
        remote = checked_client(proc.url, schema_checker)
        rng = random.Random(11)
        pair = Pair(remote, oracle, "vec_updates_restart")
        pair.create(CONFIG, shard_number=2)
        pts = data.points(rng, 120, {"a": 6, "b": 4})
        pair.upsert(pts, rng)
        ids = [p.id for p in pts]
        exercise(pair, rng, ids, "before restart")
        remote.close()
        assert proc.stop() == 0
        proc.start()
        pair.remote = checked_client(proc.url, schema_checker)
        pair.retrieve("after restart", ids, with_payload=True, with_vectors=True)
        pair.drop()
        pair.remote.close()
    finally:
        assert proc.stop() == 0, f"router did not exit 0 on SIGTERM; log {proc.log}"

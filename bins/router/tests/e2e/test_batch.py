"""`/points/batch`: every kind of operation in one request, each resolved against what the
ones before it left (a filter that matches points an earlier operation wrote, an edit of a
payload an earlier one set), on one and three shards, before and after indexing and after a
restart, compared with the oracle. A batch one of whose operations names a missing point
is refused whole: nothing of it is applied."""

from __future__ import annotations

import random

import httpx
import pytest
from qdrant_client import models
from qdrant_client.http.exceptions import UnexpectedResponse

import data
from conftest import checked_client, router_binary
from pair import Pair
from router_process import RouterProcess
from test_indexed import wait_green

CONFIG = {"a": models.VectorParams(size=6, distance=models.Distance.COSINE),
          "b": models.VectorParams(size=4, distance=models.Distance.DOT)}


def tag(value: str) -> models.Filter:
    return models.Filter(must=[models.FieldCondition(key="batch_tag",
                                                     match=models.MatchValue(value=value))])


def check(pair: Pair, ids: list, rng: random.Random, ctx: str) -> None:
    pair.retrieve(ctx, ids, with_payload=True, with_vectors=True)
    for name, params in CONFIG.items():
        pair.query(f"{ctx} using {name}", query=data.vector(rng, params.size), using=name,
                   limit=20, with_payload=True, search_params=models.SearchParams(exact=True))
    pair.count(ctx)
    pair.count(f"{ctx} tagged", count_filter=tag("fresh"))


def operations(rng: random.Random, ids: list, round_: int) -> tuple[list, list, list]:
    """A batch whose later operations depend on its earlier ones; returns it, the new ids it
    may have written and the ids of `ids` it deletes."""
    fresh = data.points(rng, 12, {"a": 6, "b": 4}, uuid_share=0, missing_named_share=0)
    for k, p in enumerate(fresh):
        p.id = 90_000_000 + round_ * 100 + k
        p.payload = dict(p.payload or {}, batch_tag="fresh")
    fresh_ids = [p.id for p in fresh]
    old = rng.sample(ids, 20)
    ops = [
        models.UpsertOperation(upsert=models.PointsList(points=fresh)),
        # Matches the points the upsert just wrote (and nothing stored before).
        models.SetPayloadOperation(set_payload=models.SetPayload(
            payload={"stage": round_, "nested": {"x": 1}}, filter=tag("fresh"))),
        # Edits a payload the operation before set.
        models.SetPayloadOperation(set_payload=models.SetPayload(
            payload={"y": 2}, key="nested", points=fresh_ids[:6])),
        models.DeletePayloadOperation(delete_payload=models.DeletePayload(
            keys=["nested.x", "city"], points=fresh_ids[3:9] + old[:5])),
        models.OverwritePayloadOperation(overwrite_payload=models.SetPayload(
            payload={"batch_tag": "fresh", "overwritten": True}, points=old[5:8])),
        models.ClearPayloadOperation(clear_payload=models.PointIdsList(points=old[8:10])),
        models.UpdateVectorsOperation(update_vectors=models.UpdateVectors(points=[
            models.PointVectors(id=i, vector={"b": data.vector(rng, 4)})
            for i in fresh_ids[:4] + old[10:13]])),
        models.DeleteVectorsOperation(delete_vectors=models.DeleteVectors(
            vector=["a"], points=fresh_ids[4:6] + old[13:15])),
        # Deletes by a tag that operations of this batch gave.
        models.DeleteOperation(delete=models.FilterSelector(filter=models.Filter(must=[
            models.FieldCondition(key="overwritten", match=models.MatchValue(value=True))]))),
        models.DeleteOperation(delete=models.PointIdsList(points=fresh_ids[10:])),
        # Inserts only what the deletes just removed; the rest exists and is left alone.
        models.UpsertOperation(upsert=models.PointsList(
            points=[models.PointStruct(id=i, vector={"a": data.vector(rng, 6)},
                                       payload={"batch_tag": "back"})
                    for i in fresh_ids[9:] + old[5:6]],
            update_mode=models.UpdateMode.INSERT_ONLY)),
    ]
    return ops, fresh_ids, old[6:8]


def exercise(pair: Pair, rng: random.Random, ids: list, ctx: str) -> list:
    touched, live = [], list(ids)
    for round_ in range(3):
        ops, fresh_ids, removed = operations(rng, live, round_)
        touched += fresh_ids
        live = [i for i in live if i not in removed]
        results = pair.remote.batch_update_points(pair.name, ops, wait=True)
        assert len(results) == len(ops)
        assert len({r.operation_id for r in results}) == 1, "one logged operation"
        assert all(r.status == models.UpdateStatus.COMPLETED for r in results)
        pair.oracle.batch_update_points(pair.name, ops, wait=True)
        check(pair, ids + touched, rng, f"{ctx} round {round_}")

    # One operation names a missing point: nothing of the batch is applied (the oracle is
    # left alone; it would apply the operations before the failing one).
    survivor = live[0]
    ops = [
        models.UpsertOperation(upsert=models.PointsList(points=[models.PointStruct(
            id=95_000_000, vector={"a": data.vector(rng, 6)}, payload={"batch_tag": "lost"})])),
        models.DeleteOperation(delete=models.PointIdsList(points=[survivor])),
        models.SetPayloadOperation(set_payload=models.SetPayload(
            payload={"k": 1}, points=[survivor])),
    ]
    with pytest.raises(UnexpectedResponse) as e:
        pair.remote.batch_update_points(pair.name, ops, wait=True)
    assert e.value.status_code == 404, e.value.content
    check(pair, ids + touched + [95_000_000], rng, f"{ctx} refused batch")
    return touched


@pytest.mark.parametrize("shards,indexed", [(1, False), (3, False), (2, True)])
def test_batch_updates(remote, oracle, shards, indexed):
    rng = random.Random(700 + shards * 2 + indexed)
    name = f"batch_{shards}_{int(indexed)}"
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


def test_batch_bad_input(remote, router_url):
    name = "batch_bad"
    if remote.collection_exists(name):
        remote.delete_collection(name)
    remote.create_collection(name, vectors_config=models.VectorParams(
        size=3, distance=models.Distance.DOT))
    url = f"/collections/{name}/points/batch?wait=true"
    http = httpx.Client(base_url=router_url, timeout=30)
    cases = [
        ({"operations": [{"frobnicate": {}}]}, "unknown variant"),
        ({"operations": [{"upsert": {"points": [{"id": 1, "vector": [1, 2]}]}}]}, "dimension"),
        ({"operations": [{"delete": {}}]}, "operations[0]"),
        ({"operations": [{"upsert": {"points": []}}, {"set_payload": {"payload": {}}}]},
         "operations[1]"),
        ({"operations": [{"delete": {"points": [1]}}] * 1001}, "at most 1000"),
        ({"ops": []}, "unknown field"),
    ]
    for body, needle in cases:
        r = http.request("POST", url, json=body)
        assert r.status_code == 400, (body, r.text)
        assert needle in r.json()["status"]["error"], (needle, r.text)
    # Nothing of the refused batches was written.
    assert remote.count(name).count == 0
    http.close()
    remote.delete_collection(name)


def test_batches_survive_a_restart(oracle, schema_checker, tmp_path):
    proc = RouterProcess(router_binary(), tmp_path / "storage", tmp_path / "snapshots",
                         tmp_path / "router.log")
    proc.start()
    try:
        remote = checked_client(proc.url, schema_checker)
        rng = random.Random(13)
        pair = Pair(remote, oracle, "batch_restart")
        pair.create(CONFIG, shard_number=2)
        pts = data.points(rng, 150, {"a": 6, "b": 4})
        pair.upsert(pts, rng)
        ids = [p.id for p in pts]
        touched = exercise(pair, rng, ids, "before restart")
        remote.close()
        assert proc.stop() == 0
        proc.start()
        pair.remote = checked_client(proc.url, schema_checker)
        pair.retrieve("after restart", ids + touched, with_payload=True, with_vectors=True)
        pair.drop()
        pair.remote.close()
    finally:
        assert proc.stop() == 0, f"router did not exit 0 on SIGTERM; log {proc.log}"

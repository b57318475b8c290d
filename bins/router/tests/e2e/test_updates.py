"""Writes after the first upsert: set, overwrite, delete and clear payload (by ids and by
filter, and into a nested `key`), re-upserts, deletes by ids and by filter. After each write
the whole collection is scrolled and compared with the oracle."""

from __future__ import annotations

import random

import pytest
from qdrant_client import models
from qdrant_client.http.exceptions import UnexpectedResponse

import data
from pair import Pair


def test_payload_and_delete_operations(remote, oracle):
    seed = 77
    rng = random.Random(seed)
    pair = Pair(remote, oracle, "updates")
    pair.create({"v": models.VectorParams(size=4, distance=models.Distance.DOT)}, shard_number=3)
    pts = data.points(rng, 250, {"v": 4})
    pair.upsert(pts, rng)
    ids = [p.id for p in pts]
    # Indexes first, so every payload write below must keep them in step.
    for field, schema in [("city", "keyword"), ("count", "integer"), ("flag", "bool"),
                          ("tags", "keyword"), ("nested.name", "keyword"), ("price", "float"),
                          ("hot", "bool"), ("loc", "geo"), ("ts", "datetime")]:
        assert remote.create_payload_index(pair.name, field, field_schema=schema,
                                           wait=True).status == models.UpdateStatus.COMPLETED

    # The same requests after every write: a cached answer from before a write must never
    # be served after it.
    fixed_vector = data.vector(rng, 4)
    fixed_filter = models.Filter(must=[models.FieldCondition(key="city", match=models.MatchAny(
        any=["Atlantis", "Oslo", "Rome"]))])
    fixed_point = next(i for i in ids if i not in ids[:60])

    def check(step: str):
        pair.query(f"seed {seed} after {step}: fixed query", query=fixed_vector, using="v",
                   limit=15, with_payload=True, query_filter=fixed_filter)
        pair.query(f"seed {seed} after {step}: fixed query, no filter", query=fixed_vector,
                   using="v", limit=15, with_payload=True, with_vectors=True)
        if oracle.retrieve(pair.name, [fixed_point]):
            pair.query(f"seed {seed} after {step}: fixed query by id", query=fixed_point,
                       using="v", limit=15, with_payload=True)
        else:
            with pytest.raises(UnexpectedResponse) as e:
                remote.query_points(pair.name, query=fixed_point, using="v", limit=15)
            assert e.value.status_code == 404, e.value

        pair.scroll_all(f"seed {seed} after {step}", with_payload=True, with_vectors=True)
        pair.count(f"seed {seed} after {step}")
        for k in range(8):
            flt = data.random_filter(rng, ids)
            pair.count(f"seed {seed} after {step} filtered {k}: "
                       f"{flt.model_dump_json(exclude_none=True)}", flt)
        for key in ["city", "tags", "nested.name", "hot", "price"]:
            for cond in [models.IsEmptyCondition(is_empty=models.PayloadField(key=key)),
                         models.IsNullCondition(is_null=models.PayloadField(key=key))]:
                pair.count(f"seed {seed} after {step}: {cond}", models.Filter(must=[cond]))
        pair.query(f"seed {seed} after {step}", query=data.vector(rng, 4), using="v",
                   limit=10, with_payload=True)

    def ok(result):
        assert result.status == models.UpdateStatus.COMPLETED, result

    some = rng.sample(ids, 30)
    ok(pair.both("set_payload", payload={"city": "Atlantis", "extra": {"k": [1, 2]}},
                 points=some, wait=True)[0])
    check("set_payload by ids")

    flt = models.Filter(must=[models.FieldCondition(key="count", range=models.Range(gte=60))])
    ok(pair.both("set_payload", payload={"hot": True}, points=flt, wait=True)[0])
    check("set_payload by filter")

    ok(pair.both("set_payload", payload={"y": 5, "x": 99}, points=some[:10],
                 key="nested.deep", wait=True)[0])
    check("set_payload key=nested.deep")

    ok(pair.both("set_payload", payload={"z": "new"}, points=some[10:15],
                 key="fresh.path", wait=True)[0])
    check("set_payload key=fresh.path (absent)")

    ok(pair.both("overwrite_payload", payload={"only": "this", "nested": {"name": "beta"}},
                 points=some[5:20], wait=True)[0])
    check("overwrite_payload")

    ok(pair.both("delete_payload", keys=["price", "nested.name", "items"],
                 points=rng.sample(ids, 60), wait=True)[0])
    check("delete_payload incl. nested key")

    ok(pair.both("delete_payload", keys=["tags"], points=models.Filter(
        must=[models.FieldCondition(key="flag", match=models.MatchValue(value=True))]),
        wait=True)[0])
    check("delete_payload by filter")

    ok(pair.both("clear_payload", points_selector=some[20:30], wait=True)[0])
    check("clear_payload by ids")

    ok(pair.both("clear_payload", points_selector=models.FilterSelector(filter=models.Filter(
        must=[models.FieldCondition(key="city", match=models.MatchValue(value="Oslo"))])),
        wait=True)[0])
    check("clear_payload by filter")

    # Re-upsert existing ids: vectors and payloads are replaced, not merged.
    again = data.points(random.Random(seed + 1), 40, {"v": 4})
    for p, pid in zip(again, [fixed_point] + rng.sample(
            [i for i in ids if i != fixed_point], len(again) - 1)):
        p.id = pid
    pair.upsert(again, rng)
    check("re-upsert")

    gone = rng.sample(ids, 25) + [987654321]
    ok(pair.both("delete", points_selector=models.PointIdsList(points=gone), wait=True)[0])
    check("delete by ids")

    ok(pair.both("delete", points_selector=models.FilterSelector(filter=models.Filter(
        must=[models.FieldCondition(key="count", range=models.Range(lt=0))])), wait=True)[0])
    check("delete by filter")
    assert remote.get_collection(pair.name).points_count == pair.count("final")
    pair.drop()


def test_payload_writes_on_missing_points_are_404(remote, oracle):
    """Qdrant applies a payload write to the named points that exist, then answers 404 for
    the first missing one, and so does the in-memory client; a delete by id of a missing
    point is fine in both."""
    rng = random.Random(78)
    pair = Pair(remote, oracle, "missing_points")
    pair.create(models.VectorParams(size=4, distance=models.Distance.DOT))
    pts = data.points(rng, 30, 4, uuid_share=0)
    pair.upsert(pts, rng)
    ids = [p.id for p in pts]
    absent = [ids[0], 987654321]
    calls = [
        ("set_payload", {"payload": {"x": 1}, "points": absent}),
        ("overwrite_payload", {"payload": {"x": 1}, "points": absent}),
        ("delete_payload", {"keys": ["city"], "points": absent}),
        ("clear_payload", {"points_selector": absent}),
    ]
    for method, kw in calls:
        with pytest.raises(UnexpectedResponse) as e:
            getattr(remote, method)(pair.name, wait=True, **kw)
        assert e.value.status_code == 404, (method, e.value)
        assert b"987654321" in e.value.content, e.value.content
        with pytest.raises(Exception):
            getattr(oracle, method)(pair.name, wait=True, **kw)
    pair.scroll_all("after payload writes naming a missing point", with_payload=True)
    pair.both("delete", points_selector=models.PointIdsList(points=absent), wait=True)
    pair.scroll_all("after deleting a missing id", with_payload=True)
    pair.drop()

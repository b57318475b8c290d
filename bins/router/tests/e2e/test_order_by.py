"""Scroll with `order_by`: by integer, float, datetime and array fields, ascending and
descending, from a `start_from`, with filters, on one and three shards, compared with the
oracle: the same order values in the same order, and the same points for each value (ties
may come in any order, and the last value's points may be cut differently)."""

from __future__ import annotations

import random

import pytest
from qdrant_client import models

import data
from pair import Pair


def payload_of(rng: random.Random, i: int) -> dict:
    p = data.payload(rng, i)
    p["rank"] = rng.randrange(50)
    p["score"] = round(rng.uniform(-10, 10), 2)
    p["when"] = data.timestamp(rng)
    p["many"] = [rng.randrange(20) for _ in range(rng.randint(0, 3))]
    return p


def check_ordered(got, full, limit: int, ctx: str) -> None:
    want = full[:limit]
    assert [p.order_value for p in got] == [p.order_value for p in want], (
        f"{ctx}: order values {[p.order_value for p in got]} != {[p.order_value for p in want]}")
    groups: dict = {}
    for p in full:
        groups.setdefault(p.order_value, set()).add(p.id)
    last = want[-1].order_value if want else None
    for value in {p.order_value for p in got}:
        mine = {p.id for p in got if p.order_value == value}
        theirs = {p.id for p in want if p.order_value == value}
        if value == last:
            assert mine <= groups[value], f"{ctx}: value {value}: {mine} not among {groups[value]}"
        else:
            assert mine == theirs, f"{ctx}: value {value}: {mine} != {theirs}"


@pytest.mark.parametrize("shards", [1, 3])
def test_scroll_order_by_matches_oracle(remote, oracle, shards):
    rng = random.Random(900 + shards)
    pair = Pair(remote, oracle, f"order_by_{shards}")
    pair.create(models.VectorParams(size=4, distance=models.Distance.COSINE), shard_number=shards)
    pts = data.points(rng, 400, 4)
    for i, p in enumerate(pts):
        p.payload = payload_of(rng, i)
    pair.upsert(pts, rng)
    ids = [p.id for p in pts]
    for q in range(40):
        key = rng.choice(["rank", "score", "when", "many"])
        direction = rng.choice([None, models.Direction.ASC, models.Direction.DESC])
        start_from = None
        if rng.random() < 0.4:
            values = [v for v in (p.payload.get(key) for p in pts) if v is not None
                      and not isinstance(v, list)]
            start_from = rng.choice(values) if values else None
        order = models.OrderBy(key=key, direction=direction, start_from=start_from) \
            if direction is not None or start_from is not None else key
        limit = rng.choice([1, 7, 30])
        flt = data.random_filter(rng, ids) if rng.random() < 0.3 else None
        ctx = f"query {q} order_by={order} limit={limit}"
        got, next_offset = remote.scroll(pair.name, order_by=order, limit=limit,
                                         scroll_filter=flt, with_payload=True)
        full, _ = oracle.scroll(pair.name, order_by=order, limit=10_000, scroll_filter=flt,
                                with_payload=True)
        assert next_offset is None, ctx
        check_ordered(got, full, limit, ctx)
        by_id = {p.id: p for p in full}
        for p in got:
            assert p.payload == by_id[p.id].payload, f"{ctx}: payload of {p.id}"
    pair.drop()


def test_order_by_query_matches_oracle(remote, oracle):
    rng = random.Random(950)
    pair = Pair(remote, oracle, "order_by_query")
    pair.create(models.VectorParams(size=4, distance=models.Distance.DOT), shard_number=2)
    pts = data.points(rng, 300, 4)
    for i, p in enumerate(pts):
        p.payload = payload_of(rng, i)
    pair.upsert(pts, rng)
    for q in range(20):
        key = rng.choice(["rank", "score", "when"])
        order = models.OrderBy(key=key, direction=rng.choice(list(models.Direction)))
        limit, offset = rng.choice([3, 10]), rng.choice([0, 0, 5])
        query = models.OrderByQuery(order_by=order)
        ctx = f"query {q} {order} limit={limit} offset={offset}"
        got = remote.query_points(pair.name, query=query, limit=limit, offset=offset,
                                  with_payload=True).points
        full = oracle.query_points(pair.name, query=query, limit=10_000,
                                   with_payload=True).points
        assert all(p.score == 1.0 for p in got), ctx
        if offset == 0:
            check_ordered(got, full, limit, ctx)
        else:
            assert [p.order_value for p in got] == \
                [p.order_value for p in full[offset:offset + limit]], ctx
    pair.drop()

"""Points with no vectors at all (`"vector": {}`), in collections of named vectors and of the
unnamed one: stored, counted, filtered by `has_vector`, never returned by a search, given
vectors later by `update_vectors`, and kept across a restart; compared with the oracle."""

from __future__ import annotations

import random

from qdrant_client import models

import data
from conftest import checked_client, router_binary
from pair import Pair
from router_process import RouterProcess

NAMED = {"a": models.VectorParams(size=4, distance=models.Distance.DOT),
         "b": models.VectorParams(size=3, distance=models.Distance.EUCLID)}
UNNAMED = models.VectorParams(size=4, distance=models.Distance.COSINE)


def check(pair: Pair, ids: list, rng: random.Random, named: bool, ctx: str) -> None:
    pair.retrieve(ctx, ids, with_payload=True, with_vectors=True)
    pair.count(ctx)
    names = ["a", "b"] if named else [""]
    for name in names:
        flt = models.Filter(must=[models.HasVectorCondition(has_vector=name)])
        pair.count(f"{ctx} has_vector {name!r}", count_filter=flt)
        size = NAMED[name].size if named else UNNAMED.size
        kw = {"using": name} if named else {}
        pair.query(f"{ctx} query {name!r}", query=data.vector(rng, size), limit=50,
                   with_payload=True, **kw)
    pair.scroll_all(ctx, with_payload=True, with_vectors=True)


def exercise(pair: Pair, rng: random.Random, named: bool, ctx: str) -> list:
    sizes = {k: v.size for k, v in NAMED.items()} if named else UNNAMED.size
    pts = data.points(rng, 80, sizes, uuid_share=0.2)
    bare = [models.PointStruct(id=50_000 + k, vector={}, payload={"bare": True, "k": k})
            for k in range(20)]
    pair.upsert(pts + bare, rng)
    ids = [p.id for p in pts + bare]
    check(pair, ids, rng, named, f"{ctx} stored")
    # Give some bare points a vector; strip every vector of some others.
    name = "a" if named else ""
    vec = (lambda: {"a": data.vector(rng, 4)}) if named else (lambda: data.vector(rng, 4))
    pair.both("update_vectors", points=[models.PointVectors(id=p.id, vector=vec())
                                        for p in bare[:8]], wait=True)
    strip = [p.id for p in pts[:10]]
    pair.both("delete_vectors", vectors=["a", "b"] if named else [name], points=strip, wait=True)
    check(pair, ids, rng, named, f"{ctx} updated")
    return ids


def test_points_without_vectors(remote, oracle):
    for named in (True, False):
        rng = random.Random(90 + named)
        pair = Pair(remote, oracle, f"no_vectors_{int(named)}")
        pair.create(NAMED if named else UNNAMED, shard_number=2)
        exercise(pair, rng, named, f"named={named}")
        pair.drop()


def test_points_without_vectors_survive_a_restart(oracle, schema_checker, tmp_path):
    proc = RouterProcess(router_binary(), tmp_path / "storage", tmp_path / "snapshots",
                         tmp_path / "router.log")
    proc.start()
    try:
        remote = checked_client(proc.url, schema_checker)
        rng = random.Random(17)
        pair = Pair(remote, oracle, "no_vectors_restart")
        pair.create(NAMED, shard_number=3)
        ids = exercise(pair, rng, True, "before restart")
        remote.close()
        assert proc.stop() == 0
        proc.start()
        pair.remote = checked_client(proc.url, schema_checker)
        check(pair, ids, rng, True, "after restart")
        pair.drop()
        pair.remote.close()
    finally:
        assert proc.stop() == 0, f"router did not exit 0 on SIGTERM; log {proc.log}"

"""Collections whose shards seal and index segments (HNSW) after a few dozen points: `exact`
searches stay exact, approximate ones find nearly all true neighbours, and writes that land
in sealed segments (re-upserts, deletes, payload edits) are seen by every read."""

from __future__ import annotations

import random
import time

from qdrant_client import models

import data
from pair import Pair


def wait_green(remote, name: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = remote.get_collection(name)
        if info.status == models.CollectionStatus.GREEN:
            return
        time.sleep(0.1)
    raise AssertionError(f"{name} not green after {timeout} s: {remote.get_collection(name)}")


def test_sealed_segments_exact_and_approximate(remote, oracle):
    seed = 31
    rng = random.Random(seed)
    name = "indexed"
    if remote.collection_exists(name):
        remote.delete_collection(name)
    vectors = models.VectorParams(size=8, distance=models.Distance.COSINE)
    # indexing_threshold is in KB: 2 KB of 8-dimensional f32 vectors is 64 points.
    remote.create_collection(name, vectors_config=vectors, shard_number=2,
                             optimizers_config=models.OptimizersConfigDiff(indexing_threshold=2),
                             hnsw_config=models.HnswConfigDiff(m=16, ef_construct=64,
                                                               full_scan_threshold=1))
    oracle.create_collection(name, vectors_config=vectors)
    pair = Pair(remote, oracle, name)
    pts = data.points(rng, 1200, 8)
    pair.upsert(pts, rng, batch_size=50)
    ids = [p.id for p in pts]
    wait_green(remote, name)
    info = remote.get_collection(name)
    assert info.indexed_vectors_count and info.indexed_vectors_count >= len(pts) // 2, (
        f"expected most points in indexed segments: {info}")

    # Writes that land in sealed segments.
    pair.both("set_payload", payload={"late": 1}, points=ids[::7], wait=True)
    pair.both("delete", points_selector=models.PointIdsList(points=ids[3::11]), wait=True)
    again = data.points(random.Random(seed + 1), 60, 8, uuid_share=0)
    for p, pid in zip(again, ids[5::13]):
        p.id = pid
    pair.upsert(again, rng)
    wait_green(remote, name)

    exact = models.SearchParams(exact=True)
    for i in range(40):
        flt = data.random_filter(rng, ids) if i % 2 else None
        pair.query(f"seed {seed} exact {i}", query=data.vector(rng, 8), query_filter=flt,
                   limit=10, search_params=exact, with_payload=True)
        pair.count(f"seed {seed} count {i}", flt)

    found = wanted = 0
    for i in range(40):
        q = data.vector(rng, 8)
        got = remote.query_points(name, query=q, limit=10,
                                  search_params=models.SearchParams(hnsw_ef=64)).points
        want = oracle.query_points(name, query=q, limit=10).points
        found += len({p.id for p in got} & {p.id for p in want})
        wanted += len(want)
    assert found / wanted >= 0.9, f"seed {seed}: recall@10 {found / wanted:.3f} on sealed segments"
    pair.scroll_all(f"seed {seed} scroll", with_payload=True, with_vectors=True)
    pair.drop()

"""Where a collection's shards are (`collection_cluster_info`), and resharding it
(`cluster_collection_update` with `start_resharding`), through the Python client.

An embedded router lists its own shards, local, with their points. A cluster router (the
runner sets `VR_E2E_CLUSTER_NODES`) lists one shard a node, the nodes' positions as peer ids;
resharding a collection down and up again moves points between the nodes while every query,
count and scroll still matches the in-memory oracle. The client sends resharding over REST
only (its gRPC mode has no message for it), so that part runs in REST mode."""

from __future__ import annotations

import os
import random
import time

import pytest
from qdrant_client import models

import data
from compare import check_records, check_scored

NODES = int(os.environ.get("VR_E2E_CLUSTER_NODES", "0"))
GRPC = bool(os.environ.get("VR_E2E_GRPC_PORT"))
DIM = 8


def fresh(remote, oracle, name: str, n: int, seed: int, shard_number=None):
    if remote.collection_exists(name):
        remote.delete_collection(name)
    params = models.VectorParams(size=DIM, distance=models.Distance.COSINE)
    remote.create_collection(name, vectors_config=params, shard_number=shard_number)
    if oracle.collection_exists(name):
        oracle.delete_collection(name)
    oracle.create_collection(name, vectors_config=params)
    rng = random.Random(seed)
    pts = data.points(rng, n, DIM, uuid_share=0.3)
    for chunk in range(0, len(pts), 100):
        remote.upsert(name, points=pts[chunk:chunk + 100], wait=True)
        oracle.upsert(name, points=pts[chunk:chunk + 100])
    return pts


def test_cluster_info_lists_the_shards(remote, oracle):
    name = "cluster_info"
    pts = fresh(remote, oracle, name, 120, 11, shard_number=2)
    info = remote.collection_cluster_info(name)
    assert info.shard_transfers == []
    assert not info.resharding_operations
    if NODES:
        assert info.shard_count == NODES
        assert info.local_shards == []
        assert [s.shard_id for s in info.remote_shards] == list(range(NODES))
        assert [s.peer_id for s in info.remote_shards] == list(range(NODES))
        assert all(s.state == models.ReplicaState.ACTIVE for s in info.remote_shards)
        assert info.peer_id == NODES
    else:
        assert info.shard_count == 2
        assert info.remote_shards == []
        assert [s.shard_id for s in info.local_shards] == [0, 1]
        assert sum(s.points_count for s in info.local_shards) == len(pts)
        assert all(s.points_count > 0 for s in info.local_shards)
    with pytest.raises(Exception):
        remote.collection_cluster_info("cluster_info_missing")
    remote.delete_collection(name)


def wait_resharded(remote, name: str) -> models.CollectionClusterInfo:
    until = time.monotonic() + 120
    while True:
        info = remote.collection_cluster_info(name)
        if not info.resharding_operations:
            return info
        assert time.monotonic() < until, info
        time.sleep(0.05)


def check_matches_oracle(remote, oracle, name: str, pts, seed: int):
    rng = random.Random(seed)
    ids = [p.id for p in pts]
    for q in range(25):
        flt = data.random_filter(rng, ids) if rng.random() < 0.5 else None
        vec = data.vector(rng, DIM)
        got = remote.query_points(name, query=vec, query_filter=flt, limit=10, with_payload=True,
                                  search_params=models.SearchParams(exact=True)).points
        full = oracle.query_points(name, query=vec, query_filter=flt, limit=10,
                                   with_payload=True).points
        check_scored(got, full, 0, 10, f"query {q} filter {flt}")
        assert remote.count(name, count_filter=flt, exact=True).count == \
            oracle.count(name, count_filter=flt, exact=True).count, f"count {q} filter {flt}"
    got, _ = remote.scroll(name, limit=len(pts) + 10, with_payload=True, with_vectors=True)
    want, _ = oracle.scroll(name, limit=len(pts) + 10, with_payload=True, with_vectors=True)
    check_records(got, want, "scroll")


def test_resharding_down_and_up_keeps_every_point(remote, oracle):
    if NODES < 2:
        pytest.skip("resharding is served in cluster mode, over two nodes or more")
    if GRPC:
        pytest.skip("the client sends resharding over REST only")
    name = "resharded"
    pts = fresh(remote, oracle, name, 600, 12)
    remote.create_payload_index(name, field_name="city", field_schema="keyword", wait=True)
    check_matches_oracle(remote, oracle, name, pts, 13)
    # Down: the last node's shard drains into the others.
    assert remote.cluster_collection_update(name, models.StartReshardingOperation(
        start_resharding=models.StartResharding(direction=models.ReshardingDirection.DOWN)))
    info = wait_resharded(remote, name)
    assert info.shard_count == NODES - 1
    check_matches_oracle(remote, oracle, name, pts, 14)
    # Up again, on that node.
    assert remote.cluster_collection_update(name, models.StartReshardingOperation(
        start_resharding=models.StartResharding(direction=models.ReshardingDirection.UP,
                                                peer_id=NODES - 1)))
    info = wait_resharded(remote, name)
    assert info.shard_count == NODES
    check_matches_oracle(remote, oracle, name, pts, 15)
    # No node left to grow onto; aborting is not served.
    with pytest.raises(Exception) as e:
        remote.cluster_collection_update(name, models.StartReshardingOperation(
            start_resharding=models.StartResharding(direction=models.ReshardingDirection.UP)))
    assert "node" in str(e.value), e.value
    with pytest.raises(Exception) as e:
        remote.cluster_collection_update(name, models.AbortReshardingOperation(
            abort_resharding={}))
    assert "abort_resharding" in str(e.value), e.value
    remote.delete_collection(name)


def test_resharding_is_refused_without_a_cluster(remote, oracle):
    if NODES or GRPC:
        pytest.skip("an embedded router, over REST")
    name = "resharded_embedded"
    fresh(remote, oracle, name, 20, 16)
    with pytest.raises(Exception) as e:
        remote.cluster_collection_update(name, models.StartReshardingOperation(
            start_resharding=models.StartResharding(direction=models.ReshardingDirection.UP)))
    assert "Not implemented" in str(e.value), e.value
    remote.delete_collection(name)

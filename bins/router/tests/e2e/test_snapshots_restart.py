"""Snapshots (create, list, download, delete, recover) and a restart on the same directories:
state must come back identical, and the router must exit 0 on SIGTERM."""

from __future__ import annotations

import hashlib
import random

import httpx
from qdrant_client import QdrantClient, models

import data
from conftest import checked_client, router_binary
from pair import Pair
from router_process import RouterProcess


def snapshot_state(pair: Pair, rng_seed: int) -> list:
    """Answers that must not change: full scroll, filtered counts, queries."""
    rng = random.Random(rng_seed)
    out = [pair.scroll_all("state", with_payload=True, with_vectors=True)]
    ids = [p.id for p in out[0]]
    for i in range(15):
        flt = data.random_filter(rng, ids)
        out.append(pair.count(f"state filter {i}", flt))
        out.append(pair.query(f"state query {i}", query=data.vector(rng, 8), query_filter=flt,
                              limit=10, with_payload=True, with_vectors=True))
    return out


def test_snapshot_create_list_download_recover_delete(remote, oracle, router_url, snapshots_dir):
    rng = random.Random(5)
    pair = Pair(remote, oracle, "snap")
    pair.create(models.VectorParams(size=8, distance=models.Distance.EUCLID), shard_number=3)
    pts = data.points(rng, 300, 8)
    pair.upsert(pts, rng)
    before = snapshot_state(pair, 11)

    desc = remote.create_snapshot(pair.name, wait=True)
    assert desc is not None and desc.name.endswith(".snapshot") and desc.size > 0
    listed = remote.list_snapshots(pair.name)
    assert desc.name in [s.name for s in listed], listed

    r = httpx.get(f"{router_url}/collections/{pair.name}/snapshots/{desc.name}", timeout=30)
    assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
    assert len(r.content) == desc.size
    if desc.checksum:
        assert hashlib.sha256(r.content).hexdigest() == desc.checksum

    # Change the collection, then recover it from the snapshot: the earlier state is back.
    remote.delete(pair.name, points_selector=models.PointIdsList(points=[p.id for p in pts[:100]]),
                  wait=True)
    remote.set_payload(pair.name, payload={"after": 1}, points=[p.id for p in pts[100:150]],
                       wait=True)
    files = list(snapshots_dir.rglob(desc.name))
    assert len(files) == 1, f"snapshot file {desc.name} under {snapshots_dir}: {files}"
    location = files[0].resolve().as_uri()
    assert remote.recover_snapshot(pair.name, location=location, wait=True) is True
    assert snapshot_state(pair, 11) == before

    # Recovering under a new name makes a copy.
    assert remote.recover_snapshot("snap_copy", location=location, wait=True,
                                   checksum=desc.checksum) is True
    copy = Pair(remote, oracle, "snap_copy")
    oracle.create_collection("snap_copy", vectors_config=models.VectorParams(
        size=8, distance=models.Distance.EUCLID))
    oracle.upsert("snap_copy", points=pts, wait=True)
    assert snapshot_state(copy, 11) == before
    copy.drop()

    assert remote.delete_snapshot(pair.name, desc.name, wait=True) is True
    assert desc.name not in [s.name for s in remote.list_snapshots(pair.name)]
    assert httpx.get(f"{router_url}/collections/{pair.name}/snapshots/{desc.name}",
                     timeout=30).status_code == 404
    pair.drop()


def test_restart_keeps_everything(oracle, schema_checker, tmp_path):
    rng = random.Random(99)
    proc = RouterProcess(router_binary(), tmp_path / "storage", tmp_path / "snapshots",
                         tmp_path / "router.log")
    proc.start()
    try:
        remote = checked_client(proc.url, schema_checker)
        plain = Pair(remote, oracle, "restart_plain")
        plain.create(models.VectorParams(size=8, distance=models.Distance.COSINE), shard_number=3)
        pts = data.points(rng, 500, 8)
        plain.upsert(pts, rng)
        ids = [p.id for p in pts]
        plain.both("set_payload", payload={"z": {"w": 1}}, points=ids[:40], key="nested", wait=True)
        plain.both("delete", points_selector=models.PointIdsList(points=ids[40:70]), wait=True)
        plain.both("delete_payload", keys=["text"], points=ids[70:140], wait=True)
        plain.both("create_payload_index", field_name="city",
                   field_schema=models.PayloadSchemaType.KEYWORD)

        named = Pair(remote, oracle, "restart_named")
        named.create({"a": models.VectorParams(size=3, distance=models.Distance.MANHATTAN),
                      "b": models.VectorParams(size=2, distance=models.Distance.DOT)})
        named.upsert(data.points(rng, 120, {"a": 3, "b": 2}), rng)

        # Sealed, HNSW-indexed segments must come back too.
        indexed = Pair(remote, oracle, "restart_indexed")
        remote.create_collection(indexed.name, vectors_config=models.VectorParams(
            size=8, distance=models.Distance.DOT), optimizers_config=models.OptimizersConfigDiff(
            indexing_threshold=1))
        oracle.create_collection(indexed.name, vectors_config=models.VectorParams(
            size=8, distance=models.Distance.DOT))
        indexed.upsert(data.points(rng, 400, 8), rng, batch_size=40)

        # Acknowledged without waiting (upload's default), then SIGTERM at once: the graceful
        # shutdown must flush them.
        late = data.points(random.Random(7), 150, 8, uuid_share=0.5)
        for p in late:
            p.id = p.id + 50_000_000 if isinstance(p.id, int) else p.id
        remote.upload_points(plain.name, points=late, batch_size=16, wait=False)
        oracle.upload_points(plain.name, points=late, wait=True)
        expected_count = oracle.count(plain.name).count

        indexed_before = snapshot_state(indexed, 4)
        before = snapshot_state(plain, 3)
        named_before = named.scroll_all("named", with_payload=True, with_vectors=True)
        info_before = remote.get_collection(plain.name)
        remote.close()
        assert proc.stop() == 0, f"router did not exit 0 on SIGTERM; log {proc.log}"

        proc.start()
        remote = checked_client(proc.url, schema_checker)
        plain.remote = named.remote = remote
        indexed.remote = remote
        assert sorted(c.name for c in remote.get_collections().collections) == [
            "restart_indexed", "restart_named", "restart_plain"]
        assert remote.count(plain.name).count == expected_count
        assert snapshot_state(plain, 3) == before
        assert snapshot_state(indexed, 4) == indexed_before
        assert named.scroll_all("named", with_payload=True, with_vectors=True) == named_before
        info_after = remote.get_collection(plain.name)
        assert info_after.config == info_before.config
        assert info_after.points_count == info_before.points_count
        assert set(info_after.payload_schema) == set(info_before.payload_schema)
        remote.close()
    finally:
        assert proc.stop() == 0, f"router did not exit 0 on SIGTERM; log {proc.log}"

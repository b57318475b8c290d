"""`PATCH /collections/{name}` of `vectors` (per-vector `hnsw_config`, `quantization_config`,
`on_disk`) and of the collection's `quantization_config` (a quantization or `"Disabled"`):
the new config reads back, the optimizer rebuilds the indexed segments under it (their
vectors' memory changes, the collection turns green again), answers stay right (exact
queries equal the oracle's, approximate ones keep their recall), and it survives a
restart. A vector that does not exist, or a change of size or distance, is a 400."""

from __future__ import annotations

import random
import time

import httpx
from qdrant_client import models

import data
from conftest import checked_client, router_binary
from pair import Pair
from router_process import RouterProcess
from test_indexed import wait_green

VECTORS = {"img": models.VectorParams(size=16, distance=models.Distance.COSINE),
           "txt": models.VectorParams(size=8, distance=models.Distance.EUCLID)}


def vector_bytes(url: str, name: str) -> int:
    """The collection's vector memory, from the router's own metrics."""
    r = httpx.get(f"{url}/metrics", timeout=30)
    for line in r.text.splitlines():
        if line.startswith("vector_router_collection_index_vector_bytes") and f'collection="{name}"' in line:
            return int(float(line.rsplit(" ", 1)[1]))
    raise AssertionError(f"no vector memory metric for {name}")


def settle(remote, name: str) -> None:
    # The PATCH kicks the optimizer; give it a moment to pick the work up, then wait.
    time.sleep(0.3)
    wait_green(remote, name, timeout=300)


def answers_agree(pair: Pair, rng: random.Random, ctx: str) -> None:
    for name, params in VECTORS.items():
        for i in range(10):
            pair.query(f"{ctx} exact {name} {i}", query=data.vector(rng, params.size),
                       using=name, limit=10, search_params=models.SearchParams(exact=True))
        truth_hits, hits = 0, 0
        for _ in range(20):
            q = data.vector(rng, params.size)
            want = {p.id for p in pair.oracle.query_points(pair.name, query=q, using=name,
                                                            limit=10).points}
            got = pair.remote.query_points(pair.name, query=q, using=name, limit=10,
                                           search_params=models.SearchParams(hnsw_ef=128))
            hits += len(want & {p.id for p in got.points})
            truth_hits += len(want)
        assert hits / truth_hits >= 0.9, f"{ctx} {name}: recall {hits / truth_hits:.3f}"


def test_patch_vectors_rebuilds_segments_under_the_new_settings(oracle, schema_checker,
                                                                  tmp_path):
    proc = RouterProcess(router_binary(), tmp_path / "storage", tmp_path / "snapshots",
                         tmp_path / "router.log")
    proc.start()
    try:
        remote = checked_client(proc.url, schema_checker)
        rng = random.Random(23)
        name = "patch_vectors"
        pair = Pair(remote, oracle, name)
        remote.create_collection(name, vectors_config=VECTORS, shard_number=2,
                                 optimizers_config=models.OptimizersConfigDiff(
                                     indexing_threshold=40))
        oracle.create_collection(name, vectors_config=VECTORS)
        pts = data.points(rng, 3000, {"img": 16, "txt": 8}, uuid_share=0.1)
        pair.upsert(pts, rng, batch_size=500)
        settle(remote, name)
        answers_agree(pair, rng, "f32")
        plain = vector_bytes(proc.url, name)

        # Scalar quantization for the whole collection: codes beside the full vectors.
        remote.update_collection(name, quantization_config=models.ScalarQuantization(
            scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8,
                                                   always_ram=True)))
        settle(remote, name)
        scalar = vector_bytes(proc.url, name)
        assert scalar > plain, (plain, scalar)
        answers_agree(pair, rng, "scalar")

        # Per vector: product codes and other HNSW settings for `img`; `txt` drops back to
        # full precision when the collection's quantization is disabled.
        remote.update_collection(name, vectors_config={
            "img": models.VectorParamsDiff(
                hnsw_config=models.HnswConfigDiff(m=8, ef_construct=64),
                quantization_config=models.ProductQuantization(
                    product=models.ProductQuantizationConfig(
                        compression=models.CompressionRatio.X4)))},
            quantization_config=models.Disabled.DISABLED)
        settle(remote, name)
        info = remote.get_collection(name)
        assert info.config.quantization_config is None
        img = info.config.params.vectors["img"]
        assert img.hnsw_config.m == 8 and img.hnsw_config.ef_construct == 64
        assert img.quantization_config == models.ProductQuantization(
            product=models.ProductQuantizationConfig(compression=models.CompressionRatio.X4))
        assert info.config.params.vectors["txt"].quantization_config is None
        mixed = vector_bytes(proc.url, name)
        assert plain < mixed < scalar, (plain, mixed, scalar)
        answers_agree(pair, rng, "product img")

        # Writes go on meanwhile, and the settings survive a restart.
        more = data.points(rng, 300, {"img": 16, "txt": 8}, uuid_share=0)
        for p in more:
            p.id = 60_000_000 + p.id if isinstance(p.id, int) else p.id
        pair.upsert(more, rng)
        settle(remote, name)
        remote.close()
        assert proc.stop() == 0
        proc.start()
        remote = pair.remote = checked_client(proc.url, schema_checker)
        assert remote.get_collection(name).config.params.vectors["img"].hnsw_config.m == 8
        assert vector_bytes(proc.url, name) < scalar
        answers_agree(pair, rng, "after restart")

        # The per-vector HNSW override removed with an empty object.
        remote.update_collection(name, vectors_config={
            "img": models.VectorParamsDiff(hnsw_config=models.HnswConfigDiff())})
        assert remote.get_collection(name).config.params.vectors["img"].hnsw_config is None

        with httpx.Client(base_url=proc.url, timeout=30) as http:
            for body, needle in [
                ({"vectors": {"nope": {"on_disk": True}}}, "nope"),
                ({"vectors": {"img": {"size": 3}}}, "size"),
                ({"quantization_config": "Enabled"}, "quantization_config"),
                ({"vectors": {"img": {"quantization_config": {"product": {"compression": "x5"}}}}},
                 "quantization_config"),
            ]:
                r = http.patch(f"/collections/{name}", json=body)
                assert r.status_code == 400, (body, r.text)
                assert needle in r.json()["status"]["error"], (needle, r.text)
        answers_agree(pair, rng, "after refusals")
        pair.drop()
        remote.close()
    finally:
        assert proc.stop() == 0, f"router did not exit 0 on SIGTERM; log {proc.log}"

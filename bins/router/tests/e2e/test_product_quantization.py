"""Product quantization on HNSW segments: the config is accepted and echoed, segments big
enough to train a quantizer are walked by their codes and rescored with the full vectors
(scores exact, recall against the oracle's exact answers), `exact` is exact, and the
`quantization` search parameters (`rescore`, `oversampling`) are honoured."""

from __future__ import annotations

import random

import httpx
import pytest
from qdrant_client import models

from pair import Pair
from test_indexed import wait_green

DIM = 32


def clustered(rng: random.Random, n: int, centers: list) -> list:
    out = []
    for _ in range(n):
        c = rng.choice(centers)
        out.append([x + rng.gauss(0, 0.35) for x in c])
    return out


@pytest.mark.parametrize("compression,distance", [
    (models.CompressionRatio.X16, models.Distance.COSINE),
    (models.CompressionRatio.X8, models.Distance.EUCLID),
])
def test_product_quantized_segments(remote, oracle, compression, distance):
    rng = random.Random(41)
    name = f"pq_{compression.value}_{distance.value.lower()}"
    if remote.collection_exists(name):
        remote.delete_collection(name)
    quantization = models.ProductQuantization(product=models.ProductQuantizationConfig(
        compression=compression, always_ram=True))
    vectors = models.VectorParams(size=DIM, distance=distance)
    # Segments seal at about 1,500 points: enough to train 256 centroids per sub-space.
    threshold_kb = 1500 * DIM * 4 // 1024
    remote.create_collection(name, vectors_config=vectors, shard_number=2,
                             quantization_config=quantization,
                             optimizers_config=models.OptimizersConfigDiff(
                                 indexing_threshold=threshold_kb))
    oracle.create_collection(name, vectors_config=vectors)
    info = remote.get_collection(name)
    assert info.config.quantization_config == quantization

    centers = [[rng.gauss(0, 1) for _ in range(DIM)] for _ in range(30)]
    vecs = clustered(rng, 8000, centers)
    points = [models.PointStruct(id=i, vector=v, payload={"k": i % 7}) for i, v in
              enumerate(vecs)]
    for start in range(0, len(points), 500):
        for client in (remote, oracle):
            client.upsert(name, points[start:start + 500], wait=True)
    wait_green(remote, name, timeout=300)
    info = remote.get_collection(name)
    assert info.indexed_vectors_count >= 6000, info

    pair = Pair(remote, oracle, name)
    recalls, recalls_once, unrescored = [], [], []
    for i in range(40):
        q = clustered(rng, 1, centers)[0]
        flt = models.Filter(must=[models.FieldCondition(key="k", match=models.MatchAny(
            any=[0, 1, 2, 3, 4]))]) if i % 2 else None
        truth = oracle.query_points(name, query=q, limit=10, query_filter=flt).points
        exact = remote.query_points(name, query=q, limit=10, query_filter=flt,
                                    search_params=models.SearchParams(exact=True)).points
        assert [p.id for p in exact] == [p.id for p in truth], f"exact query {i}"
        # Codes of 4 or 2 dimensions a byte order a tight cluster coarsely: the walk's
        # candidates are rescored 8 times over (`oversampling`), as Qdrant advises for PQ.
        got = remote.query_points(name, query=q, limit=10, query_filter=flt,
                                  search_params=models.SearchParams(
                                      hnsw_ef=128, quantization=models.QuantizationSearchParams(
                                          oversampling=8))).points
        assert len(got) == 10
        # Rescored: every score is the exact one of that point.
        truth_scores = {p.id: p.score for p in oracle.query_points(
            name, query=q, limit=len(points), query_filter=flt).points}
        for p in got:
            assert abs(p.score - truth_scores[p.id]) <= 1e-3 * max(1.0, abs(p.score)), (i, p)
        recalls.append(len({p.id for p in got} & {p.id for p in truth}) / 10)
        once = remote.query_points(name, query=q, limit=10, query_filter=flt,
                                   search_params=models.SearchParams(
                                       hnsw_ef=128, quantization=models.QuantizationSearchParams(
                                           oversampling=1))).points
        recalls_once.append(len({p.id for p in once} & {p.id for p in truth}) / 10)
        raw = remote.query_points(name, query=q, limit=10, query_filter=flt,
                                  search_params=models.SearchParams(
                                      hnsw_ef=128, quantization=models.QuantizationSearchParams(
                                          rescore=False))).points
        assert len({p.id for p in raw}) == 10
        unrescored.append(len({p.id for p in raw} & {p.id for p in truth}) / 10)
    recall = sum(recalls) / len(recalls)
    assert recall >= 0.9, f"recall@10 with rescoring {recall:.3f}"
    once = sum(recalls_once) / len(recalls_once)
    assert once <= recall, f"oversampling 1 gave {once:.3f}, 8 gave {recall:.3f}"
    # Without rescoring the codes alone rank: worse, but far from random.
    assert sum(unrescored) / len(unrescored) >= 0.3, unrescored
    pair.count("after", count_filter=None)
    pair.drop()


def test_product_quantization_bad_compression_is_refused(remote, router_url):
    with httpx.Client(base_url=router_url, timeout=30) as http:
        for compression in ["x3", "x128", ""]:
            r = http.put("/collections/pq_bad", json={
                "vectors": {"size": 8, "distance": "Dot"},
                "quantization_config": {"product": {"compression": compression}}})
            assert r.status_code == 400, r.text
            assert "compression" in r.json()["status"]["error"], r.text
            assert not remote.collection_exists("pq_bad")

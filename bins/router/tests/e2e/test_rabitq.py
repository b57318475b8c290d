"""RaBitQ codes on HNSW segments: Qdrant's binary quantization with a two-bit encoding (which
maps onto 2-bit RaBitQ codes) through the client, and the `rabitq` extension through plain
HTTP (Qdrant's clients cannot parse a quantization they do not know). Segments are walked by
their codes and re-ranked with full vectors where the estimate's bound says so: scores are the
exact ones and recall is measured against the oracle; bad settings are refused."""

from __future__ import annotations

import random
import time

import httpx
import pytest
from qdrant_client import models

from test_indexed import wait_green
from test_product_quantization import clustered

DIM = 64


def fill(remote, oracle, name: str, rng: random.Random, centers: list) -> list:
    vecs = clustered(rng, 6000, centers)
    points = [models.PointStruct(id=i, vector=v, payload={"k": i % 7}) for i, v in
              enumerate(vecs)]
    for start in range(0, len(points), 500):
        for client in (remote, oracle):
            client.upsert(name, points[start:start + 500], wait=True)
    return points


def check_queries(remote, oracle, name: str, rng: random.Random, centers: list,
                  n_points: int) -> tuple:
    """Recall@10 with the default (bound-driven) re-ranking and without re-ranking; every
    re-ranked score must be the exact one, and without re-ranking the scores are the codes'
    estimates (not all exact)."""
    recalls, unrescored, estimated = [], [], 0
    for i in range(30):
        q = clustered(rng, 1, centers)[0]
        flt = models.Filter(must=[models.FieldCondition(key="k", match=models.MatchAny(
            any=[0, 1, 2]))]) if i % 2 else None
        truth = oracle.query_points(name, query=q, limit=10, query_filter=flt).points
        exact = remote.query_points(name, query=q, limit=10, query_filter=flt,
                                    search_params=models.SearchParams(exact=True)).points
        assert [p.id for p in exact] == [p.id for p in truth], f"exact query {i}"
        got = remote.query_points(name, query=q, limit=10, query_filter=flt,
                                  search_params=models.SearchParams(hnsw_ef=128)).points
        assert len(got) == 10
        truth_scores = {p.id: p.score for p in oracle.query_points(
            name, query=q, limit=n_points, query_filter=flt).points}
        for p in got:
            assert abs(p.score - truth_scores[p.id]) <= 1e-3 * max(1.0, abs(p.score)), (i, p)
        recalls.append(len({p.id for p in got} & {p.id for p in truth}) / 10)
        raw = remote.query_points(name, query=q, limit=10, query_filter=flt,
                                  search_params=models.SearchParams(
                                      hnsw_ef=128, quantization=models.QuantizationSearchParams(
                                          rescore=False))).points
        assert len({p.id for p in raw}) == 10
        estimated += sum(abs(p.score - truth_scores[p.id]) > 1e-4 * max(1.0, abs(p.score))
                         for p in raw)
        unrescored.append(len({p.id for p in raw} & {p.id for p in truth}) / 10)
    # Points not yet in an indexed segment are scored exactly either way (about half of the
    # top 10s here): a fifth is far above what exact scores would give, which is none.
    assert estimated > 300 // 5, f"only {estimated} of 300 unre-ranked scores were estimates"
    return sum(recalls) / len(recalls), sum(unrescored) / len(unrescored)


def create(remote, oracle, name: str, distance, quantization) -> None:
    if remote.collection_exists(name):
        remote.delete_collection(name)
    vectors = models.VectorParams(size=DIM, distance=distance)
    # Segments seal at about 1,500 points, so most of the points are walked by their codes.
    threshold_kb = 1500 * DIM * 4 // 1024
    remote.create_collection(name, vectors_config=vectors, shard_number=2,
                             quantization_config=quantization,
                             optimizers_config=models.OptimizersConfigDiff(
                                 indexing_threshold=threshold_kb))
    oracle.create_collection(name, vectors_config=vectors)


@pytest.mark.parametrize("encoding,query_encoding,distance", [
    (models.BinaryQuantizationEncoding.TWO_BITS,
     models.BinaryQuantizationQueryEncoding.SCALAR8BITS, models.Distance.COSINE),
    (models.BinaryQuantizationEncoding.ONE_AND_HALF_BITS, None, models.Distance.EUCLID),
])
def test_binary_wider_encodings_walk_rabitq_codes(remote, oracle, encoding, query_encoding,
                                                  distance):
    rng = random.Random(43)
    name = f"rabitq_{encoding.value}_{distance.value.lower()}"
    quantization = models.BinaryQuantization(binary=models.BinaryQuantizationConfig(
        encoding=encoding, query_encoding=query_encoding, always_ram=True))
    create(remote, oracle, name, distance, quantization)
    assert remote.get_collection(name).config.quantization_config == quantization
    centers = [[rng.gauss(0, 1) for _ in range(DIM)] for _ in range(30)]
    points = fill(remote, oracle, name, rng, centers)
    wait_green(remote, name, timeout=300)
    info = remote.get_collection(name)
    assert info.indexed_vectors_count >= 4000, info
    recall, unrescored = check_queries(remote, oracle, name, rng, centers, len(points))
    assert recall >= 0.95, f"recall@10 with bound-driven re-ranking {recall:.3f}"
    # Two-bit codes alone rank coarsely, but far from at random.
    assert unrescored >= 0.5, f"recall@10 without re-ranking {unrescored:.3f}"
    remote.delete_collection(name)


def test_rabitq_extension(remote, oracle, router_url):
    rng = random.Random(44)
    name = "rabitq_ext"
    if remote.collection_exists(name):
        remote.delete_collection(name)
    threshold_kb = 1500 * DIM * 4 // 1024
    with httpx.Client(base_url=router_url, timeout=30) as http:
        r = http.put(f"/collections/{name}", json={
            "vectors": {"size": DIM, "distance": "Dot"}, "shard_number": 2,
            "quantization_config": {"rabitq": {"bits": 1}},
            "optimizers_config": {"indexing_threshold": threshold_kb}})
        assert r.status_code == 200, r.text
        oracle.create_collection(name, vectors_config=models.VectorParams(
            size=DIM, distance=models.Distance.DOT))
        config = http.get(f"/collections/{name}").json()["result"]["config"]
        assert config["quantization_config"] == {"rabitq": {"bits": 1}}, config
        centers = [[rng.gauss(0, 1) for _ in range(DIM)] for _ in range(30)]
        points = fill(remote, oracle, name, rng, centers)
        deadline = time.monotonic() + 300
        while True:
            result = http.get(f"/collections/{name}").json()["result"]
            if result["status"] == "green":
                break
            assert time.monotonic() < deadline, result
            time.sleep(0.1)
        assert result["indexed_vectors_count"] >= 4000, result
    recall, unrescored = check_queries(remote, oracle, name, rng, centers, len(points))
    assert recall >= 0.95, f"recall@10 with bound-driven re-ranking {recall:.3f}"
    assert unrescored >= 0.3, f"recall@10 without re-ranking {unrescored:.3f}"
    remote.delete_collection(name)


def test_bad_rabitq_settings_are_refused(remote, router_url):
    bad = [
        ({"rabitq": {"bits": 0}}, "Dot", "bits"),
        ({"rabitq": {"bits": 9}}, "Dot", "bits"),
        ({"rabitq": {"bits": 1, "extra": 1}}, "Dot", "extra"),
        ({"rabitq": {"bits": 2}}, "Manhattan", "Manhattan"),
        ({"binary": {"encoding": "three_bits"}}, "Dot", "encoding"),
        ({"binary": {"query_encoding": "scalar2bits"}}, "Dot", "query_encoding"),
    ]
    with httpx.Client(base_url=router_url, timeout=30) as http:
        for quantization, distance, word in bad:
            r = http.put("/collections/rabitq_bad", json={
                "vectors": {"size": 8, "distance": distance},
                "quantization_config": quantization})
            assert r.status_code == 400, (quantization, r.text)
            assert word in r.json()["status"]["error"], (quantization, r.text)
            assert not remote.collection_exists("rabitq_bad")
        # Qdrant accepts a wider binary encoding under Manhattan distance; here it stays sign
        # bits there (RaBitQ cannot estimate L1), and is echoed as sent.
        r = http.put("/collections/rabitq_manhattan", json={
            "vectors": {"size": 8, "distance": "Manhattan"},
            "quantization_config": {"binary": {"encoding": "two_bits"}}})
        assert r.status_code == 200, r.text
        config = http.get("/collections/rabitq_manhattan").json()["result"]["config"]
        assert config["quantization_config"] == {"binary": {"encoding": "two_bits"}}, config
        assert http.delete("/collections/rabitq_manhattan").status_code == 200

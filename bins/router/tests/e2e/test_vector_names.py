"""Named vectors created on and deleted from a collection that holds points
(`PUT`/`DELETE /collections/{name}/vectors/{vector_name}`, the client's `create_vector_name`
and `delete_vector_name`), against the in-memory oracle: the config reads back as the
oracle's; stored points have none of a new vector until written, and lose a deleted one;
points written after it carry it, searches over it are exact where asked and keep their
recall through indexed segments; a name deleted and created again with another size starts
empty. All of it survives a clean restart and a `kill -9` right after the change, with 1 and
2 shards. Bad input is a 4xx naming what is wrong."""

from __future__ import annotations

import random

import grpc
import httpx
import pytest
from qdrant_client import models
from qdrant_client.http.exceptions import UnexpectedResponse

import data
from conftest import checked_client, router_binary
from pair import Pair
from router_process import RouterProcess
from test_indexed import wait_green

VECTORS = {"img": models.VectorParams(size=16, distance=models.Distance.COSINE),
           "txt": models.VectorParams(size=8, distance=models.Distance.EUCLID)}


def dense(size: int, distance: models.Distance) -> models.DenseVectorNameConfig:
    return models.DenseVectorNameConfig(dense=models.DenseVectorConfig(size=size,
                                                                       distance=distance))


def same_config(pair: Pair, ctx: str) -> None:
    r = pair.remote.get_collection(pair.name).config.params.vectors
    o = pair.oracle.get_collection(pair.name).config.params.vectors
    shape = lambda v: {n: (p.size, p.distance) for n, p in v.items()}  # noqa: E731
    assert shape(r) == shape(o), f"{ctx}: vectors {r} != oracle {o}"


def exact_agree(pair: Pair, rng: random.Random, names: dict[str, int], ctx: str) -> None:
    for name, dim in names.items():
        for i in range(6):
            pair.query(f"{ctx} exact {name} {i}", query=data.vector(rng, dim), using=name,
                       limit=10, with_vectors=True,
                       search_params=models.SearchParams(exact=True))


def recall(pair: Pair, rng: random.Random, name: str, dim: int) -> float:
    found, total = 0, 0
    for _ in range(30):
        q = data.vector(rng, dim)
        want = {p.id for p in pair.oracle.query_points(pair.name, query=q, using=name,
                                                        limit=10).points}
        got = pair.remote.query_points(pair.name, query=q, using=name, limit=10,
                                       search_params=models.SearchParams(hnsw_ef=128))
        found += len(want & {p.id for p in got.points})
        total += len(want)
    return found / total


def everything_agrees(pair: Pair, rng: random.Random, names: dict[str, int], ctx: str) -> None:
    same_config(pair, ctx)
    pair.scroll_all(f"{ctx} scroll", page=211, with_vectors=True)
    exact_agree(pair, rng, names, ctx)


def refused(pair: Pair, name: str, dim: int) -> None:
    """A search over a vector the collection does not have is refused by both (over REST a
    4xx, over gRPC `INVALID_ARGUMENT`, naming the vector)."""
    with pytest.raises((UnexpectedResponse, grpc.RpcError)) as e:
        pair.remote.query_points(pair.name, query=[0.5] * dim, using=name, limit=3)
    if isinstance(e.value, UnexpectedResponse):
        assert 400 <= e.value.status_code < 500 and name in str(e.value.content), e.value
    else:
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value
        assert name in e.value.details(), e.value
    with pytest.raises(ValueError):
        pair.oracle.query_points(pair.name, query=[0.5] * dim, using=name, limit=3)


@pytest.mark.parametrize("shards", [1, 2])
def test_vectors_created_and_deleted_on_a_collection_with_points(oracle, schema_checker,
                                                                 tmp_path, shards):
    proc = RouterProcess(router_binary(), tmp_path / "storage", tmp_path / "snapshots",
                         tmp_path / "router.log")
    proc.start()
    try:
        remote = checked_client(proc.url, schema_checker)
        rng = random.Random(71 + shards)
        name = f"vector_names_{shards}"
        pair = Pair(remote, oracle, name)
        # Small segments: most points sit in indexed ones when the vectors change.
        remote.create_collection(name, vectors_config=VECTORS, shard_number=shards,
                                 optimizers_config=models.OptimizersConfigDiff(
                                     indexing_threshold=40))
        oracle.create_collection(name, vectors_config=VECTORS)
        pts = data.points(rng, 3000, {"img": 16, "txt": 8}, uuid_share=0.1)
        pair.upsert(pts, rng, batch_size=500)
        wait_green(remote, name, timeout=300)
        ids = [p.id for p in pts]

        # A new vector: the config grows, the stored points have none of it.
        for client in (remote, oracle):
            assert client.create_vector_name(name, "aud", dense(12, models.Distance.DOT))
        names = {"img": 16, "txt": 8, "aud": 12}
        everything_agrees(pair, rng, names, "created aud")
        assert pair.count("nothing has aud", models.Filter(must=[models.HasVectorCondition(
            has_vector="aud")])) == 0
        # The same again is a no-op on both.
        for client in (remote, oracle):
            assert client.create_vector_name(name, "aud", dense(12, models.Distance.DOT))

        # Written through new points, re-upserts and vector updates.
        more = data.points(rng, 1200, names, uuid_share=0.1)
        for p in more:
            p.id = 50_000_000 + p.id if isinstance(p.id, int) else p.id
        pair.upsert(more, rng, batch_size=300)
        given = rng.sample(ids, 900)
        for start in range(0, len(given), 150):
            chunk = [models.PointVectors(id=i, vector={"aud": data.vector(rng, 12)})
                     for i in given[start:start + 150]]
            pair.both("update_vectors", points=chunk, wait=True)
        wait_green(remote, name, timeout=300)
        everything_agrees(pair, rng, names, "aud written")
        pair.count("aud written", models.Filter(must=[models.HasVectorCondition(
            has_vector="aud")]))
        r = recall(pair, rng, "aud", 12)
        assert r >= 0.9, f"aud recall {r:.3f}"

        # A deleted vector: gone from the config, the points and the searches.
        for client in (remote, oracle):
            assert client.delete_vector_name(name, "txt")
        names = {"img": 16, "aud": 12}
        everything_agrees(pair, rng, names, "deleted txt")
        refused(pair, "txt", 8)
        # Deleting it again is a no-op on both.
        for client in (remote, oracle):
            assert client.delete_vector_name(name, "txt")

        # The name again, with another size: it starts empty.
        for client in (remote, oracle):
            assert client.create_vector_name(name, "txt", dense(4, models.Distance.MANHATTAN))
        names = {"img": 16, "aud": 12, "txt": 4}
        everything_agrees(pair, rng, names, "txt again")
        again = data.points(rng, 400, names, uuid_share=0.1)
        for p in again:
            p.id = 70_000_000 + p.id if isinstance(p.id, int) else p.id
        pair.upsert(again, rng, batch_size=200)
        wait_green(remote, name, timeout=300)
        everything_agrees(pair, rng, names, "txt again written")

        # A clean restart.
        remote.close()
        assert proc.stop() == 0
        proc.start()
        remote = pair.remote = checked_client(proc.url, schema_checker)
        everything_agrees(pair, rng, names, "after restart")
        assert recall(pair, rng, "aud", 12) >= 0.9

        # kill -9 right after acknowledged changes: they are there after the restart.
        for client in (remote, oracle):
            assert client.delete_vector_name(name, "aud")
            assert client.create_vector_name(name, "zzz", dense(6, models.Distance.COSINE))
        late = data.points(rng, 300, {"img": 16, "zzz": 6, "txt": 4}, uuid_share=0)
        for p in late:
            p.id = 90_000_000 + p.id
        pair.upsert(late, rng, batch_size=300)
        remote.close()
        proc.proc.kill()
        proc.proc.wait()
        proc.proc.stdout.close()
        proc.start()
        remote = pair.remote = checked_client(proc.url, schema_checker)
        names = {"img": 16, "txt": 4, "zzz": 6}
        everything_agrees(pair, rng, names, "after kill -9")
        refused(pair, "aud", 12)
        wait_green(remote, name, timeout=300)
        everything_agrees(pair, rng, names, "after kill -9, indexed")
        pair.drop()
        remote.close()
    finally:
        assert proc.stop() == 0, f"router did not exit 0 on SIGTERM; log {proc.log}"


def test_named_vector_beside_the_unnamed_one(remote, oracle):
    """A collection of one unnamed vector keeps it as `""` beside the named ones, as the
    oracle does: points holding only it still read back as a list."""
    rng = random.Random(5)
    name = "vector_names_unnamed"
    pair = Pair(remote, oracle, name)
    pair.create(models.VectorParams(size=8, distance=models.Distance.EUCLID))
    pair.upsert(data.points(rng, 400, 8, uuid_share=0.2), rng)
    for client in (remote, oracle):
        assert client.create_vector_name(name, "extra", dense(4, models.Distance.DOT))
    same_config(pair, "unnamed and extra")
    pair.scroll_all("unnamed and extra", page=97, with_vectors=True)
    both = [models.PointStruct(id=900_000 + i, vector={"": data.vector(rng, 8),
                                                       "extra": data.vector(rng, 4)},
                               payload={"k": i})
            for i in range(50)]
    pair.upsert(both, rng)
    pair.scroll_all("both written", page=97, with_vectors=True)
    exact_agree(pair, rng, {"": 8, "extra": 4}, "unnamed and extra")
    for client in (remote, oracle):
        assert client.delete_vector_name(name, "")
    same_config(pair, "only extra")
    pair.scroll_all("only extra", page=97, with_vectors=True)
    pair.drop()


def test_vector_name_changes_refused(remote, router_url):
    name = "vector_names_refused"
    remote.create_collection(name, vectors_config={"a": models.VectorParams(
        size=4, distance=models.Distance.DOT)})
    url = f"/collections/{name}/vectors"
    with httpx.Client(base_url=router_url, timeout=30) as http:
        for path, body, needle in [
            # Another size or distance for an existing name.
            ("a", {"dense": {"size": 5, "distance": "Dot"}}, "size"),
            ("a", {"dense": {"size": 4, "distance": "Cosine"}}, "distance"),
            # A sparse vector over a dense one's name, a dense one turned into a multivector.
            ("a", {"sparse": {}}, "dense vector has this name"),
            ("x", {"sparse": {"modifier": "bm99"}}, "bm99"),
            ("a", {"dense": {"size": 4, "distance": "Dot",
                             "multivector_config": {"comparator": "max_sim"}}}, "multivector"),
            ("x", {"dense": {"size": 0, "distance": "Dot"}}, "size"),
            ("x", {"dense": {"size": 4, "distance": "Near"}}, "distance"),
            ("x", {"dense": {"size": 4, "distance": "Dot"}, "sparse": {}}, "dense"),
            ("x", {"dense": {"size": 4, "distance": "Dot", "datatype": "uint8"}}, "datatype"),
            ("x", {"dense": {"size": 4, "distance": "Dot", "sized": 4}}, "sized"),
            ("a:b", {"dense": {"size": 4, "distance": "Dot"}}, ":"),
            ("n" * 201, {"dense": {"size": 4, "distance": "Dot"}}, "200 bytes"),
        ]:
            r = http.put(f"{url}/{path}", json=body)
            assert r.status_code == 400, (path, body, r.text)
            assert needle in r.json()["status"]["error"], (needle, r.text)
        # The only vector cannot go.
        r = http.delete(f"{url}/a")
        assert r.status_code == 400, r.text
        assert "only vector" in r.json()["status"]["error"], r.text
        r = http.put("/collections/no_such_collection/vectors/x",
                     json={"dense": {"size": 4, "distance": "Dot"}})
        assert r.status_code == 404, r.text
    # Nothing refused changed the collection.
    vectors = remote.get_collection(name).config.params.vectors
    assert set(vectors) == {"a"} and vectors["a"].size == 4, vectors
    remote.delete_collection(name)

"""Aliases: created, re-pointed, renamed and deleted in atomic batches; every read and write
through an alias reaches its collection; a rejected batch changes nothing; a deleted
collection takes its aliases with it; aliases survive a restart. Compared with the oracle."""

from __future__ import annotations

import random

import pytest
from qdrant_client import models
from qdrant_client.http.exceptions import UnexpectedResponse

import data
from conftest import checked_client, router_binary
from pair import Pair
from router_process import RouterProcess


def create(c: str, a: str):
    return models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=c,
                                                                       alias_name=a))


def delete(a: str):
    return models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=a))


def rename(old: str, new: str):
    return models.RenameAliasOperation(rename_alias=models.RenameAlias(old_alias_name=old,
                                                                       new_alias_name=new))


def alias_set(response) -> set:
    return {(a.alias_name, a.collection_name) for a in response.aliases}


def same_aliases(remote, oracle, collections=()):
    assert alias_set(remote.get_aliases()) == alias_set(oracle.get_aliases())
    for c in collections:
        assert alias_set(remote.get_collection_aliases(c)) == \
            alias_set(oracle.get_collection_aliases(c)), c


def change(remote, oracle, actions):
    assert remote.update_collection_aliases(change_aliases_operations=actions) is True
    oracle.update_collection_aliases(change_aliases_operations=actions)


def refused(remote, actions, status: int):
    with pytest.raises(UnexpectedResponse) as e:
        remote.update_collection_aliases(change_aliases_operations=actions)
    assert e.value.status_code == status, e.value


def test_aliases_route_reads_and_writes_and_change_atomically(remote, oracle):
    rng = random.Random(5)
    cfg = models.VectorParams(size=8, distance=models.Distance.COSINE)
    a, b = Pair(remote, oracle, "alias_a"), Pair(remote, oracle, "alias_b")
    a.create(cfg, shard_number=2)
    b.create(cfg)
    a.upsert(data.points(rng, 200, 8), rng)
    b.upsert(data.points(random.Random(6), 150, 8), rng)

    change(remote, oracle, [create("alias_a", "prod"), create("alias_b", "staging")])
    same_aliases(remote, oracle, ["alias_a", "alias_b"])
    prod = Pair(remote, oracle, "prod")
    for i in range(10):
        prod.query(f"via prod {i}", query=data.vector(rng, 8), limit=5, with_payload=True)
    prod.count("via prod")
    # A write through the alias lands in its collection.
    extra = data.points(random.Random(7), 20, 8, uuid_share=0)
    for p in extra:
        p.id += 90_000_000
    # The same query before and after the write (answers are cached by collection): the
    # written point must come first after it.
    prod.query("before the write via prod", query=extra[0].vector, limit=5)
    prod.upsert(extra, rng)
    after = prod.query("after the write via prod", query=extra[0].vector, limit=5)
    assert after[0].id == extra[0].id, after
    a.retrieve("written via prod", [p.id for p in extra], with_vectors=True)
    assert remote.get_collection("prod").points_count == remote.get_collection("alias_a").points_count

    # The atomic switch: prod now serves alias_b.
    change(remote, oracle, [delete("prod"), create("alias_b", "prod")])
    same_aliases(remote, oracle, ["alias_a", "alias_b"])
    assert prod.count("prod switched") == oracle.count("alias_b").count
    assert remote.collection_exists("prod") and not remote.collection_exists("no_alias")
    prod.query("prod switched", query=data.vector(rng, 8), limit=7)

    # Re-pointing by creating again, renaming, deleting what is not there.
    change(remote, oracle, [create("alias_a", "prod"), rename("staging", "stage"),
                            delete("never_was")])
    same_aliases(remote, oracle, ["alias_a", "alias_b"])

    # Rejected batches change nothing, whichever action fails.
    before = alias_set(remote.get_aliases())
    refused(remote, [create("alias_b", "tmp"), create("no_such_collection", "x")], 404)
    refused(remote, [create("alias_b", "tmp"), rename("no_such_alias", "y")], 404)
    refused(remote, [create("alias_b", "tmp"), create("alias_b", "alias_a")], 409)
    refused(remote, [create("prod", "alias_of_alias")], 404)
    refused(remote, [create("alias_b", "bad/name")], 400)
    assert alias_set(remote.get_aliases()) == before
    # A collection may not take an alias's name.
    with pytest.raises(UnexpectedResponse) as e:
        remote.create_collection("prod", vectors_config=cfg)
    assert e.value.status_code == 409

    # A deleted collection takes its aliases with it.
    a.drop()
    same_aliases(remote, oracle, ["alias_b"])
    with pytest.raises(UnexpectedResponse) as e:
        remote.count("prod")
    assert e.value.status_code == 404
    b.drop()
    assert alias_set(remote.get_aliases()) == set()


def test_aliases_survive_a_restart(oracle, schema_checker, tmp_path):
    proc = RouterProcess(router_binary(), tmp_path / "storage", tmp_path / "snapshots",
                         tmp_path / "router.log")
    proc.start()
    try:
        remote = checked_client(proc.url, schema_checker)
        rng = random.Random(9)
        pair = Pair(remote, oracle, "alias_restart")
        pair.create(models.VectorParams(size=4, distance=models.Distance.DOT))
        pair.upsert(data.points(rng, 50, 4), rng)
        change(remote, oracle, [create("alias_restart", "r1"), create("alias_restart", "r2"),
                                rename("r2", "r3")])
        before = alias_set(remote.get_aliases())
        remote.close()
        assert proc.stop() == 0
        proc.start()
        remote = checked_client(proc.url, schema_checker)
        pair.remote = remote
        assert alias_set(remote.get_aliases()) == before == {("r1", "alias_restart"),
                                                             ("r3", "alias_restart")}
        Pair(remote, oracle, "r3").query("via r3 after restart", query=data.vector(rng, 4),
                                         limit=5)
        pair.drop()
        change(remote, oracle, [delete("r1"), delete("r3")])
        remote.close()
    finally:
        assert proc.stop() == 0, f"router did not exit 0 on SIGTERM; log {proc.log}"

"""A replica set of three router processes (`--replica-id`, Raft through openraft) on
loopback, driven by the Python `qdrant-client` over REST.

- Under writes from several clients and a reader, the leader and then a follower are killed
  with SIGKILL and restarted, three times over. Afterwards every replica holds the same points
  with the same vectors and payloads, every acknowledged write is there (or a later write of
  the same point whose answer was lost), and reads kept being answered.
- A majority down: the one replica left refuses writes (503) instead of acknowledging what
  it cannot commit. A majority read on a follower left without a leader gives up within the
  read's own `timeout` (REST and gRPC), not the server's longer limit.
- A partition: the leader cut off from the others (by fault-injecting proxies on the
  replicas' Raft traffic). The majority elects a new leader and goes on; the old leader
  acknowledges nothing; after healing, the writes it took are gone and every acknowledged
  one is on every replica.
- A set formed by its replicas themselves at start (`--replica-initial-members`), and
  restarted with it, keeps one history.
- Adding and dropping a collection's vectors, sent to a follower, lands on every replica.
- Membership: a fourth replica joins as a learner (catching up from a snapshot of the whole
  storage: the log was purged behind one), replaces a voter, and answers searches exactly as
  the others do.
- Through a router, a read asking no level still sees the router's own last write.
- Reads asking `consistency=majority`, over REST and gRPC, straight to a replica or through a
  router in cluster mode over the set, wait for the read barrier and see every write
  acknowledged before them.

Run by `cargo test` (`e2e_python.rs`) with VR_ROUTER_BIN set to the release router.
"""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import threading
import time

import grpc
import httpx
import pytest
from qdrant_client import QdrantClient, grpc as grpc_types, models

from harness import (BIN, DIM, Proxy, Replica, all_points, converged, free_port, heal,
                     isolate, leader_of, start_set, vector, wait_for)


def test_kills_and_restarts_lose_no_acknowledged_write(tmp_path):
    replicas = start_set(tmp_path)
    try:
        replicas[1].client().create_collection(
            "c", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.DOT))
        # Per id, the writes in the order made: (version, acknowledged).
        history: dict[int, list[tuple[int, bool]]] = {}
        lock = threading.Lock()
        stop = threading.Event()
        reads = {"ok": 0, "failed": 0, "longest_gap": 0.0}
        clients = {r.rid: r.client() for r in replicas}

        def writer(w: int):
            rng = random.Random(w)
            next_id = w * 1_000_000
            while not stop.is_set():
                live = [r for r in replicas if r.alive()]
                if not live:
                    time.sleep(0.05)
                    continue
                target = rng.choice(live)
                with lock:
                    own = [i for i in history if i // 1_000_000 == w]
                if own and rng.random() < 0.3:
                    pid = rng.choice(own)
                else:
                    pid = next_id
                    next_id += 1
                with lock:
                    version = len(history.get(pid, [])) + 1
                batch = [models.PointStruct(id=pid, vector=vector(pid, version),
                                            payload={"version": version, "writer": w})]
                try:
                    clients[target.rid].upsert("c", batch, wait=True)
                    acked = True
                except Exception:
                    acked = False
                with lock:
                    history.setdefault(pid, []).append((version, acked))

        def reader():
            rng = random.Random(99)
            last_ok = time.monotonic()
            while not stop.is_set():
                live = [r for r in replicas if r.alive()]
                try:
                    clients[rng.choice(live).rid].query_points("c", query=vector(1, 1), limit=5)
                    reads["ok"] += 1
                    now = time.monotonic()
                    reads["longest_gap"] = max(reads["longest_gap"], now - last_ok)
                    last_ok = now
                except Exception:
                    reads["failed"] += 1
                time.sleep(0.01)

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(3)]
        threads.append(threading.Thread(target=reader))
        for t in threads:
            t.start()
        try:
            for cycle in range(3):
                time.sleep(1.0)
                leader = leader_of(replicas)
                leader.kill()
                # The others elect a new leader and writes go on.
                new_leader = leader_of([r for r in replicas if r.alive()])
                assert new_leader is not leader
                time.sleep(1.0)
                leader.start()
                time.sleep(1.0)
                follower = next(r for r in replicas if r.alive() and r is not leader_of(replicas))
                follower.kill()
                time.sleep(1.0)
                follower.start()
        finally:
            stop.set()
            for t in threads:
                t.join()

        wait_for("replicas to converge", lambda: converged(replicas))
        states = [all_points(r) for r in replicas]
        # Every replica holds the same points, with the same values.
        assert states[0] == states[1] == states[2]
        state = states[0]
        acked_writes = sum(ok for h in history.values() for _, ok in h)
        assert acked_writes > 50, f"only {acked_writes} writes acknowledged"
        for pid, writes in history.items():
            last_acked = max((k for k, (_, ok) in enumerate(writes) if ok), default=None)
            if last_acked is None:
                # Never acknowledged: absent, or one of the versions tried.
                assert pid not in state or state[pid][0] in {v for v, _ in writes}
                continue
            # The last acknowledged version, or a later one whose answer was lost.
            allowed = {writes[last_acked][0]} | {v for v, _ in writes[last_acked + 1:]}
            assert pid in state, f"acknowledged point {pid} lost"
            version, vec, _ = state[pid]
            assert version in allowed, f"point {pid}: version {version}, allowed {allowed}"
            # Stored as f32: equal to the f64 sent within f32's precision.
            assert all(abs(a - b) < 1e-4 for a, b in zip(vec, vector(pid, version))), pid
        # Reads kept being answered: no pause longer than an election and a retry.
        assert reads["ok"] > 100 and reads["longest_gap"] < 5.0, reads
    finally:
        for r in replicas:
            if r.alive():
                r.kill()


def test_a_minority_refuses_writes(tmp_path):
    replicas = start_set(tmp_path)
    try:
        leader = leader_of(replicas)
        leader.client().create_collection(
            "c", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.DOT))
        leader.client().upsert("c", [models.PointStruct(id=1, vector=vector(1, 1),
                                                        payload={"version": 1})], wait=True)
        others = [r for r in replicas if r is not leader]
        for r in others:
            r.kill()
        # Alone, the old leader cannot commit: the write is refused, not acknowledged.
        answer = httpx.put(leader.url + "/collections/c/points?wait=true", timeout=30,
                           json={"points": [{"id": 2, "vector": vector(2, 1),
                                             "payload": {"version": 1}}]})
        assert answer.status_code == 503, answer.text
        assert "Service unavailable" in answer.json()["status"]["error"]
        # Reads of what it holds still answer.
        assert leader.client().count("c").count == 1
        for r in others:
            r.start()
        leader_of(replicas)
        replicas[2].client().upsert("c", [models.PointStruct(
            id=3, vector=vector(3, 1), payload={"version": 1})], wait=True)
        wait_for("replicas to converge", lambda: converged(replicas))
        counts = {r.client().count("c", exact=True).count for r in replicas}
        # Point 2's write was never acknowledged: it may have been committed once the others
        # came back (Raft keeps the old leader's entry when no other leader replaced it), but
        # every replica agrees.
        assert len(counts) == 1 and counts <= {2, 3}, counts
    finally:
        for r in replicas:
            if r.alive():
                r.kill()


def test_a_majority_read_with_no_leader_gives_up_within_its_own_timeout(tmp_path):
    """The leader and a follower killed: the follower left has no leader to confirm a read
    with. A read asking `consistency=majority` and `timeout=1` is refused (503) after about a
    second, over REST and gRPC; without the timeout it would wait out the server's limit
    (10 s here), past the client's own 5 s."""
    replicas = start_set(tmp_path)
    try:
        leader = leader_of(replicas)
        leader.client().create_collection(
            "c", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.DOT))
        leader.client().upsert("c", [models.PointStruct(id=1, vector=vector(1, 1))], wait=True)
        followers = [r for r in replicas if r is not leader]
        left = followers[0]
        wait_for("the follower to apply the write", lambda: left.client().count("c").count == 1)
        leader.kill()
        followers[1].kill()
        answer = httpx.post(left.url + "/collections/c/points/scroll",
                            params={"consistency": "majority", "timeout": 1},
                            json={"limit": 10}, timeout=5)
        assert answer.status_code == 503, answer.text
        assert "no leader to confirm a read" in answer.json()["status"]["error"]
        # gRPC: the message's timeout, under a client deadline of 5 s (qdrant-client's
        # `scroll` would make its deadline the same second).
        direct = QdrantClient(host="127.0.0.1", port=left.port, grpc_port=left.grpc_port,
                              prefer_grpc=True, timeout=5)
        majority = grpc_types.ReadConsistency(type=grpc_types.ReadConsistencyType.Majority)
        try:
            direct.grpc_points.Scroll(
                grpc_types.ScrollPoints(collection_name="c", limit=10,
                                        read_consistency=majority, timeout=1),
                timeout=5)
            raise AssertionError("a majority read without a leader was answered")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.UNAVAILABLE, e
            assert "no leader to confirm a read" in e.details(), e
        # A read asking no level answers from what the follower holds.
        assert left.client().count("c").count == 1
    finally:
        for r in replicas:
            if r.alive():
                r.kill()


def test_vector_changes_go_through_the_log(tmp_path):
    """Adding and dropping a collection's vectors (dense and sparse), sent to a follower, is
    applied on every replica: the same configuration and the same points, vectors included,
    everywhere. A change the collection refuses is refused alike, and changes nothing."""
    replicas = start_set(tmp_path)
    try:
        leader = leader_of(replicas)
        follower = next(r for r in replicas if r is not leader)
        leader.client().create_collection("v", vectors_config={
            "a": models.VectorParams(size=DIM, distance=models.Distance.DOT)})
        leader.client().upsert("v", [models.PointStruct(id=i, vector={"a": vector(i, 1)},
                                                        payload={"n": i}) for i in range(20)],
                               wait=True)

        def put_vector(name, body):
            return httpx.put(follower.url + f"/collections/v/vectors/{name}?wait=true",
                             json=body, timeout=10)

        answer = put_vector("b", {"dense": {"size": 3, "distance": "Cosine"}})
        assert answer.status_code == 200, answer.text
        answer = put_vector("s", {"sparse": {"modifier": "idf"}})
        assert answer.status_code == 200, answer.text
        # The same name again: refused by the collection on every replica, as one answer.
        again = put_vector("b", {"dense": {"size": 5, "distance": "Dot"}})
        assert 400 <= again.status_code < 500, again.text
        follower.client().upsert("v", [models.PointStruct(
            id=i, vector={"a": vector(i, 2), "b": [1.0, float(i), 2.0],
                          "s": models.SparseVector(indices=[i, 100], values=[1.0, 0.5])},
            payload={"n": i}) for i in range(10, 30)], wait=True)
        answer = httpx.delete(follower.url + "/collections/v/vectors/a?wait=true", timeout=10)
        assert answer.status_code == 200, answer.text
        wait_for("replicas to converge", lambda: converged(replicas))

        def state(r):
            info = httpx.get(r.url + "/collections/v", timeout=10).json()["result"]
            params = info["config"]["params"]
            points, _ = r.client().scroll("v", limit=100, with_payload=True, with_vectors=True)
            return (params["vectors"], params.get("sparse_vectors"),
                    [(p.id, p.payload, p.vector) for p in points])

        states = [state(r) for r in replicas]
        assert states[0] == states[1] == states[2]
        vectors, sparse, points = states[0]
        assert vectors == {"b": {"size": 3, "distance": "Cosine"}}, vectors
        assert set(sparse) == {"s"} and sparse["s"]["modifier"] == "idf", sparse
        assert [p[0] for p in points] == list(range(30))
        assert all("a" not in p[2] for p in points)
        assert points[15][2]["b"] == pytest.approx(
            [x / (1 + 15 ** 2 + 4) ** 0.5 for x in (1.0, 15.0, 2.0)])
        assert "b" not in points[5][2]
    finally:
        for r in replicas:
            if r.alive():
                r.kill()


def test_a_set_forms_itself_from_its_initial_members(tmp_path):
    """Three replicas started with the same `--replica-initial-members` and no call to
    `initialize`: one is elected and the set takes writes on every replica. Restarted with
    the same flag (their state kept), they do not form a new set: the data stays. A replica
    whose state was lost, started again with the flag, does not form a set of its own (the
    others say they have one): it refuses to start while another voter is down, and once
    every voter answers it rejoins and catches up from the leader. A replica the list does not
    name starts and waits to be added, changing nothing."""
    replicas = [Replica(i, tmp_path) for i in (1, 2, 3)]
    members = ",".join(f"{r.rid}={r.url}" for r in replicas)
    try:
        for r in replicas:
            r.extra = ["--replica-initial-members", members]
            r.start()
        leader = leader_of(replicas)
        wait_for("every replica to know the leader",
                 lambda: {r.status()["leader"] for r in replicas} == {leader.rid})
        assert set(leader.status()["voters"]) == {1, 2, 3}
        follower = next(r for r in replicas if r is not leader)
        follower.client().create_collection(
            "c", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.DOT))
        follower.client().upsert("c", [models.PointStruct(id=i, vector=vector(i, 1),
                                                          payload={"version": 1})
                                       for i in range(10)], wait=True)
        wait_for("replicas to converge", lambda: converged(replicas))
        for r in replicas:
            r.kill()
        for r in replicas:
            r.start()
        # One history: a set formed anew would have dropped the points (or refused them).
        again = leader_of(replicas)
        assert set(again.status()["voters"]) == {1, 2, 3}
        wait_for("the follower to know the leader", lambda: follower.status()["leader"])
        follower.client().upsert("c", [models.PointStruct(id=10, vector=vector(10, 1),
                                                          payload={"version": 1})], wait=True)
        wait_for("replicas to converge", lambda: converged(replicas))
        states = [all_points(r) for r in replicas]
        assert states[0] == states[1] == states[2] and sorted(states[0]) == list(range(11))
        # A follower's disk lost while the third voter is down: the lost vote may be one only
        # that voter holds (it was its candidate), so the replica refuses to rejoin rather
        # than risk granting a second vote in a term it forgot.
        lost = next(r for r in replicas if r is not again)
        third = next(r for r in replicas if r is not again and r is not lost)
        lost.kill()
        third.kill()
        shutil.rmtree(lost.dir / "storage")
        with pytest.raises(AssertionError, match="did not start"):
            lost.start()
        assert lost.proc.wait(timeout=60) != 0
        lost.proc = None
        assert f"voters [{third.rid}] did not answer" in (lost.dir / "log.txt").read_text()
        # Once every other voter answers, it comes back empty under the same flag, holding
        # the greatest vote among theirs.
        third.start()
        again = leader_of([again, third])
        wait_for("both to know the leader",
                 lambda: {r.status()["leader"] for r in (again, third)} == {again.rid})
        before = again.status()
        lost.start()
        log = (lost.dir / "log.txt").read_text()
        assert log.count("rejoins holding the greatest vote") == 1, log
        wait_for("the emptied replica to catch up", lambda: converged(replicas))
        assert all_points(lost) == states[0]
        # It held the leader's vote (not committed: it had heard from no leader), so the
        # rejoin cost no election; caught up, it votes again.
        after, rejoined = again.status(), lost.status()
        assert (after["leader"], after["term"]) == (before["leader"], before["term"]), (before, after)
        assert rejoined["vote"]["leader_id"] == before["vote"]["leader_id"], (before, rejoined)
        wait_for("the rejoined replica to vote again", lambda: lost.status()["votes"])
        stranger = Replica(7, tmp_path)
        stranger.extra = ["--replica-initial-members", members]
        try:
            stranger.start()
            status = stranger.status()
            assert status["voters"] == [] and status["leader"] is None, status
            assert httpx.get(stranger.url + "/readyz", timeout=5).status_code == 503
            assert set(again.status()["voters"]) == {1, 2, 3}
        finally:
            if stranger.alive():
                stranger.kill()
    finally:
        for r in replicas:
            if r.alive():
                r.kill()


def test_a_replica_that_lost_its_disk_votes_only_once_caught_up(tmp_path):
    """An empty log would vote for any candidate, one missing entries that were committed
    with the lost replica's help among them. Here the leader is down and a follower's disk
    is lost; the follower comes back letting the dead leader off its survey
    (`--replica-rejoin-without`): the remaining voter campaigns, and wins only with the
    emptied replica's vote, which it does not get until that replica has caught up. Once
    the old leader is back, a leader is elected, the emptied replica catches up and votes
    again, and every replica holds the same points. A restart before it has caught up
    keeps it from voting (the gate is on disk)."""
    replicas = [Replica(i, tmp_path) for i in (1, 2, 3)]
    members = ",".join(f"{r.rid}={r.url}" for r in replicas)
    try:
        for r in replicas:
            r.extra = ["--replica-initial-members", members]
            r.start()
        leader = leader_of(replicas)
        c = leader.client()
        c.create_collection(
            "c", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.DOT))
        c.upsert("c", [models.PointStruct(id=i, vector=vector(i, 1), payload={"version": 1})
                       for i in range(20)], wait=True)
        wait_for("replicas to converge", lambda: converged(replicas))
        expected = all_points(leader)
        lost, other = [r for r in replicas if r is not leader]
        leader.kill()
        lost.kill()
        shutil.rmtree(lost.dir / "storage")
        lost.extra = ["--replica-initial-members", members,
                      "--replica-rejoin-without", str(leader.rid)]
        lost.start()
        assert "votes again once it has caught up" in (lost.dir / "log.txt").read_text()
        # Three seconds are some four election timeouts at this heartbeat.
        time.sleep(3)
        states = {r.rid: r.status() for r in (lost, other)}
        assert all(s["state"] != "Leader" and s["leader"] is None for s in states.values()), states
        assert states[lost.rid]["votes"] is False, states
        # Restarted before it caught up (its vote is on disk now, so it is not surveyed
        # again): the gate was kept on disk with the vote.
        lost.kill()
        lost.start()
        time.sleep(3)
        states = {r.rid: r.status() for r in (lost, other)}
        assert all(s["state"] != "Leader" and s["leader"] is None for s in states.values()), states
        assert states[lost.rid]["votes"] is False, states
        leader.start()
        again = leader_of(replicas)
        wait_for("replicas to converge", lambda: converged(replicas))
        wait_for("the emptied replica to vote again", lambda: lost.status()["votes"])
        assert all_points(lost) == expected
        assert again.status()["leader"] == again.rid
    finally:
        for r in replicas:
            if r.alive():
                r.kill()


def test_a_new_replica_catches_up_from_a_snapshot_and_replaces_a_voter(tmp_path):
    replicas = start_set(tmp_path, snapshot_entries=100)
    try:
        c = replicas[0].client()
        c.create_collection(
            "c", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE))
        c.create_payload_index("c", "writer", models.PayloadSchemaType.INTEGER)
        # Enough entries for a snapshot (every 100) and a purged log behind it.
        for b in range(30):
            c.upsert("c", [models.PointStruct(id=b * 50 + i, vector=vector(b * 50 + i, 1),
                                              payload={"version": 1, "writer": i % 4})
                           for i in range(50)], wait=True)
        for i in range(150):
            c.set_payload("c", {"touched": i}, points=[i], wait=True)
        leader = leader_of(replicas)
        wait_for("a snapshot", lambda: leader.status()["snapshot_index"] is not None)

        newcomer = Replica(4, tmp_path)
        newcomer.start()
        answer = httpx.post(leader.url + "/cluster/replica/learners",
                            json={"id": 4, "url": newcomer.url}, timeout=60)
        assert answer.status_code == 200, answer.text
        leaving = next(r for r in replicas if r is not leader)
        voters = sorted({r.rid for r in replicas if r is not leaving} | {4})
        answer = httpx.post(leader.url + "/cluster/replica/membership",
                            json={"voters": voters}, timeout=60)
        assert answer.status_code == 200, answer.text
        assert sorted(answer.json()["result"]["voters"]) == voters
        leaving.stop()
        members = [r for r in replicas if r is not leaving] + [newcomer]
        # Writes go on in the new set, and the newcomer votes in it.
        newcomer.client().upsert("c", [models.PointStruct(
            id=100_000, vector=vector(100_000, 1), payload={"version": 1, "writer": 9})],
            wait=True)
        wait_for("replicas to converge", lambda: converged(members))
        assert all_points(newcomer) == all_points(leader)
        query = vector(7, 3)
        flt = models.Filter(must=[models.FieldCondition(key="writer",
                                                        match=models.MatchValue(value=2))])
        expected = leader.client().query_points("c", query=query, limit=10, query_filter=flt,
                                                with_payload=True).points
        got = newcomer.client().query_points("c", query=query, limit=10, query_filter=flt,
                                             with_payload=True).points
        assert [(p.id, round(p.score, 5), p.payload) for p in got] == \
            [(p.id, round(p.score, 5), p.payload) for p in expected]
        assert len(got) == 10
        # It caught up from a snapshot: the log it needed was purged.
        log = (newcomer.dir / "log.txt").read_text()
        assert "raft snapshot installed" in log
        status = newcomer.status()
        assert status["state"] == "Follower" and sorted(status["voters"]) == voters
    finally:
        for r in replicas + [locals().get("newcomer")]:
            if r is not None and r.alive():
                r.kill()


def start_router(tmp_path, replicas, flags=()):
    """A router in cluster mode whose one node is the replica set (`a|b|c`): its process,
    REST URL and gRPC port."""
    group = "|".join(f"http://127.0.0.1:{r.grpc_port}" for r in replicas)
    (tmp_path / "router").mkdir()
    grpc_port = free_port()
    router = subprocess.Popen(
        [BIN, "--host", "127.0.0.1", "--http-port", "0", "--grpc-port", str(grpc_port),
         "--storage-path", str(tmp_path / "router" / "storage"),
         "--snapshots-path", str(tmp_path / "router" / "snapshots"),
         "--cluster-nodes", group, *flags],
        stdout=subprocess.PIPE, stderr=open(tmp_path / "router" / "log.txt", "ab"),
        stdin=subprocess.DEVNULL)
    line = router.stdout.readline().decode()
    assert line.startswith("listening on "), line
    return router, line.split("listening on ", 1)[1].strip(), grpc_port


def linearizable_reads(replicas) -> int:
    """The reads the replicas answered after their read barrier, all together."""
    total = 0
    for r in replicas:
        for line in httpx.get(r.url + "/metrics", timeout=5).text.splitlines():
            if line.startswith("vector_router_replica_linearizable_reads_total "):
                total += int(float(line.split()[1]))
    return total


def forwarded_writes(replicas) -> int:
    """The writes the replicas handed to their leader, all together."""
    total = 0
    for r in replicas:
        for line in httpx.get(r.url + "/metrics", timeout=5).text.splitlines():
            if line.startswith("vector_router_replica_forwarded_writes_total "):
                total += int(float(line.split()[1]))
    return total


def write_target(router_url: str) -> str:
    """The replica URL the router sends the set's writes to first."""
    targets = [line.split('replica="', 1)[1].split('"', 1)[0]
               for line in httpx.get(router_url + "/metrics", timeout=5).text.splitlines()
               if line.startswith("vector_router_cluster_replica_write_target{")
               and line.endswith(" 1")]
    assert len(targets) == 1, targets
    return targets[0]


def test_majority_reads_pass_the_read_barrier_through_a_router_and_over_grpc(tmp_path):
    """`consistency=majority` through a router in cluster mode (REST and gRPC) reaches the
    replica set, whose replica answering waits for its read barrier: a read right after an
    acknowledged write sees it, whichever replica answers. A read asking nothing does not
    wait, and a level that does not read is refused."""
    replicas = start_set(tmp_path)
    router = None
    try:
        router, url, grpc_port = start_router(tmp_path, replicas)
        client = QdrantClient(url=url, timeout=10)
        client.create_collection(
            "c", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.DOT))
        majority = models.ReadConsistencyType.MAJORITY
        before = linearizable_reads(replicas)
        for pid in range(30):
            client.upsert("c", [models.PointStruct(
                id=pid, vector=vector(pid, 1), payload={"version": pid})], wait=True)
            got = client.retrieve("c", [pid], with_payload=True, consistency=majority)
            assert [(p.id, p.payload) for p in got] == [(pid, {"version": pid})]
            page, _ = client.scroll("c", limit=100, consistency=majority)
            assert sorted(p.id for p in page) == list(range(pid + 1))
        # Each read went to one replica (no hedging here) and waited there.
        assert linearizable_reads(replicas) - before == 60
        hits = client.query_points("c", query=vector(1, 1), limit=5, consistency=majority)
        assert len(hits.points) == 5
        assert linearizable_reads(replicas) - before == 61
        # Without a level: no barrier.
        client.query_points("c", query=vector(1, 1), limit=5)
        client.scroll("c", limit=10)
        assert linearizable_reads(replicas) - before == 61
        # Still, a read through the router sees the router's own last write, whichever
        # replica answers: it waits until it has applied the index the write was answered at
        # (without that, a follower a moment behind answers without it).
        for pid in range(200, 240):
            client.upsert("c", [models.PointStruct(
                id=pid, vector=vector(pid, 1), payload={"version": pid})], wait=True)
            got = client.retrieve("c", [pid], with_payload=True)
            assert [(p.id, p.payload) for p in got] == [(pid, {"version": pid})]
            assert client.count("c", exact=True).count == pid - 200 + 31
        assert linearizable_reads(replicas) - before == 61
        # gRPC through the router, and straight to a follower.
        via_grpc = QdrantClient(host="127.0.0.1", port=int(url.rsplit(":", 1)[1]),
                                grpc_port=grpc_port, prefer_grpc=True, timeout=10)
        got = via_grpc.retrieve("c", [7], with_payload=True, consistency=majority)
        assert [(p.id, p.payload) for p in got] == [(7, {"version": 7})]
        assert linearizable_reads(replicas) - before == 62
        leader = leader_of(replicas)
        follower = next(r for r in replicas if r is not leader)
        direct = QdrantClient(host="127.0.0.1", port=follower.port,
                              grpc_port=follower.grpc_port, prefer_grpc=True, timeout=10)
        leader.client().upsert("c", [models.PointStruct(
            id=1000, vector=vector(1000, 1), payload={"version": 1000})], wait=True)
        got = direct.retrieve("c", [1000], with_payload=True, consistency=majority)
        assert [(p.id, p.payload) for p in got] == [(1000, {"version": 1000})]
        assert linearizable_reads([follower]) >= 1
        assert linearizable_reads(replicas) - before == 63
        # A level that does not read: refused, in Qdrant's error shape.
        for target in (url, follower.url):
            answer = httpx.post(target + "/collections/c/points/scroll?consistency=most",
                                json={"limit": 1}, timeout=10)
            assert answer.status_code == 400, answer.text
            assert "consistency `most`" in answer.json()["status"]["error"]
    finally:
        if router is not None:
            router.kill()
            router.wait()
        for r in replicas:
            if r.alive():
                r.kill()


def test_a_stopped_replica_is_hedged_around(tmp_path):
    """A replica that hangs (SIGSTOP: connections accepted, nothing answered) under a router
    hedging at the 90th percentile of the set's read latencies: every read is answered, by
    a second replica asked once the first is slower than most reads; the router counts the
    hedges. Without a hedge, a read drawn to that replica would wait out its deadline."""
    replicas = start_set(tmp_path)
    router = None
    stopped = None
    try:
        router, url, _ = start_router(
            tmp_path, replicas,
            ["--cluster-hedge-percentile", "90", "--cluster-hedge-after-ms", "20"])
        client = QdrantClient(url=url, timeout=5)
        client.create_collection(
            "c", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.DOT))
        client.upsert("c", [models.PointStruct(id=i, vector=vector(i, 1),
                                               payload={"version": 1}) for i in range(50)],
                      wait=True)
        # Enough reads for the window to hold a percentile.
        for i in range(80):
            client.query_points("c", query=vector(i, 2), limit=5)
        def metric(name, replica=None):
            found = [float(line.rsplit(" ", 1)[1])
                     for line in httpx.get(url + "/metrics", timeout=5).text.splitlines()
                     if line.startswith(name + "{")
                     and (replica is None or f'replica="{replica}"' in line)]
            assert len(found) == 1, (name, found)
            return found[0]

        leader = leader_of(replicas)
        stopped = next(r for r in replicas if r is not leader)
        stopped_url = f"http://127.0.0.1:{stopped.grpc_port}"
        hedged_before = metric("vector_router_cluster_hedged_reads_total")
        stopped.proc.send_signal(signal.SIGSTOP)
        began = time.monotonic()
        for i in range(40):
            assert len(client.query_points("c", query=vector(i, 3), limit=5).points) == 5
        seconds = time.monotonic() - began
        hedged = metric("vector_router_cluster_hedged_reads_total") - hedged_before
        lost = metric("vector_router_cluster_replica_hedges_lost_total", stopped_url)
        # It lost its hedges, and after three in a row left the draw: drawn again once a
        # second, it costs a hedge then, not one read in three (about 13 of 40).
        assert lost >= 3 and hedged >= lost, (lost, hedged)
        assert hedged <= 4 + seconds, (hedged, seconds)
    finally:
        if stopped is not None and stopped.alive():
            stopped.proc.send_signal(signal.SIGCONT)
        if router is not None:
            router.kill()
            router.wait()
        for r in replicas:
            if r.alive():
                r.kill()


def test_a_cluster_router_over_a_replica_set_fails_over(tmp_path):
    """The router in cluster mode, its one node a replica set (`a|b|c`): reads and writes
    through it go on when the set's leader is killed, and land on every replica. Writes go
    to the leader itself, before the kill and after it: no follower hands them on."""
    replicas = start_set(tmp_path)
    router = None
    try:
        # The leader listed last: a router that wrote to the first replica it lists (or to
        # the last one that took a write) would send every write to a follower.
        first = leader_of(replicas)
        listed = [r for r in replicas if r is not first] + [first]
        router, url, _ = start_router(tmp_path, listed, ["--cluster-hedge-after-ms", "200"])
        client = QdrantClient(url=url, timeout=10)
        client.create_collection(
            "c", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.DOT))
        acked = {}

        def write(pid: int) -> None:
            # Within an election the set answers 503: the client tries again (a retry of an
            # upsert of the same values is safe).
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.upsert("c", [models.PointStruct(
                        id=pid, vector=vector(pid, 1), payload={"version": 1})], wait=True)
                    acked[pid] = True
                    return
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)

        for pid in range(80):
            write(pid)
        leader = leader_of(replicas)
        assert write_target(url) == f"http://127.0.0.1:{leader.grpc_port}"
        forwarded = forwarded_writes(replicas)
        for pid in range(80, 100):
            write(pid)
        assert forwarded_writes(replicas) == forwarded
        leader.kill()
        # Reads right after the kill: the dead replica is skipped.
        for _ in range(30):
            assert len(client.query_points("c", query=vector(3, 1), limit=5).points) == 5
        # The router's metrics say which replica failed it (the power of two choices draws
        # the dead one first in about one read of three until it fails).
        dead = f'replica="http://127.0.0.1:{leader.grpc_port}"'
        failures = [float(line.rsplit(" ", 1)[1])
                    for line in httpx.get(url + "/metrics", timeout=5).text.splitlines()
                    if line.startswith("vector_router_cluster_replica_failures_total{")
                    and dead in line]
        assert failures and failures[0] >= 1, failures
        for pid in range(100, 130):
            write(pid)
        # The new leader was found (from the replicas' answers) and takes the writes.
        live = [r for r in replicas if r is not leader]
        new_leader = leader_of(live)
        assert write_target(url) == f"http://127.0.0.1:{new_leader.grpc_port}"
        forwarded = forwarded_writes(live)
        for pid in range(130, 150):
            write(pid)
        assert forwarded_writes(live) == forwarded
        # Through the router a read may reach a follower a moment behind: wait for it.
        wait_for("150 points through the router",
                 lambda: client.count("c", exact=True).count == 150)
        leader.start()
        wait_for("replicas to converge", lambda: converged(replicas))
        states = [all_points(r) for r in replicas]
        assert states[0] == states[1] == states[2]
        assert sorted(states[0]) == sorted(acked) == list(range(150))
        expected = replicas[0].client().query_points("c", query=vector(5, 1), limit=10).points
        got = client.query_points("c", query=vector(5, 1), limit=10).points
        assert [(p.id, round(p.score, 4)) for p in got] == \
            [(p.id, round(p.score, 4)) for p in expected]
    finally:
        if router is not None:
            router.kill()
            router.wait()
        for r in replicas:
            if r.alive():
                r.kill()


def test_a_partitioned_leader_loses_its_unacknowledged_writes(tmp_path):
    proxies: list[Proxy] = []
    replicas = start_set(tmp_path, proxies=proxies)
    try:
        leader = leader_of(replicas)
        leader.client().create_collection(
            "c", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.DOT))
        for pid in range(20):
            leader.client().upsert("c", [models.PointStruct(
                id=pid, vector=vector(pid, 1), payload={"version": 1})], wait=True)
        old = leader
        others = [r for r in replicas if r is not old]
        isolate(old, replicas, proxies)
        answers = {}

        def write_to_old(pid):
            answers[pid] = httpx.put(
                old.url + "/collections/c/points?wait=true", timeout=60,
                json={"points": [{"id": pid, "vector": vector(pid, 1),
                                  "payload": {"version": 1}}]}).status_code

        minority = [threading.Thread(target=write_to_old, args=(pid,)) for pid in (1000, 1001)]
        for t in minority:
            t.start()
        # The majority elects a leader of its own and takes writes.
        new = leader_of(others)
        assert new is not old
        for pid in range(2000, 2020):
            others[pid % 2].client().upsert("c", [models.PointStruct(
                id=pid, vector=vector(pid, 1), payload={"version": 1})], wait=True)
        for t in minority:
            t.join()
        # The cut-off leader acknowledged neither write.
        assert answers == {1000: 503, 1001: 503}, answers
        # Healed: the old leader follows the new one, its own entries replaced.
        heal(proxies)
        wait_for("the old leader to follow", lambda: old.status()["state"] == "Follower")
        wait_for("replicas to converge", lambda: converged(replicas))
        states = [all_points(r) for r in replicas]
        assert states[0] == states[1] == states[2]
        assert sorted(states[0]) == list(range(20)) + list(range(2000, 2020))
    finally:
        for r in replicas:
            if r.alive():
                r.kill()
        for p in proxies:
            p.close()

"""Linearizability of a replica set under faults, checked on a recorded history.

Clients write and read a few points (registers: a point's payload `v`) through every replica,
reads asking `consistency=majority`, while the leader is killed and restarted, cut off from
the others by a partition and healed, and a follower is killed and restarted. Each operation's
call and return are recorded on one clock; the history is then checked by the Wing and Gong
search with Lowe's memoization (`linearizability.py`, Porcupine's algorithm). A write whose
answer was lost counts as possibly applied at any time after its call; a read whose answer was
lost tells nothing.

The checker is tested first on histories whose answer is known, so that a checker accepting
everything cannot pass for a replica set that is linearizable.
"""

from __future__ import annotations

import math
import random
import threading
import time

from qdrant_client import QdrantClient, models

from harness import DIM, Proxy, heal, isolate, leader_of, register_step, start_set, wait_for
from linearizability import READ, WRITE, Op, check, check_key


def w(value, call, ret, key=0):
    return Op(key, WRITE, value, call, ret)


def r(value, call, ret, key=0):
    return Op(key, READ, value, call, ret)


def test_the_checker_accepts_overlapping_operations_in_either_order():
    # A read overlapping a write may see the old or the new value.
    assert check_key([w(1, 0, 1), w(2, 2, 5), r(1, 3, 4)])[0]
    assert check_key([w(1, 0, 1), w(2, 2, 5), r(2, 3, 4)])[0]
    # Two overlapping writes, then reads agreeing on one of them as the last.
    assert check_key([w(1, 0, 3), w(2, 1, 4), r(1, 5, 6), r(1, 7, 8)])[0]
    # The initial value before any write.
    assert check_key([r(None, 0, 1), w(1, 2, 3), r(1, 4, 5)])[0]


def test_the_checker_refuses_stale_and_invented_reads():
    # A read after a write returned sees it, not the value before it.
    assert not check_key([w(1, 0, 1), w(2, 2, 3), r(1, 4, 5)])[0]
    # Once a read saw the new value, a later read cannot see the old one (each read alone
    # overlaps the write, so only their order refutes it).
    assert not check_key([w(1, 0, 1), w(2, 2, 10), r(2, 3, 4), r(1, 5, 6)])[0]
    # A value nobody wrote.
    assert not check_key([w(1, 0, 1), r(7, 2, 3)])[0]
    # Two overlapping writes: readers disagreeing about which came last.
    assert not check_key([w(1, 0, 3), w(2, 1, 4), r(1, 5, 6), r(2, 7, 8), r(1, 9, 10)])[0]
    # Keys are independent: one bad key fails its own check only.
    result = check([w(1, 0, 1, key="a"), r(1, 2, 3, key="a"),
                    w(1, 0, 1, key="b"), r(None, 2, 3, key="b")])
    assert result["a"][0] and not result["b"][0]


def test_the_checker_places_a_write_of_unknown_outcome_anywhere_after_its_call():
    # Seen, then overwritten.
    assert check_key([w(1, 0, math.inf), r(1, 2, 3), w(2, 4, 5), r(2, 6, 7)])[0]
    # Never seen: as if it never happened.
    assert check_key([w(1, 0, math.inf), r(None, 2, 3), r(None, 4, 5)])[0]
    # But not before its call.
    assert not check_key([r(1, 0, 1), w(1, 2, math.inf)])[0]
    # Nor seen and then unseen, with nothing written between.
    assert not check_key([w(1, 0, math.inf), r(1, 2, 3), r(None, 4, 5)])[0]
    # Many such writes never seen (a replica cut off took them all) beside a history that
    # is, or is not, linearizable: the same answers, found at once.
    lost = [w(1000 + i, 2 * i, math.inf) for i in range(200)]
    good = [w(1, 0, 1), r(1, 500, 501), w(2, 502, 503), r(2, 504, 505)]
    bad = [w(1, 0, 1), r(1, 500, 501), w(2, 502, 503), r(1, 504, 505)]
    assert check(lost + good)[0] == (True, check(good)[0][1])
    assert not check(lost + bad)[0][0]


KEYS = 4


def test_a_history_under_kills_and_partitions_is_linearizable(tmp_path):
    proxies: list[Proxy] = []
    replicas = start_set(tmp_path, proxies=proxies)
    history: list[Op] = []
    served: dict[int, int] = {}  # position in the history: the replica asked
    lock = threading.Lock()
    stop = threading.Event()
    try:
        leader_of(replicas).client().create_collection(
            "c", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.DOT))
        wait_for("the collection on every replica",
                 lambda: all(r.client().collection_exists("c") for r in replicas))

        def client_loop(cid: int):
            rng = random.Random(cid)
            clients = {r.rid: QdrantClient(url=r.url, timeout=3) for r in replicas}
            written = 0
            while not stop.is_set():
                target = rng.choice([r for r in replicas if r.alive()])
                key = rng.randrange(KEYS) + 1
                value = None
                if rng.random() < 0.5:
                    written += 1
                    value = cid * 1_000_000 + written
                op = register_step(clients[target.rid], key, value, cid)
                if op is None:
                    # Told nothing (a replica restarting, a read lost): try again shortly.
                    time.sleep(0.05)
                    continue
                with lock:
                    served[len(history)] = target.rid
                    history.append(op)
                if op.ret == math.inf:
                    time.sleep(0.1)

        crashed: list[BaseException] = []

        def guarded(cid: int):
            try:
                client_loop(cid)
            except BaseException as e:  # a client that stopped would thin the history
                crashed.append(e)

        threads = [threading.Thread(target=guarded, args=(cid,)) for cid in range(4)]
        for t in threads:
            t.start()
        try:
            for _ in range(2):
                time.sleep(1.5)
                leader = leader_of(replicas)
                leader.kill()
                time.sleep(1.5)
                leader.start()
                time.sleep(1.5)
                # The leader cut off both ways: the majority elects another; clients still
                # reach the old one, which must neither acknowledge a write nor answer a
                # majority read from its own state.
                old = leader_of(replicas)
                isolate(old, replicas, proxies)
                leader_of([o for o in replicas if o is not old])
                time.sleep(1.5)
                heal(proxies)
                time.sleep(1.5)
                follower = next(o for o in replicas if o is not leader_of(replicas))
                follower.kill()
                time.sleep(1.0)
                follower.start()
            time.sleep(1.5)
        finally:
            stop.set()
            for t in threads:
                t.join()

        assert not crashed, crashed
        done = [op for op in history if op.ret != math.inf]
        writes = sum(op.kind == WRITE for op in done)
        reads = [op for op in done if op.kind == READ]
        assert writes > 50 and len(reads) > 50, (writes, len(reads))
        assert sum(op.value is not None for op in reads) > 25, "reads saw no writes"
        # Every replica answered majority reads (each was a follower, and was restarted).
        by_replica = {rep.rid: 0 for rep in replicas}
        for i, op in enumerate(history):
            if op.kind == READ:
                by_replica[served[i]] += 1
        assert min(by_replica.values()) >= 10, by_replica
        for key, (ok, steps) in check(history).items():
            if not ok:
                ops = sorted((i for i, op in enumerate(history) if op.key == key),
                             key=lambda i: history[i].call)
                t0 = history[ops[0]].call
                lines = [f"client {history[i].client} at replica {served[i]}: "
                         f"{history[i].kind:5} {history[i].value!s:>10} "
                         f"[{history[i].call - t0:8.3f}, {history[i].ret - t0:8.3f}]"
                         for i in ops]
                raise AssertionError(f"key {key} is not linearizable ({steps} steps):\n"
                                     + "\n".join(lines))
    finally:
        stop.set()
        for rep in replicas:
            if rep.alive():
                rep.kill()
        for proxy in proxies:
            proxy.close()

"""Replica sets (issue 13) under many faults: N cycles of a fault each, in turn the leader
killed (SIGKILL) and restarted, a follower killed and restarted, the leader cut off from the
others by a partition (fault-injecting proxies on the Raft traffic) and healed, while writers
upsert and readers read a set of points (registers: a point's payload `v`) through every
replica, reads at `consistency=majority`.

At the end: every replica holds the same points with the same values; a majority read of
every key is added to the history; and the whole history is checked for linearizability
(`bins/router/tests/replication/linearizability.py`). A lost acknowledged write fails that
check (the last read of its key would not see it nor anything written after it).

    data/e2e-venv/bin/python benches/replica_soak.py --router target/release/router --cycles 100

Writes a markdown summary on stdout; exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import random
import sys
import tempfile
import threading
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "bins/router/tests/replication"))

from qdrant_client import QdrantClient, models  # noqa: E402

import harness  # noqa: E402
from harness import (DIM, Proxy, heal, isolate, leader_of, register_step,  # noqa: E402
                     start_set, wait_for)
from linearizability import READ, WRITE, Op, check  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--router", default="target/release/router")
    ap.add_argument("--cycles", type=int, default=100)
    ap.add_argument("--keys", type=int, default=64)
    ap.add_argument("--writers", type=int, default=3)
    ap.add_argument("--readers", type=int, default=2)
    args = ap.parse_args()
    harness.BIN = args.router

    root = pathlib.Path(tempfile.mkdtemp(prefix="replica-soak-"))
    proxies: list[Proxy] = []
    replicas = start_set(root, proxies=proxies)
    history: list[Op] = []
    lock = threading.Lock()
    stop = threading.Event()
    faults = {"leader killed": 0, "follower killed": 0, "leader partitioned": 0}
    not_sent = [0]
    started = time.monotonic()
    try:
        leader_of(replicas).client().create_collection(
            "c", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.DOT))
        wait_for("the collection on every replica",
                 lambda: all(r.client().collection_exists("c") for r in replicas))

        def client_loop(cid: int, writes: bool):
            rng = random.Random(cid)
            clients = {r.rid: QdrantClient(url=r.url, timeout=3) for r in replicas}
            written = 0
            while not stop.is_set():
                target = rng.choice([r for r in replicas if r.alive()])
                key = rng.randrange(args.keys) + 1
                value = None
                if writes:
                    written += 1
                    value = cid * 10_000_000 + written
                op = register_step(clients[target.rid], key, value, cid)
                if op is None:
                    if writes:
                        with lock:
                            not_sent[0] += 1
                    time.sleep(0.05)
                    continue
                with lock:
                    history.append(op)
                if op.ret == math.inf:
                    time.sleep(0.1)

        threads = [threading.Thread(target=client_loop, args=(cid, cid < args.writers))
                   for cid in range(args.writers + args.readers)]
        for t in threads:
            t.start()
        try:
            for cycle in range(args.cycles):
                time.sleep(1.0)
                kind = cycle % 3
                if kind == 0:
                    leader = leader_of(replicas)
                    leader.kill()
                    leader_of([r for r in replicas if r.alive()])
                    time.sleep(0.5)
                    leader.start()
                    faults["leader killed"] += 1
                elif kind == 1:
                    leader = leader_of(replicas)
                    follower = next(r for r in replicas if r is not leader)
                    follower.kill()
                    time.sleep(1.0)
                    follower.start()
                    faults["follower killed"] += 1
                else:
                    old = leader_of(replicas)
                    isolate(old, replicas, proxies)
                    leader_of([o for o in replicas if o is not old])
                    time.sleep(1.0)
                    heal(proxies)
                    faults["leader partitioned"] += 1
                print(f"cycle {cycle + 1}/{args.cycles}: {len(history)} operations",
                      file=sys.stderr, flush=True)
            time.sleep(1.0)
        finally:
            stop.set()
            for t in threads:
                t.join()

        def converged():
            return len({r.status()["applied_index"] for r in replicas}) == 1
        wait_for("replicas to converge", converged, timeout=60)
        states = []
        for r in replicas:
            points, _ = r.client().scroll("c", limit=args.keys + 1, with_payload=True)
            states.append({p.id: p.payload["v"] for p in points})
        equal = states[0] == states[1] == states[2]
        # A last majority read of every key: the state every acknowledged write leads to.
        reader = replicas[0].client()
        for key in range(1, args.keys + 1):
            call = time.monotonic()
            points = reader.retrieve("c", [key], with_payload=True,
                                     consistency=models.ReadConsistencyType.MAJORITY)
            history.append(Op(key, READ, points[0].payload["v"] if points else None, call,
                              time.monotonic(), -1))
        soak_s = time.monotonic() - started
        t0 = time.monotonic()
        results = check(history)
        check_s = time.monotonic() - t0
    finally:
        stop.set()
        for r in replicas:
            if r.alive():
                r.kill()
        for p in proxies:
            p.close()

    done = [op for op in history if op.ret != math.inf]
    bad = sorted(k for k, (ok, _) in results.items() if not ok)
    print("| cycles | faults | writes acknowledged | writes of unknown outcome | "
          "writes never sent | majority reads | replicas equal | keys not linearizable | "
          "search steps (max) | soak | check |")
    print("|---:|---|---:|---:|---:|---:|---|---:|---:|---:|---:|")
    print(f"| {args.cycles} | " + ", ".join(f"{v} {k}" for k, v in faults.items())
          + f" | {sum(op.kind == WRITE for op in done)}"
          f" | {sum(op.ret == math.inf for op in history)} | {not_sent[0]}"
          f" | {sum(op.kind == READ for op in done)} | {'yes' if equal else 'NO'}"
          f" | {len(bad)} of {len(results)}"
          f" | {max((s for _, s in results.values()), default=0)} | {soak_s:.0f} s | {check_s:.1f} s |")
    if bad:
        print(f"not linearizable: keys {bad}", file=sys.stderr)
    return 0 if equal and not bad else 1


if __name__ == "__main__":
    sys.exit(main())

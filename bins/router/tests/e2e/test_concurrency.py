"""Writers and readers at once: disjoint upserts, payload edits and deletes from several
threads while others search. Every call must succeed, counts may only grow while only upserts
run, and the final state must equal the same writes applied one by one to the oracle."""

from __future__ import annotations

import random
import threading

from qdrant_client import models

import data
from conftest import checked_client
from pair import Pair


def test_concurrent_writers_and_readers(remote, oracle, router_url, schema_checker):
    seed = 55
    name = "concurrent"
    pair = Pair(remote, oracle, name)
    pair.create(models.VectorParams(size=6, distance=models.Distance.EUCLID), shard_number=3)
    writers = 4
    per_writer = [data.points(random.Random(seed + w), 240, 6, uuid_share=0.2) for w in range(writers)]
    for w, pts in enumerate(per_writer):
        for p in pts:  # disjoint ids per writer
            if isinstance(p.id, int):
                p.id = p.id * writers + w
    errors: list[str] = []
    stop = threading.Event()

    def write(w: int):
        client = checked_client(router_url, schema_checker)
        rng = random.Random(seed * 100 + w)
        pts = per_writer[w]
        try:
            for start in range(0, len(pts), 30):
                client.upsert(name, points=pts[start:start + 30], wait=True)
            client.set_payload(name, payload={"writer": w}, points=[p.id for p in pts[::3]], wait=True)
            client.delete(name, points_selector=models.PointIdsList(
                points=[p.id for p in rng.sample(pts, 20)]), wait=True)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"writer {w}: {e!r}")
        finally:
            client.close()

    def read(r: int):
        client = checked_client(router_url, schema_checker)
        rng = random.Random(seed * 1000 + r)
        try:
            while not stop.is_set():
                got = client.query_points(name, query=data.vector(rng, 6), limit=5).points
                scores = [p.score for p in got]
                if scores != sorted(scores):
                    errors.append(f"reader {r}: scores out of order {scores}")
                client.count(name, exact=True)
                client.scroll(name, limit=50)
        except Exception as e:  # noqa: BLE001
            errors.append(f"reader {r}: {e!r}")
        finally:
            client.close()

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    readers = [threading.Thread(target=read, args=(r,)) for r in range(2)]
    for t in threads + readers:
        t.start()
    for t in threads:
        t.join(timeout=120)
    stop.set()
    for t in readers:
        t.join(timeout=60)
    assert not errors, "\n".join(errors[:10])

    # The same writes, one by one, on the oracle.
    for w, pts in enumerate(per_writer):
        rng = random.Random(seed * 100 + w)
        oracle.upsert(name, points=pts)
        oracle.set_payload(name, payload={"writer": w}, points=[p.id for p in pts[::3]])
        oracle.delete(name, points_selector=models.PointIdsList(
            points=[p.id for p in rng.sample(pts, 20)]))
    pair.scroll_all(f"seed {seed} after concurrent writes", with_payload=True, with_vectors=True)
    rng = random.Random(seed)
    for i in range(10):
        pair.query(f"seed {seed} query {i}", query=data.vector(rng, 6), limit=10, with_payload=True)
    pair.drop()

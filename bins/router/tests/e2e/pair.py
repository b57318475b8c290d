"""The same call on the router and on the oracle, and the comparison of their answers."""

from __future__ import annotations

import random

from qdrant_client import QdrantClient, models

from compare import check_records, check_scored

# Room the oracle's answer gets past `offset + limit`, so a tie group cut by `limit` on the
# router can be found whole in it.
SPARE = 25


class Pair:
    def __init__(self, remote: QdrantClient, oracle: QdrantClient, name: str):
        self.remote, self.oracle, self.name = remote, oracle, name

    def both(self, method: str, *args, **kwargs):
        r = getattr(self.remote, method)(self.name, *args, **kwargs)
        o = getattr(self.oracle, method)(self.name, *args, **kwargs)
        return r, o

    def create(self, vectors_config, shard_number: int = 1):
        if self.remote.collection_exists(self.name):
            self.remote.delete_collection(self.name)
        assert self.remote.create_collection(self.name, vectors_config=vectors_config,
                                             shard_number=shard_number)
        self.oracle.create_collection(self.name, vectors_config=vectors_config)
        info = self.remote.get_collection(self.name)
        assert info.config.params.vectors == vectors_config, (
            f"vectors config echoed as {info.config.params.vectors}, created with {vectors_config}")
        assert info.config.params.shard_number == shard_number

    def upsert(self, points: list[models.PointStruct], rng: random.Random, batch_size: int = 97):
        """In batches, alternating the list form and the Batch form."""
        for start in range(0, len(points), batch_size):
            chunk = points[start:start + batch_size]
            if rng.random() < 0.5 and _same_vector_names(chunk):
                first = chunk[0].vector
                if isinstance(first, dict):
                    vectors = {n: [p.vector[n] for p in chunk] for n in first}
                else:
                    vectors = [p.vector for p in chunk]
                op = models.Batch(ids=[p.id for p in chunk], vectors=vectors,
                                  payloads=[p.payload for p in chunk])
            else:
                op = chunk
            r, _ = self.both("upsert", points=op, wait=True)
            assert r.status == models.UpdateStatus.COMPLETED, r

    def drop(self):
        assert self.remote.delete_collection(self.name) is True
        self.oracle.delete_collection(self.name)

    # ---- reads, compared ----------------------------------------------------------------------

    def query(self, ctx: str, *, query=None, limit: int = 10, offset: int = 0, **kw):
        r = self.remote.query_points(self.name, query=query, limit=limit, offset=offset, **kw)
        o = self.oracle.query_points(self.name, query=query, limit=limit + offset + SPARE,
                                     offset=0, **kw)
        check_scored(r.points, o.points, offset, limit, ctx)
        return r.points

    def count(self, ctx: str, count_filter=None) -> int:
        r, o = self.both("count", count_filter=count_filter, exact=True)
        assert r.count == o.count, f"{ctx}: count {r.count}, oracle {o.count}"
        return r.count

    def scroll_all(self, ctx: str, page: int = 37, **kw) -> list:
        """Every page, checking each page and its next_page_offset against the oracle's.

        The oracle's pages are cut from one scroll of everything (id order, as every page
        is): asking it page by page filters the whole collection again for each page."""
        everything, rest = self.oracle.scroll(self.name, limit=1_000_000, **kw)
        assert rest is None, f"{ctx}: the oracle holds more than a million points"
        out, offset, pages = [], None, 0
        while True:
            r_points, r_next = self.remote.scroll(self.name, limit=page, offset=offset, **kw)
            start = len(out)
            o_points = everything[start:start + page]
            o_next = everything[start + page].id if start + page < len(everything) else None
            check_records(r_points, o_points, f"{ctx} page {pages}")
            assert r_next == o_next, f"{ctx} page {pages}: next_page_offset {r_next} != {o_next}"
            out.extend(r_points)
            pages += 1
            if r_next is None:
                return out
            offset = r_next
            assert pages < 10_000, f"{ctx}: scroll does not end"

    def retrieve(self, ctx: str, ids: list, **kw):
        r, o = self.both("retrieve", ids=ids, **kw)
        # Qdrant's server answers each id once however often it is asked for (the in-memory
        # client repeats it), and does not promise the order.
        once = list({p.id: p for p in o}.values())
        check_records(r, once, ctx, ordered=False)
        return r


def _same_vector_names(chunk) -> bool:
    names = {tuple(sorted(p.vector)) if isinstance(p.vector, dict) else None for p in chunk}
    return len(names) == 1

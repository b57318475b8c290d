"""The search matrix (`/points/search/matrix/pairs` and `/offsets`) against the oracle.

The sample is random, so answers are compared where they are determined: when the filter
matches no more points than the sample, every matching point is sampled and both answers
must be equal; when it matches more, the router's sample must be distinct matching points
that have the vector, and its matrix must equal the oracle's matrix over exactly those
points (asked with a `has_id` filter). Over many requests every matching point must turn up
in some sample (a sampler that favours some points or some shards would miss one). Points
of equal score come in no promised order (Qdrant promises none), so sampled rows are checked
against the oracle's full rows: the same scores in order, each neighbour with its true score."""

from __future__ import annotations

import random

import httpx
import pytest
from qdrant_client import models

import data
from compare import close
from pair import Pair

NAMED = {"a": models.VectorParams(size=6, distance=models.Distance.EUCLID),
         "b": models.VectorParams(size=5, distance=models.Distance.MANHATTAN)}


def key(pid) -> str:
    return str(pid)


def same_pairs(got, want, ctx: str) -> None:
    assert [(key(p.a), key(p.b)) for p in got.pairs] == \
        [(key(p.a), key(p.b)) for p in want.pairs], ctx
    for g, w in zip(got.pairs, want.pairs):
        assert close(g.score, w.score), (ctx, g, w)


def same_offsets(got, want, ctx: str) -> None:
    assert [key(i) for i in got.ids] == [key(i) for i in want.ids], ctx
    assert got.offsets_row == want.offsets_row, ctx
    assert got.offsets_col == want.offsets_col, ctx
    assert all(close(a, b) for a, b in zip(got.scores, want.scores)), ctx
    assert len(got.scores) == len(want.scores), ctx


def rows_of_pairs(resp) -> dict:
    rows: dict = {}
    for p in resp.pairs:
        rows.setdefault(key(p.a), []).append((key(p.b), p.score))
    return rows


def rows_of_offsets(resp) -> dict:
    rows: dict = {}
    for r, c, score in zip(resp.offsets_row, resp.offsets_col, resp.scores):
        rows.setdefault(key(resp.ids[r]), []).append((key(resp.ids[c]), score))
    return rows


def same_rows_up_to_ties(got: dict, full: dict, limit: int, ctx: str) -> None:
    """Each row holds the `limit` best scores of the oracle's full row, in order, and each
    neighbour with its true score. Points of equal score (vectors have 4 decimals, so L1
    distances tie) may come in any order, and a cut through them may keep any of them."""
    assert set(got) == set(full), ctx
    for a, row in got.items():
        want = full[a]
        assert len(row) == min(limit, len(want)), (ctx, a)
        assert all(close(g[1], w[1]) for g, w in zip(row, want)), (ctx, a, row, want[:limit])
        true = dict(want)
        assert len({b for b, _ in row}) == len(row), (ctx, a)
        assert all(b in true and close(score, true[b]) for b, score in row), (ctx, a, row)


def has_ids(ids) -> models.Filter:
    return models.Filter(must=[models.HasIdCondition(has_id=list(ids))])


def count_below(n: int) -> models.Filter:
    return models.Filter(must=[models.FieldCondition(key="count", range=models.Range(lt=n))])


def make(remote, oracle, name, vectors, shards, rng, n=400) -> tuple[Pair, list]:
    pair = Pair(remote, oracle, name)
    pair.create(vectors, shard_number=shards)
    dims = vectors.size if isinstance(vectors, models.VectorParams) else \
        {k: v.size for k, v in vectors.items()}
    # No exact duplicates: equal scores would leave the order of a row to tie-breaking.
    pts = [p for p in data.points(rng, n, dims, uuid_share=0.3)
           if not isinstance(p.id, int) or p.id < 10_000_000]
    pair.upsert(pts, rng)
    return pair, pts


@pytest.mark.parametrize("distance,shards", [(models.Distance.COSINE, 1),
                                             (models.Distance.DOT, 3),
                                             (models.Distance.EUCLID, 2)])
def test_matrix_of_every_matching_point_equals_the_oracle(remote, oracle, distance, shards):
    rng = random.Random(31 + shards)
    name = f"matrix_all_{distance.value.lower()}_{shards}"
    pair, pts = make(remote, oracle, name, models.VectorParams(size=8, distance=distance),
                     shards, rng)
    for flt, sample, limit in [(count_below(8), 500, 3), (count_below(4), 200, 1),
                               (has_ids([p.id for p in pts[:30]]), 30, 29),
                               (has_ids([pts[0].id]), 10, 3),  # one point: no matrix
                               (count_below(-50), 10, 3)]:
        matched = remote.count(name, count_filter=flt, exact=True).count
        assert matched <= sample
        ctx = f"{name} matched={matched} limit={limit}"
        r, o = pair.both("search_matrix_pairs", query_filter=flt, sample=sample, limit=limit)
        same_pairs(r, o, ctx)
        if matched >= 2:
            assert len(r.pairs) == matched * min(limit, matched - 1), ctx
        else:
            assert r.pairs == [], ctx
        r, o = pair.both("search_matrix_offsets", query_filter=flt, sample=sample, limit=limit)
        same_offsets(r, o, ctx)
    pair.drop()


@pytest.mark.parametrize("shards", [1, 3])
def test_sampled_matrix_equals_the_oracle_over_the_same_points(remote, oracle, shards):
    rng = random.Random(77 + shards)
    name = f"matrix_named_{shards}"
    pair, pts = make(remote, oracle, name, NAMED, shards, rng)
    flt = count_below(50)
    for using in ["a", "b"]:
        # What the filter and the vector let through, by the oracle.
        want_eligible = {key(r.id) for r in oracle.scroll(name, scroll_filter=models.Filter(
            must=[flt, models.HasVectorCondition(has_vector=using)]), limit=10_000)[0]}
        assert len(want_eligible) > 60, "the filter must match more points than a sample"
        seen_using = set()
        for round_ in range(150 if using == "a" else 20):
            sample, limit = rng.choice([(10, 3), (25, 5), (40, 1)])
            r = remote.search_matrix_offsets(name, query_filter=flt, sample=sample,
                                             limit=limit, using=using)
            ids = [key(i) for i in r.ids]
            ctx = f"{name} using={using} round={round_}"
            assert len(ids) == sample and len(set(ids)) == sample, ctx
            assert set(ids) <= want_eligible, ctx
            assert ids == [key(i) for i in sorted(r.ids, key=lambda i: (
                isinstance(i, str), i if isinstance(i, str) else int(i)))], "ids in id order"
            seen_using |= set(ids)
            if round_ < 10:
                # The oracle's full rows over exactly the sampled points.
                o = oracle.search_matrix_pairs(name, query_filter=has_ids(r.ids),
                                               sample=sample, limit=sample - 1, using=using)
                same_rows_up_to_ties(rows_of_offsets(r), rows_of_pairs(o), limit, ctx)
                rp = remote.search_matrix_pairs(name, query_filter=flt, sample=sample,
                                                limit=limit, using=using)
                op = oracle.search_matrix_pairs(
                    name, query_filter=has_ids(list({key(p.a): p.a for p in rp.pairs}.values())),
                    sample=sample, limit=sample - 1, using=using)
                same_rows_up_to_ties(rows_of_pairs(rp), rows_of_pairs(op), limit,
                                     ctx + " pairs")
        if using == "a":
            # 150 samples of 10 to 40 of about 250 points: a uniform sampler misses a given
            # point every time with probability about e^-16; one that favours a shard or the
            # low ids misses many.
            missed = want_eligible - seen_using
            assert not missed, f"{len(missed)} of {len(want_eligible)} points never sampled"
    pair.drop()


def test_matrix_bad_input(remote, router_url):
    name = "matrix_bad"
    if remote.collection_exists(name):
        remote.delete_collection(name)
    remote.create_collection(name, vectors_config=models.VectorParams(
        size=3, distance=models.Distance.DOT))
    with httpx.Client(base_url=router_url, timeout=30) as http:
        for path in ["pairs", "offsets"]:
            url = f"/collections/{name}/points/search/matrix/{path}"
            for body, needle in [({"sample": 1}, "sample"), ({"limit": 0}, "limit"),
                                 ({"sample": 10_001}, "sample"), ({"using": "x"}, "x"),
                                 ({"samples": 3}, "unknown field"),
                                 ({"filter": {"must": [{"key": "a"}]}}, "filter")]:
                r = http.post(url, json=body)
                assert r.status_code == 400, (body, r.text)
                assert needle in r.json()["status"]["error"], (needle, r.text)
            r = http.post(f"/collections/matrix_missing/points/search/matrix/{path}", json={})
            assert r.status_code == 404, r.text
            r = http.post(url, json={})
            assert r.status_code == 200 and r.json()["result"] in (
                {"pairs": []}, {"ids": [], "offsets_row": [], "offsets_col": [], "scores": []})
    remote.delete_collection(name)

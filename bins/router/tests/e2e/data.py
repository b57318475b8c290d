"""Seeded points with nested payloads, and seeded random filters of every condition kind."""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta, timezone

from qdrant_client import models

CITIES = ["Berlin", "Paris", "Rome", "Oslo", "Lima", "Kyiv", "Quito"]
WORDS = ["red", "green", "blue", "fast", "slow", "vector", "search", "river", "stone", "cloud"]
NAMES = ["alpha", "beta", "gamma", "delta"]
BASE_TIME = datetime(2024, 1, 1, tzinfo=timezone.utc)


def point_id(rng: random.Random, i: int, uuid_share: float):
    """Integer ids spread out (not 0..n), or a UUID in a random spelling."""
    if rng.random() < uuid_share:
        u = uuid.UUID(int=rng.getrandbits(128))
        # Any spelling is accepted; answers carry the lowercase hyphenated one.
        return rng.choice([str(u), str(u), str(u).upper(), u.hex, "{" + str(u) + "}"])
    return i * 7 + rng.randrange(7)


def payload(rng: random.Random, i: int) -> dict:
    p: dict = {
        "city": rng.choice(CITIES),
        "count": rng.randrange(-50, 100),
        "price": round(rng.uniform(0, 1000), 3),
        # full precision over the whole exponent range: must come back bit for bit
        "f": rng.choice([-1, 1]) * rng.random() * 10.0 ** rng.randrange(-300, 300),
        "flag": rng.random() < 0.5,
        "text": rng.choice(["", "!", " ", ", "]).join(
            rng.choice([w, w.upper(), w.capitalize()]) for w in
            (rng.choice(WORDS) for _ in range(rng.randrange(1, 6)))),
        "loc": {"lat": round(rng.uniform(-60, 60), 5), "lon": round(rng.uniform(-170, 170), 5)},
        "ts": timestamp(rng),
        "locs": [{"lat": round(rng.uniform(-60, 60), 4), "lon": round(rng.uniform(-170, 170), 4)}
                 for _ in range(rng.randrange(0, 3))],
        "big": rng.choice([2**62 + rng.randrange(1000), -(2**40), 0]),
        "uni": rng.choice(["žluťoučký kůň", "🐍 snake", "日本語", "a\"quote\\", ""]),
        "empty": rng.choice([{}, [], [{}]]),
        "nested": {"id": i, "name": rng.choice(NAMES), "deep": {"x": rng.randrange(0, 20)}},
        "items": [{"a": rng.randrange(0, 10), "b": rng.choice(NAMES)}
                  for _ in range(rng.randrange(0, 4))],
        "nums": [rng.randrange(0, 30) for _ in range(rng.randrange(0, 5))],
    }
    if rng.random() < 0.7:
        p["tags"] = rng.sample(WORDS, rng.randrange(0, 4))
    # "maybe" is missing, null, empty, a list holding null, or a value.
    r = rng.random()
    if r < 0.2:
        p["maybe"] = None
    elif r < 0.4:
        p["maybe"] = []
    elif r < 0.5:
        p["maybe"] = [None, 1]
    elif r < 0.8:
        p["maybe"] = rng.randrange(0, 3)
    if rng.random() < 0.2:
        del p["city"]
    return p


def timestamp(rng: random.Random) -> str:
    """RFC 3339 in the spellings clients send: Z, an offset, fractions, a space, a date."""
    t = BASE_TIME + timedelta(seconds=rng.randrange(0, 3600 * 24 * 365))
    form = rng.randrange(5)
    if form == 0:
        return t.strftime("%Y-%m-%dT%H:%M:%SZ")
    if form == 1:
        tz = timezone(timedelta(hours=rng.choice([-7, 3, 5])))
        return t.astimezone(tz).isoformat()
    if form == 2:
        return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{rng.randrange(1000):03d}Z"
    if form == 3:
        return t.strftime("%Y-%m-%d %H:%M:%S")
    return t.strftime("%Y-%m-%d")


def vector(rng: random.Random, dim: int) -> list[float]:
    return [round(rng.uniform(-1, 1), 4) for _ in range(dim)]


def points(rng: random.Random, n: int, vectors: dict[str, int] | int, uuid_share=0.3,
           missing_named_share=0.15) -> list[models.PointStruct]:
    """`vectors` is a dimension (the unnamed vector) or {name: dimension}. With named vectors
    some points lack one of them, to test has_vector and searches `using` a name."""
    out, seen = [], set()
    for i in range(n):
        pid = point_id(rng, i, uuid_share)
        if pid in seen:
            continue
        seen.add(pid)
        if isinstance(vectors, int):
            v = vector(rng, vectors)
        else:
            v = {name: vector(rng, d) for name, d in vectors.items()}
            if len(v) > 1 and rng.random() < missing_named_share:
                del v[rng.choice(sorted(v))]
        out.append(models.PointStruct(id=pid, vector=v, payload=payload(rng, i)))
    # Exact duplicates of a few vectors make ties in score, which must be compared as sets.
    for k in range(3):
        src = out[rng.randrange(len(out))]
        out.append(models.PointStruct(id=10_000_000 + k, vector=src.vector,
                                      payload=payload(rng, 10_000_000 + k)))
    return out


# ---- filters ---------------------------------------------------------------------------------


def _range(rng, lo, hi, integer=True):
    def val():
        return rng.randrange(lo, hi) if integer else round(rng.uniform(lo, hi), 2)
    kinds = rng.sample(["lt", "lte", "gt", "gte"], rng.randrange(1, 3))
    return models.Range(**{k: val() for k in kinds})


def _datetime_range(rng):
    def val():
        t = BASE_TIME + timedelta(minutes=rng.randrange(0, 60 * 24 * 365))
        # a naive datetime (UTC assumed), an aware one with an offset, or a date
        f = rng.random()
        if f < 0.3:
            return t.replace(tzinfo=None)
        if f < 0.6:
            return t.astimezone(timezone(timedelta(hours=rng.choice([-5, 2, 9]))))
        return t
    kinds = rng.sample(["lt", "lte", "gt", "gte"], rng.randrange(1, 3))
    return models.DatetimeRange(**{k: val() for k in kinds})


def _geo_point(rng):
    return models.GeoPoint(lat=round(rng.uniform(-55, 55), 3), lon=round(rng.uniform(-160, 160), 3))


def field_condition(rng: random.Random, ids: list) -> models.Condition:
    kind = rng.randrange(22)
    FC = models.FieldCondition
    if kind == 0:
        return FC(key="city", match=models.MatchValue(value=rng.choice(CITIES)))
    if kind == 1:
        return FC(key="count", match=models.MatchValue(value=rng.randrange(-50, 100)))
    if kind == 2:
        return FC(key="flag", match=models.MatchValue(value=rng.random() < 0.5))
    if kind == 3:
        return FC(key=rng.choice(["tags", "tags[]"]),
                  match=models.MatchAny(any=rng.sample(WORDS, rng.randrange(1, 4))))
    if kind == 4:
        return FC(key=rng.choice(["city", "nested.name"]),
                  match=models.MatchExcept(**{"except": rng.sample(CITIES + NAMES, 3)}))
    if kind == 5:
        return FC(key="text", match=models.MatchText(text=" ".join(rng.sample(WORDS, rng.randrange(1, 3)))))
    if kind == 6:
        return FC(key="text", match=models.MatchTextAny(text_any=" ".join(rng.sample(WORDS, 2))))
    if kind == 7:
        return FC(key=rng.choice(["count", "nested.deep.x", "nums", "nums[]", "items[].a",
                                  "nums[0]", "items[1].a", "big"]),
                  range=_range(rng, -10, 60))
    if kind == 8:
        return FC(key=rng.choice(["price", "f"]), range=_range(rng, 0, 1000, integer=False))
    if kind == 9:
        return FC(key="ts", range=_datetime_range(rng))
    if kind == 10:
        a, b = _geo_point(rng), _geo_point(rng)
        return FC(key=rng.choice(["loc", "locs", "locs[]"]), geo_bounding_box=models.GeoBoundingBox(
            top_left=models.GeoPoint(lat=max(a.lat, b.lat), lon=min(a.lon, b.lon)),
            bottom_right=models.GeoPoint(lat=min(a.lat, b.lat), lon=max(a.lon, b.lon))))
    if kind == 11:
        return FC(key=rng.choice(["loc", "locs"]), geo_radius=models.GeoRadius(
            center=_geo_point(rng), radius=rng.uniform(100_000, 4_000_000)))
    if kind == 12:
        c, r = _geo_point(rng), rng.uniform(5, 19)
        ring = [models.GeoPoint(lat=max(-89, min(89, c.lat + dy)), lon=max(-180, min(180, c.lon + dx)))
                for dx, dy in [(-r, -r), (r, -r), (r, r), (-r, r), (-r, -r)]]
        interiors = None
        if rng.random() < 0.4:
            s = r / 3
            interiors = [models.GeoLineString(points=[
                models.GeoPoint(lat=c.lat + dy, lon=c.lon + dx)
                for dx, dy in [(-s, -s), (s, -s), (s, s), (-s, s), (-s, -s)]])]
        return FC(key="loc", geo_polygon=models.GeoPolygon(
            exterior=models.GeoLineString(points=ring), interiors=interiors))
    if kind == 13:
        return FC(key=rng.choice(["tags", "nums", "items"]), values_count=models.ValuesCount(
            **{k: rng.randrange(0, 5) for k in rng.sample(["lt", "lte", "gt", "gte"], rng.randrange(1, 3))}))
    if kind == 14:
        return models.IsEmptyCondition(is_empty=models.PayloadField(
            key=rng.choice(["maybe", "tags", "city", "nums", "absent", "empty", "items[].a",
                            "nested.absent", "locs"])))
    if kind == 15:
        return models.IsNullCondition(is_null=models.PayloadField(
            key=rng.choice(["maybe", "tags", "city", "absent", "maybe[]", "empty"])))
    if kind == 16:
        chosen = rng.sample(ids, min(len(ids), rng.randrange(1, 30)))
        return models.HasIdCondition(has_id=[
            i.upper() if isinstance(i, str) and rng.random() < 0.3 else i for i in chosen])
    if kind == 17:
        return models.NestedCondition(nested=models.Nested(
            key=rng.choice(["items", "items[]"]), filter=models.Filter(must=[
                FC(key="a", range=_range(rng, 0, 10)),
                FC(key="b", match=models.MatchValue(value=rng.choice(NAMES)))][:rng.randrange(1, 3)])))
    if kind == 18:
        return FC(key=rng.choice(["items[].b", "items[0].b"]),
                  match=models.MatchValue(value=rng.choice(NAMES)))
    if kind == 19:
        return FC(key="nested.deep.x", match=models.MatchAny(any=rng.sample(range(20), 5)))
    if kind == 20:
        return FC(key="maybe", match=models.MatchValue(value=rng.randrange(0, 3)))
    return FC(key="nums[]", match=models.MatchExcept(**{"except": rng.sample(range(30), 10)}))


def random_filter(rng: random.Random, ids: list, depth: int = 0,
                  vector_names: list[str] | None = None) -> models.Filter:
    def condition():
        if depth < 2 and rng.random() < 0.12:
            return random_filter(rng, ids, depth + 1, vector_names)
        if vector_names and rng.random() < 0.08:
            return models.HasVectorCondition(has_vector=rng.choice(vector_names))
        return field_condition(rng, ids)

    def clause():
        n = rng.randrange(1, 4)
        conds = [condition() for _ in range(n)]
        # a clause may be one condition rather than a list
        return conds[0] if n == 1 and rng.random() < 0.5 else conds

    f = {}
    for name in rng.sample(["must", "should", "must_not"], rng.randrange(1, 3)):
        f[name] = clause()
    if rng.random() < 0.15:
        conds = [condition() for _ in range(rng.randrange(1, 4))]
        f["min_should"] = models.MinShould(conditions=conds, min_count=rng.randrange(1, len(conds) + 1))
    return models.Filter(**f)

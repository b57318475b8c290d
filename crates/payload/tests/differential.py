#!/usr/bin/env python3
"""Differential test of the `payload` crate against qdrant-client's in-memory mode.

Generates random payloads (nested objects, arrays, numbers, strings, booleans, nulls, geo
points, datetimes, UUIDs) and random filters of every condition kind, evaluates each pair with
`qdrant_client.local.payload_filters.check_filter` and with the crate's `eval_filters` example,
and compares. It does the same for payload selectors (`with_payload`), `set_payload` (with and
without `key`) and `delete_payload`. Finally it checks that filters the server rejects are
rejected by the crate too.

Run from the workspace root, with qdrant-client==1.20.0 in the interpreter's environment:

    cargo build --release -p payload --example eval_filters
    data/e2e-venv/bin/python crates/payload/tests/differential.py --cases 4000 --seed 1

Exit status 0 when every answer agrees, 1 otherwise (the first disagreements are printed with
their inputs).
"""

import argparse
import copy
import json
import random
import subprocess
import sys
import uuid
from pathlib import Path

from qdrant_client.http import models
from qdrant_client.local.json_path_parser import parse_json_path
from qdrant_client.local.local_collection import LocalCollection
from qdrant_client.local.payload_filters import check_filter, validate_filter
from qdrant_client.local.payload_value_extractor import value_by_key
from qdrant_client.local.payload_value_setter import (
    delete_value_by_key,
    merge_payload,
    set_value_by_key,
)

ROOT = Path(__file__).resolve().parents[3]
BINARY = ROOT / "target" / "release" / "examples" / "eval_filters"

WORDS = ["red", "Green", "blue", "hello", "world", "wide", "été", "über", "42", "foo_bar", "x"]
STRINGS = ["red", "green", "blue", "Red", "", "hello world", "Hello, wide World!", "foo_bar",
           "été à la plage", "über alles", "42", "red green", "blue-red", "prefix_suffix"]
VECTOR_NAMES = ["", "image", "text"]
UUIDS = [str(uuid.UUID(int=random.Random(i).getrandbits(128))) for i in range(4)]
DATETIMES = [
    "2021-03-04T05:06:07Z", "2021-03-04", "2021-03-04 05:06:07+01:00", "2021-03-04T05:06:07.5",
    "2021-03-04T05:06:07.123456789Z", "2021-03-04T05:06", "2021-03-04T05:06:07 +0100",
    "2021-03-04T05:06:07+01", "2021-03-04T05:06:07 UTC", "2021-3-4T5:6:7", "2020-02-29T23:59:59-05:00",
    "2021-02-30", "yesterday", "2021-03-04T25:00:00", "  2022-01-01T00:00:00z", "1999-12-31T23:59:59.999999",
    "2021-03-04t05:06:07", "2021-03-04T05:06:07+05:30", "2021-03-04T05:06:07.1+0530",
]
DATETIME_BOUNDS = ["2021-03-04T05:06:07Z", "2021-03-04", "2021-03-04T06:00:00+01:00",
                   "2021-03-04T05:06:07.5", "2020-01-01", "2022-01-01T00:00:00Z", "2021-03-04T05:06"]
PATHS = ["a", "b", "n", "n[]", "n[0]", "s", "t", "g", "g[]", "d", "obj.x", "obj.z.w", "obj.y[1]",
         "arr[].x", "arr[0].x", "arr[].s", "arr[].inner[].v", "arr[].g", "u", "missing", '"weird.key"',
         "obj", "arr", "arr[]", "n[][]"]
AFFINITY = {
    "match": ["a", "s", "s", "t", "n", "n[]", "u", "obj.x", "arr[].x", "arr[].s", "x", "s", "v"],
    "range": ["n", "n[]", "n[0]", "obj.x", "arr[].x", "arr[].inner[].v", "x", "v", "inner[].v"],
    "dtrange": ["d", "d", "a", "b"],
    "geo_radius": ["g", "g[]", "arr[].g", "g"],
    "geo_bounding_box": ["g", "g[]", "arr[].g", "g"],
    "geo_polygon": ["g", "g[]", "arr[].g", "g"],
    "values_count": [],
    "is_empty": [],
    "is_null": [],
}
NESTED_KEYS = ["arr", "arr[]", "obj", "n", "arr[].inner", "arr[0].inner"]
INNER_PATHS = ["x", "s", "g", "v", "inner[].v", "missing", "x[]"]


class Gen:
    def __init__(self, rng: random.Random):
        self.r = rng
        self.current_payload = None

    # --- payloads -------------------------------------------------------------------------

    def number(self):
        r = self.r
        kind = r.random()
        if kind < 0.45:
            return r.randint(-3, 12)
        if kind < 0.85:
            return round(r.uniform(-3, 12), r.choice([0, 1, 2]))
        return r.choice([2**53 + 1, -(2**63), 2**63 - 1, 2**64 - 1, 1.0, 0.0, -0.0, 1e-7, 5.0])

    def geo(self):
        r = self.r
        if r.random() < 0.15:
            return {"lat": r.randint(-5, 5), "lon": r.randint(-5, 5)}
        point = {"lat": round(r.uniform(-10, 10), 4), "lon": round(r.uniform(-10, 10), 4)}
        if r.random() < 0.1:
            point = {"lat": point["lat"]}
        if r.random() < 0.05:
            point["lat"] = "1.0"
        if r.random() < 0.05:
            point["lat"] = True
        return point

    def datetime(self):
        """A datetime string from the list, or composed of random parts, valid or not."""
        r = self.r
        if r.random() < 0.5:
            return r.choice(DATETIMES)
        digits = lambda lo, hi, width: str(r.randint(lo, hi)).zfill(r.choice([1, width, width]))
        out = r.choice(["", "", " "]) + r.choice(["2021", "2020", "1999", "0000", "999"]) + "-"
        out += digits(0, 13, 2) + "-" + digits(0, 32, 2)
        if r.random() < 0.8:
            out += r.choice(["T", "T", "t", " ", "  ", "_"]) + digits(0, 24, 2) + ":" + digits(0, 60, 2)
            if r.random() < 0.8:
                out += ":" + digits(0, 61, 2)
                if r.random() < 0.4:
                    out += "." + "".join(r.choice("0123456789") for _ in range(r.randint(0, 9)))
        out += r.choice(["", "", "Z", "z", "+01:00", "-0530", "+01", "-11", " +02:00", " UTC", "+24:00",
                         "+01:0030", "+05:30:15", "+0100:30", " ", "x"])
        return out

    def scalar(self):
        r = self.r
        return r.choice([
            lambda: self.number(),
            lambda: self.string(),
            lambda: r.choice([True, False]),
            lambda: None,
            lambda: self.datetime(),
            lambda: r.choice(UUIDS).upper() if r.random() < 0.3 else r.choice(UUIDS),
        ])()

    def value(self, depth=0):
        r = self.r
        x = r.random()
        if depth < 3 and x < 0.2:
            return [self.value(depth + 1) for _ in range(r.randint(0, 3))]
        if depth < 3 and x < 0.3:
            return {k: self.value(depth + 1) for k in r.sample(["x", "y", "v", "s"], r.randint(0, 3))}
        if x < 0.38:
            return self.geo()
        return self.scalar()

    def some(self, make, list_p=0.4, max_len=4):
        if self.r.random() < list_p:
            return [make() for _ in range(self.r.randint(0, max_len))]
        return make()

    def element(self, depth):
        r = self.r
        el = {}
        for key, make in [
            ("x", lambda: self.some(self.number_or_string)),
            ("s", lambda: self.some(self.string)),
            ("g", self.geo),
            ("v", lambda: self.some(self.number)),
        ]:
            if r.random() < 0.7:
                el[key] = make() if r.random() < 0.85 else self.value(2)
        if depth < 2 and r.random() < 0.5:
            el["inner"] = [self.element(depth + 1) for _ in range(r.randint(0, 3))]
        return el

    def number_or_string(self):
        return self.number() if self.r.random() < 0.6 else self.string()

    def string(self):
        # Often one of a few, so that exact matches hold now and then.
        return self.r.choice(STRINGS[:4] if self.r.random() < 0.6 else STRINGS)

    def payload(self):
        r = self.r
        makers = {
            "a": lambda: self.some(self.scalar),
            "b": lambda: self.value(),
            "n": lambda: self.some(self.number, list_p=0.5)
            if r.random() < 0.9 else [[self.number(), self.number()], self.number()],
            "s": lambda: self.some(self.string),
            "t": lambda: self.some(lambda: " ".join(r.choice(WORDS) for _ in range(r.randint(0, 5)))),
            "g": lambda: self.some(self.geo, list_p=0.3, max_len=3),
            "d": lambda: self.some(self.datetime, list_p=0.3),
            "obj": lambda: {"x": self.some(self.number_or_string), "y": self.value(1),
                            "z": {"w": self.some(self.scalar)}} if r.random() < 0.85 else self.value(),
            "arr": lambda: [self.element(0) if r.random() < 0.9 else self.value(2)
                            for _ in range(r.randint(0, 4))] if r.random() < 0.9 else self.value(),
            "u": lambda: r.choice(UUIDS + [u.upper() for u in UUIDS] + ["not-a-uuid"]),
            "weird.key": lambda: self.scalar(),
        }
        out = {}
        for key, make in makers.items():
            if r.random() < 0.65:
                out[key] = make() if r.random() < 0.9 else r.choice([None, [], [None], {}])
        return out

    def point_id(self):
        r = self.r
        if r.random() < 0.6:
            return r.randint(0, 15)
        return r.choice(UUIDS)

    # --- filters --------------------------------------------------------------------------

    def present_values(self, key):
        """Strings and integers the current payload holds at `key`, to build conditions that hold."""
        try:
            values = value_by_key(self.current_payload or {}, key) or []
        except ValueError:
            return []
        return [v for v in values if isinstance(v, str) or (type(v) is int and -(2**63) <= v < 2**63)]

    def match(self, key):
        r = self.r
        kind = r.choice(["value", "value", "any", "except", "text", "text_any", "phrase", "prefix", "substring"])
        present = self.present_values(key)
        if present and r.random() < 0.5:
            v = r.choice(present)
            if kind in ("any", "except"):
                same_type = [x for x in present if type(x) is type(v)]
                return {kind: list({*r.sample(same_type, min(len(same_type), r.randint(1, 2))), v})}
            if isinstance(v, str) and kind in ("text", "text_any", "phrase", "prefix", "substring"):
                words = v.split()
                if kind in ("prefix", "substring"):
                    start = 0 if kind == "prefix" else r.randint(0, len(v))
                    return {kind: v[start:start + r.randint(0, 4)]}
                if words:
                    i = r.randrange(len(words))
                    return {kind: " ".join(words[i:i + r.randint(1, 2)])}
            return {"value": v}
        # Values of the type the path mostly holds, half the time.
        typed = r.random() < 0.5
        numeric = key in ("n", "n[]", "obj.x", "arr[].x", "x", "v")
        if kind == "value":
            if typed:
                return {"value": r.randint(-3, 12) if numeric else r.choice(STRINGS[:5])}
            return {"value": r.choice([r.randint(-3, 12), r.choice(STRINGS), r.choice([True, False]),
                                       r.choice(UUIDS), 2**53 + 1, -(2**63)])}
        if kind in ("any", "except"):
            if (typed and numeric) or (not typed and r.random() < 0.5):
                values = list({r.randint(-3, 12) for _ in range(r.randint(0, 4))})
            else:
                values = list({r.choice(STRINGS) for _ in range(r.randint(0, 4))})
            return {kind: values}
        if kind in ("text", "text_any", "phrase"):
            return {kind: " ".join(r.choice(WORDS) for _ in range(r.randint(0, 3)))}
        return {kind: r.choice(["", "r", "re", "Re", "hello", "blue-", "_", "été", "x", "42"])}

    def bounds(self, make):
        out = {}
        for name in ["lt", "gt", "gte", "lte"]:
            if self.r.random() < 0.4:
                out[name] = make()
        return out

    def geo_point(self):
        return {"lat": round(self.r.uniform(-10, 10), 3), "lon": round(self.r.uniform(-10, 10), 3)}

    def ring(self, lat0, lon0, size):
        r = self.r
        pts = [(lat0, lon0), (lat0 + size * r.uniform(0.5, 1.5), lon0),
               (lat0 + size, lon0 + size * r.uniform(0.5, 1.5)), (lat0, lon0 + size)]
        if r.random() < 0.5:
            pts.reverse()
        ring = [{"lat": round(a, 3), "lon": round(b, 3)} for a, b in pts]
        return {"points": ring + [ring[0]]}

    def field_condition(self, paths):
        r = self.r
        kind = r.choice(["match", "match", "match", "range", "dtrange", "geo_radius", "geo_bounding_box",
                         "geo_polygon", "values_count", "is_empty", "is_null"])
        # Mostly a path that holds values of the kind the condition reads, so conditions hold
        # often enough to test both outcomes; sometimes any path.
        likely = [p for p in AFFINITY[kind] if p in paths]
        key = r.choice(likely) if likely and r.random() < 0.75 else r.choice(paths)
        if kind == "match":
            match = self.match(key)
            if key in ("t", "s") and r.random() < 0.5:
                match = {r.choice(["text", "text_any", "phrase"]): " ".join(
                    r.choice(WORDS) for _ in range(r.randint(1, 2)))}
            return {"key": key, "match": match}
        if kind == "range":
            return {"key": key, "range": self.bounds(lambda: r.choice(
                [r.randint(-3, 12), round(r.uniform(-3, 12), 2), 2**53])) }
        if kind == "dtrange":
            b = self.bounds(lambda: r.choice(DATETIME_BOUNDS))
            if not b:
                b = {"gte": r.choice(DATETIME_BOUNDS)}
            return {"key": key, "range": b}
        if kind == "geo_radius":
            return {"key": key, "geo_radius": {"center": self.geo_point(),
                                                "radius": r.choice([0.0, 1e5, 5e5, 1e6, 2e6])}}
        if kind == "geo_bounding_box":
            a, b = self.geo_point(), self.geo_point()
            top_left = {"lat": max(a["lat"], b["lat"]), "lon": min(a["lon"], b["lon"])}
            bottom_right = {"lat": min(a["lat"], b["lat"]), "lon": max(a["lon"], b["lon"])}
            if r.random() < 0.2:  # crosses the antimeridian
                top_left["lon"], bottom_right["lon"] = bottom_right["lon"], top_left["lon"]
            return {"key": key, "geo_bounding_box": {"top_left": top_left, "bottom_right": bottom_right}}
        if kind == "geo_polygon":
            lat0, lon0 = r.uniform(-10, 0), r.uniform(-10, 0)
            size = r.uniform(3, 12)
            polygon = {"exterior": self.ring(lat0, lon0, size)}
            if r.random() < 0.4:
                polygon["interiors"] = [self.ring(lat0 + size / 4, lon0 + size / 4, size / 3)]
            return {"key": key, "geo_polygon": polygon}
        if kind == "values_count":
            return {"key": key, "values_count": self.bounds(lambda: r.randint(0, 4))}
        flag = r.random() < 0.7
        if r.random() < 0.5:
            return {kind: {"key": key}} if flag else {"key": key, kind: r.choice([True, False])}
        return {"key": key, kind: r.choice([True, False])}

    def condition(self, depth, paths, nested):
        r = self.r
        x = r.random()
        if depth < 3 and x < 0.08:
            return self.filter(depth + 1, paths, nested)
        if depth < 3 and x < 0.18:
            key = r.choice(NESTED_KEYS)
            return {"nested": {"key": key, "filter": self.filter(depth + 1, INNER_PATHS, True)}}
        if x < 0.25:
            ids = [self.point_id() for _ in range(r.randint(0, 4))]
            ids = [i.upper() if isinstance(i, str) and r.random() < 0.3 else i for i in ids]
            ids = [i.replace("-", "") if isinstance(i, str) and r.random() < 0.2 else i for i in ids]
            return {"has_id": ids}
        if x < 0.29:
            return {"has_vector": r.choice(VECTOR_NAMES)}
        if x < 0.32:
            total = r.randint(1, 4)
            return {"slice": {"total": total, "index": r.randrange(total)}}
        return self.field_condition(paths)

    def clause(self, depth, paths, nested):
        if self.r.random() < 0.3:
            return self.condition(depth, paths, nested)
        return [self.condition(depth, paths, nested) for _ in range(self.r.randint(0, 3))]

    def filter(self, depth=0, paths=PATHS, nested=False):
        r = self.r
        f = {}
        for name in ["must", "should", "must_not"]:
            if r.random() < 0.5:
                f[name] = self.clause(depth, paths, nested)
        if r.random() < 0.15:
            conditions = [self.condition(depth, paths, nested) for _ in range(r.randint(0, 4))]
            f["min_should"] = {"conditions": conditions, "min_count": r.randint(1, 3)}
        return f

    # --- selectors and writes -------------------------------------------------------------

    def selector_keys(self):
        r = self.r
        keys = ["a", "b", "obj.x", "obj.z", "obj.z.w", "arr[].x", "arr[].inner[].v", "arr", "arr[0]",
                "n[]", "n", '"weird.key"', "missing.deep", "arr[].inner", "obj.y[]", "g.lat"]
        return [r.choice(keys) for _ in range(r.randint(0, 4))]

    def with_payload(self):
        r = self.r
        x = r.random()
        if x < 0.1:
            return r.choice([True, False])
        if x < 0.4:
            return self.selector_keys()
        if x < 0.7:
            return {"include": self.selector_keys()}
        return {"exclude": self.selector_keys()}

    def new_payload(self):
        r = self.r
        return {k: (None if r.random() < 0.2 else self.value(1)) for k in r.sample(["a", "x", "n", "new", "s"],
                                                                                   r.randint(0, 3))}

    def set_key(self):
        return self.r.choice([None, None, "a", "obj", "obj.z", "obj.x", "arr[]", "arr[0]", "arr[5]", "arr[].inner",
                              "arr[].inner[0]", "n[0]", "fresh.deep", "s[]", "obj.z.w[]", '"weird.key".q'])

    def delete_keys(self):
        keys = ["a", "obj.x", "obj.z.w", "arr[].x", "arr[0].s", "arr[]", "n[0]", "n[]", "missing", "arr[].inner[].v",
                '"weird.key"', "obj", "g.lat", "arr[].inner"]
        return [self.r.choice(keys) for _ in range(self.r.randint(0, 3))]


def normalized_id(point_id):
    return point_id if isinstance(point_id, int) else str(uuid.UUID(point_id))


def python_filter(case):
    try:
        f = models.Filter.model_validate(case["filter"])
        validate_filter(f)
        has_vector = {name: True for name in case.get("vectors", [])}
        return "true" if check_filter(f, case["payload"] or {}, normalized_id(case["id"]), has_vector) else "false"
    except Exception as exc:  # pydantic.ValidationError, ValueError from the path parser
        return f"error: {type(exc).__name__}"


def python_op(case):
    op = case["op"]
    payload = copy.deepcopy(case["payload"])
    if op == "select":
        wp = case["with_payload"]
        if isinstance(wp, dict):
            wp = (models.PayloadSelectorInclude if "include" in wp else models.PayloadSelectorExclude)(**wp)
        return LocalCollection._process_payload(payload, wp)
    if op == "set":
        new = copy.deepcopy(case["new"])
        if case.get("key") is None:
            return merge_payload(payload, new)
        set_value_by_key(payload=payload, value=new, keys=parse_json_path(case["key"]))
        return payload
    if op == "delete":
        for key in case["keys"]:
            delete_value_by_key(payload, parse_json_path(key))
        return payload
    raise ValueError(op)


def strict_equal(a, b):
    """JSON equality that keeps booleans, integers and floats apart (Python's == does not)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(strict_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(strict_equal(x, y) for x, y in zip(a, b))
    return a == b


# Filters the server rejects; the crate must reject them all.
INVALID_FILTERS = [
    {"must": [{"key": "a", "match": {"valeu": 1}}]},
    {"must": [{"key": "a", "match": {"value": 1.5}}]},
    {"must": [{"key": "a", "match": {"any": ["x", 1]}}]},
    {"must": [{"key": "a", "match": {"any": [True]}}]},
    {"must": [{"key": "a", "match": {}}]},
    {"must": [{"key": "a"}]},
    {"must": [{"key": "a..b", "match": {"value": 1}}]},
    {"must": [{"key": "a[x]", "match": {"value": 1}}]},
    {"must": [{"key": "", "match": {"value": 1}}]},
    {"must": [{"key": "a", "range": {"gt": "not a date"}}]},
    {"must": [{"key": "a", "range": {"gt": 1, "lt": "2021-01-01"}}]},
    {"must": [{"key": "a", "range": {"gt": True}}]},
    {"must": [{"key": "a", "range": {"between": 1}}]},
    {"must": [{"key": "a", "values_count": {"gt": -1}}]},
    {"must": [{"key": "a", "geo_radius": {"center": {"lat": 91, "lon": 0}, "radius": 1}}]},
    {"must": [{"key": "a", "geo_radius": {"center": {"lat": 0}, "radius": 1}}]},
    {"must": [{"key": "a", "geo_polygon": {"exterior": {"points": [{"lat": 0, "lon": 0}, {"lat": 1, "lon": 1},
                                                                  {"lat": 0, "lon": 0}]}}}]},
    {"must": [{"key": "a", "geo_polygon": {"exterior": {"points": [{"lat": 0, "lon": 0}, {"lat": 1, "lon": 1},
                                                                  {"lat": 1, "lon": 0}, {"lat": 0, "lon": 1}]}}}]},
    {"must": [{"has_id": ["not-a-uuid"]}]},
    {"must": [{"has_id": [-1]}]},
    {"must": [{"has_id": 1}]},
    {"must": [{"has_vector": 1}]},
    {"must": [{"is_empty": {"key": "a", "x": 1}}]},
    {"must": [{"is_null": "a"}]},
    {"must": [{"nested": {"key": "a"}}]},
    {"must": [{"nested": {"key": "a", "filter": {"must": [{"key": "b", "match": {"value": 1}}]}, "x": 1}}]},
    {"must": [{"slice": {"total": 0, "index": 0}}]},
    {"must": [{"slice": {"total": 2, "index": 2}}]},
    {"must": [{"unknown": 1}]},
    {"must": [1]},
    {"mustnt": []},
    {"min_should": {"conditions": [], "min_count": 0}},
    {"min_should": {"conditions": {}, "min_count": 1}},
    {"min_should": {"min_count": 1}},
    [],
    "must",
]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=4000, help="random filter cases (default 4000)")
    parser.add_argument("--ops", type=int, default=1500, help="random selector / set / delete cases each")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--binary", type=Path, default=BINARY)
    parser.add_argument("--show", type=int, default=10, help="disagreements to print")
    args = parser.parse_args()

    gen = Gen(random.Random(args.seed))
    cases = []
    for _ in range(args.cases):
        gen.current_payload = gen.payload()
        case = {"payload": gen.current_payload, "id": gen.point_id(), "filter": gen.filter()}
        if gen.r.random() < 0.05:
            case["payload"] = None
        case["vectors"] = gen.r.sample(VECTOR_NAMES, gen.r.randint(0, 3))
        cases.append(case)
    for _ in range(args.ops):
        cases.append({"op": "select", "payload": gen.payload(), "with_payload": gen.with_payload()})
        case = {"op": "set", "payload": gen.payload(), "new": gen.new_payload()}
        key = gen.set_key()
        if key is not None:
            case["key"] = key
        cases.append(case)
        cases.append({"op": "delete", "payload": gen.payload(), "keys": gen.delete_keys()})
    invalid = [{"payload": {}, "id": 1, "filter": f} for f in INVALID_FILTERS]

    lines = "\n".join(json.dumps(c) for c in cases + invalid) + "\n"
    run = subprocess.run([str(args.binary)], input=lines, capture_output=True, text=True, check=True)
    answers = run.stdout.splitlines()
    assert len(answers) == len(cases) + len(invalid), (len(answers), len(cases) + len(invalid))

    disagreements = []
    tally = {"filter": [0, 0], "select": [0, 0], "set": [0, 0], "delete": [0, 0]}
    true_count = 0
    for case, ours in zip(cases, answers):
        op = case.get("op", "filter")
        if op == "filter":
            theirs = python_filter(case)
            same = ours == theirs or (ours.startswith("error") and theirs.startswith("error"))
            true_count += ours == "true"
        else:
            expected = python_op(case)
            same = not ours.startswith("error") and strict_equal(json.loads(ours), expected)
            theirs = json.dumps(expected)
        tally[op][0] += 1
        if not same:
            tally[op][1] += 1
            disagreements.append((case, ours, theirs))

    for case, ours, theirs in disagreements[: args.show]:
        print("DISAGREE", json.dumps(case), "\n  rust:  ", ours, "\n  python:", theirs)
    for op, (n, bad) in tally.items():
        print(f"{op:7} {n:6} cases, {bad} disagreements")
    print(f"filters matching: {true_count} of {tally['filter'][0]}")

    not_rejected = [f for f, ours in zip(INVALID_FILTERS, answers[len(cases):]) if not ours.startswith("error")]
    for f in not_rejected:
        print("NOT REJECTED", json.dumps(f))
    lenient_python = sum(not python_filter({"payload": {}, "id": 1, "filter": f}).startswith("error")
                         for f in INVALID_FILTERS)
    print(f"invalid filters: {len(INVALID_FILTERS) - len(not_rejected)} of {len(INVALID_FILTERS)} rejected "
          f"({lenient_python} of them accepted by the Python client, which validates lazily)")
    return 1 if disagreements or not_rejected else 0


if __name__ == "__main__":
    sys.exit(main())

"""Bad input on every endpoint gets a 4xx in Qdrant's error shape, and the server keeps
serving afterwards. Raw HTTP, so the bodies are exactly what is meant."""

from __future__ import annotations

import json

import httpx
import pytest

C = "bad_input"
GOOD_POINT = {"id": 1, "vector": [0.1, 0.2, 0.3, 0.4], "payload": {"a": {"b": 1}}}
VEC = [0.1, 0.2, 0.3, 0.4]


@pytest.fixture(scope="module")
def http(router_url, schema_checker):
    def hook(response):
        response.read()
        schema_checker.check(response.request.method, response.request.url.path,
                             response.status_code, response.headers.get("content-type", ""),
                             response.content)
    with httpx.Client(base_url=router_url, timeout=30,
                      event_hooks={"response": [hook]}) as client:
        client.delete(f"/collections/{C}")
        r = client.put(f"/collections/{C}", json={"vectors": {"size": 4, "distance": "Dot"}})
        assert r.status_code == 200, r.text
        r = client.put(f"/collections/{C}/points?wait=true", json={"points": [GOOD_POINT]})
        assert r.status_code == 200, r.text
        yield client
        client.delete(f"/collections/{C}")


# (name, method, path, body: dict or raw bytes, expected status or None for any 4xx)
ENDPOINTS_WITH_BODY = [
    ("PUT", f"/collections/{C}/points?wait=true"),
    ("POST", f"/collections/{C}/points"),
    ("POST", f"/collections/{C}/points/delete?wait=true"),
    ("POST", f"/collections/{C}/points/payload?wait=true"),
    ("PUT", f"/collections/{C}/points/payload?wait=true"),
    ("POST", f"/collections/{C}/points/payload/delete?wait=true"),
    ("POST", f"/collections/{C}/points/payload/clear?wait=true"),
    ("POST", f"/collections/{C}/points/query"),
    ("POST", f"/collections/{C}/points/query/batch"),
    ("POST", f"/collections/{C}/points/recommend"),
    ("POST", f"/collections/{C}/points/recommend/batch"),
    ("POST", f"/collections/{C}/points/discover"),
    ("POST", f"/collections/{C}/points/discover/batch"),
    ("POST", f"/collections/{C}/points/scroll"),
    ("POST", f"/collections/{C}/points/count"),
    ("PUT", f"/collections/{C}/index?wait=true"),
    ("PUT", f"/collections/{C}/snapshots/recover"),
    ("PUT", "/collections/bad_input_new"),
    ("POST", "/collections/aliases"),
    ("POST", f"/collections/{C}/facet"),
    ("PUT", f"/collections/{C}/points/vectors?wait=true"),
    ("POST", f"/collections/{C}/points/vectors/delete?wait=true"),
    ("POST", f"/collections/{C}/points/query/groups"),
    ("POST", f"/collections/{C}/points/search/groups"),
    ("POST", f"/collections/{C}/points/recommend/groups"),
    ("POST", f"/collections/{C}/points/search"),
    ("POST", f"/collections/{C}/points/search/batch"),
    ("POST", f"/collections/{C}/points/batch?wait=true"),
    ("POST", f"/collections/{C}/points/search/matrix/pairs"),
    ("POST", f"/collections/{C}/points/search/matrix/offsets"),
    ("PATCH", f"/collections/{C}"),
    ("PUT", f"/collections/{C}/vectors/extra"),
    ("PUT", f"/collections/{C}/shards"),
    ("POST", f"/collections/{C}/shards/delete"),
    ("POST", f"/collections/{C}/cluster"),
]

BAD_FILTERS = [
    {"must": [{"key": "a", "match": {"nonsense": 1}}]},
    {"must": 5},
    {"must": [{"key": "a", "range": {"gt": "high"}}]},
    {"must": [{"key": "a"}]},
    {"should": [{"key": "a[", "match": {"value": 1}}]},
    {"must": [{"key": "loc", "geo_radius": {"center": {"lat": 1}, "radius": 5}}]},
    {"must": [{"has_id": [{"x": 1}]}]},
    {"must": [{"nested": {"key": "x"}}]},
    {"mustt": []},
]

CASES = [
    # wrong dimension
    ("PUT", f"/collections/{C}/points?wait=true", {"points": [{"id": 2, "vector": [0.1, 0.2]}]}, 400),
    ("PUT", f"/collections/{C}/points?wait=true", {"batch": {"ids": [2], "vectors": [[1.0] * 5]}}, 400),
    ("POST", f"/collections/{C}/points/query", {"query": {"nearest": [0.1, 0.2]}}, 400),
    ("POST", f"/collections/{C}/points/query", {"query": [0.1, 0.2, 0.3, 0.4, 0.5]}, 400),
    ("POST", f"/collections/{C}/points/query/batch", {"searches": [{"query": [1.0]}]}, 400),
    # NaN / infinity arrive as null
    ("PUT", f"/collections/{C}/points?wait=true", {"points": [{"id": 2, "vector": [0.1, None, 0.3, 0.4]}]}, 400),
    ("POST", f"/collections/{C}/points/query", {"query": {"nearest": [0.1, None, 0.3, 0.4]}}, 400),
    # limits
    ("POST", f"/collections/{C}/points/query", {"query": VEC, "limit": -1}, 400),
    ("POST", f"/collections/{C}/points/query", {"query": VEC, "limit": 10**15}, 400),
    ("POST", f"/collections/{C}/points/query", {"query": VEC, "offset": -3}, 400),
    ("POST", f"/collections/{C}/points/query", {"query": VEC, "limit": 2.5}, 400),
    ("POST", f"/collections/{C}/points/scroll", {"limit": -5}, 400),
    ("POST", f"/collections/{C}/points/scroll", {"limit": 10**15}, 400),
    # ids
    ("PUT", f"/collections/{C}/points?wait=true", {"points": [{"id": -1, "vector": VEC}]}, 400),
    ("PUT", f"/collections/{C}/points?wait=true", {"points": [{"id": "not-a-uuid", "vector": VEC}]}, 400),
    ("PUT", f"/collections/{C}/points?wait=true", {"points": [{"id": 1.5, "vector": VEC}]}, 400),
    ("POST", f"/collections/{C}/points", {"ids": [{"id": 1}]}, 400),
    ("GET", f"/collections/{C}/points/not-an-id", None, 400),
    ("GET", f"/collections/{C}/points/424242", None, 404),
    # vectors of the wrong kind
    ("PUT", f"/collections/{C}/points?wait=true", {"points": [{"id": 2, "vector": {"nope": VEC}}]}, 400),
    ("PUT", f"/collections/{C}/points?wait=true", {"points": [{"id": 2, "vector": "text"}]}, 400),
    ("PUT", f"/collections/{C}/points?wait=true", {"points": [{"id": 2}]}, 400),
    ("POST", f"/collections/{C}/points/query", {"query": {"text": [1.0, 2.0]}}, None),
    ("POST", f"/collections/{C}/points/query", {"query": VEC, "using": "nope"}, 400),
    ("POST", f"/collections/{C}/points/query", {"query": 424242}, 404),
    # recommend, discover, context
    ("POST", f"/collections/{C}/points/query", {"query": {"recommend": {}}}, 400),
    ("POST", f"/collections/{C}/points/query", {"query": {"recommend": {"negative": [1]}}}, 400),
    ("POST", f"/collections/{C}/points/query", {"query": {"recommend": {"strategy": "best_score"}}}, 400),
    ("POST", f"/collections/{C}/points/query", {"query": {"recommend": {"positive": [1], "strategy": "nope"}}}, 400),
    ("POST", f"/collections/{C}/points/query", {"query": {"recommend": {"positive": [1], "bogus": 1}}}, 400),
    ("POST", f"/collections/{C}/points/query", {"query": {"recommend": {"positive": [1]}, "nearest": VEC}}, 400),
    ("POST", f"/collections/{C}/points/query", {"query": {"recommend": {"positive": [424242]}}}, 404),
    ("POST", f"/collections/{C}/points/query", {"query": {"recommend": {"positive": [[0.1, 0.2]], "strategy": "best_score"}}}, 400),
    ("POST", f"/collections/{C}/points/query", {"query": {"recommend": {"positive": [VEC] * 257, "strategy": "sum_scores"}}}, 400),
    ("POST", f"/collections/{C}/points/query", {"query": {"context": []}}, 400),
    ("POST", f"/collections/{C}/points/query", {"query": {"context": {"positive": 1}}}, 400),
    ("POST", f"/collections/{C}/points/query", {"query": {"discover": {"context": []}}}, 400),
    ("POST", f"/collections/{C}/points/query", {"query": {"discover": {"target": [0.1], "context": []}}}, 400),
    ("POST", f"/collections/{C}/points/query", {"query": {"recommend": {"positive": [1]}}, "lookup_from": {"collection": "no_such_collection"}}, 404),
    ("POST", f"/collections/{C}/points/query", {"query": {"recommend": {"positive": [1]}}, "lookup_from": {"collection": C, "vector": "nope"}}, 400),
    ("POST", f"/collections/{C}/points/query", {"query": {"recommend": {"positive": [1]}}, "lookup_from": {}}, 400),
    ("POST", f"/collections/{C}/points/recommend", {"positive": [1]}, 400),
    ("POST", f"/collections/{C}/points/recommend", {"limit": 3}, 400),
    ("POST", f"/collections/{C}/points/recommend", {"positive": [1], "limit": 0}, 400),
    ("POST", f"/collections/{C}/points/recommend", {"positive": [1], "limit": 3, "bogus": 1}, 400),
    ("POST", f"/collections/{C}/points/recommend/batch", {"searches": [{"positive": [424242], "limit": 1}]}, 404),
    ("POST", f"/collections/{C}/points/discover", {"limit": 3}, 400),
    ("POST", f"/collections/{C}/points/discover", {"target": 1, "context": [{"positive": 1}], "limit": 3}, 400),
    ("POST", f"/collections/{C}/points/discover/batch", {"searches": [{"limit": 3}]}, 400),
    # vector updates, conditional upserts
    ("PUT", f"/collections/{C}/points?wait=true", {"points": [GOOD_POINT], "update_mode": "bogus"}, 400),
    ("PUT", f"/collections/{C}/points?wait=true", {"points": [GOOD_POINT], "update_filter": {"must": 5}}, 400),
    ("PUT", f"/collections/{C}/points/vectors?wait=true", {"points": [{"id": 1, "vector": [0.1]}]}, 400),
    ("PUT", f"/collections/{C}/points/vectors?wait=true", {"points": [{"id": 1, "vector": {"nope": VEC}}]}, 400),
    ("PUT", f"/collections/{C}/points/vectors?wait=true", {"points": [{"id": 1}]}, 400),
    ("PUT", f"/collections/{C}/points/vectors?wait=true", {"points": [{"id": 424242, "vector": VEC}]}, 404),
    ("POST", f"/collections/{C}/points/vectors/delete?wait=true", {"points": [1], "vector": []}, 400),
    ("POST", f"/collections/{C}/points/vectors/delete?wait=true", {"points": [1], "vector": ["nope"]}, 400),
    ("POST", f"/collections/{C}/points/vectors/delete?wait=true", {"vector": [""]}, 400),
    # order_by
    ("POST", f"/collections/{C}/points/scroll", {"order_by": "a", "offset": 1}, 400),
    ("POST", f"/collections/{C}/points/scroll", {"order_by": "a["}, 400),
    ("POST", f"/collections/{C}/points/scroll", {"order_by": {"key": "a", "start_from": "nope"}}, 400),
    ("POST", f"/collections/{C}/points/scroll", {"order_by": {"key": "a", "direction": "up"}}, 400),
    ("POST", f"/collections/{C}/points/scroll", {"order_by": {"key": "a", "bogus": 1}}, 400),
    ("POST", f"/collections/{C}/points/query", {"query": {"order_by": {"key": "a", "start_from": "x"}}}, 400),
    ("POST", f"/collections/{C}/points/query", {"query": {"order_by": "a", "recommend": {}}}, 400),
    # facets
    ("POST", f"/collections/{C}/facet", {}, 400),
    ("POST", f"/collections/{C}/facet", {"key": "a["}, 400),
    ("POST", f"/collections/{C}/facet", {"key": "a", "limit": 0}, 400),
    ("POST", f"/collections/{C}/facet", {"key": "a", "filter": {"must": 5}}, 400),
    # groups
    ("POST", f"/collections/{C}/points/query/groups", {"query": VEC}, 400),
    ("POST", f"/collections/{C}/points/query/groups", {"query": VEC, "group_by": "a[", "limit": 3}, 400),
    ("POST", f"/collections/{C}/points/query/groups", {"query": VEC, "group_by": "a", "group_size": 0}, 400),
    ("POST", f"/collections/{C}/points/query/groups", {"query": VEC, "group_by": "a", "group_size": 1000, "limit": 1000}, 400),
    ("POST", f"/collections/{C}/points/query/groups", {"query": VEC, "group_by": "a", "with_lookup": "no_such_collection"}, 404),
    ("POST", f"/collections/{C}/points/search/groups", {"vector": VEC, "group_by": "a", "limit": 3}, 400),
    ("POST", f"/collections/{C}/points/recommend/groups", {"positive": [1], "group_by": "a", "limit": 3, "group_size": 2, "bogus": 1}, 400),
    # aliases
    ("POST", "/collections/aliases", {"actions": [{}]}, 400),
    ("POST", "/collections/aliases", {"actions": [{"create_alias": {"collection_name": C, "alias_name": "x"}, "delete_alias": {"alias_name": "x"}}]}, 400),
    ("POST", "/collections/aliases", {"actions": [{"create_alias": {"collection_name": C}}]}, 400),
    ("POST", "/collections/aliases", {"actions": [{"delete_alias": {"alias_name": "x"}}] * 1001}, 400),
    ("POST", "/collections/aliases", {"actions": [{"create_alias": {"collection_name": C, "alias_name": C}}]}, 409),
    ("GET", "/collections/no_such_collection/aliases", None, 404),
    # unknown fields
    ("PUT", f"/collections/{C}/points?wait=true", {"points": [GOOD_POINT], "bogus": 1}, 400),
    ("PUT", f"/collections/{C}/points?wait=true", {"points": [dict(GOOD_POINT, vectorz=VEC)]}, 400),
    ("POST", f"/collections/{C}/points/query", {"query": VEC, "limitt": 3}, 400),
    ("POST", f"/collections/{C}/points/scroll", {"filterr": {}}, 400),
    ("POST", f"/collections/{C}/points/count", {"exact": True, "x": 1}, 400),
    ("PUT", "/collections/bad_input_new", {"vectors": {"size": 4, "distance": "Dot"}, "shards": 2}, 400),
    ("PUT", "/collections/bad_input_new", {"vectors": {"size": 4, "distance": "Dott"}}, 400),
    ("PUT", "/collections/bad_input_new", {"vectors": {"size": 0, "distance": "Dot"}}, 400),
    ("PUT", "/collections/bad_input_new", {"vectors": {"size": 4, "distance": "Dot"}, "shard_number": 0}, 400),
    # payload calls
    ("POST", f"/collections/{C}/points/payload?wait=true", {"payload": {"x": 1}, "points": [1], "key": "a[."}, 400),
    ("POST", f"/collections/{C}/points/payload?wait=true", {"payload": [1], "points": [1]}, 400),
    ("POST", f"/collections/{C}/points/payload?wait=true", {"payload": {"x": 1}}, 400),
    ("POST", f"/collections/{C}/points/payload/delete?wait=true", {"keys": "x", "points": [1]}, 400),
    ("POST", f"/collections/{C}/points/delete?wait=true", {}, 400),
    ("PUT", f"/collections/{C}/index?wait=true", {"field_name": "a", "field_schema": "nonsense"}, 400),
    ("PUT", f"/collections/{C}/index?wait=true", {"field_schema": "keyword"}, 400),
    # snapshots
    ("PUT", f"/collections/{C}/snapshots/recover", {"location": "file:///etc/passwd"}, None),
    ("PUT", f"/collections/{C}/snapshots/recover", {"location": "file:///nonexistent/x.snapshot"}, None),
    ("DELETE", f"/collections/{C}/snapshots/none.snapshot", None, 404),
    ("GET", f"/collections/{C}/snapshots/none.snapshot", None, 404),
    ("GET", f"/collections/{C}/snapshots/..%2F..%2Fetc%2Fpasswd", None, None),
    # query parameters
    ("PUT", f"/collections/{C}/points?wait=maybe", {"points": [GOOD_POINT]}, 400),
    # an existing collection
    ("PUT", f"/collections/{C}", {"vectors": {"size": 4, "distance": "Dot"}}, 409),
] + [
    ("POST", f"/collections/{C}/points/{ep}", {"filter": flt, **extra}, 400)
    for flt in BAD_FILTERS
    for ep, extra in [("count", {}), ("scroll", {}), ("query", {"query": VEC}),
                      ("delete?wait=true", {})]
]

MISSING = "no_such_collection"
UNKNOWN_COLLECTION = [
    ("GET", f"/collections/{MISSING}", None),
    ("PUT", f"/collections/{MISSING}/points?wait=true", {"points": [GOOD_POINT]}),
    ("POST", f"/collections/{MISSING}/points", {"ids": [1]}),
    ("GET", f"/collections/{MISSING}/points/1", None),
    ("POST", f"/collections/{MISSING}/points/delete?wait=true", {"points": [1]}),
    ("POST", f"/collections/{MISSING}/points/payload?wait=true", {"payload": {"x": 1}, "points": [1]}),
    ("PUT", f"/collections/{MISSING}/points/payload?wait=true", {"payload": {"x": 1}, "points": [1]}),
    ("POST", f"/collections/{MISSING}/points/payload/delete?wait=true", {"keys": ["x"], "points": [1]}),
    ("POST", f"/collections/{MISSING}/points/payload/clear?wait=true", {"points": [1]}),
    ("POST", f"/collections/{MISSING}/points/query", {"query": VEC}),
    ("POST", f"/collections/{MISSING}/points/query/batch", {"searches": [{"query": VEC}]}),
    ("POST", f"/collections/{MISSING}/points/recommend", {"positive": [VEC], "limit": 1}),
    ("POST", f"/collections/{MISSING}/facet", {"key": "a"}),
    ("PUT", f"/collections/{MISSING}/points/vectors?wait=true", {"points": [{"id": 1, "vector": VEC}]}),
    ("POST", f"/collections/{MISSING}/points/vectors/delete?wait=true", {"points": [1], "vector": [""]}),
    ("POST", f"/collections/{MISSING}/points/recommend/batch", {"searches": []}),
    ("POST", f"/collections/{MISSING}/points/discover", {"target": VEC, "limit": 1}),
    ("POST", f"/collections/{MISSING}/points/discover/batch", {"searches": []}),
    ("POST", f"/collections/{MISSING}/points/scroll", {}),
    ("POST", f"/collections/{MISSING}/points/count", {}),
    ("PUT", f"/collections/{MISSING}/index?wait=true", {"field_name": "a", "field_schema": "keyword"}),
    ("POST", f"/collections/{MISSING}/snapshots", None),
    ("GET", f"/collections/{MISSING}/snapshots", None),
    ("DELETE", f"/collections/{MISSING}/snapshots/x.snapshot", None),
]


def assert_error(r: httpx.Response, status: int | None, what: str):
    assert 400 <= r.status_code < 500, f"{what}: status {r.status_code}, 4xx expected: {r.text[:300]}"
    if status is not None:
        assert r.status_code == status, f"{what}: status {r.status_code}, {status} expected: {r.text[:300]}"
    try:
        body = r.json()
    except ValueError:
        raise AssertionError(f"{what}: error body is not JSON: {r.text[:300]!r}")
    assert isinstance(body, dict) and set(body) >= {"status", "time"}, f"{what}: {body}"
    assert isinstance(body["status"], dict) and isinstance(body["status"].get("error"), str) \
        and body["status"]["error"], f"{what}: {body}"
    assert isinstance(body["time"], (int, float)), f"{what}: {body}"


def still_serving(http: httpx.Client):
    r = http.post(f"/collections/{C}/points", json={"ids": [1], "with_vector": True})
    assert r.status_code == 200, r.text
    assert r.json()["result"][0]["vector"] == pytest.approx(GOOD_POINT["vector"])


def state(http: httpx.Client):
    """What a refused request must leave as it was: the points, the configuration, the
    collections, the aliases and the shard keys (none outside cluster mode)."""
    points = http.post(f"/collections/{C}/points/scroll",
                       json={"limit": 100, "with_payload": True, "with_vector": True}).json()
    info = http.get(f"/collections/{C}").json()["result"]
    return (points["result"], info["config"], info["points_count"],
            http.get("/collections").json()["result"], http.get("/aliases").json()["result"],
            http.get(f"/collections/{C}/shards").json()["result"])


@pytest.mark.parametrize("method,path", ENDPOINTS_WITH_BODY)
def test_malformed_json(http, method, path):
    before = state(http)
    for raw in [b"{", b"{\"points\": [1,]}", b"\xff\xfe", b"[1, 2]", b"\"str\"", b"nan"]:
        r = http.request(method, path, content=raw, headers={"content-type": "application/json"})
        assert_error(r, 400, f"{method} {path} body {raw!r}")
    still_serving(http)
    assert state(http) == before, f"{method} {path}: a refused body changed something"


DEEP = 100_000
# Bodies no encoder of a well-behaved client produces, as raw bytes: (what, method, path, body).
HOSTILE = [
    ("NaN literal in a vector", "PUT", f"/collections/{C}/points?wait=true",
     b'{"points": [{"id": 7, "vector": [NaN, 0.2, 0.3, 0.4]}]}'),
    ("Infinity in a query", "POST", f"/collections/{C}/points/query",
     b'{"query": [Infinity, 0.2, 0.3, 0.4]}'),
    ("a number past f64", "PUT", f"/collections/{C}/points?wait=true",
     b'{"points": [{"id": 7, "vector": [1e400, 0.2, 0.3, 0.4]}]}'),
    ("a vector component past f32", "PUT", f"/collections/{C}/points?wait=true",
     b'{"points": [{"id": 7, "vector": [1e39, 0.2, 0.3, 0.4]}]}'),
    ("an id past u64", "PUT", f"/collections/{C}/points?wait=true",
     b'{"points": [{"id": 18446744073709551616, "vector": [0.1, 0.2, 0.3, 0.4]}]}'),
    ("a duplicate field", "POST", f"/collections/{C}/points/query",
     b'{"query": [0.1, 0.2, 0.3, 0.4], "limit": 3, "limit": 4}'),
    ("a duplicate field in a point", "PUT", f"/collections/{C}/points?wait=true",
     b'{"points": [{"id": 7, "id": 8, "vector": [0.1, 0.2, 0.3, 0.4]}]}'),
    ("arrays nested 100,000 deep in a payload", "PUT", f"/collections/{C}/points?wait=true",
     b'{"points": [{"id": 7, "vector": [0.1, 0.2, 0.3, 0.4], "payload": {"a": '
     + b"[" * DEEP + b"]" * DEEP + b"}}]}"),
    ("filters nested 100,000 deep", "POST", f"/collections/{C}/points/count",
     b'{"filter": ' + b'{"must": [' * DEEP + b"{}" + b"]}" * DEEP + b"}"),
    ("a truncated body", "PUT", f"/collections/{C}/points?wait=true",
     b'{"points": [{"id": 7, "vector": [0.1, 0.2, 0.'),
    # (An empty body reads as `{}`, as clients send none where every field is optional.)
    ("an empty body where fields are required", "PUT", f"/collections/{C}/points?wait=true", b""),
    ("a lone surrogate in a key", "PUT", f"/collections/{C}/points?wait=true",
     b'{"points": [{"id": 7, "vector": [0.1, 0.2, 0.3, 0.4], "payload": {"\\ud800": 1}}]}'),
    ("a zero-dimension collection", "PUT", "/collections/bad_input_zero",
     b'{"vectors": {"size": 0, "distance": "Dot"}}'),
    ("a negative dimension", "PUT", "/collections/bad_input_zero",
     b'{"vectors": {"size": -4, "distance": "Dot"}}'),
    ("a dimension past the limit", "PUT", "/collections/bad_input_zero",
     b'{"vectors": {"size": 100000000, "distance": "Dot"}}'),
    ("a batch of 200,000 ids", "POST", f"/collections/{C}/points/delete?wait=true",
     b'{"points": [' + b",".join([b"424242"] * 200_000) + b"]}"),
]


@pytest.mark.parametrize("case", range(len(HOSTILE)))
def test_hostile_bodies(http, case):
    """Each is refused with a 4xx in Qdrant's shape: none crashes, hangs or writes."""
    what, method, path, raw = HOSTILE[case]
    before = http.post(f"/collections/{C}/points/count", json={"exact": True}).json()["result"]
    r = http.request(method, path, content=raw, headers={"content-type": "application/json"})
    assert_error(r, None, what)
    still_serving(http)
    after = http.post(f"/collections/{C}/points/count", json={"exact": True}).json()["result"]
    assert after == before, f"{what}: a refused request changed the collection"
    assert http.get("/collections/bad_input_zero").status_code == 404, what


def test_unicode_names_and_keys(http):
    """Names and keys in any script, and emoji, are stored and read back as sent."""
    key = "город.名前🙂"
    value = {"ключ": "値 ✓", "emoji": "🙂🙃", "rtl": "שלום"}
    r = http.put(f"/collections/{C}/points?wait=true",
                 json={"points": [{"id": 9, "vector": VEC, "payload": {key: value}}]})
    assert r.status_code == 200, r.text
    got = http.post(f"/collections/{C}/points", json={"ids": [9], "with_payload": True}).json()
    assert got["result"][0]["payload"] == {key: value}
    # A key with a dot is a path: `город.名前🙂` reads `город` then `名前🙂`, which this
    # point does not have; the flat key is reached through a payload selector of the key.
    r = http.post(f"/collections/{C}/points/count", json={
        "exact": True, "filter": {"must": [{"key": "город", "match": {"value": "x"}}]}})
    assert r.status_code == 200 and r.json()["result"]["count"] == 0, r.text
    name = "коллекция_名前_🙂"
    r = http.put(f"/collections/{name}", json={"vectors": {"size": 4, "distance": "Dot"}})
    assert r.status_code in (200, 400), r.text
    if r.status_code == 200:
        names = [c["name"] for c in http.get("/collections").json()["result"]["collections"]]
        assert name in names
        assert http.delete(f"/collections/{name}").json()["result"] is True
    else:
        assert_error(r, 400, "a unicode collection name")
    r = http.post(f"/collections/{C}/points/delete?wait=true", json={"points": [9]})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("case", range(len(CASES)))
def test_bad_request(http, case):
    method, path, body, status = CASES[case]
    r = http.request(method, path, json=body) if body is not None else http.request(method, path)
    assert_error(r, status, f"{method} {path} {json.dumps(body)[:200]}")
    still_serving(http)


@pytest.mark.parametrize("method,path,body", UNKNOWN_COLLECTION)
def test_unknown_collection(http, method, path, body):
    r = http.request(method, path, json=body) if body is not None else http.request(method, path)
    assert_error(r, 404, f"{method} {path}")
    still_serving(http)


def test_unknown_collection_delete_is_false(http):
    r = http.delete(f"/collections/{MISSING}")
    assert r.status_code == 200 and r.json()["result"] is False, r.text


def test_oversized_body(http):
    """The router runs with --max-request-size-mb 1."""
    big = {"points": [{"id": i, "vector": VEC, "payload": {"pad": "x" * 1000}} for i in range(1500)]}
    for method, path in [("PUT", f"/collections/{C}/points?wait=true"),
                         ("POST", f"/collections/{C}/points/query")]:
        r = http.request(method, path, json=big)
        assert_error(r, 413, f"{method} {path} with a {len(json.dumps(big))} byte body")
    still_serving(http)
    r = http.post(f"/collections/{C}/points/count", json={})
    assert r.json()["result"]["count"] == 1


def test_unknown_path_and_method(http):
    assert_error(http.get("/no/such/path"), 404, "GET /no/such/path")
    r = http.patch(f"/collections/{C}/points/scroll", json={})
    assert 400 <= r.status_code < 500, r.status_code
    still_serving(http)


# Valid Qdrant requests this server does not serve: a clear refusal in Qdrant's error shape
# (docs/compatibility.md lists them), never a silent wrong answer.
UNSUPPORTED = [
    ("POST", f"/collections/{C}/points/query", {"prefetch": [{"query": VEC}], "query": {"relevance_feedback": {}}}),
    ("POST", f"/collections/{C}/points/query", {"query": VEC, "lookup_from": {"collection": C, "shard_key": "x"}}),
    ("POST", f"/collections/{C}/points/query", {"query": {"recommend": {"positive": [[VEC, VEC]]}}}),
    ("POST", f"/collections/{C}/points/recommend", {"positive": [{"indices": [1], "values": [0.5]}], "limit": 1}),
    ("POST", f"/collections/{C}/points/query/groups", {"group_by": "a"}),
    ("POST", f"/collections/{C}/points/query/groups", {"query": {"relevance_feedback": {}}, "group_by": "a", "prefetch": [{"query": VEC}]}),
    ("POST", f"/collections/{C}/points/query/groups", {"query": {"relevance_feedback": {}}, "group_by": "a"}),
    ("POST", f"/collections/{C}/points/query/groups", {"query": {"order_by": "a"}, "group_by": "a"}),
    ("POST", f"/collections/{C}/points/query", {"query": {"indices": [1], "values": [0.5]}}),
    ("POST", f"/collections/{C}/points/query", {"query": [VEC, VEC]}),
    ("POST", f"/collections/{C}/points/query", {"query": VEC, "shard_key": "x"}),
    ("PUT", f"/collections/{C}/points?wait=true", {"points": [{"id": 3, "vector": [VEC, VEC]}]}),
    ("PUT", f"/collections/{C}/points/payload?wait=true", {"payload": {"x": 1}, "points": [1], "key": "a"}),
]

UNSUPPORTED_CREATE = [
    {"vectors": {"size": 4, "distance": "Dot"}, "quantization_config": {"product": {"compression": "x3"}}},
    {"vectors": {"size": 4, "distance": "Dot", "multivector_config": {"comparator": "min_sim"}}},
]


@pytest.mark.parametrize("case", range(len(UNSUPPORTED)))
def test_unsupported_is_refused_clearly(http, case):
    method, path, body = UNSUPPORTED[case]
    r = http.request(method, path, json=body)
    assert r.status_code in (400, 501), f"{method} {path} {body}: {r.status_code} {r.text[:300]}"
    body_json = r.json()
    assert isinstance(body_json["status"]["error"], str) and "time" in body_json
    still_serving(http)


@pytest.mark.parametrize("case", range(len(UNSUPPORTED_CREATE)))
def test_unsupported_collection_options_are_refused(http, case):
    r = http.put("/collections/bad_input_unsupported", json=UNSUPPORTED_CREATE[case])
    assert_error(r, 400, f"create {UNSUPPORTED_CREATE[case]}")
    assert http.get("/collections/bad_input_unsupported/exists").json()["result"]["exists"] is False

"""The router's page at /dashboard, driven in a real headless browser (Debian's chromium
through chromium-driver and Selenium): what it shows is checked against the API it reads,
on an embedded router with an API key and on a cluster router whose node goes down."""

from __future__ import annotations

import json
import os
import random
import shutil
import threading
import time

import pytest

from conftest import free_port, http, start_router, wait_ready

KEY = "dashboard-key"
BIG_ID = 2**53 + 1
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        if os.environ.get("VR_REQUIRE_BROWSER"):
            pytest.fail("VR_REQUIRE_BROWSER is set and chromium or chromedriver is missing")
        pytest.skip("chromium and chromium-driver are not installed (Debian: apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    # The page's own errors (a script that failed, a refused resource) fail the test.
    logs = driver.get_log("browser")
    driver.quit()
    # The API's own refusals (a 401 before the key, a 400 asked for) are network entries.
    severe = [entry for entry in logs if entry["level"] == "SEVERE"
              and entry.get("source") != "network"]
    assert not severe, severe


def wait_for(what, check, timeout=20.0):
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            last = check()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 (a page still loading)
            last = e
        time.sleep(0.1)
    raise AssertionError(f"{what}: not seen in {timeout} s (last: {last!r})")


def call(url, method, path, body=None):
    status, answer, _ = http(method, url + path, body, key=KEY)
    assert status == 200, (method, path, answer)
    return answer["result"]


def text(driver, element_id):
    return driver.find_element("id", element_id).text


def table_rows(driver, selector):
    rows = driver.find_elements("css selector", selector)
    return [[td.text for td in r.find_elements("tag name", "td")] for r in rows]


def fill_books(url):
    rng = random.Random(3)
    call(url, "PUT", "/collections/books", {"vectors": {"size": 6, "distance": "Cosine"},
                                            "hnsw_config": {"m": 8, "ef_construct": 32}})
    call(url, "PUT", "/collections/books/index", {"field_name": "lang", "field_schema": "keyword"})
    points = [{"id": i, "vector": [rng.uniform(-1, 1) for _ in range(6)],
               "payload": {"lang": rng.choice(["en", "fr", "de"]), "title": f"book {i}"}}
              for i in range(800)]
    # A payload that would be markup if the page wrote HTML.
    points[5]["payload"]["title"] = '<img src=x onerror="document.title=1">'
    call(url, "PUT", "/collections/books/points?wait=true", {"points": points})
    call(url, "PUT", "/collections/pairs", {"vectors": {"a": {"size": 2, "distance": "Dot"},
                                                        "b": {"size": 3, "distance": "Euclid"}}})
    call(url, "PUT", "/collections/pairs/points?wait=true", {"points": [
        {"id": 1, "vector": {"a": [1.0, 0.0], "b": [0.0, 1.0, 2.0]}, "payload": {"k": 1}},
        {"id": 2, "vector": {"a": [0.5, 0.5], "b": [1.0, 1.0, 1.0]}, "payload": {"k": 2}},
        # Past 2^53: a JavaScript number cannot hold it.
        {"id": BIG_ID, "vector": {"a": [0.9, 0.1], "b": [2.0, 0.0, 0.0]}, "payload": {"k": 3}},
    ]})


def test_the_page_shows_what_the_api_says_and_runs_queries(browser, tmp_path):
    router = start_router([], {"QDRANT__STORAGE__STORAGE_PATH": str(tmp_path / "s"),
                               "QDRANT__STORAGE__SNAPSHOTS_PATH": str(tmp_path / "snap"),
                               "QDRANT__SERVICE__API_KEY": KEY}, tmp_path)
    stop = threading.Event()
    try:
        wait_ready(router.url)
        fill_books(router.url)
        # The files need no key; the data does.
        status, page, headers = http("GET", router.url + "/dashboard")
        assert status == 200 and "<title>vector-router</title>" in page
        assert "script-src 'self'" in headers["content-security-policy"]
        assert http("GET", router.url + "/dashboard/nope.js")[0] == 404

        browser.get(router.url + "/dashboard")
        wait_for("the request for a key", lambda: "API key" in text(browser, "status"))
        browser.find_element("id", "api-key").send_keys(KEY)
        browser.find_element("css selector", "#key-form button").click()
        wait_for("both collections listed",
                 lambda: len(table_rows(browser, "#collections-table tr[data-collection]")) == 2)

        # Collections: each row as GET /collections/{name} says (once indexing settles, the
        # figures stop moving; compare a row read after the API's answer equals it).
        def rows_match():
            shown = {r[0]: r for r in table_rows(browser, "#collections-table tr[data-collection]")}
            for name in ("books", "pairs"):
                info = call(router.url, "GET", f"/collections/{name}")
                row = shown[name]
                if row[1:4] != [info["status"], str(info["points_count"]), str(info["indexed_vectors_count"])]:
                    return False
                if row[5] != str(info["segments_count"]):
                    return False
            return shown
        shown = wait_for("collection rows equal to the API's figures", rows_match)
        assert shown["books"][6] == "6-d Cosine"
        assert shown["pairs"][6] == "a: 2-d Dot, b: 3-d Euclid"
        assert "Embedded" in text(browser, "mode")
        assert not browser.find_element("id", "nodes-table").is_displayed()

        # Shards as /collections/{name}/cluster lists them.
        shards = table_rows(browser, "#shards-table tbody tr")
        expected = []
        for name in ("books", "pairs"):
            cluster = call(router.url, "GET", f"/collections/{name}/cluster")
            for s in cluster["local_shards"]:
                expected.append([name, str(s["shard_id"]), "this router", "1", s["state"], str(s["points_count"])])
        assert shards == expected

        # Live figures: queries sent meanwhile show as a rate and a latency.
        def traffic():
            rng = random.Random(9)
            while not stop.is_set():
                http("POST", router.url + "/collections/books/points/query",
                     {"query": [rng.uniform(-1, 1) for _ in range(6)], "limit": 10}, key=KEY)
        threading.Thread(target=traffic, daemon=True).start()
        qps = wait_for("a query rate", lambda: float(text(browser, "qps")) > 0 or None)
        assert qps > 0 and float(text(browser, "rps")) >= qps
        wait_for("latencies", lambda: text(browser, "p99") not in ("–", ""))
        assert any(u in text(browser, "p99") for u in ("µs", "ms", " s"))
        stop.set()
        assert "MiB" in text(browser, "rss") or "GiB" in text(browser, "rss")

        # The query box, by vector with a filter: the hits the API gives for the same body.
        browser.find_element("css selector", "#q-collection option[value='books']").click()
        vector = [0.3, -0.2, 0.9, 0.1, -0.5, 0.4]
        flt = {"must": [{"key": "lang", "match": {"value": "fr"}}]}
        browser.find_element("id", "q-input").send_keys(json.dumps(vector))
        browser.find_element("id", "q-filter").send_keys(json.dumps(flt))
        limit = browser.find_element("id", "q-limit")
        limit.clear()
        limit.send_keys("7")
        browser.find_element("id", "q-run").click()
        hits = wait_for("hits", lambda: table_rows(browser, "#hits tr.hit"))
        answer = call(router.url, "POST", "/collections/books/points/query",
                      {"query": vector, "filter": flt, "limit": 7, "with_payload": True})["points"]
        assert len(hits) == 7
        for row, point in zip(hits, answer):
            assert row[1] == str(point["id"])
            assert float(row[2]) == pytest.approx(point["score"], abs=1e-6)
            assert json.loads(row[3]) == point["payload"]
            assert point["payload"]["lang"] == "fr"

        # By point id: the neighbours of point 5, whose payload is shown as text, not markup.
        browser.find_element("css selector", "input[name=q-mode][value=id]").click()
        box = browser.find_element("id", "q-input")
        box.clear()
        box.send_keys("5")
        browser.find_element("id", "q-filter").clear()
        browser.find_element("id", "q-run").click()
        answer = call(router.url, "POST", "/collections/books/points/query",
                      {"query": 5, "limit": 7, "with_payload": True})["points"]
        wait_for("hits by id", lambda: [r[1] for r in table_rows(browser, "#hits tr.hit")]
                 == [str(p["id"]) for p in answer])
        assert "5" not in [r[1] for r in table_rows(browser, "#hits tr.hit")]

        browser.find_element("id", "q-input").clear()
        browser.find_element("css selector", "input[name=q-mode][value=vector]").click()
        browser.find_element("id", "q-input").send_keys("[0.1, 0.2]")
        browser.find_element("id", "q-run").click()
        error = wait_for("the server's refusal", lambda: text(browser, "q-error"))
        assert error.startswith("400:") and "dimension" in error.lower(), error
        assert table_rows(browser, "#hits tr.hit") == []
        browser.find_element("id", "q-input").clear()
        browser.find_element("id", "q-input").send_keys("[0.1, oops]")
        browser.find_element("id", "q-run").click()
        wait_for("the page's own refusal", lambda: "not JSON" in text(browser, "q-error"))

        # Markup in a payload stays text: every point, point 5's title among them.
        browser.find_element("id", "q-input").clear()
        browser.find_element("id", "q-input").send_keys(json.dumps(vector))
        browser.find_element("id", "q-limit").clear()
        browser.find_element("id", "q-limit").send_keys("800")
        browser.find_element("id", "q-run").click()
        hits = wait_for("every point", lambda: (lambda rows: len(rows) == 800 and rows)(
            table_rows(browser, "#hits tr.hit")))
        five = next(r for r in hits if r[1] == "5")
        assert json.loads(five[3])["title"] == '<img src=x onerror="document.title=1">'
        assert browser.find_elements("css selector", "#hits img") == []
        assert browser.title == "vector-router"

        # The other collection's vector names are offered for it.
        browser.find_element("css selector", "#q-collection option[value='pairs']").click()
        names = [o.get_attribute("value") for o in
                 browser.find_elements("css selector", "#q-using option")]
        assert names == ["a", "b"]
        # An id past 2^53 is shown and sent exactly.
        browser.find_element("css selector", "#q-using option[value='a']").click()
        browser.find_element("id", "q-limit").clear()
        browser.find_element("id", "q-limit").send_keys("3")
        browser.find_element("id", "q-input").clear()
        browser.find_element("id", "q-input").send_keys("[1.0, 0.0]")
        browser.find_element("id", "q-run").click()
        wait_for("the three pairs", lambda: [r[1] for r in table_rows(browser, "#hits tr.hit")]
                 == ["1", str(BIG_ID), "2"])
        browser.find_element("css selector", "input[name=q-mode][value=id]").click()
        browser.find_element("id", "q-input").clear()
        browser.find_element("id", "q-input").send_keys(str(BIG_ID))
        browser.find_element("id", "q-run").click()
        answer = call(router.url, "POST", "/collections/pairs/points/query",
                      {"query": BIG_ID, "using": "a", "limit": 3})["points"]
        assert [p["id"] for p in answer] == [1, 2]
        wait_for("the big id's neighbours", lambda: [r[1] for r in table_rows(browser, "#hits tr.hit")]
                 == ["1", "2"])
        assert text(browser, "q-error") == ""
    finally:
        stop.set()
        assert router.stop() == 0


def start_cluster_router(tmp_path, nodes):
    """A cluster router over `nodes` (its --cluster-nodes), ready, with the nodes' key."""
    d = tmp_path / "router"
    router = start_router(["--cluster-nodes", nodes],
                          {"QDRANT__STORAGE__STORAGE_PATH": str(d / "s"),
                           "QDRANT__STORAGE__SNAPSHOTS_PATH": str(d / "snap"),
                           "QDRANT__SERVICE__API_KEY": KEY, "VR_CLUSTER_API_KEY": KEY}, d)
    wait_ready(router.url)
    return router


def load_and_open(browser, url, n):
    """Collection `c` with `n` points through the router at `url`, then its dashboard, the
    key entered."""
    call(url, "PUT", "/collections/c", {"vectors": {"size": 2, "distance": "Dot"}})
    call(url, "PUT", "/collections/c/points?wait=true",
         {"points": [{"id": i, "vector": [1.0, float(i)]} for i in range(n)]})
    browser.get(url + "/dashboard")
    browser.find_element("id", "api-key").send_keys(KEY)
    browser.find_element("css selector", "#key-form button").click()


def test_the_page_shows_cluster_nodes_and_a_node_going_down(browser, tmp_path):
    nodes, router = [], None
    try:
        for k in range(2):
            d = tmp_path / f"node{k}"
            nodes.append(start_router([], {"QDRANT__STORAGE__STORAGE_PATH": str(d / "s"),
                                           "QDRANT__STORAGE__SNAPSHOTS_PATH": str(d / "snap"),
                                           "QDRANT__SERVICE__API_KEY": KEY}, d))
        urls = [f"http://127.0.0.1:{n.grpc_port}" for n in nodes]
        router = start_cluster_router(tmp_path, ",".join(urls))
        load_and_open(browser, router.url, 40)
        wait_for("two nodes up", lambda: table_rows(browser, "#nodes-table tbody tr")
                 == [[f"node {k}: {u}", "up", "–"] for k, u in enumerate(urls)])
        assert "Cluster mode over 2 nodes" in text(browser, "mode")
        assert "No replicas" in text(browser, "mode")
        wait_for("the collection's points", lambda: table_rows(
            browser, "#collections-table tr[data-collection]")[0][2] == "40")
        cluster = call(router.url, "GET", "/collections/c/cluster")
        shown = table_rows(browser, "#shards-table tbody tr")
        assert [r[1:3] for r in shown] == [[str(s["shard_id"]), f"node {s['peer_id']}"]
                                           for s in cluster["remote_shards"]]
        assert nodes[1].stop() == 0
        wait_for("node 1 down", lambda: table_rows(browser, "#nodes-table tbody tr")
                 == [[f"node 0: {urls[0]}", "up", "–"], [f"node 1: {urls[1]}", "down", "–"]],
                 timeout=30)
        # The collection, which the router cannot describe without node 1, is shown as such
        # (as the API answers), and the page goes on refreshing.
        status, body, _ = http("GET", router.url + "/collections/c", key=KEY)
        assert status == 503, (status, body)
        wait_for("the collection unavailable", lambda: table_rows(
            browser, "#collections-table tr[data-collection]")[0][1] == "unavailable")
    finally:
        codes = [r.stop() for r in ([router] if router else []) + nodes]
    assert codes[0] == 0


def test_the_page_shows_a_replica_set_and_a_replica_going_down(browser, tmp_path):
    """A cluster router whose one node is a replica set of three (the deployment kit's
    topology): the page shows the set's replicas, each up, one taking the writes (the one
    the router's metrics name), three replicas for each shard, and a replica stopped as down
    while the node stays up."""
    ports = [free_port() for _ in range(3)]
    members = ",".join(f"{k}=http://127.0.0.1:{p}" for k, p in enumerate(ports))
    replicas, router = [], None
    try:
        for k, port in enumerate(ports):
            d = tmp_path / f"replica{k}"
            replicas.append(start_router([], {"QDRANT__STORAGE__STORAGE_PATH": str(d / "s"),
                                              "QDRANT__STORAGE__SNAPSHOTS_PATH": str(d / "snap"),
                                              "QDRANT__SERVICE__API_KEY": KEY,
                                              "VR_REPLICA_ID": str(k),
                                              "VR_REPLICA_INITIAL_MEMBERS": members},
                                        d, http_port=port))
        for r in replicas:
            wait_ready(r.url)
        grpc = [f"http://127.0.0.1:{r.grpc_port}" for r in replicas]
        node = "|".join(grpc)
        router = start_cluster_router(tmp_path, node)
        load_and_open(browser, router.url, 30)

        def shown_replicas():
            rows = table_rows(browser, "#nodes-table tbody tr")
            assert len(rows) == 1 and rows[0][:2] == [f"node 0: {node}", "up"], rows
            return rows[0][2].split("\n")

        wait_for("three replicas up", lambda: sorted(
            line.split(",")[0].split(" ") for line in shown_replicas())
            == sorted([u, "up"] for u in grpc))
        assert "1 of them replica sets" in text(browser, "mode")
        _, metrics, _ = http("GET", router.url + "/metrics", key=KEY)
        writes = [line for line in metrics.splitlines()
                  if line.startswith("vector_router_cluster_replica_write_target{")
                  and line.endswith(" 1")]
        assert len(writes) == 1, writes
        target = writes[0].split('replica="')[1].split('"')[0]
        wait_for("the write target shown", lambda: [line for line in shown_replicas()
                                                    if line.endswith(", takes writes")]
                 == [f"{target} up, takes writes"])
        wait_for("three replicas for each shard", lambda: [r[3] for r in table_rows(
            browser, "#shards-table tbody tr")] == ["3"])
        stopped = next(k for k, u in enumerate(grpc) if u != target)
        assert replicas[stopped].stop() == 0
        wait_for("the stopped replica down", lambda: f"{grpc[stopped]} down" in shown_replicas(),
                 timeout=30)
        assert table_rows(browser, "#nodes-table tbody tr")[0][1] == "up"
    finally:
        codes = [r.stop() for r in ([router] if router else []) + replicas]
    assert codes[0] == 0

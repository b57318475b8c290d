"""deploy/monitoring: Prometheus' own checks of the configurations and rules (promtool,
Debian's `prometheus` package), the alerts' unit tests, and every metric that a rule or a
Grafana panel names read from the live /metrics of routers that export it: a node and a
cluster router after traffic, during a resharding."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time

import pytest
import yaml

from conftest import DEPLOY, http, start_router, wait_ready

MONITORING = DEPLOY / "monitoring"
DASHBOARD = MONITORING / "grafana" / "vector-router.json"
# Series Prometheus makes itself for every target, not the router.
PROMETHEUS_MADE = {"up"}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("VR_REQUIRE_PROMTOOL"):
            pytest.fail("VR_REQUIRE_PROMTOOL is set and promtool is not installed")
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    return path


def run(args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, **kw)


@pytest.fixture
def monitoring_copy(tmp_path):
    """The directory with the key file the configurations read beside them."""
    copy = tmp_path / "monitoring"
    shutil.copytree(MONITORING, copy)
    (copy / "read-only-api-key").write_text("a-read-only-key\n")
    return copy


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus-kubernetes.yml"])
def test_prometheus_accepts_the_configuration(monitoring_copy, config):
    out = run([promtool(), "check", "config", str(monitoring_copy / config)])
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 14 rules found" in out.stdout + out.stderr


def test_promtool_refuses_a_broken_rule(monitoring_copy):
    rules = monitoring_copy / "alerts.yml"
    rules.write_text(rules.read_text().replace("== 0\n", "== \n", 1))
    out = run([promtool(), "check", "rules", str(rules)])
    assert out.returncode != 0


def test_the_alerts_fire_as_their_unit_tests_say():
    out = run([promtool(), "test", "rules", "alerts.test.yml"], cwd=MONITORING)
    assert out.returncode == 0, out.stdout + out.stderr
    tested = set(re.findall(r"alertname: (\w+)", (MONITORING / "alerts.test.yml").read_text()))
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    assert tested == alerts, f"alerts without a unit test: {alerts - tested}"


def dashboard_exprs() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = []
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            exprs.append((panel["title"], target["expr"]))
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            exprs.append((f"variable {var['name']}", var["query"]["query"]))
    return exprs


def test_the_dashboard_is_well_formed_and_its_queries_parse(tmp_path):
    dash = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert variables == {"datasource", "instance", "collection"}
    rules = []
    for panel in dash["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24, panel["title"]
        for target in panel["targets"]:
            used = set(re.findall(r"\$(\w+)", target["expr"])) - {"__rate_interval"}
            assert used <= variables, (panel["title"], used)
            expr = (target["expr"].replace("$__rate_interval", "5m")
                    .replace("$instance", ".*").replace("$collection", ".*"))
            rules.append({"record": f"dashboard:panel_{panel['id']}_{target['refId']}", "expr": expr})
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = run([promtool(), "check", "rules", str(path)])
    assert out.returncode == 0, out.stdout + out.stderr


def names_in(expr: str) -> set[str]:
    """The metric families an expression reads (histogram series by their family)."""
    names = set(re.findall(r"\bvector_router_[a-z_]+", expr))
    return {re.sub(r"_(bucket|sum|count)$", "", n) for n in names} | (
        {n for n in PROMETHEUS_MADE if re.search(rf"\b{n}\{{", expr)})


def exported(text: str) -> set[str]:
    return set(re.findall(r"^# TYPE (\S+) ", text, re.M))


def test_every_metric_a_rule_or_panel_names_is_exported(tmp_path):
    """A node and a cluster router over three nodes, queried, one collection resharded
    while /metrics is read; a replica leading its set, and a router whose node is a replica
    set: the union of what they export holds every name used."""
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    used = {}
    for group in rules["groups"]:
        for rule in group["rules"]:
            for n in names_in(rule["expr"]):
                used.setdefault(n, []).append(f"alert {rule['alert']}")
    for where, expr in dashboard_exprs():
        for n in names_in(expr):
            used.setdefault(n, []).append(f"panel {where}")
    assert len(used) >= 20

    seen: set[str] = set()
    routers = []
    try:
        for k in range(3):
            d = tmp_path / f"node{k}"
            routers.append(start_router([], {"QDRANT__STORAGE__STORAGE_PATH": str(d / "s"),
                                             "QDRANT__STORAGE__SNAPSHOTS_PATH": str(d / "snap")}, d))
        nodes = ",".join(f"http://127.0.0.1:{r.grpc_port}" for r in routers)
        d = tmp_path / "router"
        router = start_router(["--cluster-nodes", nodes, "--cluster-reshard-batch", "1",
                               "--cache-ttl-secs", "5"],
                              {"QDRANT__STORAGE__STORAGE_PATH": str(d / "s"),
                               "QDRANT__STORAGE__SNAPSHOTS_PATH": str(d / "snap")}, d)
        routers.append(router)
        wait_ready(router.url)
        assert http("PUT", router.url + "/collections/m", {"vectors": {"size": 3, "distance": "Cosine"}})[0] == 200
        points = [{"id": i, "vector": [1.0, i / 10, 0.5]} for i in range(1500)]
        assert http("PUT", router.url + "/collections/m/points?wait=true", {"points": points})[0] == 200
        for _ in range(2):
            status, body, _ = http("POST", router.url + "/collections/m/points/query",
                                   {"query": [1.0, 0.2, 0.5], "limit": 5})
            assert status == 200, body
        for r in routers:
            status, text, _ = http("GET", r.url + "/metrics")
            assert status == 200
            seen |= exported(text)
        status, body, _ = http("POST", router.url + "/collections/m/cluster",
                               {"start_resharding": {"direction": "down"}})
        assert status == 200, body
        deadline = time.monotonic() + 30
        while "vector_router_resharding_points_moved" not in seen and time.monotonic() < deadline:
            seen |= exported(http("GET", router.url + "/metrics")[1])

        # A replica (a set of one, leading it), and a router whose one node is a replica set.
        def env(name):
            return {"QDRANT__STORAGE__STORAGE_PATH": str(tmp_path / name / "s"),
                    "QDRANT__STORAGE__SNAPSHOTS_PATH": str(tmp_path / name / "snap")}
        replica = start_router(["--replica-id", "1"], env("replica"), tmp_path / "replica")
        routers.append(replica)
        status, body, _ = http("POST", replica.url + "/cluster/replica/initialize",
                               {"members": {"1": replica.url}})
        assert status == 200, body
        deadline = time.monotonic() + 30
        while http("GET", replica.url + "/cluster/replica")[1]["result"]["state"] != "Leader":
            assert time.monotonic() < deadline, "the replica did not become leader"
            time.sleep(0.1)
        plain = start_router([], env("plain"), tmp_path / "plain")
        routers.append(plain)
        members = f"http://127.0.0.1:{replica.grpc_port}|http://127.0.0.1:{plain.grpc_port}"
        set_router = start_router(["--cluster-nodes", members], env("set-router"),
                                  tmp_path / "set-router")
        routers.append(set_router)
        wait_ready(set_router.url)
        for r in (replica, set_router):
            seen |= exported(http("GET", r.url + "/metrics")[1])
    finally:
        codes = [r.stop() for r in reversed(routers)]
    assert codes == [0] * len(codes)
    missing = {n: sorted(set(w)) for n, w in used.items()
               if n not in seen and n not in PROMETHEUS_MADE}
    assert not missing, f"named but not exported: {missing}"


def test_a_live_scrape_passes_promtools_lint(tmp_path):
    router = start_router([], {"QDRANT__STORAGE__STORAGE_PATH": str(tmp_path / "s"),
                               "QDRANT__STORAGE__SNAPSHOTS_PATH": str(tmp_path / "snap")}, tmp_path)
    try:
        wait_ready(router.url)
        status, text, _ = http("GET", router.url + "/metrics")
        assert status == 200
        free = re.search(r'^vector_router_filesystem_available_bytes\{volume="storage"\} (\S+)$', text, re.M)
        size = re.search(r'^vector_router_filesystem_size_bytes\{volume="storage"\} (\S+)$', text, re.M)
        assert free and size and 0 < float(free.group(1)) <= float(size.group(1)), text
        disk = shutil.disk_usage(tmp_path)
        # The same filesystem as seen from here, within what other writers change meanwhile.
        assert float(size.group(1)) == disk.total
        assert abs(float(free.group(1)) - disk.free) < 0.05 * disk.total + (64 << 20)
        out = run([promtool(), "check", "metrics"], input=text)
        assert out.returncode == 0, out.stdout + out.stderr
    finally:
        assert router.stop() == 0

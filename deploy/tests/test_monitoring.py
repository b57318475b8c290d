"""deploy/monitoring: Prometheus' own checks of the configurations and rules (promtool,
Debian's `prometheus` package), the alerts' unit tests, and every metric that a rule or a
Grafana panel names read from the live /metrics of routers that export it: a node and a
cluster router after traffic, during a resharding; and every label a rule or panel names
(in a selector, a grouping, a legend, an alert's text, a variable) carried by those live
series."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time

import pytest
import yaml

from conftest import DEPLOY, http, required_tool, start_router, wait_ready

MONITORING = DEPLOY / "monitoring"
DASHBOARD = MONITORING / "grafana" / "vector-router.json"
# Series Prometheus makes itself for every target, not the router.
PROMETHEUS_MADE = {"up"}
# Labels Prometheus attaches to every scraped series (the target's), and `up`'s.
TARGET_LABELS = {"instance", "job"}


def promtool() -> str:
    return required_tool("promtool", "VR_REQUIRE_PROMTOOL", "prometheus")


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


SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+\S+(?:\s+\d+)?$")
LABEL_PAIR = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"(?:[^"\\]|\\.)*"\s*(?:,|$)')


def labels_of_series(text: str) -> dict[str, set[str]]:
    """Each series name of an exposition (histograms' `_bucket`, `_sum`, `_count` apart) with
    the label names it carries in any sample."""
    labels: dict[str, set[str]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        names = labels.setdefault(m.group(1), set())
        body = m.group(2) or ""
        pos = 0
        while pos < len(body):
            pair = LABEL_PAIR.match(body, pos)
            assert pair, f"labels not understood at {pos}: {line!r}"
            names.add(pair.group(1))
            pos = pair.end()
    return labels


# PromQL's string literals: their contents may hold anything (braces, keywords).
STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
AGGREGATION = re.compile(
    r"\b(sum|avg|min|max|count|group|stddev|stdvar|quantile)\s*(?:by\s*\(([^)]*)\))?\s*\(")
# What label_problems does not follow: it refuses an expression that uses any of these.
NOT_FOLLOWED = re.compile(
    r"\b(or|on|ignoring|group_left|group_right|without|topk|bottomk|count_values|absent|"
    r"absent_over_time|label_replace|label_join)\b|\)\s*by\b")
METRIC = re.compile(r"\b(vector_router_[a-z0-9_]+|up)\b")
SELECTOR_START = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{")
MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*,?')
TEMPLATE_LABEL = re.compile(r"\{\{\s*\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")
LEGEND_LABEL = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")


def split_names(listed: str) -> set[str]:
    return {n.strip() for n in listed.split(",") if n.strip()}


def mask_strings(expr: str) -> str:
    """`expr` with every string literal's contents blanked, positions kept."""
    return STRING.sub(lambda m: m.group(0)[0] + " " * (len(m.group(0)) - 2) + m.group(0)[-1], expr)


def closing_paren(masked: str, open_at: int) -> int:
    depth = 0
    for i in range(open_at, len(masked)):
        depth += {"(": 1, ")": -1}.get(masked[i], 0)
        if depth == 0:
            return i
    raise AssertionError(f"unbalanced parentheses: {masked!r}")


def selectors(expr: str, masked: str) -> list[tuple[str, set[str]]]:
    """Each `metric{matchers}` of a PromQL expression outside its strings: the metric and
    its matchers' label names (read from the expression itself, whose values may hold
    braces)."""
    found = []
    for m in SELECTOR_START.finditer(masked):
        pos, names = m.end(), set()
        while not expr[pos:].lstrip().startswith("}"):
            matcher = MATCHER.match(expr, pos)
            assert matcher, f"matchers not understood at {pos}: {expr!r}"
            names.add(matcher.group(1))
            pos = matcher.end()
        found.append((m.group(1), names))
    return found


def label_problems(expr: str, shown: set[str], series_labels: dict[str, set[str]]) -> list[str]:
    """What an expression asks of labels that the live series do not carry.

    - A selector's matcher must name a label of that series (or a target's label).
    - An aggregation's `by` must name a label of a series the expression reads.
    - `shown` (a legend's `{{label}}`, an alert's `{{ $labels.x }}`) must be a label of the
      result: with aggregations, what the leftmost one's `by` keeps (the operands of a
      one-to-one operator carry the same labels); without, the leftmost series' labels;
      `histogram_quantile` consumes `le`.
    An approximation of PromQL's label flow, which holds for the expressions of these files:
    it refuses (an assertion) what it does not follow: `or`, `on`, `ignoring`, `group_*`,
    `without`, postfix `by`, `topk`/`bottomk`, `absent`, `label_*`, an aggregation inside
    another, and a series read outside the aggregations beside them."""
    masked = mask_strings(expr)
    refused = NOT_FOLLOWED.search(masked)
    assert not refused, f"{refused.group(0)!r} is not followed here: {expr!r}"
    metrics = [(m.start(), m.group(1)) for m in METRIC.finditer(masked)]
    assert metrics, f"no series read: {expr!r}"
    read = set(TARGET_LABELS)
    for _, name in metrics:
        read |= series_labels.get(name, set())
    problems = []
    for name, matchers in selectors(expr, masked):
        carried = TARGET_LABELS | series_labels.get(name, set())
        for label in sorted(matchers - carried):
            problems.append(f"{name} has no label {label!r}")
    aggregations = []
    for m in AGGREGATION.finditer(masked):
        span = (m.end() - 1, closing_paren(masked, m.end() - 1))
        aggregations.append((m.start(), span, split_names(m.group(2) or "")))
        for label in sorted(split_names(m.group(2) or "") - read):
            problems.append(f"grouping by {label!r}, which no series read carries")
    for start, (lo, hi), _ in aggregations:
        assert not any(lo < other < hi for other, _, _ in aggregations if other != start), \
            f"an aggregation inside another is not followed here: {expr!r}"
    if aggregations:
        outside = [name for pos, name in metrics
                   if not any(lo < pos < hi for _, (lo, hi), _ in aggregations)]
        assert not outside, f"series read beside aggregations are not followed here: {expr!r}"
        result = set(min(aggregations, key=lambda a: a[0])[2])
    else:
        result = TARGET_LABELS | series_labels.get(metrics[0][1], set())
    if "histogram_quantile" in masked:
        result.discard("le")
    for label in sorted(shown - result):
        problems.append(f"shows {label!r}, which the result does not carry (it has {sorted(result)})")
    return problems


def used_labels(series_labels: dict[str, set[str]], alerts_text: str,
                dashboard_text: str) -> tuple[dict[str, list[str]], int]:
    """Every rule's, panel's and variable's label problems against the live series, and how
    many label names were read from them (selectors apart)."""
    problems: dict[str, list[str]] = {}
    named = 0
    rules = yaml.safe_load(alerts_text)
    for group in rules["groups"]:
        for rule in group["rules"]:
            text = " ".join(rule.get("annotations", {}).values())
            shown = set(TEMPLATE_LABEL.findall(text))
            named += len(shown)
            found = label_problems(rule["expr"], shown, series_labels)
            if found:
                problems[f"alert {rule['alert']}"] = found
    dash = json.loads(dashboard_text)
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$__rate_interval", "5m")
            shown = set(LEGEND_LABEL.findall(target.get("legendFormat", "")))
            named += len(shown)
            found = label_problems(expr, shown, series_labels)
            if found:
                problems[f"panel {panel['title']} {target['refId']}"] = found
    for var in dash["templating"]["list"]:
        if var["type"] != "query":
            continue
        m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", var["query"]["query"])
        assert m, var["query"]["query"]
        metric, label = m.groups()
        named += 1
        if label not in TARGET_LABELS | series_labels.get(metric, set()):
            problems[f"variable {var['name']}"] = [f"{metric} has no label {label!r}"]
    return problems, named


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
    series_labels: dict[str, set[str]] = {}

    def scrape(url: str) -> None:
        status, text, _ = http("GET", url + "/metrics")
        assert status == 200
        seen.update(exported(text))
        for name, names in labels_of_series(text).items():
            series_labels.setdefault(name, set()).update(names)

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
            scrape(r.url)
        status, body, _ = http("POST", router.url + "/collections/m/cluster",
                               {"start_resharding": {"direction": "down"}})
        assert status == 200, body
        deadline = time.monotonic() + 30
        while "vector_router_resharding_points_moved" not in seen and time.monotonic() < deadline:
            scrape(router.url)

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
            scrape(r.url)
    finally:
        codes = [r.stop() for r in reversed(routers)]
    assert codes == [0] * len(codes)
    missing = {n: sorted(set(w)) for n, w in used.items()
               if n not in seen and n not in PROMETHEUS_MADE}
    assert not missing, f"named but not exported: {missing}"

    # Labels: every one a rule, panel or variable names is on the live series.
    alerts_text = (MONITORING / "alerts.yml").read_text()
    dashboard_text = DASHBOARD.read_text()
    problems, named = used_labels(series_labels, alerts_text, dashboard_text)
    assert not problems, f"labels not on the live series: {problems}"
    assert named >= 50, named
    # The check is not vacuous: a misspelt alert label, legend and variable in the files
    # themselves are found ...
    broken, _ = used_labels(
        series_labels, alerts_text.replace("$labels.node }}", "$labels.nodes }}"),
        dashboard_text.replace("hedged reads {{node}}", "hedged reads {{nodes}}")
        .replace("label_values(vector_router_collection_points, collection)",
                 "label_values(vector_router_collection_points, colection)"))
    assert set(broken) == {"alert VectorRouterClusterNodeDown", "alert VectorRouterClusterReplicaDown",
                           "panel Requests shed and hedged reads B", "variable collection"}, broken
    # ... and so are a misspelt matcher, grouping and a label an aggregation drops.
    expr = 'sum by (collection) (vector_router_collection_points{collection=~"a{2}|}"})'
    assert label_problems(expr, {"collection"}, series_labels) == []
    assert label_problems(expr.replace("collection=~", "colection=~"), set(), series_labels)
    assert label_problems(expr.replace("by (collection)", "by (colection)"), set(), series_labels)
    assert label_problems(expr, {"node"}, series_labels)
    assert label_problems("vector_router_cluster_node_up == 0", {"node", "instance"},
                          series_labels) == []
    assert label_problems('histogram_quantile(0.99, sum by (le) (rate('
                          'vector_router_search_duration_seconds_bucket[5m])))', {"le"},
                          series_labels)
    for unfollowed in ("sum(sum by (collection) (vector_router_collection_points))",
                       "vector_router_wal_bytes / on (instance) vector_router_collection_points",
                       "sum(vector_router_wal_bytes) by (collection)"):
        with pytest.raises(AssertionError, match="not followed"):
            label_problems(unfollowed, {"collection"}, series_labels)


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

"""deploy/compose and deploy/Containerfile: the compose files against the Compose
Specification's schema (compose-spec.json beside this file, from github.com/compose-spec/
compose-spec, schema/compose-spec.json at 170098b), what they name (images, files, services,
ports, the router's flags and variables), the cluster file's topology started here as it
configures it, and the image's health check run against a router."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time
from pathlib import Path

import jsonschema
import pytest
import yaml

from conftest import (DEPLOY, REPO, free_port, http, router_env_names, start_router,
                      wait_ready)

COMPOSE = DEPLOY / "compose"
FILES = sorted(COMPOSE.glob("*.yml"))
OUR_IMAGE = "vector-router:0.1.0"
# Each image's listening ports, and what a compose file may pin.
LISTENS = {
    OUR_IMAGE: {6333, 6334},
    "qdrant/qdrant": {6333, 6334},
    "prom/prometheus": {9090},
    "grafana/grafana": {3000},
}


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_there_are_both_topologies():
    assert {f.name for f in FILES} == {"cluster.yml", "qdrant.yml"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_compose_file_follows_the_compose_specification(path):
    schema = json.loads((DEPLOY / "tests" / "compose-spec.json").read_text())
    errors = [f"{list(e.path)}: {e.message}"
              for e in jsonschema.Draft7Validator(schema).iter_errors(load(path))]
    assert not errors, errors


def test_the_schema_check_is_not_vacuous():
    schema = json.loads((DEPLOY / "tests" / "compose-spec.json").read_text())
    doc = load(COMPOSE / "cluster.yml")
    doc["services"]["router"]["portz"] = ["6333:6333"]
    assert list(jsonschema.Draft7Validator(schema).iter_errors(doc))


def image_repo(image: str) -> str:
    return image if image == OUR_IMAGE else image.rsplit(":", 1)[0]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_compose_file_names_what_exists(path):
    doc = load(path)
    services = doc["services"]
    env_names = router_env_names()
    for name, svc in services.items():
        image = svc["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest", f"{name}: pin {image}"
        assert image_repo(image) in LISTENS, f"{name}: {image} is not one of {sorted(LISTENS)}"
        if "build" in svc:
            assert image == OUR_IMAGE
            context = (COMPOSE / svc["build"]["context"]).resolve()
            assert context == REPO, f"{name}: the build context is the repository"
            assert (context / svc["build"]["dockerfile"]).is_file()
        for port in svc.get("ports", []):
            host, container = port.split(":")
            assert int(container) in LISTENS[image_repo(image)], f"{name}: {port}"
        for dep in svc.get("depends_on", []):
            assert dep in services, f"{name} depends on {dep}"
            cond = svc["depends_on"][dep]["condition"] if isinstance(svc["depends_on"], dict) else None
            if cond == "service_healthy":
                assert services[dep]["image"] == OUR_IMAGE, "only our image has a health check"
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE / source).exists(), f"{name}: {source}"
            else:
                assert source in doc["volumes"], f"{name}: volume {source}"
        for config in svc.get("configs", []):
            assert config["source"] in doc["configs"]
        if image == OUR_IMAGE:
            for var in svc["environment"]:
                assert var in env_names, f"{name}: {var} is not read by the router"
    for config in doc.get("configs", {}).values():
        if "file" in config:
            assert (COMPOSE / config["file"]).is_file(), config
    # A router in cluster mode names services of this file, on their gRPC port (a node that
    # is a replica set or a Qdrant cluster: its members joined by `|`), each once.
    for name, svc in services.items():
        nodes = svc.get("environment", {}).get("VR_CLUSTER_NODES")
        if nodes:
            named = [url for node in nodes.split(",") for url in node.split("|")]
            assert len(set(named)) == len(named), f"{name}: {nodes}"
            for url in named:
                m = re.fullmatch(r"http://([a-z0-9-]+):6334", url)
                assert m and m.group(1) in services, f"{name}: {url}"
                assert svc["environment"]["VR_CLUSTER_API_KEY"] == services[m.group(1)]["environment"]["QDRANT__SERVICE__API_KEY"]
    # Replicas of our own name the same first voters, each its own id among them, by the
    # REST URL of a service of this file; a Qdrant cluster's nodes join its first one.
    replicas = {n: s for n, s in services.items() if "VR_REPLICA_ID" in s.get("environment", {})}
    member_lists = {s["environment"]["VR_REPLICA_INITIAL_MEMBERS"] for s in replicas.values()}
    assert len(member_lists) <= 1, member_lists
    for members in member_lists:
        listed = dict(item.split("=", 1) for item in members.split(","))
        assert sorted(listed) == sorted(s["environment"]["VR_REPLICA_ID"] for s in replicas.values())
        for n, svc in replicas.items():
            assert listed[svc["environment"]["VR_REPLICA_ID"]] == f"http://{n}:6333"
    for n, svc in services.items():
        command = svc.get("command", "")
        for peer in re.findall(r"--(?:bootstrap|uri) http://([a-z0-9-]+):6335", command):
            assert peer in services and services[peer]["image"].startswith("qdrant/"), (n, peer)
        if "--uri" in command:
            assert f"--uri http://{n}:6335" in command, n


def test_prometheus_scrapes_the_cluster_files_services():
    doc = load(COMPOSE / "cluster.yml")
    prometheus = yaml.safe_load((DEPLOY / "monitoring" / "prometheus.yml").read_text())
    targets = [t for job in prometheus["scrape_configs"] for sc in job["static_configs"]
               for t in sc["targets"]]
    ours = {n for n, s in doc["services"].items() if s["image"] == OUR_IMAGE}
    assert {t.split(":")[0] for t in targets} == ours
    assert all(t.endswith(":6333") for t in targets)
    key_target = next(c["target"] for c in doc["services"]["prometheus"]["configs"]
                      if c["source"] == "read-only-api-key")
    for job in prometheus["scrape_configs"]:
        # Relative to the configuration file's directory.
        assert "/etc/prometheus/" + job["authorization"]["credentials_file"] == key_target


def resolve(value: str, variables: dict[str, str]) -> str:
    """Compose's ${VAR:?message} interpolation."""
    return re.sub(r"\$\{([A-Z_]+)(?::\?[^}]*)?\}", lambda m: variables[m.group(1)], value)


def test_the_cluster_files_routers_start_and_serve_as_configured(tmp_path):
    """The three nodes as the file configures them (a replica set forming itself), and the
    router over them: a collection created, written and queried through the router is on
    every replica."""
    doc = load(COMPOSE / "cluster.yml")
    variables = {"VR_API_KEY": "full-key-for-compose", "VR_READ_ONLY_API_KEY": "ro-key"}
    services = doc["services"]
    node_names = [n for n in services if n.startswith("node-")]
    image_env = containerfile_env()
    # Each node's REST port, fixed before any starts: the set's members name them.
    rest_ports = {name: free_port() for name in node_names}
    started = {}
    try:
        for name in node_names:
            env = {**image_env, **{k: resolve(v, variables) for k, v in services[name]["environment"].items()}}
            env = {k: v.replace("/data/", f"{tmp_path / name}/") for k, v in env.items()}
            for other, port in rest_ports.items():
                env = {k: v.replace(f"http://{other}:6333", f"http://127.0.0.1:{port}")
                       for k, v in env.items()}
            started[name] = start_router([], env, tmp_path / name, http_port=rest_ports[name])
        env = {**image_env, **{k: resolve(v, variables) for k, v in services["router"]["environment"].items()}}
        env = {k: v.replace("/data/", f"{tmp_path / 'router'}/") for k, v in env.items()}
        for name, node in started.items():
            env["VR_CLUSTER_NODES"] = env["VR_CLUSTER_NODES"].replace(f"{name}:6334", f"127.0.0.1:{node.grpc_port}")
        router = started["router"] = start_router([], env, tmp_path / "router")
        wait_ready(router.url)
        key = variables["VR_API_KEY"]
        status, body, _ = http("PUT", router.url + "/collections/compose",
                               {"vectors": {"size": 2, "distance": "Euclid"}}, key=key)
        assert status == 200, body
        status, body, _ = http("PUT", router.url + "/collections/compose/points?wait=true",
                               {"points": [{"id": i, "vector": [float(i), 0.0]} for i in range(30)]},
                               key=key)
        assert status == 200, body
        status, body, _ = http("POST", router.url + "/collections/compose/points/query",
                               {"query": [10.2, 0.0], "limit": 3}, key=variables["VR_READ_ONLY_API_KEY"])
        assert status == 200, body
        assert [p["id"] for p in body["result"]["points"]] == [10, 11, 9]
        # Every replica holds every point (once it has applied the write).
        for name in node_names:
            node = started[name]
            deadline = time.monotonic() + 30
            while True:
                status, body, _ = http("POST", node.url + "/collections/compose/points/count",
                                       {"exact": True}, key=key)
                if status == 200 and body["result"]["count"] == 30:
                    break
                assert time.monotonic() < deadline, (name, status, body)
                time.sleep(0.1)
    finally:
        codes = {n: r.stop() for n, r in reversed(list(started.items()))}
    assert set(codes.values()) == {0}, codes


def containerfile() -> str:
    return (DEPLOY / "Containerfile").read_text()


def containerfile_env() -> dict[str, str]:
    """The runtime stage's ENV, with /data as the test replaces it."""
    text = containerfile().split("FROM debian")[1].replace("\\\n", " ")
    env = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            for item in shlex.split(line[4:]):
                k, v = item.split("=", 1)
                env[k] = v
    return env


def test_the_image_is_non_root_and_sets_only_what_the_router_reads():
    text = containerfile()
    assert re.search(r"^USER 10001:10001$", text, re.M)
    assert set(containerfile_env()) <= router_env_names()
    for port in re.search(r"^EXPOSE (.*)$", text, re.M).group(1).split():
        assert int(port) in LISTENS[OUR_IMAGE]
    # The build context leaves out build outputs, datasets and venvs.
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {"target/", "data/"} <= set(ignored)


def healthcheck_command() -> list[str]:
    text = containerfile().replace("\\\n", " ")
    m = re.search(r"^HEALTHCHECK .*? CMD (\[.*\])$", text, re.M)
    assert m, "no HEALTHCHECK in exec form"
    return json.loads(m.group(1))


def test_the_images_health_check_passes_on_a_ready_router_and_fails_otherwise(tmp_path):
    command = healthcheck_command()
    router = start_router([], {"QDRANT__STORAGE__STORAGE_PATH": str(tmp_path / "s"),
                               "QDRANT__STORAGE__SNAPSHOTS_PATH": str(tmp_path / "snap"),
                               "QDRANT__SERVICE__API_KEY": "health-key"}, tmp_path)
    port = router.url.rsplit(":", 1)[1]
    try:
        wait_ready(router.url)
        ok = subprocess.run(command, env={"QDRANT__SERVICE__HTTP_PORT": port, "PATH": "/usr/bin:/bin"},
                            capture_output=True, timeout=10)
        assert ok.returncode == 0, ok
    finally:
        assert router.stop() == 0
    # Nothing listens there now.
    down = subprocess.run(command, env={"QDRANT__SERVICE__HTTP_PORT": port, "PATH": "/usr/bin:/bin"},
                          capture_output=True, timeout=10)
    assert down.returncode != 0

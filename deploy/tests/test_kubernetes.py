"""deploy/kubernetes: every object against Kubernetes' schemas (strict: an unknown field
fails), the references between objects, and the workloads started here as their manifests
configure them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from conftest import (DEPLOY, free_port, http, router_env_names, router_flags, start_router,
                      wait_ready)

K8S = DEPLOY / "kubernetes"
# The oldest Kubernetes the manifests claim (autoscaling/v2 and policy/v1 are GA since 1.23;
# the newest the package knows is checked too).
VERSIONS = ["1.28.0", kubernetes_validate.latest_version()]
PROBE_PATHS = {"/readyz", "/livez", "/healthz"}


def documents() -> dict[str, dict]:
    docs = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        loaded = [d for d in yaml.safe_load_all(path.read_text()) if d]
        assert len(loaded) == 1, f"{path.name}: one object a file"
        docs[path.name] = loaded[0]
    return docs


def by_kind(kind: str) -> list[dict]:
    return [d for d in documents().values() if d["kind"] == kind]


@pytest.mark.parametrize("version", VERSIONS)
def test_every_object_validates_strictly(version):
    docs = documents()
    assert {d["kind"] for d in docs.values()} >= {
        "StatefulSet", "Deployment", "Service", "HorizontalPodAutoscaler",
        "PodDisruptionBudget", "Secret", "CronJob", "PersistentVolumeClaim"}
    for name, doc in docs.items():
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{name} against Kubernetes {version}: {e.message} at {list(e.path)}")


def test_a_broken_object_is_refused():
    """The validator is not vacuous: a misspelt field and a wrong type fail."""
    service = documents()["router-service.yaml"]
    bad = {**service, "spec": {**service["spec"], "prots": service["spec"]["ports"]}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, VERSIONS[0], strict=True)
    sts = documents()["node-statefulset.yaml"]
    bad = {**sts, "spec": {**sts["spec"], "replicas": "three"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, VERSIONS[0], strict=True)


def test_the_kustomization_lists_every_object_but_the_example_secret():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == set(documents()) - {"secret.example.yaml"}


def pod_labels(workload: dict) -> dict:
    return workload["spec"]["template"]["metadata"]["labels"]


def containers(workload: dict) -> list[dict]:
    return workload["spec"]["template"]["spec"]["containers"]


def test_references_between_objects_hold():
    workloads = by_kind("StatefulSet") + by_kind("Deployment")
    secret = by_kind("Secret")[0]
    for w in workloads:
        name = w["metadata"]["name"]
        selector = w["spec"]["selector"]["matchLabels"]
        assert selector.items() <= pod_labels(w).items(), f"{name}: selector misses its pods"
        for c in containers(w):
            ports = {p["name"]: p["containerPort"] for p in c["ports"]}
            assert ports == {"http": 6333, "grpc": 6334}, name
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                get = c[probe]["httpGet"]
                assert get["path"] in PROBE_PATHS, f"{name} {probe}"
                assert get["port"] in ports, f"{name} {probe} names no port"
            assert c["resources"]["requests"] and c["resources"]["limits"], name
            keys = [e["valueFrom"]["secretKeyRef"] for e in c["env"]
                    if "secretKeyRef" in e.get("valueFrom", {})]
            fields = [e["valueFrom"]["fieldRef"]["fieldPath"] for e in c["env"]
                      if "fieldRef" in e.get("valueFrom", {})]
            # The pod's ordinal (Kubernetes 1.28 or later), a label a StatefulSet's pods have.
            assert set(fields) <= {"metadata.labels['apps.kubernetes.io/pod-index']"}, fields
            assert not fields or w["kind"] == "StatefulSet", name
            assert any(k["key"] == "api-key" for k in keys), f"{name}: no API key"
            for ref in keys:
                assert ref["name"] == secret["metadata"]["name"], name
                assert ref["key"] in secret["stringData"], f"{name}: {ref['key']}"
            # The image's user (deploy/Containerfile: USER 10001).
            sc = w["spec"]["template"]["spec"]["securityContext"]
            assert sc["runAsUser"] == 10001 and sc["runAsNonRoot"]
    for svc in by_kind("Service"):
        matched = [w for w in workloads
                   if svc["spec"]["selector"].items() <= pod_labels(w).items()]
        assert matched, f"service {svc['metadata']['name']} selects no pods"
        for port in svc["spec"]["ports"]:
            assert all(port["targetPort"] in {p["name"] for c in containers(w) for p in c["ports"]}
                       for w in matched), f"{svc['metadata']['name']}: {port}"
    for pdb in by_kind("PodDisruptionBudget"):
        sel = pdb["spec"]["selector"]["matchLabels"]
        assert any(sel.items() <= pod_labels(w).items() for w in workloads), pdb["metadata"]["name"]
    for hpa in by_kind("HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        assert any(w["kind"] == ref["kind"] and w["metadata"]["name"] == ref["name"]
                   for w in workloads), ref
    sts = by_kind("StatefulSet")[0]
    governing = [s for s in by_kind("Service") if s["metadata"]["name"] == sts["spec"]["serviceName"]]
    assert governing and governing[0]["spec"]["clusterIP"] == "None", "the nodes' DNS names need a headless Service"


def backup_pod(cronjob: dict) -> dict:
    return cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def mounts(container: dict) -> dict[str, str]:
    return {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}


def backup_urls(cronjob: dict) -> list[str]:
    command = backup_pod(cronjob)["containers"][0]["command"]
    return [command[i + 1] for i, a in enumerate(command) if a == "--url"]


def test_the_backup_cronjob_refers_to_what_exists():
    """The script it runs is the one the image carries, the nodes it names are the
    StatefulSet's pods, its key and volume exist, and it runs as the image's user."""
    cronjob = by_kind("CronJob")[0]
    sts = by_kind("StatefulSet")[0]
    secret = by_kind("Secret")[0]
    claims = {c["metadata"]["name"] for c in by_kind("PersistentVolumeClaim")}
    pod = backup_pod(cronjob)
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    assert pod["restartPolicy"] in {"Never", "OnFailure"}
    assert pod["securityContext"]["runAsUser"] == 10001 and pod["securityContext"]["runAsNonRoot"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    (init,) = pod["initContainers"]
    (backup,) = pod["containers"]
    # The init container copies the script out of the router's own image, where the
    # Containerfile puts it, into a volume the backup container mounts.
    assert init["image"] == containers(sts)[0]["image"]
    source, target = init["command"][-2:]
    assert init["command"][0] == "cp"
    containerfile = (DEPLOY / "Containerfile").read_text()
    assert re.search(rf"^COPY deploy/backup/vr-backup {re.escape(source)}$", containerfile, re.M)
    (shared,) = [n for n, path in mounts(init).items() if target.startswith(path + "/")]
    assert volumes[shared].get("emptyDir") is not None
    command = backup["command"]
    assert command[0] == "python3" and command[2] == "backup"
    # The same file, seen through the backup container's mount of that volume.
    assert command[1] == mounts(backup)[shared] + target[len(mounts(init)[shared]):]
    # Python's image, pinned to a version the script supports (3.9 or later).
    m = re.fullmatch(r"python:3\.(\d+)-slim(-\w+)?", backup["image"])
    assert m and int(m.group(1)) >= 9, backup["image"]
    # Every replica of the set, in order, by its REST port.
    name, service = sts["metadata"]["name"], sts["spec"]["serviceName"]
    assert backup_urls(cronjob) == [f"http://{name}-{k}.{service}:6333"
                                    for k in range(sts["spec"]["replicas"])]
    dest = command[command.index("--dest") + 1]
    (claim_volume,) = [n for n, v in volumes.items() if "persistentVolumeClaim" in v]
    assert volumes[claim_volume]["persistentVolumeClaim"]["claimName"] in claims
    assert dest.startswith(mounts(backup)[claim_volume] + "/")
    (ref,) = [e["valueFrom"]["secretKeyRef"] for e in backup["env"] if e["name"] == "VR_API_KEY"]
    assert ref["name"] == secret["metadata"]["name"] and ref["key"] == "api-key"
    for c in (init, backup):
        assert c["resources"]["requests"] and c["resources"]["limits"], c["name"]
        assert c["securityContext"]["readOnlyRootFilesystem"], c["name"]


def node_urls(deployment: dict) -> list[str]:
    """Every replica's gRPC URL the routers list (nodes by commas, replicas by `|`)."""
    args = containers(deployment)[0]["args"]
    return [url for node in args[args.index("--cluster-nodes") + 1].split(",")
            for url in node.split("|")]


def node_env(k: int) -> dict[str, str]:
    """The plain values of the StatefulSet's pod k's environment (the pod-index label read
    as k)."""
    env = {}
    for e in containers(by_kind("StatefulSet")[0])[0]["env"]:
        if "value" in e:
            env[e["name"]] = e["value"]
        elif e["valueFrom"].get("fieldRef", {}).get("fieldPath") == \
                "metadata.labels['apps.kubernetes.io/pod-index']":
            env[e["name"]] = str(k)
    return env


def test_the_routers_name_each_node_of_the_statefulset_once_as_one_replica_set():
    sts = by_kind("StatefulSet")[0]
    deployment = by_kind("Deployment")[0]
    name, service = sts["metadata"]["name"], sts["spec"]["serviceName"]
    expected = [f"http://{name}-{k}.{service}:6334" for k in range(sts["spec"]["replicas"])]
    assert node_urls(deployment) == expected
    args = containers(deployment)[0]["args"]
    assert args[args.index("--cluster-nodes") + 1] == "|".join(expected)
    # Pod k is replica k, and every pod names the same first voters: each pod by its REST
    # URL under the governing Service.
    members = {node_env(k)["VR_REPLICA_INITIAL_MEMBERS"] for k in range(sts["spec"]["replicas"])}
    assert len(members) == 1
    listed = dict(item.split("=", 1) for item in members.pop().split(","))
    assert listed == {str(k): f"http://{name}-{k}.{service}:6333"
                      for k in range(sts["spec"]["replicas"])}
    assert [node_env(k)["VR_REPLICA_ID"] for k in range(3)] == ["0", "1", "2"]


def test_flags_and_environment_are_the_routers():
    flags, env_names = router_flags(), router_env_names()
    for w in by_kind("StatefulSet") + by_kind("Deployment"):
        for c in containers(w):
            for arg in c.get("args", []):
                if arg.startswith("--"):
                    assert arg in flags, f"{w['metadata']['name']}: {arg} is no router flag"
            for e in c["env"]:
                assert e["name"] in env_names, f"{w['metadata']['name']}: {e['name']} is not read"


def container_config(workload: dict, workdir: Path, hosts: dict[str, str],
                     pod_index: int | None = None) -> tuple[list[str], dict]:
    """The container's args and env with secrets resolved from the example Secret, the
    pod-index label read as `pod_index`, /data and /tmp moved under `workdir`, and host names
    replaced as `hosts` says."""
    secret = by_kind("Secret")[0]["stringData"]
    c = containers(workload)[0]
    env = {}
    for e in c["env"]:
        value = e.get("value")
        if value is None and "secretKeyRef" in e["valueFrom"]:
            value = secret[e["valueFrom"]["secretKeyRef"]["key"]]
        elif value is None:
            # The pod-index label: the pod's ordinal.
            assert e["valueFrom"]["fieldRef"]["fieldPath"] == \
                "metadata.labels['apps.kubernetes.io/pod-index']", e
            assert pod_index is not None, e
            value = str(pod_index)
        for host, addr in hosts.items():
            value = value.replace(host, addr)
        env[e["name"]] = value.replace("/data/", f"{workdir}/data/")
    args = list(c.get("args", []))
    for i, a in enumerate(args):
        for host, addr in hosts.items():
            a = a.replace(host, addr)
        args[i] = a
    return args, env


def test_the_nodes_and_a_router_start_and_serve_as_configured(tmp_path):
    sts = by_kind("StatefulSet")[0]
    deployment = by_kind("Deployment")[0]
    secret = by_kind("Secret")[0]["stringData"]
    key, ro_key = secret["api-key"], secret["read-only-api-key"]
    nodes = []
    name, service = sts["metadata"]["name"], sts["spec"]["serviceName"]
    count = sts["spec"]["replicas"]
    # The pods' REST ports, fixed first: the replica set's members name them.
    rest = {f"{name}-{k}.{service}:6333": f"127.0.0.1:{free_port()}" for k in range(count)}
    try:
        for k in range(count):
            args, env = container_config(sts, tmp_path / f"node-{k}", rest, pod_index=k)
            port = int(rest[f"{name}-{k}.{service}:6333"].rsplit(":", 1)[1])
            nodes.append(start_router(args, env, tmp_path / f"node-{k}", http_port=port))
        hosts = {}
        for url, node in zip(node_urls(deployment), nodes):
            hosts[re.match(r"http://([^/]+)", url).group(1)] = f"127.0.0.1:{node.grpc_port}"
        args, env = container_config(deployment, tmp_path / "router", hosts)
        router = start_router(args, env, tmp_path / "router")
        nodes.append(router)
        for r in nodes:
            c = containers(sts if r is not router else deployment)[0]
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                wait_ready(r.url, c[probe]["httpGet"]["path"], deadline_s=10)

        # Keys as the Secret gives them: none is refused, the read-only one reads.
        assert http("GET", router.url + "/collections")[0] == 401
        assert http("GET", router.url + "/metrics", key=ro_key)[0] == 200
        status, body, _ = http("PUT", router.url + "/collections/k8s",
                               {"vectors": {"size": 4, "distance": "Dot"}}, key=key)
        assert status == 200, body
        points = [{"id": i, "vector": [1.0, float(i), 0.0, 0.5], "payload": {"i": i}}
                  for i in range(60)]
        status, body, _ = http("PUT", router.url + "/collections/k8s/points?wait=true",
                               {"points": points}, key=key)
        assert status == 200, body
        status, body, _ = http("POST", router.url + "/collections/k8s/points/query",
                               {"query": [0.0, 1.0, 0.0, 0.0], "limit": 3, "with_payload": True},
                               key=ro_key)
        assert status == 200, body
        assert [p["id"] for p in body["result"]["points"]] == [59, 58, 57]
        # Every replica holds every point, once it has applied the write.
        for node in nodes[:-1]:
            deadline = time.monotonic() + 30
            while True:
                status, body, _ = http("POST", node.url + "/collections/k8s/points/count",
                                       {"exact": True}, key=key)
                if status == 200 and body["result"]["count"] == 60:
                    break
                assert time.monotonic() < deadline, (status, body)
                time.sleep(0.1)

        # The backup CronJob's command and arguments (run by this Python, as this user,
        # the hosts and paths mapped here), with the first replica down: the backup is
        # taken from the set's leader among the others, and verifies.
        assert nodes[0].stop() == 0

        def states() -> dict[str, str]:
            found = {}
            for node in nodes[1:count]:
                status, body, _ = http("GET", node.url + "/cluster/replica", key=key)
                assert status == 200, body
                found[node.url] = body["result"]["state"]
            return found

        # Until the two have a leader of their own (node 0 may have led): a replica is ready
        # while it still knows a leader, even one that has just stopped.
        deadline = time.monotonic() + 30
        while "Leader" not in states().values():
            assert time.monotonic() < deadline, states()
            time.sleep(0.1)
        cronjob = by_kind("CronJob")[0]
        command = list(backup_pod(cronjob)["containers"][0]["command"])
        backups = tmp_path / "backups"
        command[command.index("--dest") + 1] = command[command.index("--dest") + 1].replace(
            "/backups/", f"{backups}/", 1)
        command[:2] = [sys.executable, str(DEPLOY / "backup" / "vr-backup")]
        command = [next((a.replace(h, addr) for h, addr in rest.items() if h in a), a)
                   for a in command]
        # Then with the replicas named in the reverse order, so that in one of the two runs
        # the leader is not the first ready: both back up the leader.
        urls = [i + 1 for i, a in enumerate(command) if a == "--url"]
        reverse = list(command)
        for i, j in zip(urls, reversed(urls)):
            reverse[i] = command[j]
        dest = Path(command[command.index("--dest") + 1])
        for run in (command, reverse):
            before = {p.name for p in dest.iterdir()} if dest.exists() else set()
            ran = subprocess.run(run, env={"VR_API_KEY": key, "PATH": "/usr/bin:/bin"},
                                 capture_output=True, text=True, timeout=300)
            assert ran.returncode == 0, ran.stdout + ran.stderr
            (made,) = [p for p in dest.iterdir()
                       if not p.name.startswith(".") and p.name not in before]
            manifest = json.loads((made / "manifest.json").read_text())
            now = states()
            assert now.get(manifest["source"]) == "Leader", (manifest["source"], now)
            assert manifest["replica"]["state"] == "Leader"
            assert manifest["replica"]["applied_index"] > 0
            assert manifest["collections"]["k8s"]["points"] == 60
            verified = subprocess.run([sys.executable, str(DEPLOY / "backup" / "vr-backup"),
                                       "verify", str(made)], capture_output=True, text=True,
                                      timeout=300)
            assert verified.returncode == 0, verified.stdout + verified.stderr
    finally:
        codes = [n.stop() for n in reversed(nodes)]
    assert codes == [0] * len(codes), codes

"""deploy/backup/vr-backup against real routers: every collection backed up with its
aliases, retention, verification that catches a changed byte, and a restore into a fresh
node that gives back every point (ids, vectors and payloads compared); and its systemd timer
and service, checked by systemd's own `systemd-analyze verify` and run as the unit says."""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import random
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DEPLOY, http, required_tool, start_router, wait_ready

SCRIPT = DEPLOY / "backup" / "vr-backup"
KEY = "backup-test-key"
BACKUP_SERVICE = DEPLOY / "vector-router-backup.service"
BACKUP_TIMER = DEPLOY / "vector-router-backup.timer"
# Where the service's ExecStart expects the script (its install steps put it there).
INSTALLED_SCRIPT = "/usr/local/bin/vr-backup"


def vr_backup(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "VR_API_KEY": KEY}
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=env,
                          capture_output=True, text=True, timeout=300)


def node(tmp_path: Path, name: str):
    d = tmp_path / name
    return start_router([], {"QDRANT__STORAGE__STORAGE_PATH": str(d / "storage"),
                             "QDRANT__STORAGE__SNAPSHOTS_PATH": str(d / "snapshots"),
                             "QDRANT__SERVICE__API_KEY": KEY}, d)


def call(router, method, path, body=None):
    status, answer, _ = http(method, router.url + path, body, key=KEY)
    assert status == 200, (method, path, answer)
    return answer["result"]


def everything(router, collection: str) -> list:
    """Every point with vectors and payload, by id."""
    points, offset = [], None
    while True:
        body = {"limit": 500, "with_vector": True, "with_payload": True}
        if offset is not None:
            body["offset"] = offset
        page = call(router, "POST", f"/collections/{collection}/points/scroll", body)
        points += page["points"]
        offset = page.get("next_page_offset")
        if offset is None:
            return sorted(points, key=lambda p: str(p["id"]))


def fill(router) -> None:
    rng = random.Random(7)
    call(router, "PUT", "/collections/films", {
        "vectors": {"image": {"size": 8, "distance": "Cosine"},
                    "text": {"size": 5, "distance": "Dot"}},
        "hnsw_config": {"m": 8, "ef_construct": 32},
    })
    call(router, "PUT", "/collections/films/index", {"field_name": "genre", "field_schema": "keyword"})
    points = [{"id": i,
               "vector": {"image": [rng.uniform(-1, 1) for _ in range(8)],
                          "text": [rng.uniform(-1, 1) for _ in range(5)]},
               "payload": {"genre": rng.choice(["drama", "comedy", "noir"]), "year": 1950 + i % 70,
                           "title": f"film {i}", "tags": [f"t{i % 7}", f"t{i % 3}"]}}
              for i in range(1200)]
    for start in range(0, len(points), 400):
        call(router, "PUT", "/collections/films/points?wait=true", {"points": points[start:start + 400]})
    call(router, "POST", "/collections/films/points/delete?wait=true", {"points": [5, 6, 7]})
    call(router, "PUT", "/collections/notes", {"vectors": {"size": 3, "distance": "Euclid"}})
    call(router, "PUT", "/collections/notes/points?wait=true", {"points": [
        {"id": "5c56c793-69f3-4fbf-87e6-c4bf54c28c26", "vector": [0.5, -1.0, 2.0], "payload": {"n": 1}},
        {"id": 42, "vector": [1e-7, 3.25, -0.125], "payload": {"text": "é ü ✓"}},
    ]})
    call(router, "POST", "/collections/aliases", {"actions": [
        {"create_alias": {"collection_name": "films", "alias_name": "movies"}}]})


def test_backup_verify_retention_and_restore_into_a_fresh_node(tmp_path):
    source = node(tmp_path, "source")
    target = None
    try:
        wait_ready(source.url)
        fill(source)
        dest = tmp_path / "backups"
        runs, made = [], []
        for _ in range(3):
            out = vr_backup("backup", "--url", source.url, "--dest", str(dest), "--keep", "2")
            assert out.returncode == 0, out.stdout + out.stderr
            runs.append(out)
            made.append(out.stdout.split("backup complete: ")[1].split()[0])
        # The oldest went, the two newest stayed.
        assert f"retention: removed {made[0]}" in runs[2].stdout
        listed = vr_backup("list", "--dest", str(dest))
        assert listed.returncode == 0
        backups = sorted(p for p in dest.iterdir() if not p.name.startswith("."))
        assert [str(b) for b in backups] == made[1:]
        assert len(listed.stdout.splitlines()) == 2
        newest = backups[-1]
        manifest = json.loads((newest / "manifest.json").read_text())
        assert set(manifest["collections"]) == {"films", "notes"}
        assert manifest["collections"]["films"]["points"] == 1197
        assert manifest["aliases"] == [{"alias_name": "movies", "collection_name": "films"}]
        # The server's copies are gone: a backup does not fill the node's disk.
        assert call(source, "GET", "/collections/films/snapshots") == []

        ok = vr_backup("verify", str(newest))
        assert ok.returncode == 0, ok.stderr

        # One byte changed in a copy of the backup: verify and restore refuse it.
        broken = tmp_path / "broken"
        subprocess.run(["cp", "-r", str(newest), str(broken)], check=True)
        file = broken / manifest["collections"]["films"]["file"]
        data = bytearray(file.read_bytes())
        data[len(data) // 2] ^= 0x01
        file.write_bytes(bytes(data))
        bad = vr_backup("verify", str(broken))
        assert bad.returncode == 1 and "films: SHA-256" in bad.stderr, bad.stderr

        target = node(tmp_path, "target")
        wait_ready(target.url)
        refused = vr_backup("restore", "--url", target.url, "--from", str(broken))
        assert refused.returncode == 1
        assert call(target, "GET", "/collections")["collections"] == []

        restored = vr_backup("restore", "--url", target.url, "--from", str(newest), "--expect-counts")
        assert restored.returncode == 0, restored.stdout + restored.stderr
        for collection in ("films", "notes"):
            assert everything(target, collection) == everything(source, collection), collection
            assert (call(target, "GET", f"/collections/{collection}")["config"]
                    == call(source, "GET", f"/collections/{collection}")["config"])
        assert call(target, "GET", "/aliases") == call(source, "GET", "/aliases")
        # The payload index came back with the collection.
        assert "genre" in call(target, "GET", "/collections/films")["payload_schema"]
        # And the restored collection answers queries as the source does.
        query = {"query": [0.1] * 8, "using": "image", "limit": 5,
                 "filter": {"must": [{"key": "genre", "match": {"value": "noir"}}]}}
        assert (call(target, "POST", "/collections/films/points/query", query)
                == call(source, "POST", "/collections/films/points/query", query))

        # A second restore over what exists is refused without --overwrite, and goes with it.
        again = vr_backup("restore", "--url", target.url, "--from", str(newest))
        assert again.returncode == 1 and "--overwrite" in again.stderr
        call(target, "PUT", "/collections/notes/points?wait=true",
             {"points": [{"id": 7, "vector": [1.0, 1.0, 1.0]}]})
        again = vr_backup("restore", "--url", target.url, "--from", str(newest), "--overwrite")
        assert again.returncode == 0, again.stderr
        assert everything(target, "notes") == everything(source, "notes")
        # A name that is an alias on the target would replace the collection behind it:
        # refused, even with --overwrite.
        call(target, "DELETE", "/collections/notes")
        call(target, "POST", "/collections/aliases", {"actions": [
            {"create_alias": {"collection_name": "films", "alias_name": "notes"}}]})
        behind = vr_backup("restore", "--url", target.url, "--from", str(newest),
                           "--collection", "notes", "--overwrite")
        assert behind.returncode == 1 and "is an alias" in behind.stderr
        assert everything(target, "films") == everything(source, "films")
    finally:
        codes = [r.stop() for r in (source, target) if r is not None]
    assert codes == [0] * len(codes)


def test_an_interrupted_backup_never_counts_and_bad_input_fails_clearly(tmp_path):
    source = node(tmp_path, "source")
    try:
        wait_ready(source.url)
        call(source, "PUT", "/collections/c", {"vectors": {"size": 2, "distance": "Dot"}})
        dest = tmp_path / "backups"
        (dest / ".partial-leftover").mkdir(parents=True)
        (dest / ".partial-leftover" / "0000.snapshot").write_bytes(b"half")
        out = vr_backup("backup", "--url", source.url, "--dest", str(dest), "--collection", "c")
        assert out.returncode == 0, out.stderr
        assert not (dest / ".partial-leftover").exists()
        assert len([p for p in dest.iterdir() if not p.name.startswith(".")]) == 1
        # A run while another holds the directory is refused, and removes nothing.
        with open(dest / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            (dest / ".partial-other").mkdir()
            busy = vr_backup("backup", "--url", source.url, "--dest", str(dest))
            assert busy.returncode == 1 and "another vr-backup run" in busy.stderr
            assert (dest / ".partial-other").exists()
        # A wrong key, a collection that does not exist, a directory that is no backup.
        wrong = subprocess.run([sys.executable, str(SCRIPT), "backup", "--url", source.url,
                                "--dest", str(dest)], env={**os.environ, "VR_API_KEY": "nope"},
                               capture_output=True, text=True, timeout=60)
        assert wrong.returncode == 1 and "HTTP 401" in wrong.stderr
        missing = vr_backup("backup", "--url", source.url, "--dest", str(dest), "--collection", "zz")
        assert missing.returncode == 1 and "no such collection: zz" in missing.stderr
        assert vr_backup("verify", str(tmp_path)).returncode == 1
        assert vr_backup("backup", "--url", source.url, "--dest", str(dest), "--keep", "-1").returncode == 2
    finally:
        assert source.stop() == 0


def test_retention_by_age_keeps_the_newest_and_the_last_copy_of_each_collection(tmp_path):
    source = node(tmp_path, "source")
    try:
        wait_ready(source.url)
        call(source, "PUT", "/collections/a", {"vectors": {"size": 2, "distance": "Dot"}})
        call(source, "PUT", "/collections/a/points?wait=true",
             {"points": [{"id": 1, "vector": [1.0, 2.0]}]})
        dest = tmp_path / "backups"

        def run(*extra):
            out = vr_backup("backup", "--url", source.url, "--dest", str(dest), *extra)
            assert out.returncode == 0, out.stdout + out.stderr
            return out.stdout.split("backup complete: ")[1].split()[0]

        def age(backup, days):
            path = Path(backup) / "manifest.json"
            m = json.loads(path.read_text())
            m["created"] = (datetime.datetime.now(datetime.timezone.utc)
                            - datetime.timedelta(days=days)).isoformat()
            path.write_text(json.dumps(m))

        def left():
            return sorted(str(p) for p in dest.iterdir() if not p.name.startswith("."))

        first, second = run("--keep", "0"), run("--keep", "0")
        age(first, 40)
        age(second, 35)
        # Fewer backups than --keep-min: nothing goes, however old.
        third = run("--keep", "0", "--max-age-days", "30", "--keep-min", "10")
        assert left() == [first, second, third]
        # Past the age, beyond the newest --keep-min: the two old ones go.
        age(third, 31)
        fourth = run("--keep", "0", "--max-age-days", "30", "--keep-min", "1")
        assert left() == [fourth]

        # The node comes back empty: its empty backups never push out the last copy of `a`.
        call(source, "DELETE", "/collections/a")
        fifth = run("--keep", "1")
        sixth = run("--keep", "1")
        assert left() == [fourth, sixth]
        assert json.loads((Path(sixth) / "manifest.json").read_text())["collections"] == {}
        assert fifth not in left()
    finally:
        assert source.stop() == 0


def test_restore_refuses_names_the_target_holds_before_writing_anything(tmp_path):
    source, target = node(tmp_path, "source"), node(tmp_path, "target")
    try:
        wait_ready(source.url)
        wait_ready(target.url)
        call(source, "PUT", "/collections/films", {"vectors": {"size": 2, "distance": "Dot"}})
        call(source, "PUT", "/collections/films/points?wait=true",
             {"points": [{"id": 1, "vector": [1.0, 0.0]}, {"id": 2, "vector": [0.0, 1.0]}]})
        call(source, "POST", "/collections/aliases", {"actions": [
            {"create_alias": {"collection_name": "films", "alias_name": "movies"}}]})
        out = vr_backup("backup", "--url", source.url, "--dest", str(tmp_path / "b"))
        assert out.returncode == 0, out.stderr
        backup = out.stdout.split("backup complete: ")[1].split()[0]

        # The backup's alias names a collection on the target: refused even with
        # --overwrite, and nothing is uploaded.
        call(target, "PUT", "/collections/movies", {"vectors": {"size": 2, "distance": "Dot"}})
        for extra in ([], ["--overwrite"]):
            out = vr_backup("restore", "--url", target.url, "--from", backup, *extra)
            assert out.returncode == 1 and "movies is a collection" in out.stderr, out.stderr
            names = [c["name"] for c in call(target, "GET", "/collections")["collections"]]
            assert names == ["movies"]

        # The alias exists there, pointing elsewhere: refused without --overwrite, moved with it.
        call(target, "DELETE", "/collections/movies")
        call(target, "PUT", "/collections/other", {"vectors": {"size": 2, "distance": "Dot"}})
        call(target, "POST", "/collections/aliases", {"actions": [
            {"create_alias": {"collection_name": "other", "alias_name": "movies"}}]})
        out = vr_backup("restore", "--url", target.url, "--from", backup)
        assert out.returncode == 1 and "alias movies" in out.stderr, out.stderr
        assert sorted(c["name"] for c in call(target, "GET", "/collections")["collections"]) == ["other"]
        out = vr_backup("restore", "--url", target.url, "--from", backup, "--overwrite", "--expect-counts")
        assert out.returncode == 0, out.stdout + out.stderr
        aliases = call(target, "GET", "/aliases")["aliases"]
        assert aliases == [{"alias_name": "movies", "collection_name": "films"}]
        assert everything(target, "films") == everything(source, "films")
    finally:
        codes = [r.stop() for r in (source, target)]
    assert codes == [0, 0]


def unit_settings(path: Path) -> dict[str, list[str]]:
    """A unit file's settings, each key with its values in order (sections merged: the keys
    read here occur in one section each)."""
    settings: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;[":
            continue
        key, value = line.split("=", 1)
        settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def systemd_analyze() -> str:
    return required_tool("systemd-analyze", "VR_REQUIRE_SYSTEMD_ANALYZE", "systemd")


def verify_units(directory: Path, service_text: str, timer_text: str) -> subprocess.CompletedProcess:
    """`systemd-analyze verify` on copies of the two units in `directory`, the service's
    script where this checkout has it (verify requires an executable that exists)."""
    service = directory / BACKUP_SERVICE.name
    timer = directory / BACKUP_TIMER.name
    service.write_text(service_text.replace(INSTALLED_SCRIPT, str(SCRIPT)))
    timer.write_text(timer_text)
    return subprocess.run([systemd_analyze(), "verify", str(service), str(timer)],
                          capture_output=True, text=True, timeout=60)


def test_systemd_accepts_the_backup_timer_and_service(tmp_path):
    service_text, timer_text = BACKUP_SERVICE.read_text(), BACKUP_TIMER.read_text()
    assert INSTALLED_SCRIPT in unit_settings(BACKUP_SERVICE)["ExecStart"][0]
    out = verify_units(tmp_path, service_text, timer_text)
    # Nothing said: an unknown key or a value systemd cannot parse is only a warning.
    said = [line for line in (out.stdout + out.stderr).splitlines() if "vector-router-backup" in line]
    assert out.returncode == 0 and not said, out.stdout + out.stderr
    assert "Unknown key" not in out.stdout + out.stderr, out.stdout + out.stderr
    for spec in unit_settings(BACKUP_TIMER)["OnCalendar"]:
        cal = subprocess.run([systemd_analyze(), "calendar", spec], capture_output=True,
                             text=True, timeout=60)
        assert cal.returncode == 0, cal.stdout + cal.stderr
    # The check is not vacuous: a misspelt key and a bad calendar are named.
    broken = tmp_path / "broken"
    broken.mkdir()
    out = verify_units(broken, service_text.replace("Type=oneshot", "Typ=oneshot"),
                       timer_text.replace("Persistent=", "Persistant=").replace("03:15", "27:15"))
    said = out.stdout + out.stderr
    assert "Unknown key 'Typ'" in said and "Unknown key 'Persistant'" in said, said
    assert "Failed to parse calendar specification" in said, said


def test_the_backup_service_runs_as_its_unit_says(tmp_path):
    """The service's ExecStart, run here by this Python as this user against a router on
    another port and into a temporary directory, twice: two backups that verify. The unit
    itself is checked to run as the router's user, into the directory systemd makes for it
    (StateDirectory), at the address router.toml sets."""
    settings = unit_settings(BACKUP_SERVICE)
    router_unit = unit_settings(DEPLOY / "vector-router.service")
    assert settings["Type"] == ["oneshot"]
    assert settings["User"] == router_unit["User"]
    command = shlex.split(settings["ExecStart"][0])
    assert command[0] == INSTALLED_SCRIPT and command[1] == "backup"
    dest = command[command.index("--dest") + 1]
    assert dest == "/var/lib/" + settings["StateDirectory"][0]
    url = command[command.index("--url") + 1]
    # The router's own address and port as its example configuration sets them.
    assert re.match(r"http://127\.0\.0\.1:6333$", url), url
    config = (DEPLOY / "router.toml").read_text()
    assert re.search(r"^http_port\s*=\s*6333\b", config, re.M), "router.toml's port changed"
    assert re.search(r'^host\s*=\s*"127\.0\.0\.1"', config, re.M), "router.toml's host changed"
    assert settings["EnvironmentFile"], "the key comes from an environment file"

    source = node(tmp_path, "source")
    try:
        wait_ready(source.url)
        call(source, "PUT", "/collections/timer", {"vectors": {"size": 3, "distance": "Cosine"}})
        call(source, "PUT", "/collections/timer/points?wait=true",
             {"points": [{"id": i, "vector": [1.0, i / 10, 0.5]} for i in range(40)]})
        local = tmp_path / "state"
        run = [sys.executable, str(SCRIPT), *command[1:]]
        run[run.index("--url") + 1] = source.url
        run[run.index("--dest") + 1] = str(local)
        for _ in range(2):
            # The environment file's one line, VR_API_KEY=..., as systemd would load it.
            out = subprocess.run(run, env={"PATH": os.environ["PATH"], "VR_API_KEY": KEY},
                                 capture_output=True, text=True, timeout=300)
            assert out.returncode == 0, out.stdout + out.stderr
    finally:
        assert source.stop() == 0
    made = sorted(p for p in local.iterdir() if not p.name.startswith("."))
    assert len(made) == 2
    for backup in made:
        manifest = json.loads((backup / "manifest.json").read_text())
        assert manifest["collections"]["timer"]["points"] == 40
        out = vr_backup("verify", str(backup))
        assert out.returncode == 0, out.stdout + out.stderr

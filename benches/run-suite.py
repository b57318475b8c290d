#!/usr/bin/env python3
"""The benchmark suite: on one dataset (glove-50-angular by default), in one sitting,

1. our HNSW index in-process (`cargo run -p vr-benches --example hnsw`, one search thread),
2. the peers of ../shared/bench/peers.py (hnswlib, FAISS HNSW, usearch; one search thread),
3. our router over HTTP, measured by `loadtest` (and, with --qdrant-url, a Qdrant server
   measured by the very same command),

then writes the markdown tables of docs/benchmarks.md to OUT/suite.md: machine, versions,
the exact commands, the date, and a side-by-side "best QPS at recall >= level" table.

    benches/run-suite.py                                   # full: ~45 min on glove-50-angular
    benches/run-suite.py --data data/glove-50-angular-100000 --quick      # a few minutes
    benches/run-suite.py --qdrant-url http://127.0.0.1:6333               # adds Qdrant over HTTP
    benches/run-suite.py --skip-peers --skip-inprocess                    # HTTP only

Run from the repository root. Steps run one after another (never in parallel), so that each
has the machine to itself; compare ratios within one sitting, not figures across days. A step
that fails is reported in suite.md with its error and the others still run; the exit status
is then 1. Nothing is appended to docs/benchmarks.md unless --append-to names it. Over HTTP
the collection `suite` (--collection) is replaced if it exists and deleted at the end.
"""
import argparse
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time

LEVELS = (0.90, 0.95, 0.99)
FULL_EF = [10, 16, 20, 32, 40, 64, 80, 128, 160, 256, 512]  # peers.py's grid
QUICK_EF = [16, 64, 128]
PEERS_FULL = r"^(hnswlib|faiss-hnsw|usearch-f32)$"


def log(msg):
    print(f"[suite {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Step:
    """One command: its line for the report, its output, and whether it worked."""

    def __init__(self, name, cmd, env=None):
        self.name, self.cmd, self.env = name, cmd, env
        self.stdout, self.error, self.seconds = "", None, 0.0

    def line(self):
        prefix = "".join(f"{k}={shlex.quote(v)} " for k, v in (self.env or {}).items())
        return prefix + " ".join(shlex.quote(str(c)) for c in self.cmd)

    def run(self, timeout):
        log(f"{self.name}: {self.line()}")
        env = dict(os.environ, **(self.env or {}))
        start = time.time()
        try:
            p = subprocess.run([str(c) for c in self.cmd], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, timeout=timeout)
            self.stdout = p.stdout
            if p.returncode != 0:
                self.error = f"exit {p.returncode}: {p.stderr.strip()[-800:]}"
        except subprocess.TimeoutExpired:
            self.error = f"timed out after {timeout} s"
        except OSError as e:
            self.error = str(e)
        self.seconds = time.time() - start
        log(f"{self.name}: {'ok' if not self.error else self.error} ({self.seconds:.0f} s)")
        return self.error is None


def machine():
    cpu = "unknown CPU"
    flags = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and cpu == "unknown CPU":
                    cpu = line.split(":", 1)[1].strip()
                if line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(next(l for l in f if l.startswith("MemTotal")).split()[1])
            mem = f", {kb / 2**20:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    isa = [name for name, flag in [("AVX2", "avx2"), ("AVX-512F", "avx512f"),
                                   ("AVX-512 VNNI", "avx512_vnni")] if flag in flags]
    return f"{cpu}, {os.cpu_count()} vCPUs{mem}" + (f", {'/'.join(isa)}" if isa else "") \
        + f"; {platform.system()} {platform.release()}"


def output_of(cmd):
    try:
        return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def peer_versions(python):
    code = ("import importlib.metadata as m\n"
            "for p in ('hnswlib','faiss-cpu','usearch'):\n"
            "    try: print(p, m.version(p))\n"
            "    except Exception: pass\n")
    return ", ".join(output_of([python, "-c", code]).splitlines())


def best_at_levels(rows):
    """rows: (knob, recall, qps) -> {level: (qps, knob)} of the fastest row at recall >= level."""
    best = {}
    for level in LEVELS:
        ok = [r for r in rows if r[1] >= level]
        if ok:
            knob, _, qps = max(ok, key=lambda r: r[2])
            best[level] = (qps, knob)
    return best


def parse_inprocess(stdout):
    """The `| ef | recall@10 | QPS |` table of the hnsw example."""
    rows = []
    for line in stdout.splitlines():
        m = re.match(r"\|\s*(\d+)\s*\|\s*([0-9.]+)\s*\|\s*([0-9.]+)\s*\|", line)
        if m:
            rows.append((int(m.group(1)), float(m.group(2)), float(m.group(3))))
    return rows


def parse_peers_csv(path):
    import csv
    groups = {}
    try:
        with open(path) as f:
            for r in csv.DictReader(f):
                key = f"{r['library']} {r['config']}"
                groups.setdefault(key, []).append(
                    (r["knob"], float(r["recall10"]), float(r["qps_1thread"])))
    except (OSError, KeyError, ValueError):
        pass
    return groups


def start_router(binary, data_dir):
    """Starts the router on a free port; returns (process, "host:port")."""
    proc = subprocess.Popen([binary, "--host", "127.0.0.1", "--http-port", "0",
                             "--storage-path", os.path.join(data_dir, "storage"),
                             "--snapshots-path", os.path.join(data_dir, "snapshots")],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    found = {}

    def read():
        for line in proc.stdout:  # keep draining, so the router never blocks on the pipe
            m = re.match(r"listening on http://(\S+)", line.strip())
            if m and "addr" not in found:
                found["addr"] = m.group(1)
    threading.Thread(target=read, daemon=True).start()
    deadline = time.time() + 60
    while time.time() < deadline and "addr" not in found and proc.poll() is None:
        time.sleep(0.1)
    if "addr" not in found:
        proc.kill()
        raise RuntimeError("the router printed no `listening on` line within 60 s")
    return proc, found["addr"]


def loadtest_rows(report_path):
    with open(report_path) as f:
        report = json.load(f)
    rows = []
    for run in report["runs"]:
        if run.get("recall") and run.get("latency"):
            knob = run.get("param_value")
            rows.append((knob, run["recall"]["mean"], run["qps"], run["latency"]))
    return report, rows


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/glove-50-angular")
    ap.add_argument("--out", default=None, help="default target/suite-<UTC time>")
    ap.add_argument("--quick", action="store_true",
                    help=f"ef {QUICK_EF}, 1000 queries, peers.py --quick: minutes, not an hour")
    ap.add_argument("--ef", default=None, help="comma-separated ef grid (default: peers.py's)")
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ef-construct", type=int, default=200)
    ap.add_argument("--clients", type=int, default=2, help="loadtest closed-loop clients")
    ap.add_argument("--peers", default=PEERS_FULL, help="peers.py --only regex")
    ap.add_argument("--python", default="data/peers-venv/bin/python", help="peers' venv python")
    ap.add_argument("--peers-script", default="../shared/bench/peers.py")
    ap.add_argument("--qdrant-url", default=None, help="also measure this Qdrant server")
    ap.add_argument("--collection", default="suite",
                    help="collection loadtest creates (replaced if it exists, deleted after)")
    ap.add_argument("--skip-build", action="store_true")
    ap.add_argument("--skip-inprocess", action="store_true")
    ap.add_argument("--skip-peers", action="store_true")
    ap.add_argument("--skip-http", action="store_true")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds per step")
    ap.add_argument("--append-to", default=None, help="append suite.md to this file too")
    a = ap.parse_args()

    started = datetime.datetime.now(datetime.timezone.utc)
    out = a.out or os.path.join("target", "suite-" + started.strftime("%Y%m%dT%H%M%SZ"))
    os.makedirs(out, exist_ok=True)
    efs = [int(x) for x in a.ef.split(",")] if a.ef else (QUICK_EF if a.quick else FULL_EF)
    ef_list = ",".join(map(str, efs))
    queries = ["--queries", "1000"] if a.quick else []
    max_queries = ["--max-queries", "1000"] if a.quick else []
    steps, failures = [], []

    def step(name, cmd, env=None):
        s = Step(name, cmd, env)
        steps.append(s)
        if not s.run(a.timeout):
            failures.append(s)
        return s

    if not a.skip_build:
        # One package per command, so that a crate that does not build stops only its own step.
        for what in (["-p", "vr-benches", "--example", "hnsw"], ["-p", "loadtest"],
                     ["-p", "router"]):
            step("build " + what[1], ["cargo", "build", "--release"] + what)

    inprocess = None
    if not a.skip_inprocess:
        inprocess = step("in-process", ["target/release/examples/hnsw", "--data", a.data,
                                        "--m", a.m, "--ef-construct", a.ef_construct,
                                        "--ef", ef_list] + queries)

    peers = None
    peers_csv = os.path.join(out, "peers.csv")
    if not a.skip_peers:
        peers = step("peers", [a.python, a.peers_script, "--data", a.data, "--out", peers_csv,
                               "--only", a.peers] + (["--quick"] if a.quick else []))

    http_runs = []  # (label, step, report dir)
    if not a.skip_http:
        targets = []
        router_proc = None
        tmp = tempfile.mkdtemp(prefix="suite-router-")
        try:
            router_proc, addr = start_router("target/release/router", tmp)
            targets.append(("ours (router)", f"http://{addr}"))
        except (OSError, RuntimeError) as e:
            s = Step("router", ["target/release/router", "--http-port", "0"])
            s.error = str(e)
            steps.append(s)
            failures.append(s)
        if a.qdrant_url:
            targets.append(("Qdrant", a.qdrant_url))
        for label, url in targets:
            report_dir = os.path.join(out, "http-" + re.sub(r"\W+", "-", label).strip("-"))
            s = step(f"http {label}", [
                "target/release/loadtest", "--url", url, "--dataset", a.data,
                "--collection", a.collection, "--recreate", "--drop-after",
                "--m", a.m, "--ef-construct", a.ef_construct,
                "--sweep", f"hnsw_ef={ef_list}", "--clients", a.clients,
                "--duration", "120", "--quiet", "--out", report_dir] + max_queries)
            http_runs.append((label, s, report_dir))
        if router_proc is not None:
            router_proc.terminate()
            try:
                router_proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                router_proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)

    # ---------------------------------------------------------------- the tables
    md = []
    title = os.path.basename(os.path.normpath(a.data))
    md.append(f"## Suite on {title}, {started.strftime('%Y-%m-%d %H:%M')} UTC"
              + (" (quick settings)" if a.quick else ""))
    md.append("")
    commit = output_of(["git", "rev-parse", "--short", "HEAD"])
    dirty = " (with uncommitted changes)" if output_of(["git", "status", "--porcelain"]) else ""
    md.append(f"Machine: {machine()}.")
    md.append(f"Versions: {output_of(['rustc', '-V'])}, commit {commit}{dirty}"
              + (f"; peers: {peer_versions(a.python)}" if not a.skip_peers else "") + ".")
    md.append(f"HNSW M = {a.m}, ef_construct = {a.ef_construct}; ef grid {ef_list}.")
    md.append("")
    md.append("```sh")
    md.append(" ".join(shlex.quote(x) for x in [sys.executable, *sys.argv]))
    md.extend(s.line() for s in steps if s.name != "router")
    md.append("```")
    md.append("")

    side = []  # (who, threads note, {level: (qps, knob)})
    if inprocess is not None:
        md.append("### Ours in-process (one search thread)")
        md.append("")
        if inprocess.error:
            md.append(f"Not measured: {inprocess.error}")
        else:
            keep = [l for l in inprocess.stdout.splitlines()
                    if l.startswith(("dataset", "build", "RSS", "|", "best"))]
            md.extend(keep)
            side.append(("ours HNSW f32, in-process", "1 thread",
                         best_at_levels(parse_inprocess(inprocess.stdout))))
        md.append("")
    if peers is not None:
        md.append("### Peers (peers.py, one search thread)")
        md.append("")
        if peers.error:
            md.append(f"Not measured: {peers.error}")
        summary = peers.stdout[peers.stdout.find("| library"):] if "| library" in peers.stdout else ""
        md.append(summary.strip())
        for who, rows in sorted(parse_peers_csv(peers_csv).items()):
            side.append((who, "1 thread", best_at_levels(rows)))
        md.append("")
    for label, s, report_dir in http_runs:
        md.append(f"### {label} over HTTP (loadtest, closed loop, {a.clients} clients "
                  f"on the same {os.cpu_count()} cores as the server)")
        md.append("")
        if s.error:
            md.append(f"Not measured: {s.error}")
            md.append("")
            continue
        report, rows = loadtest_rows(os.path.join(report_dir, "report.json"))
        load = report.get("load") or {}
        if load:
            md.append(f"Upload: {load['points']:,} points in {load['upload_s']:.1f} s "
                      f"({load['upload_points_per_s']:,.0f} points/s, batches of "
                      f"{load['batch_size']}); green {load['time_to_ready_s']:.1f} s after create.")
            md.append("")
        md.append("| hnsw_ef | recall@10 | QPS | p50 ms | p99 ms | p99.9 ms | errors |")
        md.append("|---|---|---|---|---|---|---|")
        for run in report["runs"]:
            lat = run.get("latency") or {}
            rec = (run.get("recall") or {}).get("mean")
            md.append(f"| {run.get('param_value')} | {rec:.4f} | {run['qps']:,.0f} | "
                      f"{lat.get('p50_ms', 0):.3f} | {lat.get('p99_ms', 0):.3f} | "
                      f"{lat.get('p999_ms', 0):.3f} | {sum(run['errors'].values())} |"
                      if rec is not None else f"| {run.get('param_value')} | - | - | - | - | - | - |")
        md.append("")
        side.append((f"{label} over HTTP", f"{a.clients} clients",
                     best_at_levels([(r[0], r[1], r[2]) for r in rows])))
    if side:
        md.append("### Side by side: best QPS at recall@10 >= level (knob)")
        md.append("")
        md.append("| system | load | " + " | ".join(f"R>={lv:.2f}" for lv in LEVELS) + " |")
        md.append("|---|---|" + "---|" * len(LEVELS))
        for who, how, best in side:
            cells = [f"{best[lv][0]:,.0f} ({best[lv][1]})" if lv in best else "-" for lv in LEVELS]
            md.append(f"| {who} | {how} | " + " | ".join(cells) + " |")
        md.append("")
        md.append("In-process and peer rows are one search thread; HTTP rows are whole-server "
                  "throughput with the load generator on the same cores, so compare HTTP rows "
                  "with each other (ours against Qdrant), and in-process rows with peers.")
        md.append("")
    if failures:
        md.append("Failed steps: " + "; ".join(f"{s.name}: {s.error}" for s in failures))
        md.append("")

    text = "\n".join(md)
    with open(os.path.join(out, "suite.md"), "w") as f:
        f.write(text)
    if a.append_to:
        with open(a.append_to, "a") as f:
            f.write("\n" + text)
    print(text)
    log(f"wrote {os.path.join(out, 'suite.md')}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""How the router's costs grow with the size of a collection (issue 21, part 4).

For each size in --sizes, on a seeded clustered set of --dim dimensions made by
benches/make_clustered.py (reused when present), in a fresh storage directory:

1. starts the release router (result cache off) and loads the set with benches/http_bench.py
   (2 upload workers, batches of 1,000, no queries during the load): upload rate and time
   from the first upsert to green;
2. sweeps hnsw_ef over the queries once green: QPS and p99 at the first ef whose recall@10
   reaches --recall (2 keep-alive clients);
3. reads the server's resident memory (VmRSS) and the bytes the storage directory holds, per
   point;
4. stops the server (SIGTERM, a clean shutdown), starts it again on the same directory and
   times the restart: until the collection answers a query and reports green; resident
   memory after the restart.

Prints one row per size and writes them as JSON (--out). Sizes run one after another on one
machine: compare the rows with each other, not with figures from another day.

    data/peers-venv/bin/python benches/scale.py --dim 50 --sizes 1000000,5000000 --out /tmp/scale-50.json
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def call(url, method="GET", body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def du_bytes(path):
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(dirpath, name)).st_blocks * 512
            except FileNotFoundError:
                pass
    return total


def start(binary, port, storage):
    log = open(os.path.join(storage, "server.log"), "ab")
    proc = subprocess.Popen(
        [binary, "--http-port", str(port), "--grpc-port", "0", "--storage-path", os.path.join(storage, "s"),
         "--snapshots-path", os.path.join(storage, "snap"), "--cache-ttl-secs", "0", "--log-level", "warn"],
        stdout=log, stderr=log)
    t0 = time.perf_counter()
    while True:
        try:
            call(f"http://127.0.0.1:{port}/")
            return proc, time.perf_counter() - t0
        except OSError:
            if proc.poll() is not None:
                sys.exit(f"the router exited with {proc.returncode}; see {storage}/server.log")
            time.sleep(0.05)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/release/router"))
    ap.add_argument("--dim", type=int, default=50)
    ap.add_argument("--sizes", default="1000000,5000000,10000000")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--efs", default="32,48,64,96,128,192,256,384,512,768")
    ap.add_argument("--recall", type=float, default=0.95)
    ap.add_argument("--port", type=int, default=6397)
    ap.add_argument("--scratch", default=os.path.join(ROOT, "data"), help="where storage directories are made")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    rows = []
    for n in [int(x) for x in a.sizes.split(",")]:
        data = os.path.join(ROOT, "data", f"clustered-{a.dim}-{n}")
        if not os.path.exists(os.path.join(data, "groundtruth.ivecs")):
            t = time.perf_counter()
            subprocess.run([sys.executable, os.path.join(HERE, "make_clustered.py"), "--dim", str(a.dim), "--n", str(n),
                            "--nq", str(a.queries), "--out", data], check=True)
            print(f"made {data} in {time.perf_counter() - t:.0f} s", flush=True)
        storage = tempfile.mkdtemp(prefix=f"scale-{a.dim}-{n}-", dir=a.scratch)
        try:
            proc, _ = start(a.binary, a.port, storage)
            url = f"http://127.0.0.1:{a.port}"
            result = os.path.join(storage, "bench.json")
            subprocess.run([sys.executable, os.path.join(HERE, "http_bench.py"), "--url", url, "--data", data,
                            "--efs", a.efs, "--queries", str(a.queries), "--window-s", "0", "--out", result],
                           check=True)
            bench = json.load(open(result))
            reached = [s for s in bench["sweep"] if s["recall"] >= a.recall]
            at = reached[0] if reached else None
            row = {
                "points": n, "dim": a.dim,
                "upload_points_per_s": bench["upload_points_per_s"],
                "green_s": bench["green_s"],
                "rss_mb": rss_mb(proc.pid),
                "disk_bytes_per_point": du_bytes(os.path.join(storage, "s")) / n,
                "ef": at and at["ef"], "recall": at and at["recall"], "qps": at and at["qps"],
                "p99_ms": at and at["p99_ms"],
                "sweep": bench["sweep"],
            }
            row["rss_bytes_per_point"] = row["rss_mb"] * 1024 * 1024 / n
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=600)
            t0 = time.perf_counter()
            proc, _ = start(a.binary, a.port, storage)
            body = {"query": [0.1] * a.dim, "limit": 10}
            call(f"{url}/collections/bench/points/query", "POST", body)
            while call(f"{url}/collections/bench")["result"]["status"] != "green":
                time.sleep(0.1)
            row["restart_s"] = time.perf_counter() - t0
            row["rss_after_restart_mb"] = rss_mb(proc.pid)
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=600)
            rows.append(row)
            print(f"{n:>10,} x {a.dim}: upload {row['upload_points_per_s']:,.0f} points/s, green {row['green_s']:.0f} s, "
                  f"RSS {row['rss_mb']:,.0f} MB ({row['rss_bytes_per_point']:.0f} B/point), "
                  f"disk {row['disk_bytes_per_point']:.0f} B/point, "
                  + (f"ef {row['ef']}: recall {row['recall']:.4f}, {row['qps']:,.0f} QPS, p99 {row['p99_ms']:.2f} ms, "
                     if at else f"recall {a.recall} not reached, ")
                  + f"restart {row['restart_s']:.1f} s (RSS {row['rss_after_restart_mb']:,.0f} MB)", flush=True)
        finally:
            shutil.rmtree(storage, ignore_errors=True)
        if a.out:
            with open(a.out, "w") as f:
                json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()

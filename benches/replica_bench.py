"""Replica sets (issue 13), measured side by side in one sitting on this machine:

1. write throughput: `loadtest`'s upload phase (batches of points, several in flight) against
   one router of its own, then against the leader of a set of three replicas (each write
   committed by two of three before it is acknowledged);
2. failover: the leader killed with SIGKILL N times under a steady writer; for each kill, the
   time from the kill until a write is acknowledged again (median and maximum), the killed replica
   restarted between rounds.

    python benches/replica_bench.py --router target/release/router \\
        --loadtest target/release/loadtest --kills 20

Writes a markdown summary on stdout. Every process runs on this machine: with 2 cores the
three replicas and the load generator share them, which a deployment would not.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(method: str, url: str, body=None, timeout=30.0):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


class Server:
    def __init__(self, binary: str, root: pathlib.Path, name: str, replica_id=None,
                 heartbeat_ms=100):
        self.binary, self.dir, self.replica_id = binary, root / name, replica_id
        self.heartbeat_ms = heartbeat_ms
        self.port, self.grpc = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        args = [self.binary, "--host", "127.0.0.1", "--http-port", str(self.port),
                "--grpc-port", str(self.grpc), "--storage-path", str(self.dir / "storage"),
                "--snapshots-path", str(self.dir / "snapshots"), "--log-level", "warn"]
        if self.replica_id is not None:
            args += ["--replica-id", str(self.replica_id),
                     "--replica-heartbeat-ms", str(self.heartbeat_ms)]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE,
                                     stderr=open(self.dir / "log.txt", "ab"))
        line = self.proc.stdout.readline().decode()
        assert line.startswith("listening on "), line

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def stop(self):
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait()
            self.proc = None

    def status(self):
        return request("GET", self.url + "/cluster/replica", timeout=2)["result"]


def leader(replicas, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for r in replicas:
            if r.proc is None:
                continue
            try:
                if r.status()["state"] == "Leader":
                    return r
            except OSError:
                pass
        time.sleep(0.02)
    raise RuntimeError("no leader")


def upload_rate(loadtest: str, url: str, out: pathlib.Path, args) -> float:
    out.mkdir(parents=True, exist_ok=True)
    cmd = [loadtest, "--url", url, "--generate", str(args.points), "--dim", str(args.dim),
           "--batch-size", str(args.batch), "--upload-concurrency", str(args.concurrency),
           "--max-queries", "100", "--duration", "2", "--warmup", "0", "--clients", "1",
           "--recreate", "--out", str(out), "--quiet"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    report = json.loads((out / "report.json").read_text())
    return report["load"]["upload_points_per_s"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--router", default="target/release/router")
    p.add_argument("--loadtest", default="target/release/loadtest")
    p.add_argument("--points", type=int, default=50_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--heartbeat-ms", type=int, default=100)
    args = p.parse_args()
    root = pathlib.Path(tempfile.mkdtemp(prefix="replica-bench-"))
    servers = []
    try:
        single = Server(args.router, root, "single")
        single.start()
        servers.append(single)
        one = upload_rate(args.loadtest, single.url, root / "lt-single", args)
        single.stop()

        replicas = [Server(args.router, root, f"r{i}", replica_id=i,
                           heartbeat_ms=args.heartbeat_ms) for i in (1, 2, 3)]
        for r in replicas:
            r.start()
            servers.append(r)
        request("POST", replicas[0].url + "/cluster/replica/initialize",
                {"members": {str(r.replica_id): r.url for r in replicas}})
        lead = leader(replicas)
        three = upload_rate(args.loadtest, lead.url, root / "lt-set", args)

        # Failover: a writer upserting one point at a time into the set.
        request("PUT", lead.url + "/collections/f",
                {"vectors": {"size": 4, "distance": "Dot"}})
        times = []
        rng = random.Random(1)
        for k in range(args.kills):
            lead = leader(replicas)
            live = [r for r in replicas if r is not lead]
            time.sleep(0.3)
            t0 = time.monotonic()
            lead.kill()
            while True:
                target = rng.choice(live)
                try:
                    request("PUT", target.url + "/collections/f/points?wait=true",
                            {"points": [{"id": k, "vector": [1, 2, 3, 4]}]}, timeout=2)
                    break
                except OSError:
                    time.sleep(0.005)
            times.append(time.monotonic() - t0)
            lead.start()
            time.sleep(0.5)
        times.sort()
        print(f"| write throughput, one router | {one:,.0f} points/s |")
        print(f"| write throughput, 3-replica set (to its leader) | {three:,.0f} points/s "
              f"({three / one:.2f}x) |")
        p90 = times[min(len(times) - 1, int(0.9 * len(times)))]
        print(f"| failover over {len(times)} leader kills (heartbeat {args.heartbeat_ms} ms): "
              f"p50 / p90 / max | {statistics.median(times) * 1000:.0f} / "
              f"{p90 * 1000:.0f} / {times[-1] * 1000:.0f} ms |")
        print("each kill, ms: " + ", ".join(f"{t * 1000:.0f}" for t in times),
              file=sys.stderr)
    finally:
        for s in servers:
            if s.proc is not None:
                s.kill()


if __name__ == "__main__":
    sys.exit(main())

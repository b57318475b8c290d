#!/usr/bin/env python3
"""CPU a server process spends per request, from /proc/<pid>/stat (Linux).

One keep-alive client sends requests one after another; the server's user+system CPU time
before and after, divided by the number of requests, is what each request cost it. Used in
docs/benchmarks.md to split a query's cost into the search and what the service adds:
`GET /` is the HTTP and middleware floor, a query at a given ef adds the search.

    python3 benches/server_cpu.py --pid $(pgrep -f 'router --http-port 6333') \\
        --url http://127.0.0.1:6333 --collection bench --data data/glove-50-angular --ef 80
"""

import argparse
import array
import http.client
import json
import os
import struct
import time
import urllib.parse


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def queries(path, limit):
    out = []
    with open(path, "rb") as f:
        while len(out) < limit:
            head = f.read(4)
            if not head:
                break
            (dim,) = struct.unpack("<i", head)
            a = array.array("f")
            a.frombytes(f.read(4 * dim))
            out.append(list(a))
    return out


def measure(conn, pid, method, path, bodies, n):
    before, t = cpu_seconds(pid), time.perf_counter()
    for i in range(n):
        body = bodies[i % len(bodies)] if bodies else None
        conn.request(method, path, body=body, headers={"content-type": "application/json"})
        r = conn.getresponse()
        r.read()
        if r.status != 200:
            raise SystemExit(f"{method} {path}: {r.status}")
    wall = time.perf_counter() - t
    return 1e6 * (cpu_seconds(pid) - before) / n, 1e6 * wall / n


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--url", default="http://127.0.0.1:6333")
    ap.add_argument("--collection", default="bench")
    ap.add_argument("--data", default="data/glove-50-angular")
    ap.add_argument("--ef", type=int, action="append", help="repeatable; default 80")
    ap.add_argument("--requests", type=int, default=4000)
    a = ap.parse_args()
    u = urllib.parse.urlparse(a.url)
    conn = http.client.HTTPConnection(u.hostname, u.port or 80)
    qfile = next(os.path.join(a.data, n) for n in sorted(os.listdir(a.data)) if n.endswith("query.fvecs"))
    qs = queries(qfile, 1000)
    cpu, wall = measure(conn, a.pid, "GET", "/", None, a.requests)
    print(f"GET /: server {cpu:.0f} us CPU per request, {wall:.0f} us wall")
    for ef in a.ef or [80]:
        bodies = [json.dumps({"query": q, "limit": 10, "params": {"hnsw_ef": ef}}).encode() for q in qs]
        cpu, wall = measure(conn, a.pid, "POST", f"/collections/{a.collection}/points/query", bodies, a.requests)
        print(f"query ef {ef}: server {cpu:.0f} us CPU per request, {wall:.0f} us wall")


if __name__ == "__main__":
    main()

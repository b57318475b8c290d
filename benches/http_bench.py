#!/usr/bin/env python3
"""Measure a Qdrant-compatible server over REST the way issue 6 states its goal.

Loads a TexMex dataset into a collection (batches of --batch points over keep-alive HTTP,
--upload-workers at once), waits until the collection is green (fully indexed), then sweeps
`hnsw_ef`: for each value, --clients processes each send the queries with pre-serialised
bodies `{"query": [...], "limit": 10, "params": {"hnsw_ef": ef}}` over one keep-alive
`http.client` connection, as fast as they can. Reports recall@10 against the dataset's
ground truth, QPS and p50/p99 latency; also upload rate, time to green, and the QPS of a
fixed ef measured while the optimizer was still indexing.

The same script measures a real Qdrant server (point --url at it) or ours: the comparison
users want, made the same way. Only the standard library is used.

    python3 benches/http_bench.py --url http://127.0.0.1:6333 --data data/glove-50-angular
"""

import argparse
import array
import http.client
import json
import multiprocessing as mp
import os
import struct
import sys
import time
import urllib.parse


def read_vecs(path, kind, limit=None):
    """Rows of an .fvecs ('f') or .ivecs ('i') file."""
    rows = []
    with open(path, "rb") as f:
        while limit is None or len(rows) < limit:
            head = f.read(4)
            if not head:
                break
            (dim,) = struct.unpack("<i", head)
            a = array.array(kind)
            a.frombytes(f.read(4 * dim))
            rows.append(a)
    return rows


def find(data_dir, suffix):
    for name in sorted(os.listdir(data_dir)):
        if name.endswith(suffix):
            return os.path.join(data_dir, name)
    sys.exit(f"no *{suffix} in {data_dir}")


class Conn:
    def __init__(self, url, timeout=600):
        u = urllib.parse.urlparse(url)
        self.conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=timeout)

    def call(self, method, path, body=None):
        if body is not None and not isinstance(body, (bytes, bytearray)):
            body = json.dumps(body).encode()
        headers = {"content-type": "application/json"} if body is not None else {}
        try:
            self.conn.request(method, path, body=body, headers=headers)
            r = self.conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            # A server closed the connection while it sat idle (Qdrant's keep-alive is 5 s,
            # shorter than the windows of queries sent meanwhile): once more, on a new one.
            # Only requests that were never answered are sent again.
            self.conn.close()
            self.conn.request(method, path, body=body, headers=headers)
            r = self.conn.getresponse()
        data = r.read()
        if r.status >= 300:
            raise RuntimeError(f"{method} {path}: {r.status} {data[:300]!r}")
        return json.loads(data) if data else None


def upload_worker(args):
    url, collection, start, vectors, batch, wait = args
    c = Conn(url)
    for i in range(0, len(vectors), batch):
        chunk = vectors[i : i + batch]
        body = {"batch": {"ids": list(range(start + i, start + i + len(chunk))), "vectors": [list(v) for v in chunk]}}
        c.call("PUT", f"/collections/{collection}/points?wait={'true' if wait else 'false'}", body)
    return len(vectors)


def query_worker(args):
    url, bodies, duration = args
    c = Conn(url)
    lat = []
    answers = []
    end = time.perf_counter() + duration if duration else None
    i = 0
    while True:
        body = bodies[i % len(bodies)]
        t = time.perf_counter()
        c.conn.request("POST", path_of(url), body=body, headers={"content-type": "application/json"})
        r = c.conn.getresponse()
        data = r.read()
        lat.append(time.perf_counter() - t)
        if r.status != 200:
            raise RuntimeError(f"query: {r.status} {data[:200]!r}")
        if i < len(bodies):
            answers.append([p["id"] for p in json.loads(data)["result"]["points"]])
        i += 1
        if end is None and i >= len(bodies):
            break
        if end is not None and time.perf_counter() >= end and i >= min(len(bodies), 200):
            break
    return lat, answers


_PATH = {}


def path_of(url):
    return _PATH[url]


def percentile(sorted_values, q):
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, int(round(q * (len(sorted_values) - 1)))))
    return sorted_values[k]


def run_queries(url, collection, queries, truth, ef, clients, duration=None):
    bodies = [json.dumps({"query": list(q), "limit": 10, "params": {"hnsw_ef": ef}}).encode() for q in queries]
    _PATH[url] = f"/collections/{collection}/points/query"
    per = [bodies[i::clients] for i in range(clients)]
    order = [list(range(len(bodies)))[i::clients] for i in range(clients)]
    with mp.Pool(clients, initializer=_init_path, initargs=(url, _PATH[url])) as pool:
        t0 = time.perf_counter()
        results = pool.map(query_worker, [(url, b, duration) for b in per])
        wall = time.perf_counter() - t0
    lat = sorted(x for r in results for x in r[0])
    hits = total = 0
    for (_, answers), idx in zip(results, order):
        for a, qi in zip(answers, idx):
            gt = set(truth[qi][:10])
            hits += len(gt & set(a))
            total += 10
    return {
        "ef": ef,
        "recall": hits / total if total else float("nan"),
        "qps": len(lat) / wall,
        "p50_ms": percentile(lat, 0.50) * 1e3,
        "p99_ms": percentile(lat, 0.99) * 1e3,
        "requests": len(lat),
    }


def _init_path(url, path):
    _PATH[url] = path


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:6333")
    ap.add_argument("--data", default="data/glove-50-angular")
    ap.add_argument("--collection", default="bench")
    ap.add_argument("--distance", default="Cosine")
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ef-construct", type=int, default=200)
    ap.add_argument("--quantization", choices=["none", "scalar"], default="none")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--upload-workers", type=int, default=2)
    ap.add_argument("--wait", action="store_true", help="upload with wait=true (fsync before each acknowledgement)")
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--queries", type=int, default=10000)
    ap.add_argument("--efs", default="16,32,48,64,96,128,192,256")
    ap.add_argument("--skip-load", action="store_true", help="reuse an existing, indexed collection")
    ap.add_argument("--upload-only", action="store_true", help="measure the upload, then stop")
    ap.add_argument("--limit-points", type=int, default=None, help="load only the first N base vectors")
    ap.add_argument("--during-ef", type=int, default=64, help="hnsw_ef of the queries sent while indexing")
    ap.add_argument("--window-s", type=float, default=3.0, help="length of each query window while indexing; 0: none")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    a = ap.parse_args()

    base = read_vecs(find(a.data, "base.fvecs"), "f", a.limit_points)
    queries = read_vecs(find(a.data, "query.fvecs"), "f", a.queries)
    truth = read_vecs(find(a.data, "groundtruth.ivecs"), "i", a.queries)
    c = Conn(a.url)
    out = {"url": a.url, "data": a.data, "points": len(base), "shards": a.shards, "clients": a.clients}
    if not a.skip_load:
        try:
            c.call("DELETE", f"/collections/{a.collection}")
        except RuntimeError:
            pass
        config = {
            "vectors": {"size": len(base[0]), "distance": a.distance},
            "shard_number": a.shards,
            "hnsw_config": {"m": a.m, "ef_construct": a.ef_construct},
        }
        if a.quantization == "scalar":
            config["quantization_config"] = {"scalar": {"type": "int8", "always_ram": True}}
        c.call("PUT", f"/collections/{a.collection}", config)
        t0 = time.perf_counter()
        n = len(base)
        step = (n + a.upload_workers - 1) // a.upload_workers
        jobs = [(a.url, a.collection, s, base[s : s + step], a.batch, a.wait) for s in range(0, n, step)]
        with mp.Pool(a.upload_workers) as pool:
            pool.map(upload_worker, jobs)
        upload_s = time.perf_counter() - t0
        out["upload_s"] = upload_s
        out["upload_points_per_s"] = n / upload_s
        print(f"uploaded {n} points in {upload_s:.1f} s ({n / upload_s:,.0f} points/s, batch {a.batch}, wait={a.wait})", flush=True)
        if a.upload_only:
            if a.out:
                with open(a.out, "w") as f:
                    json.dump(out, f, indent=1)
            return
        # QPS while the optimizer indexes: windows of --window-s at a fixed ef, back to back
        # until the collection is green, so the slowest moment of the load is seen, not one
        # sample of it. Each window sends a different slice of the queries.
        windows = []
        while True:
            info = c.call("GET", f"/collections/{a.collection}")["result"]
            if info["status"] == "green":
                break
            if a.window_s <= 0:
                time.sleep(0.5)
                continue
            k = len(windows)
            lo = (k * 500) % max(1, len(queries) - 2000)
            w = run_queries(a.url, a.collection, queries[lo : lo + 2000], truth[lo : lo + 2000],
                            a.during_ef, a.clients, duration=a.window_s)
            w["at_s"] = time.perf_counter() - t0
            w["indexed_vectors"] = info.get("indexed_vectors_count")
            windows.append(w)
            print(f"  {w['at_s']:6.1f} s, {w['indexed_vectors'] or 0:>8} indexed: ef {a.during_ef}: "
                  f"{w['qps']:8,.0f} QPS, recall@10 {w['recall']:.4f}, p99 {w['p99_ms']:.2f} ms", flush=True)
        if windows:
            out["during_optimization"] = windows
            worst = min(windows, key=lambda w: w["qps"])
            print(f"while indexing: {len(windows)} windows, slowest {worst['qps']:,.0f} QPS "
                  f"(recall {worst['recall']:.4f}), lowest recall {min(w['recall'] for w in windows):.4f}", flush=True)
        out["green_s"] = time.perf_counter() - t0
        print(f"green (fully indexed) {out['green_s']:.1f} s after the upload began; "
              f"{info['points_count']} points, {info['segments_count']} segments", flush=True)
    sweep = []
    for ef in [int(x) for x in a.efs.split(",")]:
        r = run_queries(a.url, a.collection, queries, truth, ef, a.clients)
        sweep.append(r)
        print(f"ef {ef:4d}: recall@10 {r['recall']:.4f}  {r['qps']:8,.0f} QPS  p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms", flush=True)
    out["sweep"] = sweep
    for level in (0.90, 0.95, 0.99):
        best = max((r for r in sweep if r["recall"] >= level), key=lambda r: r["qps"], default=None)
        if best:
            print(f"best at recall >= {level}: {best['qps']:,.0f} QPS (ef {best['ef']}, recall {best['recall']:.4f}, p99 {best['p99_ms']:.2f} ms)")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()

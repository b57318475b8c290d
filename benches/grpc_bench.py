#!/usr/bin/env python3
"""gRPC beside REST on one loaded collection, in one sitting.

For each `hnsw_ef`, --clients processes send the dataset's queries as fast as they can, first
over REST (pre-serialised JSON bodies on one keep-alive `http.client` connection each, as
`http_bench.py` does), then over gRPC (pre-built `QueryPoints` messages on one channel each,
through the stubs `qdrant-client` ships), and the other order for the next ef, so neither
protocol always runs on a warmer machine. Reports QPS, p50/p99 latency and recall@10 against
the dataset's ground truth for both, and their ratio.

The collection must be loaded and green already (e.g. by `http_bench.py`, or `loadtest
--dataset ... --collection bench`); start the server with its result cache off. Needs
`qdrant-client` (for `grpcio` and the stubs), e.g. the e2e venv:

    data/e2e-venv/bin/python benches/grpc_bench.py --url http://127.0.0.1:6333 \
        --grpc 127.0.0.1:6334 --collection bench --data data/glove-50-angular
"""

import argparse
import http.client
import json
import multiprocessing as mp
import os
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from http_bench import find, read_vecs  # noqa: E402


def rest_worker(args):
    url, collection, offset, queries, ef, seconds, out = args
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=60)
    path = f"/collections/{collection}/points/query"
    bodies = [json.dumps({"query": list(q), "limit": 10, "params": {"hnsw_ef": ef}}).encode()
              for q in queries]
    headers = {"content-type": "application/json"}
    lat, answers, i = [], {}, 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        k = i % len(bodies)
        t = time.perf_counter()
        conn.request("POST", path, body=bodies[k], headers=headers)
        r = conn.getresponse()
        body = r.read()
        lat.append(time.perf_counter() - t)
        if r.status != 200:
            raise SystemExit(f"REST {r.status}: {body[:200]!r}")
        if offset + k not in answers:
            answers[offset + k] = [p["id"] for p in json.loads(body)["result"]["points"]]
        i += 1
    out.put((lat, answers))


def grpc_worker(args):
    target, collection, offset, queries, ef, seconds, out = args
    import grpc
    from qdrant_client.grpc import points_service_pb2_grpc
    from qdrant_client import grpc as pb

    channel = grpc.insecure_channel(target)
    stub = points_service_pb2_grpc.PointsStub(channel)
    requests = [pb.QueryPoints(
        collection_name=collection,
        query=pb.Query(nearest=pb.VectorInput(dense=pb.DenseVector(data=list(q)))),
        limit=10,
        params=pb.SearchParams(hnsw_ef=ef),
    ) for q in queries]
    lat, answers, i = [], {}, 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        k = i % len(requests)
        t = time.perf_counter()
        r = stub.Query(requests[k], timeout=60)
        lat.append(time.perf_counter() - t)
        if offset + k not in answers:
            answers[offset + k] = [p.id.num for p in r.result]
        i += 1
    out.put((lat, answers))


def run(kind, worker_args, clients):
    out = mp.Queue()
    target = rest_worker if kind == "REST" else grpc_worker
    procs = [mp.Process(target=target, args=(a + (out,),)) for a in worker_args]
    start = time.perf_counter()
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    wall = time.perf_counter() - start
    lat = sorted(x for r in results for x in r[0])
    answers = {}
    for r in results:
        answers.update(r[1])
    return lat, answers, wall


def cpu_seconds(pid):
    """The server's user + system CPU time so far (None without --pid)."""
    if pid is None:
        return None
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def recall(answers, truth):
    """Over the queries answered, by their index in the dataset."""
    hits = 0
    for k, ids in answers.items():
        hits += len(set(ids) & set(truth[k][:10]))
    return hits / (10 * len(answers)) if answers else 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:6333")
    ap.add_argument("--grpc", default="127.0.0.1:6334")
    ap.add_argument("--collection", default="bench")
    ap.add_argument("--data", required=True)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--ef", default="64,128")
    ap.add_argument("--pid", type=int, help="the server's pid: report its CPU per query")
    a = ap.parse_args()

    queries = read_vecs(find(a.data, "query.fvecs"), "f", a.queries)
    truth = read_vecs(find(a.data, "groundtruth.ivecs"), "i", a.queries)
    per = len(queries) // a.clients
    print(f"{len(queries)} queries, {a.clients} clients, {a.seconds} s per run")
    print("| ef | protocol | QPS | p50 ms | p99 ms | recall@10 | server CPU µs/query |")
    print("|---|---|---|---|---|---|---|")
    for n, ef in enumerate(int(x) for x in a.ef.split(",")):
        order = ["REST", "gRPC"] if n % 2 == 0 else ["gRPC", "REST"]
        qps = {}
        for kind in order:
            target = a.url if kind == "REST" else a.grpc
            args = [(target, a.collection, c * per, queries[c * per:(c + 1) * per], ef,
                     a.seconds) for c in range(a.clients)]
            cpu0 = cpu_seconds(a.pid)
            lat, answers, _ = run(kind, args, a.clients)
            cpu1 = cpu_seconds(a.pid)
            cpu = f"{(cpu1 - cpu0) / len(lat) * 1e6:.0f}" if cpu0 is not None else ""
            r = recall(answers, truth)
            qps[kind] = len(lat) / a.seconds
            print(f"| {ef} | {kind} | {qps[kind]:,.0f} | {lat[len(lat) // 2] * 1e3:.2f} | "
                  f"{lat[int(len(lat) * 0.99)] * 1e3:.2f} | {r:.4f} | {cpu} |")
        print(f"| {ef} | gRPC / REST | {qps['gRPC'] / qps['REST']:.2f}x | | | | |")


if __name__ == "__main__":
    main()

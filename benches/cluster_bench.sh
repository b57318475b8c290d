#!/usr/bin/env bash
# Three remote shards on loopback against the same three shards held in process (issue 12's
# remote-shard benchmark): one cluster router over three node routers (each a plain router
# holding one shard), and one embedded router with `shard_number` 3, loaded with the same
# generated set and measured by `loadtest` with the same queries, one after the other. The
# result cache is off on every router (a cached answer would measure the cache).
#
#   cargo build --release -p router -p loadtest
#   benches/cluster_bench.sh            # N=100000 DIM=64 CLIENTS=2 DURATION=20 by default
#
# Reports land in $OUT/cluster and $OUT/embedded (report.json, report.html); the summary
# lines are printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-100000}
DIM=${DIM:-64}
CLIENTS=${CLIENTS:-2}
DURATION=${DURATION:-20}
SWEEP=${SWEEP:-hnsw_ef=32,64,128}
OUT=${OUT:-/tmp/cluster-bench}
BIN=target/release
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$OUT"

# A router on fixed ports; its pid goes to PIDS.
start() {
    local name=$1 http=$2 grpc=$3
    shift 3
    "$BIN/router" --http-port "$http" --grpc-port "$grpc" --cache-ttl-secs 0 \
        --storage-path "$WORK/$name/storage" --snapshots-path "$WORK/$name/snapshots" \
        --log-level warn "$@" > "$WORK/$name.out" 2> "$WORK/$name.log" &
    PIDS+=($!)
    for _ in $(seq 100); do
        grep -q "gRPC listening" "$WORK/$name.out" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "$name did not start:" >&2
    cat "$WORK/$name.log" >&2
    exit 1
}

start node0 7101 7201
start node1 7102 7202
start node2 7103 7203
start cluster 7100 7200 --cluster-nodes http://127.0.0.1:7201,http://127.0.0.1:7202,http://127.0.0.1:7203
start embedded 7300 7400

LOAD=(--generate "$N" --dim "$DIM" --seed 7 --m 16 --ef-construct 100 --indexing-threshold 1000
      --clients "$CLIENTS" --duration "$DURATION" --max-queries 1000000 --warmup 3 --sweep "$SWEEP" --limit 10 --quiet)
"$BIN/loadtest" --url http://127.0.0.1:7100 "${LOAD[@]}" --out "$OUT/cluster"
"$BIN/loadtest" --url http://127.0.0.1:7300 --shard-number 3 "${LOAD[@]}" --out "$OUT/embedded"
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
reports = {n: json.load(open(f"{out}/{n}/report.json")) for n in ("cluster", "embedded")}
for c, e in zip(reports["cluster"]["runs"], reports["embedded"]["runs"]):
    def cell(r):
        lat, rec = r["latency"] or {}, r["recall"] or {}
        return (f"qps {r['qps']:.0f} p50 {lat.get('p50_ms', 0):.2f} ms "
                f"p99 {lat.get('p99_ms', 0):.2f} ms recall@10 {rec.get('mean', 0):.4f} "
                f"errors {sum(r['errors'].values())}")
    print(f"{c['label']}: cluster {cell(c)} | embedded {cell(e)} | "
          f"qps ratio {c['qps'] / max(e['qps'], 1e-9):.2f}")
PY

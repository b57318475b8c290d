#!/usr/bin/env bash
# Fan-out latency of cluster mode at 1, 2, 4, 8 and 16 shards on loopback (issue 12): for
# each count, that many node routers and one cluster router over them, loaded with the same
# generated set, then queried by one closed-loop client (latency, not throughput: the nodes
# share this machine's cores). Beside each, the embedded router with the same `shard_number`.
# The result cache is off everywhere; each node searches on one thread (16 nodes share
# two cores here).
#
#   cargo build --release -p router -p loadtest
#   benches/fanout_bench.sh        # N=20000 DIM=64 DURATION=10 COUNTS="1 2 4 8 16"
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-20000}
DIM=${DIM:-64}
DURATION=${DURATION:-10}
COUNTS=${COUNTS:-"1 2 4 8 16"}
OUT=${OUT:-/tmp/fanout-bench}
BIN=target/release
WORK=$(mktemp -d)
PIDS=()
stop_all() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    PIDS=()
}
trap 'stop_all; rm -rf "$WORK"' EXIT
mkdir -p "$OUT"

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

LOAD=(--generate "$N" --dim "$DIM" --seed 11 --m 16 --ef-construct 100 --indexing-threshold 1000
      --clients 1 --duration "$DURATION" --max-queries 1000000 --warmup 20 --hnsw-ef 64 --limit 10 --quiet)
summary() {
    python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['runs'][0]; l=r['latency']; \
print(f\"qps {r['qps']:.0f} p50 {l['p50_ms']:.2f} ms p99 {l['p99_ms']:.2f} ms recall@10 {r['recall']['mean']:.4f}\")" "$1"
}
for n in $COUNTS; do
    urls=()
    for k in $(seq 0 $((n - 1))); do
        start "node$n-$k" $((7600 + k)) $((7700 + k)) --search-threads 1
        urls+=("http://127.0.0.1:$((7700 + k))")
    done
    start "cluster$n" 7590 7591 --cluster-nodes "$(IFS=,; echo "${urls[*]}")"
    "$BIN/loadtest" --url http://127.0.0.1:7590 "${LOAD[@]}" --out "$OUT/cluster-$n" > /dev/null
    stop_all
    start "embedded$n" 7592 7593
    "$BIN/loadtest" --url http://127.0.0.1:7592 --shard-number "$n" "${LOAD[@]}" --out "$OUT/embedded-$n" > /dev/null
    stop_all
    echo "$n shards: cluster $(summary "$OUT/cluster-$n/report.json") | embedded $(summary "$OUT/embedded-$n/report.json")"
done

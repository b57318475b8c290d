#!/bin/bash
# Overload and soak (issue 20, docs/reliability.md): the release router with at most 8
# requests in flight and no result cache, 100,000 generated points of 64 dimensions, then an
# open loop of R requests per second over C connections for S seconds, resident memory
# sampled every 10 s, then a light run (200 req/s, 30 s) to show recovery.
#
#   DURATION=600 RATE=8000 benches/soak.sh                                  # the soak
#   DURATION=120 RATE=2000 EXTRA="--sweep params.exact=true" benches/soak.sh # overload
#   DURATION=90 RATE=4000 QUERIES=50000 CACHE_TTL=600 CACHE_MB=16 benches/soak.sh
#                      # the result cache on, fed distinct queries: its weight limit holds
#
# Reports land in $D (default /tmp/soak): load.txt, overload.txt, after.txt, rss.txt.
set -u
DURATION=${DURATION:-600}
RATE=${RATE:-8000}
CONNS=${CONNS:-64}
PORT=${PORT:-6420}
D=${D:-/tmp/soak}
QUERIES=${QUERIES:-2000}
CACHE_TTL=${CACHE_TTL:-0}
CACHE_MB=${CACHE_MB:-64}
rm -rf "$D"; mkdir -p "$D"
cd "$(dirname "$0")/.."
DATA=(--generate 100000 --dim 64 --generate-queries "$QUERIES")
target/release/router --http-port "$PORT" --grpc-port 0 --storage-path "$D/s" --snapshots-path "$D/snap" \
  --cache-ttl-secs "$CACHE_TTL" --cache-max-mb "$CACHE_MB" --max-concurrent-requests 8 --log-level warn > "$D/router.out" 2> "$D/router.log" &
ROUTER=$!
trap 'kill $ROUTER 2>/dev/null' EXIT
sleep 1
target/release/loadtest --url "http://127.0.0.1:$PORT" "${DATA[@]}" \
  --indexing-threshold 1000 --max-queries 1 --out "$D/load" > "$D/load.txt" 2>&1
( while kill -0 $ROUTER 2>/dev/null; do
    echo "$(date +%s) $(awk '/VmRSS/ {print $2}' /proc/$ROUTER/status)"; sleep 10
  done ) > "$D/rss.txt" &
SAMPLER=$!
# shellcheck disable=SC2086 # EXTRA is a list of flags
target/release/loadtest --url "http://127.0.0.1:$PORT" "${DATA[@]}" --skip-load \
  --mode open --rate "$RATE" --connections "$CONNS" --duration "$DURATION" \
  --max-queries 100000000 --timeout-ms 10000 ${EXTRA:-} --out "$D/overload" > "$D/overload.txt" 2>&1
target/release/loadtest --url "http://127.0.0.1:$PORT" "${DATA[@]}" --skip-load \
  --mode open --rate 200 --connections 8 --duration 30 --max-queries 100000000 \
  --out "$D/after" > "$D/after.txt" 2>&1
kill $SAMPLER
tail -n 5 "$D/overload.txt" "$D/after.txt"
echo "RSS (kB) min/max: $(awk '{print $2}' "$D/rss.txt" | sort -n | sed -n '1p;$p' | tr '\n' ' ')"

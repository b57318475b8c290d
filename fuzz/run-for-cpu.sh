#!/usr/bin/env bash
# Runs one fuzz target until it has had a given number of CPU seconds (user + system), at the
# lowest priority, then stops it with SIGINT and appends a line to the ledger (time, target,
# CPU s, executions, peak RSS MB, exit status, new artifacts): the hour of
# fuzzing per target (docs/reliability.md) is counted in CPU time, since the runs share the
# machine with builds and tests.
#
#   fuzz/run-for-cpu.sh TARGET CPU_SECONDS [LEDGER]
#
# Needs the release build (`cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz build`). The target runs
# from corpus/TARGET (kept) and seeds/TARGET; a crash, leak or timeout ends the run early, with
# libFuzzer's artifact in artifacts/TARGET/ and the log beside the ledger.
set -euo pipefail
cd "$(dirname "$0")"
target="$1"
budget="$2"
ledger="${3:-ledger.tsv}"
bin="target/x86_64-unknown-linux-gnu/release/$target"
[ -x "$bin" ] || { echo "no release build of $target: cargo fuzz build first" >&2; exit 2; }
mkdir -p "corpus/$target" "artifacts/$target" logs
log="logs/$target-$(date -u +%Y%m%dT%H%M%S).log"
# Artifacts newer than this mark are this run's findings.
touch "$log.start"
case "$target" in
  rest_body | checkpoint) leaks=-detect_leaks=0 ;; # background threads outlive an input
  *) leaks=-detect_leaks=1 ;;
esac
tick=$(getconf CLK_TCK)
nice -n 19 "$bin" "corpus/$target" "seeds/$target" -artifact_prefix="artifacts/$target/" \
  -max_total_time=86400 -timeout=10 -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1 \
  "$leaks" > "$log" 2>&1 &
pid=$!
cpu=0
while kill -0 "$pid" 2>/dev/null; do
  # Fields 14 and 15 of /proc/PID/stat: user and system time in clock ticks.
  if stat=$(cat "/proc/$pid/stat" 2>/dev/null); then
    read -r utime stime < <(echo "$stat" | sed 's/.*) //' | awk '{print $12, $13}')
    cpu=$(( (utime + stime) / tick ))
    if [ "$cpu" -ge "$budget" ]; then
      kill -INT "$pid" 2>/dev/null || true
      break
    fi
  fi
  sleep 5
done
status=0
wait "$pid" || status=$?
# A run killed from outside (the OOM killer) prints no final stats: the line is still written.
execs=$(grep -o 'stat::number_of_executed_units:[[:space:]]*[0-9]*' "$log" | tail -1 | awk '{print $2}' || true)
peak=$(grep -o 'stat::peak_rss_mb:[[:space:]]*[0-9]*' "$log" | tail -1 | awk '{print $2}' || true)
found=$(find "artifacts/$target" -type f -newer "$log.start" | wc -l)
# 72 is libFuzzer's exit status when stopped by SIGINT, as this script stops it.
[ "$status" = 72 ] && status=interrupted
printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$target" "$cpu" "${execs:-?}" \
  "${peak:-?}" "$status" "$found" >> "$ledger"
echo "$target: $cpu CPU s, ${execs:-?} executions, peak ${peak:-?} MB, exit $status, artifacts $found"

#!/usr/bin/env bash
# Measures the agent's CPU while a producer and a consumer churn entries
# through a watched spool (enqueue, checkout, remove: three operations per
# entry, durability full), beside the CPU of the churning process itself,
# measured in the same run: the agent's cost per entry against the cost of
# the entry's own spool operations.
# Usage: scripts/bench-churn.sh [RATE...]   (operations per second; default 100 500)
# Knob: BENCH_SECONDS (10) per rate.
set -euo pipefail
cd "$(dirname "$0")/.."
rates=("$@")
[ ${#rates[@]} -eq 0 ] && rates=(100 500)
secs=${BENCH_SECONDS:-10}
work=$(mktemp -d)
trap 'kill "${agent:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/spool-agent" ./cmd/spool-agent
go build -o "$work/spoolworker" ./reliability/internal/spoolworker
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
for rate in "${rates[@]}"; do
  spool="$work/spool-$rate"
  "$work/spool-agent" init "$spool" --queue q >/dev/null
  "$work/spool-agent" run --spool "c=$spool" --web.listen-address 127.0.0.1:0 2>"$work/agent.log" &
  agent=$!
  sleep 1
  a0=$(ticks "$agent")
  # The worker's own CPU (user + system) comes from bash's times after it exits.
  w0=$(awk '{print $16 + $17}' /proc/$$/stat)
  "$work/spoolworker" churn -spool "$spool" -queue q -id x -duration "${secs}s" -rate "$rate" >"$work/churn.json"
  w1=$(awk '{print $16 + $17}' /proc/$$/stat)
  a1=$(ticks "$agent")
  kill "$agent"; wait "$agent" 2>/dev/null || true
  awk -v a=$((a1 - a0)) -v w=$((w1 - w0)) -v hz="$hz" -v s="$secs" -v r="$rate" 'BEGIN {
    printf "churn %4d ops/s (%d entries/s): agent %.2f%% of a core, churning process %.2f%%, agent/churn %.3f\n",
      r, r / 3, a / hz / s * 100, w / hz / s * 100, (w > 0 ? a / w : 0) }'
done

#!/usr/bin/env bash
# Measures the agent's performance targets and prints each figure beside a
# baseline measured in the same run:
#   1. scrape latency p50/p99 with 100 spools of 10 queues through the
#      agent's handler (promexporter.NewHandler), and through promhttp over a
#      registry (target: p99 <= 5 ms); baseline: promhttp serving the same
#      exposition pre-gathered (encoding and HTTP only);
#   2. enqueue-to-/metrics visibility p50/p99 with --check-every 1h (target:
#      p99 <= 250 ms), real agent binary and monitor; baseline: one scrape;
#   3. agent CPU while watching 10 idle spools of 100,000 entries each,
#      scraped every 15s, over 10 minutes that hold two periodic full
#      rescans (--full-rescan-every 5m, twice the default: an upper bound)
#      (target: <= 1% of one core); baseline: 10 empty spools.
# Usage: scripts/bench-agent.sh [scrape|enqueue|cpu]...   (default: all)
# Knobs: BENCH_ENQUEUES (200), BENCH_ENTRIES (100000), BENCH_CPU_SECONDS
# (600), BENCH_FULL_RESCAN (5m), BENCH_SPOOL_ROOT (keep the full spools
# there across runs). The CPU run creates 3 million empty files under
# $TMPDIR (about 3 GB of inodes, no data blocks) and takes about 25 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

what=("$@")
[ ${#what[@]} -eq 0 ] && what=(scrape enqueue cpu)

for w in "${what[@]}"; do
  case "$w" in
  scrape)
    echo "== scrape latency: go test -run XXX -bench BenchmarkScrape -benchtime 5x ./exporters/promexporter/"
    go test -run XXX -bench BenchmarkScrape -benchtime 5x ./exporters/promexporter/ | grep -E '^Benchmark|^ok'
    ;;
  enqueue)
    echo "== enqueue visibility: go test -run XXX -bench BenchmarkAgentEnqueueVisible -benchtime 1x ./collector/"
    go test -run XXX -bench BenchmarkAgentEnqueueVisible -benchtime 1x -timeout 10m ./collector/ | grep -E '^Benchmark|^ok'
    ;;
  cpu)
    echo "== idle CPU: go test -run XXX -bench BenchmarkAgentIdleCPU -benchtime 1x ./collector/"
    go test -run XXX -bench BenchmarkAgentIdleCPU -benchtime 1x -timeout 60m -v ./collector/ | grep -E "^Benchmark|spools up|^ok"
    ;;
  *)
    echo "unknown benchmark $w (want scrape, enqueue or cpu)" >&2
    exit 2
    ;;
  esac
done

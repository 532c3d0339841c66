#!/usr/bin/env bash
# Measures the monitor on a spool of N entries (default 1,000,000: the
# README's figures). It builds the spool (3N small files created directly,
# not through the spool library: 1.5 to 3 minutes for a million here, about
# 4 KiB of disk per data file), then in one run:
#   - a cold full cycle (what every cycle costs without inotify, and the
#     first cycle, and the one after an overflow) against
#     `find SPOOL -printf '%T@ %p\n' >/dev/null` (both warmed first, then
#     alternated; medians of RUNS runs);
#   - incremental cycles of a watching monitor after 1% of the entries
#     changed since the previous cycle (changes made by another process),
#     and the monitor's CPU time for those changes (events and cycle);
#   - the periodic full rescan of the watched spool (warm) against find;
#   - the monitor's heap per entry while it holds the index;
#   - the time from one enqueue to a snapshot that shows it.
#
# Usage: scripts/bench-monitor.sh [N] [RUNS]
#   WORK=dir   keep the spool in dir and reuse it on the next run with the same N
#   CI-sized:  scripts/bench-monitor.sh 20000 3
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
RUNS=${2:-5}
if [ -n "${WORK:-}" ]; then
  mkdir -p "$WORK"
  keep=1
else
  WORK=$(mktemp -d)
  keep=0
fi
cleanup() { [ "$keep" = 1 ] || rm -rf "$WORK"; }
trap cleanup EXIT

go build -o "$WORK/benchmon" ./monitor/internal/benchmon
SPOOL="$WORK/spool-$N"
if [ ! -f "$SPOOL/.built" ]; then
  rm -rf "$SPOOL"
  "$WORK/benchmon" build -dir "$SPOOL" -n "$N"
  touch "$SPOOL/.built" # a file at the spool root, which the monitor ignores
fi
echo "machine: $(nproc) CPUs, $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$WORK/benchmon" measure -dir "$SPOOL" -n "$N" -runs "$RUNS"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

#!/usr/bin/env bash
# The long reliability runs behind RELIABILITY.md. CI runs short versions of
# the same tests (go test ./reliability ./spool, scripts/fuzz-short.sh); this
# script runs them long enough to matter:
#
#   1. crash injection: KILLS random SIGKILLs (default 1000) of producers,
#      consumers, removers and the agent, then the no-loss/no-duplicate check;
#   2. load: /metrics scraped from a second process for LOAD (default 10m)
#      while the spools churn at 1,000+ operations/s; failed scrapes, p99
#      latency and the agent's RSS at start and end;
#   3. fault injection: every fault at every call of every life cycle,
#      FAULT_ROUNDS times (default 3);
#   4. fuzzing: every fuzz target for FUZZTIME (default 5m) each.
#
# Every test appends its figures, one JSON object per line, to REPORT
# (default ./soak-report.jsonl); the script prints them at the end.
#   ./scripts/soak.sh                         # everything, about 45 minutes
#   KILLS=200 LOAD=1m FUZZTIME=30s ./scripts/soak.sh   # a quick run
#   ONLY=crash ./scripts/soak.sh              # one part: crash, load, faults or fuzz
set -euo pipefail
cd "$(dirname "$0")/.."

KILLS=${KILLS:-1000}
LOAD=${LOAD:-10m}
FAULT_ROUNDS=${FAULT_ROUNDS:-3}
FUZZTIME=${FUZZTIME:-5m}
REPORT=${REPORT:-$PWD/soak-report.jsonl}
ONLY=${ONLY:-}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/spool-agent" ./cmd/spool-agent
export SPOOL_AGENT_BIN="$tmp/spool-agent"
: >"$REPORT"

want() { [ -z "$ONLY" ] || [ "$ONLY" = "$1" ]; }

if want crash; then
  echo "== crash injection: $KILLS kills"
  go test ./reliability -count=1 -timeout 3h -v -run '^TestCrash' \
    -args -reliability.kills="$KILLS" -reliability.report="$REPORT" | grep -E '^(=== RUN|--- |ok|FAIL|PASS)|figures:'
fi
if want load; then
  echo "== load: $LOAD"
  go test ./reliability -count=1 -timeout 3h -v -run '^TestLoad' \
    -args -reliability.load="$LOAD" -reliability.report="$REPORT" | grep -E '^(=== RUN|--- |ok|FAIL|PASS)|figures:'
fi
if want faults; then
  echo "== fault injection: $FAULT_ROUNDS rounds"
  go test ./spool -count="$FAULT_ROUNDS" -timeout 3h -run 'TestFaultInjection|TestPowerLoss|TestDurabilityLevels'
fi
if want fuzz; then
  echo "== fuzzing: $FUZZTIME per target"
  FUZZTIME="$FUZZTIME" ./scripts/fuzz-short.sh
fi
echo "== figures ($REPORT)"
cat "$REPORT"

#!/usr/bin/env bash
# Runs every test: formatting and static checks, then the whole suite with
# the race detector. This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:$(go env GOPATH)/bin"

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change: $unformatted" >&2
  exit 1
fi
go vet ./...
if command -v staticcheck >/dev/null 2>&1; then
  staticcheck ./...
else
  echo "staticcheck not installed: go install honnef.co/go/tools/cmd/staticcheck@latest" >&2
  exit 1
fi
# A short fuzzing run of every fuzz target, bounded by count rather than time
# (a time bound can end mid-input with "context deadline exceeded" on a loaded
# machine); scripts/soak.sh runs them longer.
FUZZTIME=${FUZZTIME:-300x} ./scripts/fuzz-short.sh
go test -race -count=1 -timeout 20m ./...

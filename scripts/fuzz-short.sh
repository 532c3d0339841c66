#!/usr/bin/env bash
# Runs every fuzz target in the module for a short while (FUZZTIME, default
# 10s each), one after the other: the CI run. scripts/soak.sh runs them for
# longer. A failing input is written under the package's testdata/fuzz/ by
# `go test` and the script exits non-zero.
#   ./scripts/fuzz-short.sh                 # every target, 10s each
#   FUZZTIME=1m ./scripts/fuzz-short.sh     # longer
#   ./scripts/fuzz-short.sh ./spool         # only the targets of some packages
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-10s}
pkgs=("$@")
if [ ${#pkgs[@]} -eq 0 ]; then
  mapfile -t pkgs < <(go list ./...)
fi
ran=0
for pkg in "${pkgs[@]}"; do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  # Fuzz targets are test functions named FuzzXxx(f *testing.F).
  mapfile -t targets < <(grep -hoE '^func (Fuzz[A-Za-z0-9_]+)\(f \*testing\.F\)' "$dir"/*_test.go 2>/dev/null | sed -E 's/^func (Fuzz[A-Za-z0-9_]+).*/\1/' | sort -u)
  for target in "${targets[@]}"; do
    [ -n "$target" ] || continue
    echo "== $pkg $target ($fuzztime)"
    go test "$pkg" -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -parallel "${FUZZPARALLEL:-2}"
    ran=$((ran + 1))
  done
done
echo "fuzz-short: $ran targets, $fuzztime each: no failures"

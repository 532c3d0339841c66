#!/usr/bin/env bash
# Runs every test: formatting and static checks, then the whole suite with
# the race detector, for the library's module and for the nested modules
# (deploy/: packaging and Kubernetes checks; web/browsertest/: the console in
# a browser), which keep their heavy test-only dependencies out of the
# library's module graph.
# This is the README's test command and what CI runs. It needs only Go:
# staticcheck is pinned in tools/go.mod and run through `go tool`.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

staticcheck() { go tool -modfile="$root/tools/go.mod" staticcheck "$@"; }
# The nested modules with tests (tools/ holds only tool directives).
nested=$( (git ls-files '*/go.mod' 2>/dev/null || find . -mindepth 2 -name go.mod -printf '%P\n') |
  sed 's|/go.mod$||' | grep -vx tools | sort || true)

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change: $unformatted" >&2
  exit 1
fi
go vet ./...
# The library's module builds and vets on macOS and FreeBSD too, on both
# CPUs: watchers through fsnotify (kqueue), and internal/fsys's fallbacks for
# openat2, renameat2 and fsync (F_FULLFSYNC on macOS).
# And on 32-bit Linux (386, ARMv7), where int, time_t and st_dev are 32
# bits and fstatat is fstatat64, and on 64-bit MIPS and LoongArch, whose
# stat goes through x/sys (monitor/internal/index/fstatat_linux_*.go).
for target in darwin/amd64 darwin/arm64 freebsd/amd64 freebsd/arm64 linux/386 linux/arm linux/mips64le linux/loong64; do
  GOOS=${target%/*} GOARCH=${target#*/} go build ./...
  GOOS=${target%/*} GOARCH=${target#*/} go vet ./...
done
staticcheck ./...
for mod in $nested; do
  (cd "$mod" && go vet ./... && staticcheck ./...)
done
# A short fuzzing run of every fuzz target, bounded by count rather than time
# (a time bound can end mid-input with "context deadline exceeded" on a loaded
# machine); scripts/soak.sh runs them longer.
FUZZTIME=${FUZZTIME:-300x} ./scripts/fuzz-short.sh
go test -race -count=1 -timeout 20m ./...
# Off Linux, spool readers and monitors watch through fsnotify (kqueue); on
# Linux they use raw inotify. Run the watching tests once more with the
# portable watcher forced, so that the path other systems take is tested
# here, not only compiled.
SPOOL_AGENT_WATCHER=fsnotify go test -race -count=1 -run 'Reader|Dequeue|Watch|Fsnotify|MultiProcess|ReferenceQueue' ./spool
SPOOL_AGENT_WATCHER=fsnotify go test -race -count=1 ./monitor/...
# The packages whose code depends on the width of int and of the stat
# fields run once more as 32-bit (386) binaries, which an amd64 kernel runs
# when it has IA-32 emulation (no race detector there).
if GOARCH=386 go test -count=1 -run '^$' ./internal/qshape >/dev/null 2>&1; then
  GOARCH=386 go test -count=1 ./internal/... ./monitor/... ./collector/... ./spool/
else
  echo "32-bit tests not run: this machine cannot run 386 binaries" >&2
fi
for mod in $nested; do
  # deploy/'s tests only drive other processes (go build, release.sh, nfpm,
  # dpkg, the agent); building Kubernetes' and kustomize's packages again
  # for the race detector would add minutes and find nothing.
  race=-race
  [ "$mod" = deploy ] && race=
  (cd "$mod" && go test $race -count=1 -timeout 15m ./...)
done

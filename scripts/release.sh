#!/usr/bin/env bash
# Builds a release into dist/: a tarball per platform, .deb and .rpm
# packages for linux amd64 and arm64 (nfpm, pinned in tools/go.mod), and
# SHA256SUMS. The binary is static (CGO_ENABLED=0), built with -trimpath,
# and stamped with the version, the git revision and the build date, which
# `spool-agent --version` and spool_agent_build_info show.
#
#   scripts/release.sh 0.1.0
#
# SOURCE_DATE_EPOCH, when set, is the build date (for reproducible builds).
# DIST overrides the output directory; PLATFORMS the tarball platforms
# (default: linux/amd64 linux/arm64, plus darwin and freebsd when they build);
# ARCHS the architectures of the packages (default: amd64 arm64).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

if [ $# -ne 1 ]; then
  echo "usage: scripts/release.sh VERSION (e.g. 0.1.0)" >&2
  exit 2
fi
version=${1#v}
if ! [[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]]; then
  echo "release.sh: version $1 is not semantic (MAJOR.MINOR.PATCH[-PRERELEASE])" >&2
  exit 2
fi
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [ "$revision" != unknown ] && [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  revision+=-dirty
fi
epoch=${SOURCE_DATE_EPOCH:-$(date +%s)}
build_date=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)
dist=${DIST:-$root/dist}
mkdir -p "$dist"
dist=$(cd "$dist" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

ldflags="-s -w -X main.version=$version -X main.revision=$revision -X main.buildDate=$build_date"
build() { # GOOS GOARCH OUT
  CGO_ENABLED=0 GOOS=$1 GOARCH=$2 go build -trimpath -ldflags "$ldflags" -o "$3" ./cmd/spool-agent
}

built=() # the artifacts, relative to $dist
# tarball GOOS/GOARCH: builds the binary and its tarball; only linux must build.
tarball() {
  local goos=${1%/*} goarch=${1#*/}
  local name=spool-agent-$version.$goos-$goarch
  mkdir -p "$work/$name"
  if ! build "$goos" "$goarch" "$work/$name/spool-agent" 2>"$work/build.log"; then
    if [ "$goos" = linux ]; then
      cat "$work/build.log" >&2
      exit 1
    fi
    echo "release.sh: skipping $1: it does not build yet ($(head -n 2 "$work/build.log" | tail -n 1))" >&2
    return
  fi
  cp README.md "$work/$name/"
  cp deploy/packaging/spool-agent.service deploy/packaging/spool-agent.yml "$work/$name/"
  tar -C "$work" --owner=0 --group=0 --numeric-owner --mtime="@$epoch" --sort=name \
    -czf "$dist/$name.tar.gz" "$name"
  built+=("$name.tar.gz")
  echo "$dist/$name.tar.gz"
}

platforms=${PLATFORMS:-linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 freebsd/amd64 freebsd/arm64}
for p in $platforms; do
  case $p in linux/*) tarball "$p" ;; esac
done

# The packages hold the linux binaries built above.
export VERSION=$version SOURCE_DATE_EPOCH=$epoch
for arch in ${ARCHS:-amd64 arm64}; do
  export ARCH=$arch SPOOL_AGENT_BINARY=$work/spool-agent-$version.linux-$arch/spool-agent
  if [ ! -x "$SPOOL_AGENT_BINARY" ]; then
    mkdir -p "$(dirname "$SPOOL_AGENT_BINARY")"
    build linux "$arch" "$SPOOL_AGENT_BINARY"
  fi
  for packager in deb rpm; do
    go tool -modfile="$root/tools/go.mod" nfpm package --config deploy/packaging/nfpm.yaml \
      --packager "$packager" --target "$dist/" >"$work/nfpm.log"
    pkg=$(sed -n 's/^created package: //p' "$work/nfpm.log")
    [ -f "$pkg" ] || { cat "$work/nfpm.log" >&2; exit 1; }
    built+=("$(basename "$pkg")")
    echo "$pkg"
  done
done

# The other systems last: they are tried, and skipped while they do not build.
for p in $platforms; do
  case $p in linux/*) ;; *) tarball "$p" ;; esac
done

cd "$dist"
sha256sum "${built[@]}" >SHA256SUMS
echo "$dist/SHA256SUMS"

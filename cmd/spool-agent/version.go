package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Set at build time (scripts/release.sh does), e.g.
//
//	go build -ldflags "-X main.version=1.2.0 -X main.revision=$(git rev-parse HEAD) -X main.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)" ./cmd/spool-agent
//
// When unset, version and revision fall back to the module version
// ("(devel)" for a plain build) and the VCS revision that the Go toolchain
// stamps into the binary; the build date is then left out. They are
// package variables only because -X can set nothing else.
var (
	version   string
	revision  string
	buildDate string
)

// buildVersion returns the version and revision of the binary.
func buildVersion() (v, rev string) {
	v, rev = version, revision
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return orUnknown(v), orUnknown(rev)
	}
	if v == "" && info.Main.Version != "" {
		v = info.Main.Version
	}
	if rev == "" {
		modified := false
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if rev != "" && modified {
			rev += "-dirty"
		}
	}
	return orUnknown(v), orUnknown(rev)
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// versionLine is what --version prints (and the landing page shows), with
// the stamped build date when there is one.
func versionLine(v, rev string) string {
	line := fmt.Sprintf("spool-agent version %s, revision %s, %s", v, rev, runtime.Version())
	if buildDate != "" {
		line += ", built " + buildDate
	}
	return line
}

package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Set at build time, e.g.
//
//	go build -ldflags "-X main.version=1.2.0 -X main.revision=$(git rev-parse HEAD)" ./cmd/spool-agent
//
// When unset they fall back to the module version and the VCS revision
// that the Go toolchain stamps into the binary.
var (
	version  string
	revision string
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

// versionLine is what --version prints.
func versionLine(v, rev string) string {
	return fmt.Sprintf("spool-agent version %s, revision %s, %s", v, rev, runtime.Version())
}

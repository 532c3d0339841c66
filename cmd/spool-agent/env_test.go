package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spool-agent/spool-agent/spool"
)

// TestOneShotFlagsIgnoreEnv checks that only the global flags and run's are
// read from the environment: variables meant for the agent (or left over in
// a shell) never change what a one-shot command does.
func TestOneShotFlagsIgnoreEnv(t *testing.T) {
	dir := fixtureSpool(t)
	env := map[string]string{
		"SPOOL_AGENT_NAME":            "foo",
		"SPOOL_AGENT_TO":              "frozen",
		"SPOOL_AGENT_OLDER_THAN":      "0s",
		"SPOOL_AGENT_QUEUE":           "frozen",
		"SPOOL_AGENT_OUTPUT":          "json",
		"SPOOL_AGENT_METADATA":        "from the environment",
		"SPOOL_AGENT_ALL":             "true",
		"SPOOL_AGENT_DRY_RUN":         "true",
		"SPOOL_AGENT_QUIET":           "true",
		"SPOOL_AGENT_WORKERS_STOPPED": "true",
	}
	for _, tc := range []struct {
		name  string
		args  []string
		check func(t *testing.T, r result)
	}{
		{"enqueue twice", []string{"enqueue", dir, "active"}, func(t *testing.T, r result) {
			r2 := cli(t, env, "", "enqueue", dir, "active")
			if r.code != 0 || r2.code != 0 || r.stdout == "foo\n" || r.stdout == r2.stdout {
				t.Fatalf("enqueue with $SPOOL_AGENT_NAME: %+v then %+v", r, r2)
			}
			s, err := spool.Open(dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			meta, err := s.ReadMetadata("active", strings.TrimSpace(r.stdout))
			if err != nil || len(meta) != 0 {
				t.Fatalf("metadata %q, %v: want empty, not $SPOOL_AGENT_METADATA", meta, err)
			}
		}},
		{"mv without --to", []string{"mv", dir, "a-new"}, func(t *testing.T, r result) {
			if r.code != exitUsage || !strings.Contains(r.stderr, "--to") {
				t.Fatalf("mv without --to but $SPOOL_AGENT_TO: %+v", r)
			}
		}},
		{"recover without --older-than", []string{"recover", dir}, func(t *testing.T, r result) {
			if r.code != exitUsage || !strings.Contains(r.stderr, "--older-than") {
				t.Fatalf("recover without --older-than but $SPOOL_AGENT_OLDER_THAN: %+v", r)
			}
		}},
		{"ls prints text", []string{"ls", dir}, func(t *testing.T, r result) {
			if r.code != 0 || !strings.HasPrefix(r.stdout, "NAME") || strings.Contains(r.stdout, "checked_out") {
				t.Fatalf("ls with $SPOOL_AGENT_OUTPUT=json and $SPOOL_AGENT_ALL: %+v", r)
			}
		}},
		{"mv is not a dry run", []string{"mv", dir, "a-old", "--to", "outgoing"}, func(t *testing.T, r result) {
			if r.code != 0 || r.stdout != "" {
				t.Fatalf("mv with $SPOOL_AGENT_DRY_RUN: %+v", r)
			}
			if _, err := os.Stat(filepath.Join(dir, "outgoing", "a-old")); err != nil {
				t.Fatalf("mv with $SPOOL_AGENT_DRY_RUN did not move: %v", err)
			}
		}},
		{"recover is neither quiet nor dry", []string{"recover", dir, "--older-than", "10m"}, func(t *testing.T, r result) {
			if r.code != 0 || !strings.HasPrefix(r.stdout, "recovered a-held to active") || !strings.Contains(r.stdout, "recovered 1 entry") {
				t.Fatalf("recover with $SPOOL_AGENT_QUIET and $SPOOL_AGENT_DRY_RUN: %+v", r)
			}
		}},
		{"init creates no queue", []string{"init", filepath.Join(t.TempDir(), "new")}, func(t *testing.T, r result) {
			if r.code != 0 || !strings.Contains(r.stdout, "(queues: none)") {
				t.Fatalf("init with $SPOOL_AGENT_QUEUE and $SPOOL_AGENT_QUIET: %+v", r)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.check(t, cli(t, env, "", tc.args...))
		})
	}
	// The global flags and run's still are read from the environment.
	m := parseOK(t, map[string]string{"SPOOL_AGENT_LOG_LEVEL": "debug", "SPOOL_AGENT_CHECK_EVERY": "3s"}, "run")
	if m.cli.LogLevel != "debug" || m.cli.Run.CheckEvery.String() != "3s" {
		t.Fatalf("global and run flags not read from the environment: %q %v", m.cli.LogLevel, m.cli.Run.CheckEvery)
	}
	// Help says which flags read a variable.
	r := cli(t, nil, "", "enqueue", "--help")
	if strings.Contains(r.stdout, "$SPOOL_AGENT_NAME") || !strings.Contains(r.stdout, "$SPOOL_AGENT_LOG_LEVEL") {
		t.Fatalf("enqueue --help names the wrong variables:\n%s", r.stdout)
	}
}

package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// TestSpoolNameFromConfig checks that fsck, shape and ls take the name of a
// spool of the --config file wherever they take DIR, and that fsck then
// uses exactly the limits the agent gives that spool (per-spool settings
// included; limit flags given on the command line win), whereas a
// directory gets the file's global limits, or run's defaults without a
// file.
func TestSpoolNameFromConfig(t *testing.T) {
	dir := fixtureSpool(t) // a-held checked out 30 minutes ago
	globRoot := filepath.Dir(dir)
	cfg := filepath.Join(t.TempDir(), "agent.yaml")
	writeFile(t, cfg, fmt.Sprintf(`max-checked-out-age: 1h
spool-glob: [%s/*]
spools:
  mail:
    dir: %s
    max-checked-out-age: 20m
  spool:
    max-checked-out-age: 25m
`, globRoot, dir))
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		code int
		want string
	}{
		{"directory: the file's global limit", nil, []string{"--config", cfg, "fsck", dir}, 0, "no problems"},
		{"name: the per-spool limit", nil, []string{"--config", cfg, "fsck", "mail"}, 1, "too_old"},
		{"name from a glob: its per-spool limit", nil, []string{"--config", cfg, "fsck", "spool"}, 1, "too_old"},
		{"name: a flag given wins", nil, []string{"--config", cfg, "fsck", "mail", "--max-checked-out-age", "1h"}, 0, "no problems"},
		{"name: the environment does not count", map[string]string{"SPOOL_AGENT_MAX_CHECKED_OUT_AGE": "2h"}, []string{"--config", cfg, "fsck", "mail"}, 1, "too_old"},
		{"no config: run's defaults", nil, []string{"fsck", dir}, 1, "too_old"},
		{"no config: a name is a directory", nil, []string{"fsck", "mail"}, 2, "mail"},
		{"unknown name is a directory", nil, []string{"--config", cfg, "fsck", "nope"}, 2, "nope"},
		{"ls by name", nil, []string{"--config", cfg, "ls", "mail", "--all"}, 0, "a-held"},
		{"shape by name", nil, []string{"--config", cfg, "shape", "mail", "frozen"}, 0, "frozen"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := cli(t, tc.env, "", tc.args...)
			if r.code != tc.code || !strings.Contains(r.stdout+r.stderr, tc.want) {
				t.Fatalf("spool-agent %q: exit %d (want %d), want %q in\nstdout %s\nstderr %s", tc.args, r.code, tc.code, tc.want, r.stdout, r.stderr)
			}
		})
	}
}

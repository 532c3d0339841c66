package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spool-agent/spool-agent/monitor"
	"github.com/spool-agent/spool-agent/spool"
)

// TestZeroLimitsMeanAnyAge checks that a zero age limit is "any age" and an
// unset one the default, through the flags, the environment, the
// configuration file's global keys and its per-spool settings.
func TestZeroLimitsMeanAnyAge(t *testing.T) {
	const def = 10 * time.Minute
	for _, tc := range []struct {
		name           string
		env            map[string]string
		file           string
		flags          []string
		checkedOut     time.Duration
		tmp            time.Duration
		queue          map[string]time.Duration
		fsckCheckedOut time.Duration // fsck with the same file and flags, where they apply to it
	}{
		{name: "unset", checkedOut: def, tmp: def, fsckCheckedOut: def},
		{name: "flag 0", flags: []string{"--max-checked-out-age", "0", "--max-tmp-file-age", "0s"}, checkedOut: 0, tmp: 0, fsckCheckedOut: 0},
		{name: "env 0", env: map[string]string{"SPOOL_AGENT_MAX_CHECKED_OUT_AGE": "0"}, checkedOut: 0, tmp: def, fsckCheckedOut: def},
		{name: "file 0", file: "max-checked-out-age: 0\nmax-tmp-file-age: 0s\n", checkedOut: 0, tmp: 0, fsckCheckedOut: 0},
		{name: "per-spool 0 over a global limit", file: "max-checked-out-age: 5m\nspools:\n  s:\n    max-checked-out-age: 0\n    max-tmp-file-age: 0s\n", checkedOut: 0, tmp: 0, fsckCheckedOut: 5 * time.Minute},
		{name: "per-spool unset under a global 0", file: "max-checked-out-age: 0\nspools:\n  s:\n    check-every: 1s\n", checkedOut: 0, tmp: def, fsckCheckedOut: 0},
		{name: "per-spool queue 0", file: "max-queue-age: {q: 1h}\nspools:\n  s:\n    max-queue-age: {q: 0}\n", checkedOut: def, tmp: def, queue: map[string]time.Duration{"q": 0}, fsckCheckedOut: def},
		{name: "flag queue 0", flags: []string{"--max-queue-age", "q=0"}, checkedOut: def, tmp: def, queue: map[string]time.Duration{"q": 0}, fsckCheckedOut: def},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var args []string
			if tc.file != "" {
				cfg := filepath.Join(t.TempDir(), "agent.yaml")
				writeFile(t, cfg, tc.file)
				args = append(args, "--config", cfg)
			}
			m := parseOK(t, tc.env, append(append(args, "run", "--spool", "s=/srv/s"), tc.flags...)...)
			defs, _, err := m.cli.Run.spoolDefs(m.config)
			if err != nil {
				t.Fatal(err)
			}
			l := defs[0].Config.Limits
			if l.MaxCheckedOutAge != tc.checkedOut || l.MaxTmpFileAge != tc.tmp {
				t.Errorf("run: limits %+v, want checked out %v, tmp %v", l, tc.checkedOut, tc.tmp)
			}
			for q, d := range tc.queue {
				if got, ok := l.MaxQueueAge[q]; !ok || got != d {
					t.Errorf("run: max queue age of %s = %v (set %v), want %v", q, got, ok, d)
				}
			}
			// fsck takes the same flags and file keys (not the environment).
			fm := parseOK(t, tc.env, append(append(args, "fsck", "/srv/s"), tc.flags...)...)
			fl, err := fm.cli.Fsck.limits()
			if err != nil {
				t.Fatal(err)
			}
			if fl.MaxCheckedOutAge != tc.fsckCheckedOut {
				t.Errorf("fsck: max checked-out age %v, want %v", fl.MaxCheckedOutAge, tc.fsckCheckedOut)
			}
		})
	}
}

// TestZeroLimitChecks checks what a zero limit does: a checkout one second
// old is too_old for fsck and for the running agent.
func TestZeroLimitChecks(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	s, err := spool.Create(dir, []string{"q"}, &spool.Options{Durability: spool.DurabilityNone})
	if err != nil {
		t.Fatal(err)
	}
	name, err := s.EnqueueBytes(context.Background(), "q", []byte("m"), nil, spool.EnqueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "q", name), filepath.Join(dir, "q", spool.CheckoutDir, name)); err != nil {
		t.Fatal(err)
	}
	setMtime(t, dir, filepath.Join("q", spool.CheckoutDir, name), time.Second)

	r := cli(t, nil, "", "fsck", dir, "--max-checked-out-age", "0")
	if r.code != exitFailure || !strings.Contains(r.stdout, string(monitor.KindTooOld)) {
		t.Fatalf("fsck --max-checked-out-age 0: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	if r := cli(t, nil, "", "fsck", dir); r.code != 0 {
		t.Fatalf("fsck with the default limit: exit %d, %q", r.code, r.stdout)
	}

	// The agent's clock is the real one: the checkout is a second old or so.
	mt := time.Now().Add(-time.Second)
	if err := os.Chtimes(filepath.Join(dir, "q", spool.CheckoutDir, name), mt, mt); err != nil {
		t.Fatal(err)
	}
	m := testMain(nil, "", nil, nil)
	_, stderr := runInProcess(t, m, "--spool", "s="+dir, "--web.listen-address", "127.0.0.1:0",
		"--check-every", "50ms", "--alert-after-cycles", "0", "--max-checked-out-age", "0")
	line := waitLine(t, stderr, "spool problems started")
	if !strings.Contains(line, "kind=too_old") || !strings.Contains(line, `\"`+name+`\"`) {
		t.Fatalf("problem started: %s, want too_old of %s", line, name)
	}
}

package collector

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spool-agent/spool-agent/collector/statefile"
	"github.com/spool-agent/spool-agent/internal/testkit"
	"github.com/spool-agent/spool-agent/monitor"
)

// slowAlertConfig alerts from a problem's 4th consecutive sighting, so
// that a monitor starting afresh cannot alert at its first cycle.
func slowAlertConfig() monitor.Config {
	cfg := fastConfig()
	cfg.AlertAfterCycles = 3
	return cfg
}

func stateOptions(path string) Options {
	o := DefaultOptions()
	o.StatePath = path
	return o
}

// startCollector runs a collector of spool "s" in dir with the state file
// at path; stop stops it (Run returns, as on SIGTERM).
func startCollector(t *testing.T, dir, path string, events *eventLog) (c *Collector, stop func()) {
	return startCollectorAt(t, dir, path, events, time.Now)
}

// startCollectorAt is startCollector with the state file's clock.
func startCollectorAt(t *testing.T, dir, path string, events *eventLog, now func() time.Time) (c *Collector, stop func()) {
	t.Helper()
	logger, _ := testLogger()
	c = NewWithOptions(logger, events.add, stateOptions(path))
	c.stateEvery = 5 * time.Millisecond
	c.now = now
	if err := c.Apply([]Spool{{Name: "s", Dir: dir, Config: slowAlertConfig()}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	t.Cleanup(stop)
	return c, stop
}

// savedAlerting reports the names of the problems that the state file at
// path has alerting for spool s.
func savedAlerting(path string) []string {
	sf, err := statefile.Read(path)
	if err != nil {
		return nil
	}
	var out []string
	for _, p := range sf.Spools["s"].Problems {
		if p.Alerting {
			out = append(out, string(p.Kind)+" "+p.Name)
		}
	}
	return out
}

func alertingNames(s *monitor.Snapshot) []string {
	var out []string
	for _, p := range s.Alerting {
		out = append(out, string(p.Kind)+" "+p.Name)
	}
	return out
}

// TestStateSurvivesRestart: a collector stopped (cleanly, or killed: the
// state file as it was while the collector ran) with alerting problems
// hands them to the next one through the state file: its very first
// snapshot shows them alerting, a problem still there raises neither End
// nor Start, one fixed while the agent was down ends at the first cycle,
// and fixing the other later ends it.
func TestStateSurvivesRestart(t *testing.T) {
	for _, kill := range []bool{false, true} {
		t.Run(map[bool]string{false: "clean stop", true: "kill"}[kill], func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "spool")
			makeSpool(t, dir)
			plantOrphan(t, dir)
			gone := filepath.Join(dir, ".tmp", "gone")
			if err := os.WriteFile(gone, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "state", "state.json")

			var ev1 eventLog
			c1, stop1 := startCollector(t, dir, path, &ev1)
			testkit.WaitFor(t, waitTimeout, "both problems alerting", func() bool { return len(snapshotOf(c1, "s").Alerting) == 2 })
			testkit.WaitFor(t, waitTimeout, "the state file to hold them", func() bool { return len(savedAlerting(path)) == 2 })
			var killed []byte
			if kill {
				var err error
				if killed, err = os.ReadFile(path); err != nil {
					t.Fatal(err)
				}
			}
			stop1()
			if kill {
				// What a SIGKILL leaves: the file as written while running.
				if err := os.WriteFile(path, killed, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Remove(gone); err != nil { // fixed while the agent is down
				t.Fatal(err)
			}

			var ev2 eventLog
			logger, logs := testLogger()
			c2 := NewWithOptions(logger, ev2.add, stateOptions(path))
			c2.stateEvery = 5 * time.Millisecond
			if err := c2.Apply([]Spool{{Name: "s", Dir: dir, Config: slowAlertConfig()}}); err != nil {
				t.Fatal(err)
			}
			if got := alertingNames(snapshotOf(c2, "s")); len(got) != 2 {
				t.Fatalf("first snapshot after the restart alerts %q, want both problems (log: %s)", got, logs)
			}
			runCollector(t, c2)
			testkit.WaitFor(t, waitTimeout, "the fixed problem to end", func() bool { return ev2.count("s", monitor.End) == 1 })
			cycles := snapshotOf(c2, "s").Cycles
			testkit.WaitFor(t, waitTimeout, "five more cycles", func() bool { return snapshotOf(c2, "s").Cycles >= cycles+5 })
			if got := ev2.types("s"); len(got) != 1 || got[0] != monitor.End {
				t.Fatalf("events after the restart %v, want one End", got)
			}
			if got := alertingNames(snapshotOf(c2, "s")); len(got) != 1 || got[0] != "orphaned orphan" {
				t.Errorf("alerting after the restart: %q", got)
			}
			if !strings.Contains(logs.String(), "restored the alert state") {
				t.Errorf("no log line of the restore: %s", logs)
			}
			// The fix of the remaining problem ends it, and the state file follows.
			if err := os.Remove(filepath.Join(dir, ".data", "orphan")); err != nil {
				t.Fatal(err)
			}
			testkit.WaitFor(t, waitTimeout, "the orphan to end", func() bool { return ev2.count("s", monitor.End) == 2 })
			testkit.WaitFor(t, waitTimeout, "the state file to hold nothing alerting", func() bool { return len(savedAlerting(path)) == 0 })
		})
	}
}

// TestStateNotRewrittenWhenUnchanged: a state that stays the same cycle
// after cycle is not written again (counts past alert_after_cycles+1 are
// capped in the file).
func TestStateNotRewrittenWhenUnchanged(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	makeSpool(t, dir)
	plantOrphan(t, dir)
	path := filepath.Join(t.TempDir(), "state.json")
	var ev eventLog
	var ahead atomic.Int64
	c, _ := startCollectorAt(t, dir, path, &ev, func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) })
	testkit.WaitFor(t, waitTimeout, "the state file to hold the problem", func() bool { return len(savedAlerting(path)) == 1 })
	before, err := statefile.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	cycles := snapshotOf(c, "s").Cycles
	testkit.WaitFor(t, waitTimeout, "ten more cycles", func() bool { return snapshotOf(c, "s").Cycles >= cycles+10 })
	c.saveState(false) // as the writer does, once more after those cycles
	after, err := statefile.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if !after.Written.Equal(before.Written) {
		t.Errorf("the state file was rewritten (%v then %v) though its state did not change", before.Written, after.Written)
	}
	if p := after.Spools["s"].Problems; len(p) != 1 || p[0].Count != 4 {
		t.Errorf("saved problems %+v, want one counted 4 (alert_after_cycles+1)", p)
	}
	// Unchanged, but StateMaxAge/4 old: rewritten, so that it never looks old.
	ahead.Store(int64(DefaultStateMaxAge / 4))
	c.saveState(false)
	if again, err := statefile.Read(path); err != nil || !again.Written.After(before.Written) {
		t.Errorf("an old unchanged state was not refreshed: %v, %v", again, err)
	}
}

// TestStateIgnored: a state file that cannot be trusted is ignored with a
// log line, and the spool starts afresh (nothing alerting in its first
// snapshot, at alert_after_cycles 3).
func TestStateIgnored(t *testing.T) {
	tests := []struct {
		name   string
		spoil  func(t *testing.T, path, dir string) (spoolDir string)
		opts   func(o *Options)
		logged string
	}{
		{name: "corrupt", spoil: func(t *testing.T, path, dir string) string {
			writeFile(t, path, `{"version": 1, "spools": {`)
			return dir
		}, logged: "ignoring the state file"},
		{name: "other version", spoil: func(t *testing.T, path, dir string) string {
			writeFile(t, path, `{"version": 99, "spools": {}}`)
			return dir
		}, logged: "ignoring the state file"},
		{name: "unknown directory kind", spoil: func(t *testing.T, path, dir string) string {
			writeFile(t, path, strings.Replace(readFile(t, path), `"dir":"data"`, `"dir":"elsewhere"`, 1))
			return dir
		}, logged: "ignoring the state file"},
		{name: "too old", spoil: func(t *testing.T, path, dir string) string {
			sf, err := statefile.Read(path)
			if err != nil {
				t.Fatal(err)
			}
			sf.Written = time.Now().Add(-2 * time.Hour)
			if err := statefile.Write(path, sf); err != nil {
				t.Fatal(err)
			}
			return dir
		}, logged: "too old"},
		{name: "spool moved to another directory", spoil: func(t *testing.T, path, dir string) string {
			other := filepath.Join(filepath.Dir(dir), "other")
			makeSpool(t, other)
			plantOrphan(t, other)
			return other
		}, logged: "whose directory changed"},
		{name: "spool directory replaced", spoil: func(t *testing.T, path, dir string) string {
			// Made before the old one goes, so that it cannot reuse its inode.
			repl := dir + ".new"
			makeSpool(t, repl)
			plantOrphan(t, repl)
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(repl, dir); err != nil {
				t.Fatal(err)
			}
			return dir
		}, logged: "whose directory was replaced"},
		{name: "spool directory gone", spoil: func(t *testing.T, path, dir string) string {
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
			return dir
		}, logged: "whose directory cannot be read"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "spool")
			makeSpool(t, dir)
			plantOrphan(t, dir)
			path := filepath.Join(t.TempDir(), "state.json")
			var ev1 eventLog
			c1, stop1 := startCollector(t, dir, path, &ev1)
			testkit.WaitFor(t, waitTimeout, "the state file to hold the problem", func() bool { return len(savedAlerting(path)) == 1 })
			_ = c1
			stop1()
			spoolDir := tc.spoil(t, path, dir)

			logger, logs := testLogger()
			c := NewWithOptions(logger, nil, stateOptions(path))
			if err := c.Apply([]Spool{{Name: "s", Dir: spoolDir, Config: slowAlertConfig()}}); err != nil {
				t.Fatal(err)
			}
			if got := alertingNames(snapshotOf(c, "s")); len(got) != 0 {
				t.Errorf("first snapshot alerts %q from an ignored state", got)
			}
			if n := strings.Count(logs.String(), tc.logged); n != 1 {
				t.Errorf("%d log lines with %q, want 1: %s", n, tc.logged, logs)
			}
		})
	}
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestStatePathInsideSpool: a state file inside a watched spool (directly
// or through a symlink) is refused.
func TestStatePathInsideSpool(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "spool")
	makeSpool(t, dir)
	link := filepath.Join(root, "link")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{
		filepath.Join(dir, "state.json"),
		filepath.Join(dir, ".data", "x", "state.json"),
		filepath.Join(link, "state.json"),
	} {
		c := NewWithOptions(nil, nil, stateOptions(path))
		if err := c.Apply([]Spool{{Name: "s", Dir: dir, Config: fastConfig()}}); !errors.Is(err, ErrStateInSpool) {
			t.Errorf("state file %s: Apply error %v, want ErrStateInSpool", path, err)
		}
	}
	c := NewWithOptions(nil, nil, stateOptions(filepath.Join(root, "spool.state.json")))
	if err := c.Apply([]Spool{{Name: "s", Dir: dir, Config: fastConfig()}}); err != nil {
		t.Errorf("state file beside the spool: %v", err)
	}
}

func TestDefaultStatePath(t *testing.T) {
	tests := []struct {
		name                string
		stateDir, xdg, home string
		want                string
		wantErr             error
	}{
		{"systemd", "/var/lib/spool-agent", "/x/state", "/home/u", "/var/lib/spool-agent/state.json", nil},
		{"systemd, several directories", "/var/lib/a:/var/lib/b", "", "/home/u", "/var/lib/a/state.json", nil},
		{"XDG", "", "/x/state", "/home/u", "/x/state/spool-agent/state.json", nil},
		{"XDG not absolute", "", "rel", "/home/u", "/home/u/.local/state/spool-agent/state.json", nil},
		{"home", "", "", "/home/u", "/home/u/.local/state/spool-agent/state.json", nil},
		{"nothing", "", "", "", "", ErrNoStateDir},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{"STATE_DIRECTORY": tc.stateDir, "XDG_STATE_HOME": tc.xdg, "HOME": tc.home}
			got, err := DefaultStatePath(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
			if got != tc.want || !errors.Is(err, tc.wantErr) {
				t.Errorf("DefaultStatePath() = %q, %v, want %q, %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

// TestEventLogAggregates: a cycle's events reach Options.EventLog as one
// line per type, kind and directory, with the count and the first names
// quoted, whatever the number of files.
func TestEventLogAggregates(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	makeSpool(t, dir)
	for i := range 300 {
		writeFile(t, filepath.Join(dir, "outbox", "orphan-"+strings.Repeat("x", i%3)+"\x1b]0;evil\a"+fmt.Sprint(i)), "")
	}
	logger, logs := testLogger()
	o := DefaultOptions()
	o.EventLog = logger
	var ev eventLog
	c := NewWithOptions(logger, ev.add, o)
	if err := c.Apply([]Spool{{Name: "s", Dir: dir, Config: fastConfig()}}); err != nil {
		t.Fatal(err)
	}
	runCollector(t, c)
	testkit.WaitFor(t, waitTimeout, "the problems to alert", func() bool { return ev.count("s", monitor.Start) == 600 })
	var lines []string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "spool problems started") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 2 {
		t.Fatalf("%d lines of started problems, want 2 (orphaned, missing_data in outbox):\n%s", len(lines), strings.Join(lines, "\n"))
	}
	for _, l := range lines {
		if !strings.Contains(l, "count=300") || !strings.Contains(l, "…") || strings.ContainsAny(l, "\x1b\a") || !strings.Contains(l, `x1b]0;evil`) {
			t.Errorf("line %q: want count=300, a few names escaped, and …", l)
		}
	}
}

// TestStateLeavesOutTheLargestSpools: when the spools' states would make
// the state file larger than its reader accepts, the largest spool's state
// is left out with one log line, and the others' survive a restart (the
// reader once refused the whole file, and every spool's alerts started
// afresh).
func TestStateLeavesOutTheLargestSpools(t *testing.T) {
	small, big := filepath.Join(t.TempDir(), "small"), filepath.Join(t.TempDir(), "big")
	makeSpool(t, small)
	makeSpool(t, big)
	plantOrphan(t, small)
	for i := range 40 {
		if err := os.WriteFile(filepath.Join(big, ".data", fmt.Sprint("orphan-with-a-long-name-", i)), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "state.json")
	spools := []Spool{{Name: "small", Dir: small, Config: slowAlertConfig()}, {Name: "big", Dir: big, Config: slowAlertConfig()}}
	saved := func() map[string]int {
		sf, err := statefile.Read(path)
		if err != nil {
			return nil
		}
		out := map[string]int{}
		for name, s := range sf.Spools {
			out[name] = len(s.Problems)
		}
		return out
	}

	logger, logs := testLogger()
	c1 := NewWithOptions(logger, nil, stateOptions(path))
	c1.stateEvery = 5 * time.Millisecond
	c1.stateBudget = 2 << 10 // room for small's one problem, not for big's forty
	if err := c1.Apply(spools); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c1.Run(ctx) }()
	testkit.WaitFor(t, waitTimeout, "both spools alerting", func() bool {
		return len(snapshotOf(c1, "small").Alerting) == 1 && len(snapshotOf(c1, "big").Alerting) == 40
	})
	testkit.WaitFor(t, waitTimeout, "the state file to hold small's alert", func() bool { return saved()["small"] == 1 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := saved(); len(got) != 1 {
		t.Errorf("state file holds %v, want small's state alone", got)
	}
	if info, err := os.Stat(path); err != nil || info.Size() > 2<<10+512 {
		t.Errorf("state file: %v, %v; want it within the budget", info, err)
	}
	if !strings.Contains(logs.String(), "leaving the largest spools' alert state out") || !strings.Contains(logs.String(), "big") {
		t.Errorf("no log line naming the spool left out: %s", logs)
	}

	c2 := NewWithOptions(logger, nil, stateOptions(path))
	if err := c2.Apply(spools); err != nil {
		t.Fatal(err)
	}
	if got := alertingNames(snapshotOf(c2, "small")); len(got) != 1 {
		t.Errorf("small alerts %q after the restart, want its orphan", got)
	}
	if got := snapshotOf(c2, "big").Alerting; len(got) != 0 {
		t.Errorf("big alerts %d problems before its first cycle, want none restored", len(got))
	}
}

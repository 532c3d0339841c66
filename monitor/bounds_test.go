package monitor

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// watchCount returns the number of inotify watches the monitor holds.
func watchCount(m *Monitor) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.w == nil {
		return 0
	}
	return m.w.Watches()
}

// indexSize returns the entries and .tmp files the index tracks.
func indexSize(m *Monitor) (entries, unreg, tmpFiles int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.idx == nil {
		return 0, 0, 0
	}
	return m.idx.Tracked()
}

func limitProblems(s *Snapshot) []string {
	var out []string
	for _, p := range s.Problems {
		if p.Kind == KindLimit {
			out = append(out, string(p.Dir.Kind))
		}
	}
	return out
}

// TestBounds: a spool flooded past a bound of Config (unregistered files in
// a queue or .tmp, directories at the root, watches) keeps the index and
// the watches within the bound, raises a limit problem that alerts, and is
// polled instead of watched; once the flood goes, the problem ends and
// the monitor watches the spool again.
func TestBounds(t *testing.T) {
	tests := []struct {
		name    string
		bounds  func(c *Config)
		flood   func(t *testing.T, dir string)
		unflood func(t *testing.T, dir string)
		want    string // the limit problem's dir
		check   func(t *testing.T, m *Monitor)
	}{
		{
			name:    "unregistered files in a queue",
			bounds:  func(c *Config) { c.MaxUnregistered = 1000 },
			flood:   func(t *testing.T, dir string) { makeFiles(t, filepath.Join(dir, "queue1"), "orphan", 5000) },
			unflood: func(t *testing.T, dir string) { removeFiles(t, filepath.Join(dir, "queue1"), "orphan", 5000) },
			want:    "unregistered",
			check: func(t *testing.T, m *Monitor) {
				if entries, unreg, _ := indexSize(m); entries > 1000 || unreg > 1000 {
					t.Errorf("index tracks %d names, %d unregistered; bound 1000", entries, unreg)
				}
				s := m.Snapshot()
				if n := len(s.Problems); n > 2*1000+1 {
					t.Errorf("%d problems: not bounded", n)
				}
			},
		},
		{
			name:    "files in .tmp",
			bounds:  func(c *Config) { c.MaxUnregistered = 1000 },
			flood:   func(t *testing.T, dir string) { makeFiles(t, filepath.Join(dir, ".tmp"), "x.tmp", 5000) },
			unflood: func(t *testing.T, dir string) { removeFiles(t, filepath.Join(dir, ".tmp"), "x.tmp", 5000) },
			want:    "unregistered",
			check: func(t *testing.T, m *Monitor) {
				if _, _, tmp := indexSize(m); tmp > 1000 {
					t.Errorf("index tracks %d .tmp files; bound 1000", tmp)
				}
			},
		},
		{
			name:   "queues",
			bounds: func(c *Config) { c.MaxQueues = 10 },
			flood: func(t *testing.T, dir string) {
				for i := range 50 {
					mkdir(t, dir, fmt.Sprintf("q%02d", i))
					mkdir(t, dir, fmt.Sprintf("q%02d/.checkout", i))
				}
			},
			unflood: func(t *testing.T, dir string) {
				for i := range 50 {
					if err := os.RemoveAll(filepath.Join(dir, fmt.Sprintf("q%02d", i))); err != nil {
						t.Fatal(err)
					}
				}
			},
			want: "queues",
			check: func(t *testing.T, m *Monitor) {
				if n := len(m.Snapshot().Queues); n != 10 {
					t.Errorf("%d queues in the snapshot, want the bound 10", n)
				}
			},
		},
		{
			name:   "watches",
			bounds: func(c *Config) { c.MaxWatches = 20 },
			flood: func(t *testing.T, dir string) {
				for i := range 10 {
					mkdir(t, dir, fmt.Sprintf("q%02d", i))
					mkdir(t, dir, fmt.Sprintf("q%02d/.checkout", i))
				}
			},
			unflood: func(t *testing.T, dir string) {
				for i := range 10 {
					if err := os.RemoveAll(filepath.Join(dir, fmt.Sprintf("q%02d", i))); err != nil {
						t.Fatal(err)
					}
				}
			},
			want: "watches",
			check: func(t *testing.T, m *Monitor) {
				if n := len(m.Snapshot().Queues); n != 13 {
					t.Errorf("%d queues in the snapshot, want all 13 (only the watches are bounded)", n)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir, _ := newTestSpool(t)
			now := t0
			m := newTestMonitor(t, dir, conf(alertAfter(1), tc.bounds), &now)
			mustCycle(t, m)
			if !m.Snapshot().Watching || watchCount(m) == 0 {
				t.Fatal("not watching the spool within its bounds")
			}
			tc.flood(t, dir)
			syncMonitor(t, m)
			events := mustCycleAllowingErr(t, m)
			events = append(events, mustCycleAllowingErr(t, m)...)
			events = append(events, mustCycleAllowingErr(t, m)...)
			s := m.Snapshot()
			if got := limitProblems(s); !slices.Equal(got, []string{tc.want}) {
				t.Fatalf("limit problems %q, want %q", got, tc.want)
			}
			started := false
			for _, e := range events {
				started = started || e.Type == Start && e.Problem.Kind == KindLimit
			}
			if !started || s.EventsTotal[KindLimit][Start] != 1 {
				t.Errorf("the limit problem did not start alerting (events total %v)", s.EventsTotal[KindLimit])
			}
			if s.Watching || watchCount(m) != 0 {
				t.Errorf("over a bound: watching %v with %d watches, want polling with none", s.Watching, watchCount(m))
			}
			tc.check(t, m)
			// Flat: more cycles do not grow the index.
			e1, u1, t1 := indexSize(m)
			mustCycleAllowingErr(t, m)
			if e2, u2, t2 := indexSize(m); e2 != e1 || u2 != u1 || t2 != t1 {
				t.Errorf("index grew from %d/%d/%d to %d/%d/%d", e1, u1, t1, e2, u2, t2)
			}

			tc.unflood(t, dir)
			ended := false
			for range 3 {
				for _, e := range mustCycleAllowingErr(t, m) {
					ended = ended || e.Type == End && e.Problem.Kind == KindLimit
				}
			}
			if !ended || len(limitProblems(m.Snapshot())) != 0 {
				t.Errorf("the limit problem did not end: %q", limitProblems(m.Snapshot()))
			}
			if !m.Snapshot().Watching || watchCount(m) == 0 {
				t.Errorf("not watching again once within the bounds")
			}
		})
	}
}

func mustCycleAllowingErr(t *testing.T, m *Monitor) []Event {
	t.Helper()
	events, err := m.Cycle(t.Context())
	if err != nil {
		t.Fatalf("cycle: %v", err)
	}
	m.waitSizes()
	return events
}

func makeFiles(t *testing.T, dir, prefix string, n int) {
	t.Helper()
	for i := range n {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%s-%05d", prefix, i)))
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
}

func removeFiles(t *testing.T, dir, prefix string, n int) {
	t.Helper()
	for i := range n {
		if err := os.Remove(filepath.Join(dir, fmt.Sprintf("%s-%05d", prefix, i))); err != nil {
			t.Fatal(err)
		}
	}
}

package monitor

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func fmtEvent(e Event) string {
	return fmt.Sprintf("%s %s %s", e.Type, e.Problem.Kind, e.Problem.Path())
}

func eventStrings(events []Event) []string {
	out := []string{}
	for _, e := range events {
		out = append(out, fmtEvent(e))
	}
	slices.Sort(out)
	return out
}

func alertingStrings(s *Snapshot) []string {
	out := []string{}
	for _, p := range s.Alerting {
		out = append(out, string(p.Kind)+" "+p.Path())
	}
	slices.Sort(out)
	return out
}

func sorted(xs ...string) []string {
	xs = append([]string{}, xs...)
	slices.Sort(xs)
	return xs
}

// TestPartialCycles: while one directory cannot be read (EACCES from the
// open, through the test seam since the tests may run as root), the
// problems it would decide are neither counted nor forgotten: no End for
// them, no Start for what cannot be seen, and normal debouncing elsewhere;
// once it can be read again, what was fixed inside it ends and what is
// still there keeps alerting without a new Start.
func TestPartialCycles(t *testing.T) {
	// Problems before the fault (AlertAfterCycles 1: they alert at the 2nd
	// cycle):
	//   A  too_old queue1/.checkout/co1 (a whole entry, checked out long ago)
	//   B  orphaned, missing_data queue1/orph
	//   C  too_old, orphaned .tmp/tmp1
	//   D  orphaned .data/dat1
	//   E  orphaned, missing_data queue2/orph2
	// During the fault B, C and E are fixed and G (orphaned, missing_data
	// queue2/new) appears.
	initial := sorted(
		"too_old queue1/.checkout/co1",
		"orphaned queue1/orph", "missing_data queue1/orph",
		"too_old .tmp/tmp1", "orphaned .tmp/tmp1",
		"orphaned .data/dat1",
		"orphaned queue2/orph2", "missing_data queue2/orph2",
	)
	tests := []struct {
		name       string
		unreadable string   // relative to the spool
		fault3     []string // events of the first cycle with the fault
		fault4     []string // of the second
		back5      []string // of the first cycle that reads it again
		back6      []string // of the next
		final      []string // alerting at the end
	}{
		{
			name:       "queue directory",
			unreadable: "queue1",
			fault3:     []string{"end too_old .tmp/tmp1", "end orphaned .tmp/tmp1", "end orphaned queue2/orph2", "end missing_data queue2/orph2"},
			fault4:     []string{"start orphaned queue2/new", "start missing_data queue2/new"},
			back5:      []string{"end orphaned queue1/orph", "end missing_data queue1/orph"},
			final:      []string{"too_old queue1/.checkout/co1", "orphaned .data/dat1", "orphaned queue2/new", "missing_data queue2/new"},
		},
		{
			name:       "checkout directory",
			unreadable: "queue1/.checkout",
			fault3:     []string{"end too_old .tmp/tmp1", "end orphaned .tmp/tmp1", "end orphaned queue2/orph2", "end missing_data queue2/orph2", "end orphaned queue1/orph", "end missing_data queue1/orph"},
			fault4:     []string{"start orphaned queue2/new", "start missing_data queue2/new"},
			final:      []string{"too_old queue1/.checkout/co1", "orphaned .data/dat1", "orphaned queue2/new", "missing_data queue2/new"},
		},
		{
			name:       "registry",
			unreadable: ".registry",
			fault3:     []string{"end too_old .tmp/tmp1", "end missing_data queue2/orph2", "end missing_data queue1/orph"},
			fault4:     []string{"start missing_data queue2/new"},
			back5:      []string{"end orphaned queue1/orph", "end orphaned .tmp/tmp1", "end orphaned queue2/orph2"},
			back6:      []string{"start orphaned queue2/new"},
			final:      []string{"too_old queue1/.checkout/co1", "orphaned .data/dat1", "orphaned queue2/new", "missing_data queue2/new"},
		},
		{
			name:       "data",
			unreadable: ".data",
			fault3:     []string{"end too_old .tmp/tmp1", "end orphaned .tmp/tmp1", "end orphaned queue2/orph2", "end orphaned queue1/orph"},
			fault4:     []string{"start orphaned queue2/new"},
			back5:      []string{"end missing_data queue1/orph", "end missing_data queue2/orph2"},
			back6:      []string{"start missing_data queue2/new"},
			final:      []string{"too_old queue1/.checkout/co1", "orphaned .data/dat1", "orphaned queue2/new", "missing_data queue2/new"},
		},
	}
	for _, tc := range tests {
		for _, watch := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/watch=%v", tc.name, watch), func(t *testing.T) {
				dir, _ := newTestSpool(t)
				now := t0.Add(day)
				m := newTestMonitor(t, dir, conf(alertAfter(1), func(c *Config) { c.DisableWatch = !watch }), &now)
				touchAll(t, dir, ".registry/co1", ".data/co1", "queue1/.checkout/co1", "queue1/orph", ".tmp/tmp1", ".data/dat1", "queue2/orph2")
				cycle := func(step string, wantErr bool, want []string) {
					t.Helper()
					syncMonitor(t, m)
					events, err := m.Cycle(t.Context())
					if (err != nil) != wantErr {
						t.Fatalf("%s: cycle error %v, want error %v", step, err, wantErr)
					}
					if wantErr && !strings.Contains(err.Error(), dir+"/"+tc.unreadable) {
						t.Errorf("%s: error %v does not name %s", step, err, tc.unreadable)
					}
					if got := eventStrings(events); !slices.Equal(got, sorted(want...)) {
						t.Errorf("%s: events\n got %q\nwant %q", step, got, sorted(want...))
					}
				}
				cycle("first cycle", false, nil)
				var starts []string
				for _, p := range initial {
					starts = append(starts, "start "+p)
				}
				cycle("second cycle", false, starts)

				// As non-root, chmod 000 makes the directory unreadable; root
				// reads it anyway, so there the fault seam fails its open
				// with the EACCES a non-root user gets.
				target := dir + "/" + tc.unreadable
				fault := func(path string) error {
					if path == target {
						return unix.EACCES
					}
					return nil
				}
				unreadable := func(on bool) {
					t.Helper()
					if os.Geteuid() == 0 {
						if on {
							m.openDirFault.Store(&fault)
						} else {
							m.openDirFault.Store(nil)
						}
						return
					}
					mode := os.FileMode(0o755)
					if on {
						mode = 0
					}
					if err := os.Chmod(target, mode); err != nil {
						t.Fatal(err)
					}
				}
				t.Cleanup(func() { os.Chmod(target, 0o755) })
				// The changes first: a non-root test cannot change an
				// unreadable directory either.
				rm(t, dir, "queue1/orph")
				rm(t, dir, ".tmp/tmp1")
				rm(t, dir, "queue2/orph2")
				touch(t, dir, "queue2/new")
				syncMonitor(t, m)
				unreadable(true)
				m.mu.Lock()
				m.needFull = true // a watching monitor reads the directory again only in a full scan
				m.mu.Unlock()
				cycle("first cycle with the fault", true, tc.fault3)
				cycle("second cycle with the fault", true, tc.fault4)
				if s := m.Snapshot(); !s.Up || s.FailedCycles != 2 {
					t.Errorf("during the fault: Up %v, FailedCycles %d", s.Up, s.FailedCycles)
				}
				unreadable(false)
				cycle("first cycle after the fault", false, tc.back5)
				cycle("second cycle after the fault", false, tc.back6)
				if got := alertingStrings(m.Snapshot()); !slices.Equal(got, sorted(tc.final...)) {
					t.Errorf("alerting at the end\n got %q\nwant %q", got, sorted(tc.final...))
				}
			})
		}
	}
}

package monitor

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestHardLinks: a queue or checkout file with more than one link (here
// linked to a file outside the spool) is unexpected, found by a scan and
// by inotify alike, and is no waiting or checked-out entry.
func TestHardLinks(t *testing.T) {
	dir, _ := newTestSpool(t)
	outside := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(outside, []byte("root's"), 0o600); err != nil {
		t.Fatal(err)
	}
	now := t0.Add(time.Minute)
	w := newTestMonitor(t, dir, conf(), &now)
	mustCycle(t, w)
	touchAll(t, dir, ".registry/q", ".data/q", ".registry/c", ".data/c", ".registry/fine", ".data/fine", "queue1/fine")
	for _, rel := range []string{"queue1/q", "queue2/.checkout/c"} {
		if err := os.Link(outside, filepath.Join(dir, rel)); err != nil {
			t.Fatal(err)
		}
	}
	want := []Problem{p(KindUnexpected, q("queue1"), "q"), p(KindUnexpected, co("queue2"), "c")}
	f := newTestMonitor(t, dir, conf(noWatch), &now)
	syncMonitor(t, w)
	for _, s := range checkAndCycle(t, dir, DefaultLimits(), now, want, w, f) {
		if s.Queues[0].Entries != 1 || s.Queues[1].CheckedOut != 0 {
			t.Errorf("entries %d, checked out %d: a hard-linked file counts as neither", s.Queues[0].Entries, s.Queues[1].CheckedOut)
		}
	}
}

// checkAndCycle runs Check on dir and a cycle of each monitor, fails the
// test unless each of them reports want, and returns the monitors'
// snapshots, in order.
func checkAndCycle(t *testing.T, dir string, lim Limits, now time.Time, want []Problem, ms ...*Monitor) []*Snapshot {
	t.Helper()
	got, err := Check(dir, lim, now)
	if err != nil {
		t.Fatal(err)
	}
	if !equalProblems(got, want) {
		t.Errorf("Check: got %s\nwant %s", fmtProblems(got), fmtProblems(want))
	}
	var snaps []*Snapshot
	for _, m := range ms {
		mustCycle(t, m)
		s := m.Snapshot()
		if !equalProblems(s.Problems, want) {
			t.Errorf("monitor (watching %v): got %s\nwant %s", s.Watching, fmtProblems(s.Problems), fmtProblems(want))
		}
		snaps = append(snaps, s)
	}
	return snaps
}

package monitor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spool-agent/spool-agent/spool"
	"golang.org/x/sys/unix"
)

// t0 is the mtime every test file gets, so that expected problems are exact.
var t0 = time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// newTestSpool creates the reference tests' spool: queues queue1..queue3.
func newTestSpool(t testing.TB) (string, *spool.Spool) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "spool")
	s, err := spool.Create(dir, []string{"queue1", "queue2", "queue3"}, &spool.Options{Durability: spool.DurabilityNone})
	if err != nil {
		t.Fatal(err)
	}
	return dir, s
}

// touch creates (or empties) dir/rel with mtime t0, like the reference's
// `touch spool/<dir>/foo`.
func touch(t testing.TB, dir, rel string) {
	t.Helper()
	p := filepath.Join(dir, rel)
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, t0, t0); err != nil {
		t.Fatal(err)
	}
}

func rm(t testing.TB, dir, rel string) {
	t.Helper()
	if err := os.Remove(filepath.Join(dir, rel)); err != nil {
		t.Fatal(err)
	}
}

var (
	reg  = Dir{Kind: DirRegistry}
	tmp  = Dir{Kind: DirTmp}
	data = Dir{Kind: DirData}
	root = Dir{Kind: DirRoot}
)

func q(name string) Dir  { return Dir{Kind: DirQueue, Queue: name} }
func co(name string) Dir { return Dir{Kind: DirCheckout, Queue: name} }

func p(kind Kind, d Dir, name string, dirs ...Dir) Problem {
	pr := Problem{Kind: kind, Dir: d, Name: name, ModTime: t0, Dirs: dirs}
	if kind == KindUnexpected {
		pr.ModTime = time.Time{}
	}
	return pr
}

func fmtProblems(ps []Problem) string {
	if len(ps) == 0 {
		return "()"
	}
	var b strings.Builder
	for _, p := range ps {
		fmt.Fprintf(&b, "\n\t%s", p)
	}
	return b.String()
}

func equalProblems(a, b []Problem) bool {
	return slices.EqualFunc(a, b, func(x, y Problem) bool { return CompareProblems(x, y) == 0 })
}

// referenceKinds keeps the problems of the reference's three kinds.
func referenceKinds(ps []Problem) []Problem {
	var out []Problem
	for _, p := range ps {
		switch p.Kind {
		case KindTooOld, KindOrphaned, KindDuplicated:
			out = append(out, p)
		}
	}
	return out
}

var day = 24 * time.Hour

// checkCase is one of the reference's monitor tests: the files to touch,
// the limits, the expected problems of the reference's kinds (its expect
// output) and of every kind, then files to remove and what remains.
type checkCase struct {
	name     string
	limits   Limits
	files    []string
	ref      []Problem // the reference's expected run_once
	want     []Problem // with the new kinds
	thenRm   []string
	thenWant []Problem
}

func referenceCases() []checkCase {
	lim := Limits{MaxCheckedOutAge: day, MaxTmpFileAge: day}
	return []checkCase{
		{name: "Empty", limits: lim},
		{name: "Queue entry, no issues", limits: lim, files: []string{".registry/foo", "queue1/foo"},
			want: []Problem{p(KindMissingData, q("queue1"), "foo")}},
		{name: "Checkout entry, no issues", limits: lim, files: []string{".registry/foo", "queue1/.checkout/foo"},
			want: []Problem{p(KindMissingData, co("queue1"), "foo")}},
		{name: "Queue entry with temporary file, no issues", limits: lim, files: []string{".registry/foo", "queue1/foo", ".tmp/foo"},
			want: []Problem{p(KindMissingData, q("queue1"), "foo")}},
		{name: "No entries for registered file", limits: lim, files: []string{".registry/foo"},
			ref: []Problem{p(KindOrphaned, reg, "foo")}, want: []Problem{p(KindOrphaned, reg, "foo")},
			thenRm: []string{".registry/foo"}},
		{name: "Duplicate entries", limits: lim, files: []string{".registry/foo", "queue1/foo", "queue2/foo"},
			ref: []Problem{p(KindDuplicated, reg, "foo", q("queue1"), q("queue2"))},
			want: []Problem{
				p(KindDuplicated, reg, "foo", q("queue1"), q("queue2")),
				p(KindMissingData, q("queue1"), "foo"),
				p(KindMissingData, q("queue2"), "foo"),
			},
			thenRm: []string{"queue2/foo"}, thenWant: []Problem{p(KindMissingData, q("queue1"), "foo")}},
		{name: "Temporary file not registered", limits: lim, files: []string{".tmp/foo"},
			ref: []Problem{p(KindOrphaned, tmp, "foo")}, want: []Problem{p(KindOrphaned, tmp, "foo")},
			thenRm: []string{".tmp/foo"}},
		{name: "Checkout entry not registered", limits: lim, files: []string{"queue1/.checkout/foo"},
			ref:    []Problem{p(KindOrphaned, co("queue1"), "foo")},
			want:   []Problem{p(KindOrphaned, co("queue1"), "foo"), p(KindMissingData, co("queue1"), "foo")},
			thenRm: []string{"queue1/.checkout/foo"}},
		{name: "Data file not registered", limits: lim, files: []string{".data/foo"},
			ref: []Problem{p(KindOrphaned, data, "foo")}, want: []Problem{p(KindOrphaned, data, "foo")},
			thenRm: []string{".data/foo"}},
		{name: "Queue entry not registered", limits: lim, files: []string{"queue1/foo"},
			ref:    []Problem{p(KindOrphaned, q("queue1"), "foo")},
			want:   []Problem{p(KindOrphaned, q("queue1"), "foo"), p(KindMissingData, q("queue1"), "foo")},
			thenRm: []string{"queue1/foo"}},
		{name: "Checked out entry too old", limits: Limits{MaxCheckedOutAge: 0, MaxTmpFileAge: day},
			files: []string{".registry/foo", "queue1/.checkout/foo"},
			ref:   []Problem{p(KindTooOld, co("queue1"), "foo")},
			want:  []Problem{p(KindTooOld, co("queue1"), "foo"), p(KindMissingData, co("queue1"), "foo")}},
		{name: "Temporary file too old", limits: Limits{MaxCheckedOutAge: day, MaxTmpFileAge: 0},
			files: []string{".registry/foo", "queue1/foo", ".tmp/foo"},
			ref:   []Problem{p(KindTooOld, tmp, "foo")},
			want:  []Problem{p(KindTooOld, tmp, "foo"), p(KindMissingData, q("queue1"), "foo")}},
		{name: "Queue entry too old", limits: Limits{MaxCheckedOutAge: day, MaxTmpFileAge: day, MaxQueueAge: map[string]time.Duration{"queue1": 0}},
			files: []string{".registry/foo", "queue1/foo"},
			ref:   []Problem{p(KindTooOld, q("queue1"), "foo")},
			want:  []Problem{p(KindTooOld, q("queue1"), "foo"), p(KindMissingData, q("queue1"), "foo")}},
	}
}

// checkNow is the time of the checks: 1µs after the files' mtime, so that a
// zero limit is exceeded (strictly) and a day is not.
var checkNow = t0.Add(time.Microsecond)

// TestCheckReferenceCases runs the reference's monitor tests through Check,
// through a monitor that scans in full each cycle, and through a watching
// monitor that sees the files arrive and leave through inotify.
func TestCheckReferenceCases(t *testing.T) {
	for _, tc := range referenceCases() {
		t.Run(tc.name, func(t *testing.T) {
			dir, _ := newTestSpool(t)
			// A watching monitor started on the empty spool.
			w := newTestMonitor(t, dir, conf(withLimits(tc.limits), alertAfter(0)), &checkNow)
			mustCycle(t, w)
			for _, f := range tc.files {
				touch(t, dir, f)
			}
			got, err := Check(dir, tc.limits, checkNow)
			if err != nil {
				t.Fatal(err)
			}
			if r := referenceKinds(got); !equalProblems(r, tc.ref) {
				t.Errorf("reference kinds: got %s\nwant %s", fmtProblems(r), fmtProblems(tc.ref))
			}
			if !equalProblems(got, tc.want) {
				t.Errorf("Check: got %s\nwant %s", fmtProblems(got), fmtProblems(tc.want))
			}
			syncMonitor(t, w)
			mustCycle(t, w)
			if ps := w.Snapshot().Problems; !equalProblems(ps, tc.want) {
				t.Errorf("watching monitor: got %s\nwant %s", fmtProblems(ps), fmtProblems(tc.want))
			}
			f := newTestMonitor(t, dir, conf(withLimits(tc.limits), noWatch), &checkNow)
			mustCycle(t, f)
			if ps := f.Snapshot().Problems; !equalProblems(ps, tc.want) {
				t.Errorf("scanning monitor: got %s\nwant %s", fmtProblems(ps), fmtProblems(tc.want))
			}
			if tc.thenRm == nil {
				return
			}
			for _, f := range tc.thenRm {
				rm(t, dir, f)
			}
			got, err = Check(dir, tc.limits, checkNow)
			if err != nil {
				t.Fatal(err)
			}
			if !equalProblems(got, tc.thenWant) {
				t.Errorf("after rm, Check: got %s\nwant %s", fmtProblems(got), fmtProblems(tc.thenWant))
			}
			syncMonitor(t, w)
			mustCycle(t, w)
			if ps := w.Snapshot().Problems; !equalProblems(ps, tc.thenWant) {
				t.Errorf("after rm, watching monitor: got %s\nwant %s", fmtProblems(ps), fmtProblems(tc.thenWant))
			}
		})
	}
}

// TestCheckNewKinds covers missing_data and unexpected, and a healthy entry.
func TestCheckNewKinds(t *testing.T) {
	lim := Limits{MaxCheckedOutAge: day, MaxTmpFileAge: day}
	entry := []string{".registry/foo", ".data/foo"}
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  []Problem
	}{
		{"healthy entry", func(t *testing.T, dir string) {
			touchAll(t, dir, append(entry, "queue1/foo")...)
		}, nil},
		{"healthy checkout", func(t *testing.T, dir string) {
			touchAll(t, dir, append(entry, "queue2/.checkout/foo")...)
		}, nil},
		{"missing data", func(t *testing.T, dir string) {
			touchAll(t, dir, ".registry/foo", "queue3/foo")
		}, []Problem{p(KindMissingData, q("queue3"), "foo")}},
		{"data but no queue file", func(t *testing.T, dir string) {
			touchAll(t, dir, entry...)
		}, []Problem{p(KindOrphaned, reg, "foo")}},
		{"directory in the registry", func(t *testing.T, dir string) {
			mkdir(t, dir, ".registry/foo")
			touchAll(t, dir, ".data/foo", "queue1/foo")
		}, []Problem{p(KindUnexpected, reg, "foo")}},
		{"directory in a queue", func(t *testing.T, dir string) {
			touchAll(t, dir, entry...)
			mkdir(t, dir, "queue1/foo")
		}, []Problem{p(KindUnexpected, q("queue1"), "foo")}},
		{"symlink in a checkout directory", func(t *testing.T, dir string) {
			touchAll(t, dir, entry...)
			symlink(t, dir, "../../.data/foo", "queue1/.checkout/foo")
		}, []Problem{p(KindUnexpected, co("queue1"), "foo")}},
		{"unregistered directory in a queue", func(t *testing.T, dir string) {
			mkdir(t, dir, "queue2/bar")
		}, []Problem{
			{Kind: KindOrphaned, Dir: q("queue2"), Name: "bar"},
			{Kind: KindMissingData, Dir: q("queue2"), Name: "bar"},
			p(KindUnexpected, q("queue2"), "bar"),
		}},
		{"directory in .data and .tmp", func(t *testing.T, dir string) {
			touchAll(t, dir, ".registry/foo", "queue1/foo")
			mkdir(t, dir, ".data/foo")
			mkdir(t, dir, ".tmp/foo")
		}, []Problem{p(KindUnexpected, tmp, "foo"), p(KindUnexpected, data, "foo")}},
		{"spool root", func(t *testing.T, dir string) {
			mkdir(t, dir, "stray")   // neither queue nor spool directory
			mkdir(t, dir, "half")    // a queue name without .checkout
			mkdir(t, dir, ".hidden") // hidden directory
			mkdir(t, dir, "lost+found")
			symlink(t, dir, "queue1", "alias")
			touchAll(t, dir, "notes.txt", ".lock") // files at the root are fine
			touchAll(t, dir, "stray/x")            // contents of unknown directories are not examined
		}, []Problem{p(KindUnexpected, root, ".hidden"), p(KindUnexpected, root, "alias"), p(KindUnexpected, root, "half"), p(KindUnexpected, root, "stray")}},
		{"duplicated across queue and checkout, sorted by queue", func(t *testing.T, dir string) {
			touchAll(t, dir, append(entry, "queue2/foo", "queue1/.checkout/foo", "queue3/.checkout/foo", "queue1/foo")...)
		}, []Problem{p(KindDuplicated, reg, "foo", q("queue1"), co("queue1"), q("queue2"), co("queue3"))}},
		{".checkout is skipped everywhere", func(t *testing.T, dir string) {
			mkdir(t, dir, ".registry/.checkout")
			touchAll(t, dir, ".tmp/.checkout", ".data/.checkout")
		}, nil},
		{"one tmp file, two problems", func(t *testing.T, dir string) {
			touchAll(t, dir, ".tmp/foo")
		}, []Problem{p(KindTooOld, tmp, "foo"), p(KindOrphaned, tmp, "foo")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir, _ := newTestSpool(t)
			w := newTestMonitor(t, dir, conf(withLimits(lim)), &checkNow)
			mustCycle(t, w)
			tc.setup(t, dir)
			l := lim
			zeroTmp := tc.name == "one tmp file, two problems"
			if zeroTmp {
				l.MaxTmpFileAge = 0
			}
			got, err := Check(dir, l, checkNow)
			if err != nil {
				t.Fatal(err)
			}
			if !equalProblems(got, tc.want) {
				t.Errorf("Check: got %s\nwant %s", fmtProblems(got), fmtProblems(tc.want))
			}
			if zeroTmp {
				return
			}
			syncMonitor(t, w)
			mustCycle(t, w)
			if ps := w.Snapshot().Problems; !equalProblems(ps, tc.want) {
				t.Errorf("watching monitor: got %s\nwant %s", fmtProblems(ps), fmtProblems(tc.want))
			}
		})
	}
}

func touchAll(t *testing.T, dir string, rels ...string) {
	t.Helper()
	for _, r := range rels {
		touch(t, dir, r)
	}
}

func mkdir(t testing.TB, dir, rel string) {
	t.Helper()
	if err := os.Mkdir(filepath.Join(dir, rel), 0o755); err != nil {
		t.Fatal(err)
	}
}

func symlink(t testing.TB, dir, target, rel string) {
	t.Helper()
	if err := os.Symlink(target, filepath.Join(dir, rel)); err != nil {
		t.Fatal(err)
	}
}

// TestCheckUnreadable shows that an unreadable directory fails the check
// with its path without hiding the problems found elsewhere, and that the
// checks it would decide are skipped rather than guessed.
func TestCheckUnreadable(t *testing.T) {
	lim := Limits{MaxCheckedOutAge: day, MaxTmpFileAge: day}
	tests := []struct {
		name       string
		unreadable string
		want       []Problem
	}{
		// queue2 holds foo: its registry file is not reported orphaned, the
		// orphan in .tmp still is.
		{"queue directory", "queue2", []Problem{p(KindOrphaned, tmp, "stray")}},
		// Without the registry nothing can be called orphaned; the missing
		// data of bar still shows.
		{"registry", ".registry", []Problem{p(KindMissingData, q("queue1"), "bar")}},
		{"data", ".data", []Problem{p(KindOrphaned, tmp, "stray")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir, _ := newTestSpool(t)
			touchAll(t, dir, ".registry/foo", ".data/foo", "queue2/foo", ".tmp/stray", ".registry/bar", "queue1/bar")
			if tc.unreadable != ".data" {
				touch(t, dir, ".data/bar")
				tc.want = slices.DeleteFunc(tc.want, func(p Problem) bool { return p.Kind == KindMissingData })
			}
			bad := filepath.Join(dir, tc.unreadable)
			fault := func(path string) error {
				if path == bad {
					return unix.EACCES
				}
				return nil
			}
			got, err := check(dir, lim, checkNow, fault)
			if err == nil || !errors.Is(err, unix.EACCES) || !strings.Contains(err.Error(), bad) {
				t.Errorf("error %v, want EACCES naming %s", err, bad)
			}
			if !equalProblems(got, tc.want) {
				t.Errorf("got %s\nwant %s", fmtProblems(got), fmtProblems(tc.want))
			}
			m := newTestMonitor(t, dir, conf(withLimits(lim), alertAfter(0)), &checkNow)
			m.openDirFault.Store(&fault)
			events, err := m.Cycle(context.Background())
			if err == nil {
				t.Error("cycle succeeded")
			}
			s := m.Snapshot()
			if !s.Up || s.FailedCycles != 1 || !strings.Contains(s.LastError, bad) || !equalProblems(s.Problems, tc.want) || len(events) != len(tc.want) {
				t.Errorf("snapshot Up=%v FailedCycles=%d LastError=%q problems %s, %d events", s.Up, s.FailedCycles, s.LastError, fmtProblems(s.Problems), len(events))
			}
			m.openDirFault.Store(nil)
			if _, err := m.Cycle(context.Background()); err != nil {
				t.Errorf("cycle after the directory came back: %v", err)
			}
		})
	}
}

func TestCheckNotSpool(t *testing.T) {
	dir := t.TempDir()
	if _, err := Check(filepath.Join(dir, "missing"), DefaultLimits(), checkNow); !errors.Is(err, unix.ENOENT) {
		t.Errorf("missing dir: %v", err)
	}
	if _, err := Check(dir, DefaultLimits(), checkNow); !errors.Is(err, spool.ErrNotSpool) {
		t.Errorf("empty dir: %v", err)
	}
}

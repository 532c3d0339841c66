package monitor

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNamesAsTheReferenceReads: the reference lists every name but "." and
// "..", so entries whose names start with '.' or run to the file system's
// 255 bytes are entries to it (written by hand here, as the reference or
// another program would). The monitor's scans, its inotify index and Check
// count and classify them like any other name.
func TestNamesAsTheReferenceReads(t *testing.T) {
	names := []string{".hidden", "..dots", ".x", strings.Repeat("a", 230), strings.Repeat("b", 255), "with space", "-dash"}
	type layout struct {
		name  string
		files func(n string) []string
		want  func(n string) []Problem
		count func(s *Snapshot) bool
	}
	layouts := []layout{
		{"waiting entry", func(n string) []string { return []string{".registry/" + n, ".data/" + n, "queue1/" + n} },
			func(string) []Problem { return nil },
			func(s *Snapshot) bool {
				return s.Queues[0].Entries == 1 && s.RegistryEntries == 1 && s.DataBytes == 5 && s.Queues[0].OldestEntry.Equal(t0)
			}},
		{"checked out long ago", func(n string) []string { return []string{".registry/" + n, ".data/" + n, "queue1/.checkout/" + n} },
			func(n string) []Problem { return []Problem{p(KindTooOld, co("queue1"), n)} },
			func(s *Snapshot) bool { return s.Queues[0].CheckedOut == 1 && s.RegistryEntries == 1 }},
		{"queue file alone", func(n string) []string { return []string{"queue2/" + n} },
			func(n string) []Problem {
				return []Problem{p(KindOrphaned, q("queue2"), n), p(KindMissingData, q("queue2"), n)}
			},
			func(s *Snapshot) bool { return s.Queues[1].Entries == 1 && s.RegistryEntries == 0 }},
		{"registry file alone", func(n string) []string { return []string{".registry/" + n} },
			func(n string) []Problem { return []Problem{p(KindOrphaned, reg, n)} },
			func(s *Snapshot) bool { return s.RegistryEntries == 1 }},
		{"tmp file", func(n string) []string { return []string{".tmp/" + n} },
			func(n string) []Problem { return []Problem{p(KindTooOld, tmp, n), p(KindOrphaned, tmp, n)} },
			func(s *Snapshot) bool { return s.TmpFiles == 1 }},
		{"duplicated", func(n string) []string {
			return []string{".registry/" + n, ".data/" + n, "queue1/" + n, "queue3/.checkout/" + n}
		},
			func(n string) []Problem {
				return []Problem{p(KindTooOld, co("queue3"), n), p(KindDuplicated, reg, n, q("queue1"), co("queue3"))}
			},
			func(s *Snapshot) bool { return s.Queues[0].Entries == 1 && s.Queues[2].CheckedOut == 1 }},
	}
	for _, l := range layouts {
		for _, n := range names {
			short := n
			if len(short) > 12 {
				short = fmt.Sprintf("%d bytes", len(n))
			}
			t.Run(l.name+"/"+short, func(t *testing.T) {
				dir, _ := newTestSpool(t)
				now := t0.Add(day)
				w := newTestMonitor(t, dir, conf(), &now)
				mustCycle(t, w)
				for _, f := range l.files(n) {
					// By hand, as the reference's atomic writer leaves it.
					path := filepath.Join(dir, f)
					if err := os.WriteFile(path, []byte("hello"), 0o666); err != nil {
						t.Fatal(err)
					}
					if err := os.Chtimes(path, t0, t0); err != nil {
						t.Fatal(err)
					}
				}
				want := l.want(n)
				got, err := Check(dir, DefaultLimits(), now)
				if err != nil {
					t.Fatal(err)
				}
				if !equalProblems(got, want) {
					t.Errorf("Check: got %s\nwant %s", fmtProblems(got), fmtProblems(want))
				}
				syncMonitor(t, w)
				mustCycle(t, w)
				if s := w.Snapshot(); !equalProblems(s.Problems, want) || !l.count(s) {
					t.Errorf("watching monitor: problems %s\nwant %s\nstatistics %+v", fmtProblems(s.Problems), fmtProblems(want), s.Queues)
				}
				f := newTestMonitor(t, dir, conf(noWatch), &now)
				mustCycle(t, f)
				if s := f.Snapshot(); !equalProblems(s.Problems, want) || !l.count(s) {
					t.Errorf("scanning monitor: problems %s\nwant %s\nstatistics %+v", fmtProblems(s.Problems), fmtProblems(want), s.Queues)
				}
				// A warm rescan keeps them (it lists the names again).
				warm := w.warmScans
				setNow(&now, now.Add(DefaultFullRescanEvery))
				mustCycle(t, w)
				if s := w.Snapshot(); !equalProblems(s.Problems, want) || !l.count(s) || w.warmScans != warm+1 {
					t.Errorf("after a warm rescan (%d): problems %s\nwant %s", w.warmScans-warm, fmtProblems(s.Problems), fmtProblems(want))
				}
			})
		}
	}
}

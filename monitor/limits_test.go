package monitor

import (
	"testing"
	"time"
)

// TestZeroLimits: a zero age limit means any age, in Check, in a monitor
// that scans in full and in one that watches, exactly as in the reference
// and fsck; the default limits still leave young files alone.
func TestZeroLimits(t *testing.T) {
	entry := []string{".registry/foo", ".data/foo"}
	tests := []struct {
		name   string
		limits Limits
		files  []string
		age    time.Duration // of every file at the check
		want   []Problem
	}{
		{"zero checkout limit, 1ns old", Limits{MaxTmpFileAge: day}, append(entry, "queue1/.checkout/foo"), time.Nanosecond,
			[]Problem{p(KindTooOld, co("queue1"), "foo")}},
		{"zero checkout limit, a day old", Limits{MaxTmpFileAge: day}, append(entry, "queue1/.checkout/foo"), day,
			[]Problem{p(KindTooOld, co("queue1"), "foo")}},
		{"zero tmp limit, 1s old", Limits{MaxCheckedOutAge: day}, []string{".registry/foo", ".tmp/foo"}, time.Second,
			[]Problem{p(KindTooOld, tmp, "foo"), p(KindOrphaned, reg, "foo")}},
		{"zero queue limit, 1ns old", Limits{MaxCheckedOutAge: day, MaxTmpFileAge: day, MaxQueueAge: map[string]time.Duration{"queue2": 0}}, append(entry, "queue2/foo"), time.Nanosecond,
			[]Problem{p(KindTooOld, q("queue2"), "foo")}},
		{"zero queue limit on another queue", Limits{MaxCheckedOutAge: day, MaxTmpFileAge: day, MaxQueueAge: map[string]time.Duration{"queue2": 0}}, append(entry, "queue1/foo"), day,
			nil},
		{"all zero, 1ns old", Limits{MaxQueueAge: map[string]time.Duration{"queue3": 0}}, []string{".registry/foo", ".data/foo", ".registry/bar", ".tmp/bar", "queue3/foo", ".registry/baz", ".data/baz", "queue1/.checkout/baz"}, time.Nanosecond,
			[]Problem{p(KindTooOld, tmp, "bar"), p(KindTooOld, q("queue3"), "foo"), p(KindTooOld, co("queue1"), "baz"), p(KindOrphaned, reg, "bar")}},
		{"defaults, 9 minutes old", DefaultLimits(), append(entry, "queue1/.checkout/foo"), 9 * time.Minute, nil},
		{"zero limit, same instant (strictly greater)", Limits{}, append(entry, "queue1/.checkout/foo"), 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir, _ := newTestSpool(t)
			now := t0.Add(tc.age)
			w := newTestMonitor(t, dir, conf(withLimits(tc.limits)), &now)
			mustCycle(t, w)
			for _, f := range tc.files {
				touch(t, dir, f)
			}
			got, err := Check(dir, tc.limits, now)
			if err != nil {
				t.Fatal(err)
			}
			if !equalProblems(got, tc.want) {
				t.Errorf("Check: got %s\nwant %s", fmtProblems(got), fmtProblems(tc.want))
			}
			syncMonitor(t, w)
			mustCycle(t, w)
			if ps := w.Snapshot().Problems; !equalProblems(ps, tc.want) {
				t.Errorf("watching monitor: got %s\nwant %s", fmtProblems(ps), fmtProblems(tc.want))
			}
			f := newTestMonitor(t, dir, conf(withLimits(tc.limits), noWatch), &now)
			mustCycle(t, f)
			if ps := f.Snapshot().Problems; !equalProblems(ps, tc.want) {
				t.Errorf("scanning monitor: got %s\nwant %s", fmtProblems(ps), fmtProblems(tc.want))
			}
			if c := f.Config().Limits; c.MaxCheckedOutAge != tc.limits.MaxCheckedOutAge || c.MaxTmpFileAge != tc.limits.MaxTmpFileAge {
				t.Errorf("New changed the limits: %+v, want %+v", c, tc.limits)
			}
		})
	}
}

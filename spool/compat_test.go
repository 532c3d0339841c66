package spool

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

// TestRecoverAgeRule: below MinRecoverAge, Recover refuses (naming
// WorkersStopped) unless the caller says every worker of another
// implementation is stopped; at or above it, it runs. A refusal changes
// nothing.
func TestRecoverAgeRule(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		age     time.Duration
		stopped bool
		refused bool
		got     int // checkouts recovered: one is 30s old, one 2m old
	}{
		{age: 0, refused: true},
		{age: -time.Hour, refused: true},
		{age: MinRecoverAge - time.Nanosecond, refused: true},
		{age: MinRecoverAge, got: 1},
		{age: time.Hour, got: 0},
		{age: 0, stopped: true, got: 2},
		{age: -time.Hour, stopped: true, got: 2},
		{age: MinRecoverAge, stopped: true, got: 1},
	}
	for _, tt := range tests {
		s := newTestSpool(t, []string{"q"}, &Options{Durability: DurabilityNone, Now: func() time.Time { return now }})
		for name, age := range map[string]time.Duration{"young": 30 * time.Second, "old": 2 * time.Minute} {
			mustEnqueue(t, s, "q", "m", "d", EnqueueOptions{Name: name})
			// A reference worker's checkout: renamed, no lock.
			if err := os.Rename(s.queuePath("q", name), s.checkoutPath("q", name)); err != nil {
				t.Fatal(err)
			}
			mt := now.Add(-age)
			if err := os.Chtimes(s.checkoutPath("q", name), mt, mt); err != nil {
				t.Fatal(err)
			}
		}
		before := treeState(t, s.Dir())
		rs, err := s.Recover(tt.age, RecoverOptions{WorkersStopped: tt.stopped})
		if tt.refused {
			if !errors.Is(err, ErrRecoverTooYoung) || !strings.Contains(err.Error(), "WorkersStopped") || len(rs) != 0 {
				t.Errorf("Recover(%v, stopped=%v) = %v, %v; want ErrRecoverTooYoung naming WorkersStopped", tt.age, tt.stopped, rs, err)
			}
			if after := treeState(t, s.Dir()); after != before {
				t.Errorf("Recover(%v) refused but changed the spool:\n%s\n---\n%s", tt.age, before, after)
			}
			continue
		}
		if err != nil || len(rs) != tt.got {
			t.Errorf("Recover(%v, stopped=%v) = %v, %v; want %d recovered", tt.age, tt.stopped, rs, err, tt.got)
		}
	}
}

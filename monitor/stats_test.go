package monitor

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spool-agent/spool-agent/internal/syncbuf"
	"github.com/spool-agent/spool-agent/spool"
	"golang.org/x/sys/unix"
)

// TestStatistics checks a snapshot's statistics after a cycle and that
// queue statistics follow enqueues between cycles, from inotify alone.
func TestStatistics(t *testing.T) {
	now := time.Now()
	dir, s := newTestSpool(t)
	m := newTestMonitor(t, dir, conf(), &now)
	mustCycle(t, m)
	var names []string
	for i := range 3 {
		name, err := s.EnqueueBytes(context.Background(), "queue2", []byte("m"), make([]byte, 10*(i+1)), spool.EnqueueOptions{})
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	c, err := s.Checkout(context.Background(), "queue2", names[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Release()
	touch(t, dir, ".tmp/leftover")

	// No cycle: the snapshot follows the events within a fraction of a second.
	deadline := time.Now().Add(waitDeadline)
	for {
		snap := m.Snapshot()
		if q := snap.Queues[1]; q.Entries == 2 && q.CheckedOut == 1 && snap.TmpFiles == 1 {
			if q.Arrivals != 3 {
				t.Errorf("arrivals %d, want 3", q.Arrivals)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("snapshot did not follow the enqueues: %+v", snap.Queues)
		}
		time.Sleep(5 * time.Millisecond)
	}

	syncMonitor(t, m)
	mustCycle(t, m)
	snap := m.Snapshot()
	info := func(q, name string) spool.EntryInfo {
		i, err := s.Stat(q, name)
		if err != nil {
			t.Fatal(err)
		}
		return i
	}
	q2 := snap.Queues[1]
	if q2.Queue != "queue2" || q2.Entries != 2 || q2.CheckedOut != 1 ||
		!q2.OldestEntry.Equal(info("queue2", names[1]).ModTime) ||
		!q2.OldestCheckedOut.Equal(info("queue2", names[0]).ModTime) {
		t.Errorf("queue2: %+v", q2)
	}
	if q1 := snap.Queues[0]; q1.Entries != 0 || !q1.OldestEntry.IsZero() {
		t.Errorf("queue1: %+v", q1)
	}
	if snap.RegistryEntries != 3 || snap.DataBytes != 60 || snap.TmpFiles != 1 || !snap.Watching || snap.FullScans != 1 {
		t.Errorf("spool statistics: registry %d, data bytes %d, tmp %d, watching %v, full scans %d",
			snap.RegistryEntries, snap.DataBytes, snap.TmpFiles, snap.Watching, snap.FullScans)
	}
	if c, _ := q2.AgeBuckets(now.Add(time.Hour), []time.Duration{time.Minute, 2 * time.Hour}); !slices.Equal(c, []uint64{0, 2}) {
		t.Errorf("age buckets %v", c)
	}
}

// TestEntriesCountRegularFiles checks that Entries and CheckedOut count the
// files that can be entries, as the library's List does: a symlink or a
// directory in a queue is reported as unexpected, never counted, whether
// the monitor finds it in a full scan or through inotify.
func TestEntriesCountRegularFiles(t *testing.T) {
	now := time.Now()
	dir, s := newTestSpool(t)
	if _, err := s.EnqueueBytes(context.Background(), "queue2", []byte("m"), nil, spool.EnqueueOptions{}); err != nil {
		t.Fatal(err)
	}
	symlink(t, dir, "nowhere", "queue2/before")
	if err := os.Mkdir(filepath.Join(dir, "queue2", "subdir"), 0o755); err != nil {
		t.Fatal(err)
	}
	m := newTestMonitor(t, dir, conf(), &now)
	mustCycle(t, m)
	counts := func(step string, entries, checkedOut int) {
		t.Helper()
		// Publish now: event-driven publications may lag by publishDelay.
		m.mu.Lock()
		m.publishLocked(now)
		m.mu.Unlock()
		q := m.Snapshot().Queues[1]
		if q.Entries != entries || q.CheckedOut != checkedOut {
			t.Errorf("%s: queue2 has %d entries and %d checked out, want %d and %d", step, q.Entries, q.CheckedOut, entries, checkedOut)
		}
	}
	counts("full scan", 1, 0)

	symlink(t, dir, "nowhere", "queue2/after")
	symlink(t, dir, "nowhere", "queue2/.checkout/after")
	syncMonitor(t, m)
	counts("symlinks added", 1, 0)
	if err := os.Remove(filepath.Join(dir, "queue2", "before")); err != nil {
		t.Fatal(err)
	}
	syncMonitor(t, m)
	counts("a symlink removed", 1, 0)
	if err := os.Remove(filepath.Join(dir, "queue2", "after")); err != nil {
		t.Fatal(err)
	}
	touch(t, dir, "queue2/after")
	syncMonitor(t, m)
	counts("a symlink replaced by a file", 2, 0)
	mustCycle(t, m)
	counts("after a cycle", 2, 0)
}

// TestSpoolRecreated deletes the spool directory under a watching monitor,
// then creates it again: the monitor reports it down, then watches the new
// directory by itself.
func TestSpoolRecreated(t *testing.T) {
	now := time.Now()
	dir, _ := newTestSpool(t)
	var logs syncbuf.Buffer
	m := newTestMonitor(t, dir, conf(func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}), &now)
	mustCycle(t, m)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	// The removal reaches the monitor through inotify, which makes it scan
	// again; a cycle that runs before the events are applied may still use
	// the index, the next ones fail.
	deadline := time.Now().Add(waitDeadline)
	for {
		_, err := m.Cycle(context.Background())
		if err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("cycles of a removed spool succeed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for range 2 {
		if _, err := m.Cycle(context.Background()); err == nil {
			t.Fatal("a cycle of the removed spool succeeded")
		}
	}
	if s := m.Snapshot(); s.Up || s.FailedCycles != 3 {
		t.Errorf("removed spool: Up=%v FailedCycles=%d", s.Up, s.FailedCycles)
	}
	s, err := spool.Create(dir, []string{"queue9"}, &spool.Options{Durability: spool.DurabilityNone})
	if err != nil {
		t.Fatal(err)
	}
	mustCycle(t, m)
	mustCycle(t, m)
	if snap := m.Snapshot(); !snap.Up || !snap.Watching || len(snap.Queues) != 1 || snap.Queues[0].Queue != "queue9" {
		t.Fatalf("recreated spool: %+v", snap)
	}
	// One line per change of state, not one per cycle: the first failure
	// warns, the repeats are debug lines, the recovery is one info line.
	for msg, want := range map[string]int{
		`level=WARN msg="spool check cycle failed"`:          1,
		`level=DEBUG msg="spool check cycle failed again"`:   2,
		`level=INFO msg="spool check cycle succeeded again"`: 1,
	} {
		if got := strings.Count(logs.String(), msg); got != want {
			t.Errorf("%d lines %s, want %d; log:\n%s", got, msg, want, logs.String())
		}
	}
	// Watching again: an enqueue shows without a cycle.
	if _, err := s.EnqueueBytes(context.Background(), "queue9", nil, nil, spool.EnqueueOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(waitDeadline)
	for m.Snapshot().Queues[0].Entries != 1 {
		if time.Now().After(deadline) {
			t.Fatal("enqueue into the recreated spool not seen")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestNewQueue adds a queue beside a watching monitor: it appears in the
// snapshot without a cycle, through the rescan its .checkout triggers.
func TestNewQueue(t *testing.T) {
	now := time.Now()
	dir, s := newTestSpool(t)
	m := newTestMonitor(t, dir, conf(), &now)
	mustCycle(t, m)
	if err := s.AddQueue("extra"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.EnqueueBytes(context.Background(), "extra", nil, nil, spool.EnqueueOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(waitDeadline)
	for {
		snap := m.Snapshot()
		if i := slices.IndexFunc(snap.Queues, func(q QueueStats) bool { return q.Queue == "extra" }); i >= 0 && snap.Queues[i].Entries == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("new queue not seen: %+v", snap.Queues)
		}
		time.Sleep(5 * time.Millisecond)
	}
	syncMonitor(t, m)
	if ps := mustCycleProblems(t, m); len(ps) != 0 {
		t.Errorf("problems: %s", fmtProblems(ps))
	}
	if _, err := os.Stat(filepath.Join(dir, "extra", spool.CheckoutDir)); err != nil {
		t.Fatal(err)
	}
}

func mustCycleProblems(t *testing.T, m *Monitor) []Problem {
	t.Helper()
	mustCycle(t, m)
	return m.Snapshot().Problems
}

// TestWatchFallback makes a watch fail, as the inotify limits do: the
// monitor scans in full every cycle, and watches again once it can.
func TestWatchFallback(t *testing.T) {
	now := time.Now()
	dir, _ := newTestSpool(t)
	bad := filepath.Join(dir, "queue2", spool.CheckoutDir)
	fault := func(path string) error {
		if path == bad {
			return unix.ENOSPC
		}
		return nil
	}
	m := newTestMonitor(t, dir, conf(alertAfter(0)), &now)
	m.addWatchFault.Store(&fault)
	mustCycle(t, m)
	touch(t, dir, ".tmp/orphan")
	events := mustCycle(t, m) // no sync: a full scan sees it (too old and orphaned)
	snap := m.Snapshot()
	if snap.Watching || snap.FullScans != 2 || len(events) != 2 || events[1].Problem.Name != "orphan" {
		t.Errorf("not watching: Watching=%v FullScans=%d events %s", snap.Watching, snap.FullScans, fmtEvents(events))
	}
	m.addWatchFault.Store(nil)
	mustCycle(t, m)
	if snap := m.Snapshot(); !snap.Watching || snap.FullScans != 3 {
		t.Errorf("after the limit cleared: Watching=%v FullScans=%d", snap.Watching, snap.FullScans)
	}
	mustCycle(t, m)
	if snap := m.Snapshot(); snap.FullScans != 3 {
		t.Errorf("still scanning in full: %d", snap.FullScans)
	}
}

// TestWatcherReadFails makes a read of inotify fail: the monitor drops the
// watcher, rescans in full, and watches again with a new one.
func TestWatcherReadFails(t *testing.T) {
	now := time.Now()
	dir, s := newTestSpool(t)
	var failures atomic.Int32
	fault := func() error {
		if failures.Add(1) == 1 {
			return unix.EIO
		}
		return nil
	}
	m := newTestMonitor(t, dir, conf(), &now)
	m.readFault.Store(&fault)
	mustCycle(t, m)
	before := m.Snapshot().FullScans
	// The first event is read, and the read fails.
	if _, err := s.EnqueueBytes(context.Background(), "queue1", nil, nil, spool.EnqueueOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(waitDeadline)
	for {
		if snap := m.Snapshot(); snap.FullScans > before && snap.Watching && snap.Queues[0].Entries == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no rescan after the failed read: %+v", m.Snapshot())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Watching again: an enqueue shows without a cycle.
	if _, err := s.EnqueueBytes(context.Background(), "queue1", nil, nil, spool.EnqueueOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(waitDeadline)
	for m.Snapshot().Queues[0].Entries != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the new watcher did not see an enqueue: %+v", m.Snapshot().Queues[0])
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := failures.Load(); n < 2 {
		t.Errorf("%d reads after the failure, want the new watcher's", n-1)
	}
}

// TestDataBytesAfterFullScan: a full scan leaves the payloads' sizes to a
// background reading after the cycle has published; when it ends the
// snapshot counts every payload and says so, whether the monitor watches
// the spool or scans it every cycle.
func TestDataBytesAfterFullScan(t *testing.T) {
	for _, watch := range []bool{true, false} {
		t.Run(fmt.Sprintf("watch=%v", watch), func(t *testing.T) {
			now := time.Now()
			dir, s := newTestSpool(t)
			var want int64
			for i := range 50 {
				data := make([]byte, 100+i)
				want += int64(len(data))
				if _, err := s.EnqueueBytes(context.Background(), "queue1", []byte("m"), data, spool.EnqueueOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			m := newTestMonitor(t, dir, conf(func(c *Config) { c.DisableWatch = !watch }), &now)
			for cycle := range 2 {
				mustCycle(t, m) // waits for the sizes
				m.mu.Lock()
				filled := m.sizesFilled != nil
				m.mu.Unlock()
				if !filled {
					t.Fatalf("cycle %d: the full scan read the payloads' sizes itself", cycle)
				}
				snap := m.Snapshot()
				if snap.DataBytes != want || snap.DataBytesPending || snap.RegistryEntries != 50 {
					t.Errorf("cycle %d: DataBytes %d pending %v registry %d, want %d false 50",
						cycle, snap.DataBytes, snap.DataBytesPending, snap.RegistryEntries, want)
				}
			}
		})
	}
}

//go:build !(linux && (386 || arm || mips || mipsle))

// On 32-bit Linux time_t is 32 bits: no file there can have an mtime
// beyond int64 nanoseconds, so this file is built for the others only.

package monitor

import (
	"math"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// setMtimeSec sets the file's mtime to sec seconds since the epoch, beyond
// what time.Time's UnixNano (and so os.Chtimes) can express.
func setMtimeSec(t *testing.T, path string, sec int64) {
	t.Helper()
	ts := []unix.Timespec{{Sec: sec}, {Sec: sec}}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, path, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil || st.Mtim.Sec != sec {
		t.Fatalf("the file system did not keep an mtime of %d s: %d, %v", sec, st.Mtim.Sec, err)
	}
}

// TestMtimesBeyondInt64: an mtime after 2262 (beyond int64 nanoseconds) is
// clamped to the latest representable time instead of wrapping around to
// 1677: a file of the year 2300 is in the future (never too old, its
// oldest-entry time positive). (Before 1677 is clamped the same way, but
// ext4 keeps no mtime before 1901 to test it with.)
func TestMtimesBeyondInt64(t *testing.T) {
	const y2300 = int64(10413792000)
	latest := time.Unix(0, math.MaxInt64)
	zero := Limits{MaxQueueAge: map[string]time.Duration{"queue1": 0}}
	dir, _ := newTestSpool(t)
	now := t0
	w := newTestMonitor(t, dir, conf(withLimits(zero)), &now)
	mustCycle(t, w)
	touchAll(t, dir, ".registry/future", ".data/future", "queue1/future",
		".registry/fco", ".data/fco", "queue2/.checkout/fco", ".tmp/ftmp")
	for _, f := range []string{"queue1/future", "queue2/.checkout/fco", ".tmp/ftmp"} {
		setMtimeSec(t, filepath.Join(dir, f), y2300)
	}
	want := []Problem{
		{Kind: KindOrphaned, Dir: tmp, Name: "ftmp", ModTime: latest},
	}
	f := newTestMonitor(t, dir, conf(withLimits(zero), noWatch), &now)
	syncMonitor(t, w)
	for _, s := range checkAndCycle(t, dir, zero, now, want, w, f) {
		if q := s.Queues[0]; !q.OldestEntry.Equal(latest) || q.OldestEntry.Unix() < 0 {
			t.Errorf("queue1's oldest entry %v, want %v", q.OldestEntry, latest)
		}
		if q := s.Queues[1]; !q.OldestCheckedOut.Equal(latest) {
			t.Errorf("queue2's oldest checkout %v, want %v", q.OldestCheckedOut, latest)
		}
		if cum, _ := s.Queues[0].AgeBuckets(now, []time.Duration{0, time.Hour}); cum[0] != 1 || cum[1] != 1 {
			t.Errorf("age buckets of a future entry %v, want it at age 0", cum)
		}
	}
}

package spool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/spool-agent/spool-agent/internal/fsys"
	"golang.org/x/sys/unix"
)

// gate is a fake barrier: each call counts itself and returns the error
// sent on release.
type gate struct {
	calls   atomic.Int32
	release chan error
}

func newGate() *gate { return &gate{release: make(chan error)} }

func (g *gate) barrier(need) error {
	g.calls.Add(1)
	return <-g.release
}

// TestCommitGroupAlone: with nobody else waiting the barrier runs at once,
// once per call, on the caller's goroutine (no hand-off, no added delay).
func TestCommitGroupAlone(t *testing.T) {
	var g commitGroup
	runs := 0
	for i := range 3 {
		err := g.do(need{}, func(need) error { runs++; return nil })
		if err != nil || runs != i+1 {
			t.Fatalf("call %d: err %v, %d barriers", i, err, runs)
		}
	}
	if r, s := g.rounds.Load(), g.shared.Load(); r != 3 || s != 0 {
		t.Errorf("rounds %d shared %d, want 3 and 0", r, s)
	}
	if g.busy() {
		t.Error("group busy after the calls returned")
	}
}

// TestCommitGroupBatch: operations that arrive while a barrier is in flight
// share the next one, which starts only after they arrived; its result,
// success or error, reaches every one of them.
func TestCommitGroupBatch(t *testing.T) {
	for _, tc := range []struct {
		name    string
		waiters int
		err     error
	}{
		{"one waiter", 1, nil},
		{"seven waiters", 7, nil},
		{"seven waiters, EIO", 7, unix.EIO},
		{"thirty-one waiters, ENOSPC", 31, unix.ENOSPC},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var g commitGroup
				gt := newGate()
				leader := make(chan error, 1)
				go func() { leader <- g.do(need{}, gt.barrier) }()
				synctest.Wait() // the first barrier is in flight
				if n := gt.calls.Load(); n != 1 {
					t.Fatalf("%d barriers in flight, want 1", n)
				}
				errs := make(chan error, tc.waiters)
				var arrived atomic.Int32
				for range tc.waiters {
					go func() {
						arrived.Add(1) // the change is done: from here a barrier must start
						errs <- g.do(need{}, gt.barrier)
					}()
				}
				synctest.Wait() // every waiter has joined the next round
				if n := gt.calls.Load(); n != 1 {
					t.Fatalf("%d barriers started while the first was in flight, want 1", n)
				}
				g.mu.Lock()
				if g.next == nil || g.next.waiters != tc.waiters {
					t.Errorf("next round has %v, want %d waiters", g.next, tc.waiters)
				}
				g.mu.Unlock()
				// The barrier in flight returns: it covers none of the waiters.
				gt.release <- nil
				if err := <-leader; err != nil {
					t.Fatal(err)
				}
				synctest.Wait()
				if len(errs) != 0 {
					t.Fatalf("%d waiters acknowledged by a barrier that started before they arrived", len(errs))
				}
				if n := gt.calls.Load(); n != 2 {
					t.Fatalf("%d barriers, want 2: the waiters share one", n)
				}
				gt.release <- tc.err
				for range tc.waiters {
					if err := <-errs; !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
						t.Errorf("waiter got %v, want %v", err, tc.err)
					}
				}
				if r, s := g.rounds.Load(), g.shared.Load(); r != 2 || s != uint64(tc.waiters-1) {
					t.Errorf("rounds %d shared %d, want 2 and %d", r, s, tc.waiters-1)
				}
				if g.busy() {
					t.Error("group busy after every call returned")
				}
			})
		})
	}
}

// TestCommitGroupErrorNotSticky: the round after a failed one runs its own
// barrier and reports its own result.
func TestCommitGroupErrorNotSticky(t *testing.T) {
	var g commitGroup
	if err := g.do(need{}, func(need) error { return unix.EIO }); !errors.Is(err, unix.EIO) {
		t.Fatalf("got %v, want EIO", err)
	}
	if err := g.do(need{}, func(need) error { return nil }); err != nil {
		t.Fatalf("the next round reported %v", err)
	}
}

// TestCommitGroupLateArrival: an operation that arrives after the barrier
// in flight returned, but before its waiters woke up to start the next
// one, starts that round itself, for them as well.
func TestCommitGroupLateArrival(t *testing.T) {
	var g commitGroup
	pending := &round{done: make(chan struct{}), waiters: 1}
	g.next = pending // a waiter of the finished round has not woken yet
	runs := 0
	if err := g.do(need{}, func(need) error { runs++; return nil }); err != nil {
		t.Fatal(err)
	}
	select {
	case <-pending.done:
	default:
		t.Fatal("the waiting round was not run")
	}
	if runs != 1 || pending.waiters != 2 || g.next != nil || g.inflight {
		t.Errorf("runs %d, waiters %d, next %v, in flight %v", runs, pending.waiters, g.next, g.inflight)
	}
}

// TestCommitGroupCovers runs many goroutines that each make a change and
// wait for a barrier, and checks that every one was acknowledged by a
// barrier that started after its change (the barrier records how many
// changes were done when it started). It runs with real concurrency (no
// synctest) so that -race sees the hand-offs.
func TestCommitGroupCovers(t *testing.T) {
	for _, gathering := range []bool{false, true} {
		t.Run(fmt.Sprintf("gathering=%v", gathering), func(t *testing.T) {
			var g commitGroup
			var under atomic.Int32 // operations under way, for gathering
			if gathering {
				g.expect = func() int { return int(under.Load()) }
				g.gatherMax = func() time.Duration { return 50 * time.Microsecond }
			}
			var changes atomic.Int64 // changes done
			// Each barrier answers with the number of changes done when
			// it started: the changes it covers.
			barrier := func(need) error {
				start := changes.Load()
				runtime.Gosched() // let others arrive meanwhile
				return covering{start}
			}
			var wg sync.WaitGroup
			var bad atomic.Int32
			for range 16 {
				wg.Go(func() {
					for range 200 {
						under.Add(1)
						mine := changes.Add(1)
						var c covering
						if err := g.do(need{}, barrier); !errors.As(err, &c) {
							t.Errorf("barrier answered %v", err)
						} else if c.changes < mine {
							bad.Add(1)
						}
						under.Add(-1)
						g.poke()
					}
				})
			}
			wg.Wait()
			if bad.Load() != 0 {
				t.Errorf("%d operations acknowledged before a barrier covered their change", bad.Load())
			}
			r, s := g.rounds.Load(), g.shared.Load()
			t.Logf("16x200 operations: %d barriers, %d operations served by another's", r, s)
			if r+s != 16*200 {
				t.Errorf("rounds %d + shared %d != %d operations", r, s, 16*200)
			}
		})
	}
}

// covering is TestCommitGroupCovers's barrier's answer.
type covering struct{ changes int64 }

func (c covering) Error() string { return fmt.Sprintf("covers %d changes", c.changes) }

// TestCommitGroupGather: a round's leader waits for the operations under
// way to join before its barrier starts, at most gatherMax; a lone
// operation does not wait; an operation that ends without joining makes
// the leader count again; the barrier gets the union of the needs.
func TestCommitGroupGather(t *testing.T) {
	const max = 300 * time.Microsecond
	dirA, dirB, dirC := dirRef{fd: 10, path: "a"}, dirRef{fd: 11, path: "b"}, dirRef{fd: 12, path: "c"}
	for _, tc := range []struct {
		name     string
		under    int    // operations under way (expect)
		joiners  []need // joining after the leader, which needs dirA
		leave    int    // operations under way that end without joining, after the joiners
		waited   time.Duration
		wantDirs []int // descriptors of the round's need
		files    bool
		err      error // the barrier's answer, for every operation
	}{
		{name: "alone", under: 1, waited: 0, wantDirs: []int{10}},
		{name: "all join", under: 3, joiners: []need{{dirs: []dirRef{dirB}}, {dirs: []dirRef{dirA, dirC}, files: true}}, waited: 0, wantDirs: []int{10, 11, 12}, files: true},
		{name: "one never joins", under: 3, joiners: []need{{dirs: []dirRef{dirA}}}, waited: max, wantDirs: []int{10}},
		{name: "one ends without joining", under: 3, joiners: []need{{dirs: []dirRef{dirB}}}, leave: 1, waited: 0, wantDirs: []int{10, 11}},
		{name: "all join, EIO", under: 3, joiners: []need{{dirs: []dirRef{dirB}}, {dirs: []dirRef{dirC}}}, waited: 0, wantDirs: []int{10, 11, 12}, err: unix.EIO},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var under atomic.Int32
				under.Store(int32(tc.under))
				g := commitGroup{
					expect:    func() int { return int(under.Load()) },
					gatherMax: func() time.Duration { return max },
				}
				var got need
				var startedAt time.Time
				barrier := func(n need) error {
					got, startedAt = n, time.Now()
					return tc.err
				}
				start := time.Now()
				errs := make(chan error, 1+len(tc.joiners))
				go func() { errs <- g.do(need{dirs: []dirRef{dirA}}, barrier) }()
				synctest.Wait() // the leader gathers (or, alone, has run)
				for _, n := range tc.joiners {
					go func() { errs <- g.do(n, barrier) }()
					synctest.Wait()
				}
				for range tc.leave {
					under.Add(-1)
					g.poke()
				}
				for range 1 + len(tc.joiners) {
					if err := <-errs; err != tc.err {
						t.Errorf("an operation got %v, want %v", err, tc.err)
					}
				}
				if w := startedAt.Sub(start); w != tc.waited {
					t.Errorf("the barrier started after %v, want %v", w, tc.waited)
				}
				if r := g.rounds.Load(); r != 1 {
					t.Errorf("%d rounds, want 1 for all", r)
				}
				var fds []int
				for _, d := range got.dirs {
					fds = append(fds, d.fd)
				}
				if !slices.Equal(fds, tc.wantDirs) || got.files != tc.files {
					t.Errorf("the round needed %v (files %v), want %v (files %v)", fds, got.files, tc.wantDirs, tc.files)
				}
				if g.busy() {
					t.Error("group busy after every call returned")
				}
			})
		})
	}
}

// TestNeedAdd: a round's need is the union of its operations' needs,
// each directory once.
func TestNeedAdd(t *testing.T) {
	a, b := dirRef{fd: 3, path: "a"}, dirRef{fd: 4, path: "b"}
	var n need
	n.add(need{dirs: []dirRef{a}})
	n.add(need{dirs: []dirRef{b, a}})
	n.add(need{files: true})
	n.add(need{dirs: []dirRef{b}})
	if len(n.dirs) != 2 || n.dirs[0] != a || n.dirs[1] != b || !n.files {
		t.Errorf("need %+v, want dirs a and b, files", n)
	}
}

func TestKernelAtLeast(t *testing.T) {
	for _, tc := range []struct {
		release string
		want    bool
	}{
		{"5.8.0", true},
		{"5.7.19", false},
		{"6.1.0-13-amd64", true},
		{"4.19.0", false},
		{"5.10", true},
		{"5.8-rc1", true},
		{"10.0.0", true},
		{"", false},
		{"garbage", false},
	} {
		if got := kernelAtLeast(tc.release, 5, 8); got != tc.want {
			t.Errorf("kernelAtLeast(%q, 5, 8) = %v, want %v", tc.release, got, tc.want)
		}
	}
}

// TestSyncfsSoundRelease: syncfs rounds only from Linux 5.17, where
// syncfs reports the journal or log commit's errors.
func TestSyncfsSoundRelease(t *testing.T) {
	for _, tc := range []struct {
		release string
		want    bool
	}{
		{"5.8.0", false},
		{"5.10.0-26-amd64", false},       // Debian 11
		{"5.14.0-362.el9.x86_64", false}, // RHEL 9
		{"5.15.0-91-generic", false},     // Ubuntu 22.04
		{"5.16.20", false},
		{"5.17.0", true},
		{"5.17-rc1", true},
		{"6.1.0-13-amd64", true},
		{"", false},
	} {
		if got := syncfsSoundRelease(tc.release); got != tc.want {
			t.Errorf("syncfsSoundRelease(%q) = %v, want %v", tc.release, got, tc.want)
		}
	}
}

// TestUseSyncfs: the choice between a syncfs round and the operation's own
// fsyncs, from the running costs.
func TestUseSyncfs(t *testing.T) {
	fresh := func(c *cost, ns int64) {
		c.ns.Store(ns)
		c.at.Store(time.Now().UnixNano())
	}
	var b batchFS = nopBatch{}
	t.Run("no syncfs", func(t *testing.T) {
		var c committer
		if first(c.useSyncfs(4, 2)) {
			t.Error("syncfs without batchFS")
		}
	})
	t.Run("alone", func(t *testing.T) {
		c := committer{batch: b}
		if first(c.useSyncfs(4, 1)) {
			t.Error("a lone operation joined a syncfs round")
		}
	})
	t.Run("first measurement", func(t *testing.T) {
		c := committer{batch: b}
		if !first(c.useSyncfs(4, 2)) {
			t.Error("nothing measured: the first concurrent operation should measure a syncfs round")
		}
		if first(c.useSyncfs(4, 2)) {
			t.Error("a second operation went to measure syncfs as well")
		}
	})
	for _, tc := range []struct {
		n, active    int
		fsync, round int64
		want         bool
	}{
		{4, 2, 100, 300, true},   // one round for two operations' four fsyncs each
		{1, 2, 100, 300, false},  // two operations' one fsync each are cheaper
		{1, 8, 100, 300, true},   // eight operations share the round
		{2, 8, 100, 5000, false}, // another program's write-back slows every syncfs
		{4, 32, 100, 5000, true}, // ... but thirty-two operations' fsyncs cost more
		{4, 1, 100, 1, false},    // alone: its own fsyncs, whatever a round costs
		{4, 0, 100, 1, false},    // (not counted yet: alone too)
		{2, 3, 100, 600, true},   // the bound is inclusive
		{2, 3, 100, 601, false},  // ... and exact
	} {
		t.Run(fmt.Sprintf("n%d-active%d-fsync%d-round%d", tc.n, tc.active, tc.fsync, tc.round), func(t *testing.T) {
			c := committer{batch: b}
			fresh(&c.fsyncCost, tc.fsync)
			fresh(&c.syncfsCost, tc.round)
			if got := first(c.useSyncfs(tc.n, tc.active)); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
	t.Run("stale", func(t *testing.T) {
		c := committer{batch: b}
		fresh(&c.fsyncCost, 100)
		c.syncfsCost.ns.Store(5000)
		c.syncfsCost.at.Store(time.Now().Add(-2 * costStale).UnixNano())
		if !first(c.useSyncfs(4, 2)) {
			t.Error("a stale syncfs cost is not measured again")
		}
		if first(c.useSyncfs(4, 2)) {
			t.Error("two operations claimed the same measurement")
		}
	})
}

// first returns useSyncfs's first result.
func first(use, _ bool) bool { return use }

// TestSyncfsProbeBackoff: while syncfs probes lose to the fsyncs, they come
// at doubling intervals, 1 s up to 64 s, on the committer's clock; a probe
// that wins resets the interval.
func TestSyncfsProbeBackoff(t *testing.T) {
	now := time.Unix(1e9, 0)
	c := committer{batch: nopBatch{}, now: func() time.Time { return now }}
	c.fsyncCost.ns.Store(100)
	c.fsyncCost.at.Store(now.UnixNano())
	c.syncfsCost.ns.Store(5000)
	c.syncfsCost.at.Store(now.UnixNano())
	// probeAfter advances the clock by d and reports whether an operation
	// needing 4 fsyncs is sent to probe syncfs; a probe costs cost.
	probeAfter := func(d, cost time.Duration) bool {
		now = now.Add(d)
		c.fsyncCost.at.Store(now.UnixNano()) // fsyncs measured all along
		use, probe := c.useSyncfs(4, 2)
		if use != probe {
			t.Fatalf("use %v, probe %v: syncfs costs more, only a probe joins a round", use, probe)
		}
		if probe {
			c.probed(4, 2, cost, now, true)
		}
		return probe
	}
	const lose, win = 5000 * time.Nanosecond, 800 * time.Nanosecond
	if !probeAfter(costStale+1, lose) {
		t.Fatal("no probe after 1 s")
	}
	for _, wait := range []time.Duration{2, 4, 8, 16, 32, 64, 64, 64} {
		wait *= time.Second
		if probeAfter(wait-time.Millisecond, lose) {
			t.Fatalf("a probe before %v", wait)
		}
		if !probeAfter(2*time.Millisecond, lose) {
			t.Fatalf("no probe after %v", wait)
		}
	}
	// A probe that wins resets the interval to 1 s.
	now = now.Add(64 * time.Second)
	if !probeAfter(time.Millisecond, win) {
		t.Fatal("no probe after 64 s")
	}
	if c.probeBackoff.Load() != 0 {
		t.Errorf("backoff %d after a probe that won", c.probeBackoff.Load())
	}
	c.syncfsCost.ns.Store(5000) // the running cost still says syncfs loses
	if !probeAfter(costStale+time.Millisecond, lose) {
		t.Error("no probe 1 s after a probe that won")
	}
}

// nopBatch is a batchFS that does nothing.
type nopBatch struct{}

func (nopBatch) Syncfs(int) error       { return nil }
func (nopBatch) WritebackErr(int) error { return nil }

// TestSyncfsProbeReplaces: a probe's round replaces the running cost of a
// round, so that one round slowed by another program's write-back (the
// first after a build, here 32 ms) keeps syncfs out only until the next
// probe; other rounds are folded in. A probe before any fsync was measured
// decides nothing.
func TestSyncfsProbeReplaces(t *testing.T) {
	now := time.Unix(1e9, 0)
	t.Run("replaces", func(t *testing.T) {
		c := committer{batch: nopBatch{}, now: func() time.Time { return now }}
		c.fsyncCost.set(300*time.Microsecond, now)
		c.probed(4, 2, 32*time.Millisecond, now, true)
		if first(c.useSyncfs(4, 2)) {
			t.Fatal("syncfs chosen after a 32 ms round")
		}
		c.probed(4, 2, 600*time.Microsecond, now, true)
		if got := time.Duration(c.syncfsCost.ns.Load()); got != 600*time.Microsecond {
			t.Errorf("round cost %v after a probe of 600µs, want 600µs", got)
		}
		if !first(c.useSyncfs(4, 2)) {
			t.Error("syncfs not chosen after a probe of 600µs")
		}
		if c.probeBackoff.Load() != 0 {
			t.Errorf("backoff %d after a probe that won", c.probeBackoff.Load())
		}
	})
	t.Run("folds", func(t *testing.T) {
		c := committer{batch: nopBatch{}, now: func() time.Time { return now }}
		c.fsyncCost.set(300*time.Microsecond, now)
		c.syncfsCost.set(800*time.Microsecond, now)
		c.probed(4, 2, 8800*time.Microsecond, now, false)
		if got := time.Duration(c.syncfsCost.ns.Load()); got != 1800*time.Microsecond {
			t.Errorf("round cost %v, want 800µs + (8800µs-800µs)/8 = 1.8ms", got)
		}
	})
	t.Run("no fsync measured", func(t *testing.T) {
		c := committer{batch: nopBatch{}, now: func() time.Time { return now }}
		c.probed(4, 2, 32*time.Millisecond, now, true)
		if c.probeBackoff.Load() != 0 {
			t.Errorf("backoff %d after a probe with nothing to weigh it against", c.probeBackoff.Load())
		}
	})
}

// TestCommits: which operations a round's leader waits for, by durability.
func TestCommits(t *testing.T) {
	for _, tc := range []struct {
		d                        Durability
		writesFiles, otherChange bool
	}{
		{DurabilityNone, false, false},
		{DurabilityFiles, true, false},
		{DurabilityFull, true, true},
	} {
		s := &Spool{durability: tc.d}
		if got := s.commits(true); got != tc.writesFiles {
			t.Errorf("%v: an operation that writes files commits: %v, want %v", tc.d, got, tc.writesFiles)
		}
		if got := s.commits(false); got != tc.otherChange {
			t.Errorf("%v: another change commits: %v, want %v", tc.d, got, tc.otherChange)
		}
	}
}

// countingFS notes, at every directory fsync and every rename of the spool
// s, whether an operation was counted under way (committer.underWay).
type countingFS struct {
	fsys.OS
	s                atomic.Pointer[Spool]
	mu               sync.Mutex
	notes, uncounted int
	negative         bool
}

func (f *countingFS) note() {
	s := f.s.Load()
	if s == nil {
		return // Create
	}
	n := s.commit.underWay.Load()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.notes++
	if n < 1 {
		f.uncounted++
	}
	if n < 0 {
		f.negative = true
	}
}

func (f *countingFS) Fsync(fd int) error {
	var st unix.Stat_t
	if f.OS.Fstat(fd, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
		f.note()
	}
	return f.OS.Fsync(fd)
}

func (f *countingFS) Rename(olddirfd int, oldname string, newdirfd int, newname string, noReplace bool) error {
	f.note()
	return f.OS.Rename(olddirfd, oldname, newdirfd, newname, noReplace)
}

// TestOpsBalanced: every operation that counts itself under way for the
// rounds' gathering (acquireChange, enterChange) stops counting when it
// returns, on success and on error alike (otherwise every later round would
// wait out gatherMax for an operation that never comes), and at
// DurabilityFull every operation that commits is counted when it does.
func TestOpsBalanced(t *testing.T) {
	ctx := context.Background()
	for _, d := range []Durability{DurabilityFiles, DurabilityFull} {
		t.Run(d.String(), func(t *testing.T) {
			f := &countingFS{}
			s, err := Create(filepath.Join(t.TempDir(), "spool"), []string{"q1", "q2"}, &Options{Durability: d, fs: f})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			f.s.Store(s)
			defer func() {
				f.mu.Lock()
				defer f.mu.Unlock()
				if f.notes == 0 {
					t.Error("no directory fsync or rename was seen")
				}
				if f.negative {
					t.Error("the count of operations under way went below 0")
				}
				if d == DurabilityFull && f.uncounted > 0 {
					t.Errorf("%d of %d directory fsyncs and renames ran in no operation counted under way", f.uncounted, f.notes)
				}
			}()
			name, err := s.Reserve(nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.EnqueueBytes(ctx, "q1", []byte("m"), []byte("d"), EnqueueOptions{Name: name}); err != nil {
				t.Fatal(err)
			}
			if _, err := s.EnqueueBytes(ctx, "q1", []byte("m"), nil, EnqueueOptions{Name: name}); !errors.Is(err, ErrExists) {
				t.Fatalf("enqueue of a live name: %v, want ErrExists", err)
			}
			c, err := s.Checkout(ctx, "q1", name)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.WriteData(strings.NewReader("d2")); err != nil {
				t.Fatal(err)
			}
			if err := c.Save("q2", []byte("m2")); err != nil {
				t.Fatal(err)
			}
			if err := s.Move("q2", name, "q1"); err != nil {
				t.Fatal(err)
			}
			// A worker of the reference checks it out, and stops.
			if err := os.Rename(filepath.Join(s.Dir(), "q1", name), filepath.Join(s.Dir(), "q1", CheckoutDir, name)); err != nil {
				t.Fatal(err)
			}
			if rec, err := s.Recover(ctx, -time.Hour, RecoverOptions{WorkersStopped: true}); err != nil || len(rec) != 1 {
				t.Fatalf("recover: %v, %d entries, want 1", err, len(rec))
			}
			if _, err := s.Checkout(ctx, "q1", "missing"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("checkout of a missing entry: %v, want ErrNotFound", err)
			}
			r, err := s.NewReader("q1")
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			c, err = r.Dequeue(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Remove(); err != nil {
				t.Fatal(err)
			}
			if err := s.Move("q1", name, "q2"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("move of a removed entry: %v, want ErrNotFound", err)
			}
			if n := s.commit.underWay.Load(); n != 0 {
				t.Errorf("%d operations still counted under way after all returned", n)
			}
		})
	}
}

// blockingReader yields one byte, then blocks until release is closed.
type blockingReader struct {
	started chan struct{}
	release chan struct{}
	sent    bool
}

func (r *blockingReader) Read(p []byte) (int, error) {
	if !r.sent {
		r.sent = true
		close(r.started)
		p[0] = 'x'
		return 1, nil
	}
	<-r.release
	return 0, io.EOF
}

// TestStreamingNotCounted: an enqueue or WriteData that is still reading
// its payload is not among the operations a round waits for, so that a
// slow sender does not hold up every round; it counts once its payload is
// written (its renames and directory fsyncs run counted).
func TestStreamingNotCounted(t *testing.T) {
	ctx := context.Background()
	f := &countingFS{}
	s, err := Create(filepath.Join(t.TempDir(), "spool"), []string{"q1"}, &Options{Durability: DurabilityFull, fs: f})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f.s.Store(s)
	name, err := s.EnqueueBytes(ctx, "q1", []byte("m"), []byte("d"), EnqueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Checkout(ctx, "q1", name)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		op   func(io.Reader) error
	}{
		{"enqueue", func(r io.Reader) error {
			_, err := s.Enqueue(ctx, "q1", []byte("m"), r, EnqueueOptions{})
			return err
		}},
		{"write data", c.WriteData},
	} {
		r := &blockingReader{started: make(chan struct{}), release: make(chan struct{})}
		done := make(chan error, 1)
		go func() { done <- tc.op(r) }()
		<-r.started
		if n := s.commit.underWay.Load(); n != 0 {
			t.Errorf("%s: %d operations counted under way while the payload is read, want 0", tc.name, n)
		}
		close(r.release)
		if err := <-done; err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if n := s.commit.underWay.Load(); n != 0 {
			t.Errorf("%s: %d operations counted under way after it returned", tc.name, n)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.notes == 0 || f.uncounted > 0 {
		t.Errorf("%d of %d directory fsyncs and renames ran in no operation counted under way, want 0 of more than 0", f.uncounted, f.notes)
	}
}

// TestGatherMax: a leader waits at most two rounds' running cost, 1 ms
// before any round was measured, never more than 10 ms.
func TestGatherMax(t *testing.T) {
	for _, tc := range []struct {
		round, want time.Duration
	}{
		{0, time.Millisecond},
		{400 * time.Microsecond, 800 * time.Microsecond},
		{5 * time.Millisecond, 10 * time.Millisecond},
		{30 * time.Millisecond, 10 * time.Millisecond},
	} {
		var c committer
		c.roundCost.ns.Store(int64(tc.round))
		if got := c.gatherMax(); got != tc.want {
			t.Errorf("round cost %v: gatherMax %v, want %v", tc.round, got, tc.want)
		}
	}
}

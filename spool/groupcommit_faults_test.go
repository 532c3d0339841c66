package spool_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/spool-agent/spool-agent/internal/fsys"
	"github.com/spool-agent/spool-agent/spool"
	"golang.org/x/sys/unix"
)

// Group commit under fault injection and fsync-order checks: several
// operations of one spool share a barrier (a syncfs of the file system, or
// the fsync of a directory). The tests hold each barrier until the test
// answers it, so that rounds form the same way in every run, and record
// when each change returned and when each barrier began and ended, so that
// they can check that no operation was acknowledged before a barrier that
// began after its change had returned.

// commitEvent is one recorded moment: a change that returned, a barrier
// that began or ended, or an operation that returned to the test.
type commitEvent struct {
	kind  string // "change", "begin", "end", "ack"
	op    string // create, write, rename, unlink; fsync, syncfs; the test's operation
	path  string // changes: the file; fsync: what was fsynced; ack: the entry name
	path2 string // rename: the new path
	id    int    // barriers: pairs begin and end
	err   error
}

// commitFS wraps a faultFS: it records commitEvents and holds barriers.
type commitFS struct {
	*faultFS

	mu      sync.Mutex
	events  []commitEvent
	nextID  int
	hold    bool            // barriers wait for an answer
	entered chan chan error // a held barrier sends its answer channel
	failAll error           // every barrier from now on fails with it (not held)
	faulted map[int]bool    // barrier ids that were failed
}

func newCommitFS() *commitFS {
	return &commitFS{faultFS: newFaultFS(), entered: make(chan chan error), faulted: map[int]bool{}}
}

func (f *commitFS) add(e commitEvent) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if e.kind == "begin" {
		f.nextID++
		e.id = f.nextID
	}
	f.events = append(f.events, e)
	return e.id
}

// barrier records the barrier's begin, waits for the test's answer when
// barriers are held (syncfs and directory fsyncs: the barriers operations
// share; a file's fsync is its operation's own), and records its end.
func (f *commitFS) barrier(op, path string, inner func() error) error {
	id := f.add(commitEvent{kind: "begin", op: op, path: path})
	shared := op == "syncfs"
	if fi, err := os.Lstat(path); err == nil && fi.IsDir() {
		shared = true
	}
	f.mu.Lock()
	hold, failAll := f.hold && shared, f.failAll
	f.mu.Unlock()
	var err error
	switch {
	case failAll != nil:
		err = failAll
	case hold:
		answer := make(chan error)
		f.entered <- answer
		err = <-answer
	default:
		err = inner()
	}
	if err != nil {
		f.mu.Lock()
		f.faulted[id] = true
		f.mu.Unlock()
	}
	f.add(commitEvent{kind: "end", op: op, path: path, id: id, err: err})
	return err
}

func (f *commitFS) Fsync(fd int) error {
	return f.barrier("fsync", f.fdPath(fd), func() error { return f.faultFS.Fsync(fd) })
}

func (f *commitFS) Syncfs(fd int) error {
	return f.barrier("syncfs", f.fdPath(fd), func() error { return f.faultFS.Syncfs(fd) })
}

func (f *commitFS) Open(dirfd int, name string, flags int, perm uint32) (int, error) {
	fd, err := f.faultFS.Open(dirfd, name, flags, perm)
	if err == nil && flags&unix.O_CREAT != 0 {
		f.add(commitEvent{kind: "change", op: "create", path: f.at(dirfd, name)})
	}
	return fd, err
}

func (f *commitFS) Write(fd int, p []byte) (int, error) {
	n, err := f.faultFS.Write(fd, p)
	if n > 0 {
		f.add(commitEvent{kind: "change", op: "write", path: f.fdPath(fd)})
	}
	return n, err
}

func (f *commitFS) Rename(olddirfd int, oldname string, newdirfd int, newname string, noReplace bool) error {
	err := f.faultFS.Rename(olddirfd, oldname, newdirfd, newname, noReplace)
	if err == nil {
		f.add(commitEvent{kind: "change", op: "rename", path: f.at(olddirfd, oldname), path2: f.at(newdirfd, newname)})
	}
	return err
}

func (f *commitFS) Unlink(dirfd int, name string) error {
	err := f.faultFS.Unlink(dirfd, name)
	if err == nil {
		f.add(commitEvent{kind: "change", op: "unlink", path: f.at(dirfd, name)})
	}
	return err
}

// ack records that the test's operation op on entry name returned err.
func (f *commitFS) ack(op, name string, err error) {
	f.add(commitEvent{kind: "ack", op: op, path: name, err: err})
}

func (f *commitFS) setHold(hold bool) {
	f.mu.Lock()
	f.hold = hold
	f.mu.Unlock()
}

func (f *commitFS) setFailAll(err error) {
	f.mu.Lock()
	f.failAll = err
	f.mu.Unlock()
}

func (f *commitFS) log() []commitEvent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]commitEvent(nil), f.events...)
}

// covered reports whether a barrier that covers path (a syncfs, an fsync of
// path's directory, or, with file set, an fsync of path itself) began after
// event i and ended without error before event j.
func covered(ev []commitEvent, i, j int, path string, file bool) bool {
	for b := i + 1; b < j; b++ {
		e := ev[b]
		if e.kind != "begin" {
			continue
		}
		if e.op != "syncfs" && !(e.op == "fsync" && (e.path == filepath.Dir(path) || file && e.path == path)) {
			continue
		}
		for k := b + 1; k < j; k++ {
			if ev[k].kind == "end" && ev[k].id == e.id && ev[k].err == nil {
				return true
			}
		}
	}
	return false
}

// checkCovered checks, for every operation acknowledged without error,
// that each change it made to its entry's files was covered before the
// acknowledgement, and the changes an enqueue publishes before its rename,
// and a remove's unlink of the checkout file before the payload's.
func checkCovered(t *testing.T, ev []commitEvent) {
	t.Helper()
	acks := 0
	for a, e := range ev {
		if e.kind != "ack" || e.err != nil {
			continue
		}
		acks++
		name := e.path
		// The changes this operation made: since its previous
		// acknowledgement of the same entry (operations on one entry
		// follow each other in these tests).
		from := 0
		for p := a - 1; p >= 0; p-- {
			if ev[p].kind == "ack" && ev[p].path == name {
				from = p + 1
				break
			}
		}
		for c := from; c < a; c++ {
			ch := ev[c]
			if ch.kind != "change" || filepath.Base(ch.path) != name && filepath.Base(ch.path2) != name {
				continue
			}
			for _, p := range []string{ch.path, ch.path2} {
				if p == "" || filepath.Base(p) != name {
					continue
				}
				if !covered(ev, c, a, p, ch.op == "write") {
					t.Errorf("%s %s acknowledged (event %d) without a barrier covering its %s of %s (event %d)\n%s", e.op, name, a, ch.op, p, c, eventString(ev[from:a+1], from))
				}
			}
			// Enqueue: the payload, the metadata and the registry and
			// data directories before the rename into the queue (the
			// metadata's name in .tmp need not be durable: the rename
			// moves it).
			if ch.op == "rename" && strings.Contains(ch.path, "/"+spool.TmpDir+"/") {
				for d := from; d < c; d++ {
					pre := ev[d]
					if pre.kind != "change" || filepath.Base(pre.path) != name || pre.op == "create" && strings.Contains(pre.path, "/"+spool.TmpDir+"/") {
						continue
					}
					if !covered(ev, d, c, pre.path, pre.op == "write") {
						t.Errorf("%s %s: the rename into the queue (event %d) comes before a barrier covering the %s of %s (event %d)", e.op, name, c, pre.op, pre.path, d)
					}
				}
			}
			// Remove: the checkout file's unlink before the payload's.
			if ch.op == "unlink" && strings.Contains(ch.path, "/"+spool.DataDir+"/") {
				for d := from; d < c; d++ {
					if ev[d].kind == "change" && ev[d].op == "unlink" && ev[d].path == filepath.Join(filepath.Dir(ev[d].path), name) && strings.Contains(ev[d].path, "/"+spool.CheckoutDir+"/") && !covered(ev, d, c, ev[d].path, false) {
						t.Errorf("%s %s: the payload is unlinked (event %d) before a barrier covered the checkout file's unlink (event %d)", e.op, name, c, d)
					}
				}
			}
		}
	}
	if acks == 0 {
		t.Error("no operation acknowledged")
	}
}

// countBarriers returns the number of barriers of kind op ("syncfs",
// "fsync") that began.
func countBarriers(ev []commitEvent, op string) int {
	n := 0
	for _, e := range ev {
		if e.kind == "begin" && e.op == op {
			n++
		}
	}
	return n
}

func eventString(ev []commitEvent, first int) string {
	var b strings.Builder
	for i, e := range ev {
		fmt.Fprintf(&b, "  %4d %-6s %-7s %s", first+i, e.kind, e.op, e.path)
		if e.path2 != "" {
			fmt.Fprintf(&b, " -> %s", e.path2)
		}
		if e.id != 0 {
			fmt.Fprintf(&b, " #%d", e.id)
		}
		if e.err != nil {
			fmt.Fprintf(&b, ": %v", e.err)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// commitSpool creates a spool on a commitFS with group commit set up as gc
// (its Joined hook reports each join on the returned channel).
func commitSpool(t *testing.T, d spool.Durability, syncfs bool) (*spool.Spool, *commitFS, string, <-chan int) {
	t.Helper()
	f := newCommitFS()
	dir := filepath.Join(t.TempDir(), "spool")
	// TimeNames: every entry its own name, so that each change belongs
	// to one operation's entry.
	o := &spool.Options{Durability: d}
	fsys.SetOptions(o, f)
	s, err := spool.Create(dir, []string{"q1", "q2"}, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	joined := make(chan int, 1024)
	spool.SetGroupCommit(s, spool.GroupCommitTest{Syncfs: syncfs, Joined: func(n int) {
		select {
		case joined <- n:
		default: // nobody counts (TestGroupCommitConcurrentOrder)
		}
	}})
	return s, f, dir, joined
}

// waitJoined waits until the next round has n waiters.
func waitJoined(t *testing.T, joined <-chan int, n int) {
	t.Helper()
	for w := range joined {
		if w == n {
			return
		}
	}
}

// opResult is one concurrent operation's outcome.
type opResult struct {
	op, name string
	err      error
}

// TestGroupCommitSharedRound forms one round deterministically: a first
// operation's barrier is held while 2k more operations (k enqueues, k
// removes) make their changes and join the next round; that round is then
// answered with success or EIO. With EIO every one of the 2k operations
// fails, with an error that errors.Is EIO, and the spool is left in a
// state fsck classifies; with success every acknowledged operation was
// covered by a barrier that began after its changes (checkCovered).
func TestGroupCommitSharedRound(t *testing.T) {
	const k = 4
	for _, tc := range []struct {
		name   string
		syncfs bool
		err    error
	}{
		{"syncfs", true, nil},
		{"syncfs EIO", true, unix.EIO},
		{"fsync", false, nil},
		{"fsync EIO", false, unix.EIO},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, f, dir, joined := commitSpool(t, spool.DurabilityFull, tc.syncfs)
			ctx := context.Background()
			var victims []string
			for range k {
				n, err := s.EnqueueBytes(ctx, "q2", []byte(meta1), []byte(payload), spool.EnqueueOptions{})
				if err != nil {
					t.Fatal(err)
				}
				victims = append(victims, n)
			}
			f.setHold(true)
			// The first operation's barrier: a reservation, one barrier
			// (.registry's fsync, or a syncfs).
			first := make(chan error, 1)
			go func() {
				_, err := s.Reserve(nil)
				first <- err
			}()
			answer := <-f.entered
			results := make(chan opResult, 2*k)
			// k enqueues join the next round (with syncfs rounds, k
			// removes too; with directory rounds the removes are left
			// out, the test counting the fsyncs of .registry's round).
			ops := k
			for i := range k {
				go func() {
					n, err := s.EnqueueBytes(ctx, "q1", []byte(meta1), []byte(payload), spool.EnqueueOptions{})
					f.ack("enqueue", n, err)
					results <- opResult{"enqueue", n, err}
				}()
				if tc.syncfs {
					ops++
					go func() {
						err := s.Remove("q2", victims[i])
						f.ack("remove", victims[i], err)
						results <- opResult{"remove", victims[i], err}
					}()
				}
			}
			waitJoined(t, joined, ops)
			answer <- nil
			if err := <-first; err != nil {
				t.Fatalf("first operation: %v", err)
			}
			if len(results) != 0 {
				t.Fatalf("an operation returned before the round it waits for ran: %v", <-results)
			}
			// The shared round: every waiter gets its answer.
			if tc.err != nil {
				f.setFailAll(tc.err)
			}
			pending := ops
			var got []opResult
			for pending > 0 {
				select {
				case a := <-f.entered:
					a <- tc.err
				case r := <-results:
					got = append(got, r)
					pending--
				}
			}
			f.setHold(false)
			f.setFailAll(nil)
			rounds, shared := spool.GroupCommitStats(s)
			t.Logf("%d barriers, %d operations served by another's", rounds, shared)
			if shared < uint64(k-1) {
				t.Errorf("only %d operations shared a barrier", shared)
			}
			for _, r := range got {
				switch {
				case tc.err == nil && r.err != nil:
					t.Errorf("%s %s: %v", r.op, r.name, r.err)
				case tc.err != nil && !errors.Is(r.err, tc.err):
					t.Errorf("%s %s: got %v, want an error wrapping %v", r.op, r.name, r.err, tc.err)
				}
			}
			if tc.err == nil {
				checkCovered(t, f.log())
			}
			if n := countBarriers(f.log(), "syncfs"); tc.syncfs != (n > 0) {
				t.Errorf("%d syncfs barriers with syncfs rounds %v", n, tc.syncfs)
			}
			if err := checkClassified(dir); err != nil {
				t.Error(err)
			}
			// The spool works on once the disk does.
			if _, err := s.EnqueueBytes(ctx, "q1", []byte(meta1), []byte(payload), spool.EnqueueOptions{}); err != nil {
				t.Errorf("enqueue after the fault: %v", err)
			}
		})
	}
}

// TestGroupCommitConcurrentOrder runs goroutines that each enqueue, check
// out, save into another queue, check out and remove entries at once, with
// real concurrency (rounds form as they happen; -race watches the
// hand-offs), in both kinds of group commit and at DurabilityFull, and
// checks that every acknowledged operation was covered by a barrier that
// began after its changes, in the order the power-loss argument needs.
func TestGroupCommitConcurrentOrder(t *testing.T) {
	for _, syncfs := range []bool{true, false} {
		t.Run(map[bool]string{true: "syncfs", false: "fsync"}[syncfs], func(t *testing.T) {
			s, f, dir, _ := commitSpool(t, spool.DurabilityFull, syncfs)
			ctx := context.Background()
			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() {
					for range 5 {
						n, err := s.EnqueueBytes(ctx, "q1", []byte(meta1), []byte(payload), spool.EnqueueOptions{})
						f.ack("enqueue", n, err)
						if err != nil {
							t.Error(err)
							return
						}
						c, err := s.Checkout(ctx, "q1", n)
						f.ack("checkout", n, err)
						if err != nil {
							t.Error(err)
							return
						}
						err = c.Save("q2", []byte(meta2))
						f.ack("save", n, err)
						if err != nil {
							t.Error(err)
							return
						}
						err = s.Remove("q2", n)
						f.ack("remove", n, err)
						if err != nil {
							t.Error(err)
						}
					}
				})
			}
			wg.Wait()
			checkCovered(t, f.log())
			if n := countBarriers(f.log(), "syncfs"); syncfs != (n > 0) {
				t.Errorf("%d syncfs barriers with syncfs rounds %v", n, syncfs)
			}
			if err := checkClassified(dir); err != nil {
				t.Error(err)
			}
			rounds, shared := spool.GroupCommitStats(s)
			t.Logf("8x5 life cycles: %d barriers, %d operations served by another's", rounds, shared)
		})
	}
}

// TestFaultInjectionLifecyclesSyncfs is TestFaultInjectionLifecycles at
// DurabilityFull with every operation committing through syncfs rounds
// (a lone operation fsyncs as before, and that test covers it): a fault at
// any call, the syncfs and the write-back checks included, loses nothing,
// and what it leaves is where an acknowledged history allows and
// classified by fsck.
func TestFaultInjectionLifecyclesSyncfs(t *testing.T) {
	gc := spool.GroupCommitTest{Syncfs: true}
	for _, lc := range lifecycles {
		ff := newFaultFS()
		n, _, _, err := runLifecycleGC(t, lc, filepath.Join(t.TempDir(), "clean"), ff, gc, func() { ff.arm(0, 0, false, false) })
		if err != nil || n != len(lc.steps) {
			t.Fatalf("%s without faults: step %d: %v", lc.name, n, err)
		}
		total, writes := ff.counts()
		for _, k := range faultKinds {
			t.Run(fmt.Sprintf("%s/%s", lc.name, k.name), func(t *testing.T) {
				base := t.TempDir()
				limit := total
				if k.short {
					limit = writes
				}
				failed, syncfsFaults := 0, 0
				for i := 1; i <= limit; i++ {
					ff := newFaultFS()
					dir := filepath.Join(base, fmt.Sprint(i))
					n, st, before, err := runLifecycleGC(t, lc, dir, ff, gc, func() { ff.arm(i, k.errno, k.short, k.sticky) })
					ff.mu.Lock()
					injected := ff.injected
					ff.mu.Unlock()
					ff.disarm()
					if err != nil {
						failed++
					}
					if strings.Contains(injected, " syncfs ") || strings.Contains(injected, " wbcheck ") {
						syncfsFaults++
					}
					if err := checkAfterFault(lc, n, err, st, before); err != nil {
						t.Errorf("fault at %s: %v", injected, err)
						continue
					}
					if err := finish(st); err != nil {
						t.Errorf("fault at %s, failed step %d: then, without the fault: %v", injected, n, err)
					}
					os.RemoveAll(dir)
				}
				t.Logf("%d faults injected into %d calls (%d writes; %d at a syncfs or write-back check); %d made an operation fail", limit, total, writes, syncfsFaults, failed)
			})
		}
	}
}

// runLifecycleGC is runLifecycle at DurabilityFull with group commit set
// up as gc.
func runLifecycleGC(t *testing.T, lc lifecycle, dir string, ff *faultFS, gc spool.GroupCommitTest, arm func()) (int, *lcState, place, error) {
	t.Helper()
	s := newFaultSpool(t, dir, ff, spool.DurabilityFull)
	spool.SetGroupCommit(s, gc)
	st := &lcState{t: t, s: s, dir: dir}
	where := absent
	if lc.setup != nil {
		where = lc.setup(st)
	}
	if arm != nil {
		arm()
	}
	for i, step := range lc.steps {
		if err := step.run(st); err != nil {
			return i, st, where, err
		}
		where = step.after
	}
	return len(lc.steps), st, where, nil
}

package spool

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/spool-agent/spool-agent/internal/fsys"
)

// Group commit: concurrent operations of one Spool share the flushes that
// make their changes durable, as databases share a log flush among the
// transactions that commit together.
//
// The rule that keeps an acknowledged operation durable: an operation whose
// change (a write, create, rename or unlink) has returned waits for a
// barrier that STARTED after that moment, and is acknowledged only when that
// barrier has returned without error. A barrier already in flight when the
// operation arrives may have started before its change, so the operation
// joins the next one, which starts as soon as the one in flight returns;
// every operation that arrived meanwhile joins the same next barrier. With
// nobody else waiting, the operation runs its barrier at once: a lone
// goroutine issues exactly the system calls it issued before group commit.
//
// Two kinds of barrier, chosen once per spool (committer.init):
//
//   - syncfs(2) of the spool's file system, where the FS seam offers it and
//     the kernel (Linux 5.8 and later) reports write-back errors from it.
//     One syncfs writes back every dirty page of the file system, waits for
//     it, and commits the journal (ext4, xfs) or the transaction (btrfs)
//     with a cache flush: it covers every directory and every file the
//     operations of a round changed, so a round costs one flush however
//     many operations and directories it serves, and the operations' own
//     files need no fsync of their own. Each operation then asks each file
//     it wrote for write-back errors through its own descriptor
//     (sync_file_range(2) with SYNC_FILE_RANGE_WAIT_AFTER, which flushes
//     nothing): a write-back error is reported once per open file, so an
//     error that another round's syncfs consumed on the shared descriptor
//     still reaches the operation whose data it lost. syncfs is used only
//     when another operation of the spool is committing at the same time; a
//     lone operation fsyncs its files and directories as before.
//
//   - fsync(2) of each directory, shared per directory (one commitGroup per
//     directory descriptor), where syncfs is not available or not sound.
//     File fsyncs then stay per file.
//
// An error of a shared barrier fails every operation that waited on it,
// each with its own error wrapping the same errno.

// round is one barrier shared by the operations that joined it.
type round struct {
	done    chan struct{} // closed when the barrier has returned
	err     error         // the barrier's error, set before done is closed
	waiters int           // operations that joined it (under commitGroup.mu)
}

// commitGroup runs one kind of barrier (the fsync of one directory, or the
// syncfs of the spool's file system) for concurrent operations: at most one
// barrier is in flight, and the operations that arrive meanwhile share the
// next. Its zero value is ready.
type commitGroup struct {
	mu      sync.Mutex
	running *round // the barrier in flight, nil when none
	next    *round // the barrier that starts when running returns, nil when nobody waits for one
	rounds  atomic.Uint64
	shared  atomic.Uint64 // operations that were served by a barrier another operation ran
	// joined, when set (tests only), is called with the number of
	// operations waiting for the next barrier each time one joins it.
	joined func(waiters int)
}

// do returns once a barrier that started after do was called has returned,
// with that barrier's error. barrier runs the barrier; every caller of one
// group must pass an equivalent one (one of them runs it for all).
func (g *commitGroup) do(barrier func() error) error {
	g.mu.Lock()
	if g.running == nil {
		// Nothing in flight: start a barrier now, for this operation and
		// for any waiting for a next one (none normally: a next round is
		// started by its first waiter as soon as the running one returns).
		r := g.next
		if r == nil {
			r = &round{done: make(chan struct{})}
		}
		r.waiters++
		g.running, g.next = r, nil
		g.mu.Unlock()
		return g.lead(r, barrier)
	}
	// A barrier is in flight; it may have started before our change.
	r := g.next
	if r == nil {
		r = &round{done: make(chan struct{})}
		g.next = r
	}
	r.waiters++
	prev, joined, n := g.running, g.joined, r.waiters
	g.mu.Unlock()
	if joined != nil {
		joined(n)
	}
	<-prev.done
	g.mu.Lock()
	if g.next == r {
		// The first waiter to come back starts the round for all of them.
		g.running, g.next = r, nil
		g.mu.Unlock()
		return g.lead(r, barrier)
	}
	g.mu.Unlock()
	<-r.done
	g.shared.Add(1)
	return r.err
}

// lead runs round r's barrier and wakes its waiters.
func (g *commitGroup) lead(r *round, barrier func() error) error {
	err := barrier()
	g.rounds.Add(1)
	g.mu.Lock()
	r.err = err
	g.running = nil
	g.mu.Unlock()
	close(r.done)
	return err
}

// busy reports whether a barrier is in flight or awaited.
func (g *commitGroup) busy() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.running != nil || g.next != nil
}

// batchFS is the optional part of the FS seam that lets a round of
// operations share one syncfs instead of fsyncing each file and directory.
type batchFS interface {
	// Syncfs writes back and commits the whole file system holding fd,
	// with a cache flush (syncfs(2)); it reports write-back errors that
	// occurred since fd was opened or last reported them (Linux 5.8).
	Syncfs(fd int) error
	// WritebackErr waits for the write-back of fd's file in flight and
	// reports a write-back error of that file since fd was opened or last
	// reported one, without starting any I/O or flushing a cache
	// (sync_file_range(2) with SYNC_FILE_RANGE_WAIT_AFTER).
	WritebackErr(fd int) error
}

// committer is a spool's group-commit state. Its zero value is ready; the
// kind of barrier is chosen on first use.
type committer struct {
	once   sync.Once
	batch  batchFS // nil: directories are fsynced, each file on its own
	active atomic.Int32
	fs     commitGroup // syncfs rounds
	mu     sync.Mutex
	dirs   map[int]*commitGroup // per-directory fsync rounds, by descriptor
	// syncfsSound, when set (tests), replaces the kernel check.
	syncfsSound func() bool
}

// init chooses the barrier: syncfs when the seam offers it and the kernel
// reports write-back errors through it.
func (c *committer) init(fs fsys.FS) {
	c.once.Do(func() {
		b, ok := fs.(batchFS)
		if !ok {
			return
		}
		sound := syncfsReportsErrors
		if c.syncfsSound != nil {
			sound = c.syncfsSound
		}
		if sound() {
			c.batch = b
		}
	})
}

// dirGroup returns the commit group of the directory open as fd. The
// spool's directory descriptors stay open (and their numbers unique) until
// the spool is closed, so the descriptor names the directory.
func (c *committer) dirGroup(fd int) *commitGroup {
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.dirs[fd]
	if g == nil {
		if c.dirs == nil {
			c.dirs = map[int]*commitGroup{}
		}
		g = &commitGroup{}
		c.dirs[fd] = g
	}
	return g
}

// stats returns the number of barriers run and of operations served by a
// barrier that another operation ran, over every group.
func (c *committer) stats() (rounds, shared uint64) {
	rounds, shared = c.fs.rounds.Load(), c.fs.shared.Load()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, g := range c.dirs {
		rounds += g.rounds.Load()
		shared += g.shared.Load()
	}
	return rounds, shared
}

// kernelAtLeast reports whether a kernel release string ("6.1.0-13-amd64")
// is at least major.minor.
func kernelAtLeast(release string, major, minor int) bool {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return false
	}
	maj, err1 := strconv.Atoi(parts[0])
	minStr := parts[1]
	if i := strings.IndexFunc(minStr, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		minStr = minStr[:i]
	}
	mnr, err2 := strconv.Atoi(minStr)
	if err1 != nil || err2 != nil {
		return false
	}
	return maj > major || maj == major && mnr >= minor
}

package spool

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spool-agent/spool-agent/internal/fsys"
)

// Group commit: concurrent operations of one Spool share the flushes that
// make their changes durable, as databases share a log flush among the
// transactions that commit together.
//
// The rule that keeps an acknowledged operation durable: an operation whose
// change (a write, create, rename or unlink) has returned waits for a
// barrier that STARTED after that moment, and is acknowledged only when that
// barrier has returned without error. One barrier of a spool is in flight
// at a time. It may have started before an arriving operation's change, so
// the operation joins the next round, which starts when the barrier in
// flight returns; every operation that arrives meanwhile joins the same one.
// With none in flight the operation leads a round at once, on its own
// goroutine (no hand-off).
//
// Gathering: before its barrier starts, a round's leader waits until every
// operation of the spool that is under way and commits has joined
// (committer.underWay: the operations between enterChange and leaveChange,
// counted from when they will commit soon: not while one waits for a lock
// or reads a payload that streams), at most as long as two rounds cost
// (committer.gatherMax). Without it, operations
// released together by one round come back one after another, and the
// first to come back would start a round that the others, arriving a few
// microseconds later, must wait out before they can have their own:
// eight goroutines then needed about 3.7 rounds per enqueue instead of 2.
// An operation with no other under way (a lone goroutine) does not wait;
// where others are under way but do not join, the wait is bounded by the
// cost of two rounds, about what an operation arriving just after the
// round started would have waited for the next one to return.
//
// A round makes durable the union of what its operations need (need): the
// directories each of them changed, and the files that those which chose
// a syncfs round did not fsync. Two kinds of barrier:
//
//   - syncfs(2) of the spool's file system, then fsync(2) of the root
//     (batchFS.Syncfs), for a round with such files, or for a round of
//     directories alone when it costs less than their fsyncs
//     (committer.syncfsCheaper). One syncfs writes back every dirty page
//     of the file system, waits for it, and commits the journal (ext4,
//     xfs) or the transaction (btrfs) with a cache flush; ext4 without a
//     journal writes its inode tables and directory blocks after that
//     flush, and the fsync flushes again once they are written. A round
//     covers every directory and every file its operations changed, so it
//     costs about the same however many operations and directories it
//     serves, and the operations' own files need no fsync of their own.
//     Each operation then asks each file it wrote for write-back errors
//     through its own descriptor (sync_file_range(2) with WAIT_BEFORE,
//     WRITE and WAIT_AFTER, which writes a page the round left dirty and
//     flushes no cache): a write-back error is reported once per open
//     file, so an error that another round's syncfs consumed on the shared
//     descriptor still reaches the operation whose data it lost.
//     Directories on another file system than the root's are fsynced
//     after the syncfs.
//
//   - fsync(2) of each directory of the round, once for all its
//     operations, each operation having fsynced its own files (a file's
//     fsync cannot be shared) before it joined.
//
// The gates: syncfs rounds only where syncfs reports what fsync would,
// decided once per Spool (committer.init). The FS seam must offer it
// (batchFS); the kernel must be Linux 5.17 or later (syncfsSoundRelease:
// before, syncfs dropped the journal or log commit's error); and fstatfs
// of the spool's root must say ext4, XFS or btrfs (syncfsFileSystem:
// overlayfs, FUSE, CIFS, NFS, tmpfs and the rest have syncfs paths that
// do not reach, or do not report, what fsync does). Everywhere else the
// fsync rounds.
//
// syncfs also writes back other programs' dirty data on the same file
// system, so a round can take much longer than the fsyncs it replaces. It
// is therefore used only when another operation of the spool is committing
// at the same time (a lone operation issues the fsyncs it issued before
// group commit; an enqueue writes both its files before it fsyncs them),
// only while the rounds measured so far cost less than the fsyncs they
// replace (committer.useSyncfs: while syncfs loses, one operation probes
// it again after 1 s, then at doubling intervals up to 64 s while probes
// lose), and only for directories on the root's file system
// (Spool.rootFSOnly).
//
// Errors: an error of a shared barrier fails every operation that waited
// on it, each with its own error wrapping the same errno, and leaves each
// operation's files where a failed fsync left them before: the operation's
// caller cleans up, or fsck classifies what a crash leaves. Because every
// round uses the same descriptors (the root's for syncfs, a directory's
// for its fsyncs) and the kernel reports a write-back error once per open
// file, the error of one operation's change may be reported to another
// round: one in flight, or one that began before the change. So every
// failed shared barrier increments an error generation, which each
// operation reads before its change (committer.begin) and checks at
// acknowledgement (committer.check): if it moved, the operation fails with
// an error wrapping that barrier's.
//
// The limit that remains: syncfs reports any write-back error on the file
// system since the root's descriptor last reported one, another program's
// included, and the error generation spreads a failure to every operation
// that began before it. Such an error fails the operations of the round
// that sees it, and of the rounds after that began before it, although
// their own changes may be durable: a spurious failure (an enqueue's
// "visible but not durable", a Remove reported failed), never a lost
// acknowledgement.

// round is one barrier shared by the operations that joined it.
type round struct {
	done    chan struct{} // closed when the barrier has returned
	err     error         // the barrier's error, set before done is closed
	waiters int           // operations that joined it (under commitGroup.mu)
	// need is what it must make durable: the union of its operations'
	// needs (under commitGroup.mu until it starts).
	need need
}

// join adds an operation that needs n to r (under commitGroup.mu).
func (r *round) join(n need) {
	r.waiters++
	r.need.add(n)
}

// need is what an operation asks of a round: the directories whose changes
// it must make durable and whether it also has files that no fsync of
// their own made durable (files), which only a syncfs covers.
type need struct {
	dirs  []dirRef
	files bool
	// ops, given to the barrier only, is the number of operations the
	// round serves.
	ops int
}

// add merges o into n, each directory once.
func (n *need) add(o need) {
	n.files = n.files || o.files
	for _, d := range o.dirs {
		if !slices.ContainsFunc(n.dirs, func(e dirRef) bool { return e.fd == d.fd }) {
			n.dirs = append(n.dirs, d)
		}
	}
}

// commitGroup runs barriers for concurrent operations: one at a time, and
// the operations that arrive while one is in flight share the next. Before
// a round starts, its leader gathers (gather): it waits, at most
// gatherMax, for every other operation that will commit to join. Its zero
// value is ready and does not gather.
type commitGroup struct {
	mu        sync.Mutex
	inflight  bool          // a barrier is running or its round gathering
	freed     chan struct{} // closed (and replaced) whenever a barrier returns
	next      *round        // the round that starts when the one in flight returns; nil: none
	gathering *round        // the round whose leader waits for more operations, nil when none does
	arrived   chan struct{} // signalled when the gathering round has every operation it waits for
	rounds    atomic.Uint64
	shared    atomic.Uint64 // operations that were served by a barrier another operation ran
	// expect, when set, returns the number of operations that may still
	// join a round (committer.underWay); a leader waits for that many, at
	// most gatherMax().
	expect    func() int
	gatherMax func() time.Duration
	// joined, when set (tests only), is called with the number of
	// operations waiting for the next barrier each time one joins it.
	joined func(waiters int)
}

// do returns once a barrier that started after do was called, and that
// covers n, has returned, with that barrier's error. barrier runs the
// barrier for the union of its operations' needs; every caller of one
// group must pass an equivalent one (one of them runs it for all).
func (g *commitGroup) do(n need, barrier func(need) error) error {
	g.mu.Lock()
	if r := g.gathering; r != nil {
		// A leader is gathering a round that has not started: join it.
		r.join(n)
		g.wakeIfGathered()
		joined, waiters := g.joined, r.waiters
		g.mu.Unlock()
		if joined != nil {
			joined(waiters)
		}
		<-r.done
		g.shared.Add(1)
		return r.err
	}
	if !g.inflight {
		// None in flight: start a barrier now, for this operation and
		// for any waiting for a next one (their change came before ours).
		r := g.next
		if r == nil {
			r = &round{done: make(chan struct{})}
		}
		r.join(n)
		g.next = nil
		g.take(r)
		g.mu.Unlock()
		return g.lead(r, barrier)
	}
	// The barrier in flight may have started before our change: join the
	// next one.
	r := g.next
	if r == nil {
		r = &round{done: make(chan struct{})}
		g.next = r
	}
	r.join(n)
	joined, waiters := g.joined, r.waiters
	if g.freed == nil {
		g.freed = make(chan struct{})
	}
	freed := g.freed
	g.mu.Unlock()
	if joined != nil {
		joined(waiters)
	}
	for {
		select {
		case <-freed:
		case <-r.done:
			g.shared.Add(1)
			return r.err
		}
		g.mu.Lock()
		if g.next == r && !g.inflight {
			// The first waiter to see none in flight starts the round for all.
			g.next = nil
			g.take(r)
			g.mu.Unlock()
			return g.lead(r, barrier)
		}
		if g.next != r {
			g.mu.Unlock()
			<-r.done
			g.shared.Add(1)
			return r.err
		}
		if g.freed == nil {
			g.freed = make(chan struct{})
		}
		freed = g.freed
		g.mu.Unlock()
	}
}

// take makes r the round in flight, gathering (g.gathering) when other
// operations under way may still join it; callers hold g.mu. Taking the
// round and opening it to joiners in one critical section leaves no moment
// when an arriving operation would find the round taken but not gathering
// and wait for the next one, while the leader waited for it.
func (g *commitGroup) take(r *round) {
	g.inflight = true
	if g.expect != nil && r.waiters < g.expect() {
		g.gathering = r
		if g.arrived == nil {
			g.arrived = make(chan struct{}, 1)
		}
	}
}

// lead gathers round r (gather), runs its barrier for the union of its
// operations' needs and wakes its waiters.
func (g *commitGroup) lead(r *round, barrier func(need) error) error {
	g.gather(r)
	n := r.need // the round is closed: nobody changes it now
	n.ops = r.waiters
	err := barrier(n)
	g.rounds.Add(1)
	g.mu.Lock()
	r.err = err
	g.inflight = false
	if g.freed != nil {
		close(g.freed)
		g.freed = nil
	}
	g.mu.Unlock()
	close(r.done)
	return err
}

// gather waits, while r is gathering (take), until every operation that
// may commit has joined it or gatherMax has passed, so that one round
// serves operations that would otherwise arrive just after it started and
// wait for a whole other one. A lone operation does not wait at all. The
// round is closed to newcomers when gather returns: its need no longer
// changes.
func (g *commitGroup) gather(r *round) {
	g.mu.Lock()
	gathering := g.gathering == r
	g.mu.Unlock()
	if !gathering {
		return
	}
	deadline := time.NewTimer(g.gatherMax())
	defer deadline.Stop()
	for {
		select {
		case <-g.arrived:
			g.mu.Lock()
			if r.waiters < g.expect() {
				g.mu.Unlock()
				continue
			}
		case <-deadline.C:
			g.mu.Lock()
		}
		g.gathering = nil
		g.mu.Unlock()
		return
	}
}

// poke wakes a gathering leader once every operation it waits for has
// joined: an operation that may have joined its round ended without doing
// so.
func (g *commitGroup) poke() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.wakeIfGathered()
}

// wakeIfGathered wakes the gathering leader, if any, when every operation
// it waits for has joined its round: only then, so that a round of eight
// wakes its leader once, not seven times. A signal the leader did not take
// (arrived holds one) is harmless: a leader counts again when it wakes.
// Callers hold g.mu.
func (g *commitGroup) wakeIfGathered() {
	if r := g.gathering; r != nil && r.waiters >= g.expect() {
		select {
		case g.arrived <- struct{}{}:
		default:
		}
	}
}

// busy reports whether a barrier is in flight or awaited.
func (g *commitGroup) busy() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.inflight || g.next != nil
}

// batchFS is the optional part of the FS seam that lets a round of
// operations share one syncfs instead of fsyncing each file and directory.
type batchFS interface {
	// Syncfs writes back and commits the whole file system holding fd,
	// with a cache flush after its last write (syncfs(2), then fsync(2) of
	// fd: ext4 without a journal flushes before syncfs writes its inode
	// tables and directory blocks); it reports write-back errors that
	// occurred since fd was opened or last reported them (Linux 5.8), and
	// the file system's journal or log commit errors (5.17).
	Syncfs(fd int) error
	// WritebackErr writes back what of fd's file is still dirty, waits
	// for its write-back and reports a write-back error of that file since
	// fd was opened or last reported one, without a journal commit or a
	// cache flush (sync_file_range(2) with WAIT_BEFORE, WRITE and
	// WAIT_AFTER).
	WritebackErr(fd int) error
}

// committer is a spool's group-commit state. Its zero value is ready; the
// kind of barrier is chosen on first use.
type committer struct {
	once   sync.Once
	batch  batchFS // nil: directories are fsynced, each file on its own
	active atomic.Int32
	// underWay: operations under way that commit (enter, leave: the
	// Spool's acquireChange and enterChange), whom a round's leader waits
	// for (commitGroup.gather).
	underWay atomic.Int32
	fs       commitGroup // the rounds: a syncfs, or the fsyncs of their directories
	mu       sync.Mutex
	sameFS   map[int]bool // whether a directory is on the root's file system, by descriptor

	// The error generation: every shared barrier (a round's syncfs or
	// directory fsync) that fails increments errGen, after storing
	// its error in lastErr. A write-back error is reported once per open
	// file, and every round uses the same descriptors (the root's, each
	// directory's), so the error of an operation's change may be taken by
	// another round: one in flight, or one that began before the change.
	// An operation reads errGen before its change (begin) and fails at
	// acknowledgement if it moved (check): a spurious failure is possible,
	// a lost one is not.
	errGen  atomic.Uint64
	errMu   sync.Mutex
	lastErr error

	// Running costs: of one fsync issued by an operation or a round, and
	// of one syncfs round as an operation waits for it (the wait for the
	// round in flight and the gathering included, which a file's fsync
	// does not have: under load the comparison favours the fsyncs a
	// little).
	fsyncCost, syncfsCost cost
	// roundCost: the running cost of a round's barrier, which bounds how
	// long a leader waits for others to join (gatherMax). syncfsRound and
	// dirFsync: the running costs of a round's syncfs and of one
	// directory's fsync in a round, which choose the barrier of a round of
	// directories alone (syncfsCheaper).
	roundCost, syncfsRound, dirFsync cost
	// probeBackoff: syncfs probes lost in a row (useSyncfs), up to
	// maxProbeBackoff.
	probeBackoff atomic.Uint32
	// now, when set (tests), replaces time.Now for the costs.
	now func() time.Time

	// syncfsSound, when set (tests), replaces the kernel check.
	syncfsSound func() bool
	// syncfsFS, when set (tests), replaces the file-system check of the
	// spool's root (syncfsFileSystem).
	syncfsFS func(rootfd int) bool
	// alwaysShare (tests) makes every operation, even a lone one, use
	// syncfs rounds when they are available, whatever they cost, so that
	// tests can form rounds deterministically.
	alwaysShare bool
	// joined (tests) is given to every group (commitGroup.joined).
	joined func(waiters int)
}

// init chooses the barrier, once per spool: syncfs when the seam offers
// it, the kernel reports from it the errors fsync would (syncfsSoundRelease)
// and the spool's root, open as rootfd, is on a file system where one
// syncfs commits what fsync would (syncfsFileSystem).
func (c *committer) init(fs fsys.FS, rootfd int) {
	c.once.Do(func() {
		c.fs.joined = c.joined
		c.fs.expect = func() int { return int(c.underWay.Load()) }
		c.fs.gatherMax = c.gatherMax
		b, ok := fs.(batchFS)
		if !ok {
			return
		}
		sound, onFS := syncfsReportsErrors, syncfsFileSystem
		if c.syncfsSound != nil {
			sound = c.syncfsSound
		}
		if c.syncfsFS != nil {
			onFS = c.syncfsFS
		}
		if sound() && onFS(rootfd) {
			c.batch = b
		}
	})
}

// begin returns the error generation, read before an operation's change
// and given to check at its acknowledgement.
func (c *committer) begin() uint64 { return c.errGen.Load() }

// failed records the error of a shared barrier, op on path (see errGen),
// and returns err.
func (c *committer) failed(err error, op, path string) error {
	if err != nil {
		c.errMu.Lock()
		c.lastErr = pathErr(op, path, err)
		c.errMu.Unlock()
		c.errGen.Add(1)
	}
	return err
}

// check returns an error wrapping the last failed barrier's if a shared
// barrier failed since gen was read.
func (c *committer) check(gen uint64) error {
	if c.errGen.Load() == gen {
		return nil
	}
	c.errMu.Lock()
	err := c.lastErr
	c.errMu.Unlock()
	return fmt.Errorf("a flush shared with other operations failed after this change: %w", err)
}

// useSyncfs reports whether an operation that needs n fsyncs (files and
// directories) joins a syncfs round instead (use), and whether that round
// is a probe: a measurement of syncfs while the fsyncs cost more, whose
// outcome the caller reports to probed. active is the number of operations
// of the spool committing now, this one included; at 1 the operation is
// alone and fsyncs.
//
// A round wins while it costs no more than the fsyncs of every operation
// it can serve (n x the cost of one fsync x active): its cost is shared by
// the operations committing together, while each operation's fsyncs are
// its own and load the same disk. Weighing one operation's fsyncs alone
// against a round split them between the two kinds (here about half of
// eight goroutines' commits fsynced), and operations on different kinds
// share nothing.
func (c *committer) useSyncfs(n, active int) (use, probe bool) {
	if c.batch == nil {
		return false, false
	}
	if c.alwaysShare {
		return true, false
	}
	if active <= 1 {
		return false, false
	}
	now := c.clock().UnixNano()
	r := c.syncfsCost.ns.Load()
	use = r != 0 && c.roundWins(time.Duration(r), n, active)
	// Now and then one operation goes the other way, so that a cost
	// measured under other conditions (another program's write-back
	// slowing every syncfs) does not decide for ever. A syncfs probe
	// writes back every dirty page of the file system, so it can take
	// seconds under another program's backlog: while probes lose, they
	// come at doubling intervals (probeBackoff).
	if use && c.fsyncCost.claimStale(now, costStale) {
		return false, false
	}
	if !use && c.syncfsCost.claimStale(now, costStale<<c.probeBackoff.Load()) {
		return true, true
	}
	return use, false
}

// probed reports a syncfs round of an operation that needed n fsyncs, with
// active operations committing, and waited d for it at now. A probe's
// round replaces the running cost of a round (the cost it measures again
// is stale, and one round slowed by another program's write-back must not
// keep syncfs out for long); other rounds are folded into it. A round that
// cost no more than the fsyncs it replaced (useSyncfs) wins and resets the
// probes' backoff; a probe that lost doubles it, up to maxProbeBackoff.
// With no fsync measured yet nothing is decided.
func (c *committer) probed(n, active int, d time.Duration, now time.Time, probe bool) {
	if probe {
		c.syncfsCost.set(d, now)
	} else {
		c.syncfsCost.add(d, now)
	}
	if c.fsyncCost.ns.Load() == 0 {
		return
	}
	if c.roundWins(d, n, active) {
		c.probeBackoff.Store(0)
		return
	}
	if probe {
		for {
			b := c.probeBackoff.Load()
			if b >= maxProbeBackoff || c.probeBackoff.CompareAndSwap(b, b+1) {
				return
			}
		}
	}
}

// roundWins reports whether a round that costs d costs no more than the
// fsyncs it replaces: n for each of the active operations (useSyncfs), at
// the running cost of one fsync. With no fsync measured, it never wins.
func (c *committer) roundWins(d time.Duration, n, active int) bool {
	f := c.fsyncCost.ns.Load()
	return f != 0 && int64(d) <= int64(n)*int64(max(active, 1))*f
}

// clock returns the time (committer.now, or time.Now).
func (c *committer) clock() time.Time {
	if c.now != nil {
		return c.now()
	}
	return time.Now()
}

// costStale is how old a running cost may grow before an operation is sent
// to measure it again; maxProbeBackoff bounds the doublings of that age
// for syncfs probes that lose (1 s to 64 s).
const (
	costStale       = time.Second
	maxProbeBackoff = 6
)

// cost is a running cost in nanoseconds (0: not measured yet) and when it
// was last measured, or claimed for measuring (Unix nanoseconds).
type cost struct {
	ns, at atomic.Int64
}

// add folds a duration measured at now into the cost (weight 1/8).
func (c *cost) add(d time.Duration, now time.Time) {
	if old := c.ns.Load(); old != 0 {
		d = time.Duration(old + (int64(d)-old)/8)
	}
	c.set(d, now)
}

// set replaces the cost with a duration measured at now.
func (c *cost) set(d time.Duration, now time.Time) {
	c.ns.Store(int64(d))
	c.at.Store(now.UnixNano())
}

// claimStale reports whether the cost is older than stale and, if so,
// claims its next measurement for the caller alone.
func (c *cost) claimStale(now int64, stale time.Duration) bool {
	at := c.at.Load()
	return now-at > int64(stale) && c.at.CompareAndSwap(at, now)
}

// syncfsCheaper reports whether a round of dirs directories alone costs
// less as one syncfs than as their fsyncs, by the running costs measured
// in rounds (unmeasured: no).
func (c *committer) syncfsCheaper(dirs int) bool {
	sf, df := c.syncfsRound.ns.Load(), c.dirFsync.ns.Load()
	return c.batch != nil && sf != 0 && df != 0 && sf < int64(dirs)*df
}

// enter counts an operation that may commit, until leave.
func (c *committer) enter() { c.underWay.Add(1) }

// leave ends what enter began; a leader gathering a round counts again.
func (c *committer) leave() {
	c.underWay.Add(-1)
	c.fs.poke()
}

// gatherMax is the longest a round's leader waits for others to join: two
// rounds' running cost, about what an operation that arrives just after a
// round started waits before the next one has returned (the rest of the
// round in flight, then a whole one). Measured against one round's cost,
// eight goroutines' rounds ended by the bound 1% of the time instead of
// 12% and ran the Cycle benchmark at 1.73-2.11x the floor instead of
// 1.57-1.72x (three interleaved runs each). Before any round was measured
// it is 1 ms; it is never more than 10 ms.
func (c *committer) gatherMax() time.Duration {
	d := time.Duration(c.roundCost.ns.Load())
	if d == 0 {
		return time.Millisecond
	}
	return min(2*d, 10*time.Millisecond)
}

// stats returns the number of barriers run and of operations served by a
// barrier that another operation ran.
func (c *committer) stats() (rounds, shared uint64) {
	return c.fs.rounds.Load(), c.fs.shared.Load()
}

// syncfsSoundRelease reports whether a kernel release's syncfs returns the
// errors fsync would. 5.8 made syncfs report write-back errors ("vfs: track
// per-sb writeback errors and report them to syncfs"), but only those of
// pages and buffers: until 5.17 sync_filesystem dropped the error of the
// file system's ->sync_fs, the journal or log commit that holds the
// renames, creates and unlinks ("vfs: make sync_filesystem return errors
// from ->sync_fs", "xfs: return errors in xfs_fs_sync_fs"), so a failed
// commit was acknowledged there.
func syncfsSoundRelease(release string) bool { return kernelAtLeast(release, 5, 17) }

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

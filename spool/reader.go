package spool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spool-agent/spool-agent/internal/inotifyev"
)

// Reader consumes one queue. Blocking dequeues sleep until inotify reports
// an entry arriving in the queue directory, or, where the
// directory cannot be watched (inotify limits, a file system without
// inotify), until the spool's poll interval passes; the fall-back is logged
// once per spool. A Reader is meant for one goroutine (Close may come from
// another); run several Readers to consume in parallel. Close it to release
// its watch.
//
// Order: a Reader consumes sorted snapshots of the queue head first, as the
// reference does. Beyond the reference, a watching Reader's Dequeue takes
// only names up to the greatest name that inotify has announced (or that was
// in the queue before its first Dequeue), so that an entry that arrives
// while readdir(3) runs is never taken before an older one that the same
// readdir may have missed. For one producer whose names sort in creation
// order (the default TimeNames) and one Reader, entries are therefore
// dequeued exactly in creation order. After an inotify overflow, and when
// polling, each snapshot is taken whole.
//
// Cost: inotify events are hints, but complete ones (an overflow is
// reported), so after its first listing a watching Reader takes the names
// that events announce: the entries it knows of are those of its last
// listing plus those announced since. It lists the queue again (after
// draining the events, as the reference does) only when that knowledge may
// be incomplete: after an overflow, or after it dropped names (more than
// maxAnnounced between two drains). In a steady flow a Reader therefore
// lists nothing at all. An entry that another worker holds locked while it
// is still in the queue (a competitor claiming it, or a worker handing it
// back) is passed over and tried again before the Reader waits, and after
// each wait (which then lasts at most busyRetry).
type Reader struct {
	s     *Spool
	queue string
	dir   string

	watching bool          // fixed at creation: false means polling
	maxNames int           // maxAnnounced when the reader was made
	wake     chan struct{} // has a token when an event arrived since the last drain
	done     chan struct{} // closed by Close

	evMu    sync.Mutex
	evNames []string // entry names that arrived since the last drain, in arrival order
	evHi    string   // the greatest of them
	evLost  bool     // evNames overflowed: names were dropped
	evAll   bool     // an overflow or a change of the directory itself: take the next snapshot whole

	mu     sync.Mutex
	closed bool

	// Owned by the goroutine that dequeues.
	cache  []string // names to try, sorted
	tail   []string // names of the last listing above hi, sorted
	hi     string   // names up to hi are known to have arrived before the last drain
	based  bool     // cache and tail hold the last listing plus every announced name since
	primed bool     // hi covers what was in the queue before the watch began
	busy   []string // names passed over because another worker held them in the queue
}

// maxAnnounced bounds the names a Reader keeps between drains; beyond it the
// Reader forgets them and lists the queue instead. (A variable for tests.)
var maxAnnounced = 1 << 16

// busyRetry is how soon a waiting Reader tries again an entry that another
// worker held locked while it stayed in the queue.
const busyRetry = 5 * time.Millisecond

// NewReader returns a Reader of queue. It starts watching the queue at once,
// so that every entry enqueued after NewReader returns raises a wake-up.
func (s *Spool) NewReader(queue string) (*Reader, error) {
	if err := s.checkQueue(queue); err != nil {
		return nil, err
	}
	r := &Reader{
		s:     s,
		queue: queue,
		dir:   s.queueDir(queue),
		wake:  make(chan struct{}, 1),
		done:  make(chan struct{}),

		maxNames: maxAnnounced,
	}
	watching, err := s.hub.subscribe(r)
	if err != nil {
		return nil, err
	}
	r.watching = watching
	if !watching {
		qd, err := s.qdirs(queue)
		if err != nil {
			return nil, err
		}
		if s.dirGone(qd.dir.fd) {
			return nil, queueGone(queue, r.dir, unix.ENOENT)
		}
	}
	return r, nil
}

// Queue returns the queue the reader consumes.
func (r *Reader) Queue() string { return r.queue }

// Polling reports whether the reader fell back to polling.
func (r *Reader) Polling() bool { return !r.watching }

// notify records that name arrived in the queue (or, with all, that the
// next snapshot must be taken whole) and raises a wake-up. The hub calls it.
func (r *Reader) notify(name string, all bool) {
	r.evMu.Lock()
	if all {
		r.evAll = true
	} else {
		if name > r.evHi {
			r.evHi = name
		}
		if len(r.evNames) < r.maxNames {
			r.evNames = append(r.evNames, name)
		} else {
			r.evLost = true
		}
	}
	r.evMu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// list lists the queue, saying clearly when its directory is gone.
func (r *Reader) list() ([]string, error) {
	return r.s.List(r.queue)
}

// refill drains the wake-ups and the announced names, then fills the cache:
// from the tail of the last listing and the announced names when it can
// (see Reader), otherwise from a new listing. Draining comes before listing
// (the reference's "DO NOT CHANGE"): an entry that arrives after the drain
// raises a new wake-up, so it is never missed. With cut, only names up to
// r.hi are taken; without, the listing is taken whole.
func (r *Reader) refill(cut bool) error {
	select {
	case <-r.wake:
	default:
	}
	if r.watching {
		// What the kernel holds now, not only what the poller forwarded.
		rewatched, err := r.s.hub.drainFor(r)
		if err != nil {
			if isNotExist(err) {
				return queueGone(r.queue, r.dir, err)
			}
			return fmt.Errorf("watch %s: %w", r.dir, err)
		}
		if rewatched {
			// The directory was replaced: start over, as a new reader.
			r.based, r.primed, r.tail = false, false, nil
		}
	}
	r.evMu.Lock()
	announced, evHi, all, lost := r.evNames, r.evHi, r.evAll, r.evLost
	r.evNames, r.evHi, r.evAll, r.evLost = nil, "", false, false
	r.evMu.Unlock()
	if evHi > r.hi {
		r.hi = evHi
	}
	if lost {
		r.based = false
	}
	cut = cut && r.watching && !all
	if cut && r.based {
		// Every arrival since the last listing has been announced, or is
		// about to be (and will raise a wake-up): no need to list.
		slices.Sort(announced)
		i := upTo(r.tail, r.hi)
		r.cache = mergeSorted(r.tail[:i], announced)
		r.tail = r.tail[i:]
		return nil
	}
	if cut && !r.primed {
		// Whatever was in the queue before the watch began raised no
		// event; all of it is in this listing.
		names, err := r.list()
		if err != nil {
			return err
		}
		if n := len(names); n > 0 && names[n-1] > r.hi {
			r.hi = names[n-1]
		}
		r.primed = true
	}
	names, err := r.list()
	if err != nil {
		return err
	}
	if cut {
		i := upTo(names, r.hi)
		r.cache, r.tail = names[:i], names[i:]
	} else {
		if n := len(names); n > 0 && names[n-1] > r.hi {
			r.hi = names[n-1]
		}
		r.cache, r.tail = names, nil
	}
	r.based = r.watching
	return nil
}

// upTo returns the number of names in sorted that are at most hi.
func upTo(sorted []string, hi string) int {
	i, found := slices.BinarySearch(sorted, hi)
	if found {
		i++
	}
	return i
}

// mergeSorted returns the sorted union of two sorted lists, without duplicates.
func mergeSorted(a, b []string) []string {
	out := make([]string, 0, len(a)+len(b))
	for len(a) > 0 || len(b) > 0 {
		var n string
		switch {
		case len(b) == 0 || (len(a) > 0 && a[0] <= b[0]):
			n, a = a[0], a[1:]
		default:
			n, b = b[0], b[1:]
		}
		if len(out) == 0 || out[len(out)-1] != n {
			out = append(out, n)
		}
	}
	return out
}

// next claims the first entry of the cache that nobody else has taken.
func (r *Reader) next() (*Checkout, error) {
	for len(r.cache) > 0 {
		name := r.cache[0]
		r.cache = r.cache[1:]
		if r.watching && r.s.hub.taken(r.dir, name) {
			continue
		}
		r.s.acquire()
		c, err := r.s.checkout(r.queue, name, false, true)
		r.s.release()
		switch {
		case err == nil:
			if r.watching {
				r.s.hub.markTaken(r.dir, name)
			}
			return c, nil
		case errors.Is(err, ErrNotFound), errors.Is(err, errNotRegular):
			// Not marked: another process may already have put it back,
			// and its arrival may have been dispatched before this mark.
			continue
		case unclaimable(err):
			// Left in place for fsck and the operator; tried again only
			// when a later listing or event brings the name back.
			// Not marked: another process may already have put it back,
			// and its arrival may have been dispatched before this mark.
			continue
		case errors.Is(err, ErrBusy):
			// Locked by another worker while still in the queue: a
			// competitor claiming it (it leaves at once) or a worker
			// handing it back (it unlocks at once). Dequeue tries it again.
			r.busy = append(r.busy, name)
			continue
		}
		return nil, err
	}
	return nil, nil
}

// unclaimable reports an entry that a claim leaves where it is for fsck and
// the operator: no registry file, metadata over the size bound, a file with
// other hard links. Readers pass over it.
func unclaimable(err error) bool {
	return errors.Is(err, ErrUnregistered) || errors.Is(err, ErrTooLarge) || errors.Is(err, ErrLinked)
}

// Dequeue blocks until it has checked out an entry of the queue, and returns
// it, or until ctx is done (ctx.Err()) or the reader is closed (ErrClosed).
// It consumes a sorted snapshot of the queue head first and lists again only
// when the snapshot is used up, as the reference does. If the queue's
// directory disappears it returns an error wrapping ErrUnknownQueue.
func (r *Reader) Dequeue(ctx context.Context) (*Checkout, error) {
	if err := r.s.writable("dequeue from", r.queue); err != nil {
		return nil, err
	}
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	retried := false
	for {
		if err := r.check(ctx); err != nil {
			return nil, err
		}
		c, err := r.next()
		if c != nil || err != nil {
			return c, err
		}
		if err := r.refill(true); err != nil {
			return nil, err
		}
		if len(r.cache) > 0 {
			continue
		}
		// Nothing new: try the entries that were busy once before waiting
		// (most have left the queue by now), and once after each wait.
		if len(r.busy) > 0 && !retried {
			r.cache, r.busy, retried = r.busy, nil, true
			continue
		}
		retried = false
		var wait time.Duration
		if !r.watching {
			wait = r.s.poll
		}
		if len(r.busy) > 0 && (wait == 0 || wait > busyRetry) {
			wait = busyRetry
		}
		var tick <-chan time.Time
		if wait > 0 {
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			tick = timer.C
		}
		if err := r.wait(ctx, tick); err != nil {
			return nil, err
		}
	}
}

// wait blocks until an event wakes the reader, tick fires, ctx is done or
// the reader is closed.
func (r *Reader) wait(ctx context.Context, tick <-chan time.Time) error {
	if r.watching {
		r.s.hub.wait(+1)
		defer r.s.hub.wait(-1)
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-r.done:
		return fmt.Errorf("%w: %s", ErrClosed, r.dir)
	case <-r.wake:
		// Put the token back for refill's drain, which must come before
		// its listing.
		select {
		case r.wake <- struct{}{}:
		default:
		}
	case <-tick:
	}
	return nil
}

// DequeueAvailable checks out the first entry of the reader's snapshot of
// the queue that nobody else takes first, listing the queue again when the
// snapshot is used up. It returns nil, nil when nothing is available. It
// never waits. Draining a queue with it costs one listing per snapshot, not
// one per entry as in the reference.
func (r *Reader) DequeueAvailable() (*Checkout, error) {
	if err := r.check(context.Background()); err != nil {
		return nil, err
	}
	if err := r.s.writable("dequeue from", r.queue); err != nil {
		return nil, err
	}
	listed := false
	if len(r.cache) == 0 {
		if err := r.refill(false); err != nil {
			return nil, err
		}
		listed = true
	}
	c, err := r.next()
	if c != nil || err != nil || listed {
		return c, err
	}
	// The snapshot held only entries that others took: look again.
	if err := r.refill(false); err != nil {
		return nil, err
	}
	return r.next()
}

// Iter runs f on each entry it dequeues, then saves or removes the entry as
// f's Action says (releasing it unchanged when f fails or panics), until ctx
// is done or the reader is closed. It returns that error, or the first error
// from finishing an entry or from f. Entries are visited in snapshot order;
// an entry saved back into the same queue waits for a later snapshot.
func (r *Reader) Iter(ctx context.Context, f func(*Checkout) (Action, error)) error {
	for {
		c, err := r.Dequeue(ctx)
		if err != nil {
			return err
		}
		if err := c.run(f); err != nil {
			return err
		}
	}
}

// IterAvailable takes one snapshot of the queue and runs f on each entry of
// it that it can check out, once each, even when f saves the entry back into
// the same queue. It does not wait for new entries. It stops early when ctx
// is done.
func (r *Reader) IterAvailable(ctx context.Context, f func(*Checkout) (Action, error)) error {
	if err := r.check(ctx); err != nil {
		return err
	}
	if err := r.s.writable("dequeue from", r.queue); err != nil {
		return err
	}
	names, err := r.list()
	if err != nil {
		return err
	}
	for _, name := range names {
		if err := r.check(ctx); err != nil {
			return err
		}
		r.s.acquire()
		c, err := r.s.checkout(r.queue, name, false, true)
		r.s.release()
		if errors.Is(err, ErrNotFound) || errors.Is(err, errNotRegular) || errors.Is(err, ErrBusy) || unclaimable(err) {
			continue
		}
		if err != nil {
			return err
		}
		if err := c.run(f); err != nil {
			return err
		}
	}
	return nil
}

func (r *Reader) check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return fmt.Errorf("%w: %s", ErrClosed, r.dir)
	}
	return nil
}

// Close releases the reader's watch and wakes a Dequeue blocked in another
// goroutine, which returns ErrClosed. Closing twice is harmless.
func (r *Reader) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	close(r.done)
	r.mu.Unlock()
	if r.watching {
		r.s.hub.unsubscribe(r)
	}
	return nil
}

// watchHub shares one inotify instance among a spool's readers, with one
// watch per queue directory however many readers consume it: inotify
// instances are few (fs.inotify.max_user_instances is often 128 per user).
// The instance exists while some reader is subscribed.
//
// The hub reads inotify itself (with golang.org/x/sys/unix, as fsnotify's
// Linux backend does) rather than through fsnotify, because a reader must be
// able to drain the events synchronously before it lists: fsnotify delivers
// them from its own goroutine, so a reader that has just enqueued an entry
// cannot tell "no event" from "event not forwarded yet", and the hand-off
// through two goroutines cost a blocking enqueue-dequeue cycle a third of
// its throughput (see the benchmarks). A goroutine listening in the
// runtime's poller wakes readers that wait; a reader that drains reads what
// the kernel holds at that moment. The descriptor is in the poller only
// while some reader waits: otherwise every event would wake an idle thread,
// which cost the same cycle a fifth of its throughput.
type watchHub struct {
	s *Spool

	mu        sync.Mutex
	fd        int      // the inotify descriptor, non-blocking; valid while stop is not nil
	listening *os.File // a duplicate of fd in the runtime's poller while a reader waits
	buf       []byte
	waiting   int                             // readers blocked in Dequeue
	arm       chan struct{}                   // tells the poll goroutine that a reader waits
	stop      chan struct{}                   // closed when the instance is stopped; nil when there is none
	stopped   chan struct{}                   // closed when the poll goroutine has closed the descriptors
	wds       map[int32]string                // watch descriptor -> directory
	dirs      map[string]int32                // directory -> watch descriptor
	subs      map[string]map[*Reader]struct{} // directory -> its readers
	gone      map[string]*goneSet             // directory -> names this process's readers saw leave it
	rootWd    int32                           // the watch of the spool root (0: none)
}

// goneSet remembers the names that readers of this process took from a
// queue, so that the other readers of the queue do not try them again one by
// one: readers learn names from inotify, and without it every reader would
// try every name. A name that arrives again is dropped from the set (its
// holder is in this process, so it cannot arrive again before it is marked).
// It is bounded: a forgotten name costs one failed open.
type goneSet struct {
	names map[string]struct{}
	ring  []string
	next  int
}

const goneCap = 8192

func (g *goneSet) add(name string) {
	if _, ok := g.names[name]; ok {
		return
	}
	if len(g.ring) < goneCap {
		g.ring = append(g.ring, name)
	} else {
		delete(g.names, g.ring[g.next])
		g.ring[g.next] = name
		g.next = (g.next + 1) % goneCap
	}
	g.names[name] = struct{}{}
}

// taken reports whether a reader of this process took name from dir since
// it last arrived there.
func (h *watchHub) taken(dir, name string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	g := h.gone[dir]
	if g == nil {
		return false
	}
	_, ok := g.names[name]
	return ok
}

// markTaken records that a reader of this process took name from dir.
func (h *watchHub) markTaken(dir, name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.gone == nil {
		return // detached
	}
	g := h.gone[dir]
	if g == nil {
		g = &goneSet{names: map[string]struct{}{}}
		h.gone[dir] = g
	}
	g.add(name)
}

// watchMask selects arrivals (a creation, or a rename into the directory)
// and the directory's own removal or rename. Departures, writes and touches
// create no work for a reader, so they are not watched.
const watchMask = unix.IN_CREATE | unix.IN_MOVED_TO | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ONLYDIR | unix.IN_DONT_FOLLOW

// rootMask selects directories leaving or arriving at the spool root.
const rootMask = unix.IN_DELETE | unix.IN_MOVED_FROM | unix.IN_MOVED_TO | unix.IN_ONLYDIR

// Seams for tests: where inotify is unavailable these fail.
var (
	inotifyInit = func() (int, error) { return unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC) }
	// inotifyAdd watches the directory at path: /proc/self/fd/N of the
	// queue's open directory (a magic link, so the mask must follow it),
	// or, without /proc, the queue's path once checked to be that directory.
	inotifyAdd = func(fd int, path string) (int, error) {
		return unix.InotifyAddWatch(fd, path, watchMask&^unix.IN_DONT_FOLLOW)
	}
	// dupForPoller duplicates the inotify descriptor for the runtime's poller.
	dupForPoller = func(fd int) (int, error) { return unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0) }
)

// subscribe registers r for wake-ups about r.dir. It reports false when the
// directory cannot be watched (r then polls, and the spool logs it once).
// A missing directory is an error.
func (h *watchHub) subscribe(r *Reader) (bool, error) {
	h.mu.Lock()
	var stopped chan struct{}
	defer func() {
		h.mu.Unlock()
		if stopped != nil {
			<-stopped
		}
	}()
	if h.stop == nil {
		fd, err := inotifyInit()
		if err != nil {
			h.s.warnPolling(r.dir, err)
			return false, nil
		}
		h.fd, h.buf = fd, make([]byte, 64<<10)
		h.wds, h.dirs, h.subs = map[int32]string{}, map[string]int32{}, map[string]map[*Reader]struct{}{}
		// The spool root is watched for queue directories that leave or
		// arrive: the spool holds each queue directory open, so the kernel
		// reports a removed one's IN_DELETE_SELF only once it is closed.
		// Without this watch, readers learn it at their next listing.
		if wd, err := unix.InotifyAddWatch(fd, procPath(h.s.root.fd), rootMask); err == nil {
			h.rootWd = int32(wd)
		}
		h.gone = map[string]*goneSet{}
		h.arm, h.stop, h.stopped = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
		go h.poll(fd, h.arm, h.stop, h.stopped)
	}
	if _, ok := h.dirs[r.dir]; !ok {
		wd, err := h.addWatch(r)
		if err != nil {
			stopped = h.detachIfIdle()
			if isNotExist(err) {
				return false, queueGone(r.queue, r.dir, err)
			}
			h.s.warnPolling(r.dir, err)
			return false, nil
		}
		h.dirs[r.dir] = int32(wd)
		h.wds[int32(wd)] = r.dir
	}
	m := h.subs[r.dir]
	if m == nil {
		m = map[*Reader]struct{}{}
		h.subs[r.dir] = m
	}
	m[r] = struct{}{}
	return true, nil
}

// unsubscribe removes r, dropping the directory's watch with its last
// reader and the inotify instance with the spool's last reader (it returns
// once the instance's descriptors are closed).
func (h *watchHub) unsubscribe(r *Reader) {
	h.mu.Lock()
	var stopped chan struct{}
	defer func() {
		h.mu.Unlock()
		if stopped != nil {
			<-stopped
		}
	}()
	m := h.subs[r.dir]
	if _, ok := m[r]; !ok {
		return
	}
	delete(m, r)
	if len(m) == 0 {
		delete(h.subs, r.dir)
		if wd, ok := h.dirs[r.dir]; ok {
			unix.InotifyRmWatch(h.fd, uint32(wd)) // an error means the kernel dropped it already
			delete(h.dirs, r.dir)
			delete(h.wds, wd)
		}
	}
	stopped = h.detachIfIdle()
}

// detachIfIdle stops the inotify instance when no reader is subscribed. The
// poll goroutine owns the descriptor and closes it on its way out; the
// returned channel is closed when it has, and the caller waits for it after
// releasing h.mu (the goroutine may need h.mu to notice). Callers hold h.mu.
func (h *watchHub) detachIfIdle() chan struct{} {
	if len(h.subs) > 0 || h.stop == nil {
		return nil
	}
	close(h.stop)
	if h.listening != nil {
		h.listening.SetReadDeadline(time.Unix(1, 0)) // wake it
	}
	stopped := h.stopped
	h.wds, h.dirs, h.subs, h.gone, h.arm, h.stop, h.stopped = nil, nil, nil, nil, nil, nil, nil
	h.rootWd = 0
	h.fd = -1
	return stopped
}

// poll listens on the inotify descriptor fd while some reader waits, and
// hands the events it reads to the readers, until the instance is stopped;
// then it closes fd, and only then: the hub reads fd until stop is closed.
// While no reader waits it does not listen, and fd is not in the runtime's
// poller at all: there every event would wake an idle thread even with no
// reader waiting, and readers that are busy drain the events themselves. To
// listen, it puts a duplicate of fd in the poller for as long as some reader
// waits; when it cannot (no descriptor to spare), it reads fd every
// listenRetry instead while readers wait.
func (h *watchHub) poll(fd int, arm, stop, stopped chan struct{}) {
	defer close(stopped)
	defer unix.Close(fd)
	for {
		select {
		case <-stop:
			return
		case <-arm:
		}
		if !h.listen(fd, stop) {
			// Read by hand, and try listening again, while readers wait.
			select {
			case <-stop:
				return
			case <-time.After(listenRetry):
			}
			h.mu.Lock()
			if h.stop == stop {
				h.readLocked()
			}
			waiting := h.waiting > 0
			h.mu.Unlock()
			if waiting {
				select {
				case arm <- struct{}{}:
				default:
				}
			}
		}
	}
}

// listenRetry is how often poll reads inotify by hand while readers wait
// and it cannot listen.
const listenRetry = 10 * time.Millisecond

// listen puts a duplicate of fd in the runtime's poller and dispatches the
// events it reads until no reader waits or the instance is stopped. It
// reports false when it could not listen.
func (h *watchHub) listen(fd int, stop chan struct{}) bool {
	dup, err := dupForPoller(fd)
	if err != nil {
		return false
	}
	f := os.NewFile(uintptr(dup), "inotify")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return false
	}
	defer f.Close()
	h.mu.Lock()
	if h.stop != stop {
		h.mu.Unlock()
		return true
	}
	h.listening = f
	h.mu.Unlock()
	// Read calls the function first, so events that arrived before the
	// duplicate was in the poller are read at once.
	err = rc.Read(func(uintptr) bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.stop != stop {
			return true
		}
		h.readLocked()
		return h.waiting == 0 // nobody waits: stop listening
	})
	h.mu.Lock()
	if h.listening == f {
		h.listening = nil
	}
	h.mu.Unlock()
	return err == nil || isClosed(stop)
}

// isClosed reports whether ch is closed.
func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// wait records that a reader starts (+1) or stops (-1) waiting for events.
func (h *watchHub) wait(delta int) {
	h.mu.Lock()
	h.waiting += delta
	arm := h.arm
	h.mu.Unlock()
	if delta > 0 && arm != nil {
		select {
		case arm <- struct{}{}:
		default:
		}
	}
}

// drain reads and dispatches whatever events the kernel holds now.
func (h *watchHub) drain() {
	h.mu.Lock()
	if h.stop != nil {
		h.readLocked()
	}
	h.mu.Unlock()
}

// drainFor is drain for a reader of dir. If dir lost its watch (it was
// removed or renamed, and something may now stand at its path), it watches
// the path again and reports true; a missing directory is an error.
func (h *watchHub) drainFor(r *Reader) (bool, error) {
	dir := r.dir
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stop == nil {
		return false, nil
	}
	h.readLocked()
	if _, ok := h.dirs[dir]; ok {
		return false, nil
	}
	// The directory we had open may have been replaced through this spool
	// (AddQueue) or by another process: look at what is there now.
	h.s.forgetQueue(r.queue)
	wd, err := h.addWatch(r)
	if err != nil {
		return false, err
	}
	h.dirs[dir] = int32(wd)
	h.wds[int32(wd)] = dir
	return true, nil
}

// addWatch adds a watch on r's queue directory: the one the spool has open
// (never whatever a swapped path leads to). A removed directory is ENOENT.
// Callers hold h.mu.
func (h *watchHub) addWatch(r *Reader) (int, error) {
	qd, err := h.s.qdirs(r.queue)
	if err != nil {
		if errors.Is(err, ErrUnknownQueue) {
			return -1, unix.ENOENT
		}
		return -1, err
	}
	if h.s.dirGone(qd.dir.fd) {
		return -1, unix.ENOENT
	}
	wd, err := inotifyAdd(h.fd, procPath(qd.dir.fd))
	if !isNotExist(err) {
		return wd, err
	}
	// No /proc: watch the path if it leads to the directory we hold.
	var a, b unix.Stat_t
	if h.s.fs.Lstat(h.s.root.fd, r.queue, &a) != nil || h.s.fs.Fstat(qd.dir.fd, &b) != nil || a.Ino != b.Ino || a.Dev != b.Dev {
		return -1, unix.ENOENT
	}
	return unix.InotifyAddWatch(h.fd, qd.dir.path, watchMask)
}

// readLocked reads the inotify descriptor until it is empty and hands each
// event to the readers it concerns. Callers hold h.mu.
func (h *watchHub) readLocked() {
	for {
		n, err := unix.Read(h.fd, h.buf)
		if err == unix.EINTR {
			continue
		}
		if n <= 0 || err != nil {
			return // EAGAIN: empty
		}
		h.dispatchLocked(h.buf[:n])
		if n < len(h.buf)-(unix.SizeofInotifyEvent+unix.NAME_MAX+1) {
			// The kernel returns every event that fits: there was room
			// for another, so there was none. Spare the read that would
			// say EAGAIN.
			return
		}
	}
}

// dispatchLocked hands the events in buf to the readers. An overflow (some
// events lost) makes every reader take its next snapshot whole; a change to
// a watched directory itself (removed, renamed, unmounted) wakes its
// readers, whose next listing reports it.
func (h *watchHub) dispatchLocked(buf []byte) {
	inotifyev.Each(buf, func(ev inotifyev.Event) {
		if ev.Mask&unix.IN_Q_OVERFLOW != 0 {
			// Arrivals were lost: what readers saw leave may be back.
			h.gone = map[string]*goneSet{}
			for _, m := range h.subs {
				for r := range m {
					r.notify("", true)
				}
			}
			return
		}
		if ev.Wd == h.rootWd && h.rootWd != 0 {
			// A directory left or arrived at the top of the spool: if it
			// is a watched queue's, its readers look at what is there now.
			if ev.Mask&unix.IN_ISDIR == 0 || len(ev.Name) == 0 {
				return
			}
			dir := h.s.queueDir(string(ev.Name))
			wd, ok := h.dirs[dir]
			if !ok {
				return
			}
			unix.InotifyRmWatch(h.fd, uint32(wd))
			delete(h.wds, wd)
			delete(h.dirs, dir)
			delete(h.gone, dir)
			for r := range h.subs[dir] {
				r.notify("", true)
			}
			return
		}
		dir, ok := h.wds[ev.Wd]
		if !ok {
			return
		}
		if ev.Mask&(unix.IN_DELETE_SELF|unix.IN_MOVE_SELF|unix.IN_IGNORED|unix.IN_UNMOUNT) != 0 {
			if ev.Mask&unix.IN_IGNORED == 0 {
				unix.InotifyRmWatch(h.fd, uint32(ev.Wd))
			}
			delete(h.wds, ev.Wd)
			delete(h.dirs, dir)
			delete(h.gone, dir)
			for r := range h.subs[dir] {
				r.notify("", true)
			}
			return
		}
		if ev.Mask&(unix.IN_CREATE|unix.IN_MOVED_TO) == 0 || len(ev.Name) == 0 || string(ev.Name) == CheckoutDir {
			return
		}
		entry := string(ev.Name)
		if g := h.gone[dir]; g != nil {
			delete(g.names, entry) // it is back
		}
		for r := range h.subs[dir] {
			r.notify(entry, false)
		}
	})
}

// warnPolling logs, once per spool, that readers poll instead of watching.
func (s *Spool) warnPolling(dir string, err error) {
	s.pollWarn.Do(func() {
		s.logger.Warn("spool readers cannot watch their queues with inotify; polling instead",
			"spool", s.dir, "dir", dir, "interval", s.poll, "err", err)
	})
}

// queueGone is the error for a queue whose directory has disappeared.
func queueGone(queue, dir string, err error) error {
	return fmt.Errorf("%w %q: its directory %s is gone: %w", ErrUnknownQueue, queue, dir, err)
}

package spool

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Reader consumes one queue. A blocking Dequeue sleeps until an entry
// arrives: the spool's readers share one watcher of the queue directories
// (inotify on Linux, fsnotify elsewhere); where a directory cannot be
// watched, readers poll every Options.PollInterval instead and the spool
// logs it once (SPOOL_AGENT_WATCHER=fsnotify forces the portable watcher on
// Linux too; =poll makes readers poll). A Reader is meant for one goroutine
// (Close may come from another); run several Readers to consume in
// parallel. Close it to release its watch.
//
// A Reader takes the queue's oldest names first, in sorted snapshots as
// the reference does: for one producer whose names sort in creation order
// (the default TimeNames) and one Reader, entries are dequeued exactly in
// creation order. In a steady flow a watching Reader does not list the
// queue at all.
type Reader struct {
	s     *Spool
	queue string
	dir   string

	// How it works. Events are hints, but complete ones (an overflow is
	// reported), so after its first listing a watching Reader takes the
	// names that events announce: the entries it knows of are those of its
	// last listing plus those announced since. It lists the queue again
	// (after catching up with the events, as the reference drains them
	// before listing) only when that knowledge may be incomplete: after an
	// overflow, or after it dropped names (more than maxNames between two
	// drains). Its Dequeue takes only names up to the greatest name that
	// has been announced (or that was in the queue before its first
	// Dequeue), so that an entry that arrives while readdir(3) runs is never
	// taken before an older one that the same readdir may have missed. After
	// an overflow, and when polling, each snapshot is taken whole. An entry
	// that another worker holds locked while it is still in the queue (a
	// competitor claiming it, or a worker handing it back) is passed over
	// and tried again before the Reader waits, and after each wait (which
	// then lasts at most busyRetry).

	w        queueWatcher  // fixed at creation: nil means polling
	maxNames int           // the hub's maxNames when the reader was made
	wake     chan struct{} // has a token when an event arrived since the last drain
	done     chan struct{} // closed by Close
	onWait   func()        // tests: called each time Dequeue is about to block

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

		maxNames: s.hub.maxNames(),
	}
	if w := s.hub.watcher(); w != nil {
		watching, err := w.subscribe(r)
		if err != nil {
			return nil, err
		}
		if watching {
			r.w = w
		}
	}
	if r.w == nil {
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
func (r *Reader) Polling() bool { return r.w == nil }

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
// (see the comment in Reader), otherwise from a new listing. Draining comes before listing
// (the reference's "DO NOT CHANGE"): an entry that arrives after the drain
// raises a new wake-up, so it is never missed. With cut, only names up to
// r.hi are taken; without, the listing is taken whole.
func (r *Reader) refill(cut bool) error {
	select {
	case <-r.wake:
	default:
	}
	if r.w != nil {
		// What the watcher knows now, not only what it forwarded.
		rewatched, err := r.w.catchUp(r)
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
	cut = cut && r.w != nil && !all
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
	r.based = r.w != nil
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
func (r *Reader) next() (*Checkout, error) { return r.claim(true) }

// claim claims the first entry of the cache that it can. With hints, it
// passes over the names that the watcher says readers of this process took:
// exact where the watcher catches up synchronously; elsewhere wrong only
// for a name that came back and whose arrival is not dispatched yet, which
// a blocking Dequeue takes once it is.
func (r *Reader) claim(hints bool) (*Checkout, error) {
	for len(r.cache) > 0 {
		name := r.cache[0]
		r.cache = r.cache[1:]
		if hints && r.w != nil && r.w.taken(r.dir, name) {
			continue
		}
		r.s.acquire()
		c, err := r.s.checkout(r.queue, name, false, true)
		r.s.release()
		switch {
		case err == nil:
			if r.w != nil {
				r.w.markTaken(r.dir, name)
				// A worker that takes no lock may have put the entry
				// back already, its arrival dispatched before the mark:
				// then the mark would hide it from this process's readers.
				var st unix.Stat_t
				r.s.acquire()
				back := r.s.fs.Lstat(c.qd.dir.fd, name, &st) == nil
				r.s.release()
				if back {
					r.w.unmarkTaken(r.dir, name)
				}
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
		// Another error (EMFILE, EIO): the name is out of the cache, and
		// a watching reader learns names from events, which will not
		// announce it again: the next refill lists the queue, as a
		// polling reader does.
		r.based = false
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
		if r.w == nil {
			wait = r.s.pollInterval
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
	if r.w != nil {
		r.w.countWaiter(+1)
		defer r.w.countWaiter(-1)
	}
	if r.onWait != nil {
		r.onWait()
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
	// It must not miss an entry whose enqueue has returned, so it passes
	// over what others took only when that knowledge is exact.
	hints := r.w != nil && r.w.catchUpExact()
	c, err := r.claim(hints)
	if c != nil || err != nil || listed {
		return c, err
	}
	// The snapshot held only entries that others took: look again.
	if err := r.refill(false); err != nil {
		return nil, err
	}
	return r.claim(hints)
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
	if r.w != nil {
		r.w.unsubscribe(r)
	}
	return nil
}

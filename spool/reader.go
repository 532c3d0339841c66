package spool

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"golang.org/x/sys/unix"
)

// Reader consumes one queue. Blocking dequeues sleep until inotify (through
// fsnotify) reports an entry arriving in the queue directory, or, where the
// directory cannot be watched (inotify limits, a file system without
// inotify), until the spool's poll interval passes; the fall-back is logged
// once per spool. A Reader is meant for one goroutine (Close may come from
// another); run several Readers to consume in parallel. Close it to release
// its watch.
//
// Order: a Reader consumes sorted snapshots of the queue head first, as the
// reference does. Beyond the reference, a watching Reader's Dequeue takes from
// a snapshot only the names up to the greatest name it has been told about
// by inotify (or that was in the queue before its first Dequeue), so that an
// entry that arrives while readdir(3) runs is never taken before an older one
// that the same readdir may have missed. For one producer whose names sort in
// creation order (the default TimeNames) and one Reader, entries are
// therefore dequeued exactly in creation order. After an inotify overflow,
// and when polling, each snapshot is taken whole.
type Reader struct {
	s     *Spool
	queue string
	dir   string

	watching bool          // fixed at creation: false means polling
	wake     chan struct{} // has a token when an event arrived since the last drain
	done     chan struct{} // closed by Close

	evMu  sync.Mutex
	evHi  string // greatest entry name that arrived since the last drain
	evAll bool   // an overflow or a change of the directory itself: take the next snapshot whole

	mu     sync.Mutex
	closed bool

	// Owned by the goroutine that dequeues.
	cache     []string
	hi        string // names up to hi are known to have arrived before the last drain
	primed    bool   // hi covers what was in the queue before the watch began
	retrySoon bool   // an entry was busy: list again soon even without an event
}

// busyRetry is how soon a Reader lists again after it skipped an entry that
// another worker held locked while it stayed in the queue.
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
	}
	watching, err := s.hub.subscribe(r)
	if err != nil {
		return nil, err
	}
	r.watching = watching
	if !watching {
		var st unix.Stat_t
		s.acquire()
		err := s.fs.Lstat(r.dir, &st)
		s.release()
		if isNotExist(err) {
			return nil, queueGone(queue, r.dir, err)
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
	} else if name > r.evHi {
		r.evHi = name
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

// refill drains the wake-ups, then lists the queue into the cache. The
// order matters (the reference's "DO NOT CHANGE"): an entry that arrives
// after the drain raises a new wake-up, so it is never missed. With cut, only
// names up to r.hi are kept (see Reader).
func (r *Reader) refill(cut bool) error {
	select {
	case <-r.wake:
	default:
	}
	r.evMu.Lock()
	evHi, all := r.evHi, r.evAll
	r.evHi, r.evAll = "", false
	r.evMu.Unlock()
	if evHi > r.hi {
		r.hi = evHi
	}
	cut = cut && r.watching && !all
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
		i, found := slices.BinarySearch(names, r.hi)
		if found {
			i++
		}
		names = names[:i]
	} else if n := len(names); n > 0 && names[n-1] > r.hi {
		r.hi = names[n-1]
	}
	r.cache = names
	return nil
}

// next claims the first entry of the cache that nobody else has taken.
func (r *Reader) next() (*Checkout, error) {
	for len(r.cache) > 0 {
		name := r.cache[0]
		r.cache = r.cache[1:]
		r.s.acquire()
		c, err := r.s.checkout(r.queue, name)
		r.s.release()
		switch {
		case err == nil:
			return c, nil
		case errors.Is(err, ErrNotFound), errors.Is(err, errNotRegular):
			continue
		case errors.Is(err, ErrBusy):
			r.retrySoon = true
			continue
		}
		return nil, err
	}
	return nil, nil
}

// Dequeue blocks until it has checked out an entry of the queue, and returns
// it, or until ctx is done (ctx.Err()) or the reader is closed (ErrClosed).
// It consumes a sorted snapshot of the queue head first and lists again only
// when the snapshot is used up, as the reference does. If the queue's
// directory disappears it returns an error wrapping ErrUnknownQueue.
func (r *Reader) Dequeue(ctx context.Context) (*Checkout, error) {
	if err := r.s.writable("dequeue from " + r.queue); err != nil {
		return nil, err
	}
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
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
		var wait time.Duration
		if !r.watching {
			wait = r.s.poll
		}
		if r.retrySoon {
			r.retrySoon = false
			if wait == 0 || wait > busyRetry {
				wait = busyRetry
			}
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
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-r.done:
			return nil, fmt.Errorf("%w: %s", ErrClosed, r.dir)
		case <-r.wake:
			// Put the token back for refill's drain, which must come
			// before its listing.
			select {
			case r.wake <- struct{}{}:
			default:
			}
		case <-tick:
		}
	}
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
	if err := r.s.writable("dequeue from " + r.queue); err != nil {
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
	if err := r.s.writable("dequeue from " + r.queue); err != nil {
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
		c, err := r.s.checkout(r.queue, name)
		r.s.release()
		if errors.Is(err, ErrNotFound) || errors.Is(err, errNotRegular) || errors.Is(err, ErrBusy) {
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

// watchHub shares one fsnotify watcher (one inotify instance) among a
// spool's readers, with one watch per queue directory however many readers
// consume it: inotify instances are few (fs.inotify.max_user_instances is
// often 128 per user). The watcher exists while some reader is subscribed.
type watchHub struct {
	s *Spool

	mu      sync.Mutex
	w       *fsnotify.Watcher
	watched map[string]bool                 // directories with a kernel watch
	subs    map[string]map[*Reader]struct{} // directory -> its readers
}

// Seams for tests: where inotify is unavailable these fail.
var (
	newWatcher = fsnotify.NewWatcher
	addWatch   = func(w *fsnotify.Watcher, dir string) error { return w.Add(dir) }
)

// subscribe registers r for wake-ups about r.dir. It reports false when the
// directory cannot be watched (r then polls, and the spool logs it once).
// A missing directory is an error.
func (h *watchHub) subscribe(r *Reader) (bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.w == nil {
		w, err := newWatcher()
		if err != nil {
			h.s.warnPolling(r.dir, err)
			return false, nil
		}
		h.w = w
		h.watched = map[string]bool{}
		h.subs = map[string]map[*Reader]struct{}{}
		go h.forward(w)
	}
	if !h.watched[r.dir] {
		if err := addWatch(h.w, r.dir); err != nil {
			h.closeIfIdle()
			if isNotExist(err) {
				return false, queueGone(r.queue, r.dir, err)
			}
			h.s.warnPolling(r.dir, err)
			return false, nil
		}
		h.watched[r.dir] = true
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
// reader and the watcher with the spool's last reader.
func (h *watchHub) unsubscribe(r *Reader) {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.subs[r.dir]
	if _, ok := m[r]; !ok {
		return
	}
	delete(m, r)
	if len(m) == 0 {
		delete(h.subs, r.dir)
		if h.watched[r.dir] {
			h.w.Remove(r.dir) // an error means the kernel dropped it already
			delete(h.watched, r.dir)
		}
	}
	h.closeIfIdle()
}

// closeIfIdle closes the watcher when no reader is subscribed. Callers hold h.mu.
func (h *watchHub) closeIfIdle() {
	if len(h.subs) == 0 && h.w != nil {
		h.w.Close() // its channels close, and forward returns
		h.w, h.watched, h.subs = nil, nil, nil
	}
}

// forward hands w's events to the readers until w is closed.
func (h *watchHub) forward(w *fsnotify.Watcher) {
	for {
		select {
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			h.dispatch(w, ev)
		case _, ok := <-w.Errors:
			if !ok {
				return
			}
			// An overflow (or a read error) may have lost events: every
			// reader takes its next snapshot whole.
			h.mu.Lock()
			if h.w == w {
				for _, m := range h.subs {
					for r := range m {
						r.notify("", true)
					}
				}
			}
			h.mu.Unlock()
		}
	}
}

// dispatch wakes the readers of the directory an event is about. Only
// arrivals matter (a creation, or a rename into the directory, which
// fsnotify also reports as Create): departures, writes and touches create no
// work. A change to the watched directory itself (removed or renamed) wakes
// its readers, whose next listing reports it.
func (h *watchHub) dispatch(w *fsnotify.Watcher, ev fsnotify.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.w != w {
		return
	}
	if m, ok := h.subs[ev.Name]; ok {
		if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
			delete(h.watched, ev.Name) // the kernel dropped the watch
			for r := range m {
				r.notify("", true)
			}
		}
		return
	}
	if !ev.Has(fsnotify.Create) {
		return
	}
	i := strings.LastIndexByte(ev.Name, '/')
	if i < 0 {
		return
	}
	name := ev.Name[i+1:]
	if name == "" || name[0] == '.' {
		return
	}
	for r := range h.subs[ev.Name[:i]] {
		r.notify(name, false)
	}
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

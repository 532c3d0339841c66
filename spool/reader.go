package spool

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Reader consumes one queue. Blocking dequeues sleep until inotify (through
// fsnotify) reports a change in the queue directory, or, where the directory
// cannot be watched (inotify watch limit, a file system without inotify),
// until the spool's poll interval passes. A Reader is meant for one
// goroutine; run several Readers to consume in parallel. Close it to release
// its watch.
type Reader struct {
	s     *Spool
	queue string
	dir   string

	once    sync.Once
	watcher *fsnotify.Watcher
	wake    chan struct{} // has a token when something changed since the last drain
	done    chan struct{}
	poll    bool
	wg      sync.WaitGroup

	mu     sync.Mutex
	closed bool
	cache  []string
}

// NewReader returns a Reader of queue. The inotify watch is set up on the
// first blocking Dequeue.
func (s *Spool) NewReader(queue string) (*Reader, error) {
	if err := s.checkQueue(queue); err != nil {
		return nil, err
	}
	return &Reader{s: s, queue: queue, dir: s.queueDir(queue), wake: make(chan struct{}, 1), done: make(chan struct{})}, nil
}

// Polling reports whether the reader fell back to polling.
func (r *Reader) Polling() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.poll
}

func (r *Reader) startWatch() {
	w, err := fsnotify.NewWatcher()
	if err == nil {
		err = w.Add(r.dir)
		if err != nil {
			w.Close()
		}
	}
	if err != nil {
		r.mu.Lock()
		r.poll = true
		r.mu.Unlock()
		r.s.logger.Warn("spool reader cannot watch its queue, polling instead",
			"dir", r.dir, "interval", r.s.poll, "err", err)
		return
	}
	r.watcher = w
	r.wg.Add(1)
	go r.forward()
}

// forward turns every event and every error (an overflow included) into a
// wake-up token: events are hints that the directory changed, never counts.
func (r *Reader) forward() {
	defer r.wg.Done()
	for {
		select {
		case _, ok := <-r.watcher.Events:
			if !ok {
				return
			}
		case _, ok := <-r.watcher.Errors:
			if !ok {
				return
			}
		}
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
}

// drain discards pending wake-ups. It must come before a listing: an entry
// that arrives after the drain raises a new token, so it is never missed.
func (r *Reader) drain() {
	select {
	case <-r.wake:
	default:
	}
}

// refill drains, then lists the queue into the cache.
func (r *Reader) refill() error {
	r.drain()
	names, err := r.s.List(r.queue)
	if err != nil {
		return err
	}
	r.cache = names
	return nil
}

// next claims the first entry of the cache that nobody else has taken.
func (r *Reader) next() (*Checkout, error) {
	for len(r.cache) > 0 {
		name := r.cache[0]
		r.cache = r.cache[1:]
		c, err := r.s.Checkout(r.queue, name)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		return c, err
	}
	return nil, nil
}

// Dequeue blocks until it has checked out an entry of the queue, and returns
// it, or until ctx is done (ctx.Err()) or the reader is closed (ErrClosed).
// It consumes a sorted snapshot of the queue head first and lists again only
// when the snapshot is used up, as the reference does.
func (r *Reader) Dequeue(ctx context.Context) (*Checkout, error) {
	r.once.Do(r.startWatch)
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
		if err := r.refill(); err != nil {
			return nil, err
		}
		if len(r.cache) > 0 {
			continue
		}
		var tick <-chan time.Time
		if r.Polling() {
			if timer == nil {
				timer = time.NewTimer(r.s.poll)
			} else {
				timer.Reset(r.s.poll)
			}
			tick = timer.C
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-r.done:
			return nil, ErrClosed
		case <-r.wake:
			// Put the token back so refill's drain consumes it: the listing
			// that follows sees whatever raised it.
			select {
			case r.wake <- struct{}{}:
			default:
			}
		case <-tick:
		}
	}
}

// DequeueAvailable lists the queue and checks out the first entry that
// nobody else takes first. It returns nil, nil when nothing is available. It
// never waits.
func (r *Reader) DequeueAvailable() (*Checkout, error) {
	if err := r.check(context.Background()); err != nil {
		return nil, err
	}
	if err := r.refill(); err != nil {
		return nil, err
	}
	return r.next()
}

// Iter runs f on each entry it dequeues, then saves or removes the entry as
// f's Action says (releasing it unchanged when f fails), until ctx is done.
// It returns ctx's error, or the first error from finishing an entry or from
// f. Entries are visited in snapshot order; an entry saved back into the same
// queue waits for the next snapshot.
func (r *Reader) Iter(ctx context.Context, f func(*Checkout) (Action, error)) error {
	for {
		c, err := r.Dequeue(ctx)
		if err != nil {
			return err
		}
		a, ferr := f(c)
		if err := c.apply(a, ferr); err != nil {
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
	names, err := r.s.List(r.queue)
	if err != nil {
		return err
	}
	for _, name := range names {
		if err := r.check(ctx); err != nil {
			return err
		}
		c, err := r.s.Checkout(r.queue, name)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		a, ferr := f(c)
		if err := c.apply(a, ferr); err != nil {
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

// Close releases the reader's inotify watch and wakes a Dequeue blocked in
// another goroutine, which returns ErrClosed.
func (r *Reader) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	close(r.done)
	r.mu.Unlock()
	r.once.Do(func() {}) // wait for a concurrent startWatch; none starts later
	var err error
	if r.watcher != nil {
		err = r.watcher.Close()
	}
	r.wg.Wait()
	return err
}

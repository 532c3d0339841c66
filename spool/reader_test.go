package spool

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spool-agent/spool-agent/internal/testkit"
)

// dequeueLater starts a blocking Dequeue of r (for at most 10 s) and
// returns a channel that gets the entry's metadata (the entry is removed)
// or the error's text.
func dequeueLater(r *Reader) <-chan string {
	got := make(chan string, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := r.Dequeue(ctx)
		if err != nil {
			got <- err.Error()
			return
		}
		got <- string(c.Metadata())
		c.Remove()
	}()
	return got
}

// watcherKinds are the watchers that a test of readers runs with: the
// default (SPOOL_AGENT_WATCHER or the platform's), fsnotify forced and,
// with polling, none.
func watcherKinds(polling bool) map[string]watcherKind {
	m := map[string]watcherKind{"default": watchDefault, "fsnotify": watchFsnotify}
	if polling {
		m["polling"] = watchNone
	}
	return m
}

// blockedSignal makes r send on the returned channel each time its Dequeue
// is about to block (found nothing to take). Call it before r dequeues.
func blockedSignal(r *Reader) <-chan struct{} {
	ch := make(chan struct{}, 1)
	r.onWait = func() {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	return ch
}

// waitBlocked waits until a Dequeue signals on ch that it blocks.
func waitBlocked(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("Dequeue never blocked")
	}
}

// TestReaderQueueRemoved: when the queue's directory is removed, a Dequeue
// blocked on it returns at once with an error wrapping ErrUnknownQueue, and
// so do later calls, polling or not; a new reader of it fails likewise.
func TestReaderQueueRemoved(t *testing.T) {
	t.Parallel()
	for name, kind := range watcherKinds(true) {
		polling := kind == watchNone
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := newTestSpool(t, []string{"q", "other"}, &Options{Durability: DurabilityNone, PollInterval: 20 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
			s.hub.kind = kind
			r, err := s.NewReader("q")
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if r.Polling() != polling {
				t.Fatalf("Polling() = %v", r.Polling())
			}
			blocked := blockedSignal(r)
			errc := make(chan error, 1)
			go func() {
				_, err := r.Dequeue(context.Background())
				errc <- err
			}()
			waitBlocked(t, blocked)
			if err := os.RemoveAll(s.queueDir("q")); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-errc:
				if !errors.Is(err, ErrUnknownQueue) || !strings.Contains(err.Error(), s.queueDir("q")) {
					t.Fatalf("Dequeue after the queue was removed = %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Dequeue did not return after the queue was removed")
			}
			if _, err := r.DequeueAvailable(); !errors.Is(err, ErrUnknownQueue) {
				t.Errorf("DequeueAvailable = %v", err)
			}
			if _, err := s.NewReader("q"); !errors.Is(err, ErrUnknownQueue) {
				t.Errorf("NewReader of the removed queue = %v", err)
			}
			// The other queue still works.
			r2, err := s.NewReader("other")
			if err != nil {
				t.Fatal(err)
			}
			defer r2.Close()
			mustEnqueue(t, s, "other", "m", "", EnqueueOptions{})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := r2.Dequeue(ctx)
			if err != nil {
				t.Fatal(err)
			}
			c.Remove()
		})
	}
}

// TestReaderClose: Close wakes a Dequeue blocked in another goroutine
// (ErrClosed), later calls fail with ErrClosed, and once every reader is
// closed a new reader watches again.
func TestReaderClose(t *testing.T) {
	t.Parallel()
	for name, kind := range watcherKinds(false) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testReaderClose(t, kind)
		})
	}
}

func testReaderClose(t *testing.T, kind watcherKind) {
	s := newTestSpool(t, []string{"q"}, &Options{Durability: DurabilityNone})
	s.hub.kind = kind
	r1, err := s.NewReader("q")
	if err != nil {
		t.Fatal(err)
	}
	r2, err := s.NewReader("q")
	if err != nil {
		t.Fatal(err)
	}
	blocked := blockedSignal(r1)
	errc := make(chan error, 1)
	go func() {
		_, err := r1.Dequeue(context.Background())
		errc <- err
	}()
	waitBlocked(t, blocked)
	if err := r1.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("blocked Dequeue after Close = %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not wake the blocked Dequeue")
	}
	if _, err := r1.Dequeue(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Dequeue after Close = %v", err)
	}
	if _, err := r1.DequeueAvailable(); !errors.Is(err, ErrClosed) {
		t.Errorf("DequeueAvailable after Close = %v", err)
	}
	if err := r1.IterAvailable(context.Background(), nil); !errors.Is(err, ErrClosed) {
		t.Errorf("IterAvailable after Close = %v", err)
	}
	if err := r1.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	r2.Close()
	// A new reader starts a new watcher.
	r3, err := s.NewReader("q")
	if err != nil {
		t.Fatal(err)
	}
	defer r3.Close()
	if r3.Polling() {
		t.Fatal("a new reader polls")
	}
	mustEnqueue(t, s, "q", "m", "", EnqueueOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := r3.Dequeue(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.Remove()
}

// TestReaderListings: in a steady enqueue-dequeue loop a reader lists the
// queue at most once per entry (before it waits), taking announced names
// from events; when it cannot trust its knowledge (names dropped, an entry
// busy) it lists again, and it still dequeues everything in order.
func TestReaderListings(t *testing.T) {
	t.Parallel()
	for name, kind := range watcherKinds(false) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testReaderListings(t, kind)
		})
	}
}

func testReaderListings(t *testing.T, kind watcherKind) {
	hfs := &hookFS{}
	s := newTestSpool(t, []string{"q"}, &Options{Durability: DurabilityNone, fs: hfs})
	s.hub.kind = kind
	var listings atomic.Int64
	hfs.hook = func(op, path string) error {
		if op == "readdir" && path == s.queueDir("q") {
			listings.Add(1)
		}
		return nil
	}
	r, err := s.NewReader("q")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dequeue := func(want string) {
		t.Helper()
		c, err := r.Dequeue(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if c.Name() != want {
			t.Fatalf("dequeued %s, want %s", c.Name(), want)
		}
		if err := c.Remove(); err != nil {
			t.Fatal(err)
		}
	}
	const cycles = 200
	for i := 0; i < cycles; i++ {
		dequeue(mustEnqueue(t, s, "q", "m", "", EnqueueOptions{}))
	}
	if n := listings.Load(); n > cycles+2 {
		t.Errorf("%d cycles listed the queue %d times", cycles, n)
	}
	t.Logf("%d cycles, %d listings", cycles, listings.Load())

	// More arrivals than the reader keeps names for: it lists instead.
	s.hub.maxAnnounced = 3 // read by NewReader only
	r, err = s.NewReader("q")
	s.hub.maxAnnounced = 0
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	dequeue(mustEnqueue(t, s, "q", "m", "", EnqueueOptions{}))
	var names []string
	for i := 0; i < 10; i++ {
		names = append(names, mustEnqueue(t, s, "q", "m", "", EnqueueOptions{}))
	}
	waitAnnounced(t, r, names[len(names)-1])
	before := listings.Load()
	for _, n := range names {
		dequeue(n)
	}
	if listings.Load() == before {
		t.Error("the reader did not list after dropping names")
	}

	// A busy entry is passed over, and taken once it is free.
	busy := mustEnqueue(t, s, "q", "m", "", EnqueueOptions{})
	unlock := lockFile(t, s.queuePath("q", busy))
	next := mustEnqueue(t, s, "q", "m", "", EnqueueOptions{})
	dequeue(next)
	unlock()
	dequeue(busy)
}

// waitAnnounced waits until name has reached r's announced names.
func waitAnnounced(t *testing.T, r *Reader, name string) {
	t.Helper()
	testkit.WaitFor(t, 10*time.Second, name+" announced", func() bool {
		if _, err := r.w.catchUp(r); err != nil {
			t.Fatal(err)
		}
		r.evMu.Lock()
		defer r.evMu.Unlock()
		return r.evHi >= name
	})
}

// TestReaderQueueReplaced: when the queue's directory is renamed away and
// a new one made in its place, a reader watches the new one and dequeues
// what arrives there.
func TestReaderQueueReplaced(t *testing.T) {
	t.Parallel()
	for name, kind := range watcherKinds(false) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testReaderQueueReplaced(t, kind)
		})
	}
}

func testReaderQueueReplaced(t *testing.T, kind watcherKind) {
	s := newTestSpool(t, []string{"q"}, &Options{Durability: DurabilityNone})
	s.hub.kind = kind
	r, err := s.NewReader("q")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	old := mustEnqueue(t, s, "q", "old", "", EnqueueOptions{})
	c, err := r.Dequeue(ctx2)
	if err != nil || c.Name() != old {
		t.Fatalf("Dequeue = %v, %v", c, err)
	}
	c.Remove()
	if err := os.Rename(s.queueDir("q"), s.queueDir("q")+".old"); err != nil {
		t.Fatal(err)
	}
	if err := s.AddQueue("q"); err != nil {
		t.Fatal(err)
	}
	name := mustEnqueue(t, s, "q", "new", "", EnqueueOptions{})
	c, err = r.Dequeue(ctx2)
	if err != nil || c.Name() != name {
		t.Fatalf("Dequeue after the queue was replaced = %v, %v", c, err)
	}
	c.Remove()
	blocked := blockedSignal(r)
	later := make(chan string, 1)
	go func() {
		c, err := r.Dequeue(ctx2)
		if err != nil {
			later <- err.Error()
			return
		}
		later <- c.Name()
		c.Remove()
	}()
	waitBlocked(t, blocked)
	name = mustEnqueue(t, s, "q", "newer", "", EnqueueOptions{})
	if got := <-later; got != name {
		t.Fatalf("blocked Dequeue in the new queue got %s", got)
	}
}

// TestDequeueAvailableNameBack: an entry whose enqueue has returned is
// available to DequeueAvailable even when its name is one that this
// reader took before (the name came back): with a watcher that delivers
// events from its own goroutine, the arrival may not be dispatched yet, so
// what the spool's readers took is only a hint there.
func TestDequeueAvailableNameBack(t *testing.T) {
	t.Parallel()
	for name, kind := range watcherKinds(true) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := newTestSpool(t, []string{"q"}, &Options{Durability: DurabilityNone, Names: PrefixNames("e")})
			s.hub.kind = kind
			r, err := s.NewReader("q")
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			for round := range 20 {
				var names []string
				for range 4 {
					names = append(names, mustEnqueue(t, s, "q", "m", "", EnqueueOptions{}))
				}
				c, err := r.DequeueAvailable()
				if err != nil || c == nil || c.Name() != names[0] {
					t.Fatalf("round %d: DequeueAvailable = %v, %v; want %s", round, c, err, names[0])
				}
				if err := c.Remove(); err != nil {
					t.Fatal(err)
				}
				if again := mustEnqueue(t, s, "q", "m", "", EnqueueOptions{}); again != names[0] {
					t.Fatalf("the name was not reused: %s", again)
				}
				got := map[string]bool{}
				for {
					c, err := r.DequeueAvailable()
					if err != nil {
						t.Fatal(err)
					}
					if c == nil {
						break
					}
					got[c.Name()] = true
					c.Remove()
				}
				for _, n := range names {
					if !got[n] {
						t.Fatalf("round %d: %s (enqueued before the drain) not dequeued; got %v", round, n, got)
					}
				}
			}
		})
	}
}

// TestWatcherEnv: SPOOL_AGENT_WATCHER is read when the spool is opened:
// "poll" makes its readers poll, "fsnotify" gives them the portable
// watcher, and a change after the open does not matter.
func TestWatcherEnv(t *testing.T) {
	cases := []struct {
		env     string
		polling bool
		kind    watcherKind
	}{
		{"poll", true, watchNone},
		{"fsnotify", false, watchFsnotify},
		{"nonsense", false, watchDefault},
	}
	for _, c := range cases {
		t.Run(c.env, func(t *testing.T) {
			t.Setenv(watcherEnv, c.env)
			s := newTestSpool(t, []string{"q"}, &Options{Durability: DurabilityNone, Logger: slog.New(slog.DiscardHandler)})
			t.Setenv(watcherEnv, "")
			if s.hub.env != c.kind {
				t.Errorf("env kind %d, want %d", s.hub.env, c.kind)
			}
			r, err := s.NewReader("q")
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if r.Polling() != c.polling {
				t.Errorf("Polling() = %v, want %v", r.Polling(), c.polling)
			}
			if _, isFsnotify := r.w.(*fsnotifyHub); c.kind == watchFsnotify && !isFsnotify {
				t.Errorf("watcher %T, want the fsnotify one", r.w)
			}
		})
	}
}

package spool

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spool-agent/spool-agent/internal/syncbuf"
)

// inotifyFDs counts this process's inotify instances.
func inotifyFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && l == "anon_inode:inotify" {
			n++
		}
	}
	return n
}

// TestReaderPollingFallback: where inotify cannot be used (no instance left,
// or no watch left), readers poll at the spool's interval, still dequeue
// what arrives, and the spool logs the fall-back once however many readers
// fall back.
func TestReaderPollingFallback(t *testing.T) {
	cases := []struct {
		name string
		init func() (int, error)
		add  func(int, string) (int, error)
	}{
		{"no inotify instance", func() (int, error) { return -1, unix.EMFILE }, inotifyAdd},
		{"no watch left", inotifyInit, func(int, string) (int, error) { return -1, unix.ENOSPC }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			oldInit, oldAdd := inotifyInit, inotifyAdd
			inotifyInit, inotifyAdd = c.init, c.add
			defer func() { inotifyInit, inotifyAdd = oldInit, oldAdd }()
			before := inotifyFDs(t)
			var logs syncbuf.Buffer
			logger := slog.New(slog.NewTextHandler(&logs, nil))
			s := newTestSpool(t, []string{"q1", "q2"}, &Options{Durability: DurabilityNone, Logger: logger, PollInterval: 10 * time.Millisecond})
			var readers []*Reader
			for _, q := range []string{"q1", "q1", "q2"} {
				r, err := s.NewReader(q)
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				if !r.Polling() {
					t.Fatal("reader watches although inotify fails")
				}
				readers = append(readers, r)
			}
			if n := strings.Count(logs.String(), "polling instead"); n != 1 {
				t.Errorf("%d log records for 3 readers falling back, want 1:\n%s", n, logs.String())
			}
			if n := inotifyFDs(t); n != before {
				t.Errorf("%d inotify instances left open", n-before)
			}
			got := dequeueLater(readers[2])
			time.Sleep(30 * time.Millisecond) // let the reader find the queue empty and poll
			mustEnqueue(t, s, "q2", "late", "", EnqueueOptions{})
			if m := <-got; m != "late" {
				t.Fatalf("polling reader got %q", m)
			}
			// A second spool logs its own fall-back once.
			s2 := newTestSpool(t, []string{"q"}, &Options{Logger: logger})
			r, err := s2.NewReader("q")
			if err != nil {
				t.Fatal(err)
			}
			r.Close()
			if n := strings.Count(logs.String(), "polling instead"); n != 2 {
				t.Errorf("%d log records for 2 spools, want 2", n)
			}
		})
	}
}

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

// TestReaderCannotListen: when no descriptor is left to put inotify in the
// runtime's poller, a watching reader that waits is still woken (the hub
// reads inotify every few milliseconds instead), and the hub's descriptor
// stays open for the readers until the last one closes.
func TestReaderCannotListen(t *testing.T) {
	old := dupForPoller
	dupForPoller = func(int) (int, error) { return -1, unix.EMFILE }
	defer func() { dupForPoller = old }()
	before := inotifyFDs(t)
	s := newTestSpool(t, []string{"q"}, &Options{Durability: DurabilityNone})
	r, err := s.NewReader("q")
	if err != nil {
		t.Fatal(err)
	}
	if r.Polling() {
		t.Fatal("reader polls although inotify works")
	}
	for i := range 3 {
		got := dequeueLater(r)
		time.Sleep(30 * time.Millisecond) // let the reader find the queue empty and wait
		want := fmt.Sprint("late ", i)
		mustEnqueue(t, s, "q", want, "", EnqueueOptions{})
		if m := <-got; m != want {
			t.Fatalf("waiting reader got %q, want %q", m, want)
		}
	}
	if n := inotifyFDs(t); n != before+1 {
		t.Errorf("%d inotify instances open beside the test's, want the hub's 1", n-before)
	}
	r.Close()
	if n := inotifyFDs(t); n != before {
		t.Errorf("%d inotify instances left open after the last reader", n-before)
	}
}

// TestReaderQueueRemoved: when the queue's directory is removed, a Dequeue
// blocked on it returns at once with an error wrapping ErrUnknownQueue, and
// so do later calls, polling or not; a new reader of it fails likewise.
func TestReaderQueueRemoved(t *testing.T) {
	for _, polling := range []bool{false, true} {
		name := "watching"
		if polling {
			name = "polling"
		}
		t.Run(name, func(t *testing.T) {
			if polling {
				old := inotifyInit
				inotifyInit = func() (int, error) { return -1, unix.EMFILE }
				defer func() { inotifyInit = old }()
			}
			s := newTestSpool(t, []string{"q", "other"}, &Options{Durability: DurabilityNone, PollInterval: 20 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
			r, err := s.NewReader("q")
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			errc := make(chan error, 1)
			go func() {
				_, err := r.Dequeue(context.Background())
				errc <- err
			}()
			time.Sleep(30 * time.Millisecond)
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
// (ErrClosed), releases the watch (the spool's inotify instance goes with
// its last reader), and later calls fail with ErrClosed.
func TestReaderClose(t *testing.T) {
	before := inotifyFDs(t)
	s := newTestSpool(t, []string{"q"}, &Options{Durability: DurabilityNone})
	r1, err := s.NewReader("q")
	if err != nil {
		t.Fatal(err)
	}
	r2, err := s.NewReader("q")
	if err != nil {
		t.Fatal(err)
	}
	if n := inotifyFDs(t) - before; n != 1 {
		t.Fatalf("two readers of one spool use %d inotify instances, want 1", n)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := r1.Dequeue(context.Background())
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
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
	s.hub.mu.Lock()
	if s.hub.stop == nil {
		t.Error("the hub stopped its inotify instance while a reader is left")
	}
	s.hub.mu.Unlock()
	r2.Close()
	if n := inotifyFDs(t) - before; n != 0 {
		t.Errorf("with every reader closed, %d inotify instances left", n)
	}
	s.hub.mu.Lock()
	if s.hub.stop != nil {
		t.Error("the hub still has an inotify instance")
	}
	s.hub.mu.Unlock()
	// A new reader starts a new watcher.
	r3, err := s.NewReader("q")
	if err != nil {
		t.Fatal(err)
	}
	defer r3.Close()
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
// from inotify; when it cannot trust its knowledge (names dropped, an entry
// busy) it lists again, and it still dequeues everything in order.
func TestReaderListings(t *testing.T) {
	hfs := &hookFS{}
	s := newTestSpool(t, []string{"q"}, &Options{Durability: DurabilityNone, FS: hfs})
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
	old := maxAnnounced
	maxAnnounced = 3
	r, err = s.NewReader("q")
	maxAnnounced = old
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
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		r.s.hub.drain()
		r.evMu.Lock()
		hi := r.evHi
		r.evMu.Unlock()
		if hi >= name {
			return
		}
	}
	t.Fatalf("%s never announced", name)
}

// TestReaderOverflow: after an inotify overflow (events lost) a reader
// lists the queue whole and forgets which names it saw leave, so an entry
// that came back unannounced is dequeued.
func TestReaderOverflow(t *testing.T) {
	s := newTestSpool(t, []string{"q"}, &Options{Durability: DurabilityNone})
	r, err := s.NewReader("q")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	name := mustEnqueue(t, s, "q", "m", "", EnqueueOptions{})
	c, err := r.Dequeue(ctx)
	if err != nil || c.Name() != name {
		t.Fatalf("Dequeue = %v, %v", c, err)
	}
	// The entry comes back, but its arrival is lost in an overflow.
	if err := c.Release(); err != nil {
		t.Fatal(err)
	}
	s.hub.drain()
	r.evMu.Lock()
	r.evNames, r.evHi = nil, ""
	r.evMu.Unlock()
	s.hub.markTaken(r.dir, name)
	ev := make([]byte, unix.SizeofInotifyEvent)
	binary.NativeEndian.PutUint32(ev[0:4], ^uint32(0)) // wd -1
	binary.NativeEndian.PutUint32(ev[4:8], unix.IN_Q_OVERFLOW)
	s.hub.mu.Lock()
	s.hub.dispatchLocked(ev)
	s.hub.mu.Unlock()
	c, err = r.Dequeue(ctx)
	if err != nil || c.Name() != name {
		t.Fatalf("Dequeue after an overflow = %v, %v", c, err)
	}
	c.Remove()
}

// TestReaderEntryBackBeforeMark: a reader that fails to claim an entry
// because another process holds it must not take it for gone: the other
// process may put it back at once, even before the failed claim returns.
func TestReaderEntryBackBeforeMark(t *testing.T) {
	hfs := &hookFS{}
	s := newTestSpool(t, []string{"q"}, &Options{Durability: DurabilityNone, FS: hfs})
	r, err := s.NewReader("q")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	first := mustEnqueue(t, s, "q", "m", "", EnqueueOptions{})
	c, err := r.Dequeue(ctx) // primes the reader
	if err != nil || c.Name() != first {
		t.Fatal(c, err)
	}
	c.Remove()
	name := mustEnqueue(t, s, "q", "m", "", EnqueueOptions{})
	var once sync.Once
	hfs.hook = func(op, path string) error {
		if op != "open" || path != s.queuePath("q", name) {
			return nil
		}
		var err error
		once.Do(func() {
			// Another process had it checked out when this open ran, and
			// puts it back before the failed claim returns; the arrival
			// is dispatched at once.
			co := s.checkoutPath("q", name)
			if err := os.Rename(path, co); err != nil {
				t.Error(err)
			}
			if err := os.Rename(co, path); err != nil {
				t.Error(err)
			}
			s.hub.drain()
			err = unix.ENOENT
		})
		return err
	}
	c, err = r.Dequeue(ctx)
	if err != nil || c.Name() != name {
		t.Fatalf("Dequeue of an entry that came back = %v, %v", c, err)
	}
	c.Remove()
}

// TestReaderQueueReplaced: when the queue's directory is renamed away and
// a new one made in its place, a reader watches the new one and dequeues
// what arrives there.
func TestReaderQueueReplaced(t *testing.T) {
	s := newTestSpool(t, []string{"q"}, &Options{Durability: DurabilityNone})
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
	time.Sleep(20 * time.Millisecond)
	name = mustEnqueue(t, s, "q", "newer", "", EnqueueOptions{})
	if got := <-later; got != name {
		t.Fatalf("blocked Dequeue in the new queue got %s", got)
	}
}

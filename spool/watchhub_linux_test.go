//go:build linux

package spool

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spool-agent/spool-agent/internal/syncbuf"
)

// Tests of the raw inotify watcher: they pin it, whatever SPOOL_AGENT_WATCHER says.

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

// newInotifySpool is newTestSpool with the raw inotify watcher pinned and
// its seams set by set (which may be nil).
func newInotifySpool(t *testing.T, queues []string, o *Options, set func(h *inotifyHub)) *Spool {
	t.Helper()
	s := newTestSpool(t, queues, o)
	s.hub.kind = watchInotify
	if set != nil {
		set(&s.hub.inotify)
	}
	return s
}

// TestInotifyPollingFallback: where inotify cannot be used (no instance
// left, or no watch left), readers poll at the spool's interval, still
// dequeue what arrives, and the spool logs the fall-back once however many
// readers fall back.
func TestInotifyPollingFallback(t *testing.T) {
	cases := []struct {
		name string
		set  func(h *inotifyHub)
	}{
		{"no inotify instance", func(h *inotifyHub) { h.sysInit = func() (int, error) { return -1, unix.EMFILE } }},
		{"no watch left", func(h *inotifyHub) { h.sysAddWatch = func(int, string) (int, error) { return -1, unix.ENOSPC } }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := inotifyFDs(t)
			var logs syncbuf.Buffer
			logger := slog.New(slog.NewTextHandler(&logs, nil))
			s := newInotifySpool(t, []string{"q1", "q2"}, &Options{Durability: DurabilityNone, Logger: logger, PollInterval: 10 * time.Millisecond}, c.set)
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
			blocked := blockedSignal(readers[2])
			got := dequeueLater(readers[2])
			waitBlocked(t, blocked)
			mustEnqueue(t, s, "q2", "late", "", EnqueueOptions{})
			if m := <-got; m != "late" {
				t.Fatalf("polling reader got %q", m)
			}
			// A second spool logs its own fall-back once.
			s2 := newInotifySpool(t, []string{"q"}, &Options{Logger: logger}, c.set)
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

// TestInotifyCannotListen: when no descriptor is left to put inotify in the
// runtime's poller, a watching reader that waits is still woken (the hub
// reads inotify every few milliseconds instead), and the hub's descriptor
// stays open for the readers until the last one closes.
func TestInotifyCannotListen(t *testing.T) {
	before := inotifyFDs(t)
	s := newInotifySpool(t, []string{"q"}, &Options{Durability: DurabilityNone}, func(h *inotifyHub) {
		h.sysDup = func(int) (int, error) { return -1, unix.EMFILE }
	})
	r, err := s.NewReader("q")
	if err != nil {
		t.Fatal(err)
	}
	if r.Polling() {
		t.Fatal("reader polls although inotify works")
	}
	blocked := blockedSignal(r)
	for i := range 3 {
		got := dequeueLater(r)
		waitBlocked(t, blocked)
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

// TestInotifyInstances: the readers of a spool share one inotify instance,
// which goes with the last reader and comes back with a new one.
func TestInotifyInstances(t *testing.T) {
	before := inotifyFDs(t)
	s := newInotifySpool(t, []string{"q"}, &Options{Durability: DurabilityNone}, nil)
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
	r1.Close()
	h := &s.hub.inotify
	h.mu.Lock()
	if h.stop == nil {
		t.Error("the hub stopped its inotify instance while a reader is left")
	}
	h.mu.Unlock()
	r2.Close()
	if n := inotifyFDs(t) - before; n != 0 {
		t.Errorf("with every reader closed, %d inotify instances left", n)
	}
	h.mu.Lock()
	if h.stop != nil {
		t.Error("the hub still has an inotify instance")
	}
	h.mu.Unlock()
	// A new reader starts a new instance.
	r3, err := s.NewReader("q")
	if err != nil {
		t.Fatal(err)
	}
	defer r3.Close()
	if n := inotifyFDs(t) - before; n != 1 {
		t.Fatalf("a new reader uses %d inotify instances, want 1", n)
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

// TestInotifyOverflow: after an inotify overflow (events lost) a reader
// lists the queue whole and forgets which names it saw leave, so an entry
// that came back unannounced is dequeued.
func TestInotifyOverflow(t *testing.T) {
	s := newInotifySpool(t, []string{"q"}, &Options{Durability: DurabilityNone}, nil)
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
	h := &s.hub.inotify
	h.readPending()
	r.evMu.Lock()
	r.evNames, r.evHi = nil, ""
	r.evMu.Unlock()
	h.markTaken(r.dir, name)
	ev := make([]byte, unix.SizeofInotifyEvent)
	binary.NativeEndian.PutUint32(ev[0:4], ^uint32(0)) // wd -1
	binary.NativeEndian.PutUint32(ev[4:8], unix.IN_Q_OVERFLOW)
	h.mu.Lock()
	h.dispatchLocked(ev)
	h.mu.Unlock()
	c, err = r.Dequeue(ctx)
	if err != nil || c.Name() != name {
		t.Fatalf("Dequeue after an overflow = %v, %v", c, err)
	}
	c.Remove()
}

// TestInotifyEntryBackBeforeMark: a reader that fails to claim an entry
// because another process holds it must not take it for gone: the other
// process may put it back at once, even before the failed claim returns
// (the raw inotify watcher dispatches the arrival at once).
func TestInotifyEntryBackBeforeMark(t *testing.T) {
	hfs := &hookFS{}
	s := newInotifySpool(t, []string{"q"}, &Options{Durability: DurabilityNone, fs: hfs}, nil)
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
			s.hub.inotify.readPending()
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

// TestFsnotifyInstances: the portable watcher, forced on Linux, also
// shares one inotify instance among a spool's readers and releases it with
// the last one.
func TestFsnotifyInstances(t *testing.T) {
	before := inotifyFDs(t)
	s := newTestSpool(t, []string{"q1", "q2"}, &Options{Durability: DurabilityNone})
	s.hub.kind = watchFsnotify
	var readers []*Reader
	for _, q := range []string{"q1", "q1", "q2"} {
		r, err := s.NewReader(q)
		if err != nil {
			t.Fatal(err)
		}
		if r.Polling() {
			t.Fatal("reader polls although fsnotify works")
		}
		readers = append(readers, r)
	}
	if n := inotifyFDs(t) - before; n != 1 {
		t.Errorf("three readers of one spool use %d inotify instances, want 1", n)
	}
	for _, r := range readers {
		r.Close()
	}
	if n := inotifyFDs(t) - before; n != 0 {
		t.Errorf("with every reader closed, %d inotify instances left", n)
	}
}

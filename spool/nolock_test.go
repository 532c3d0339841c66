package spool

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Workers of the reference take no lock. async_smtp's start-up recovery
// (uncheckout_all_entries) takes every checkout back, locked or not, and
// its workers may check the entry out again at once. These tests replay
// those system calls at the worst moment of an operation of this package:
// after its last check that it holds the entry and before the system call
// that acts on the entry by name.

// refUncheckout replays the reference's uncheckout of name: its
// Checked_out_entry.save (write .tmp/<name>, rename it over the checkout
// file: a new inode), then touch the registry and the checkout file and
// rename it back into the queue.
func refUncheckout(t *testing.T, s *Spool, q, name, meta string) {
	t.Helper()
	if err := os.WriteFile(s.tmpPath(name), []byte(meta), 0o644); err != nil {
		t.Error(err)
		return
	}
	if err := os.Rename(s.tmpPath(name), s.checkoutPath(q, name)); err != nil {
		t.Error(err)
		return
	}
	now := time.Now()
	os.Chtimes(s.registryPath(name), now, now)
	os.Chtimes(s.checkoutPath(q, name), now, now)
	if err := os.Rename(s.checkoutPath(q, name), s.queuePath(q, name)); err != nil {
		t.Error(err)
	}
}

// refCheckout replays the reference's checkout of name: touch the registry
// and the queue file, rename it into .checkout.
func refCheckout(t *testing.T, s *Spool, q, name string) {
	t.Helper()
	now := time.Now()
	os.Chtimes(s.registryPath(name), now, now)
	os.Chtimes(s.queuePath(q, name), now, now)
	if err := os.Rename(s.queuePath(q, name), s.checkoutPath(q, name)); err != nil {
		t.Error(err)
	}
}

func exists(p string) bool { _, err := os.Lstat(p); return err == nil }

// oneShot is a hookFS hook that acts once: at the first system call op on
// the path that path returns once armed (what path reads is set before
// armed is). act stands for the other worker; its error is the call's.
type oneShot struct {
	armed, ran atomic.Bool
	op         string
	path       func() string
	act        func() error
}

func (o *oneShot) hook(op, path string) error {
	if op == o.op && o.armed.Load() && path == o.path() && o.armed.CompareAndSwap(true, false) {
		o.ran.Store(true)
		return o.act()
	}
	return nil
}

// TestLostBeforeActingByName: a Checkout whose entry a worker that takes
// no lock took back (and, in some cases, checked out again) just before
// Remove, Save or WriteData acts on it gets ErrLost and changes nothing of
// that entry: it is not removed, duplicated into another queue, moved away
// from its new holder, or given another payload.
func TestLostBeforeActingByName(t *testing.T) {
	type world struct {
		s    *Spool
		name string
	}
	tests := []struct {
		name string
		// at says at which of the operation's system calls (op, path)
		// the other worker acts.
		at func(w world) (op, path string)
		// recheckout: the other worker checks the entry out again.
		recheckout bool
		act        func(c *Checkout) error
		// where the entry must be afterwards: "q" (waiting) or
		// "q/.checkout" (the other worker holds it).
		want string
	}{
		{"Remove, taken back", func(w world) (string, string) { return "touch", w.s.registryPath(w.name) }, false,
			func(c *Checkout) error { return c.Remove() }, "q"},
		{"Remove, taken back and checked out again", func(w world) (string, string) { return "touch", w.s.registryPath(w.name) }, true,
			func(c *Checkout) error { return c.Remove() }, "q/.checkout"},
		{"Save, taken back", func(w world) (string, string) { return "touch", w.s.registryPath(w.name) }, false,
			func(c *Checkout) error { return c.Save("r", nil) }, "q"},
		{"Save, taken back and checked out again", func(w world) (string, string) { return "touch", w.s.registryPath(w.name) }, true,
			func(c *Checkout) error { return c.Save("r", nil) }, "q/.checkout"},
		// The last check passed: the rename itself moves the other
		// worker's file, which then goes back.
		{"Save, checked out again just before the rename", func(w world) (string, string) {
			return "rename", w.s.checkoutPath("q", w.name) + " -> " + w.s.queuePath("r", w.name)
		}, true, func(c *Checkout) error { return c.Save("r", nil) }, "q/.checkout"},
		{"Save with new metadata, taken back while it is written", func(w world) (string, string) { return "write", "" }, false,
			func(c *Checkout) error { return c.Save("r", []byte("new metadata")) }, "q"},
		{"Save with new metadata, checked out again while it is written", func(w world) (string, string) { return "write", "" }, true,
			func(c *Checkout) error { return c.Save("r", []byte("new metadata")) }, "q/.checkout"},
	}
	for _, durability := range []Durability{DurabilityNone, DurabilityFull} {
		for _, tt := range tests {
			t.Run(durability.String()+"/"+tt.name, func(t *testing.T) {
				var armed atomic.Bool
				var w world
				hfs := &hookFS{}
				hfs.hook = func(op, path string) error {
					if !armed.Load() {
						return nil
					}
					wantOp, wantPath := tt.at(w)
					if op == wantOp && (wantPath == "" && strings.HasPrefix(path, w.s.tmpPath(w.name)+".tmp.") || path == wantPath) && armed.CompareAndSwap(true, false) {
						refUncheckout(t, w.s, "q", w.name, "theirs")
						if tt.recheckout {
							refCheckout(t, w.s, "q", w.name)
						}
					}
					return nil
				}
				w.s = newTestSpool(t, []string{"q", "r"}, &Options{Durability: durability, fs: hfs})
				w.name = mustEnqueue(t, w.s, "q", "mine", "payload", EnqueueOptions{})
				c := mustCheckout(t, w.s, "q", w.name)
				armed.Store(true)
				err := tt.act(c)
				if armed.Load() {
					t.Fatal("the other worker never ran")
				}
				if !errors.Is(err, ErrLost) {
					t.Errorf("= %v, want ErrLost", err)
				}
				where := map[string]string{"q": w.s.queuePath("q", w.name), "q/.checkout": w.s.checkoutPath("q", w.name), "r": w.s.queuePath("r", w.name)}
				for at, p := range where {
					if exists(p) != (at == tt.want) {
						t.Errorf("entry in %s: %v, want it only in %s", at, exists(p), tt.want)
					}
				}
				if b, err := os.ReadFile(where[tt.want]); err != nil || string(b) != "theirs" {
					t.Errorf("metadata %q, %v; want the other worker's", b, err)
				}
				if b, err := os.ReadFile(w.s.dataPath(w.name)); err != nil || string(b) != "payload" {
					t.Errorf("payload %q, %v", b, err)
				}
				if !exists(w.s.registryPath(w.name)) {
					t.Error("registry file gone")
				}
			})
		}
	}
}

// chunkReader yields its chunks one Read at a time and calls between once,
// after the first.
type chunkReader struct {
	chunks  []string
	between func()
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.chunks) == 0 {
		return 0, io.EOF
	}
	if r.between != nil && len(r.chunks) == 1 {
		r.between()
		r.between = nil
	}
	n := copy(p, r.chunks[0])
	r.chunks = r.chunks[1:]
	return n, nil
}

// TestWriteDataLostWhileStreaming: a checkout taken back and checked out
// again by another worker while WriteData streams the new payload gets
// ErrLost, and the other worker's entry keeps its payload.
func TestWriteDataLostWhileStreaming(t *testing.T) {
	s := newTestSpool(t, []string{"q"}, &Options{Durability: DurabilityNone})
	name := mustEnqueue(t, s, "q", "m", "old", EnqueueOptions{})
	c := mustCheckout(t, s, "q", name)
	src := &chunkReader{chunks: []string{"new-", "payload"}, between: func() {
		refUncheckout(t, s, "q", name, "m")
		refCheckout(t, s, "q", name)
	}}
	if err := c.WriteData(src); !errors.Is(err, ErrLost) {
		t.Errorf("WriteData = %v, want ErrLost", err)
	}
	if b, _ := os.ReadFile(s.dataPath(name)); string(b) != "old" {
		t.Errorf("payload %q, want the old one", b)
	}
	if tmp, _ := os.ReadDir(s.dataPath("")); len(tmp) != 1 {
		t.Errorf(".data holds %d files, want 1", len(tmp))
	}
}

// TestClaimMovesOnlyTheLockedFile: a worker that takes no lock checks the
// entry out and saves it back (a new file) between a claim's last check
// and its rename into .checkout. The claim fails with ErrNotFound and the
// other worker's file is back in the queue, where a later claim takes it
// (it was once left in .checkout, unlocked, held by nobody).
func TestClaimMovesOnlyTheLockedFile(t *testing.T) {
	for _, durability := range []Durability{DurabilityNone, DurabilityFull} {
		t.Run(durability.String(), func(t *testing.T) {
			var s *Spool
			var name string
			shot := &oneShot{op: "rename", path: func() string { return s.queuePath("q", name) + " -> " + s.checkoutPath("q", name) }, act: func() error {
				refCheckout(t, s, "q", name)
				refUncheckout(t, s, "q", name, "theirs") // its save back: a new file
				return nil
			}}
			s = newTestSpool(t, []string{"q"}, &Options{Durability: durability, fs: &hookFS{hook: shot.hook}})
			name = mustEnqueue(t, s, "q", "mine", "payload", EnqueueOptions{})
			shot.armed.Store(true)
			if c, err := s.Checkout(context.Background(), "q", name); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Checkout = %v, %v, want ErrNotFound", c, err)
			}
			if !shot.ran.Load() {
				t.Fatal("the other worker never ran")
			}
			if exists(s.checkoutPath("q", name)) {
				t.Error("the other worker's file is left in .checkout")
			}
			c := mustCheckout(t, s, "q", name)
			if string(c.Metadata()) != "theirs" {
				t.Errorf("metadata %q, want the other worker's", c.Metadata())
			}
			if err := c.Remove(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestSaveToRemovedQueueKeepsCheckout: a Save whose destination queue's
// directory was removed fails with that error, and the checkout stays held:
// Release then puts the entry back where it came from (a missing
// destination is not a checkout taken back).
func TestSaveToRemovedQueueKeepsCheckout(t *testing.T) {
	s := newTestSpool(t, []string{"q", "r"}, &Options{Durability: DurabilityNone})
	name := mustEnqueue(t, s, "q", "m", "d", EnqueueOptions{})
	c := mustCheckout(t, s, "q", name)
	if err := os.RemoveAll(s.queueDir("r")); err != nil {
		t.Fatal(err)
	}
	if err := c.Save("r", nil); err == nil || errors.Is(err, ErrLost) {
		t.Fatalf("Save into a removed queue = %v, want its error, not ErrLost", err)
	}
	if err := c.Release(); err != nil {
		t.Fatalf("Release = %v", err)
	}
	if !exists(s.queuePath("q", name)) {
		t.Error("the entry is not back in q")
	}
}

// TestRecoverMovesOnlyTheStaleFile: a reference worker that holds an old
// checkout (it never refreshes the mtime) saves it over (a new file) just
// before Recover's rename. Recover leaves that file in .checkout, where its
// worker moves it on, instead of putting it in the queue under the worker.
func TestRecoverMovesOnlyTheStaleFile(t *testing.T) {
	var s *Spool
	var name string
	shot := &oneShot{op: "rename", path: func() string { return s.checkoutPath("q", name) + " -> " + s.queuePath("q", name) }, act: func() error {
		// The worker's Checked_out_entry.save: a new file over the checkout.
		if err := os.WriteFile(s.tmpPath(name), []byte("theirs"), 0o644); err != nil {
			return err
		}
		return os.Rename(s.tmpPath(name), s.checkoutPath("q", name))
	}}
	s = newTestSpool(t, []string{"q"}, &Options{Durability: DurabilityNone, fs: &hookFS{hook: shot.hook}})
	name = mustEnqueue(t, s, "q", "mine", "payload", EnqueueOptions{})
	refCheckout(t, s, "q", name)
	shot.armed.Store(true)
	rs, err := s.Recover(context.Background(), 0, RecoverOptions{WorkersStopped: true})
	if err != nil || len(rs) != 0 {
		t.Fatalf("Recover = %v, %v; want nothing recovered", rs, err)
	}
	if !shot.ran.Load() {
		t.Fatal("the worker never saved")
	}
	if b, err := os.ReadFile(s.checkoutPath("q", name)); err != nil || string(b) != "theirs" {
		t.Errorf("checkout file %q, %v; want the worker's, in .checkout", b, err)
	}
	if exists(s.queuePath("q", name)) {
		t.Error("the worker's file is in the queue")
	}
}

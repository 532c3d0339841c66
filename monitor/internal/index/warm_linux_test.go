package index

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// hookLocker is the user's lock of an index under a warm rescan: before
// its at-th Lock it runs hook, which stands for the change feed applying
// events between two of the rescan's critical sections.
type hookLocker struct {
	mu    sync.Mutex
	calls int
	at    int
	hook  func()
}

func (h *hookLocker) Lock() {
	h.calls++
	if h.calls == h.at && h.hook != nil {
		h.hook()
	}
	h.mu.Lock()
}

func (h *hookLocker) Unlock() { h.mu.Unlock() }

// TestRescanKeepsEventsNewerThanItsStat: an entry the index does not know
// yet (its arrival is still being gathered) is listed and statted by a warm
// rescan; a worker checks it out and the feed applies that, between any two
// of the rescan's critical sections; then the worker removes the entry. The
// index ends without it wherever the move lands: the rescan's older stat
// once put it back in the queue, a phantom entry (reported as orphaned and
// missing its data) until the next rescan.
func TestRescanKeepsEventsNewerThanItsStat(t *testing.T) {
	setup := func(t *testing.T) (string, *Index) {
		dir := t.TempDir()
		for _, d := range []string{".registry", ".tmp", ".data", "active", "active/.checkout"} {
			if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		ix, err := Scan(context.Background(), dir, ScanOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{".registry/x", ".data/x", "active/x"} {
			if err := os.WriteFile(filepath.Join(dir, p), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		ix.Apply(dir+"/.registry/x", OpCreate)
		ix.Apply(dir+"/.data/x", OpCreate)
		return dir, ix
	}
	// How many critical sections a rescan has here.
	_, dry := setup(t)
	count := &hookLocker{}
	if err := dry.Rescan(context.Background(), count, func() bool { return true }, nil); err != nil {
		t.Fatal(err)
	}
	for at := 1; at <= count.calls+1; at++ {
		dir, ix := setup(t)
		h := &hookLocker{at: at}
		h.hook = func() {
			if err := os.Rename(dir+"/active/x", dir+"/active/.checkout/x"); err != nil {
				t.Fatal(err)
			}
			h.mu.Lock()
			ix.Apply(dir+"/active/x", OpCreate|OpRename) // created, then moved away
			ix.Apply(dir+"/active/.checkout/x", OpCreate)
			h.mu.Unlock()
		}
		if err := ix.Rescan(context.Background(), h, func() bool { return true }, nil); err != nil {
			t.Fatal(err)
		}
		if h.calls < at { // the move lands after the rescan
			h.hook()
		}
		for _, p := range []string{"active/.checkout/x", ".data/x", ".registry/x"} {
			if err := os.Remove(filepath.Join(dir, p)); err != nil {
				t.Fatal(err)
			}
			ix.Apply(filepath.Join(dir, p), OpRemove)
		}
		p := ix.Publish()
		if q := p.Queues[0]; q.Entries != 0 || q.CheckedOut != 0 {
			t.Errorf("move before lock %d of %d: the index counts %d waiting and %d checked out in an empty queue", at, count.calls, q.Entries, q.CheckedOut)
		}
		ix.EachSuspect(func(s Suspect) { t.Errorf("move before lock %d: suspect %q %+v", at, s.Name, s) })
	}
}

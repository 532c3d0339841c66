package spool

import (
	"context"
	"errors"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// primedReader returns a reader of q on an inotify spool that has listed
// the queue (a first entry dequeued and removed), so that it learns new
// names from events alone.
func primedReader(t *testing.T, hfs *hookFS) (*Spool, *Reader) {
	t.Helper()
	s := newInotifySpool(t, []string{"q"}, &Options{Durability: DurabilityNone, fs: hfs}, nil)
	r, err := s.NewReader("q")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	mustEnqueue(t, s, "q", "m", "", EnqueueOptions{})
	c, err := r.DequeueAvailable()
	if err != nil || c == nil {
		t.Fatalf("DequeueAvailable = %v, %v", c, err)
	}
	if err := c.Remove(); err != nil {
		t.Fatal(err)
	}
	return s, r
}

// TestReaderSeesEntryTakenBackDuringClaim: a worker that takes no lock puts
// the entry back into the queue while a reader's claim of it is under way,
// and the reader learns of the arrival before its claim returns. The
// claim's checkout is then lost, and the entry, waiting in the queue, is
// dequeued again by the same reader (it was once hidden as taken by this
// process for good).
func TestReaderSeesEntryTakenBackDuringClaim(t *testing.T) {
	var s *Spool
	var r *Reader
	var name string
	// The claim reading the metadata, after its rename into .checkout.
	shot := &oneShot{op: "read", path: func() string { return s.queuePath("q", name) }, act: func() error {
		refUncheckout(t, s, "q", name, "m")
		_, err := s.hub.inotify.catchUp(r) // the arrival, dispatched before the claim returns
		return err
	}}
	s, r = primedReader(t, &hookFS{hook: shot.hook})
	name = mustEnqueue(t, s, "q", "m", "", EnqueueOptions{})
	shot.armed.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := r.Dequeue(ctx)
	if err != nil || c.Name() != name {
		t.Fatalf("Dequeue = %v, %v", c, err)
	}
	if !shot.ran.Load() {
		t.Fatal("the other worker never ran")
	}
	if err := c.Save("q", nil); !errors.Is(err, ErrLost) {
		t.Fatalf("Save of the taken-back checkout = %v, want ErrLost", err)
	}
	c, err = r.Dequeue(ctx)
	if err != nil || c.Name() != name {
		t.Fatalf("Dequeue of the entry back in its queue = %v, %v (in the queue: %v)", c, err, exists(s.queuePath("q", name)))
	}
	if err := c.Remove(); err != nil {
		t.Fatal(err)
	}
}

// TestReaderRetriesNameAfterClaimError: a claim that fails with an
// unexpected error (EMFILE here) is reported, and the entry is dequeued by
// the next Dequeue: the reader does not forget the name although no event
// announces it again.
func TestReaderRetriesNameAfterClaimError(t *testing.T) {
	var s *Spool
	var name string
	shot := &oneShot{op: "open", path: func() string { return s.queuePath("q", name) }, act: func() error { return unix.EMFILE }}
	s, r := primedReader(t, &hookFS{hook: shot.hook})
	name = mustEnqueue(t, s, "q", "m", "", EnqueueOptions{})
	shot.armed.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := r.Dequeue(ctx); !errors.Is(err, unix.EMFILE) {
		t.Fatalf("first Dequeue = %v, want EMFILE", err)
	}
	c, err := r.Dequeue(ctx)
	if err != nil || c.Name() != name {
		t.Fatalf("second Dequeue = %v, %v, want %s", c, err, name)
	}
	if err := c.Remove(); err != nil {
		t.Fatal(err)
	}
}

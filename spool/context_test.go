package spool

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// cancelAfterReader yields n chunks of data, then cancels ctx and keeps
// yielding: Enqueue must notice before it reads the next chunk.
type cancelAfterReader struct {
	n      int
	cancel context.CancelFunc
}

func (r *cancelAfterReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		r.cancel()
	} else {
		r.n--
	}
	return copy(p, strings.Repeat("x", len(p))), nil
}

// TestEnqueueContext: a done ctx stops Enqueue before, during and at the end
// of the payload; nothing of the entry stays behind (layout unchanged).
func TestEnqueueContext(t *testing.T) {
	cases := []struct {
		name    string
		enqueue func(s *Spool) error
	}{
		{"done before", func(s *Spool) error {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			_, err := s.Enqueue(ctx, "q", []byte("m"), strings.NewReader("d"), EnqueueOptions{})
			return err
		}},
		{"done before, bytes", func(s *Spool) error {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			_, err := s.EnqueueBytes(ctx, "q", []byte("m"), []byte("d"), EnqueueOptions{})
			return err
		}},
		{"done between chunks", func(s *Spool) error {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			_, err := s.Enqueue(ctx, "q", []byte("m"), &cancelAfterReader{n: 3, cancel: cancel}, EnqueueOptions{})
			return err
		}},
		{"done at EOF", func(s *Spool) error {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			// The reader cancels as it returns its last chunk with EOF: only
			// the check before the rename can see it.
			r := io.MultiReader(strings.NewReader("d"), readerFunc(func([]byte) (int, error) { cancel(); return 0, io.EOF }))
			_, err := s.Enqueue(ctx, "q", []byte("m"), r, EnqueueOptions{})
			return err
		}},
		{"caller's name", func(s *Spool) error {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			_, err := s.Enqueue(ctx, "q", []byte("m"), &cancelAfterReader{n: 1, cancel: cancel}, EnqueueOptions{Name: "mine"})
			return err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestSpool(t, []string{"q"}, nil)
			defer s.Close()
			if err := tc.enqueue(s); !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want context.Canceled", err)
			}
			if got, want := tree(t, s.Dir()), layout(bareLayout("q")...); got != want {
				t.Errorf("left behind:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// TestEnqueueContextWaitsForSlot: with every slot taken, Enqueue and
// Checkout wait for one until ctx is done.
func TestContextWaitsForSlot(t *testing.T) {
	s := newTestSpool(t, []string{"q"}, &Options{MaxConcurrentOps: 1})
	defer s.Close()
	name := mustEnqueue(t, s, "q", "m", "d", EnqueueOptions{})
	s.acquire() // the only slot
	defer s.release()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := s.EnqueueBytes(ctx, "q", nil, nil, EnqueueOptions{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("EnqueueBytes: %v, want context.DeadlineExceeded", err)
	}
	if _, err := s.Checkout(ctx, "q", name); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Checkout: %v, want context.DeadlineExceeded", err)
	}
	if err := s.WithEntry(ctx, "q", name, func(*Checkout) (Action, error) { return Action{}, nil }); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WithEntry: %v, want context.DeadlineExceeded", err)
	}
}

// TestCheckoutContextEndsLockWait: a claim waiting for another worker's lock
// stops when ctx is done, and leaves the entry where it was.
func TestCheckoutContextEndsLockWait(t *testing.T) {
	s := newTestSpool(t, []string{"q"}, nil)
	defer s.Close()
	name := mustEnqueue(t, s, "q", "m", "d", EnqueueOptions{})
	unlock := lockFile(t, filepath.Join(s.Dir(), "q", name))
	defer unlock()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// A done ctx is refused before the slot; one that ends during the wait
	// ends the lock wait (claimWait is longer than the timeout).
	if _, err := s.Checkout(ctx, "q", name); !errors.Is(err, context.Canceled) {
		t.Errorf("done ctx: %v, want context.Canceled", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), claimWait/10)
	defer cancel()
	if _, err := s.Checkout(ctx, "q", name); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("during lock wait: %v, want context.DeadlineExceeded", err)
	}
	if got := mustList(t, s, "q"); len(got) != 1 || got[0] != name {
		t.Errorf("queue = %v, want [%s]", got, name)
	}
}

// TestRecoverContext: a ctx done during the walk stops it before the next
// entry; what was recovered stays recovered and is returned with ctx.Err().
func TestRecoverContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := &hookFS{}
	s := newTestSpool(t, []string{"q"}, &Options{fs: h})
	defer s.Close()
	for range 3 {
		name := mustEnqueue(t, s, "q", "m", "d", EnqueueOptions{})
		c := mustCheckout(t, s, "q", name)
		c.mu.Lock()
		c.finish(coLost) // a dead worker: unlocked, still in .checkout
		c.mu.Unlock()
	}
	// Cancel as the first entry goes back to its queue.
	h.hook = func(op, path string) error {
		if op == "rename" {
			cancel()
		}
		return nil
	}
	rs, err := s.Recover(ctx, 0, RecoverOptions{WorkersStopped: true})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if len(rs) != 1 {
		t.Fatalf("recovered %v, want one entry", rs)
	}
	if got := mustList(t, s, "q"); len(got) != 1 || got[0] != rs[0].Name {
		t.Errorf("queue = %v, want [%s]", got, rs[0].Name)
	}
	h.hook = nil
	rs, err = s.Recover(context.Background(), 0, RecoverOptions{WorkersStopped: true})
	if err != nil || len(rs) != 2 {
		t.Errorf("second Recover: %v, %v; want the other two", rs, err)
	}
}

package spool

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"
)

// TestDecodeErrorPolicy: every typed call meets an entry whose metadata does
// not decode the same way (see DecodeError): the calls that hand out
// checkouts hand it out held in the *DecodeError, the calls that finish
// entries themselves put it back, never call f, and stop.
func TestDecodeErrorPolicy(t *testing.T) {
	never := func(t *testing.T) func(*TypedCheckout[int]) (TypedAction[int], error) {
		return func(c *TypedCheckout[int]) (TypedAction[int], error) {
			t.Errorf("callback called with %s (meta %d)", c.Name(), c.Meta)
			return TypedRemove[int](), nil
		}
	}
	cases := []struct {
		name string
		call func(t *testing.T, ts *Typed[int], r *TypedReader[int], name string) error
		held bool // the DecodeError holds the checkout
	}{
		{"Checkout", func(_ *testing.T, ts *Typed[int], _ *TypedReader[int], name string) error {
			_, err := ts.Checkout(context.Background(), "q", name)
			return err
		}, true},
		{"Dequeue", func(_ *testing.T, _ *Typed[int], r *TypedReader[int], _ string) error {
			_, err := r.Dequeue(context.Background())
			return err
		}, true},
		{"DequeueAvailable", func(_ *testing.T, _ *Typed[int], r *TypedReader[int], _ string) error {
			_, err := r.DequeueAvailable()
			return err
		}, true},
		{"WithEntry", func(t *testing.T, ts *Typed[int], _ *TypedReader[int], name string) error {
			return ts.WithEntry(context.Background(), "q", name, never(t))
		}, false},
		{"Iter", func(t *testing.T, _ *Typed[int], r *TypedReader[int], _ string) error {
			// Iter stops at the entry: it does not run until ctx is done.
			return r.Iter(context.Background(), never(t))
		}, false},
		{"IterAvailable", func(t *testing.T, _ *Typed[int], r *TypedReader[int], _ string) error {
			return r.IterAvailable(context.Background(), never(t))
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestSpool(t, []string{"q", "quarantine"}, &Options{Durability: DurabilityNone})
			defer s.Close()
			ts := NewTyped[int](s, cogCodec{})
			name := mustEnqueue(t, s, "q", "not a cog", "d", EnqueueOptions{})
			r, err := ts.NewReader("q")
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			err = tc.call(t, ts, r, name)
			var de *DecodeError
			if !errors.As(err, &de) || de.Queue != "q" || de.Name != name {
				t.Fatalf("err = %v, want a *DecodeError for q/%s", err, name)
			}
			if !tc.held {
				if de.Checkout != nil {
					t.Fatal("DecodeError holds a checkout that the call should have put back")
				}
				if got := mustList(t, s, "q"); !slices.Equal(got, []string{name}) {
					t.Errorf("q = %v, want the entry back", got)
				}
				if err := s.Move("q", name, "quarantine"); err != nil {
					t.Fatalf("moving it away: %v", err)
				}
				return
			}
			if de.Checkout == nil {
				t.Fatal("DecodeError holds no checkout")
			}
			if got, _ := s.ListCheckedOut("q"); !slices.Equal(got, []string{name}) {
				t.Errorf("checked out: %v, want the entry, held", got)
			}
			if err := de.Checkout.Save("quarantine", nil); err != nil {
				t.Fatal(err)
			}
			if got := mustList(t, s, "quarantine"); !slices.Equal(got, []string{name}) {
				t.Errorf("quarantine = %v, want the entry", got)
			}
		})
	}
}

// TestTypedReaderIter: Iter visits entries in creation order, finishes each
// as its TypedAction says, waits for entries that arrive meanwhile, and
// returns ctx's error once ctx is done.
func TestTypedReaderIter(t *testing.T) {
	s := newTestSpool(t, []string{"q", "done"}, &Options{Durability: DurabilityNone})
	defer s.Close()
	ts := NewTyped[int](s, cogCodec{})
	var names []string
	for i := 1; i <= 3; i++ {
		n, err := ts.EnqueueBytes(context.Background(), "q", i, nil, EnqueueOptions{})
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	r, err := ts.NewReader("q")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var seen []int
	err = r.Iter(ctx, func(c *TypedCheckout[int]) (TypedAction[int], error) {
		seen = append(seen, c.Meta)
		switch c.Meta {
		case 1:
			return TypedSaveTo("done", 10), nil
		case 2:
			// An entry enqueued now comes after the snapshot: Iter must
			// list again for it.
			n, err := ts.EnqueueBytes(context.Background(), "q", 4, nil, EnqueueOptions{})
			names = append(names, n)
			return TypedRemove[int](), err
		case 3:
			return TypedKeep[int]("done"), nil
		}
		cancel()
		return TypedKeep[int](""), nil // back into q
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Iter = %v, want context.Canceled", err)
	}
	if !slices.Equal(seen, []int{1, 2, 3, 4}) {
		t.Errorf("seen %v, want [1 2 3 4]", seen)
	}
	if got := mustList(t, s, "done"); !slices.Equal(got, []string{names[0], names[2]}) {
		t.Errorf("done = %v, want %v", got, []string{names[0], names[2]})
	}
	for i, want := range map[int]int{0: 10, 2: 3} {
		if m, err := ts.ReadMetadata("done", names[i]); err != nil || m != want {
			t.Errorf("done/%s = %d, %v; want %d", names[i], m, err, want)
		}
	}
	if got := mustList(t, s, "q"); !slices.Equal(got, []string{names[3]}) {
		t.Errorf("q = %v, want [%s]", got, names[3])
	}
	if _, err := s.ReadData(names[1]); !errors.Is(err, ErrNotFound) {
		t.Errorf("removed entry's payload: %v", err)
	}
}

// TestDequeueAvailableSkipsHeld: DequeueAvailable (raw and typed) takes the waiting
// entries in creation order, skips one that another worker holds, finds one
// enqueued after its snapshot, and returns nil, nil, without waiting, when
// nothing is available.
func TestDequeueAvailableSkipsHeld(t *testing.T) {
	type checkout interface {
		Name() string
		Metadata() []byte
		Remove() error
	}
	cases := []struct {
		name    string
		dequeue func(s *Spool) func() (checkout, error)
	}{
		{"raw", func(s *Spool) func() (checkout, error) {
			r, err := s.NewReader("q")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close() })
			return func() (checkout, error) {
				c, err := r.DequeueAvailable()
				if c == nil {
					return nil, err
				}
				return c, err
			}
		}},
		{"typed", func(s *Spool) func() (checkout, error) {
			r, err := NewTyped[int](s, cogCodec{}).NewReader("q")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close() })
			return func() (checkout, error) {
				c, err := r.DequeueAvailable()
				if c == nil {
					return nil, err
				}
				if want, _ := (cogCodec{}).Unmarshal(c.Metadata()); c.Meta != want {
					t.Errorf("%s: Meta = %d, metadata %q", c.Name(), c.Meta, c.Metadata())
				}
				return c, err
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestSpool(t, []string{"q"}, &Options{Durability: DurabilityNone, Names: PrefixNames("e")})
			defer s.Close()
			dequeue := tc.dequeue(s)
			if c, err := dequeue(); c != nil || err != nil {
				t.Fatalf("empty queue: %v, %v; want nil, nil", c, err)
			}
			var names []string
			for i := range 4 {
				names = append(names, mustEnqueue(t, s, "q", "cog "+strconv.Itoa(i), "", EnqueueOptions{}))
			}
			held := mustCheckout(t, s, "q", names[1]) // another worker's
			var got []string
			for {
				c, err := dequeue()
				if err != nil {
					t.Fatal(err)
				}
				if c == nil {
					break
				}
				got = append(got, c.Name())
				if len(got) == 2 {
					// Enqueued after the snapshot: found by the next
					// listing (a reused lower name is the watch hub's
					// TestDequeueAvailableNameBack).
					names = append(names, mustEnqueue(t, s, "q", "cog 9", "", EnqueueOptions{Name: "z-late"}))
				}
				if err := c.Remove(); err != nil {
					t.Fatal(err)
				}
			}
			if want := []string{names[0], names[2], names[3], names[4]}; !slices.Equal(got, want) {
				t.Errorf("dequeued %v, want %v", got, want)
			}
			if err := held.Release(); err != nil {
				t.Fatal(err)
			}
			c, err := dequeue()
			if err != nil || c == nil || c.Name() != names[1] {
				t.Fatalf("after release: %v, %v; want %s", c, err, names[1])
			}
			c.Remove()
		})
	}
}

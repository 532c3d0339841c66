package spool

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestHalfMadeQueue: a queue directory without its .checkout/ (what a
// process killed between AddQueue's two mkdirs leaves) is not a queue: Open,
// Create, Rediscover and the lazy lookup of a queue added by another process
// all leave it out, and nothing is put into it. AddQueue (and Create naming
// it) completes it.
func TestHalfMadeQueue(t *testing.T) {
	cases := []struct {
		name string
		// complete makes the half-made queue "q2" whole, or nil to leave it.
		complete func(t *testing.T, dir string, s *Spool) *Spool
	}{
		{"left alone", nil},
		{"AddQueue", func(t *testing.T, _ string, s *Spool) *Spool {
			if err := s.AddQueue("q2"); err != nil {
				t.Fatal(err)
			}
			return s
		}},
		{"Create naming it", func(t *testing.T, dir string, s *Spool) *Spool {
			s.Close()
			s, err := Create(dir, []string{"q1", "q2"}, nil)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestSpool(t, []string{"q1"}, nil)
			dir := s.Dir()
			if err := os.Mkdir(filepath.Join(dir, "q2"), 0o777); err != nil {
				t.Fatal(err)
			}
			for _, open := range []func() (*Spool, error){
				func() (*Spool, error) { return s, s.Rediscover() },
				func() (*Spool, error) { return Open(dir, nil) },
				func() (*Spool, error) { return Open(dir, &Options{ReadOnly: true}) },
			} {
				o, err := open()
				if err != nil {
					t.Fatal(err)
				}
				if got := o.Queues(); !slices.Equal(got, []string{"q1"}) {
					t.Errorf("Queues() = %v, want [q1]", got)
				}
				if o.HasQueue("q2") {
					t.Error("HasQueue(q2) on a queue without .checkout")
				}
				if _, err := o.NewReader("q2"); !errors.Is(err, ErrUnknownQueue) {
					t.Errorf("NewReader(q2): %v, want ErrUnknownQueue", err)
				}
				if o != s {
					o.Close()
				}
			}
			if _, err := s.EnqueueBytes(context.Background(), "q2", nil, nil, EnqueueOptions{}); !errors.Is(err, ErrUnknownQueue) {
				t.Errorf("Enqueue into q2: %v, want ErrUnknownQueue", err)
			}
			if tc.complete == nil {
				if got, want := tree(t, dir), layout(append(bareLayout("q1"), "q2")...); got != want {
					t.Errorf("layout:\n%s\nwant:\n%s", got, want)
				}
				s.Close()
				return
			}
			s = tc.complete(t, dir, s)
			defer s.Close()
			if got := s.Queues(); !slices.Equal(got, []string{"q1", "q2"}) {
				t.Errorf("Queues() = %v after completion, want [q1 q2]", got)
			}
			name := mustEnqueue(t, s, "q2", "m", "d", EnqueueOptions{})
			mustCheckout(t, s, "q2", name).Release()
			if got, want := tree(t, dir), layout(append(bareLayout("q1", "q2"),
				".data/"+name, ".registry/"+name, "q2/"+name)...); got != want {
				t.Errorf("layout:\n%s\nwant:\n%s", got, want)
			}
			o, err := Open(dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer o.Close()
			if got := o.Queues(); !slices.Equal(got, []string{"q1", "q2"}) {
				t.Errorf("Queues() after reopening = %v, want [q1 q2]", got)
			}
		})
	}
}

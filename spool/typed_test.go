package spool

import (
	"context"
	"errors"
	"os"
	"strconv"
	"testing"
	"time"
)

// widget is the reference tests' metadata: a Sprocket with a string or a
// Cog with a number.
type widget struct {
	Sprocket string `json:",omitempty"`
	Cog      int    `json:",omitempty"`
}

// cogCodec is a hand-written codec: "cog <n>".
type cogCodec struct{}

func (cogCodec) Marshal(n int) ([]byte, error) { return []byte("cog " + strconv.Itoa(n)), nil }

func (cogCodec) Unmarshal(b []byte) (int, error) {
	s, ok := cutPrefix(string(b), "cog ")
	if !ok {
		return 0, errors.New("not a cog")
	}
	return strconv.Atoi(s)
}

func cutPrefix(s, p string) (string, bool) {
	if len(s) >= len(p) && s[:len(p)] == p {
		return s[len(p):], true
	}
	return s, false
}

func TestTyped(t *testing.T) {
	s := newTestSpool(t, []string{"q1", "q2"}, &Options{Durability: DurabilityNone})
	ts := NewTyped[widget](s, JSONCodec[widget]{})
	a, err := ts.EnqueueBytes(context.Background(), "q1", widget{Sprocket: "Hello"}, []byte("data a"), EnqueueOptions{Names: PrefixNames("a")})
	if err != nil {
		t.Fatal(err)
	}
	if raw, _ := s.ReadMetadata("q1", a); string(raw) != `{"Sprocket":"Hello"}` {
		t.Errorf("stored metadata %s", raw)
	}
	if m, err := ts.ReadMetadata("q1", a); err != nil || m.Sprocket != "Hello" {
		t.Errorf("ReadMetadata = %+v, %v", m, err)
	}
	if err := ts.WriteMetadata("q1", a, widget{Cog: 1}); err != nil {
		t.Fatal(err)
	}
	c, err := ts.Checkout(context.Background(), "q1", a)
	if err != nil || c.Meta.Cog != 1 {
		t.Fatalf("Checkout = %+v, %v", c, err)
	}
	if err := c.Save("q2", widget{Cog: 2}); err != nil {
		t.Fatal(err)
	}
	err = ts.WithEntry(context.Background(), "q2", a, func(c *TypedCheckout[widget]) (TypedAction[widget], error) {
		if c.Meta.Cog != 2 {
			t.Errorf("WithEntry sees %+v", c.Meta)
		}
		if d, err := c.ReadData(); err != nil || string(d) != "data a" {
			t.Errorf("ReadData = %q, %v", d, err)
		}
		return TypedSaveTo("q1", widget{Cog: 42}), nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// A reader decodes; an entry that does not decode comes back as a
	// *DecodeError that holds the checkout.
	if _, err := s.EnqueueBytes(context.Background(), "q1", []byte("not json"), nil, EnqueueOptions{Names: PrefixNames("b")}); err != nil {
		t.Fatal(err)
	}
	r, err := ts.NewReader("q1")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := r.Dequeue(ctx)
	if err != nil || got.Name() != a || got.Meta.Cog != 42 {
		t.Fatalf("Dequeue = %+v, %v", got, err)
	}
	if err := got.Save("q2", widget{Cog: 43}); err != nil {
		t.Fatal(err)
	}
	_, err = r.Dequeue(ctx)
	var de *DecodeError
	if !errors.As(err, &de) || de.Checkout == nil || de.Name != "b000000" {
		t.Fatalf("Dequeue of bad metadata = %v", err)
	}
	if err := de.Checkout.Save("q2", nil); err != nil { // "quarantine"
		t.Fatal(err)
	}

	// Iter over q2: the bad entry is put back and its error returned.
	r2, err := ts.NewReader("q2")
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	var seen []int
	err = r2.IterAvailable(ctx, func(c *TypedCheckout[widget]) (TypedAction[widget], error) {
		seen = append(seen, c.Meta.Cog)
		return TypedRemove[widget](), nil
	})
	if !errors.As(err, &de) || de.Checkout != nil {
		t.Fatalf("IterAvailable over bad metadata = %v", err)
	}
	if len(seen) != 1 || seen[0] != 43 {
		t.Errorf("IterAvailable saw %v", seen)
	}
	if names := mustList(t, s, "q2"); len(names) != 1 || names[0] != "b000000" {
		t.Errorf("q2 = %v, want the undecodable entry back", names)
	}

	// Another codec on the same raw API.
	tc := NewTyped[int](s, cogCodec{})
	n, err := tc.Enqueue(context.Background(), "q1", 7, nil, EnqueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := tc.WithEntry(context.Background(), "q1", n, func(c *TypedCheckout[int]) (TypedAction[int], error) {
		if c.Meta != 7 {
			t.Errorf("cog %d", c.Meta)
		}
		return TypedKeep[int]("q2"), nil
	}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(s.queuePath("q2", n)); string(b) != "cog 7" {
		t.Errorf("kept metadata %q", b)
	}
}

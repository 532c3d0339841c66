package fswatch

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// collector gathers a Watcher's events so that tests can wait for the ones
// they expect.
type collector struct {
	t   *testing.T
	w   *Watcher
	got []Event

	events, batches int
}

func newWatcher(t *testing.T, opts ...Option) *collector {
	t.Helper()
	w, err := New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return &collector{t: t, w: w}
}

func (c *collector) add(dir string) {
	c.t.Helper()
	if err := c.w.Add(dir); err != nil {
		c.t.Fatal(err)
	}
}

// waitFor reads batches until an event with want's Dir and Name has all of
// want's Op bits, and returns it; it fails after 10 s.
func (c *collector) waitFor(want Event) Event {
	c.t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		for i, e := range c.got {
			if e.Dir == want.Dir && e.Name == want.Name && e.Op&want.Op == want.Op {
				c.got = c.got[i+1:]
				return e
			}
		}
		select {
		case batch, ok := <-c.w.Events():
			if !ok {
				c.t.Fatalf("events closed while waiting for %+v; got %+v", want, c.got)
			}
			if len(batch) == 0 {
				c.t.Fatal("empty batch")
			}
			c.got = append(c.got, batch...)
			c.events += len(batch)
			c.batches++
		case err := <-c.w.Errors():
			c.t.Fatalf("error while waiting for %+v: %v", want, err)
		case <-timeout:
			c.t.Fatalf("no %v event for %s in %s; got %+v", want.Op, want.Name, want.Dir, c.got)
		}
	}
}

func mkdir(t *testing.T, path string) string {
	t.Helper()
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestEvents: each change to a name of a watched directory arrives as an
// event of that directory, in order, and changes in other directories do
// not.
func TestEvents(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	a, b, outside := mkdir(t, filepath.Join(root, "a")), mkdir(t, filepath.Join(root, "b")), mkdir(t, filepath.Join(root, "outside"))
	c := newWatcher(t)
	c.add(a)
	c.add(b + "/") // cleaned
	steps := []struct {
		name string
		do   func()
		want Event
	}{
		{"create", func() { write(t, filepath.Join(a, "f"), "") }, Event{a, "f", Create}},
		{"write", func() { write(t, filepath.Join(a, "f"), "x") }, Event{a, "f", Write}},
		{"chmod", func() { os.Chmod(filepath.Join(a, "f"), 0o600) }, Event{a, "f", Attrib}},
		{"rename between watched", func() { os.Rename(filepath.Join(a, "f"), filepath.Join(b, "g")) }, Event{b, "g", Create}},
		{"rename in", func() {
			write(t, filepath.Join(outside, "h"), "")
			os.Rename(filepath.Join(outside, "h"), filepath.Join(a, "h"))
		}, Event{a, "h", Create}},
		{"rename out", func() { os.Rename(filepath.Join(a, "h"), filepath.Join(outside, "h")) }, Event{a, "h", Rename}},
		{"remove", func() { os.Remove(filepath.Join(b, "g")) }, Event{b, "g", Remove}},
		{"subdirectory", func() { mkdir(t, filepath.Join(b, "sub")) }, Event{b, "sub", Create}},
	}
	for _, s := range steps {
		s.do()
		c.waitFor(s.want)
	}
	// Nothing arrived for the unwatched directory.
	write(t, filepath.Join(a, "last"), "")
	c.waitFor(Event{a, "last", Create})
	for _, e := range c.got {
		if e.Dir != a && e.Dir != b {
			t.Errorf("event of an unwatched directory: %+v", e)
		}
	}
}

// TestDirectoryGone: when a watched directory is removed or renamed, an
// event with an empty Name says so, its watch is gone, and a new directory
// at its path can be watched.
func TestDirectoryGone(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		gone func(dir string) error
		op   Op
	}{
		{"removed", os.Remove, Remove},
		{"renamed", func(dir string) error { return os.Rename(dir, dir+".old") }, Rename},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := mkdir(t, filepath.Join(t.TempDir(), "d"))
			c := newWatcher(t)
			c.add(dir)
			if err := tc.gone(dir); err != nil {
				t.Fatal(err)
			}
			c.waitFor(Event{dir, "", tc.op})
			if n := c.w.Len(); n != 0 {
				t.Errorf("Len() = %d after the directory went", n)
			}
			mkdir(t, dir)
			c.add(dir)
			write(t, filepath.Join(dir, "new"), "")
			c.waitFor(Event{dir, "new", Create})
		})
	}
}

// TestRemove: after Remove, a directory's changes no longer arrive;
// removing it again, or a directory never watched, is not an error.
func TestRemove(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	a, b := mkdir(t, filepath.Join(root, "a")), mkdir(t, filepath.Join(root, "b"))
	c := newWatcher(t)
	c.add(a)
	c.add(b)
	if n := c.w.Len(); n != 2 {
		t.Errorf("Len() = %d, want 2", n)
	}
	for _, d := range []string{a, a, root} {
		if err := c.w.Remove(d); err != nil {
			t.Fatalf("Remove(%s) = %v", d, err)
		}
	}
	write(t, filepath.Join(a, "unseen"), "")
	write(t, filepath.Join(b, "seen"), "")
	c.waitFor(Event{b, "seen", Create})
	for _, e := range c.got {
		if e.Dir == a {
			t.Errorf("event of a removed watch: %+v", e)
		}
	}
}

// TestErrors: Add fails with an *fs.PathError naming the directory, and
// after Close with ErrClosed; Close closes the channels and can be called
// twice.
func TestErrors(t *testing.T) {
	t.Parallel()
	w, err := New()
	if err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing")
	err = w.Add(missing)
	var pe *fs.PathError
	if !errors.As(err, &pe) || pe.Path != missing || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Add of a missing directory = %#v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if _, ok := <-w.Events(); ok {
		t.Error("Events not closed")
	}
	if _, ok := <-w.Errors(); ok {
		t.Error("Errors not closed")
	}
	if err := w.Add(t.TempDir()); !errors.Is(err, ErrClosed) {
		t.Errorf("Add after Close = %v", err)
	}
}

// TestOrder: creations that arrive while the consumer is busy all come,
// in order (in fewer batches than events, typically).
func TestOrder(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c := newWatcher(t)
	c.add(dir)
	var names []string
	for i := range 50 {
		n := fmt.Sprintf("f%02d", i)
		write(t, filepath.Join(dir, n), "")
		names = append(names, n)
	}
	for _, n := range names {
		c.waitFor(Event{dir, n, Create}) // fails if an earlier one came after
	}
	t.Logf("%d events in %d batches", c.events, c.batches)
}

// TestBatcher: the batch keeps events in order up to its bound, then
// becomes one Rescan of everything that swallows what follows until it is
// taken; an overflow does the same.
func TestBatcher(t *testing.T) {
	t.Parallel()
	e := func(n string) Event { return Event{"d", n, Create} }
	rescan := []Event{{Op: Rescan}}
	cases := []struct {
		name string
		run  func(b *batcher)
		want []Event
	}{
		{"in order", func(b *batcher) { b.add(e("1")); b.add(e("2")) }, []Event{e("1"), e("2")}},
		{"at the bound", func(b *batcher) { b.add(e("1")); b.add(e("2")); b.add(e("3")) }, []Event{e("1"), e("2"), e("3")}},
		{"over the bound", func(b *batcher) {
			for _, n := range []string{"1", "2", "3", "4", "5"} {
				b.add(e(n))
			}
		}, rescan},
		{"overflow", func(b *batcher) { b.add(e("1")); b.rescanAll(); b.add(e("2")) }, rescan},
		{"after take", func(b *batcher) { b.rescanAll(); b.take(); b.add(e("3")) }, []Event{e("3")}},
	}
	for _, c := range cases {
		b := batcher{max: 3}
		c.run(&b)
		if !slices.Equal(b.pending, c.want) {
			t.Errorf("%s: %+v, want %+v", c.name, b.pending, c.want)
		}
	}
}

func TestOpString(t *testing.T) {
	t.Parallel()
	for op, want := range map[Op]string{0: "0", Create: "Create", Remove | Rescan: "Remove|Rescan"} {
		if got := op.String(); got != want {
			t.Errorf("%d: %q, want %q", op, got, want)
		}
	}
}

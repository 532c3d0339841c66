//go:build linux

package index

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// startWatcher watches dirs and returns a channel of the batches (copied)
// and one of the errors; the watcher is closed when the test ends, and run
// must return then.
func startWatcher(t *testing.T, gather time.Duration, dirs ...string) (*inotifyFeed, <-chan []Event, <-chan error) {
	t.Helper()
	w, err := newInotifyFeed(FeedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		if err := w.Add(d); err != nil {
			t.Fatal(err)
		}
	}
	batches := make(chan []Event, 1000)
	errs := make(chan error, 10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(gather, func(b []Event) { batches <- slices.Clone(b) }, func(err error) { errs <- err })
	}()
	t.Cleanup(func() {
		w.Close()
		select {
		case <-done:
		case <-time.After(waitDeadline):
			t.Error("run did not return after close")
		}
	})
	return w, batches, errs
}

// collectUntil gathers events from batches until last has come.
func collectUntil(t *testing.T, batches <-chan []Event, last Event) []Event {
	t.Helper()
	var got []Event
	deadline := time.After(waitDeadline)
	for !slices.Contains(got, last) {
		select {
		case b := <-batches:
			got = append(got, b...)
		case <-deadline:
			t.Fatalf("no %v among %v", last, got)
		}
	}
	return got
}

// TestWatcherEvents checks the mapping of inotify events to paths and ops,
// in order, for every change the monitor cares about.
func TestWatcherEvents(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	_, batches, errs := startWatcher(t, time.Millisecond, dir, sub)
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	steps := []func() error{
		func() error { return os.WriteFile(a, nil, 0o644) },                       // create (no write: empty)
		func() error { return os.WriteFile(a, []byte("x"), 0o644) },               // write
		func() error { return os.Chmod(a, 0o600) },                                // chmod
		func() error { return os.Rename(a, b) },                                   // rename out, create in
		func() error { return os.Rename(b, filepath.Join(sub, "b")) },             // across watched directories
		func() error { return os.Remove(filepath.Join(sub, "b")) },                // remove
		func() error { return os.Remove(sub) },                                    // a watched directory goes
		func() error { return os.WriteFile(filepath.Join(dir, "c"), nil, 0o644) }, // still watching dir
	}
	for _, step := range steps {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	want := []Event{
		{a, OpCreate}, {a, OpWrite}, {a, OpChmod},
		{a, OpRename}, {b, OpCreate},
		{b, OpRename}, {filepath.Join(sub, "b"), OpCreate},
		{filepath.Join(sub, "b"), OpRemove},
		{sub, OpRemove}, // in dir for the name sub, and in sub for itself (then IN_IGNORED, not reported)
		{filepath.Join(dir, "c"), OpCreate},
	}
	// Repeats are merged: the second WriteFile may raise IN_MODIFY twice
	// (the truncation, the write), and the removal of sub raises OpRemove
	// for its path twice.
	got := slices.Compact(collectUntil(t, batches, want[len(want)-1]))
	if !slices.Equal(got, want) {
		t.Errorf("events:\n got %v\nwant %v", got, want)
	}
	// sub's watch went with it: reported, so that the monitor rescans.
	select {
	case err := <-errs:
		if !errors.Is(err, ErrWatchLost) {
			t.Errorf("error %v, want ErrWatchLost", err)
		}
	case <-time.After(waitDeadline):
		t.Error("the removal of a watched directory was not reported")
	}
	select {
	case err := <-errs:
		t.Errorf("another error %v", err)
	default:
	}
}

// TestWatcherBatches creates many files at once: they come in a few
// batches, not one wake-up each.
func TestWatcherBatches(t *testing.T) {
	dir := t.TempDir()
	_, batches, _ := startWatcher(t, 20*time.Millisecond, dir)
	const files = 500
	for i := range files {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprint(i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	n, events := 0, 0
	deadline := time.After(waitDeadline)
	for events < files {
		select {
		case b := <-batches:
			n++
			events += len(b)
		case <-deadline:
			t.Fatalf("%d of %d events", events, files)
		}
	}
	if n >= files/5 {
		t.Errorf("%d events came in %d batches, want a few", events, n)
	}
	t.Logf("%d events in %d batches", events, n)
}

// TestWatcherParse checks what run cannot be made to meet on demand: an
// overflow, and events of a watch descriptor it does not know.
func TestWatcherParse(t *testing.T) {
	w, err := newInotifyFeed(FeedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.dirs[1] = "/spool/q" // watch descriptors the kernel does not know: nothing to read
	var buf []byte
	add := func(wd int32, mask uint32, name string) {
		n := 0
		if name != "" {
			n = (len(name) + 1 + 3) &^ 3 // NUL-terminated, padded
		}
		ev := unix.InotifyEvent{Wd: wd, Mask: mask, Len: uint32(n)}
		buf = append(buf, unsafe.Slice((*byte)(unsafe.Pointer(&ev)), unix.SizeofInotifyEvent)...)
		buf = append(buf, make([]byte, n)...)
		copy(buf[len(buf)-n:], name)
	}
	parse := func() ([]Event, troubles) {
		aligned := make([]uint64, (len(buf)+7)/8)
		b := unsafe.Slice((*byte)(unsafe.Pointer(&aligned[0])), len(buf))
		copy(b, buf)
		buf = nil
		var tr troubles
		return w.parse(b, nil, &tr), tr
	}

	add(1, unix.IN_CREATE, "e1")
	add(-1, unix.IN_Q_OVERFLOW, "")
	add(7, unix.IN_CREATE, "unknown")
	add(1, unix.IN_MOVED_TO|unix.IN_ISDIR, "d")
	got, tr := parse()
	want := []Event{{"/spool/q/e1", OpCreate}, {"/spool/q/d", OpCreate}}
	if !slices.Equal(got, want) || tr != (troubles{overflow: true}) {
		t.Errorf("parse: %v %+v, want %v and an overflow", got, tr, want)
	}

	add(1, unix.IN_IGNORED, "")
	add(1, unix.IN_CREATE, "after-ignored")
	if got, tr := parse(); len(got) != 0 || tr != (troubles{lost: true}) || len(w.dirs) != 0 {
		t.Errorf("IN_IGNORED: %v %+v, watches %v; want nothing, a lost watch and no watch", got, tr, w.dirs)
	}

	w.dirs[2] = "/spool/r"
	add(2, unix.IN_MOVE_SELF, "")
	add(2, unix.IN_CREATE, "in-the-moved-dir")
	want = []Event{{"/spool/r", OpRename}}
	if got, tr := parse(); !slices.Equal(got, want) || tr != (troubles{lost: true}) || len(w.dirs) != 0 {
		t.Errorf("IN_MOVE_SELF: %v %+v, watches %v; want %v, a lost watch and no watch", got, tr, w.dirs, want)
	}
}

// TestWatcherOverflow fills the kernel's event queue before run reads it:
// run hands over every event the kernel kept, in batches of at most about
// maxBatch, and then reports the overflow (which the monitor answers with a
// full rescan), never losing it between two batches.
func TestWatcherOverflow(t *testing.T) {
	limit := 16384
	if b, err := os.ReadFile("/proc/sys/fs/inotify/max_queued_events"); err == nil {
		fmt.Sscan(string(b), &limit)
	}
	dir := t.TempDir()
	w, err := newInotifyFeed(FeedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Add(dir); err != nil {
		t.Fatal(err)
	}
	files := limit + 1000
	for i := range files {
		f, err := os.OpenFile(filepath.Join(dir, fmt.Sprint(i)), os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	events, batches := 0, 0
	var errs []error
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(time.Millisecond, func(b []Event) {
			batches++
			events += len(b)
			if len(b) > maxBatch+4096 {
				t.Errorf("a batch of %d events", len(b))
			}
		}, func(err error) {
			errs = append(errs, err)
			w.Close() // the overflow is the last thing the kernel queued
		})
	}()
	select {
	case <-done:
	case <-time.After(waitDeadline):
		w.Close()
		<-done
		t.Fatalf("no overflow reported after %d events in %d batches", events, batches)
	}
	if len(errs) != 1 || !errors.Is(errs[0], ErrOverflow) || events != limit {
		t.Errorf("%d events in %d batches, errors %v; want the %d the kernel queued, then an overflow", events, batches, errs, limit)
	}
}

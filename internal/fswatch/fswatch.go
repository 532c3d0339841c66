// Package fswatch watches a set of directories, portably, over
// github.com/fsnotify/fsnotify (inotify on Linux, kqueue on the BSDs and
// macOS), and delivers what happens to the names in them in batches. It is
// the portable change feed of the spool's readers and of the monitor; on
// Linux both prefer their own batched raw inotify, which can be read
// synchronously.
//
// Events are hints: a consumer that must be exact lists the directory
// again on Rescan, which says that events were lost.
//
// On kqueue systems fsnotify opens every file of a watched directory (one
// descriptor each, to mimic inotify's events): watching a directory of many
// entries costs as many descriptors, and Add fails (EMFILE) where there are
// not enough; callers then poll.
package fswatch

import (
	"errors"
	"io/fs"
	"path/filepath"
	"sync"

	"github.com/fsnotify/fsnotify"
)

// Op says what happened to a name.
type Op uint8

const (
	// Create: a name appeared, created or renamed into the directory.
	Create Op = 1 << iota
	// Remove: a name was removed.
	Remove
	// Rename: a name left by a rename (where to is not said).
	Rename
	// Attrib: metadata changed (mode, times, link count).
	Attrib
	// Write: contents were written.
	Write
	// Rescan: events were lost; list the directory again (every watched
	// directory when Event.Dir is "").
	Rescan
)

// String returns the names of the bits set, joined by "|".
func (o Op) String() string {
	names := []string{"Create", "Remove", "Rename", "Attrib", "Write", "Rescan"}
	s := ""
	for i, n := range names {
		if o&(1<<i) != 0 {
			if s != "" {
				s += "|"
			}
			s += n
		}
	}
	if s == "" {
		return "0"
	}
	return s
}

// Event is what happened to one name of a watched directory.
type Event struct {
	// Dir is the watched directory, as it was passed to Add (cleaned).
	Dir string
	// Name is the entry's name in Dir; "" means Dir itself: Remove or
	// Rename of Dir (its watch is then gone), or Rescan.
	Name string
	Op   Op
}

// DefaultMaxPending is the default bound of MaxPending.
const DefaultMaxPending = 1 << 16

// Option configures a Watcher.
type Option func(*config)

type config struct {
	maxPending int
}

// MaxPending bounds the events a Watcher keeps while its consumer is busy:
// beyond n, they collapse into one Rescan of every directory, so that a slow
// consumer costs a listing, not unbounded memory. n <= 0 means
// DefaultMaxPending.
func MaxPending(n int) Option {
	return func(c *config) { c.maxPending = n }
}

// Watcher watches directories. Its methods are safe for concurrent use.
type Watcher struct {
	fsw    *fsnotify.Watcher
	cfg    config
	events chan []Event
	errors chan error
	done   chan struct{} // closed by Close
	exited chan struct{} // closed when the loop has returned

	mu   sync.Mutex
	dirs map[string]bool // the watched directories
}

// New starts a Watcher of no directory.
func New(opts ...Option) (*Watcher, error) {
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.maxPending <= 0 {
		cfg.maxPending = DefaultMaxPending
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	w := &Watcher{
		fsw:    fsw,
		cfg:    cfg,
		events: make(chan []Event),
		errors: make(chan error),
		done:   make(chan struct{}),
		exited: make(chan struct{}),
		dirs:   map[string]bool{},
	}
	go w.loop()
	return w, nil
}

// ErrClosed is returned by Add on a closed Watcher.
var ErrClosed = errors.New("fswatch: watcher closed")

// Add watches the directory dir (not its subdirectories). Events name it as
// given, cleaned. A failure is an *fs.PathError.
func (w *Watcher) Add(dir string) error {
	dir = filepath.Clean(dir)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.dirs == nil {
		return &fs.PathError{Op: "watch", Path: dir, Err: ErrClosed}
	}
	if err := w.fsw.Add(dir); err != nil {
		// On kqueue a failure (EMFILE, say) may come after fsnotify
		// opened some of dir's files: release them.
		w.fsw.Remove(dir)
		return &fs.PathError{Op: "watch", Path: dir, Err: unwrapPathError(err)}
	}
	w.dirs[dir] = true
	return nil
}

// Remove stops watching dir. Removing a directory that is not watched (or
// whose watch went with it) is not an error.
func (w *Watcher) Remove(dir string) error {
	dir = filepath.Clean(dir)
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.dirs[dir] {
		return nil
	}
	delete(w.dirs, dir)
	if err := w.fsw.Remove(dir); err != nil && !errors.Is(err, fsnotify.ErrNonExistentWatch) {
		return &fs.PathError{Op: "unwatch", Path: dir, Err: unwrapPathError(err)}
	}
	return nil
}

// Len returns the number of directories watched: those added, less those
// removed and those that went away (an Event with an empty Name said so).
func (w *Watcher) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.dirs)
}

// unwrapPathError returns the cause inside a *fs.PathError, so that the
// error Add returns names the path once.
func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Events returns the channel of event batches, in the order the system
// reported them. It is closed when the Watcher is.
func (w *Watcher) Events() <-chan []Event { return w.events }

// Errors returns the channel of errors that did not stop the Watcher (a
// file it could not watch on kqueue systems, for instance). Unread errors
// beyond a few are dropped. It is closed when the Watcher is.
func (w *Watcher) Errors() <-chan error { return w.errors }

// Close stops watching and closes the channels. It returns once the
// Watcher's goroutines are gone. Closing twice is harmless.
func (w *Watcher) Close() error {
	w.mu.Lock()
	if w.dirs == nil {
		w.mu.Unlock()
		<-w.exited
		return nil
	}
	w.dirs = nil
	close(w.done)
	w.mu.Unlock()
	err := w.fsw.Close()
	<-w.exited
	return err
}

// maxPendingErrors bounds the errors kept for a consumer that does not read
// them.
const maxPendingErrors = 8

// loop moves fsnotify's events into batches, handing the consumer all that
// accumulated whenever it is ready.
func (w *Watcher) loop() {
	defer close(w.exited)
	defer close(w.events)
	defer close(w.errors)
	b := batcher{max: w.cfg.maxPending}
	var errs []error
	for {
		var out chan<- []Event
		if len(b.pending) > 0 {
			out = w.events
		}
		var errOut chan<- error
		var firstErr error
		if len(errs) > 0 {
			errOut, firstErr = w.errors, errs[0]
		}
		select {
		case <-w.done:
			return
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return
			}
			if e, ok := w.convert(ev); ok {
				b.add(e)
			}
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				b.rescanAll()
				continue
			}
			if len(errs) < maxPendingErrors {
				errs = append(errs, err)
			}
		case out <- b.pending:
			b.take()
		case errOut <- firstErr:
			errs = errs[1:]
		}
	}
}

// batcher accumulates events for a consumer, bounded: beyond max events the
// batch becomes one Rescan of everything, which covers whatever follows
// until the consumer takes it.
type batcher struct {
	max       int
	pending   []Event
	collapsed bool // pending is one Rescan of everything
}

func (b *batcher) add(e Event) {
	if b.collapsed {
		return
	}
	b.pending = append(b.pending, e)
	if len(b.pending) > b.max {
		b.rescanAll()
	}
}

// rescanAll replaces the batch by one Rescan of every directory: events
// were lost, so those kept say nothing that a rescan will not.
func (b *batcher) rescanAll() {
	b.pending, b.collapsed = []Event{{Op: Rescan}}, true
}

// take starts a new batch (the consumer owns the old one).
func (b *batcher) take() {
	b.pending, b.collapsed = nil, false
}

// convert turns an fsnotify event into an Event of a watched directory.
func (w *Watcher) convert(ev fsnotify.Event) (Event, bool) {
	var op Op
	if ev.Has(fsnotify.Create) {
		op |= Create
	}
	if ev.Has(fsnotify.Remove) {
		op |= Remove
	}
	if ev.Has(fsnotify.Rename) {
		op |= Rename
	}
	if ev.Has(fsnotify.Chmod) {
		op |= Attrib
	}
	if ev.Has(fsnotify.Write) {
		op |= Write
	}
	if op == 0 {
		return Event{}, false
	}
	name := filepath.Clean(ev.Name)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.dirs[name] {
		if op&(Remove|Rename) == 0 {
			return Event{}, false // the directory's own attributes
		}
		// The directory itself went: fsnotify has dropped its watch.
		delete(w.dirs, name)
		return Event{Dir: name, Op: op & (Remove | Rename)}, true
	}
	dir := filepath.Dir(name)
	if !w.dirs[dir] {
		return Event{}, false // a directory no longer watched
	}
	return Event{Dir: dir, Name: filepath.Base(name), Op: op}, true
}

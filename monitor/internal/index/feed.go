package index

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// Op is what happened to a path, as a change feed reports it; the events of
// a batch for one path are or-ed together.
type Op uint8

// Ops.
const (
	OpCreate Op = 1 << iota // created, or moved into a watched directory
	OpWrite                 // written
	OpRemove                // deleted (for a watched directory: itself)
	OpRename                // moved out of a watched directory (or the directory itself moved)
	OpChmod                 // attributes changed (mode, times, link count)
)

// Has reports whether o includes x.
func (o Op) Has(x Op) bool { return o&x != 0 }

// Event is one change: the path it concerns (a watched directory's, or a
// name's in one) and what happened.
type Event struct {
	Path string
	Op   Op
}

// Errors a Feed's Run reports without stopping: the index may have missed
// changes, and its user scans the spool again.
var (
	// ErrOverflow reports that events were lost (an inotify queue
	// overflow, or a feed that fell behind).
	ErrOverflow = errors.New("inotify event queue overflowed")
	// ErrWatchLost reports a watch the system removed (the directory was
	// deleted, or its file system unmounted) or one whose directory moved
	// away: the index never removes a watch itself.
	ErrWatchLost = errors.New("a watched directory went away")
)

// Feed is a change feed: it reports in batches what happens to the names
// of the directories it watches, which Apply turns into index changes.
type Feed interface {
	// Add watches dir (not its subdirectories), refusing a symlink where
	// the system can: a spool directory swapped for a symlink fails to be
	// watched rather than watching where the symlink points.
	Add(dir string) error
	// Run delivers batches until the feed is closed: it waits for an
	// event, lets the rest of the burst gather for about gather, and calls
	// onBatch with the events in order (never with none; the slice is
	// reused afterwards). It reports ErrOverflow and ErrWatchLost to
	// onError and goes on; any other error is reported and ends Run.
	Run(gather time.Duration, onBatch func([]Event), onError func(error))
	// Watches returns the number of directories watched.
	Watches() int
	// Close stops Run and releases the feed.
	Close() error
}

// maxBatch bounds a batch: under a flood of events Run hands them over in
// batches of about this many rather than reading until the queue is empty.
const maxBatch = 16384

// FeedKind names a Feed implementation.
type FeedKind string

// Feed kinds.
const (
	FeedDefault  FeedKind = ""         // the platform's fastest: FeedInotify on Linux, else FeedFsnotify
	FeedInotify  FeedKind = "inotify"  // batched raw inotify (Linux)
	FeedFsnotify FeedKind = "fsnotify" // github.com/fsnotify/fsnotify (kqueue on the BSDs and macOS)
)

// FeedEnv is the environment variable that chooses the feed when the
// configuration leaves it to the default: "fsnotify" forces the portable
// feed (on Linux too, where the test suite runs once with it).
const FeedEnv = "SPOOL_AGENT_WATCHER"

// ErrNoFeed reports a FeedKind this system does not have.
var ErrNoFeed = errors.New("no such change feed on this system")

// FeedOptions configure NewFeed.
type FeedOptions struct {
	// ReadFault, a test seam (nil in production), makes a successful read
	// of the feed's events fail with the error it returns.
	ReadFault func() error
}

// NewFeed starts a feed of the given kind (FeedDefault: FeedEnv's if it
// names one, else the platform's fastest) and returns it with its kind.
func NewFeed(kind FeedKind, opt FeedOptions) (Feed, FeedKind, error) {
	if kind == FeedDefault {
		switch k := FeedKind(os.Getenv(FeedEnv)); k {
		case FeedInotify, FeedFsnotify:
			kind = k
		}
	}
	if kind == FeedDefault {
		kind = defaultFeed
	}
	var f Feed
	var err error
	switch kind {
	case FeedInotify:
		f, err = startInotify(opt)
	case FeedFsnotify:
		f, err = newFsnotifyFeed(opt)
	default:
		err = fmt.Errorf("%w: %q", ErrNoFeed, kind)
	}
	return f, kind, err
}

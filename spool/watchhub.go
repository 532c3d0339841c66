package spool

import (
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// watchHub picks, once per spool, the watcher that the spool's readers
// share: the platform's fast one (batched raw inotify on Linux, see
// watchhub_linux.go), or the portable one over fsnotify, or none (readers
// poll). kind and maxAnnounced, and the inotify hub's sys* fields, are
// seams for tests, which set them after opening a spool and before its
// first reader: fields, not package variables, so tests run in parallel.
type watchHub struct {
	s *Spool

	// kind forces a watcher; zero means env, else the platform's choice.
	kind watcherKind
	// maxAnnounced bounds the names a Reader keeps between drains; beyond
	// it the Reader forgets them and lists the queue instead. Zero means
	// defaultMaxAnnounced.
	maxAnnounced int

	env watcherKind // SPOOL_AGENT_WATCHER when the spool was opened

	inotify inotifyHub  // the batched raw inotify watcher (a stub off Linux)
	fsn     fsnotifyHub // the portable watcher

	once   sync.Once
	chosen queueWatcher // nil: readers poll
}

// defaultMaxAnnounced is watchHub.maxAnnounced's default.
const defaultMaxAnnounced = 1 << 16

// watcherKind names a watcher implementation.
type watcherKind uint8

const (
	watchDefault  watcherKind = iota // the platform's fastest
	watchInotify                     // batched raw inotify (Linux only)
	watchFsnotify                    // github.com/fsnotify/fsnotify
	watchNone                        // no watcher: readers poll
)

// watcherEnv is the environment variable that selects the watcher of a
// spool's readers, read once per spool when it is opened:
// "fsnotify" forces the portable watcher (on Linux too, where the default is
// the faster raw inotify; the test suite runs once with it), "poll" makes
// readers poll, "inotify" or unset means the platform's default. Other
// values mean the default.
const watcherEnv = "SPOOL_AGENT_WATCHER"

func parseWatcherKind(v string) watcherKind {
	switch v {
	case "inotify":
		return watchInotify
	case "fsnotify":
		return watchFsnotify
	case "poll":
		return watchNone
	}
	return watchDefault
}

// init readies the hub of s when s is opened, reading SPOOL_AGENT_WATCHER
// once.
func (h *watchHub) init(s *Spool) {
	h.s = s
	h.env = parseWatcherKind(os.Getenv(watcherEnv))
}

// watcher returns the spool's watcher, choosing it on first use; nil means
// that readers poll.
func (h *watchHub) watcher() queueWatcher {
	h.once.Do(func() {
		kind := h.kind
		if kind == watchDefault {
			kind = h.env
		}
		h.inotify.s, h.fsn.s = h.s, h.s
		switch kind {
		case watchNone:
		case watchFsnotify:
			h.chosen = &h.fsn
		default:
			if w := h.inotify.available(); w != nil {
				h.chosen = w
			} else {
				h.chosen = &h.fsn
			}
		}
	})
	return h.chosen
}

// maxNames returns the bound on the names a Reader keeps between drains.
func (h *watchHub) maxNames() int {
	if h.maxAnnounced > 0 {
		return h.maxAnnounced
	}
	return defaultMaxAnnounced
}

// queueWatcher is what a Reader needs from the watcher it shares with the
// spool's other readers.
type queueWatcher interface {
	// subscribe registers r for wake-ups (Reader.notify) about r.dir. It
	// reports false when the directory cannot be watched: r then polls,
	// and the spool logs it once. A missing directory is an error.
	subscribe(r *Reader) (bool, error)
	// unsubscribe removes r; the watcher's resources go with the last one.
	unsubscribe(r *Reader)
	// catchUp hands r what the watcher knows now, before r lists. If r's
	// directory lost its watch (removed or renamed, and something may now
	// stand at its path), it watches what is there and reports true; a
	// missing directory is an error.
	catchUp(r *Reader) (rewatched bool, err error)
	// catchUpExact reports whether catchUp hands r every event of the
	// changes made before it (raw inotify reads the kernel's queue), so
	// that taken is exact after it; fsnotify forwards events from its own
	// goroutine, so a name that came back may still be marked taken until
	// its arrival is dispatched.
	catchUpExact() bool
	// countWaiter records that a reader starts (+1) or stops (-1) blocking
	// for a wake-up.
	countWaiter(delta int)
	// taken reports whether a reader of this process took name from dir
	// since it last arrived there; markTaken records that one did.
	taken(dir, name string) bool
	markTaken(dir, name string)
	// unmarkTaken forgets a mark of name in dir, as its arrival would.
	unmarkTaken(dir, name string)
}

// goneSets remembers, per queue directory, the names that readers of this
// process took, so that the other readers of the queue do not try them
// again one by one: readers learn names from events, and without it every
// reader would try every name. A name that arrives again is dropped from the
// set. A holder marks its name after its claim; a worker that takes no lock
// (async_smtp's start-up recovery) may put the entry back before that, so
// the claimer looks for it in the queue after marking (Reader.claim). Each set is bounded: a forgotten name costs one failed open.
// The watcher that owns it guards it with its own mutex; nil means that the
// watcher is stopped, and marks are then dropped.
type goneSets map[string]*goneSet

type goneSet struct {
	names map[string]struct{}
	ring  []string
	next  int
}

const goneCap = 8192

func (g goneSets) has(dir, name string) bool {
	s := g[dir]
	if s == nil {
		return false
	}
	_, ok := s.names[name]
	return ok
}

func (g goneSets) add(dir, name string) {
	if g == nil {
		return // the watcher stopped
	}
	s := g[dir]
	if s == nil {
		s = &goneSet{names: map[string]struct{}{}}
		g[dir] = s
	}
	if _, ok := s.names[name]; ok {
		return
	}
	if len(s.ring) < goneCap {
		s.ring = append(s.ring, name)
	} else {
		delete(s.names, s.ring[s.next])
		s.ring[s.next] = name
		s.next = (s.next + 1) % goneCap
	}
	s.names[name] = struct{}{}
}

// back records that name arrived in dir again.
func (g goneSets) back(dir, name string) {
	if s := g[dir]; s != nil {
		delete(s.names, name)
	}
}

// pathLeadsTo reports whether the path of queue in the spool root leads to
// the directory open as fd (used to watch by path where there is no /proc).
func (s *Spool) pathLeadsTo(queue string, fd int) bool {
	var a, b unix.Stat_t
	return s.fs.Lstat(s.root.fd, queue, &a) == nil && s.fs.Fstat(fd, &b) == nil && a.Ino == b.Ino && a.Dev == b.Dev
}

// isClosed reports whether ch is closed.
func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// warnPolling logs, once per spool, that readers poll instead of watching.
func (s *Spool) warnPolling(dir string, err error) {
	s.pollWarn.Do(func() {
		s.logger.Warn("spool readers cannot watch their queues; polling instead",
			"spool", s.dir, "dir", dir, "interval", s.pollInterval, "err", err)
	})
}

// queueGone is the error for a queue whose directory has disappeared.
func queueGone(queue, dir string, err error) error {
	return fmt.Errorf("%w %q: its directory %s is gone: %w", ErrUnknownQueue, queue, dir, err)
}

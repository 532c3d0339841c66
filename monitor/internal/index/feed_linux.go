//go:build linux

package index

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spool-agent/spool-agent/internal/inotifyev"
)

// defaultFeed is the platform's fastest feed.
const defaultFeed = FeedInotify

// Why not fsnotify by default: it reads inotify in a goroutine of its own that wakes
// for every burst the kernel reports and hands each event over a channel.
// A spool's entry goes through a dozen events spread over its fsyncs, so
// beside a producer of a few dozen entries a second the agent spent 2-10%
// of a core in the Go scheduler, waking up. The watcher below waits for the
// descriptor to become readable, sleeps gatherDelay while the burst queues
// up in the kernel, then reads everything at once: at most two wake-ups per
// batch, whatever the event rate (scripts/bench-churn.sh measures it). The
// spool package's readers read inotify the same way for the same reason.

// watchMask is what the monitor watches in every directory of a spool. A
// watch never follows a symlink (IN_DONT_FOLLOW) and needs a directory
// (IN_ONLYDIR): a spool directory swapped for a symlink fails to be
// watched rather than watching where the symlink points.
const watchMask = unix.IN_CREATE | unix.IN_MOVED_TO | unix.IN_MOVED_FROM | unix.IN_DELETE |
	unix.IN_MODIFY | unix.IN_ATTRIB | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ONLYDIR | unix.IN_DONT_FOLLOW

// inotifyFeed is one inotify instance whose events are read in batches.
type inotifyFeed struct {
	f      *os.File // the inotify descriptor, non-blocking, in the runtime's poller
	rc     syscall.RawConn
	closed atomic.Bool

	mu   sync.Mutex
	dirs map[int]string // watch descriptor -> watched directory

	// readFault, a test seam (nil in production), makes a successful read
	// fail with the error it returns.
	readFault func() error
}

func newInotifyFeed(opt FeedOptions) (*inotifyFeed, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("inotify_init1: %w", err)
	}
	f := os.NewFile(uintptr(fd), "inotify")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("inotify descriptor: %w", err)
	}
	return &inotifyFeed{f: f, rc: rc, dirs: map[int]string{}, readFault: opt.ReadFault}, nil
}

// add watches dir (not recursively).
func (w *inotifyFeed) Add(dir string) error {
	// Under mu, so that run does not parse the watch's first events (and
	// drop them) before it knows the watch's directory.
	w.mu.Lock()
	defer w.mu.Unlock()
	var wd int
	var err error
	if cerr := w.rc.Control(func(fd uintptr) {
		wd, err = unix.InotifyAddWatch(int(fd), dir, watchMask)
	}); cerr != nil {
		return fmt.Errorf("inotify_add_watch %s: %w", dir, cerr)
	}
	if err != nil {
		return fmt.Errorf("inotify_add_watch %s: %w", dir, err)
	}
	w.dirs[wd] = dir
	return nil
}

// Watches returns the number of directories watched.
func (w *inotifyFeed) Watches() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.dirs)
}

// Close stops Run (it returns) and releases the descriptor.
func (w *inotifyFeed) Close() error {
	w.closed.Store(true)
	return w.f.Close()
}

// run reads batches until the watcher is closed: it waits for an event,
// sleeps gather while more queue up, reads all that are queued (up to about
// maxBatch), and calls onBatch with them in order (never with none; the
// slice is reused afterwards). Then it reports ErrOverflow and
// ErrWatchLost to onError if either happened among those events; any
// other read error is reported and stops run.
func (w *inotifyFeed) Run(gather time.Duration, onBatch func([]Event), onError func(error)) {
	buf := make([]byte, 64*1024)
	var batch []Event
	for {
		// Wait, in the runtime's poller (no thread held), for an event.
		n, err := w.read(buf, true)
		var trouble troubles
		batch = batch[:0]
		slept := false
		for err == nil {
			batch = w.parse(buf[:n], batch, &trouble)
			if len(batch) >= maxBatch {
				break // the rest is read at once by the next wait
			}
			if !slept && gather > 0 {
				// Let the rest of the burst queue up in the kernel, then
				// take it in one go (once per batch: a steady stream of
				// events still gives a batch per gather).
				time.Sleep(gather)
				slept = true
			}
			n, err = w.read(buf, false)
		}
		if w.closed.Load() {
			return
		}
		if err != nil && err != unix.EAGAIN {
			onError(fmt.Errorf("reading inotify: %w", err))
			return
		}
		if len(batch) > 0 {
			onBatch(batch)
		}
		if trouble.overflow {
			onError(ErrOverflow)
		}
		if trouble.lost {
			onError(ErrWatchLost)
		}
	}
}

// troubles are what parse met besides events.
type troubles struct{ overflow, lost bool }

// read reads queued events into buf; with wait it waits for some, without
// it returns unix.EAGAIN when there are none.
func (w *inotifyFeed) read(buf []byte, wait bool) (int, error) {
	var n int
	var rerr error
	err := w.rc.Read(func(fd uintptr) bool {
		for {
			n, rerr = unix.Read(int(fd), buf)
			if rerr != unix.EINTR {
				break
			}
		}
		return !wait || rerr != unix.EAGAIN
	})
	if err != nil {
		return 0, err
	}
	if w.readFault != nil && rerr == nil {
		if ferr := w.readFault(); ferr != nil {
			return 0, ferr
		}
	}
	return n, rerr
}

// parse appends the events in b to batch, and records an overflow or a
// lost watch in t.
func (w *inotifyFeed) parse(b []byte, batch []Event, t *troubles) []Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	inotifyev.Each(b, func(ev inotifyev.Event) {
		if ev.Mask&unix.IN_Q_OVERFLOW != 0 {
			t.overflow = true
			return
		}
		wd := int(ev.Wd)
		dir, ok := w.dirs[wd]
		if ev.Mask&unix.IN_IGNORED != 0 {
			if ok {
				delete(w.dirs, wd)
				t.lost = true
			}
			return
		}
		if !ok {
			return
		}
		if ev.Mask&unix.IN_MOVE_SELF != 0 {
			// The directory moved: its watch would go on reporting under
			// the old path. Drop it (the kernel's IN_IGNORED follows); the
			// rescan watches what is there now.
			w.rc.Control(func(fd uintptr) { unix.InotifyRmWatch(int(fd), uint32(wd)) })
			delete(w.dirs, wd)
			t.lost = true
		}
		var o Op
		if ev.Mask&(unix.IN_CREATE|unix.IN_MOVED_TO) != 0 {
			o |= OpCreate
		}
		if ev.Mask&unix.IN_MODIFY != 0 {
			o |= OpWrite
		}
		if ev.Mask&(unix.IN_DELETE|unix.IN_DELETE_SELF) != 0 {
			o |= OpRemove
		}
		if ev.Mask&(unix.IN_MOVED_FROM|unix.IN_MOVE_SELF) != 0 {
			o |= OpRename
		}
		if ev.Mask&unix.IN_ATTRIB != 0 {
			o |= OpChmod
		}
		if o == 0 {
			return
		}
		path := dir
		if len(ev.Name) > 0 {
			path = dir + "/" + string(ev.Name)
		}
		batch = append(batch, Event{Path: path, Op: o})
	})
	return batch
}

func startInotify(opt FeedOptions) (Feed, error) {
	w, err := newInotifyFeed(opt)
	if err != nil {
		return nil, err
	}
	return w, nil
}

//go:build linux

package spool

import (
	"errors"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spool-agent/spool-agent/internal/inotifyev"
)

// inotifyHub shares one inotify instance among a spool's readers, with one
// watch per queue directory however many readers consume it: inotify
// instances are few (fs.inotify.max_user_instances is often 128 per user).
// The instance exists while some reader is subscribed.
//
// The hub reads inotify itself (with golang.org/x/sys/unix, as fsnotify's
// Linux backend does) rather than through fsnotify, because a reader must be
// able to drain the events synchronously before it lists: fsnotify delivers
// them from its own goroutine, so a reader that has just enqueued an entry
// cannot tell "no event" from "event not forwarded yet", and the hand-off
// through two goroutines cost a blocking enqueue-dequeue cycle a third of
// its throughput (see the benchmarks). A goroutine listening in the
// runtime's poller wakes readers that wait; a reader that catches up reads
// what the kernel holds at that moment. The descriptor is in the poller only
// while some reader waits: otherwise every event would wake an idle thread,
// which cost the same cycle a fifth of its throughput.
type inotifyHub struct {
	s *Spool

	// Seams for tests, set before the first reader; nil means the system
	// call. Where inotify is unavailable, sysInit or sysAddWatch fail.
	sysInit func() (int, error)
	// sysAddWatch watches the directory at path: /proc/self/fd/N of the
	// queue's open directory (a magic link, so the mask must follow it).
	sysAddWatch func(fd int, path string) (int, error)
	// sysDup duplicates the inotify descriptor for the runtime's poller.
	sysDup func(fd int) (int, error)

	mu        sync.Mutex
	fd        int      // the inotify descriptor, non-blocking; valid while stop is not nil
	listening *os.File // a duplicate of fd in the runtime's poller while a reader waits
	buf       []byte
	waiting   int                             // readers blocked in Dequeue
	arm       chan struct{}                   // tells the listener goroutine that a reader waits
	stop      chan struct{}                   // closed when the instance is stopped; nil when there is none
	stopped   chan struct{}                   // closed when the listener goroutine has closed the descriptors
	wds       map[int32]string                // watch descriptor -> directory
	dirs      map[string]int32                // directory -> watch descriptor
	subs      map[string]map[*Reader]struct{} // directory -> its readers
	gone      goneSets                        // names this process's readers saw leave; nil while stopped
	rootWd    int32                           // the watch of the spool root (0: none)
}

// available returns the hub as the spool's watcher: Linux has inotify.
func (h *inotifyHub) available() queueWatcher { return h }

// watchMask selects arrivals (a creation, or a rename into the directory)
// and the directory's own removal or rename. Departures, writes and touches
// create no work for a reader, so they are not watched.
const watchMask = unix.IN_CREATE | unix.IN_MOVED_TO | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ONLYDIR | unix.IN_DONT_FOLLOW

// rootMask selects directories leaving or arriving at the spool root.
const rootMask = unix.IN_DELETE | unix.IN_MOVED_FROM | unix.IN_MOVED_TO | unix.IN_ONLYDIR

func (h *inotifyHub) initInstance() (int, error) {
	if h.sysInit != nil {
		return h.sysInit()
	}
	return unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
}

func (h *inotifyHub) addWatchPath(path string) (int, error) {
	if h.sysAddWatch != nil {
		return h.sysAddWatch(h.fd, path)
	}
	return unix.InotifyAddWatch(h.fd, path, watchMask&^unix.IN_DONT_FOLLOW)
}

func (h *inotifyHub) dupForPoller(fd int) (int, error) {
	if h.sysDup != nil {
		return h.sysDup(fd)
	}
	return unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
}

func (h *inotifyHub) taken(dir, name string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.gone.has(dir, name)
}

func (h *inotifyHub) markTaken(dir, name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.gone.add(dir, name)
}

func (h *inotifyHub) unmarkTaken(dir, name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.gone.back(dir, name)
}

func (h *inotifyHub) subscribe(r *Reader) (bool, error) {
	h.mu.Lock()
	var stopped chan struct{}
	defer func() {
		h.mu.Unlock()
		if stopped != nil {
			<-stopped
		}
	}()
	if h.stop == nil {
		fd, err := h.initInstance()
		if err != nil {
			h.s.warnPolling(r.dir, err)
			return false, nil
		}
		h.fd, h.buf = fd, make([]byte, 64<<10)
		h.wds, h.dirs, h.subs = map[int32]string{}, map[string]int32{}, map[string]map[*Reader]struct{}{}
		// The spool root is watched for queue directories that leave or
		// arrive: the spool holds each queue directory open, so the kernel
		// reports a removed one's IN_DELETE_SELF only once it is closed.
		// Without this watch, readers learn it at their next listing.
		if wd, err := unix.InotifyAddWatch(fd, procPath(h.s.root.fd), rootMask); err == nil {
			h.rootWd = int32(wd)
		}
		h.gone = goneSets{}
		h.arm, h.stop, h.stopped = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
		go h.listenLoop(fd, h.arm, h.stop, h.stopped)
	}
	if _, ok := h.dirs[r.dir]; !ok {
		wd, err := h.addWatch(r)
		if err != nil {
			stopped = h.detachIfIdle()
			if isNotExist(err) {
				return false, queueGone(r.queue, r.dir, err)
			}
			h.s.warnPolling(r.dir, err)
			return false, nil
		}
		h.dirs[r.dir] = int32(wd)
		h.wds[int32(wd)] = r.dir
	}
	m := h.subs[r.dir]
	if m == nil {
		m = map[*Reader]struct{}{}
		h.subs[r.dir] = m
	}
	m[r] = struct{}{}
	return true, nil
}

// unsubscribe removes r, dropping the directory's watch with its last
// reader and the inotify instance with the spool's last reader (it returns
// once the instance's descriptors are closed).
func (h *inotifyHub) unsubscribe(r *Reader) {
	h.mu.Lock()
	var stopped chan struct{}
	defer func() {
		h.mu.Unlock()
		if stopped != nil {
			<-stopped
		}
	}()
	m := h.subs[r.dir]
	if _, ok := m[r]; !ok {
		return
	}
	delete(m, r)
	if len(m) == 0 {
		delete(h.subs, r.dir)
		if wd, ok := h.dirs[r.dir]; ok {
			unix.InotifyRmWatch(h.fd, uint32(wd)) // an error means the kernel dropped it already
			delete(h.dirs, r.dir)
			delete(h.wds, wd)
		}
	}
	stopped = h.detachIfIdle()
}

// detachIfIdle stops the inotify instance when no reader is subscribed. The
// listener goroutine owns the descriptor and closes it on its way out; the
// returned channel is closed when it has, and the caller waits for it after
// releasing h.mu (the goroutine may need h.mu to notice). Callers hold h.mu.
func (h *inotifyHub) detachIfIdle() chan struct{} {
	if len(h.subs) > 0 || h.stop == nil {
		return nil
	}
	close(h.stop)
	if h.listening != nil {
		h.listening.SetReadDeadline(time.Unix(1, 0)) // wake it
	}
	stopped := h.stopped
	h.wds, h.dirs, h.subs, h.gone, h.arm, h.stop, h.stopped = nil, nil, nil, nil, nil, nil, nil
	h.rootWd = 0
	h.fd = -1
	return stopped
}

// listenLoop listens on the inotify descriptor fd while some reader waits,
// and hands the events it reads to the readers, until the instance is
// stopped; then it closes fd, and only then: the hub reads fd until stop is
// closed. While no reader waits it does not listen, and fd is not in the
// runtime's poller at all: there every event would wake an idle thread even
// with no reader waiting, and readers that are busy catch up themselves. To
// listen, it puts a duplicate of fd in the poller for as long as some reader
// waits; when it cannot (no descriptor to spare), it reads fd every
// listenRetry instead while readers wait.
func (h *inotifyHub) listenLoop(fd int, arm, stop, stopped chan struct{}) {
	defer close(stopped)
	defer unix.Close(fd)
	for {
		select {
		case <-stop:
			return
		case <-arm:
		}
		if !h.listen(fd, stop) {
			// Read by hand, and try listening again, while readers wait.
			select {
			case <-stop:
				return
			case <-time.After(listenRetry):
			}
			h.mu.Lock()
			if h.stop == stop {
				h.readLocked()
			}
			waiting := h.waiting > 0
			h.mu.Unlock()
			if waiting {
				select {
				case arm <- struct{}{}:
				default:
				}
			}
		}
	}
}

// listenRetry is how often listenLoop reads inotify by hand while readers
// wait and it cannot listen.
const listenRetry = 10 * time.Millisecond

// listen puts a duplicate of fd in the runtime's poller and dispatches the
// events it reads until no reader waits or the instance is stopped. It
// reports false when it could not listen.
func (h *inotifyHub) listen(fd int, stop chan struct{}) bool {
	dup, err := h.dupForPoller(fd)
	if err != nil {
		return false
	}
	f := os.NewFile(uintptr(dup), "inotify")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return false
	}
	defer f.Close()
	h.mu.Lock()
	if h.stop != stop {
		h.mu.Unlock()
		return true
	}
	h.listening = f
	h.mu.Unlock()
	// Read calls the function first, so events that arrived before the
	// duplicate was in the poller are read at once.
	err = rc.Read(func(uintptr) bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.stop != stop {
			return true
		}
		h.readLocked()
		return h.waiting == 0 // nobody waits: stop listening
	})
	h.mu.Lock()
	if h.listening == f {
		h.listening = nil
	}
	h.mu.Unlock()
	return err == nil || isClosed(stop)
}

func (h *inotifyHub) countWaiter(delta int) {
	h.mu.Lock()
	h.waiting += delta
	arm := h.arm
	h.mu.Unlock()
	if delta > 0 && arm != nil {
		select {
		case arm <- struct{}{}:
		default:
		}
	}
}

// readPending reads and dispatches whatever events the kernel holds now.
func (h *inotifyHub) readPending() {
	h.mu.Lock()
	if h.stop != nil {
		h.readLocked()
	}
	h.mu.Unlock()
}

// catchUp reads what the kernel holds now, so that r's next listing comes
// after every event it reports.
func (h *inotifyHub) catchUp(r *Reader) (bool, error) {
	dir := r.dir
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stop == nil {
		return false, nil
	}
	h.readLocked()
	if _, ok := h.dirs[dir]; ok {
		return false, nil
	}
	// The directory we had open may have been replaced through this spool
	// (AddQueue) or by another process: look at what is there now.
	h.s.forgetQueue(r.queue)
	wd, err := h.addWatch(r)
	if err != nil {
		return false, err
	}
	h.dirs[dir] = int32(wd)
	h.wds[int32(wd)] = dir
	return true, nil
}

// catchUpExact is true: catchUp reads what the kernel holds.
func (h *inotifyHub) catchUpExact() bool { return true }

// addWatch adds a watch on r's queue directory: the one the spool has open
// (never whatever a swapped path leads to). A removed directory is ENOENT.
// Callers hold h.mu.
func (h *inotifyHub) addWatch(r *Reader) (int, error) {
	qd, err := h.s.qdirs(r.queue)
	if err != nil {
		if errors.Is(err, ErrUnknownQueue) {
			return -1, unix.ENOENT
		}
		return -1, err
	}
	if h.s.dirGone(qd.dir.fd) {
		return -1, unix.ENOENT
	}
	wd, err := h.addWatchPath(procPath(qd.dir.fd))
	if !isNotExist(err) {
		return wd, err
	}
	// No /proc: watch the path if it leads to the directory we hold.
	if !h.s.pathLeadsTo(r.queue, qd.dir.fd) {
		return -1, unix.ENOENT
	}
	return unix.InotifyAddWatch(h.fd, qd.dir.path, watchMask)
}

// readLocked reads the inotify descriptor until it is empty and hands each
// event to the readers it concerns. Callers hold h.mu.
func (h *inotifyHub) readLocked() {
	for {
		n, err := unix.Read(h.fd, h.buf)
		if err == unix.EINTR {
			continue
		}
		if n <= 0 || err != nil {
			return // EAGAIN: empty
		}
		h.dispatchLocked(h.buf[:n])
		if n < len(h.buf)-(unix.SizeofInotifyEvent+unix.NAME_MAX+1) {
			// The kernel returns every event that fits: there was room
			// for another, so there was none. Spare the read that would
			// say EAGAIN.
			return
		}
	}
}

// dispatchLocked hands the events in buf to the readers. An overflow (some
// events lost) makes every reader take its next snapshot whole; a change to
// a watched directory itself (removed, renamed, unmounted) wakes its
// readers, whose next listing reports it.
func (h *inotifyHub) dispatchLocked(buf []byte) {
	inotifyev.Each(buf, func(ev inotifyev.Event) {
		if ev.Mask&unix.IN_Q_OVERFLOW != 0 {
			h.overflowLocked()
			return
		}
		if ev.Wd == h.rootWd && h.rootWd != 0 {
			// A directory left or arrived at the top of the spool: if it
			// is a watched queue's, its readers look at what is there now.
			if ev.Mask&unix.IN_ISDIR == 0 || len(ev.Name) == 0 {
				return
			}
			dir := h.s.queueDir(string(ev.Name))
			wd, ok := h.dirs[dir]
			if !ok {
				return
			}
			unix.InotifyRmWatch(h.fd, uint32(wd))
			h.dropLocked(wd, dir)
			return
		}
		dir, ok := h.wds[ev.Wd]
		if !ok {
			return
		}
		if ev.Mask&(unix.IN_DELETE_SELF|unix.IN_MOVE_SELF|unix.IN_IGNORED|unix.IN_UNMOUNT) != 0 {
			if ev.Mask&unix.IN_IGNORED == 0 {
				unix.InotifyRmWatch(h.fd, uint32(ev.Wd))
			}
			h.dropLocked(ev.Wd, dir)
			return
		}
		if ev.Mask&(unix.IN_CREATE|unix.IN_MOVED_TO) == 0 || len(ev.Name) == 0 || string(ev.Name) == CheckoutDir {
			return
		}
		entry := string(ev.Name)
		h.gone.back(dir, entry)
		for r := range h.subs[dir] {
			r.notify(entry, false)
		}
	})
}

// overflowLocked makes every reader take its next snapshot whole: arrivals
// were lost, and what readers saw leave may be back. Callers hold h.mu.
func (h *inotifyHub) overflowLocked() {
	h.gone = goneSets{}
	for _, m := range h.subs {
		for r := range m {
			r.notify("", true)
		}
	}
}

// dropLocked forgets the watch wd of dir, which was removed, renamed or
// replaced, and wakes its readers: their next catch-up watches what is
// there now. Callers hold h.mu.
func (h *inotifyHub) dropLocked(wd int32, dir string) {
	delete(h.wds, wd)
	delete(h.dirs, dir)
	delete(h.gone, dir)
	for r := range h.subs[dir] {
		r.notify("", true)
	}
}

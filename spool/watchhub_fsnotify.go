package spool

import (
	"errors"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/spool-agent/spool-agent/internal/fswatch"
)

// fsnotifyHub is the portable watcher: one internal/fswatch watcher
// (fsnotify) shared by a spool's readers, with one watch per queue
// directory, and one on the spool root for queue directories that leave or
// arrive. It exists while some reader is subscribed. Off Linux it is the
// only watcher; on Linux it can be forced (SPOOL_AGENT_WATCHER=fsnotify) so
// that the portable path is tested.
//
// Unlike the raw inotify hub, it delivers events from its own goroutine:
// catchUp cannot hand a reader what the kernel holds this instant, so a
// reader may list before an arrival's event is forwarded. That costs speed,
// not entries: the event comes later and wakes the reader (see Reader).
type fsnotifyHub struct {
	s *Spool

	mu     sync.Mutex
	w      *fswatch.Watcher                // nil while no reader is subscribed
	exited chan struct{}                   // closed when the goroutine dispatching w's events returns
	dirs   map[string]string               // queue directory -> the path watched for it
	byPath map[string]string               // watched path -> queue directory
	subs   map[string]map[*Reader]struct{} // queue directory -> its readers
	gone   goneSets                        // nil while stopped
	root   string                          // the watched path of the spool root ("": none)
}

func (h *fsnotifyHub) subscribe(r *Reader) (bool, error) {
	h.mu.Lock()
	var stop func()
	defer func() {
		h.mu.Unlock()
		if stop != nil {
			stop()
		}
	}()
	if h.w == nil {
		w, err := fswatch.New()
		if err != nil {
			h.s.warnPolling(r.dir, err)
			return false, nil
		}
		h.w, h.exited = w, make(chan struct{})
		h.dirs, h.byPath, h.subs, h.gone = map[string]string{}, map[string]string{}, map[string]map[*Reader]struct{}{}, goneSets{}
		// As the raw inotify hub does: the spool holds its queue
		// directories open, so a removed one may report nothing itself.
		if root, err := h.addDirLocked(h.s.root.fd, h.s.dir, func() bool { return true }); err == nil {
			h.root = root
		}
		go h.dispatchLoop(w, h.exited)
	}
	if _, ok := h.dirs[r.dir]; !ok {
		if err := h.addWatchLocked(r); err != nil {
			stop = h.stopIfIdleLocked()
			if isNotExist(err) {
				return false, queueGone(r.queue, r.dir, err)
			}
			h.s.warnPolling(r.dir, err)
			return false, nil
		}
	}
	m := h.subs[r.dir]
	if m == nil {
		m = map[*Reader]struct{}{}
		h.subs[r.dir] = m
	}
	m[r] = struct{}{}
	return true, nil
}

// addWatchLocked watches r's queue directory: the one the spool has open
// (never whatever a swapped path leads to). A removed directory is ENOENT.
// Callers hold h.mu.
func (h *fsnotifyHub) addWatchLocked(r *Reader) error {
	qd, err := h.s.qdirs(r.queue)
	if err != nil {
		if errors.Is(err, ErrUnknownQueue) {
			return unix.ENOENT
		}
		return err
	}
	if h.s.dirGone(qd.dir.fd) {
		return unix.ENOENT
	}
	path, err := h.addDirLocked(qd.dir.fd, qd.dir.path, func() bool { return h.s.pathLeadsTo(r.queue, qd.dir.fd) })
	if err != nil {
		return err
	}
	h.dirs[r.dir], h.byPath[path] = path, r.dir
	return nil
}

// addDirLocked watches the directory open as fd at path, and returns the
// path it watches: on Linux /proc/self/fd/N, which is that very directory
// whatever stands at its path now; elsewhere (or without /proc) path, if
// leadsThere says it leads to fd. (A swap between the check and the watch
// costs wake-ups, not entries: readers list through fd.) Callers hold h.mu.
func (h *fsnotifyHub) addDirLocked(fd int, path string, leadsThere func() bool) (string, error) {
	if runtime.GOOS == "linux" {
		p := procPath(fd)
		err := h.w.Add(p)
		if err == nil || !isNotExist(err) {
			return p, err
		}
	}
	if !leadsThere() {
		return "", unix.ENOENT
	}
	return path, h.w.Add(path)
}

func (h *fsnotifyHub) unsubscribe(r *Reader) {
	h.mu.Lock()
	var stop func()
	defer func() {
		h.mu.Unlock()
		if stop != nil {
			stop()
		}
	}()
	m := h.subs[r.dir]
	if _, ok := m[r]; !ok {
		return
	}
	delete(m, r)
	if len(m) == 0 {
		delete(h.subs, r.dir)
		h.unwatchLocked(r.dir)
	}
	stop = h.stopIfIdleLocked()
}

// unwatchLocked drops dir's watch. Callers hold h.mu.
func (h *fsnotifyHub) unwatchLocked(dir string) {
	if path, ok := h.dirs[dir]; ok {
		h.w.Remove(path) // an error means the watch went with the directory
		delete(h.dirs, dir)
		delete(h.byPath, path)
	}
	delete(h.gone, dir)
}

// stopIfIdleLocked stops the watcher when no reader is subscribed, and
// returns what the caller must run after releasing h.mu: closing the
// watcher waits for the dispatching goroutine, which may need h.mu.
func (h *fsnotifyHub) stopIfIdleLocked() func() {
	if len(h.subs) > 0 || h.w == nil {
		return nil
	}
	w, exited := h.w, h.exited
	h.w, h.exited, h.dirs, h.byPath, h.subs, h.gone, h.root = nil, nil, nil, nil, nil, nil, ""
	return func() {
		w.Close()
		<-exited
	}
}

// catchUp cannot fetch events that the watcher has not forwarded yet (see
// fsnotifyHub); it watches r's directory again when its watch went.
func (h *fsnotifyHub) catchUp(r *Reader) (bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.w == nil {
		return false, nil
	}
	if _, ok := h.dirs[r.dir]; ok {
		return false, nil
	}
	h.s.forgetQueue(r.queue)
	if err := h.addWatchLocked(r); err != nil {
		return false, err
	}
	return true, nil
}

// catchUpExact is false: events come from the watcher's goroutine.
func (h *fsnotifyHub) catchUpExact() bool { return false }

// countWaiter does nothing: the dispatching goroutine always listens.
func (h *fsnotifyHub) countWaiter(int) {}

func (h *fsnotifyHub) taken(dir, name string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.gone.has(dir, name)
}

func (h *fsnotifyHub) markTaken(dir, name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.gone.add(dir, name)
}

func (h *fsnotifyHub) unmarkTaken(dir, name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.gone.back(dir, name)
}

// dispatchLoop hands w's events to the readers until w is closed.
func (h *fsnotifyHub) dispatchLoop(w *fswatch.Watcher, exited chan struct{}) {
	defer close(exited)
	errs := w.Errors()
	for {
		select {
		case batch, ok := <-w.Events():
			if !ok {
				return
			}
			h.dispatch(w, batch)
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			// A file of a queue that kqueue could not watch: arrivals
			// are still seen (the directory is watched).
			h.s.logger.Debug("spool watcher", "spool", h.s.dir, "err", err)
		}
	}
}

// dispatch hands a batch of w's events to the readers they concern: an
// arrival to the readers of its directory; a lost event to every reader,
// which takes its next snapshot whole; a queue directory that left (itself,
// or seen from the root) to its readers, whose next catch-up watches what
// is there now.
func (h *fsnotifyHub) dispatch(w *fswatch.Watcher, batch []fswatch.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.w != w {
		return // stopped
	}
	for _, ev := range batch {
		switch {
		case ev.Op&fswatch.Rescan != 0 && ev.Dir == "":
			h.gone = goneSets{}
			for _, m := range h.subs {
				for r := range m {
					r.notify("", true)
				}
			}
		case ev.Dir == h.root && h.root != "":
			if ev.Name != "" && ev.Op&(fswatch.Create|fswatch.Remove|fswatch.Rename) != 0 {
				h.dirChangedLocked(h.s.queueDir(ev.Name))
			}
		default:
			dir, ok := h.byPath[ev.Dir]
			if !ok {
				continue
			}
			switch {
			case ev.Name == "" || ev.Op&fswatch.Rescan != 0:
				h.dirChangedLocked(dir)
			case ev.Op&fswatch.Create != 0 && ev.Name != CheckoutDir:
				h.gone.back(dir, ev.Name)
				for r := range h.subs[dir] {
					r.notify(ev.Name, false)
				}
			}
		}
	}
}

// dirChangedLocked drops dir's watch, if it has one, and wakes its
// readers: their next catch-up watches what is at its place now. Callers
// hold h.mu.
func (h *fsnotifyHub) dirChangedLocked(dir string) {
	if _, ok := h.dirs[dir]; !ok {
		return
	}
	h.unwatchLocked(dir)
	for r := range h.subs[dir] {
		r.notify("", true)
	}
}

package monitor

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/spool-agent/spool-agent/spool"
	"golang.org/x/sys/unix"
)

// unwatchableFS lists file systems whose changes made by other hosts (or by
// the server) raise no inotify event: watching them would miss changes, so
// the monitor scans them in full every cycle.
var unwatchableFS = map[int64]string{
	unix.NFS_SUPER_MAGIC:   "nfs",
	unix.SMB_SUPER_MAGIC:   "smb",
	unix.SMB2_SUPER_MAGIC:  "smb2",
	unix.CIFS_SUPER_MAGIC:  "cifs",
	unix.FUSE_SUPER_MAGIC:  "fuse",
	unix.V9FS_MAGIC:        "9p",
	unix.CEPH_SUPER_MAGIC:  "ceph",
	unix.AFS_SUPER_MAGIC:   "afs",
	unix.AFS_FS_MAGIC:      "afs",
	unix.CODA_SUPER_MAGIC:  "coda",
	unix.NCP_SUPER_MAGIC:   "ncp",
	unix.XENFS_SUPER_MAGIC: "xenfs",
}

// watchable reports whether inotify can be trusted on dir, and why not.
func watchable(dir string) (bool, string) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return true, "" // the scan reports the error
	}
	if name, ok := unwatchableFS[int64(st.Type)]; ok {
		return false, "file system " + name + " raises no inotify events for remote changes"
	}
	return true, ""
}

// fullScan rebuilds the index from the disk, (re)adding the inotify watches
// before each directory is listed, and replays the events that arrived
// during the scan. Callers hold cycleMu.
func (m *Monitor) fullScan(ctx context.Context, now time.Time) error {
	useWatch, why := !m.cfg.DisableWatch, "disabled by configuration"
	if useWatch {
		useWatch, why = watchable(m.dir)
	}
	if useWatch && m.overLimit {
		// The last scan found more than the bounds let the index track:
		// events cannot keep it current, so poll until a scan finds the
		// spool within them again.
		useWatch, why = false, "over the monitor's bounds"
	}
	m.mu.Lock()
	m.scanning = true
	m.scanDirty = map[string]fsOp{}
	m.scanDirtyLost = false
	m.needFull = false
	reason := m.fullReason
	m.fullReason = ""
	wasWatching := m.watching
	m.mu.Unlock()

	var watchErrs []error
	sc := scanner{dir: m.dir, ctx: ctx, openFault: m.openFault(),
		maxUnreg: m.cfg.MaxUnregistered, maxDirs: m.cfg.MaxQueues, maxWatches: m.cfg.MaxWatches}
	if useWatch {
		sc.beforeList = func(path string) {
			if err := m.addWatch(path); err != nil {
				watchErrs = append(watchErrs, err)
			}
		}
	}
	if reason != "" {
		m.log.Info("full rescan of spool", "reason", reason)
	}
	ix, err := sc.scan()

	m.mu.Lock()
	m.scanning = false
	dirty := m.scanDirty
	m.scanDirty = nil
	m.fullScans++
	m.lastFull = now
	var closeW *watcher
	wasOver := m.overLimit
	m.overLimit = ix != nil && ix.limited()
	if ix == nil || len(watchErrs) > 0 || !useWatch || m.overLimit {
		closeW, m.w = m.w, nil
		m.watching = false
	} else {
		m.watching = true
	}
	if ix != nil {
		// Events seen during the scan may postdate what the scan read.
		if m.watching {
			for p, op := range dirty {
				m.applyPath(ix, p, op, false)
			}
		}
		if m.idx != nil {
			ix.gen = m.idx.gen + 1
		}
	}
	m.idx = ix
	if ix == nil || err != nil || !m.watching {
		m.needFull = true
	}
	if m.scanDirtyLost && m.watching {
		// More paths changed during the scan than it keeps: lost, as in
		// an overflow.
		m.requestFullLocked("more changes during the full scan than it replays")
	}
	m.publishLocked(now)
	watching := m.watching
	m.mu.Unlock()
	if closeW != nil {
		closeW.close()
	}

	switch {
	case ix == nil:
	case m.overLimit && !wasOver:
		m.log.Warn("spool holds more than the monitor's bounds: tracking what fits and scanning it in full every cycle instead of watching it",
			"max_unregistered", m.cfg.MaxUnregistered, "max_queues", m.cfg.MaxQueues, "max_watches", m.cfg.MaxWatches)
	case !m.overLimit && wasOver:
		m.log.Info("spool within the monitor's bounds again")
	case watching && !wasWatching:
		m.log.Debug("watching spool with inotify")
	case !watching && len(watchErrs) > 0:
		m.log.Warn("cannot watch spool, scanning it in full every cycle", "err", errors.Join(watchErrs...))
	case !watching && !m.pollLogged:
		m.pollLogged = true
		m.log.Info("not watching spool, scanning it in full every cycle", "reason", why)
	}
	return err
}

// addWatch adds an inotify watch on path, starting the watcher if needed.
func (m *Monitor) addWatch(path string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if m.w == nil {
		w, err := newWatcher()
		if err != nil {
			return fmt.Errorf("start inotify: %w", err)
		}
		w.readFault = &m.readFault
		m.w = w
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			w.run(gatherDelay, func(batch []fsEvent) { m.apply(w, batch) }, func(err error) {
				if errors.Is(err, errOverflow) || errors.Is(err, errWatchLost) {
					m.requestFull(w, err.Error())
				} else {
					m.watcherFailed(w, err)
				}
			})
		}()
	}
	err := error(nil)
	if f := m.addWatchFault.Load(); f != nil {
		err = (*f)(path)
	}
	if err == nil {
		err = m.w.add(path)
	}
	if err != nil {
		return fmt.Errorf("watch %s: %w", path, err)
	}
	return nil
}

// maxScanDirty bounds the paths with events kept during a full scan for
// replay afterwards: past it (a flood of files while a scan runs) the
// events are lost, as in an overflow, and another full scan follows, so
// that a flood cannot grow the monitor's memory.
const maxScanDirty = 1 << 16

// gatherDelay is how long the watcher lets a burst of events queue up
// after its first event before reading them: waking up for every event of
// a burst costs more than the events (see inotify.go).
const gatherDelay = 20 * time.Millisecond

// apply applies a batch of events to the index and schedules a publication.
func (m *Monitor) apply(w *watcher, batch []fsEvent) {
	var rootFiles []string
	if m.dropping.Load() {
		// Lost, as in an overflow; only the test markers are reported.
		for _, ev := range batch {
			if dir, name := filepath.Split(ev.path); filepath.Clean(dir) == m.dir && ev.op.has(opCreate) {
				rootFiles = append(rootFiles, name)
			}
		}
		if hook := m.onRootFile; hook != nil {
			for _, name := range rootFiles {
				hook(name)
			}
		}
		return
	}
	m.mu.Lock()
	if m.w != w || m.closed {
		m.mu.Unlock()
		return
	}
	// One look per path and batch: the state of a file after its last
	// event is what counts, and events are hints, not counts.
	ops := make(map[string]fsOp, len(batch))
	order := make([]string, 0, len(batch))
	for _, ev := range batch {
		if _, seen := ops[ev.path]; !seen {
			order = append(order, ev.path)
		}
		ops[ev.path] |= ev.op
	}
	for _, path := range order {
		op := ops[path]
		if m.scanning {
			if _, ok := m.scanDirty[path]; ok || len(m.scanDirty) < maxScanDirty {
				m.scanDirty[path] |= op
			} else {
				m.scanDirtyLost = true
			}
		}
		if m.idx == nil {
			// The next cycle scans in full; only report root files.
			if dir, name := filepath.Split(path); filepath.Clean(dir) == m.dir && op.has(opCreate) {
				rootFiles = append(rootFiles, name)
			}
			continue
		}
		if name, ok := m.applyPath(m.idx, path, op, true); ok {
			rootFiles = append(rootFiles, name)
		}
	}
	if m.idx != nil && m.idx.dropped > 0 {
		m.requestFullLocked("more unregistered files than the monitor tracks")
	}
	m.schedulePublishLocked()
	hook := m.onRootFile
	m.mu.Unlock()
	if hook != nil {
		for _, name := range rootFiles {
			hook(name)
		}
	}
}

// applyPath brings the index up to date with path after an event. It
// reports the name of a regular file at the spool root (which the checks
// ignore; tests use one as a marker). Callers hold m.mu.
// countArrival says whether a new file in a queue counts as an arrival.
func (m *Monitor) applyPath(ix *index, path string, op fsOp, countArrival bool) (rootFile string, isRootFile bool) {
	if path == m.dir {
		if op.has(opRemove) || op.has(opRename) {
			m.requestFullLocked("spool directory removed or moved")
		}
		return "", false
	}
	slash := strings.LastIndexByte(path, '/')
	if slash < 0 {
		return "", false
	}
	dir, name := path[:slash], path[slash+1:]
	if name == spool.CheckoutDir {
		if op.has(opCreate) || op.has(opRemove) || op.has(opRename) {
			// A checkout directory appeared or went: a queue came or went.
			m.requestFullLocked("checkout directory " + path + " created or removed")
		}
		return "", false
	}
	switch dir {
	case m.dir:
		return m.applyRoot(ix, path, name, op)
	case m.dir + "/" + spool.RegistryDir:
		ix.setReg(name, m.stat(ix, path, op, false, false))
	case m.dir + "/" + spool.DataDir:
		ix.setData(name, m.stat(ix, path, op, true, false))
	case m.dir + "/" + spool.TmpDir:
		ix.setTmp(name, m.stat(ix, path, op, false, false))
	default:
		l := ix.byPath[dir]
		if l == nil {
			return "", false // a directory at the root that is not a queue
		}
		st := m.stat(ix, path, op, false, true)
		if countArrival && !l.checkout && op.has(opCreate) {
			// A file created in or moved into the queue: an arrival, even
			// if a worker took it before this batch was applied.
			m.arrivals[l.queue]++
		}
		ix.setLoc(l, name, st)
	}
	return "", false
}

// applyRoot handles an event for a name at the spool root: a change of
// directory or symlink there changes the spool's layout (a queue added or
// removed, an unexpected directory), which a full rescan picks up.
func (m *Monitor) applyRoot(ix *index, path, name string, op fsOp) (string, bool) {
	if op == opChmod || op == opWrite {
		return "", false
	}
	var st unix.Stat_t
	err := unix.Lstat(path, &st)
	known := false
	switch name {
	case spool.RegistryDir, spool.TmpDir, spool.DataDir:
		known = true
	}
	for _, q := range ix.queues {
		known = known || q == name
	}
	for _, u := range ix.rootUnexpected {
		known = known || u == name
	}
	switch {
	case err == nil && st.Mode&unix.S_IFMT == unix.S_IFREG && !known:
		return name, true
	case err != nil && err != unix.ENOENT:
		m.requestFullLocked("cannot stat " + path + ": " + err.Error())
	case err == unix.ENOENT && !known:
		// A file at the root went: nothing to do.
	case err == nil && (st.Mode&unix.S_IFMT == unix.S_IFDIR || st.Mode&unix.S_IFMT == unix.S_IFLNK) || known:
		m.requestFullLocked("spool root changed: " + path)
	}
	return "", false
}

// stat returns the state of the file at path after events op, recording a
// failed stat (other than ENOENT) as an error for the next cycle. After
// only removals and renames away the file is gone without asking: had it
// come back, a Create would follow (inotify keeps one instance's events in
// order).
// In a queue or checkout directory (loc), a file with more than one link
// is unexpected.
func (m *Monitor) stat(ix *index, path string, op fsOp, size, loc bool) fileState {
	if !op.has(opCreate) && !op.has(opWrite) && !op.has(opChmod) {
		delete(ix.statErrs, path)
		return fileState{}
	}
	var st unix.Stat_t
	err := unix.Lstat(path, &st)
	if err == nil {
		delete(ix.statErrs, path)
		if !isReg(st.Mode) || loc && badLinks(&st) {
			return badFile
		}
		fs := fileState{present: true, ns: stNs(&st)}
		if size {
			fs.size = st.Size
		}
		return fs
	}
	if err == unix.ENOENT {
		delete(ix.statErrs, path)
		return fileState{}
	}
	ix.statErrs[path] = pathErr("stat", path, err)
	return fileState{present: true, noStat: true}
}

// watcherFailed drops w, whose reads failed (it reads no more), and asks
// for a full rescan, which starts a new watcher.
func (m *Monitor) watcherFailed(w *watcher, err error) {
	m.mu.Lock()
	if m.w != w || m.closed {
		m.mu.Unlock()
		return
	}
	m.w = nil
	m.watching = false
	m.requestFullLocked("inotify error: " + err.Error())
	m.mu.Unlock()
	w.close()
}

// requestFull asks for a full rescan at once (in the background), after an
// inotify overflow or a lost watch.
func (m *Monitor) requestFull(w *watcher, reason string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.w != w || m.closed {
		return
	}
	m.requestFullLocked(reason)
}

func (m *Monitor) requestFullLocked(reason string) {
	m.needFull = true
	if m.fullReason == "" {
		m.fullReason = reason
	}
	if m.rescanQueued || m.closed {
		return
	}
	m.rescanQueued = true
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.cycleMu.Lock()
		defer m.cycleMu.Unlock()
		m.mu.Lock()
		m.rescanQueued = false
		need := m.needFull && !m.closed
		m.mu.Unlock()
		if need {
			if err := m.fullScan(context.Background(), m.cfg.Now()); err != nil {
				m.log.Warn("full rescan of spool failed", "err", err)
			}
		}
	}()
}

// schedulePublishLocked publishes the index's statistics: at once if the
// last event-driven publication is publishDelay old, otherwise when it
// will be, so that a burst of events gives one snapshot per publishDelay.
// Callers hold m.mu.
func (m *Monitor) schedulePublishLocked() {
	if m.pubPending || m.closed {
		return
	}
	wait := publishDelay - time.Since(m.lastPub)
	if wait <= 0 {
		m.lastPub = time.Now()
		m.publishLocked(m.cfg.Now())
		return
	}
	m.pubPending = true
	m.pubTimer = time.AfterFunc(wait, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		m.pubPending = false
		if !m.closed {
			m.lastPub = time.Now()
			m.publishLocked(m.cfg.Now())
		}
	})
}

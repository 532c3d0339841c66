package monitor

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/spool-agent/spool-agent/monitor/internal/index"
)

// fullScan rebuilds the index from the disk, (re)adding the inotify watches
// before each directory is listed, and replays the events that arrived
// during the scan. Callers hold cycleMu.
func (m *Monitor) fullScan(ctx context.Context, now time.Time) error {
	useWatch, why := !m.cfg.DisableWatch, "disabled by configuration"
	if useWatch {
		useWatch, why = index.Watchable(m.dir)
	}
	if useWatch && m.overLimit {
		// The last scan found more than the bounds let the index track:
		// events cannot keep it current, so poll until a scan finds the
		// spool within them again.
		useWatch, why = false, "over the monitor's bounds"
	}
	m.mu.Lock()
	m.scanning = true
	m.scanDirty = map[string]index.Op{}
	m.scanDirtyLost = false
	m.needFull = false
	reason := m.fullReason
	m.fullReason = ""
	wasWatching := m.watching
	sizesBehind := m.idx != nil && m.idx.SizesPending()
	m.mu.Unlock()

	var watchErrs []error
	opt := index.ScanOptions{OpenFault: m.openFault(),
		MaxUnregistered: m.cfg.MaxUnregistered, MaxDirs: m.cfg.MaxQueues, MaxWatches: m.cfg.MaxWatches,
		// The payloads' sizes feed only DataBytes, not the checks: they
		// are read after the cycle has published (fillSizes), which halves
		// the scan's stats. If the last scan's sizes were never completed
		// (scans in a row faster than their fills), this one reads them.
		SizesLater: !sizesBehind}
	if useWatch {
		opt.BeforeList = func(path string) {
			if err := m.addWatch(path); err != nil {
				watchErrs = append(watchErrs, err)
			}
		}
	}
	if reason != "" {
		m.log.Info("full rescan of spool", "reason", reason)
	}
	ix, err := index.Scan(ctx, m.dir, opt)

	m.mu.Lock()
	m.scanning = false
	dirty := m.scanDirty
	m.scanDirty = nil
	m.fullScans++
	m.lastFull = now
	var closeW index.Feed
	wasOver := m.overLimit
	m.overLimit = ix != nil && ix.Over().Any()
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
		ix.Succeed(m.idx)
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
	if ix != nil && ix.SizesPending() {
		m.fillSizesLocked(ix)
	}
	m.mu.Unlock()
	if closeW != nil {
		closeW.Close()
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

// fillSizesLocked reads, in the background, the data sizes that the full
// scan which built ix left unknown, and publishes when done; it stops when
// ix is replaced or the monitor closed. Callers hold m.mu.
func (m *Monitor) fillSizesLocked(ix *index.Index) {
	if m.closed {
		return
	}
	done := make(chan struct{})
	m.sizesFilled = done
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer close(done)
		current := func() bool { return m.idx == ix && !m.closed }
		err := ix.FillSizes(context.Background(), &m.mu, current)
		m.mu.Lock()
		defer m.mu.Unlock()
		if !current() {
			return
		}
		if err != nil {
			m.log.Warn("reading payload sizes failed; spool_data_bytes waits for the next full scan", "err", err)
		}
		m.publishLocked(m.cfg.Now())
	}()
}

// addWatch adds a watch on path, starting the change feed if needed.
func (m *Monitor) addWatch(path string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if m.w == nil {
		w, kind, err := index.NewFeed(index.FeedKind(m.cfg.Watcher), index.FeedOptions{ReadFault: m.readFaultNow})
		if err != nil {
			return fmt.Errorf("start %s change feed: %w", kind, err)
		}
		m.w = w
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			w.Run(gatherDelay, func(batch []index.Event) { m.apply(w, batch) }, func(err error) {
				if errors.Is(err, index.ErrOverflow) || errors.Is(err, index.ErrWatchLost) {
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
		err = m.w.Add(path)
	}
	if err != nil {
		return fmt.Errorf("watch %s: %w", path, err)
	}
	return nil
}

// readFaultNow is the feed's read fault seam: the test hook set now.
func (m *Monitor) readFaultNow() error {
	if f := m.readFault.Load(); f != nil {
		return (*f)()
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
// a burst costs more than the events (see the index's feed_linux.go).
const gatherDelay = 20 * time.Millisecond

// apply applies a batch of events to the index and schedules a publication.
func (m *Monitor) apply(w index.Feed, batch []index.Event) {
	var rootFiles []string
	if m.dropping.Load() {
		// Lost, as in an overflow; only the test markers are reported.
		for _, ev := range batch {
			if dir, name := filepath.Split(ev.Path); filepath.Clean(dir) == m.dir && ev.Op.Has(index.OpCreate) {
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
	ops := make(map[string]index.Op, len(batch))
	order := make([]string, 0, len(batch))
	for _, ev := range batch {
		if _, seen := ops[ev.Path]; !seen {
			order = append(order, ev.Path)
		}
		ops[ev.Path] |= ev.Op
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
			if dir, name := filepath.Split(path); filepath.Clean(dir) == m.dir && op.Has(index.OpCreate) {
				rootFiles = append(rootFiles, name)
			}
			continue
		}
		if name, ok := m.applyPath(m.idx, path, op, true); ok {
			rootFiles = append(rootFiles, name)
		}
	}
	if m.idx != nil && m.idx.Over().Unregistered {
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

// applyPath brings the index up to date with path after an event, and
// reports the name of a regular file at the spool root (which the checks
// ignore; tests use one as a marker). countArrival says whether a new file
// in a queue counts as an arrival. Callers hold m.mu.
func (m *Monitor) applyPath(ix *index.Index, path string, op index.Op, countArrival bool) (rootFile string, isRootFile bool) {
	a := ix.Apply(path, op)
	if a.Rescan != "" {
		m.requestFullLocked(a.Rescan)
	}
	if countArrival && a.Arrival != "" {
		m.arrivals[a.Arrival]++
	}
	return a.RootFile, a.IsRootFile
}

// watcherFailed drops w, whose reads failed (it reads no more), and asks
// for a full rescan, which starts a new watcher.
func (m *Monitor) watcherFailed(w index.Feed, err error) {
	m.mu.Lock()
	if m.w != w || m.closed {
		m.mu.Unlock()
		return
	}
	m.w = nil
	m.watching = false
	m.requestFullLocked("inotify error: " + err.Error())
	m.mu.Unlock()
	w.Close()
}

// requestFull asks for a full rescan at once (in the background), after an
// inotify overflow or a lost watch.
func (m *Monitor) requestFull(w index.Feed, reason string) {
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

// warmRescan is the periodic full rescan of a spool whose index the change
// feed has kept current (see index.Index.Rescan): it costs a listing of
// the spool, not a stat of every file. An error leaves a cold scan to do.
// Callers hold cycleMu.
func (m *Monitor) warmRescan(ctx context.Context, now time.Time) error {
	m.mu.Lock()
	ix := m.idx
	m.mu.Unlock()
	if ix == nil {
		return index.ErrLayoutChanged
	}
	err := ix.Rescan(ctx, &m.mu, func() bool { return m.idx == ix }, m.openFault())
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		m.needFull = true
		return err
	}
	m.fullScans++
	m.warmScans++
	m.lastFull = now
	m.publishLocked(now)
	return nil
}

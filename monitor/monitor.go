package monitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spool-agent/spool-agent/monitor/internal/index"
	"github.com/spool-agent/spool-agent/spool"
)

// Defaults of Config.
const (
	DefaultCheckEvery       = 15 * time.Second
	DefaultAlertAfterCycles = 2
	DefaultFullRescanEvery  = 10 * time.Minute
	DefaultMaxUnregistered  = 100_000
	DefaultMaxQueues        = 1_000
	DefaultMaxWatches       = 4_096
)

// publishDelay is the least time between two snapshots published for
// inotify events: the first event after a quiet spell is published at once,
// those of a burst together.
const publishDelay = 100 * time.Millisecond

// Errors.
var (
	// ErrInvalidConfig reports a Config that New refuses.
	ErrInvalidConfig = errors.New("invalid monitor configuration")
	// ErrClosed reports use of a closed Monitor.
	ErrClosed = errors.New("monitor closed")
)

// Monitor checks one spool, cycle after cycle, and keeps its statistics
// current between cycles through inotify. Cycle, Run, Snapshot and Close
// are safe for concurrent use; Cycle and Run should have one caller.
type Monitor struct {
	name string
	dir  string
	cfg  Config
	log  *slog.Logger

	// cycleMu serializes cycles and full scans, and guards the debounce state.
	cycleMu  sync.Mutex
	counts   map[string]tracked  // problem key -> the problem and the consecutive cycles it was seen
	alerting map[string]*Problem // problems alerting after debouncing

	mu         sync.Mutex   // guards everything below
	idx        *index.Index // nil: the spool could not be read
	needFull   bool
	fullReason string
	lastFull   time.Time
	scanning   bool
	scanDirty  map[string]index.Op // paths with events during a full scan
	// scanDirtyLost: scanDirty reached maxScanDirty and events were lost
	scanDirtyLost bool
	rescanQueued  bool
	sizesFilled   chan struct{} // closed when the background reading of data sizes ends (fillSizesLocked); nil before the first
	w             index.Feed    // the change feed, nil when not watching
	watching      bool
	closed        bool
	pubPending    bool
	pubTimer      *time.Timer
	lastPub       time.Time // of the last event-driven publication (wall clock)
	arrivals      map[string]uint64
	eventsTotal   map[Kind]map[EventType]uint64
	cycles        uint64
	failed        uint64
	fullScans     uint64
	warmScans     uint64 // the full scans that were warm rescans
	up            bool
	lastErr       string
	lastSuccess   time.Time
	cycleDur      time.Duration
	problemsNow   []Problem
	alertingNow   []Problem
	trackedNow    []TrackedProblem
	wg            sync.WaitGroup
	pollLogged    bool // guarded by cycleMu
	overLimit     bool // the last full scan found the spool over a bound; guarded by cycleMu

	// Test hooks, set before the first cycle.
	onRootFile func(name string) // an event for a regular file at the spool root was applied
	dropping   atomic.Bool       // discard events, as an inotify overflow does
	// openDirFault makes opening the directories it returns an error for
	// fail (as EACCES would for a non-root user); tests change it between
	// cycles.
	openDirFault atomic.Pointer[func(path string) error]
	// addWatchFault makes adding a watch on a path fail with the error it
	// returns (as the inotify limits do).
	addWatchFault atomic.Pointer[func(path string) error]
	// readFault makes a successful read of inotify fail with the error it
	// returns.
	readFault atomic.Pointer[func() error]

	snap atomic.Pointer[Snapshot]
}

// DefaultConfig returns the default configuration: DefaultLimits, a cycle
// every 15 s, alerts from a problem's 3rd consecutive sighting, a full
// rescan every 10 minutes, inotify where it can be trusted, and bounds
// sized for the largest real spools (100,000 unregistered files, 1,000
// queues, 4,096 watches).
func DefaultConfig() Config {
	return Config{
		Limits:           DefaultLimits(),
		CheckEvery:       DefaultCheckEvery,
		AlertAfterCycles: DefaultAlertAfterCycles,
		FullRescanEvery:  DefaultFullRescanEvery,
		MaxUnregistered:  DefaultMaxUnregistered,
		MaxQueues:        DefaultMaxQueues,
		MaxWatches:       DefaultMaxWatches,
	}
}

// New returns a monitor of the spool at dir, called name in snapshots. It
// fails only on an invalid configuration: a missing or unreadable spool
// shows as Up == false in snapshots until it can be read. New does not touch
// the disk; the first Cycle (or Run) does.
func New(name, dir string, cfg Config) (*Monitor, error) {
	if dir == "" {
		return nil, fmt.Errorf("%w: empty spool directory", ErrInvalidConfig)
	}
	var errs []error
	neg := func(what string, d time.Duration) {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%w: negative %s %v", ErrInvalidConfig, what, d))
		}
	}
	neg("max checked-out age", cfg.Limits.MaxCheckedOutAge)
	neg("max tmp file age", cfg.Limits.MaxTmpFileAge)
	pos := func(what string, d time.Duration) {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%w: %s %v is not positive (start from DefaultConfig)", ErrInvalidConfig, what, d))
		}
	}
	pos("check interval", cfg.CheckEvery)
	pos("full rescan interval", cfg.FullRescanEvery)
	for what, n := range map[string]int{"max unregistered files": cfg.MaxUnregistered, "max queues": cfg.MaxQueues, "max watches": cfg.MaxWatches} {
		if n <= 0 {
			errs = append(errs, fmt.Errorf("%w: %s %d is not positive (start from DefaultConfig)", ErrInvalidConfig, what, n))
		}
	}
	if cfg.AlertAfterCycles < 0 {
		errs = append(errs, fmt.Errorf("%w: negative alert-after-cycles %d", ErrInvalidConfig, cfg.AlertAfterCycles))
	}
	for q, d := range cfg.Limits.MaxQueueAge {
		if err := spool.ValidateName(q); err != nil {
			errs = append(errs, fmt.Errorf("%w: queue age limit: %w", ErrInvalidConfig, err))
		}
		neg("max age of queue "+q, d)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	cfg.Limits.MaxQueueAge = maps.Clone(cfg.Limits.MaxQueueAge)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.After == nil {
		cfg.After = time.After
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	m := &Monitor{
		name:        name,
		dir:         filepath.Clean(dir),
		cfg:         cfg,
		log:         cfg.Logger.With("spool", name, "dir", filepath.Clean(dir)),
		counts:      map[string]tracked{},
		alerting:    map[string]*Problem{},
		needFull:    true,
		arrivals:    map[string]uint64{},
		eventsTotal: map[Kind]map[EventType]uint64{},
	}
	m.snap.Store(&Snapshot{Name: name, Dir: m.dir, EventsTotal: copyEventsTotal(m.eventsTotal)})
	return m, nil
}

// Config returns the monitor's configuration (with Now, After and Logger
// filled in).
func (m *Monitor) Config() Config { return m.cfg }

// State is what a Monitor hands on to the monitor that replaces it when
// its spool's configuration changes: the debouncing (how many consecutive
// cycles each problem has been seen, which problems alert) and the
// counters (events, arrivals). The successor neither repeats a Start nor
// loses an End, and its counters continue.
type State struct {
	counts      map[string]tracked
	alerting    map[string]*Problem
	eventsTotal map[Kind]map[EventType]uint64
	arrivals    map[string]uint64
}

// TrackedProblem is a problem the debouncing counts: seen in Count
// consecutive cycles (a partial cycle leaves the count as it was), and
// alerting or not.
type TrackedProblem struct {
	Problem  Problem
	Count    int
	Alerting bool
}

// trackedOf lists the debouncing state, sorted by problem.
func trackedOf(counts map[string]tracked, alerting map[string]*Problem) []TrackedProblem {
	out := make([]TrackedProblem, 0, len(counts))
	for k, t := range counts {
		_, a := alerting[k]
		out = append(out, TrackedProblem{Problem: *t.p, Count: t.n, Alerting: a})
	}
	for k, p := range alerting {
		if _, ok := counts[k]; !ok {
			out = append(out, TrackedProblem{Problem: *p, Alerting: true})
		}
	}
	slices.SortFunc(out, func(a, b TrackedProblem) int { return CompareProblems(a.Problem, b.Problem) })
	return out
}

// Tracked returns the debouncing part of s: every problem counted, with
// its count and whether it alerts, sorted by problem. A state file keeps
// it across restarts (see StateOf).
func (s State) Tracked() []TrackedProblem { return trackedOf(s.counts, s.alerting) }

// StateOf returns a State that carries the debouncing of ps, such as a
// state file kept (the counters start at zero): Resume it into a fresh
// monitor, and a problem that alerted still alerts from its snapshot
// before the first cycle, and at the first cycle if it is still there,
// without a new Start; one that went ends at the first cycle.
func StateOf(ps []TrackedProblem) State {
	s := State{counts: make(map[string]tracked, len(ps)), alerting: map[string]*Problem{}}
	for _, t := range ps {
		k := t.Problem.Key()
		p := t.Problem
		if t.Count > 0 {
			s.counts[k] = tracked{p: &p, n: t.Count}
		}
		if t.Alerting {
			s.alerting[k] = &p
		}
	}
	return s
}

// State returns a copy of the monitor's state. Take it once the monitor
// has stopped (Run returned): a later cycle would not be in it.
func (m *Monitor) State() State {
	m.cycleMu.Lock()
	defer m.cycleMu.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	return State{
		counts:      maps.Clone(m.counts),
		alerting:    maps.Clone(m.alerting),
		eventsTotal: copyEventsTotal(m.eventsTotal),
		arrivals:    maps.Clone(m.arrivals),
	}
}

// Resume makes s, a predecessor's State, the monitor's own; call it before
// the first Cycle or Run. The first cycle then applies this monitor's
// configuration to the carried counts: a problem that still alerts raises
// no new Start, and one that no longer does (a raised limit, a higher
// AlertAfterCycles, or it went) raises an End.
func (m *Monitor) Resume(s State) {
	m.cycleMu.Lock()
	defer m.cycleMu.Unlock()
	m.counts = maps.Clone(s.counts)
	m.alerting = maps.Clone(s.alerting)
	if m.counts == nil {
		m.counts = map[string]tracked{}
	}
	if m.alerting == nil {
		m.alerting = map[string]*Problem{}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.eventsTotal = copyEventsTotal(s.eventsTotal)
	m.arrivals = maps.Clone(s.arrivals)
	if m.arrivals == nil {
		m.arrivals = map[string]uint64{}
	}
	m.alertingNow = sortedProblems(m.alerting)
	m.trackedNow = trackedOf(m.counts, m.alerting)
	cp := *m.snap.Load()
	cp.EventsTotal = copyEventsTotal(m.eventsTotal)
	cp.Alerting = m.alertingNow
	cp.Tracked = m.trackedNow
	m.snap.Store(&cp)
}

// openFault returns the test seam of openDir (nil in production).
func (m *Monitor) openFault() func(string) error {
	if f := m.openDirFault.Load(); f != nil {
		return *f
	}
	return nil
}

// Snapshot returns the latest snapshot. It is never nil (before the first
// cycle it has Up == false), must not be modified, and costs an atomic load.
func (m *Monitor) Snapshot() *Snapshot { return m.snap.Load() }

// Close releases the monitor's inotify watches. Cycle and Run fail with
// ErrClosed afterwards.
func (m *Monitor) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	w := m.w
	m.w = nil
	m.watching = false
	if m.pubTimer != nil {
		m.pubTimer.Stop()
	}
	m.mu.Unlock()
	var err error
	if w != nil {
		err = w.Close()
	}
	m.wg.Wait()
	return err
}

// Run runs the monitor as the reference's daemon does: a cycle at once, then
// one CheckEvery after the previous cycle and its onEvent calls finished.
// onEvent (which may be nil) is called for each event, in order, from Run's
// goroutine. A failed cycle is counted (Snapshot.FailedCycles) and logged,
// and the next one runs as usual. Run returns nil when ctx is done, or
// ErrClosed once the monitor is closed.
func (m *Monitor) Run(ctx context.Context, onEvent func(Event)) error {
	var onEvents func([]Event)
	if onEvent != nil {
		onEvents = func(events []Event) {
			for _, e := range events {
				onEvent(e)
			}
		}
	}
	return m.RunBatches(ctx, onEvents)
}

// RunBatches is Run handing each cycle's events over together (never an
// empty batch), so that a caller can log them a cycle at a time.
func (m *Monitor) RunBatches(ctx context.Context, onEvents func([]Event)) error {
	for {
		events, err := m.Cycle(ctx)
		// A cycle that completed has changed the debounce state: its
		// events are delivered even if ctx ended meanwhile, so that no
		// Start or End is lost (State hands that state on).
		if onEvents != nil && len(events) > 0 {
			onEvents(events)
		}
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrClosed) {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-m.cfg.After(m.cfg.CheckEvery):
		}
	}
}

// Cycle runs one check cycle: it brings the index up to date (a full scan
// at the first cycle, every FullRescanEvery, after an inotify overflow or a
// lost watch, after an error, and at every cycle when the spool cannot be
// watched), checks it, debounces the problems, publishes a snapshot and
// returns the cycle's events: every End before every Start, each group
// sorted by CompareProblems, all stamped with the cycle's time.
//
// An error means the cycle failed: it is counted and logged. If the spool
// could not be read at all, the debounce state is left as it was and no
// event is returned. If only parts of it could not be read, the problems
// found elsewhere are debounced and their events returned with the error,
// while the problems that the unreadable parts would decide keep their
// counts and alerting state unchanged (see the package documentation).
func (m *Monitor) Cycle(ctx context.Context) ([]Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.cycleMu.Lock()
	defer m.cycleMu.Unlock()
	start := time.Now()
	now := m.cfg.Now()

	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, ErrClosed
	}
	full := m.idx == nil || m.needFull || !m.watching
	warm := !full && now.Sub(m.lastFull) >= m.cfg.FullRescanEvery
	m.mu.Unlock()
	var errs []error
	if warm {
		if err := m.warmRescan(ctx, now); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if errors.Is(err, index.ErrLayoutChanged) {
				full = true
			} else {
				errs = append(errs, err)
			}
		}
	}
	if full {
		if err := m.fullScan(ctx, now); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			errs = append(errs, err)
		}
	}

	m.mu.Lock()
	ix := m.idx
	if ix == nil {
		err := errors.Join(errs...)
		m.cycles++
		m.failed++
		m.up = false
		prevErr := m.lastErr
		m.lastErr = err.Error()
		m.cycleDur = time.Since(start)
		m.publishLocked(now)
		m.mu.Unlock()
		m.logCycle(prevErr, err)
		return nil, err
	}
	ps, perr := problems(ix, m.dir, now, m.cfg.Limits, len(m.problemsNow)+len(m.problemsNow)/16)
	if perr != nil {
		errs = append(errs, perr)
	}
	if !full {
		errs = append(errs, ix.StatErrors()...)
	}
	err := errors.Join(errs...)
	var unk *unknown
	if err != nil {
		m.needFull = true // look again from scratch until the errors clear
		unk = unknownOf(m.dir, errs)
	}
	m.mu.Unlock()

	events := m.debounce(ps, unk, now)

	m.mu.Lock()
	m.cycles++
	m.up = true
	prevErr := m.lastErr
	m.lastErr = ""
	if err != nil {
		m.failed++
		m.lastErr = err.Error()
	} else {
		m.lastSuccess = now
	}
	for _, e := range events {
		byType := m.eventsTotal[e.Problem.Kind]
		if byType == nil {
			byType = map[EventType]uint64{}
			m.eventsTotal[e.Problem.Kind] = byType
		}
		byType[e.Type]++
	}
	m.problemsNow = ps
	m.alertingNow = sortedProblems(m.alerting)
	m.trackedNow = trackedOf(m.counts, m.alerting)
	m.cycleDur = time.Since(start)
	m.publishLocked(now)
	m.mu.Unlock()
	m.logCycle(prevErr, err)
	return events, err
}

// logCycle logs a cycle's outcome when it changes: a failure at warning
// level when its error differs from the previous cycle's (at debug level
// when it repeats it), and the first success after failures at info level,
// so that a spool that stays broken does not write a line every cycle
// (spool_up and spool_fsck_failures_total count them).
func (m *Monitor) logCycle(prevErr string, err error) {
	switch {
	case err == nil && prevErr != "":
		m.log.Info("spool check cycle succeeded again", "previous_err", prevErr)
	case err == nil:
	case err.Error() == prevErr:
		m.log.Debug("spool check cycle failed again", "err", err)
	default:
		m.log.Warn("spool check cycle failed", "err", err)
	}
}

// tracked is a problem the debouncing counts: seen in n consecutive
// cycles. p points into the cycle's problems, which are never changed
// (they are published): a count costs 16 bytes beside its key, not a copy
// of the problem, which under a flood of problems is most of the
// monitor's memory.
type tracked struct {
	p *Problem
	n int
}

// debounce applies the reference's rule to the cycle's problems and returns
// the events. The problems that unk covers (the cycle could not read their
// part of the spool) keep their count and alerting state as they were,
// whether the cycle found them or not. Callers hold cycleMu.
func (m *Monitor) debounce(ps []Problem, unk *unknown, now time.Time) []Event {
	counts := make(map[string]tracked, len(ps))
	alerting := map[string]*Problem{}
	partial := unk != nil && !unk.empty()
	for i := range ps {
		p := &ps[i]
		if partial && unk.covers(*p) {
			continue
		}
		k := p.Key()
		t := tracked{p: p, n: m.counts[k].n + 1}
		counts[k] = t
		if t.n > m.cfg.AlertAfterCycles {
			alerting[k] = p
		}
	}
	if partial {
		for k, t := range m.counts {
			if _, ok := counts[k]; !ok && unk.covers(*t.p) {
				counts[k] = t
				if p, ok := m.alerting[k]; ok {
					alerting[k] = p
				}
			}
		}
		for k, p := range m.alerting {
			if _, ok := alerting[k]; !ok && unk.covers(*p) {
				alerting[k] = p // alerting, but no longer counted (a predecessor's)
			}
		}
	}
	var ends, starts []Problem
	for k, p := range m.alerting {
		if _, ok := alerting[k]; !ok {
			ends = append(ends, *p)
		}
	}
	for k, p := range alerting {
		if _, ok := m.alerting[k]; !ok {
			starts = append(starts, *p)
		}
	}
	SortProblems(ends)
	SortProblems(starts)
	events := make([]Event, 0, len(ends)+len(starts))
	for _, p := range ends {
		events = append(events, Event{Type: End, Time: now, Problem: p})
	}
	for _, p := range starts {
		events = append(events, Event{Type: Start, Time: now, Problem: p})
	}
	m.counts = counts
	m.alerting = alerting
	return events
}

func sortedProblems(m map[string]*Problem) []Problem {
	ps := make([]Problem, 0, len(m))
	for _, p := range m {
		ps = append(ps, *p)
	}
	SortProblems(ps)
	return ps
}

// copyEventsTotal copies m with every kind of Kinds, and the others that
// occurred (KindLimit).
func copyEventsTotal(m map[Kind]map[EventType]uint64) map[Kind]map[EventType]uint64 {
	kinds := Kinds()
	out := make(map[Kind]map[EventType]uint64, len(kinds))
	for _, k := range kinds {
		out[k] = map[EventType]uint64{Start: m[k][Start], End: m[k][End]}
	}
	for k, byType := range m {
		if _, ok := out[k]; !ok {
			out[k] = map[EventType]uint64{Start: byType[Start], End: byType[End]}
		}
	}
	return out
}

// publishLocked publishes a snapshot of the index's statistics and the last
// cycle's results. Callers hold m.mu.
func (m *Monitor) publishLocked(now time.Time) {
	s := &Snapshot{
		Name:          m.name,
		Dir:           m.dir,
		Up:            m.up && m.idx != nil,
		LastError:     m.lastErr,
		Time:          now,
		Problems:      m.problemsNow,
		Alerting:      m.alertingNow,
		Tracked:       m.trackedNow,
		EventsTotal:   copyEventsTotal(m.eventsTotal),
		CycleDuration: m.cycleDur,
		LastSuccess:   m.lastSuccess,
		Cycles:        m.cycles,
		FailedCycles:  m.failed,
		FullScans:     m.fullScans,
		Watching:      m.watching,
	}
	if ix := m.idx; ix != nil {
		p := ix.Publish()
		s.RegistryEntries, s.TmpFiles, s.DataBytes, s.DataBytesPending = p.RegistryEntries, p.TmpFiles, p.DataBytes, p.DataBytesPending
		s.Queues = make([]QueueStats, len(p.Queues))
		for i, q := range p.Queues {
			qs := QueueStats{Queue: q.Queue, Entries: q.Entries, CheckedOut: q.CheckedOut, Arrivals: m.arrivals[q.Queue], ages: q.Ages}
			if q.HasOldest {
				qs.OldestEntry = time.Unix(0, q.Oldest)
			}
			if q.HasOldestCheckedOut {
				qs.OldestCheckedOut = time.Unix(0, q.OldestCheckedOut)
			}
			s.Queues[i] = qs
		}
	}
	m.snap.Store(s)
}

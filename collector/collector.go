// Package collector runs one monitor per spool, each in isolation, applies
// configuration changes without losing the state of unchanged spools, and
// hands out the latest snapshots. It knows nothing of Prometheus or OTel.
//
// Isolation: every spool has its own goroutine. A missing, unreadable,
// deleted or recreated spool directory is the monitor's business (Up=false,
// a log line, and recovery at a later cycle). A panic in a monitor or in the
// event callback is recovered and logged; the spool shows Up=false with the
// panic as LastError and its monitor is restarted after a backoff. A monitor
// stuck on a slow disk blocks only its own goroutine: Snapshots reads each
// monitor's latest snapshot with an atomic load, and Apply never waits for a
// monitor to stop.
//
// Restarts: with Options.StatePath the collector keeps each spool's
// debouncing state (the problems counted, their counts, which alert) in a
// state file (package statefile), rewritten within a second of a change
// and when Run returns, and gives it back to the spool's monitor when the
// agent starts again: a problem still there alerts in the first snapshot
// and raises no second Start; one fixed meanwhile ends at the first cycle.
package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spool-agent/spool-agent/collector/statefile"
	"github.com/spool-agent/spool-agent/monitor"
)

// Sentinel errors.
var (
	// ErrInvalidName: a spool name is empty, too long, not UTF-8, or has
	// control characters or surrounding spaces.
	ErrInvalidName = errors.New("invalid spool name")
	// ErrDuplicateName: two spools of one Apply share a name.
	ErrDuplicateName = errors.New("duplicate spool name")
	// ErrStopped: Apply or Run after Run has returned.
	ErrStopped = errors.New("collector stopped")
	// ErrPanic wraps a panic recovered from a monitor.
	ErrPanic = errors.New("monitor panicked")
)

// MaxNameLen bounds spool names (they become label values).
const MaxNameLen = 200

// DefaultStopTimeout bounds how long Run waits for the monitors to stop.
const DefaultStopTimeout = 10 * time.Second

// Spool is one spool to watch.
type Spool struct {
	Name   string // unique; the spool label of every series
	Dir    string
	Config monitor.Config
}

// ValidateName reports whether name may name a spool: non-empty, at most
// MaxNameLen bytes of UTF-8 without control characters nor leading or
// trailing spaces. The error wraps ErrInvalidName.
func ValidateName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty", ErrInvalidName)
	case len(name) > MaxNameLen:
		return fmt.Errorf("%w %.20q...: longer than %d bytes", ErrInvalidName, name, MaxNameLen)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w %q: not UTF-8", ErrInvalidName, name)
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return fmt.Errorf("%w %q: control character", ErrInvalidName, name)
	case strings.TrimSpace(name) != name:
		return fmt.Errorf("%w %q: leading or trailing space", ErrInvalidName, name)
	}
	return nil
}

// spoolMonitor is what the collector needs of a *monitor.Monitor (a seam
// for tests that inject panics and stuck disks).
type spoolMonitor interface {
	RunBatches(ctx context.Context, onEvents func([]monitor.Event)) error
	Snapshot() *monitor.Snapshot
	Config() monitor.Config
	State() monitor.State
	Resume(monitor.State)
	Close() error
}

func newMonitor(name, dir string, cfg monitor.Config) (spoolMonitor, error) {
	return monitor.New(name, dir, cfg)
}

// Collector runs the monitors of a set of spools.
type Collector struct {
	logger  *slog.Logger
	onEvent func(spool string, ev monitor.Event)

	opts Options

	// Seams for tests.
	newMonitor   func(name, dir string, cfg monitor.Config) (spoolMonitor, error)
	restartDelay func(failures int) time.Duration
	stopTimeout  time.Duration
	now          func() time.Time // the state file's clock
	stateEvery   time.Duration
	// stateBudget bounds the state file written (stateFileBudget; tests
	// make it small): the file is read whole or not at all.
	stateBudget int

	// The state file: what it held at start, per spool, until the spool's
	// first Apply (guarded by mu); what the writer last wrote (guarded by
	// stateMu).
	restore  map[string]statefile.Spool
	stateMu  sync.Mutex
	saved    map[string]*savedSpool
	lastSave time.Time
	saveErr  string
	omitted  string // the spools whose state the last write left out, as logged

	mu      sync.Mutex
	runners map[string]*runner
	ctx     context.Context  // Run's context; nil before Run
	stopped bool             // Run has returned
	wg      sync.WaitGroup   // runner goroutines
	live    map[*runner]bool // runners whose goroutine runs, removed ones included
	// retiring holds, per name, the last runner Apply removed while it
	// runs, so that a spool added back under its name starts after it.
	retiring map[string]*runner
}

// runner supervises one spool's monitor.
type runner struct {
	spec   Spool
	cfg    monitor.Config // the monitor's configuration with defaults filled in
	mon    atomic.Pointer[monitorBox]
	fault  atomic.Pointer[string]     // the last panic or failure, shown until the next monitor's first cycle
	failed atomic.Pointer[monitorBox] // the monitor that failed last
	ctx    context.Context
	cancel context.CancelFunc
	// prev is the runner this one replaces (nil when none): this one
	// starts once prev has stopped, so that their events do not mix, and
	// takes its monitor's state over when resume is set (same directory).
	prev   *runner
	resume bool
	// removed is set when Apply drops the spool: its alerting problems
	// then end once its monitor has stopped.
	removed atomic.Bool
	// abandoned is set when a successor gave up waiting for this runner to
	// stop: the successor ended its alerts, and its later events are dropped.
	abandoned atomic.Bool
	done      chan struct{} // closed when the runner's goroutine has ended
}

func newRunner(s Spool, m spoolMonitor, prev *runner, resume bool) *runner {
	r := &runner{spec: s, cfg: m.Config(), prev: prev, resume: resume, done: make(chan struct{})}
	r.mon.Store(&monitorBox{m})
	return r
}

type monitorBox struct{ m spoolMonitor }

// New returns a Collector that logs to logger (nil: slog.Default()) and
// calls onEvent (which may be nil) for every monitor event, from the spool's
// goroutine: a slow onEvent delays only that spool. It keeps no state file
// (see NewWithOptions).
func New(logger *slog.Logger, onEvent func(spool string, ev monitor.Event)) *Collector {
	return NewWithOptions(logger, onEvent, DefaultOptions())
}

// NewWithOptions is New with options. With a StatePath it reads the state
// file now (one log line if it ignores it: unreadable, of another
// version, older than StateMaxAge), gives each spool's first monitor the
// debouncing state saved for it (if the spool's directory, device and
// inode are those saved), and from Run on rewrites the file when the state
// changes and when Run returns.
func NewWithOptions(logger *slog.Logger, onEvent func(spool string, ev monitor.Event), opts Options) *Collector {
	if logger == nil {
		logger = slog.Default()
	}
	c := &Collector{
		logger:       logger,
		onEvent:      onEvent,
		opts:         opts,
		newMonitor:   newMonitor,
		restartDelay: backoff,
		stopTimeout:  DefaultStopTimeout,
		now:          time.Now,
		stateEvery:   stateEvery,
		stateBudget:  stateFileBudget,
		runners:      map[string]*runner{},
		live:         map[*runner]bool{},
		retiring:     map[string]*runner{},
	}
	if opts.StatePath != "" {
		c.loadState()
	}
	return c
}

// backoff is the delay before restarting a monitor after its n-th
// consecutive failure: 1s, 2s, 4s, ... up to a minute.
func backoff(n int) time.Duration {
	d := time.Second
	for i := 1; i < n && d < time.Minute; i++ {
		d *= 2
	}
	return min(d, time.Minute)
}

// sameConfig compares the comparable parts of two configurations with
// their defaults filled in (Now, After and Logger are not compared).
func sameConfig(a, b monitor.Config) bool {
	return a.Limits.MaxCheckedOutAge == b.Limits.MaxCheckedOutAge &&
		a.Limits.MaxTmpFileAge == b.Limits.MaxTmpFileAge &&
		maps.Equal(a.Limits.MaxQueueAge, b.Limits.MaxQueueAge) &&
		a.CheckEvery == b.CheckEvery &&
		a.AlertAfterCycles == b.AlertAfterCycles &&
		a.FullRescanEvery == b.FullRescanEvery &&
		a.DisableWatch == b.DisableWatch
}

// Apply makes spools the set of watched spools: it validates them (unique
// valid names, valid monitor configurations) and changes nothing if any is
// invalid; then it starts the new spools, stops the removed ones, restarts
// those whose directory or configuration changed, and keeps the others
// running with their state (debouncing, counters). A spool restarted for a
// new configuration keeps that state too (its new monitor takes it over
// once the old one has stopped, and applies the new settings to it); a
// spool removed or moved to another directory gets an End event for each
// of its alerting problems, so that every Start is ended, and a spool's new
// monitor starts only once its predecessor under that name has stopped
// (at most DefaultStopTimeout later), so their events never mix. It may be called
// before Run (the monitors start when Run does) or during it, and never
// waits for a monitor to stop.
func (c *Collector) Apply(spools []Spool) error {
	seen := make(map[string]bool, len(spools))
	for _, s := range spools {
		if err := ValidateName(s.Name); err != nil {
			return err
		}
		if seen[s.Name] {
			return fmt.Errorf("%w %q", ErrDuplicateName, s.Name)
		}
		seen[s.Name] = true
	}

	if err := c.checkStatePath(spools); err != nil {
		return err
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return ErrStopped
	}
	// Build a candidate monitor for every spool (New validates the
	// configuration and fills in its defaults without touching the disk).
	candidates := make(map[string]spoolMonitor, len(spools))
	closeAll := func() {
		for _, m := range candidates {
			_ = m.Close()
		}
	}
	for _, s := range spools {
		cfg := s.Config
		if cfg.Logger == nil {
			cfg.Logger = c.logger
		}
		m, err := c.newMonitor(s.Name, s.Dir, cfg)
		if err != nil {
			closeAll()
			return fmt.Errorf("spool %s (%s): %w", s.Name, s.Dir, err)
		}
		candidates[s.Name] = m
	}

	next := make(map[string]*runner, len(spools))
	for _, s := range spools {
		cand := candidates[s.Name]
		old := c.runners[s.Name]
		sameDir := old != nil && filepath.Clean(old.spec.Dir) == filepath.Clean(s.Dir)
		if sameDir && sameConfig(old.cfg, cand.Config()) {
			_ = cand.Close() // the running monitor keeps its Logger, Now and After
			next[s.Name] = old
			continue
		}
		switch {
		case sameDir:
			c.logger.Info("restarting spool monitor: configuration changed", "spool", s.Name, "dir", s.Dir)
			old.stop()
		case old != nil:
			c.logger.Info("restarting spool monitor: directory changed", "spool", s.Name, "dir", s.Dir)
			old.removed.Store(true)
			old.stop()
		default:
			c.logger.Info("watching spool", "spool", s.Name, "dir", s.Dir)
		}
		prev := old
		if prev == nil {
			prev = c.retiring[s.Name] // removed before, still stopping
		}
		if prev == nil {
			c.restoreState(s, cand) // the state file's, at the spool's first Apply
		}
		r := newRunner(s, cand, prev, sameDir) // same spool: carry its alerts and counters over
		next[s.Name] = r
		if c.ctx != nil {
			c.start(r)
		}
	}
	for name, old := range c.runners {
		if _, ok := next[name]; !ok {
			c.logger.Info("no longer watching spool", "spool", name, "dir", old.spec.Dir)
			old.removed.Store(true)
			old.stop()
			if old.cancel != nil {
				c.retiring[name] = old
			}
		}
	}
	c.runners = next
	return nil
}

// stop stops r's goroutine (it closes its monitor), or closes the monitor
// of a runner that never started; c.mu is held.
func (r *runner) stop() {
	if r.cancel != nil {
		r.cancel()
		return
	}
	_ = r.mon.Load().m.Close()
	close(r.done)
}

// start runs r's supervisor goroutine; c.mu is held.
func (c *Collector) start(r *runner) {
	r.ctx, r.cancel = context.WithCancel(c.ctx)
	c.wg.Add(1)
	c.live[r] = true
	go func() {
		defer c.wg.Done()
		defer func() {
			c.mu.Lock()
			delete(c.live, r)
			if c.retiring[r.spec.Name] == r {
				delete(c.retiring, r.spec.Name)
			}
			c.mu.Unlock()
			close(r.done)
		}()
		if r.prev != nil {
			c.takeOver(r, r.prev)
			r.prev = nil
		}
		c.supervise(r)
		if r.removed.Load() && !r.abandoned.Load() {
			c.endAlerts(r.spec.Name, r.mon.Load().m)
		}
	}()
}

// takeOver waits (at most stopTimeout) for prev, the runner r replaces, to
// stop, so that prev's last events (its End events, if its directory
// changed) come before r's; then, for the same directory, it gives r's
// monitor prev's monitor's state, so that a configuration change neither
// repeats nor loses an event and the counters continue. It waits even when
// r is already being stopped, so that a state passes through a runner
// replaced before it ran. A predecessor stuck on a dead disk is left
// behind (its alerts ended now, its later events dropped), and r starts
// afresh.
func (c *Collector) takeOver(r, prev *runner) {
	t := time.NewTimer(c.stopTimeout)
	defer t.Stop()
	select {
	case <-prev.done:
		if r.resume {
			r.mon.Load().m.Resume(prev.mon.Load().m.State())
		}
	case <-t.C:
		c.logger.Warn("previous spool monitor did not stop in time; starting afresh", "spool", r.spec.Name, "timeout", c.stopTimeout)
		prev.abandoned.Store(true)
		c.endAlerts(prev.spec.Name, prev.mon.Load().m)
	}
}

// endAlerts emits, for spool name, an End event for each problem that mon
// (stopped, failed or left behind) had alerting, when nothing else would
// end them: the spool is no longer watched (Apply removed it or moved it to
// another directory), or a fresh monitor replaces a failed one.
func (c *Collector) endAlerts(name string, mon spoolMonitor) {
	if c.onEvent == nil && c.opts.EventLog == nil {
		return
	}
	now := time.Now()
	var events []monitor.Event
	for _, p := range mon.Snapshot().Alerting {
		events = append(events, monitor.Event{Type: monitor.End, Time: now, Problem: p})
	}
	c.logEvents(name, events)
	if c.onEvent != nil {
		for _, ev := range events {
			c.deliver(name, ev)
		}
	}
}

// supervise runs r's monitor until r.ctx is done, restarting it after a
// backoff whenever it panics or stops on its own.
func (c *Collector) supervise(r *runner) {
	failures := 0
	for {
		mon := r.mon.Load().m
		started := time.Now()
		err := c.runMonitor(r, mon)
		if r.ctx.Err() != nil {
			_ = mon.Close()
			return
		}
		if err == nil {
			err = errors.New("monitor stopped unexpectedly")
		}
		if time.Since(started) > 10*time.Minute {
			failures = 0
		}
		failures++
		msg := err.Error()
		r.fault.Store(&msg)
		r.failed.Store(r.mon.Load())
		delay := c.restartDelay(failures)
		c.logger.Error("spool monitor failed; restarting it", "spool", r.spec.Name, "dir", r.spec.Dir, "err", err, "restart_in", delay)
		_ = mon.Close()
		// Its debounce state is not trusted after a failure: the fresh
		// monitor starts over, so the failed one's alerts end here.
		c.endAlerts(r.spec.Name, mon)
		t := time.NewTimer(delay)
		select {
		case <-r.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		for {
			cfg := r.spec.Config
			if cfg.Logger == nil {
				cfg.Logger = c.logger
			}
			m, err := c.newMonitor(r.spec.Name, r.spec.Dir, cfg)
			if err == nil {
				r.mon.Store(&monitorBox{m})
				break
			}
			// The configuration was valid when applied; retry rather than give up.
			c.logger.Error("recreating spool monitor", "spool", r.spec.Name, "err", err)
			t := time.NewTimer(c.restartDelay(failures))
			select {
			case <-r.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	}
}

// runMonitor runs mon, turning a panic into an error wrapping ErrPanic.
func (c *Collector) runMonitor(r *runner, mon spoolMonitor) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("%w: %v", ErrPanic, v)
			c.logger.Error("spool monitor panicked", "spool", r.spec.Name, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
		}
	}()
	var onEvents func([]monitor.Event)
	if c.onEvent != nil || c.opts.EventLog != nil {
		onEvents = func(events []monitor.Event) {
			if r.abandoned.Load() {
				return
			}
			c.logEvents(r.spec.Name, events)
			if c.onEvent != nil {
				for _, ev := range events {
					c.deliver(r.spec.Name, ev)
				}
			}
		}
	}
	return mon.RunBatches(r.ctx, onEvents)
}

// deliver passes one event of r's spool to onEvent (which must not be nil),
// surviving a panicking callback. A monitor's events are delivered even
// while it stops: the last cycle's state, which a successor takes over,
// includes them.
func (c *Collector) deliver(name string, ev monitor.Event) {
	defer func() {
		if v := recover(); v != nil {
			c.logger.Error("event callback panicked", "spool", name, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
		}
	}()
	c.onEvent(name, ev)
}

// Run starts the monitors (and those that Apply adds later) and runs them
// until ctx is done; then it stops them all, waits for them at most
// DefaultStopTimeout (a monitor stuck on a dead disk is left behind and
// logged), and returns nil. Run may be called once.
func (c *Collector) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.stopped || c.ctx != nil {
		c.mu.Unlock()
		return ErrStopped
	}
	c.ctx = ctx
	for _, r := range c.runners {
		c.start(r)
	}
	c.mu.Unlock()

	var writerDone chan struct{}
	if c.opts.StatePath != "" {
		writerDone = make(chan struct{})
		go func() {
			defer close(writerDone)
			t := time.NewTicker(c.stateEvery)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					c.saveState(false)
				}
			}
		}()
	}

	<-ctx.Done()

	c.mu.Lock()
	c.stopped = true
	c.mu.Unlock()

	all := make(chan struct{})
	go func() {
		c.wg.Wait()
		close(all)
	}()
	t := time.NewTimer(c.stopTimeout)
	defer t.Stop()
	select {
	case <-all:
	case <-t.C:
		c.mu.Lock()
		for r := range c.live {
			c.logger.Error("spool monitor did not stop in time; leaving it", "spool", r.spec.Name, "dir", r.spec.Dir, "timeout", c.stopTimeout)
		}
		c.mu.Unlock()
	}
	if writerDone != nil {
		// The monitors' last cycles are in their snapshots: save them, so
		// that the next start resumes from here.
		<-writerDone
		c.saveState(true)
	}
	return nil
}

// Snapshots returns the latest snapshot of every spool, sorted by name.
// It never touches the disk nor waits for a monitor: each snapshot is an
// atomic load. A spool whose monitor failed and has not yet completed a
// cycle since its restart shows Up=false with the failure as LastError.
func (c *Collector) Snapshots() []*monitor.Snapshot {
	c.mu.Lock()
	out := make([]*monitor.Snapshot, 0, len(c.runners))
	for _, r := range c.runners {
		box := r.mon.Load()
		s := box.m.Snapshot()
		if f := r.fault.Load(); f != nil && (box == r.failed.Load() || s.Cycles == 0) {
			cp := *s
			cp.Up = false
			cp.LastError = *f
			s = &cp
		}
		out = append(out, s)
	}
	c.mu.Unlock()
	slices.SortFunc(out, func(a, b *monitor.Snapshot) int { return strings.Compare(a.Name, b.Name) })
	return out
}

package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/spool-agent/spool-agent/internal/syncbuf"
	"github.com/spool-agent/spool-agent/internal/testkit"
	"github.com/spool-agent/spool-agent/monitor"
	"github.com/spool-agent/spool-agent/spool"
)

func testLogger() (*slog.Logger, *syncbuf.Buffer) {
	var b syncbuf.Buffer
	return slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug})), &b
}

func makeSpool(t *testing.T, dir string) {
	t.Helper()
	if _, err := spool.Create(dir, []string{"outbox"}, &spool.Options{Durability: spool.DurabilityNone}); err != nil {
		t.Fatal(err)
	}
}

// fastConfig checks every 10ms and alerts at the first sighting.
func fastConfig() monitor.Config {
	cfg := monitor.DefaultConfig()
	cfg.CheckEvery = 10 * time.Millisecond
	cfg.AlertAfterCycles = 0
	return cfg
}

func snapshotOf(c *Collector, name string) *monitor.Snapshot {
	for _, s := range c.Snapshots() {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// waitTimeout bounds every wait of these tests for a condition.
const waitTimeout = 10 * time.Second

// runCollector runs c until the test ends.
func runCollector(t *testing.T, c *Collector) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("Run did not return")
		}
	})
}

// eventLog records events per spool.
type eventLog struct {
	mu     sync.Mutex
	events map[string][]monitor.Event
}

func (l *eventLog) add(spool string, ev monitor.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.events == nil {
		l.events = map[string][]monitor.Event{}
	}
	l.events[spool] = append(l.events[spool], ev)
}

// types returns the types of spool's events, in order.
func (l *eventLog) types(spool string) []monitor.EventType {
	l.mu.Lock()
	defer l.mu.Unlock()
	var types []monitor.EventType
	for _, ev := range l.events[spool] {
		types = append(types, ev.Type)
	}
	return types
}

func (l *eventLog) count(spool string, typ monitor.EventType) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, ev := range l.events[spool] {
		if ev.Type == typ {
			n++
		}
	}
	return n
}

// TestIsolationDeletedSpool deletes one spool's directory while another
// keeps cycling, then recreates it: it shows Up=false and recovers by itself.
func TestIsolationDeletedSpool(t *testing.T) {
	root := t.TempDir()
	a, b := filepath.Join(root, "a"), filepath.Join(root, "b")
	makeSpool(t, a)
	makeSpool(t, b)
	logger, logs := testLogger()
	c := New(logger, nil)
	if err := c.Apply([]Spool{{Name: "a", Dir: a, Config: fastConfig()}, {Name: "b", Dir: b, Config: fastConfig()}}); err != nil {
		t.Fatal(err)
	}
	runCollector(t, c)
	testkit.WaitFor(t, waitTimeout, "both spools up", func() bool {
		sa, sb := snapshotOf(c, "a"), snapshotOf(c, "b")
		return sa.Up && sb.Up
	})

	if err := os.RemoveAll(a); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, waitTimeout, "a down with an error", func() bool { s := snapshotOf(c, "a"); return !s.Up && s.LastError != "" })
	before := snapshotOf(c, "b").Cycles
	testkit.WaitFor(t, waitTimeout, "b still cycling while a is down", func() bool {
		s := snapshotOf(c, "b")
		return s.Up && s.Cycles >= before+3
	})

	makeSpool(t, a)
	testkit.WaitFor(t, waitTimeout, "a back up", func() bool { return snapshotOf(c, "a").Up })
	if !strings.Contains(logs.String(), "spool=a") {
		t.Errorf("no log line about spool a:\n%s", logs.String())
	}
	if names := []string{c.Snapshots()[0].Name, c.Snapshots()[1].Name}; names[0] != "a" || names[1] != "b" {
		t.Errorf("Snapshots order %v, want [a b]", names)
	}
}

// TestMissingSpoolRecovers starts on a directory that does not exist yet.
func TestMissingSpoolRecovers(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "later")
	c := New(slog.New(slog.DiscardHandler), nil)
	if err := c.Apply([]Spool{{Name: "later", Dir: dir, Config: fastConfig()}}); err != nil {
		t.Fatal(err)
	}
	runCollector(t, c)
	testkit.WaitFor(t, waitTimeout, "a failed cycle", func() bool { s := snapshotOf(c, "later"); return s.FailedCycles > 0 && !s.Up })
	makeSpool(t, dir)
	testkit.WaitFor(t, waitTimeout, "spool up once created", func() bool { return snapshotOf(c, "later").Up })
}

func plantOrphan(t *testing.T, dir string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, ".data", "orphan"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func alerting(s *monitor.Snapshot, kind monitor.Kind) bool {
	for _, p := range s.Alerting {
		if p.Kind == kind {
			return true
		}
	}
	return false
}

// TestApplyKeepsState adds, keeps, restarts and removes spools while Run runs.
func TestApplyKeepsState(t *testing.T) {
	root := t.TempDir()
	a, b := filepath.Join(root, "a"), filepath.Join(root, "b")
	makeSpool(t, a)
	makeSpool(t, b)
	plantOrphan(t, a)
	// A tmp file an hour old: too old for the default 10m limit (and, as
	// every tmp file the registry does not name, orphaned).
	tmp := filepath.Join(a, ".tmp", "stale")
	if err := os.WriteFile(tmp, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	hourAgo := time.Now().Add(-time.Hour)
	if err := os.Chtimes(tmp, hourAgo, hourAgo); err != nil {
		t.Fatal(err)
	}
	var events eventLog
	c := New(slog.New(slog.DiscardHandler), events.add)
	if err := c.Apply([]Spool{{Name: "a", Dir: a, Config: fastConfig()}}); err != nil {
		t.Fatal(err)
	}
	runCollector(t, c)
	testkit.WaitFor(t, waitTimeout, "orphan and stale tmp file alerting in a", func() bool {
		s := snapshotOf(c, "a")
		return alerting(s, monitor.KindOrphaned) && alerting(s, monitor.KindTooOld)
	})
	if n := events.count("a", monitor.Start); n != 3 {
		t.Fatalf("%d start events, want 3: %+v", n, events.events)
	}
	cyclesBefore := snapshotOf(c, "a").Cycles

	// Add b, keep a (an equal configuration, even spelled with defaults and
	// another Logger, and an unclean path, keeps the running monitor).
	cfg := fastConfig()
	cfg.Limits.MaxTmpFileAge = monitor.DefaultMaxTmpFileAge
	cfg.Logger = slog.New(slog.DiscardHandler)
	if err := c.Apply([]Spool{{Name: "b", Dir: b, Config: fastConfig()}, {Name: "a", Dir: a + "/", Config: cfg}}); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, waitTimeout, "b up", func() bool { s := snapshotOf(c, "b"); return s != nil && s.Up })
	sa := snapshotOf(c, "a")
	if sa.Cycles < cyclesBefore || !alerting(sa, monitor.KindOrphaned) {
		t.Errorf("a lost its state: cycles %d (before %d), alerting %v", sa.Cycles, cyclesBefore, sa.Alerting)
	}
	kept := sa.Cycles
	testkit.WaitFor(t, waitTimeout, "a few more cycles of a", func() bool { return snapshotOf(c, "a").Cycles >= kept+3 })
	if n := events.count("a", monitor.Start); n != 3 {
		t.Errorf("%d start events for a after a keeping Apply, want still 3", n)
	}

	// Change a's configuration so that the tmp file is no longer too old:
	// a new monitor takes over the old one's state, so the orphans go on
	// alerting without a second Start, the tmp file's too_old alert ends
	// once, and the counters continue.
	changed := fastConfig()
	changed.Limits.MaxTmpFileAge = 2 * time.Hour
	if err := c.Apply([]Spool{{Name: "a", Dir: a, Config: changed}, {Name: "b", Dir: b, Config: fastConfig()}}); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, waitTimeout, "the stale tmp file's alert ended", func() bool { return events.count("a", monitor.End) == 1 })
	cycles := snapshotOf(c, "a").Cycles
	testkit.WaitFor(t, waitTimeout, "a few cycles of the new monitor", func() bool { return snapshotOf(c, "a").Cycles >= cycles+3 })
	s := snapshotOf(c, "a")
	if n, e := events.count("a", monitor.Start), events.count("a", monitor.End); n != 3 || e != 1 {
		t.Errorf("after the configuration change: %d start and %d end events, want still 3 and 1", n, e)
	}
	if !alerting(s, monitor.KindOrphaned) || alerting(s, monitor.KindTooOld) {
		t.Errorf("after the configuration change alerting %v, want only the orphan", s.Alerting)
	}
	if got := s.EventsTotal[monitor.KindOrphaned][monitor.Start]; got != 2 {
		t.Errorf("orphaned start count %d after the change, want 2 (carried over)", got)
	}
	if got := s.EventsTotal[monitor.KindTooOld]; got[monitor.Start] != 1 || got[monitor.End] != 1 {
		t.Errorf("too_old counts %v after the change, want 1 start and 1 end", got)
	}

	// Remove a: no longer watched, its two alerting orphans end.
	if err := c.Apply([]Spool{{Name: "b", Dir: b, Config: fastConfig()}}); err != nil {
		t.Fatal(err)
	}
	if s := c.Snapshots(); len(s) != 1 || s[0].Name != "b" {
		t.Errorf("after removing a: %d snapshots", len(s))
	}
	testkit.WaitFor(t, waitTimeout, "the removed spool's orphans ended", func() bool { return events.count("a", monitor.End) == 3 })
	if n := events.count("a", monitor.Start); n != 3 {
		t.Errorf("%d start events after removing a, want still 3", n)
	}
}

// TestApplyMovesSpool points a spool name at another directory holding
// the same problem: the old directory's alert ends before the new one's
// starts, so the log records pair up.
func TestApplyMovesSpool(t *testing.T) {
	root := t.TempDir()
	a, b := filepath.Join(root, "a"), filepath.Join(root, "b")
	makeSpool(t, a)
	makeSpool(t, b)
	plantOrphan(t, a)
	plantOrphan(t, b)
	var events eventLog
	c := New(slog.New(slog.DiscardHandler), events.add)
	if err := c.Apply([]Spool{{Name: "x", Dir: a, Config: fastConfig()}}); err != nil {
		t.Fatal(err)
	}
	runCollector(t, c)
	testkit.WaitFor(t, waitTimeout, "the orphan alerting", func() bool { return events.count("x", monitor.Start) == 1 })
	if err := c.Apply([]Spool{{Name: "x", Dir: b, Config: fastConfig()}}); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, waitTimeout, "the orphan alerting in the new directory", func() bool { return events.count("x", monitor.Start) == 2 })
	if got, want := events.types("x"), []monitor.EventType{monitor.Start, monitor.End, monitor.Start}; !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
}

func TestApplyValidation(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name   string
		spools []Spool
		want   error
	}{
		{"empty name", []Spool{{Name: "", Dir: dir}}, ErrInvalidName},
		{"control character", []Spool{{Name: "a\nb", Dir: dir}}, ErrInvalidName},
		{"surrounding space", []Spool{{Name: " a", Dir: dir}}, ErrInvalidName},
		{"not UTF-8", []Spool{{Name: "a\xff", Dir: dir}}, ErrInvalidName},
		{"too long", []Spool{{Name: strings.Repeat("x", MaxNameLen+1), Dir: dir}}, ErrInvalidName},
		{"duplicate", []Spool{{Name: "a", Dir: dir}, {Name: "a", Dir: dir + "2"}}, ErrDuplicateName},
		{"invalid config", []Spool{{Name: "ok", Dir: dir, Config: fastConfig()}, {Name: "a", Dir: dir, Config: monitor.Config{CheckEvery: -time.Second}}}, monitor.ErrInvalidConfig},
		{"zero config", []Spool{{Name: "a", Dir: dir}}, monitor.ErrInvalidConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New(slog.New(slog.DiscardHandler), nil)
			if err := c.Apply([]Spool{{Name: "keep", Dir: dir, Config: fastConfig()}}); err != nil {
				t.Fatal(err)
			}
			err := c.Apply(tt.spools)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Apply error %v, want %v", err, tt.want)
			}
			if s := c.Snapshots(); len(s) != 1 || s[0].Name != "keep" {
				t.Errorf("a failed Apply changed the spools: %d snapshots", len(s))
			}
		})
	}
	if err := ValidateName("mail-out.1 (eu)"); err != nil {
		t.Errorf("ValidateName of an ordinary name: %v", err)
	}
}

func TestApplyAfterRunReturns(t *testing.T) {
	c := New(nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Apply(nil); !errors.Is(err, ErrStopped) {
		t.Errorf("Apply after Run: %v, want ErrStopped", err)
	}
	if err := c.Run(context.Background()); !errors.Is(err, ErrStopped) {
		t.Errorf("second Run: %v, want ErrStopped", err)
	}
}

// fakeMonitor is a spoolMonitor whose Run does what the test says.
type fakeMonitor struct {
	name   string
	cfg    monitor.Config
	run    func(ctx context.Context, m *fakeMonitor, onEvent func(monitor.Event)) error
	snap   atomic.Pointer[monitor.Snapshot]
	closed atomic.Bool
}

func (m *fakeMonitor) RunBatches(ctx context.Context, onEvents func([]monitor.Event)) error {
	onEvent := func(ev monitor.Event) {
		if onEvents != nil {
			onEvents([]monitor.Event{ev})
		}
	}
	return m.run(ctx, m, onEvent)
}
func (m *fakeMonitor) Snapshot() *monitor.Snapshot { return m.snap.Load() }
func (m *fakeMonitor) Config() monitor.Config      { return m.cfg }
func (m *fakeMonitor) Close() error                { m.closed.Store(true); return nil }
func (m *fakeMonitor) State() monitor.State        { return monitor.State{} }
func (m *fakeMonitor) Resume(monitor.State)        {}

// healthy cycles every millisecond until ctx is done.
func healthy(ctx context.Context, m *fakeMonitor, onEvent func(monitor.Event)) error {
	for n := uint64(1); ; n++ {
		m.snap.Store(&monitor.Snapshot{Name: m.name, Up: true, Cycles: n})
		if onEvent != nil {
			onEvent(monitor.Event{Type: monitor.Start})
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Millisecond):
		}
	}
}

// fakeCollector returns a Collector whose monitors are fakes run by runs[name]
// (each new monitor of a name takes the next function).
func fakeCollector(logger *slog.Logger, onEvent func(string, monitor.Event), runs map[string][]func(context.Context, *fakeMonitor, func(monitor.Event)) error) (*Collector, *sync.Map) {
	c := New(logger, onEvent)
	var mu sync.Mutex
	made := &sync.Map{} // name -> []*fakeMonitor
	c.newMonitor = func(name, dir string, cfg monitor.Config) (spoolMonitor, error) {
		mu.Lock()
		defer mu.Unlock()
		fns := runs[name]
		fn := fns[0]
		if len(fns) > 1 {
			runs[name] = fns[1:]
		}
		m := &fakeMonitor{name: name, cfg: cfg, run: fn}
		m.snap.Store(&monitor.Snapshot{Name: name})
		prev, _ := made.Load(name)
		list, _ := prev.([]*fakeMonitor)
		made.Store(name, append(list, m))
		return m, nil
	}
	c.restartDelay = func(int) time.Duration { return 20 * time.Millisecond }
	return c, made
}

// TestPanicIsolated: a monitor that panics shows Up=false with the panic,
// is restarted after its restart delay, and never stops the other spool.
// It runs in a synctest bubble: the fake monitors' clock is the bubble's,
// so the restart happens at exactly its delay.
func TestPanicIsolated(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		logger, logs := testLogger()
		release := make(chan struct{})
		panicky := func(ctx context.Context, m *fakeMonitor, _ func(monitor.Event)) error {
			m.snap.Store(&monitor.Snapshot{Name: m.name, Up: true, Cycles: 1})
			<-release
			panic("index out of range")
		}
		c, made := fakeCollector(logger, nil, map[string][]func(context.Context, *fakeMonitor, func(monitor.Event)) error{
			"bad":  {panicky, healthy},
			"good": {healthy},
		})
		const delay = 200 * time.Millisecond
		c.restartDelay = func(int) time.Duration { return delay }
		if err := c.Apply([]Spool{{Name: "bad", Dir: "/x"}, {Name: "good", Dir: "/y"}}); err != nil {
			t.Fatal(err)
		}
		runCollector(t, c)
		synctest.Wait()
		if !snapshotOf(c, "bad").Up {
			t.Fatal("bad not up before its panic")
		}
		close(release)
		synctest.Wait()
		if s := snapshotOf(c, "bad"); s.Up || !strings.Contains(s.LastError, "monitor panicked: index out of range") {
			t.Errorf("bad after its panic: up %v, LastError %q, want down with the panic", s.Up, s.LastError)
		}
		before := snapshotOf(c, "good").Cycles
		time.Sleep(delay - time.Millisecond) // the bubble's clock: just before the restart
		synctest.Wait()
		if s := snapshotOf(c, "bad"); s.Up {
			t.Error("bad restarted before its restart delay")
		}
		if n := snapshotOf(c, "good").Cycles; n < before+100 {
			t.Errorf("good cycled %d times during bad's backoff of %v, want one a millisecond", n-before, delay)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if s := snapshotOf(c, "bad"); !s.Up || s.LastError != "" {
			t.Errorf("bad at its restart delay: up %v, LastError %q, want restarted", s.Up, s.LastError)
		}
		v, _ := made.Load("bad")
		mons := v.([]*fakeMonitor)
		if len(mons) != 2 || !mons[0].closed.Load() {
			t.Errorf("bad has %d monitors, first closed %v; want 2, closed", len(mons), mons[0].closed.Load())
		}
		if !strings.Contains(logs.String(), "spool monitor panicked") {
			t.Errorf("no log of the panic:\n%s", logs.String())
		}
	})
}

// TestStuckMonitor: a monitor stuck in a system call (it ignores ctx)
// stalls neither Snapshots, nor Apply removing it, and holds Run's return
// for the stop timeout exactly (the bubble's clock measures both).
func TestStuckMonitor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		logger, logs := testLogger()
		unstick := make(chan struct{})
		defer close(unstick)
		stuck := func(ctx context.Context, m *fakeMonitor, _ func(monitor.Event)) error {
			m.snap.Store(&monitor.Snapshot{Name: m.name, Up: true, Cycles: 1})
			<-unstick // a read on a dead NFS mount
			return nil
		}
		c, _ := fakeCollector(logger, nil, map[string][]func(context.Context, *fakeMonitor, func(monitor.Event)) error{
			"nfs": {stuck}, "local": {healthy},
		})
		c.stopTimeout = 100 * time.Millisecond
		if err := c.Apply([]Spool{{Name: "nfs", Dir: "/nfs"}, {Name: "local", Dir: "/l"}}); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		synctest.Wait()
		if s := c.Snapshots(); len(s) != 2 || !s[0].Up || !s[1].Up {
			t.Fatalf("snapshots %+v, want both up", s)
		}
		start := time.Now()
		for range 100 {
			c.Snapshots()
		}
		if err := c.Apply([]Spool{{Name: "local", Dir: "/l"}}); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("Snapshots and Apply waited %v beside a stuck monitor", d)
		}
		start = time.Now()
		cancel()
		<-done
		if d := time.Since(start); d != c.stopTimeout {
			t.Errorf("Run returned %v after its cancel, want the stop timeout %v", d, c.stopTimeout)
		}
		if !strings.Contains(logs.String(), "did not stop in time") {
			t.Errorf("no log of the stuck monitor:\n%s", logs.String())
		}
	})
}

// TestEventsAndCallbackPanic: events reach onEvent tagged with their spool,
// and a panicking callback is survived.
func TestEventsAndCallbackPanic(t *testing.T) {
	synctest.Test(t, testEventsAndCallbackPanic)
}

func testEventsAndCallbackPanic(t *testing.T) {
	logger, logs := testLogger()
	var calls atomic.Int64
	onEvent := func(spool string, ev monitor.Event) {
		if spool != "s" {
			panic(fmt.Sprintf("event for %q", spool))
		}
		if calls.Add(1) == 1 {
			panic("exporter bug")
		}
	}
	c, _ := fakeCollector(logger, onEvent, map[string][]func(context.Context, *fakeMonitor, func(monitor.Event)) error{"s": {healthy}})
	if err := c.Apply([]Spool{{Name: "s", Dir: "/s"}}); err != nil {
		t.Fatal(err)
	}
	runCollector(t, c)
	time.Sleep(10 * time.Millisecond) // the bubble's clock: ten cycles of healthy
	synctest.Wait()
	if n := calls.Load(); n < 10 {
		t.Errorf("%d events delivered in ten cycles, want ten or more (the first panicked)", n)
	}
	if !strings.Contains(logs.String(), "event callback panicked") {
		t.Errorf("no log of the callback panic:\n%s", logs.String())
	}
	if !snapshotOf(c, "s").Up {
		t.Error("a callback panic took the spool down")
	}
}

func TestBackoff(t *testing.T) {
	for _, tt := range []struct {
		n    int
		want time.Duration
	}{{1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {7, time.Minute}, {100, time.Minute}} {
		if got := backoff(tt.n); got != tt.want {
			t.Errorf("backoff(%d) = %v, want %v", tt.n, got, tt.want)
		}
	}
}

// TestFailedMonitorEndsItsAlerts: a monitor that panics while a problem
// alerts is replaced by a fresh one; the problem's alert ends first, so
// that the fresh monitor's Start pairs with an End.
func TestFailedMonitorEndsItsAlerts(t *testing.T) {
	synctest.Test(t, testFailedMonitorEndsItsAlerts)
}

func testFailedMonitorEndsItsAlerts(t *testing.T) {
	orphan := monitor.Problem{Kind: monitor.KindOrphaned, Dir: monitor.Dir{Kind: monitor.DirData}, Name: "orphan"}
	var events eventLog
	alertThenPanic := func(ctx context.Context, m *fakeMonitor, onEvent func(monitor.Event)) error {
		m.snap.Store(&monitor.Snapshot{Name: m.name, Up: true, Cycles: 1, Alerting: []monitor.Problem{orphan}})
		onEvent(monitor.Event{Type: monitor.Start, Problem: orphan})
		panic("bug")
	}
	alert := func(ctx context.Context, m *fakeMonitor, onEvent func(monitor.Event)) error {
		m.snap.Store(&monitor.Snapshot{Name: m.name, Up: true, Cycles: 1, Alerting: []monitor.Problem{orphan}})
		onEvent(monitor.Event{Type: monitor.Start, Problem: orphan})
		<-ctx.Done()
		return nil
	}
	c, _ := fakeCollector(slog.New(slog.DiscardHandler), events.add, map[string][]func(context.Context, *fakeMonitor, func(monitor.Event)) error{
		"s": {alertThenPanic, alert},
	})
	if err := c.Apply([]Spool{{Name: "s", Dir: "/x"}}); err != nil {
		t.Fatal(err)
	}
	runCollector(t, c)
	time.Sleep(c.restartDelay(1)) // the bubble's clock: the restart
	synctest.Wait()
	if got, want := events.types("s"), []monitor.EventType{monitor.Start, monitor.End, monitor.Start}; !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
	events.mu.Lock()
	defer events.mu.Unlock()
	for _, ev := range events.events["s"] {
		if ev.Problem.Key() != orphan.Key() {
			t.Errorf("event for %v, want %v", ev.Problem, orphan)
		}
	}
}

// TestApplyRemoveThenAddBack removes a spool with an alerting problem and
// adds it back at once: the removed monitor's End comes before the new
// monitor's Start.
func TestApplyRemoveThenAddBack(t *testing.T) {
	a := filepath.Join(t.TempDir(), "a")
	makeSpool(t, a)
	plantOrphan(t, a)
	var events eventLog
	c := New(slog.New(slog.DiscardHandler), events.add)
	spools := []Spool{{Name: "x", Dir: a, Config: fastConfig()}}
	if err := c.Apply(spools); err != nil {
		t.Fatal(err)
	}
	runCollector(t, c)
	testkit.WaitFor(t, waitTimeout, "the orphan alerting", func() bool { return events.count("x", monitor.Start) == 1 })
	if err := c.Apply(nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Apply(spools); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, waitTimeout, "the orphan alerting again", func() bool { return events.count("x", monitor.Start) == 2 })
	if got, want := events.types("x"), []monitor.EventType{monitor.Start, monitor.End, monitor.Start}; !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
}

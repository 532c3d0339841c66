package monitor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// waitDeadline bounds every wait of the tests.
const waitDeadline = 20 * time.Second

// conf returns DefaultConfig changed by opts.
func conf(opts ...func(*Config)) Config {
	c := DefaultConfig()
	for _, o := range opts {
		o(&c)
	}
	return c
}

func noWatch(c *Config) { c.DisableWatch = true }

func alertAfter(n int) func(*Config) { return func(c *Config) { c.AlertAfterCycles = n } }

func withLimits(l Limits) func(*Config) { return func(c *Config) { c.Limits = l } }

// newTestMonitor returns a monitor of dir whose clock reads *now, with a
// hook that syncMonitor uses, closed at the end of the test.
func newTestMonitor(t testing.TB, dir string, cfg Config, now *time.Time) *Monitor {
	t.Helper()
	if cfg.Now == nil {
		cfg.Now = func() time.Time {
			nowMu.Lock()
			defer nowMu.Unlock()
			return *now
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = quietLog
	}
	m, err := New("test", dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	markers := make(chan string, 1024)
	m.onRootFile = func(name string) {
		select {
		case markers <- name:
		default:
		}
	}
	syncMarkers.Store(m, markers)
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Error(err)
		}
	})
	return m
}

// nowMu guards the tests' clocks, which background rescans read: tests
// change them with setNow.
var nowMu sync.Mutex

func setNow(now *time.Time, t time.Time) {
	nowMu.Lock()
	defer nowMu.Unlock()
	*now = t
}

var (
	syncMarkers markerMap
	syncSeq     atomic.Int64
)

// markerMap holds each test monitor's channel of sync markers seen.
type markerMap struct{ m sync.Map }

func (mm *markerMap) Store(m *Monitor, ch chan string) { mm.m.Store(m, ch) }

func (mm *markerMap) Load(m *Monitor) chan string {
	v, _ := mm.m.Load(m)
	return v.(chan string)
}

// syncMonitor waits until the monitor has applied every inotify event of
// the changes made so far: it creates a marker file at the spool root and
// waits for the monitor to see it (inotify delivers one instance's events
// in order). A monitor that is not watching needs nothing.
func syncMonitor(t testing.TB, m *Monitor) {
	t.Helper()
	m.mu.Lock()
	watching := m.watching
	m.mu.Unlock()
	if !watching {
		return
	}
	markers := syncMarkers.Load(m)
	name := fmt.Sprintf(".sync-%d", syncSeq.Add(1))
	path := filepath.Join(m.dir, name)
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(path)
	deadline := time.After(waitDeadline)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case got := <-markers:
			if got == name {
				return
			}
		case <-tick.C:
			// A monitor that stopped watching (the spool went away) scans
			// in full at its next cycle: nothing to wait for.
			m.mu.Lock()
			watching := m.watching
			m.mu.Unlock()
			if !watching {
				return
			}
		case <-deadline:
			t.Fatalf("monitor did not see sync marker %s", name)
		}
	}
}

// waitSizes waits for the background reading of data sizes started by the
// last full scan, if any: tests call it after a cycle to see the sizes.
func (m *Monitor) waitSizes() {
	m.mu.Lock()
	done := m.sizesFilled
	m.mu.Unlock()
	if done != nil {
		<-done
	}
}

func mustCycle(t testing.TB, m *Monitor) []Event {
	t.Helper()
	events, err := m.Cycle(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	m.waitSizes()
	return events
}

// fmtEvents formats events for comparison in tests.
func fmtEvents(events []Event) string {
	s := ""
	for _, e := range events {
		s += fmt.Sprintf("%s %s @%s; ", e.Type, e.Problem, e.Time.Format(time.RFC3339Nano))
	}
	return s
}

func TestDebounce(t *testing.T) {
	now := t0.Add(time.Hour)
	tick := func() { setNow(&now, now.Add(15*time.Second)) }
	orphan := p(KindOrphaned, tmp, "foo")
	touched := orphan
	touched.ModTime = t0.Add(time.Minute)
	type step struct {
		do   func(t *testing.T, dir string)
		want []Event // Time filled in from the cycle
	}
	start := func(p Problem) Event { return Event{Type: Start, Problem: p} }
	end := func(p Problem) Event { return Event{Type: End, Problem: p} }
	create := func(t *testing.T, dir string) { touch(t, dir, ".tmp/foo") }
	remove := func(t *testing.T, dir string) { rm(t, dir, ".tmp/foo") }
	retouch := func(t *testing.T, dir string) {
		if err := os.Chtimes(filepath.Join(dir, ".tmp/foo"), touched.ModTime, touched.ModTime); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name       string
		alertAfter int
		steps      []step
	}{
		{"default: starts on the third sighting, ends on the first miss", DefaultAlertAfterCycles, []step{
			{do: create},
			{},
			{want: []Event{start(orphan)}},
			{},
			{do: remove, want: []Event{end(orphan)}},
			{},
		}},
		{"disappearing resets the count", DefaultAlertAfterCycles, []step{
			{do: create},
			{},
			{do: remove},
			{do: create},
			{},
			{want: []Event{start(orphan)}},
		}},
		{"a touched file is a new problem that ends the old one", DefaultAlertAfterCycles, []step{
			{do: create},
			{},
			{want: []Event{start(orphan)}},
			{do: retouch, want: []Event{end(orphan)}},
			{},
			{want: []Event{start(touched)}},
		}},
		{"alert after 0 cycles: at once, ends before starts", 0, []step{
			{do: create, want: []Event{start(orphan)}},
			{},
			{do: retouch, want: []Event{end(orphan), start(touched)}},
			{do: remove, want: []Event{end(touched)}},
		}},
		{"alert after 1 cycle", 1, []step{
			{do: create},
			{want: []Event{start(orphan)}},
		}},
	}
	for _, tc := range tests {
		for _, watch := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/watch=%v", tc.name, watch), func(t *testing.T) {
				dir, _ := newTestSpool(t)
				m := newTestMonitor(t, dir, conf(withLimits(Limits{MaxCheckedOutAge: DefaultMaxCheckedOutAge, MaxTmpFileAge: 1000 * day}), alertAfter(tc.alertAfter), func(c *Config) { c.DisableWatch = !watch }), &now)
				mustCycle(t, m)
				for i, s := range tc.steps {
					if s.do != nil {
						s.do(t, dir)
					}
					syncMonitor(t, m)
					tick()
					got := mustCycle(t, m)
					for k := range s.want {
						s.want[k].Time = now
					}
					if fmtEvents(got) != fmtEvents(s.want) {
						t.Errorf("cycle %d: got %s\nwant %s", i+1, fmtEvents(got), fmtEvents(s.want))
					}
				}
			})
		}
	}
}

func TestDebounceSnapshot(t *testing.T) {
	now := t0.Add(time.Hour)
	dir, _ := newTestSpool(t)
	m := newTestMonitor(t, dir, conf(noWatch), &now)
	if s := m.Snapshot(); s == nil || s.Up || s.Name != "test" {
		t.Fatalf("before the first cycle: %+v", s)
	}
	touch(t, dir, ".data/foo")
	for range 3 {
		mustCycle(t, m)
	}
	s := m.Snapshot()
	want := []Problem{p(KindOrphaned, data, "foo")}
	if !s.Up || !equalProblems(s.Problems, want) || !equalProblems(s.Alerting, want) || s.Cycles != 3 || !s.LastSuccess.Equal(now) {
		t.Errorf("snapshot: %+v", s)
	}
	if n := s.EventsTotal[KindOrphaned][Start]; n != 1 {
		t.Errorf("EventsTotal[orphaned][start] = %d", n)
	}
	if n, ok := s.EventsTotal[KindUnexpected][End]; !ok || n != 0 {
		t.Errorf("EventsTotal not zero-filled: %v", s.EventsTotal)
	}
}

// TestResume hands a monitor's state to successors with other
// configurations: what still alerts raises no new Start, what no longer
// does ends, and the counters continue.
func TestResume(t *testing.T) {
	now := t0.Add(time.Hour)
	dir, _ := newTestSpool(t)
	touch(t, dir, ".data/foo")
	cfg := conf(noWatch, alertAfter(1))
	old := newTestMonitor(t, dir, cfg, &now)
	mustCycle(t, old)
	if ev := mustCycle(t, old); len(ev) != 1 || ev[0].Type != Start {
		t.Fatalf("second cycle: %v, want one start", ev)
	}
	st := old.State()
	old.Close()

	tests := []struct {
		name       string
		alertAfter int
		want       []EventType
		alerting   int
	}{
		{name: "same rule", alertAfter: 1, want: nil, alerting: 1},
		{name: "stricter rule", alertAfter: 0, want: nil, alerting: 1},
		{name: "looser rule: seen 3 times, must exceed 5", alertAfter: 5, want: []EventType{End}, alerting: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newTestMonitor(t, dir, conf(noWatch, alertAfter(tt.alertAfter)), &now)
			m.Resume(st)
			if s := m.Snapshot(); len(s.Alerting) != 1 || s.EventsTotal[KindOrphaned][Start] != 1 {
				t.Errorf("resumed snapshot before a cycle: alerting %v, events %v", s.Alerting, s.EventsTotal[KindOrphaned])
			}
			ev := mustCycle(t, m)
			var got []EventType
			for _, e := range ev {
				got = append(got, e.Type)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("first cycle's events %v, want %v", got, tt.want)
			}
			s := m.Snapshot()
			if len(s.Alerting) != tt.alerting || s.EventsTotal[KindOrphaned][Start] != 1 {
				t.Errorf("after a cycle: alerting %v, events %v", s.Alerting, s.EventsTotal[KindOrphaned])
			}
		})
	}
	// The state is a copy: the successors' cycles did not change it.
	if st.counts[p(KindOrphaned, data, "foo").Key()].n != 2 {
		t.Errorf("the handed-on state changed: %v", st.counts)
	}
}

// fakeClock hands Run's waits to the test.
type fakeClock struct{ waits chan fakeWait }

type fakeWait struct {
	d    time.Duration
	fire chan time.Time
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	c.waits <- fakeWait{d, ch}
	return ch
}

func (c *fakeClock) next(t *testing.T) fakeWait {
	t.Helper()
	select {
	case w := <-c.waits:
		return w
	case <-time.After(waitDeadline):
		t.Fatal("Run did not wait")
	}
	return fakeWait{}
}

func TestRun(t *testing.T) {
	now := t0.Add(time.Hour)
	dir, _ := newTestSpool(t)
	touch(t, dir, ".data/foo")
	clock := &fakeClock{waits: make(chan fakeWait)}
	m := newTestMonitor(t, dir, conf(alertAfter(0), func(c *Config) { c.CheckEvery, c.After = 7*time.Second, clock.After }), &now)
	events := make(chan Event, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, func(e Event) { events <- e }) }()

	// The first cycle runs at once, and its events are delivered before the wait.
	w := clock.next(t)
	if w.d != 7*time.Second {
		t.Errorf("waited %v, want CheckEvery", w.d)
	}
	if len(events) != 1 {
		t.Fatalf("%d events after the first cycle", len(events))
	}
	if e := <-events; e.Type != Start || e.Problem.Name != "foo" || !e.Time.Equal(now) {
		t.Errorf("event %+v", e)
	}

	// A failed cycle: the spool is not a spool any more.
	if err := os.Rename(filepath.Join(dir, ".data"), filepath.Join(dir, "data.moved")); err != nil {
		t.Fatal(err)
	}
	syncMonitor(t, m)
	w.fire <- now
	w = clock.next(t)
	if s := m.Snapshot(); s.Up || s.FailedCycles != 1 || s.Cycles != 2 || s.LastError == "" {
		t.Errorf("after a failed cycle: Up=%v FailedCycles=%d Cycles=%d LastError=%q", s.Up, s.FailedCycles, s.Cycles, s.LastError)
	}
	if len(events) != 0 {
		t.Errorf("a failed cycle emitted events")
	}

	// Run survived it; the spool comes back and the next cycle succeeds.
	if err := os.Rename(filepath.Join(dir, "data.moved"), filepath.Join(dir, ".data")); err != nil {
		t.Fatal(err)
	}
	syncMonitor(t, m)
	w.fire <- now
	w = clock.next(t)
	if s := m.Snapshot(); !s.Up || s.FailedCycles != 1 || s.Cycles != 3 || len(s.Alerting) != 1 {
		t.Errorf("after recovery: %+v", s)
	}
	if len(events) != 0 {
		t.Errorf("the recovered cycle emitted %d events; the alert never ended", len(events))
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run returned %v", err)
		}
	case <-time.After(waitDeadline):
		t.Fatal("Run did not stop with its context")
	}
	_ = w
}

func TestNewInvalidConfig(t *testing.T) {
	for _, cfg := range []Config{
		{Limits: Limits{MaxTmpFileAge: -1}},
		{Limits: Limits{MaxQueueAge: map[string]time.Duration{"../x": time.Second}}},
		{AlertAfterCycles: -1},
		{CheckEvery: -time.Second},
		{}, // zero intervals: built from nothing, not from DefaultConfig
		conf(func(c *Config) { c.CheckEvery = 0 }),
		conf(func(c *Config) { c.FullRescanEvery = 0 }),
	} {
		if _, err := New("x", "/nonexistent", cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("New(%+v) = %v", cfg, err)
		}
	}
	if _, err := New("x", "", Config{}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("empty dir: %v", err)
	}
	m, err := New("x", filepath.Join(t.TempDir(), "missing"), conf(func(c *Config) { c.Logger = quietLog }))
	if err != nil {
		t.Fatal(err)
	}
	c := m.Config()
	if c.CheckEvery != DefaultCheckEvery || c.AlertAfterCycles != 2 || c.FullRescanEvery != DefaultFullRescanEvery || c.Limits.MaxTmpFileAge != DefaultMaxTmpFileAge || c.Now == nil || c.After == nil {
		t.Errorf("defaults: %+v", c)
	}
	if s := m.Snapshot(); s.Up {
		t.Error("Up before the first cycle")
	}
	if _, err := m.Cycle(context.Background()); err == nil {
		t.Error("cycle of a missing spool succeeded")
	}
	if s := m.Snapshot(); s.Up || s.FailedCycles != 1 {
		t.Errorf("missing spool: %+v", s)
	}
	m.Close()
	if _, err := m.Cycle(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("cycle after Close: %v", err)
	}
}

// TestStateOf: the debouncing state that Snapshot.Tracked lists (what a
// state file keeps) resumes a fresh monitor as State does: alerting in its
// first snapshot, no Start at its first cycle for what is still there, an
// End for what went, and pending problems keep counting.
func TestStateOf(t *testing.T) {
	now := t0.Add(time.Hour)
	dir, _ := newTestSpool(t)
	touchAll(t, dir, ".data/foo", ".tmp/bar")
	old := newTestMonitor(t, dir, conf(noWatch, alertAfter(1)), &now)
	mustCycle(t, old)
	mustCycle(t, old) // foo and bar alert
	touch(t, dir, "queue1/baz")
	mustCycle(t, old) // baz seen once
	tracked := old.Snapshot().Tracked
	if len(tracked) != 5 {
		t.Fatalf("tracked %+v, want 5 problems", tracked)
	}
	if st := old.State().Tracked(); !slices.EqualFunc(st, tracked, func(a, b TrackedProblem) bool {
		return CompareProblems(a.Problem, b.Problem) == 0 && a.Count == b.Count && a.Alerting == b.Alerting
	}) {
		t.Errorf("State.Tracked %+v, snapshot %+v", st, tracked)
	}
	old.Close()
	rm(t, dir, ".tmp/bar")

	m := newTestMonitor(t, dir, conf(noWatch, alertAfter(1)), &now)
	m.Resume(StateOf(tracked))
	if got := alertingStrings(m.Snapshot()); !slices.Equal(got, sorted("orphaned .data/foo", "orphaned .tmp/bar", "too_old .tmp/bar")) {
		t.Errorf("first snapshot alerting %q", got)
	}
	if got := eventStrings(mustCycle(t, m)); !slices.Equal(got, sorted("end orphaned .tmp/bar", "end too_old .tmp/bar", "start orphaned queue1/baz", "start missing_data queue1/baz")) {
		t.Errorf("first cycle's events %q", got)
	}
}

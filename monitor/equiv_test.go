package monitor

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spool-agent/spool-agent/spool"
)

var (
	equivSeeds = flag.Int("equiv.seeds", 4, "number of seeds of TestEquivalence")
	equivSteps = flag.Int("equiv.steps", 300, "operations per seed of TestEquivalence")
)

// simulateOverflow ends a period of dropped events (m.dropping) the way
// inotify does: by reporting an overflow, which makes the monitor rescan.
func (m *Monitor) simulateOverflow() {
	m.dropping.Store(false)
	m.mu.Lock()
	w := m.w
	m.mu.Unlock()
	if w != nil {
		m.requestFull(w, "simulated inotify overflow")
	}
}

// equivWorld is a spool under random operations, some through the spool
// library and some behind its back.
type equivWorld struct {
	t     *testing.T
	rng   *rand.Rand
	dir   string
	s     *spool.Spool
	held  []*spool.Checkout
	now   time.Time
	extra bool // queue4 added
}

func (w *equivWorld) queues() []string { return w.s.Queues() }

func (w *equivWorld) pick(xs []string) string { return xs[w.rng.IntN(len(xs))] }

// files lists every file of the spool's directories, as paths relative to
// the spool, directories excepted.
func (w *equivWorld) files(withDirs bool) []string {
	var dirs []string
	dirs = append(dirs, spool.RegistryDir, spool.TmpDir, spool.DataDir)
	for _, q := range w.queues() {
		dirs = append(dirs, q, q+"/"+spool.CheckoutDir)
	}
	var out []string
	for _, d := range dirs {
		ents, _ := os.ReadDir(filepath.Join(w.dir, d))
		for _, e := range ents {
			if e.Name() == spool.CheckoutDir || e.IsDir() != withDirs {
				continue
			}
			out = append(out, d+"/"+e.Name())
		}
	}
	return out
}

func (w *equivWorld) randomDir() string {
	ds := []string{spool.RegistryDir, spool.TmpDir, spool.DataDir}
	for _, q := range w.queues() {
		ds = append(ds, q, q+"/"+spool.CheckoutDir)
	}
	return w.pick(ds)
}

func (w *equivWorld) randomName() string {
	if names := w.files(false); len(names) > 0 && w.rng.IntN(2) == 0 {
		return filepath.Base(w.pick(names))
	}
	return fmt.Sprintf("n%d", w.rng.IntN(12))
}

func (w *equivWorld) randomTime() time.Time {
	return w.now.Add(-time.Duration(w.rng.Int64N(int64(12 * time.Minute))))
}

// op applies one random operation and describes it.
func (w *equivWorld) op() string {
	t := w.t
	rng := w.rng
	switch k := rng.IntN(20); {
	case k < 4:
		q := w.pick(w.queues())
		name, err := w.s.EnqueueBytes(context.Background(), q, []byte("meta"), make([]byte, rng.IntN(100)), spool.EnqueueOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return "enqueue " + q + "/" + name
	case k < 6:
		q := w.pick(w.queues())
		names, err := w.s.List(q)
		if err != nil || len(names) == 0 {
			return "checkout: nothing in " + q
		}
		name := w.pick(names)
		c, err := w.s.Checkout(context.Background(), q, name)
		if err != nil {
			return "checkout " + q + "/" + name + ": " + err.Error()
		}
		w.held = append(w.held, c)
		return "checkout " + q + "/" + name
	case k < 8 && len(w.held) > 0:
		i := rng.IntN(len(w.held))
		c := w.held[i]
		w.held = slices.Delete(w.held, i, i+1)
		if rng.IntN(3) == 0 {
			err := c.Remove()
			return fmt.Sprintf("remove checkout %s: %v", c.Name(), err)
		}
		q := w.pick(w.queues())
		err := c.Save(q, []byte("new meta"))
		return fmt.Sprintf("save %s to %s: %v", c.Name(), q, err)
	case k < 9:
		q := w.pick(w.queues())
		names, _ := w.s.List(q)
		if len(names) == 0 {
			return "remove: nothing"
		}
		name := w.pick(names)
		return fmt.Sprintf("remove %s/%s: %v", q, name, w.s.Remove(q, name))
	case k < 11:
		p := w.randomDir() + "/" + w.randomName()
		if err := os.WriteFile(filepath.Join(w.dir, p), make([]byte, rng.IntN(50)), 0o644); err != nil {
			return "raw create " + p + ": " + err.Error()
		}
		tm := w.randomTime()
		os.Chtimes(filepath.Join(w.dir, p), tm, tm)
		return "raw create " + p
	case k < 13:
		fs := w.files(false)
		if len(fs) == 0 {
			return "raw unlink: nothing"
		}
		p := w.pick(fs)
		os.Remove(filepath.Join(w.dir, p))
		return "raw unlink " + p
	case k < 15:
		fs := w.files(false)
		if len(fs) == 0 {
			return "raw touch: nothing"
		}
		p := w.pick(fs)
		tm := w.randomTime()
		os.Chtimes(filepath.Join(w.dir, p), tm, tm)
		return "raw touch " + p
	case k < 16:
		fs := w.files(false)
		if len(fs) == 0 {
			return "raw append: nothing"
		}
		p := w.pick(fs)
		f, err := os.OpenFile(filepath.Join(w.dir, p), os.O_APPEND|os.O_WRONLY, 0)
		if err == nil {
			f.Write(make([]byte, 1+rng.IntN(30)))
			f.Close()
		}
		return "raw append " + p
	case k < 17:
		if ds := w.files(true); len(ds) > 0 && rng.IntN(2) == 0 {
			p := w.pick(ds)
			os.Remove(filepath.Join(w.dir, p))
			return "rmdir " + p
		}
		p := w.randomDir() + "/" + w.randomName()
		if rng.IntN(2) == 0 {
			os.Symlink("somewhere", filepath.Join(w.dir, p))
			return "symlink " + p
		}
		os.Mkdir(filepath.Join(w.dir, p), 0o755)
		tm := w.randomTime()
		os.Chtimes(filepath.Join(w.dir, p), tm, tm)
		return "mkdir " + p
	case k < 18:
		switch rng.IntN(4) {
		case 0:
			os.Mkdir(filepath.Join(w.dir, "stray"), 0o755)
			return "mkdir stray"
		case 1:
			os.Remove(filepath.Join(w.dir, "stray"))
			return "rmdir stray"
		case 2:
			if !w.extra {
				w.extra = true
				if err := w.s.AddQueue("queue4"); err != nil {
					t.Fatal(err)
				}
				return "add queue4"
			}
		}
		os.WriteFile(filepath.Join(w.dir, "rootfile"), nil, 0o644)
		return "root file"
	case k == 19 && rng.IntN(4) == 0:
		return "" // an overflow, applied by the caller
	case k == 19 && rng.IntN(3) == 0:
		return "silent" // events lost without notice, applied by the caller
	default:
		p := w.randomDir() + "/" + w.randomName()
		os.WriteFile(filepath.Join(w.dir, p), nil, 0o644)
		return "raw create " + p
	}
}

// silentOp creates a file of a fresh name or removes one: the changes that
// a warm rescan repairs when their events are lost without notice. (A lost
// touch it would not repair: it trusts the mtimes its events gave it.)
func (w *equivWorld) silentOp(seq int) string {
	if fs := w.files(false); len(fs) > 0 && w.rng.IntN(2) == 0 {
		p := w.pick(fs)
		os.Remove(filepath.Join(w.dir, p))
		return "silent unlink " + p
	}
	p := fmt.Sprintf("%s/silent%d", w.randomDir(), seq)
	os.WriteFile(filepath.Join(w.dir, p), nil, 0o644)
	return "silent create " + p
}

// comparable returns what must be equal between two snapshots of the same
// spool at now: problems, alerting problems and statistics.
func comparableSnapshot(s *Snapshot, now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "up=%v registry=%d tmp=%d databytes=%d\n", s.Up, s.RegistryEntries, s.TmpFiles, s.DataBytes)
	bounds := []time.Duration{time.Minute, 5 * time.Minute, 10 * time.Minute, time.Hour}
	for _, q := range s.Queues {
		c, sum := q.AgeBuckets(now, bounds)
		fmt.Fprintf(&b, "queue %s entries=%d checkedout=%d oldest=%v oldestco=%v ages=%v sum=%.6f\n",
			q.Queue, q.Entries, q.CheckedOut, q.OldestEntry.UnixNano(), q.OldestCheckedOut.UnixNano(), c, sum)
	}
	fmt.Fprintf(&b, "problems: %s\nalerting: %s\n", fmtProblems(s.Problems), fmtProblems(s.Alerting))
	return b.String()
}

// TestEquivalence applies random sequences of spool operations (through the
// library and behind its back, with forced inotify overflows) and checks
// after each batch that the watching monitor, a monitor scanning in full
// every cycle, and Check agree on problems, events and statistics.
func TestEquivalence(t *testing.T) {
	for seed := range uint64(*equivSeeds) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			dir, s := newTestSpool(t)
			w := &equivWorld{t: t, rng: rand.New(rand.NewPCG(seed, 42)), dir: dir, s: s, now: time.Now()}
			cfg := conf(withLimits(Limits{
				MaxCheckedOutAge: 3 * time.Minute,
				MaxTmpFileAge:    2 * time.Minute,
				MaxQueueAge:      map[string]time.Duration{"queue2": 5 * time.Minute},
			}), alertAfter(1))
			incCfg := cfg
			incCfg.FullRescanEvery = 5 * time.Minute
			inc := newTestMonitor(t, dir, incCfg, &w.now)
			cfg.DisableWatch = true
			full := newTestMonitor(t, dir, cfg, &w.now)
			var log []string
			fail := func(format string, args ...any) {
				t.Helper()
				t.Fatalf("after:\n\t%s\n%s", strings.Join(log[max(0, len(log)-25):], "\n\t"), fmt.Sprintf(format, args...))
			}
			forceWarm := false
			checkpoint := func() {
				t.Helper()
				syncMonitor(t, inc)
				step := time.Duration(30+w.rng.IntN(60)) * time.Second
				if forceWarm {
					step += incCfg.FullRescanEvery
					forceWarm = false
				}
				setNow(&w.now, w.now.Add(step))
				ei, err := inc.Cycle(context.Background())
				if err != nil {
					fail("incremental cycle: %v", err)
				}
				ef, err := full.Cycle(context.Background())
				if err != nil {
					fail("full cycle: %v", err)
				}
				inc.waitSizes()
				full.waitSizes()
				if fmtEvents(ei) != fmtEvents(ef) {
					fail("events differ:\nincremental %s\nfull        %s", fmtEvents(ei), fmtEvents(ef))
				}
				si, sf := comparableSnapshot(inc.Snapshot(), w.now), comparableSnapshot(full.Snapshot(), w.now)
				if si != sf {
					fail("snapshots differ:\nincremental %s\nfull        %s", si, sf)
				}
				ps, err := Check(dir, cfg.Limits, w.now)
				if err != nil {
					fail("Check: %v", err)
				}
				if !equalProblems(ps, inc.Snapshot().Problems) {
					fail("Check differs: %s", fmtProblems(ps))
				}
			}
			checkpoint()
			overflows, silents := 0, 0
			for i := 0; i < *equivSteps; {
				n := 1 + w.rng.IntN(8)
				for ; n > 0 && i < *equivSteps; n-- {
					i++
					d := w.op()
					if d == "silent" {
						syncMonitor(t, inc)
						inc.dropping.Store(true)
						d = ""
						for range 1 + w.rng.IntN(3) {
							d += w.silentOp(i) + "; "
						}
						syncMonitor(t, inc) // their events are dropped
						inc.dropping.Store(false)
						forceWarm = true
						silents++
					}
					if d == "" || i == *equivSteps/2 && overflows == 0 {
						overflows++
						inc.dropping.Store(true)
						for range 1 + w.rng.IntN(4) {
							if d := w.op(); d != "" {
								log = append(log, "(dropped) "+d)
							}
						}
						inc.simulateOverflow()
						d += " overflow"
					}
					log = append(log, d)
				}
				checkpoint()
			}
			if overflows == 0 {
				t.Error("no overflow exercised")
			}
			si := inc.Snapshot()
			if !si.Watching {
				t.Error("the incremental monitor is not watching")
			}
			// The incremental monitor must have worked from events: full
			// scans only at the start, after overflows and for layout
			// changes (queue4, stray).
			var events uint64
			for _, byType := range si.EventsTotal {
				events += byType[Start] + byType[End]
			}
			inc.mu.Lock()
			warm := inc.warmScans
			inc.mu.Unlock()
			t.Logf("%d cycles, %d full scans (%d warm; %d overflows, %d silent losses), %d events", si.Cycles, si.FullScans, warm, overflows, silents, events)
			if warm == 0 {
				t.Error("no warm rescan")
			}
			if si.FullScans*2 > si.Cycles {
				t.Errorf("%d full scans in %d cycles", si.FullScans, si.Cycles)
			}
			if events == 0 {
				t.Error("no events")
			}
		})
	}
}

//go:build linux

package index

import (
	"context"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spool-agent/spool-agent/spool"
)

var (
	equivSeeds = flag.Int("equiv.seeds", 4, "number of seeds of TestEngineEquivalence")
	equivSteps = flag.Int("equiv.steps", 300, "operations per seed of TestEngineEquivalence")
)

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

// engine drives an Index as the monitor does: a cold Scan that adds the
// feed's watches before listing, events applied in batches, a new Scan
// when Apply or the feed asks for one, a warm Rescan on demand.
type engine struct {
	t        *testing.T
	dir      string
	mu       sync.Mutex
	ix       *Index
	feed     Feed
	rescan   string      // why a cold scan is needed ("" none), guarded by mu
	dropping atomic.Bool // drop events, as when they are lost
	markers  chan string // root files seen, after their batch was applied
	scans    int
	wg       sync.WaitGroup
	fills    sync.WaitGroup // FillSizes of the scans with SizesLater
}

// scan replaces the index with a cold scan, under a fresh feed. Events
// that arrive meanwhile wait for mu and are applied to the new index.
func (e *engine) scan() {
	e.t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.feed != nil {
		e.feed.Close()
	}
	f, _, err := NewFeed(FeedDefault, FeedOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	e.feed = f
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		f.Run(time.Millisecond, func(batch []Event) { e.apply(f, batch) }, func(err error) {
			e.mu.Lock()
			defer e.mu.Unlock()
			if e.feed == f && e.rescan == "" {
				e.rescan = err.Error()
			}
		})
	}()
	// Every other scan leaves the data sizes to FillSizes, which runs
	// while the workload goes on (as the monitor runs it after a cycle);
	// checkpoints wait for it.
	sizesLater := e.scans%2 == 1
	ix, err := Scan(context.Background(), e.dir, ScanOptions{SizesLater: sizesLater, BeforeList: func(path string) {
		if err := f.Add(path); err != nil {
			e.t.Errorf("watch %s: %v", path, err)
		}
	}})
	if err != nil {
		e.t.Fatalf("scan: %v", err)
	}
	ix.Succeed(e.ix)
	e.ix, e.rescan = ix, ""
	e.scans++
	if sizesLater {
		e.fills.Add(1)
		go func() {
			defer e.fills.Done()
			if err := ix.FillSizes(context.Background(), &e.mu, func() bool { return e.ix == ix }); err != nil {
				e.t.Errorf("fill sizes: %v", err)
			}
		}()
	}
}

func (e *engine) apply(f Feed, batch []Event) {
	var roots []string
	e.mu.Lock()
	if e.feed != f {
		e.mu.Unlock()
		return
	}
	ops := map[string]Op{}
	var order []string
	for _, ev := range batch {
		if _, ok := ops[ev.Path]; !ok {
			order = append(order, ev.Path)
		}
		ops[ev.Path] |= ev.Op
	}
	for _, p := range order {
		if e.dropping.Load() && filepath.Dir(p) != e.dir {
			continue
		}
		a := e.ix.Apply(p, ops[p])
		if a.Rescan != "" && e.rescan == "" {
			e.rescan = a.Rescan
		}
		if a.IsRootFile {
			roots = append(roots, a.RootFile)
		}
	}
	e.mu.Unlock()
	for _, r := range roots {
		e.markers <- r
	}
}

// sync waits until every event before now has been applied.
func (e *engine) sync(seq *int) {
	e.t.Helper()
	*seq++
	name := fmt.Sprintf("marker%d", *seq)
	if err := os.WriteFile(filepath.Join(e.dir, name), nil, 0o644); err != nil {
		e.t.Fatal(err)
	}
	deadline := time.After(waitDeadline)
	for {
		select {
		case m := <-e.markers:
			if m == name {
				os.Remove(filepath.Join(e.dir, name))
				return
			}
		case <-deadline:
			e.t.Fatalf("marker %s not seen", name)
		}
	}
}

func (e *engine) close() {
	e.mu.Lock()
	f := e.feed
	e.feed = nil
	e.mu.Unlock()
	if f != nil {
		f.Close()
	}
	go func() {
		for range e.markers {
		}
	}()
	e.fills.Wait()
	e.wg.Wait()
	close(e.markers)
}

// dump describes everything the index holds that a scan of the same spool
// must hold too: statistics, ages, every place's files, .tmp, suspects.
func dump(ix *Index, now time.Time) string {
	var b strings.Builder
	p := ix.Publish()
	fmt.Fprintf(&b, "registry=%d tmp=%d databytes=%d pending=%v\n", p.RegistryEntries, p.TmpFiles, p.DataBytes, p.DataBytesPending)
	bounds := []time.Duration{time.Minute, 5 * time.Minute, 10 * time.Minute, time.Hour}
	for _, q := range p.Queues {
		c, sum := q.Ages.Buckets(now, bounds)
		fmt.Fprintf(&b, "queue %s entries=%d checkedout=%d oldest=%v/%v oldestco=%v/%v ages=%v sum=%.6f\n",
			q.Queue, q.Entries, q.CheckedOut, q.HasOldest, q.Oldest, q.HasOldestCheckedOut, q.OldestCheckedOut, c, sum)
	}
	for i, pl := range ix.Places() {
		// In mtime order; names of equal mtimes in an index's own order
		// (of entry ids), so sorted here.
		var files []string
		last := int64(math.MinInt64)
		ix.Older(i, math.MaxInt64, func(name string, mtime int64) bool {
			if mtime < last {
				b.WriteString("(out of order) ")
			}
			last = mtime
			files = append(files, fmt.Sprintf("%020d:%s", mtime, name))
			return true
		})
		slices.Sort(files)
		fmt.Fprintf(&b, "place %v: %v\n", pl, files)
	}
	var lines []string
	ix.EachTmp(func(name string, t TmpFile) {
		if t.Irregular || t.StatFailed {
			t.MTime = 0 // not tracked
		}
		lines = append(lines, fmt.Sprintf("tmp %s %+v registered=%v", name, t, ix.Registered(name)))
	})
	ix.EachSuspect(func(s Suspect) {
		for i := range s.Files {
			if s.Files[i].Irregular || s.Files[i].StatFailed {
				s.Files[i].MTime = 0
			}
		}
		lines = append(lines, fmt.Sprintf("suspect %+v", s))
	})
	slices.Sort(lines)
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
	names, unreg, tmp := ix.Tracked()
	fmt.Fprintf(&b, "tracked %d %d %d root-unexpected %v over %+v\n", names, unreg, tmp, ix.RootUnexpected(), ix.Over())
	return b.String()
}

// TestEngineEquivalence applies random sequences of spool operations
// (through the library and behind its back, with lost events, followed by
// a warm Rescan or by an overflow and a cold Scan) and checks after each
// batch that the index kept current from the change feed (the platform's
// default feed, or SPOOL_AGENT_WATCHER's) holds exactly what a fresh Scan
// of the spool finds.
func TestEngineEquivalence(t *testing.T) {
	for seed := range uint64(*equivSeeds) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			dir := t.TempDir() + "/spool"
			s, err := spool.Create(dir, []string{"queue1", "queue2", "queue3"}, &spool.Options{Durability: spool.DurabilityNone})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			w := &equivWorld{t: t, rng: rand.New(rand.NewPCG(seed, 42)), dir: dir, s: s, now: time.Now()}
			e := &engine{t: t, dir: dir, markers: make(chan string, 64)}
			defer e.close()
			e.scan()
			var log []string
			seq := 0
			fail := func(format string, args ...any) {
				t.Helper()
				t.Fatalf("after:\n\t%s\n%s", strings.Join(log[max(0, len(log)-25):], "\n\t"), fmt.Sprintf(format, args...))
			}
			warm := false
			checkpoint := func() {
				t.Helper()
				e.sync(&seq)
				e.mu.Lock()
				need := e.rescan
				e.mu.Unlock()
				switch {
				case need != "":
					log = append(log, "(cold scan: "+need+")")
					e.scan()
					e.sync(&seq)
				case warm:
					log = append(log, "(warm rescan)")
					e.mu.Lock()
					ix := e.ix
					e.mu.Unlock()
					if err := ix.Rescan(context.Background(), &e.mu, func() bool { return e.ix == ix }, nil); err != nil {
						fail("warm rescan: %v", err)
					}
					warm = false
				}
				e.fills.Wait()
				fresh, err := Scan(context.Background(), dir, ScanOptions{})
				if err != nil {
					fail("scan: %v", err)
				}
				e.mu.Lock()
				got := dump(e.ix, w.now)
				e.mu.Unlock()
				if want := dump(fresh, w.now); got != want {
					fail("index kept by events:\n%s\nfresh scan:\n%s", got, want)
				}
			}
			checkpoint()
			overflows, silents, warms := 0, 0, 0
			for i := 0; i < *equivSteps; {
				n := 1 + w.rng.IntN(8)
				for ; n > 0 && i < *equivSteps; n-- {
					i++
					d := w.op()
					if d == "silent" {
						e.sync(&seq)
						e.dropping.Store(true)
						d = ""
						for range 1 + w.rng.IntN(3) {
							d += w.silentOp(i) + "; "
						}
						e.sync(&seq) // their events are dropped
						e.dropping.Store(false)
						warm = true
						silents++
						warms++
					}
					if d == "" || i == *equivSteps/2 && overflows == 0 {
						overflows++
						e.sync(&seq)
						e.dropping.Store(true)
						for range 1 + w.rng.IntN(4) {
							if d := w.op(); d != "" && d != "silent" {
								log = append(log, "(dropped) "+d)
							}
						}
						e.sync(&seq)
						e.dropping.Store(false)
						e.mu.Lock()
						e.rescan = "simulated overflow"
						e.mu.Unlock()
						d += " overflow"
					}
					log = append(log, d)
				}
				checkpoint()
			}
			if overflows == 0 || warms == 0 && *equivSteps >= 300 {
				t.Errorf("%d overflows, %d warm rescans: not every path exercised", overflows, warms)
			}
			t.Logf("%d steps, %d cold scans, %d overflows, %d silent losses", *equivSteps, e.scans, overflows, silents)
		})
	}
}

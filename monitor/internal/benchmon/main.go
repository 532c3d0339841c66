// Command benchmon measures the monitor on a large spool. scripts/bench-monitor.sh
// runs it; see there for the figures it prints.
//
//	benchmon build   -dir SPOOL -n N     create a spool of N entries quickly
//	benchmon measure -dir SPOOL -n N     measure full and incremental cycles and memory
//	benchmon churn   -dir SPOOL -n N -round R -pct P
//	                                     (internal) change P% of the entries
//
// The churn rounds slide a window over entry numbers: round r removes the
// lowest-numbered live entries and adds as many new ones, so the spool
// keeps N entries and can be measured again (the next round number is kept
// in the file benchmon-round at the spool root, which the monitor ignores).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spool-agent/spool-agent/monitor"
	"golang.org/x/sys/unix"
)

// The spool's shape: four queues as async_smtp has, 60/25/10/5% of the
// entries, one in a thousand checked out, a few temporary files, 100-byte
// payloads.
var queues = []string{"active", "frozen", "quarantine", "removed"}

const dataSize = 100

var (
	cpuProfile  string
	fullProfile string
	skipFull    bool
	onlyFull    bool
)

func queueOf(i int) string {
	switch r := i % 20; {
	case r < 12:
		return "active"
	case r < 17:
		return "frozen"
	case r < 19:
		return "removed"
	}
	return "quarantine"
}

func checkedOut(i int) bool { return i%1000 == 7 }

func name(i int) string { return fmt.Sprintf("20261125T203512.%09dZ-0001f3a2-%016x", i, i) }

func entryPath(dir string, i int) string {
	q := queueOf(i)
	if checkedOut(i) {
		return dir + "/" + q + "/.checkout/" + name(i)
	}
	return dir + "/" + q + "/" + name(i)
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: benchmon build|measure|churn -dir SPOOL -n N")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	dir := fs.String("dir", "", "spool directory")
	n := fs.Int("n", 1000000, "entries")
	runs := fs.Int("runs", 5, "runs of each full measurement (median reported)")
	round := fs.Int("round", 0, "churn round")
	pct := fs.Float64("pct", 1, "percent of entries changed per incremental cycle")
	fs.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the incremental runs to this file")
	fs.StringVar(&fullProfile, "fullprofile", "", "write a CPU profile of the full cycles (not find) to this file")
	fs.BoolVar(&skipFull, "skipfull", false, "skip the full-cycle and find measurements")
	fs.BoolVar(&onlyFull, "onlyfull", false, "only the full-cycle and find measurements")
	fs.Parse(os.Args[2:])
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "-dir is required")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "build":
		err = build(*dir, *n)
	case "measure":
		err = measure(*dir, *n, *runs, *pct)
	case "churn":
		err = churn(*dir, *n, *round, *pct)
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchmon:", err)
		os.Exit(1)
	}
}

func create(path string, size int) error {
	fd, err := unix.Open(path, unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC|unix.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if size > 0 {
		if _, err := unix.Write(fd, make([]byte, size)); err != nil {
			unix.Close(fd)
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	return unix.Close(fd)
}

// build creates the spool's files directly (not through the spool library,
// whose fsyncs and renames would make a million entries take long).
func build(dir string, n int) error {
	dirs := []string{"", ".registry", ".tmp", ".data"}
	for _, q := range queues {
		dirs = append(dirs, q, q+"/.checkout")
	}
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	start := time.Now()
	const workers = 4
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				nm := name(i)
				for _, f := range []struct {
					path string
					size int
				}{{dir + "/.registry/" + nm, 0}, {dir + "/.data/" + nm, dataSize}, {entryPath(dir, i), 20}} {
					if err := create(f.path, f.size); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	for i := range 5 {
		if err := create(fmt.Sprintf("%s/.tmp/%s.%d", dir, name(i), i), 20); err != nil {
			return err
		}
	}
	fmt.Printf("built %d entries (%d files) in %s in %.1fs\n", n, 3*n+5, dir, time.Since(start).Seconds())
	return nil
}

// churn changes pct% of the entries, as a separate process so that the
// monitor's CPU time can be measured apart: half of them are removed (the
// reference's unlink order: data, queue file, registry) and as many new
// ones enqueued (registry, data, .tmp, rename into the queue).
func churn(dir string, n, round int, pct float64) error {
	k := int(float64(n) * pct / 100 / 2)
	for j := range k {
		old := round*k + j // an entry of the original spool
		for _, p := range []string{dir + "/.data/" + name(old), entryPath(dir, old), dir + "/.registry/" + name(old)} {
			if err := unix.Unlink(p); err != nil {
				return fmt.Errorf("unlink %s: %w", p, err)
			}
		}
		nw := n + round*k + j
		nm := name(nw)
		if err := create(dir+"/.registry/"+nm, 0); err != nil {
			return err
		}
		if err := create(dir+"/.data/"+nm, dataSize); err != nil {
			return err
		}
		if err := create(dir+"/.tmp/"+nm, 20); err != nil {
			return err
		}
		if err := unix.Rename(dir+"/.tmp/"+nm, entryPath(dir, nw)); err != nil {
			return err
		}
	}
	return nil
}

// readRound returns the next churn round of the spool.
func readRound(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, "benchmon-round"))
	if err != nil {
		return 0
	}
	var r int
	fmt.Sscan(string(b), &r)
	return r
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func cpuTime() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// waitSizes waits until the snapshot counts every payload: a full scan
// leaves their sizes to a background reading after the cycle, and holds
// the names to read until then.
func waitSizes(m *monitor.Monitor) {
	for m.Snapshot().DataBytesPending {
		time.Sleep(time.Millisecond)
	}
}

func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func totalEntries(s *monitor.Snapshot) int {
	t := 0
	for _, q := range s.Queues {
		t += q.Entries + q.CheckedOut
	}
	return t
}

// settle waits until the monitor's snapshots show the expected spool and
// stop changing (events applied and published).
func settle(m *monitor.Monitor, n int) error {
	deadline := time.Now().Add(5 * time.Minute)
	last := m.Snapshot()
	stable := time.Now()
	for time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		s := m.Snapshot()
		if s != last {
			last, stable = s, time.Now()
			continue
		}
		if s.RegistryEntries == n && totalEntries(s) == n && time.Since(stable) > 300*time.Millisecond {
			return nil
		}
	}
	return fmt.Errorf("monitor did not settle: %d registry entries, %d in queues, want %d", last.RegistryEntries, totalEntries(last), n)
}

func measure(dir string, n, runs int, pct float64) error {
	ctx := context.Background()
	fmt.Printf("spool %s: %d entries, %d files; GOMAXPROCS=%d; %d runs each, medians\n", dir, n, 3*n+5, runtime.GOMAXPROCS(0), runs)
	var cm, fm time.Duration
	if !skipFull {
		var err error
		if cm, fm, err = measureFull(ctx, dir, n, runs); err != nil {
			return err
		}
	}
	if onlyFull {
		return nil
	}
	return measureIncremental(ctx, dir, n, runs, pct, cm, fm)
}

// measureFull times full cycles (a monitor that does not watch scans the
// whole spool every cycle) against find, which stats every file.
func measureFull(ctx context.Context, dir string, n, runs int) (cycle, find time.Duration, err error) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	findRun := func() (time.Duration, error) {
		cmd := exec.Command("find", dir, "-printf", "%T@ %p\n")
		devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			return 0, err
		}
		defer devnull.Close()
		cmd.Stdout = devnull
		start := time.Now()
		err = cmd.Run()
		return time.Since(start), err
	}
	fullCfg := monitor.DefaultConfig()
	fullCfg.DisableWatch, fullCfg.Logger = true, quiet
	full, err := monitor.New("bench", dir, fullCfg)
	if err != nil {
		return 0, 0, err
	}
	defer full.Close()
	// Warm the caches with one of each, then alternate.
	if _, err := findRun(); err != nil {
		return 0, 0, fmt.Errorf("find: %w", err)
	}
	if _, err := full.Cycle(ctx); err != nil {
		return 0, 0, err
	}
	waitSizes(full)
	var profile *os.File
	if fullProfile != "" {
		if profile, err = os.Create(fullProfile); err != nil {
			return 0, 0, err
		}
		defer profile.Close()
	}
	var findTimes, fullTimes, sizesTimes, cpuTimes []time.Duration
	for range runs {
		d, err := findRun()
		if err != nil {
			return 0, 0, err
		}
		findTimes = append(findTimes, d)
		if profile != nil {
			if err := pprof.StartCPUProfile(profile); err != nil {
				return 0, 0, err
			}
		}
		start, cpu0 := time.Now(), cpuTime()
		_, err = full.Cycle(ctx)
		fullTimes = append(fullTimes, time.Since(start))
		cpuTimes = append(cpuTimes, cpuTime()-cpu0)
		if err != nil {
			return 0, 0, err
		}
		waitSizes(full)
		sizesTimes = append(sizesTimes, time.Since(start))
		if profile != nil {
			pprof.StopCPUProfile()
			profile = nil // one profile: the first measured cycle
		}
	}
	if s := full.Snapshot(); s.RegistryEntries != n || totalEntries(s) != n {
		return 0, 0, fmt.Errorf("full scan saw %d registry entries and %d queued, want %d", s.RegistryEntries, totalEntries(s), n)
	}
	full.Close()
	fm, cm := median(findTimes), median(fullTimes)
	fmt.Printf("find -printf '%%T@ %%p\\n':  %8.3fs  (runs %v)\n", fm.Seconds(), findTimes)
	fmt.Printf("full cycle (cold: start, overflow, no inotify): %8.3fs  (runs %v)\n", cm.Seconds(), fullTimes)
	fmt.Printf("full cycle (cold) / find: %8.3f  (target <= 0.35); CPU time of the cycle %v (runs %v)\n", cm.Seconds()/fm.Seconds(), median(cpuTimes), cpuTimes)
	sm := median(sizesTimes)
	fmt.Printf("full cycle and payload sizes (cold): %8.3fs  (runs %v)\n", sm.Seconds(), sizesTimes)
	fmt.Printf("full cycle and payload sizes (cold) / find: %8.3f\n", sm.Seconds()/fm.Seconds())
	return cm, fm, nil
}

func measureIncremental(ctx context.Context, dir string, n, runs int, pct float64, cm, fm time.Duration) error {
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	debug.FreeOSMemory()
	before := heapAlloc()
	// The clock runs ahead by offset, which the warm rescan runs below move
	// past FullRescanEvery.
	var offset atomic.Int64
	cfg := monitor.DefaultConfig()
	cfg.Logger, cfg.FullRescanEvery = quiet, time.Hour
	cfg.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	m, err := monitor.New("bench", dir, cfg)
	if err != nil {
		return err
	}
	defer m.Close()
	if _, err := m.Cycle(ctx); err != nil {
		return err
	}
	if !m.Snapshot().Watching {
		return fmt.Errorf("the monitor is not watching the spool (inotify limits?)")
	}
	waitSizes(m) // what the index holds once the payloads' sizes are read
	after := heapAlloc()
	perEntry := float64(after-before) / float64(n)
	fmt.Printf("memory holding the index: %8.1f MiB, %.1f B/entry  (target <= 200)\n", float64(after-before)/(1<<20), perEntry)

	var incTimes, incCPU []time.Duration
	fullScans := m.Snapshot().FullScans
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return err
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	round0 := readRound(dir)
	for r := range runs {
		cpu0 := cpuTime()
		r := round0 + r
		// Recorded first: a failed churn may have changed the spool.
		if err := os.WriteFile(filepath.Join(dir, "benchmon-round"), []byte(fmt.Sprint(r+1)), 0o644); err != nil {
			return err
		}
		cmd := exec.Command(os.Args[0], "churn", "-dir", dir, "-n", fmt.Sprint(n), "-round", fmt.Sprint(r), "-pct", fmt.Sprint(pct))
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("churn: %w", err)
		}
		if err := settle(m, n); err != nil {
			return err
		}
		start := time.Now()
		if _, err := m.Cycle(ctx); err != nil {
			return err
		}
		incTimes = append(incTimes, time.Since(start))
		incCPU = append(incCPU, cpuTime()-cpu0)
	}
	if fs := m.Snapshot().FullScans; fs != fullScans {
		fmt.Printf("WARNING: %d full rescans during the incremental runs (inotify overflow?)\n", fs-fullScans)
	}
	im, ic := median(incTimes), median(incCPU)
	changed := 2 * int(float64(n)*pct/100/2)
	fmt.Printf("incremental cycle after %d entries (%.2g%%) changed: %8.4fs  (runs %v)\n", changed, pct, im.Seconds(), incTimes)
	fmt.Printf("monitor CPU for those changes (inotify events + cycle): %8.4fs\n", ic.Seconds())
	if cm > 0 {
		fmt.Printf("incremental cycle / full cycle (cold): %8.4f  (target <= 0.02)\n", im.Seconds()/cm.Seconds())
		fmt.Printf("monitor CPU for the changes / full cycle (cold): %8.4f\n", ic.Seconds()/cm.Seconds())
	}

	// The periodic full rescan of a watched spool (warm: it lists every
	// directory and reconciles the index, statting only unknown files).
	var warmTimes []time.Duration
	for range runs {
		offset.Add(int64(2 * time.Hour))
		before := m.Snapshot().FullScans
		start := time.Now()
		if _, err := m.Cycle(ctx); err != nil {
			return err
		}
		warmTimes = append(warmTimes, time.Since(start))
		if m.Snapshot().FullScans != before+1 {
			return fmt.Errorf("the cycle did not rescan")
		}
	}
	wm := median(warmTimes)
	fmt.Printf("periodic full rescan (warm, watched spool): %8.3fs  (runs %v)\n", wm.Seconds(), warmTimes)
	if fm > 0 {
		fmt.Printf("periodic full rescan / find: %8.3f  (target <= 0.5)\n", wm.Seconds()/fm.Seconds())
		fmt.Printf("incremental cycle / periodic full rescan: %8.4f  (target <= 0.02)\n", median(incTimes).Seconds()/wm.Seconds())
	}

	// Latency from one enqueue to a snapshot that shows it.
	var lat []time.Duration
	for i := range runs {
		time.Sleep(300 * time.Millisecond) // a quiet spell, as between enqueues
		nm := fmt.Sprintf("latency-%d", i)
		before := m.Snapshot().Queues[0].Entries
		create(dir+"/.registry/"+nm, 0)
		create(dir+"/.data/"+nm, dataSize)
		start := time.Now()
		create(dir+"/active/"+nm, 20)
		for m.Snapshot().Queues[0].Entries == before {
			if time.Since(start) > time.Minute {
				s := m.Snapshot()
				return fmt.Errorf("enqueue not seen in a minute: watching %v, %d full scans, %d entries in %s", s.Watching, s.FullScans, s.Queues[0].Entries, s.Queues[0].Queue)
			}
			time.Sleep(time.Millisecond)
		}
		lat = append(lat, time.Since(start))
		for _, p := range []string{dir + "/active/" + nm, dir + "/.data/" + nm, dir + "/.registry/" + nm} {
			if err := unix.Unlink(p); err != nil {
				return fmt.Errorf("unlink %s: %w", p, err)
			}
		}
		for m.Snapshot().Queues[0].Entries != before {
			if time.Since(start) > time.Minute {
				return fmt.Errorf("removal not seen in a minute")
			}
			time.Sleep(time.Millisecond)
		}
	}
	fmt.Printf("enqueue to snapshot:      %8.4fs  (runs %v)\n", median(lat).Seconds(), lat)
	return nil
}

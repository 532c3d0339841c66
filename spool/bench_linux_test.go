package spool

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Benchmarks of the library against a floor: the same system calls, in the
// same order, in straight-line code with golang.org/x/sys/unix and nothing
// else (no throttle, no FS interface, no name validation, no inotify
// library). Each row (operation, durability, goroutines) runs the library
// and the floor in alternating rounds, so that both see the same machine
// (the load of a shared machine changes from second to second), in the same
// spool (the cost of creating a file differs from one directory to another
// by a factor of two or more on ext4): the library works in queue q, the
// floor in queue f, and they share .registry, .data and .tmp. A row reports
// the throughput of each (lib-ops/s, floor-ops/s) and their ratio
// (lib/floor); scripts/bench-spool.sh prints the table.
//
// The floor is the per-operation fsync floor: every operation issues its own
// fsyncs, as the library did before group commit. With several goroutines
// the library shares flushes among them (groupcommit.go) and the floor
// does not, so a ratio above 1 is what group commit gains over it.

var (
	benchMeta = []byte(`{"id":"0123456789abcdef","status":"send_now","attempts":0,"next_hop":"mx.example.com"}`)
	benchData = func() []byte {
		b := make([]byte, 4096)
		for i := range b {
			b[i] = byte('a' + i%26)
		}
		return b
	}()
	benchDurabilities = []Durability{DurabilityNone, DurabilityFiles, DurabilityFull}
)

// benchGoroutines are the rows' goroutine counts: one (group commit must
// not slow a lone goroutine), 8 and 32 (concurrent operations share their
// flushes).
var benchGoroutines = []int{1, 8, 32}

// benchRows runs row for every durability and goroutine count.
func benchRows(b *testing.B, row func(b *testing.B, d Durability, g int)) {
	for _, d := range benchDurabilities {
		for _, g := range benchGoroutines {
			b.Run(fmt.Sprintf("%s/g%d", d, g), func(b *testing.B) { row(b, d, g) })
		}
	}
}

// compare runs b.N operations of the library (lib) and b.N of the floor in
// alternating rounds of up to 8 operations per goroutine, each round on g
// goroutines (work(w, i): goroutine w does operation i), alternating which
// goes first, and reports both throughputs and their ratio.
func compare(b *testing.B, g int, lib, floor func(w, i int)) {
	compareCeiling(b, g, lib, floor, nil, nil)
}

// compareCeiling is compare with a third side, when ceiling is not nil:
// the floor's system calls without a single flush, the most that any
// durable implementation could reach on this machine. Its rounds take
// turns with the other two, and settle (untimed) runs after each of them
// to write back what they left dirty, so that the next side's flushes do
// not pay for it. It reports the ceiling's throughput and its ratio to
// the floor (ceiling-ratio): where that is below 2, no group commit can
// reach 2x the floor in that run.
func compareCeiling(b *testing.B, g int, lib, floor, ceiling func(w, i int), settle func()) {
	var libT, floorT, ceilT time.Duration
	done := 0
	sides := 2
	if ceiling != nil {
		sides = 3
	}
	b.ResetTimer()
	for round := 0; done < b.N; round++ {
		n := min(8*g, b.N-done)
		for k := range sides {
			switch (round + k) % sides {
			case 0:
				libT += phase(g, done, n, lib)
			case 1:
				floorT += phase(g, done, n, floor)
			case 2:
				ceilT += phase(g, done, n, ceiling)
				b.StopTimer()
				settle()
				b.StartTimer()
			}
		}
		done += n
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/libT.Seconds(), "lib-ops/s")
	b.ReportMetric(float64(b.N)/floorT.Seconds(), "floor-ops/s")
	b.ReportMetric(floorT.Seconds()/libT.Seconds(), "ratio")
	if ceiling != nil {
		b.ReportMetric(float64(b.N)/ceilT.Seconds(), "ceiling-ops/s")
		b.ReportMetric(floorT.Seconds()/ceilT.Seconds(), "ceiling-ratio")
	}
}

// phase runs operations [from, from+n) on g goroutines and returns the wall time.
func phase(g, from, n int, work func(w, i int)) time.Duration {
	var next atomic.Int64
	next.Store(int64(from))
	end := int64(from + n)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range g {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= end {
					return
				}
				work(w, int(i))
			}
		}()
	}
	wg.Wait()
	return time.Since(start)
}

// benchSpool creates a spool with queues q (the library's), f (the
// floor's) and n (the ceiling's) for one benchmark run, under benchRoot,
// and flushes the file system, so that earlier runs' dirty pages do not
// slow its fsyncs.
func benchSpool(b *testing.B, d Durability) *Spool {
	b.Helper()
	root, err := benchRoot()
	if err != nil {
		b.Fatal(err)
	}
	dir, err := os.MkdirTemp(root, "run-")
	if err != nil {
		b.Fatal(err)
	}
	s, err := Create(filepath.Join(dir, "spool"), []string{"f", "n", "q"}, &Options{Durability: d})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	syncFS(b, s.Dir())
	return s
}

func syncFS(b *testing.B, dir string) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	unix.Syncfs(fd)
	unix.Close(fd)
}

// fill enqueues n entries into each of queues q and f, alternately, without
// fsyncs (then flushes), and returns their names.
func fill(b *testing.B, s *Spool, n int) (q, f []string) {
	b.Helper()
	fast, err := Open(s.Dir(), &Options{Durability: DurabilityNone})
	if err != nil {
		b.Fatal(err)
	}
	q, f = make([]string, n), make([]string, n)
	for i := range n {
		if q[i], err = fast.EnqueueBytes(context.Background(), "q", benchMeta, benchData, EnqueueOptions{}); err != nil {
			b.Fatal(err)
		}
		if f[i], err = fast.EnqueueBytes(context.Background(), "f", benchMeta, benchData, EnqueueOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	syncFS(b, s.Dir())
	return q, f
}

func BenchmarkEnqueue(b *testing.B) {
	benchRows(b, func(b *testing.B, d Durability, g int) {
		s := benchSpool(b, d)
		f, c := newFloor(s), newCeiling(b, s)
		var ceiling func(w, i int)
		if c != nil {
			ceiling = func(int, int) { c.enqueue("n", benchMeta, benchData) }
		}
		compareCeiling(b, g, func(int, int) {
			if _, err := s.EnqueueBytes(context.Background(), "q", benchMeta, benchData, EnqueueOptions{}); err != nil {
				b.Error(err)
			}
		}, func(int, int) {
			f.enqueue("f", benchMeta, benchData)
		}, ceiling, func() { syncFS(b, s.Dir()) })
	})
}

func BenchmarkCheckoutRemove(b *testing.B) {
	benchRows(b, func(b *testing.B, d Durability, g int) {
		s := benchSpool(b, d)
		f := newFloor(s)
		libNames, floorNames := fill(b, s, b.N)
		compare(b, g, func(_, i int) {
			c, err := s.Checkout(context.Background(), "q", libNames[i])
			if err == nil {
				err = c.Remove()
			}
			if err != nil {
				b.Error(err)
			}
		}, func(_, i int) {
			fd, _, ok := f.checkout("f", floorNames[i])
			if !ok {
				b.Error("floor checkout failed")
				return
			}
			f.remove("f", floorNames[i], fd)
		})
	})
}

// BenchmarkCycle: each goroutine enqueues an entry, dequeues one (its own
// or another's) with a blocking dequeue, and removes it.
func BenchmarkCycle(b *testing.B) {
	benchRows(b, func(b *testing.B, d Durability, g int) {
		s := benchSpool(b, d)
		f, c := newFloor(s), newCeiling(b, s)
		readers := make([]*Reader, g)
		watchers := make([]int, g)
		var ceilWatchers []int
		for w := range g {
			r, err := s.NewReader("q")
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			readers[w] = r
			watchers[w] = f.watch("f")
			defer unix.Close(watchers[w])
			if c != nil {
				ceilWatchers = append(ceilWatchers, c.watch("n"))
				defer unix.Close(ceilWatchers[w])
			}
		}
		var ceiling func(w, i int)
		if c != nil {
			ceiling = func(w, _ int) {
				c.enqueue("n", benchMeta, benchData)
				c.dequeueRemove("n", ceilWatchers[w])
			}
		}
		ctx := context.Background()
		compareCeiling(b, g, func(w, _ int) {
			if _, err := s.EnqueueBytes(context.Background(), "q", benchMeta, benchData, EnqueueOptions{}); err != nil {
				b.Error(err)
				return
			}
			c, err := readers[w].Dequeue(ctx)
			if err == nil {
				err = c.Remove()
			}
			if err != nil {
				b.Error(err)
			}
		}, func(w, _ int) {
			f.enqueue("f", benchMeta, benchData)
			f.dequeueRemove("f", watchers[w])
		}, ceiling, func() { syncFS(b, s.Dir()) })
	})
}

// BenchmarkWakeLatency measures, for a reader blocked in Dequeue, the time
// from the rename of an entry into the queue until Dequeue returns it
// (library), and until a blocking read of an inotify descriptor watching
// the queue returns (floor). It reports the 50th, 90th and 99th
// percentiles and the maximum, in microseconds, over b.N samples taken
// one at a time with the reader idle in between.
func BenchmarkWakeLatency(b *testing.B) {
	b.Run("library", func(b *testing.B) {
		s := benchSpool(b, DurabilityNone)
		r, err := s.NewReader("q")
		if err != nil {
			b.Fatal(err)
		}
		defer r.Close()
		got := make(chan time.Time)
		go func() {
			for {
				c, err := r.Dequeue(context.Background())
				if err != nil {
					close(got)
					return
				}
				t := time.Now()
				c.Remove()
				got <- t
			}
		}()
		wakeSamples(b, s, func() time.Time { return <-got })
	})
	b.Run("floor", func(b *testing.B) {
		s := benchSpool(b, DurabilityNone)
		f := newFloor(s)
		in := f.watch("q")
		defer unix.Close(in)
		got := make(chan time.Time)
		go func() {
			buf := make([]byte, 4096)
			for {
				if _, err := unix.Read(in, buf); err != nil {
					close(got)
					return
				}
				got <- time.Now()
			}
		}()
		wakeSamples(b, s, func() time.Time { return <-got })
	})
}

// wakeSamples stages b.N entries one at a time, renames each into queue q,
// and collects the latency until wait returns.
func wakeSamples(b *testing.B, s *Spool, wait func() time.Time) {
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer() // the timer runs through the pauses: b.N is about 500 a second
	for i := 0; i < b.N; i++ {
		name := fmt.Sprintf("w%09d", i)
		for _, p := range []string{s.registryPath(name), s.dataPath(name), s.tmpPath(name)} {
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				b.Fatal(err)
			}
		}
		time.Sleep(2 * time.Millisecond) // let the reader go idle
		start := time.Now()
		if err := unix.Renameat2(unix.AT_FDCWD, s.tmpPath(name), unix.AT_FDCWD, s.queuePath("q", name), unix.RENAME_NOREPLACE); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, wait().Sub(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(lat)))) - 1
		return float64(lat[max(i, 0)]) / 1e3
	}
	b.ReportMetric(pct(0.50), "p50-us")
	b.ReportMetric(pct(0.90), "p90-us")
	b.ReportMetric(pct(0.99), "p99-us")
	b.ReportMetric(pct(1), "max-us")
	b.ReportMetric(0, "ns/op")
}

// floor is the baseline: the library's system calls in straight-line code.
type floor struct {
	dir string
	d   Durability
	seq atomic.Uint64
	tag string // 8 characters that keep this floor's names apart from another's
}

func newFloor(s *Spool) *floor { return &floor{dir: s.Dir(), d: s.Durability()} }

// newCeiling returns, for rows at DurabilityFull (those of the group-commit
// targets), the floor without flushes (DurabilityNone) in s, working in
// queue n; nil for the other rows.
func newCeiling(b *testing.B, s *Spool) *floor {
	if s.Durability() != DurabilityFull {
		return nil
	}
	return &floor{dir: s.Dir(), d: DurabilityNone, tag: "ceiling0"}
}

const (
	floorNew  = unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_CLOEXEC | unix.O_NOFOLLOW
	floorRead = unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOFOLLOW | unix.O_NONBLOCK
	floorDir  = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC
)

// name returns a name as long as TimeNames' (52 bytes) that sorts in
// creation order.
func (f *floor) name() string {
	b := make([]byte, 0, 52)
	b = append(b, "20260101T000000.000000000Z-"...)
	b = append(b, cmp.Or(f.tag, "00000000")...)
	b = append(b, '-')
	n := strconv.AppendUint(nil, f.seq.Add(1), 16)
	for i := len(n); i < 16; i++ {
		b = append(b, '0')
	}
	return string(append(b, n...))
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

func (f *floor) syncDir(p string) {
	fd, err := unix.Open(p, floorDir, 0)
	must(err)
	must(unix.Fsync(fd))
	unix.Close(fd)
}

func (f *floor) writeNew(p string, b []byte) {
	fd, err := unix.Open(p, floorNew, 0o644)
	must(err)
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		must(err)
		b = b[n:]
	}
	if f.d >= DurabilityFiles {
		must(unix.Fsync(fd))
	}
	must(unix.Close(fd))
}

// enqueue: reserve, payload, staged metadata, rename into the queue.
func (f *floor) enqueue(q string, meta, data []byte) string {
	name := f.name()
	reg := f.dir + "/.registry/" + name
	fd, err := unix.Open(reg, floorNew, 0o644)
	must(err)
	must(unix.Close(fd))
	f.writeNew(f.dir+"/.data/"+name, data)
	tmp := f.dir + "/.tmp/" + name
	f.writeNew(tmp, meta)
	if f.d == DurabilityFull {
		f.syncDir(f.dir + "/.registry")
		f.syncDir(f.dir + "/.data")
	}
	must(unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, f.dir+"/"+q+"/"+name, unix.RENAME_NOREPLACE))
	if f.d == DurabilityFull {
		f.syncDir(f.dir + "/" + q)
		f.syncDir(f.dir + "/.tmp")
	}
	return name
}

func (f *floor) touch(p string, now time.Time) {
	ts := unix.NsecToTimespec(now.UnixNano())
	unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
}

// checkout: open and lock the queue file, check it is still there, touch,
// rename into .checkout, read the metadata. ok is false when another
// worker had it.
func (f *floor) checkout(q, name string) (int, []byte, bool) {
	src := f.dir + "/" + q + "/" + name
	fd, err := unix.Open(src, floorRead, 0)
	if err != nil {
		return -1, nil, false
	}
	var st, cur unix.Stat_t
	must(unix.Fstat(fd, &st))
	if unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB) != nil || unix.Lstat(src, &cur) != nil || cur.Ino != st.Ino {
		unix.Close(fd)
		return -1, nil, false
	}
	now := time.Now()
	f.touch(f.dir+"/.registry/"+name, now)
	f.touch(src, now)
	if unix.Renameat2(unix.AT_FDCWD, src, unix.AT_FDCWD, f.dir+"/"+q+"/.checkout/"+name, unix.RENAME_NOREPLACE) != nil {
		unix.Close(fd)
		return -1, nil, false
	}
	buf := make([]byte, st.Size+1)
	n := 0
	for {
		m, err := unix.Read(fd, buf[n:])
		must(err)
		if m == 0 {
			break
		}
		n += m
	}
	if f.d == DurabilityFull {
		f.syncDir(f.dir + "/" + q + "/.checkout")
		f.syncDir(f.dir + "/" + q)
	}
	return fd, buf[:n], true
}

// remove: check the checkout, touch, unlink the checkout file, unlock, then
// the payload and the registry file.
func (f *floor) remove(q, name string, fd int) {
	co := f.dir + "/" + q + "/.checkout/" + name
	var st unix.Stat_t
	must(unix.Lstat(co, &st))
	f.touch(f.dir+"/.registry/"+name, time.Now())
	must(unix.Unlink(co))
	unix.Close(fd)
	if f.d == DurabilityFull {
		f.syncDir(f.dir + "/" + q + "/.checkout")
	}
	must(unix.Unlink(f.dir + "/.data/" + name))
	must(unix.Unlink(f.dir + "/.registry/" + name))
	if f.d == DurabilityFull {
		f.syncDir(f.dir + "/.data")
		f.syncDir(f.dir + "/.registry")
	}
}

// watch returns an inotify descriptor watching queue q for arrivals.
func (f *floor) watch(q string) int {
	in, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	must(err)
	_, err = unix.InotifyAddWatch(in, f.dir+"/"+q, unix.IN_CREATE|unix.IN_MOVED_TO)
	must(err)
	return in
}

// list reads queue q's names with getdents and sorts them.
func (f *floor) list(q string) []string {
	fd, err := unix.Open(f.dir+"/"+q, floorDir, 0)
	must(err)
	defer unix.Close(fd)
	buf := make([]byte, 64<<10)
	var names []string
	for {
		n, err := unix.Getdents(fd, buf)
		must(err)
		if n <= 0 {
			break
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
	names = slices.DeleteFunc(names, func(n string) bool { return n[0] == '.' })
	slices.Sort(names)
	return names
}

// dequeueRemove waits for an arrival on the inotify descriptor in, lists
// the queue, claims the first entry it can, and removes it; it waits again
// when it could claim nothing.
func (f *floor) dequeueRemove(q string, in int) {
	buf := make([]byte, 4096)
	for {
		_, err := unix.Read(in, buf)
		must(err)
		for _, name := range f.list(q) {
			if fd, _, ok := f.checkout(q, name); ok {
				f.remove(q, name, fd)
				return
			}
		}
	}
}

package monitor

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var benchEntries = flag.Int("bench.entries", 20000, "entries in the spool of the cycle benchmarks")

// buildBenchSpool creates a spool of n entries directly (registry, data and
// queue files, one in a thousand checked out) across three queues.
func buildBenchSpool(b *testing.B, n int) string {
	b.Helper()
	dir, _ := newTestSpool(b)
	for i := range n {
		addBenchEntry(b, dir, i)
	}
	return dir
}

func benchName(i int) string { return fmt.Sprintf("20261125T203512.%09dZ-0001f3a2-%016x", i, i) }

func benchQueuePath(dir string, i int) string {
	q := []string{"queue1", "queue2", "queue3"}[i%3]
	if i%1000 == 7 {
		return filepath.Join(dir, q, ".checkout", benchName(i))
	}
	return filepath.Join(dir, q, benchName(i))
}

func addBenchEntry(b *testing.B, dir string, i int) {
	name := benchName(i)
	for _, p := range []string{filepath.Join(dir, ".registry", name), filepath.Join(dir, ".data", name), benchQueuePath(dir, i)} {
		if err := os.WriteFile(p, []byte("0123456789"), 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

func removeBenchEntry(b *testing.B, dir string, i int) {
	name := benchName(i)
	for _, p := range []string{filepath.Join(dir, ".data", name), benchQueuePath(dir, i), filepath.Join(dir, ".registry", name)} {
		if err := os.Remove(p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFullCycle measures a cycle that scans the whole spool, as every
// cycle does where the spool cannot be watched. Its metric files/op is the
// number of files in the spool.
func BenchmarkFullCycle(b *testing.B) {
	n := *benchEntries
	dir := buildBenchSpool(b, n)
	now := time.Now()
	m := newTestMonitor(b, dir, conf(noWatch), &now)
	ctx := context.Background()
	mustCycle(b, m)
	for b.Loop() {
		if _, err := m.Cycle(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(3*n), "files/op")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(3*n), "ns/file")
}

// BenchmarkIncrementalCycle measures a watching monitor's cycle after 1% of
// the entries changed (half removed, as many added). The changes and the
// wait until the monitor has applied their events are outside the timer;
// that wait is reported as event-wait-ns/op.
func BenchmarkIncrementalCycle(b *testing.B) {
	n := *benchEntries
	dir := buildBenchSpool(b, n)
	now := time.Now()
	m := newTestMonitor(b, dir, conf(func(c *Config) { c.FullRescanEvery = time.Hour }), &now)
	ctx := context.Background()
	mustCycle(b, m)
	k := max(1, n/200) // 1% changed: k removed, k added
	next, oldest := n, 0
	var eventWork time.Duration
	for b.Loop() {
		b.StopTimer()
		for range k {
			removeBenchEntry(b, dir, oldest)
			oldest++
			addBenchEntry(b, dir, next)
			next++
		}
		changed := time.Now()
		syncMonitor(b, m)
		eventWork += time.Since(changed)
		b.StartTimer()
		if _, err := m.Cycle(ctx); err != nil {
			b.Fatal(err)
		}
	}
	if fs := m.Snapshot().FullScans; fs != 1 {
		b.Errorf("%d full scans: the incremental cycles were not incremental", fs)
	}
	b.ReportMetric(float64(2*k), "entries-changed/op")
	b.ReportMetric(float64(eventWork.Nanoseconds())/float64(b.N), "event-wait-ns/op")
}

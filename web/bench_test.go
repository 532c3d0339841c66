package web

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/spool-agent/spool-agent/exporters/promexporter"
	"github.com/spool-agent/spool-agent/monitor"
	"github.com/spool-agent/spool-agent/spool"
)

// The size: 100 spools of 10 queues, 1,000 problems.
const (
	benchSpools   = 100
	benchQueues   = 10
	benchProblems = 1000
	benchEntries  = 100 // waiting entries per queue, spread over 0 to 2 days
)

var benchOnce struct {
	sync.Once
	now   time.Time
	queue []monitor.QueueStats // a real monitor's, with their age index
	err   error
}

// benchQueueStats returns the queues of a real spool of benchQueues
// queues of benchEntries entries each, as its monitor's snapshot has them
// (the age index the qshape rows read included), built once.
func benchQueueStats(b *testing.B) (time.Time, []monitor.QueueStats) {
	benchOnce.Do(func() {
		benchOnce.now = time.Now()
		tmp, err := os.MkdirTemp("", "web-bench-")
		if err != nil {
			benchOnce.err = err
			return
		}
		defer os.RemoveAll(tmp)
		var queues []string
		for i := range benchQueues {
			queues = append(queues, fmt.Sprintf("queue%02d", i))
		}
		dir := filepath.Join(tmp, "s")
		s, err := spool.Create(dir, queues, &spool.Options{Durability: spool.DurabilityNone})
		if err != nil {
			benchOnce.err = err
			return
		}
		for _, q := range queues {
			for j := range benchEntries {
				name := fmt.Sprintf("%s-e%04d", q, j)
				if _, err := s.EnqueueBytes(context.Background(), q, nil, nil, spool.EnqueueOptions{Name: name}); err != nil {
					benchOnce.err = err
					return
				}
				at := benchOnce.now.Add(-time.Duration(j) * 48 * time.Hour / benchEntries)
				if err := os.Chtimes(filepath.Join(dir, q, name), at, at); err != nil {
					benchOnce.err = err
					return
				}
			}
		}
		s.Close()
		cfg := monitor.DefaultConfig()
		cfg.DisableWatch = true
		cfg.Now = func() time.Time { return benchOnce.now }
		cfg.Logger = slog.New(slog.DiscardHandler)
		m, err := monitor.New("s", dir, cfg)
		if err != nil {
			benchOnce.err = err
			return
		}
		defer m.Close()
		if _, err := m.Cycle(context.Background()); err != nil {
			benchOnce.err = err
			return
		}
		benchOnce.queue = m.Snapshot().Queues
	})
	if benchOnce.err != nil {
		b.Fatal(benchOnce.err)
	}
	return benchOnce.now, benchOnce.queue
}

// benchSnapshots are benchSpools spools sharing the real queues, with
// benchProblems problems in all (half of them alerting), spread evenly
// or, with oneSpool, all in the first spool.
func benchSnapshots(b *testing.B, oneSpool bool) (time.Time, []*monitor.Snapshot) {
	now, queues := benchQueueStats(b)
	snaps := make([]*monitor.Snapshot, benchSpools)
	for i := range snaps {
		snaps[i] = &monitor.Snapshot{
			Name: fmt.Sprintf("spool%03d", i), Dir: fmt.Sprintf("/var/spool/s%03d", i),
			Up: true, Time: now, Watching: true, Queues: queues, Cycles: 10, LastSuccess: now,
		}
	}
	for j := range benchProblems {
		s := snaps[j%benchSpools]
		if oneSpool {
			s = snaps[0]
		}
		p := monitor.Problem{Kind: monitor.KindTooOld, Dir: monitor.Dir{Kind: monitor.DirCheckout, Queue: "queue03"},
			Name: fmt.Sprintf("<entry-%05d>", j), ModTime: now.Add(-time.Duration(j) * time.Minute)}
		s.Problems = append(s.Problems, p)
		s.Tracked = append(s.Tracked, monitor.TrackedProblem{Problem: p, Count: 1 + j%5, Alerting: j%2 == 0})
		if j%2 == 0 {
			s.Alerting = append(s.Alerting, p)
		}
	}
	for _, s := range snaps {
		monitor.SortProblems(s.Problems)
		monitor.SortProblems(s.Alerting)
		slices.SortFunc(s.Tracked, func(a, b monitor.TrackedProblem) int { return monitor.CompareProblems(a.Problem, b.Problem) })
	}
	return now, snaps
}

// discard is a ResponseWriter that keeps nothing: the benchmarks time the
// rendering, not a network.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(int)             {}

// BenchmarkRender times the console's responses on the size:
// the overview (100 spools, 1,000 queues with their qshape rows, 1,000
// problems), a spool page listing 1,000 problems, and the JSON API.
// Each reports its p99 beside the mean, and the p99 of the CPU time the
// render's thread used (on Linux; 0 elsewhere), which a machine busy with
// other work does not inflate as it does the wall clock.
func BenchmarkRender(b *testing.B) {
	for _, tc := range []struct {
		name, path string
		oneSpool   bool
	}{
		{"overview", "/", false},
		{"spool-1000-problems", "/spools/spool000", true},
		{"api", "/api/v1/spools", false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			now, snaps := benchSnapshots(b, tc.oneSpool)
			c := New(Options{Snapshots: func() []*monitor.Snapshot { return snaps }, Now: func() time.Time { return now }})
			req := httptest.NewRequest(http.MethodGet, tc.path, nil)
			lat := make([]time.Duration, 0, b.N)
			cpu := make([]time.Duration, 0, b.N)
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				w := &discard{h: http.Header{}}
				start, startCPU := time.Now(), threadCPU()
				c.ServeHTTP(w, req)
				lat, cpu = append(lat, time.Since(start)), append(cpu, threadCPU()-startCPU)
			}
			b.StopTimer()
			b.ReportMetric(float64(percentile(lat, 0.99))/1e6, "p99-ms")
			b.ReportMetric(float64(percentile(cpu, 0.99))/1e6, "cpu-p99-ms")
		})
	}
}

// BenchmarkOverviewVsMetrics renders the overview and the /metrics text
// of the same snapshots in turn (interleaved, so that the machine's
// changing speed affects both alike) and reports both p99s and their
// ratio: what the console costs next to a scrape.
func BenchmarkOverviewVsMetrics(b *testing.B) {
	now, snaps := benchSnapshots(b, false)
	get := func() []*monitor.Snapshot { return snaps }
	c := New(Options{Snapshots: get, Now: func() time.Time { return now }})
	exp := promexporter.New(get, promexporter.Options{Now: func() time.Time { return now }})
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	page := make([]time.Duration, 0, b.N)
	scrape := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		c.ServeHTTP(&discard{h: http.Header{}}, req)
		mid := time.Now()
		if err := exp.WriteText(io.Discard); err != nil {
			b.Fatal(err)
		}
		page, scrape = append(page, mid.Sub(start)), append(scrape, time.Since(mid))
	}
	b.StopTimer()
	p, s := percentile(page, 0.99), percentile(scrape, 0.99)
	b.ReportMetric(float64(p)/1e6, "console-p99-ms")
	b.ReportMetric(float64(s)/1e6, "metrics-p99-ms")
	b.ReportMetric(float64(p)/float64(s), "console/metrics")
}

func percentile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*q))]
}

package promexporter

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/spool-agent/spool-agent/monitor"
)

// syntheticSnapshots builds spools×queues snapshots with every per-queue
// series present and a few alerting problems per spool.
func syntheticSnapshots(spools, queues int) []*monitor.Snapshot {
	now := time.Now()
	snaps := make([]*monitor.Snapshot, spools)
	for i := range snaps {
		s := &monitor.Snapshot{
			Name: fmt.Sprintf("spool%03d", i), Dir: fmt.Sprintf("/var/spool/s%03d", i),
			Up: true, Time: now, RegistryEntries: 1000, TmpFiles: 3, DataBytes: 1 << 30,
			CycleDuration: 30 * time.Millisecond, LastSuccess: now, Cycles: 100, FullScans: 10, Watching: true,
			EventsTotal: map[monitor.Kind]map[monitor.EventType]uint64{
				monitor.KindTooOld: {monitor.Start: 5, monitor.End: 4},
			},
			Alerting: []monitor.Problem{
				{Kind: monitor.KindTooOld, Dir: monitor.Dir{Kind: monitor.DirCheckout, Queue: "q00"}, Name: "x"},
				{Kind: monitor.KindOrphaned, Dir: monitor.Dir{Kind: monitor.DirData}, Name: "y"},
			},
		}
		for j := 0; j < queues; j++ {
			s.Queues = append(s.Queues, monitor.QueueStats{
				Queue: fmt.Sprintf("q%02d", j), Entries: 100, CheckedOut: 2,
				OldestEntry: now.Add(-time.Hour), OldestCheckedOut: now.Add(-time.Minute), Arrivals: 12345,
			})
		}
		snaps[i] = s
	}
	return snaps
}

// scrapeLatencies serves h over HTTP and returns the sorted latencies of n
// sequential scrapes made the way Prometheus makes them (with gzip when gzip is true).
func scrapeLatencies(tb testing.TB, h http.Handler, n int, gzip bool) []time.Duration {
	srv := httptest.NewServer(h)
	defer srv.Close()
	client := srv.Client()
	lat := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
		if err != nil {
			tb.Fatal(err)
		}
		req.Header.Set("Accept", "text/plain;version=0.0.4")
		if gzip {
			req.Header.Set("Accept-Encoding", "gzip")
		} else {
			req.Header.Set("Accept-Encoding", "identity")
		}
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			tb.Fatal(err)
		}
		resp.Body.Close()
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	return lat
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	i := int(p * float64(len(sorted)-1))
	return sorted[i]
}

// BenchmarkScrape measures scrape latency percentiles for 100 spools of 10
// queues through the agent's handler (NewHandler: the text writer) and
// through promhttp over a registry (client_golang's Gather and encoder),
// with and without gzip. The baseline, measured in the same run, is promhttp
// serving the same exposition from families gathered in advance (encoding
// and HTTP only). Each b.N iteration is one batch of 200 scrapes per handler.
func BenchmarkScrape(b *testing.B) {
	for _, gzip := range []bool{false, true} {
		b.Run(fmt.Sprintf("spools=100,queues=10,gzip=%v", gzip), func(b *testing.B) {
			snaps := syntheticSnapshots(100, 10)
			e := New(func() []*monitor.Snapshot { return snaps }, Options{Version: "bench"})
			reg := prometheus.NewRegistry()
			reg.MustRegister(e)
			mfs, err := reg.Gather()
			if err != nil {
				b.Fatal(err)
			}
			series := 0
			for _, mf := range mfs {
				for _, m := range mf.GetMetric() {
					series++
					if h := m.GetHistogram(); h != nil {
						series += len(h.GetBucket()) + 2
					}
				}
			}
			baseline := promhttp.HandlerFor(prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return mfs, nil }), promhttp.HandlerOpts{})
			viaRegistry := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
			agent := NewHandler(e, nil, promhttp.HandlerOpts{})
			var agentLat, regLat, baseLat []time.Duration
			var agentCPU time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				c0 := processCPU()
				agentLat = append(agentLat, scrapeLatencies(b, agent, 200, gzip)...)
				agentCPU += processCPU() - c0
				regLat = append(regLat, scrapeLatencies(b, viaRegistry, 200, gzip)...)
				baseLat = append(baseLat, scrapeLatencies(b, baseline, 200, gzip)...)
			}
			b.StopTimer()
			slices.Sort(agentLat)
			slices.Sort(regLat)
			slices.Sort(baseLat)
			ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
			b.ReportMetric(float64(series), "samples")
			b.ReportMetric(ms(percentile(agentLat, 0.5)), "p50-ms")
			b.ReportMetric(ms(percentile(agentLat, 0.99)), "p99-ms")
			b.ReportMetric(ms(percentile(regLat, 0.5)), "promhttp-registry-p50-ms")
			b.ReportMetric(ms(percentile(regLat, 0.99)), "promhttp-registry-p99-ms")
			b.ReportMetric(ms(percentile(baseLat, 0.5)), "baseline-p50-ms")
			b.ReportMetric(ms(percentile(baseLat, 0.99)), "baseline-p99-ms")
			b.ReportMetric(float64(percentile(agentLat, 0.99))/float64(percentile(baseLat, 0.99)), "p99/baseline")
			// CPU per scrape (server and client, both in this process): what
			// latency would be without other processes competing for the cores.
			b.ReportMetric(ms(agentCPU/time.Duration(len(agentLat))), "cpu-ms/scrape")
		})
	}
}

// processCPU returns the user and system CPU time of this process.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkWriteText measures the text writer alone for 100 spools of 10 queues.
func BenchmarkWriteText(b *testing.B) {
	snaps := syntheticSnapshots(100, 10)
	e := New(func() []*monitor.Snapshot { return snaps }, Options{Version: "bench"})
	b.ReportAllocs()
	for b.Loop() {
		if err := e.WriteText(io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGather measures one Gather of 100 spools of 10 queues (no HTTP, no encoding).
func BenchmarkGather(b *testing.B) {
	snaps := syntheticSnapshots(100, 10)
	reg := prometheus.NewRegistry()
	reg.MustRegister(New(func() []*monitor.Snapshot { return snaps }, Options{Version: "bench"}))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCollect measures Collect alone (building the const metrics of 100
// spools of 10 queues), without the registry's Gather or any encoding.
func BenchmarkCollect(b *testing.B) {
	snaps := syntheticSnapshots(100, 10)
	e := New(func() []*monitor.Snapshot { return snaps }, Options{Version: "bench"})
	b.ReportAllocs()
	for b.Loop() {
		ch := make(chan prometheus.Metric, 16384)
		e.Collect(ch)
		close(ch)
		for range ch {
		}
	}
}

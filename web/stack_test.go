package web

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/spool-agent/spool-agent/collector"
	"github.com/spool-agent/spool-agent/exporters/promexporter"
	"github.com/spool-agent/spool-agent/internal/testkit"
	"github.com/spool-agent/spool-agent/monitor"
	"github.com/spool-agent/spool-agent/spool"
)

// problemSpool creates a spool at dir with waiting, checked-out and
// hostile-named entries, and leftovers that the monitor reports: an
// orphaned payload and an old temporary file.
func problemSpool(t *testing.T, dir string) {
	t.Helper()
	s, err := spool.Create(dir, []string{"active", "frozen"}, &spool.Options{Durability: spool.DurabilityNone})
	if err != nil {
		t.Fatal(err)
	}
	hourAgo := time.Now().Add(-time.Hour)
	for _, name := range []string{"msg1", "msg2", "<script>alert(1)", "held"} {
		if _, err := s.EnqueueBytes(context.Background(), "active", []byte("m"), []byte("d"), spool.EnqueueOptions{Name: name}); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(filepath.Join(dir, "active", name), hourAgo, hourAgo); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Checkout(context.Background(), "active", "held"); err != nil { // left checked out
		t.Fatal(err)
	}
	for _, p := range []string{".data/<img src=x onerror=alert(2)>", ".tmp/left-over"} {
		path := filepath.Join(dir, p)
		if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, hourAgo, hourAgo); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestAPIAgainstMetrics runs the real handler stack (a collector watching
// real spools, the Prometheus exporter's /metrics, the console) and checks
// that the JSON API's numbers are those of /metrics: up, each queue's
// entries, checked-out entries and oldest entry, and the alerting problems
// by kind, directory and queue.
func TestAPIAgainstMetrics(t *testing.T) {
	tmp := t.TempDir()
	mail, empty := filepath.Join(tmp, "mail"), filepath.Join(tmp, "empty")
	problemSpool(t, mail)
	if _, err := spool.Create(empty, []string{"q"}, &spool.Options{Durability: spool.DurabilityNone}); err != nil {
		t.Fatal(err)
	}
	cfg := monitor.DefaultConfig()
	cfg.CheckEvery = 20 * time.Millisecond
	cfg.AlertAfterCycles = 1
	cfg.Limits.MaxQueueAge = map[string]time.Duration{"active": 30 * time.Minute}
	cfg.Logger = slog.New(slog.DiscardHandler)
	events := NewEvents()
	col := collector.New(slog.New(slog.DiscardHandler), events.Record)
	if err := col.Apply([]collector.Spool{
		{Name: "mail", Dir: mail, Config: cfg},
		{Name: "empty", Dir: empty, Config: cfg},
		{Name: "gone", Dir: filepath.Join(tmp, "missing"), Config: cfg},
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- col.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	exp := promexporter.New(col.Snapshots, promexporter.Options{Version: "test"})
	others := prometheus.NewRegistry()
	srv := httptest.NewServer(New(Options{
		Snapshots: col.Snapshots,
		Events:    events,
		Metrics:   promexporter.NewHandler(exp, others, promhttp.HandlerOpts{Registry: others}),
	}))
	defer srv.Close()
	get := func(path string) string {
		t.Helper()
		resp, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
		}
		return string(b)
	}
	decode := func(body string) spoolsJSON {
		t.Helper()
		var doc spoolsJSON
		if err := json.Unmarshal([]byte(body), &doc); err != nil {
			t.Fatal(err)
		}
		return doc
	}

	// Wait until the problems alert (the spool does not change after that),
	// then take the API, /metrics and the API again; if the two API answers
	// differ, a cycle came in between: take them again.
	var doc spoolsJSON
	var metrics string
	testkit.WaitFor(t, 20*time.Second, "the problems alerting, with the same API answer around a scrape", func() bool {
		body := get("/api/v1/spools")
		doc = decode(body)
		alerting := 0
		for _, s := range doc.Spools {
			for _, p := range s.Problems {
				if p.Alerting {
					alerting++
				}
			}
		}
		if alerting < 4 {
			return false
		}
		metrics = get("/metrics")
		return get("/api/v1/spools") == body
	})

	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(metrics))
	if err != nil {
		t.Fatal(err)
	}
	// series returns the value of name's series with exactly labels.
	series := func(name string, labels map[string]string) (float64, bool) {
		f := families[name]
		if f == nil {
			return 0, false
		}
	next:
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue next
				}
			}
			return m.GetGauge().GetValue(), true
		}
		return 0, false
	}
	var names []string
	for _, s := range doc.Spools {
		names = append(names, s.Name)
		up, ok := series("spool_up", map[string]string{"spool": s.Name})
		if !ok || (up == 1) != s.Up {
			t.Errorf("%s: up %v, spool_up %v (%v)", s.Name, s.Up, up, ok)
		}
		for _, q := range s.Queues {
			l := map[string]string{"spool": s.Name, "queue": q.Name}
			if v, _ := series("spool_queue_entries", l); v != float64(q.Entries) {
				t.Errorf("%s/%s: entries %d, spool_queue_entries %v", s.Name, q.Name, q.Entries, v)
			}
			if v, _ := series("spool_queue_checked_out_entries", l); v != float64(q.CheckedOut) {
				t.Errorf("%s/%s: checked_out %d, spool_queue_checked_out_entries %v", s.Name, q.Name, q.CheckedOut, v)
			}
			v, ok := series("spool_queue_oldest_entry_timestamp_seconds", l)
			switch {
			case q.OldestEntryTimestamp == nil && ok:
				t.Errorf("%s/%s: oldest_entry_timestamp null, the series is %v", s.Name, q.Name, v)
			case q.OldestEntryTimestamp != nil:
				ts, err := time.Parse(time.RFC3339Nano, *q.OldestEntryTimestamp)
				if err != nil || !ok || math.Abs(float64(ts.UnixNano())/1e9-v) > 1e-6 {
					t.Errorf("%s/%s: oldest_entry_timestamp %s, the series %v (%v)", s.Name, q.Name, *q.OldestEntryTimestamp, v, ok)
				}
			}
		}
		want := map[[3]string]float64{}
		for _, p := range s.Problems {
			if p.Alerting {
				want[[3]string{p.Kind, p.Dir, p.Queue}]++
			}
		}
		got := map[[3]string]float64{}
		for _, m := range families["spool_problems"].GetMetric() {
			l := testkit.Labels(m)
			if l["spool"] == s.Name && m.GetGauge().GetValue() != 0 {
				got[[3]string{l["kind"], l["dir"], l["queue"]}] = m.GetGauge().GetValue()
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: alerting problems in the API %v, in spool_problems %v", s.Name, want, got)
		}
	}
	if fmt.Sprint(names) != "[empty gone mail]" {
		t.Errorf("spools %v", names)
	}
	// The hostile names arrived, and the page shows them as text.
	page := get("/spools/mail")
	for _, want := range []string{"active/&lt;script&gt;alert(1)", ".data/&lt;img src=x onerror=alert(2)&gt;"} {
		if !strings.Contains(page, want) {
			t.Errorf("no %q in the spool's page", want)
		}
	}
}

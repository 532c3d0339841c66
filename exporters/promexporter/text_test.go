package promexporter

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spool-agent/spool-agent/internal/testkit"
	"github.com/spool-agent/spool-agent/monitor"
)

// oddSnapshot has names that need escaping, a queue name that is not
// valid UTF-8 (a hostile directory: it once failed the whole scrape), and a
// kind this exporter does not know.
func oddSnapshot() *monitor.Snapshot {
	return &monitor.Snapshot{
		Name: `we"ird\name` + "\nx é", Up: true, Time: testNow,
		Queues: []monitor.QueueStats{
			{Queue: `q"1`, Entries: 1, OldestEntry: testNow.Add(-time1)},
			{Queue: "q\xff", Entries: 2},
			{Queue: `q\xff`, Entries: 3}, // a name that the escaped one must not collide with
		},
		Alerting: []monitor.Problem{
			{Kind: "future_kind", Dir: monitor.Dir{Kind: monitor.DirQueue, Queue: `q"1`}, Name: "n"},
			{Kind: monitor.KindOrphaned, Dir: monitor.Dir{Kind: monitor.DirQueue, Queue: "q\xfe"}, Name: "n\xfd"},
		},
		EventsTotal: map[monitor.Kind]map[monitor.EventType]uint64{"future_kind": {monitor.Start: 1}},
	}
}

const time1 = 1500000000 // 1.5s in nanoseconds

// TestWriteTextMatchesCollect checks that the text writer and Collect
// produce the same series, labels and values.
func TestWriteTextMatchesCollect(t *testing.T) {
	for name, snaps := range map[string][]*monitor.Snapshot{
		"none":  nil,
		"mail":  {mailSnapshot()},
		"mixed": {downSnapshot(), mailSnapshot(), oddSnapshot()},
		"many":  syntheticSnapshots(3, 4),
	} {
		t.Run(name, func(t *testing.T) {
			e := newTestExporter(snaps...)
			var buf bytes.Buffer
			if err := e.WriteText(&buf); err != nil {
				t.Fatal(err)
			}
			if err := testutil.CollectAndCompare(e, bytes.NewReader(buf.Bytes())); err != nil {
				t.Fatalf("WriteText differs from Collect: %v\ntext:\n%s", err, buf.String())
			}
		})
	}
}

func TestWriteTextPromtool(t *testing.T) {
	testkit.Promtool(t)
	var buf bytes.Buffer
	if err := newTestExporter(downSnapshot(), mailSnapshot(), oddSnapshot()).WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	testkit.CheckMetrics(t, buf.Bytes())
	for _, want := range []string{`queue="q\\xff"`, `queue="q\\xfe"`, `queue="q\\\\xff"`} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("no %s in the scrape", want)
		}
	}
}

const prometheusAccept = "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1"

func TestHandler(t *testing.T) {
	others := prometheus.NewRegistry()
	others.MustRegister(collectors.NewGoCollector())
	h := NewHandler(newTestExporter(mailSnapshot()), others, promhttp.HandlerOpts{})
	tests := []struct {
		name, accept, encoding string
		wantType               string
		gzipped                bool
	}{
		{name: "curl", wantType: "text/plain; version=0.0.4; charset=utf-8"},
		{name: "prometheus", accept: prometheusAccept, encoding: "gzip", wantType: "text/plain; version=0.0.4; charset=utf-8", gzipped: true},
		{name: "gzip refused", accept: prometheusAccept, encoding: "gzip;q=0, identity", wantType: "text/plain; version=0.0.4; charset=utf-8"},
		{name: "protobuf for native histograms", accept: "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6," + prometheusAccept,
			wantType: "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
			if tt.accept != "" {
				req.Header.Set("Accept", tt.accept)
			}
			if tt.encoding != "" {
				req.Header.Set("Accept-Encoding", tt.encoding)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if got := rec.Header().Get("Content-Type"); !strings.HasPrefix(got, tt.wantType) {
				t.Fatalf("Content-Type %q, want %q", got, tt.wantType)
			}
			if !strings.HasPrefix(tt.wantType, "text/plain") {
				return
			}
			var body io.Reader = rec.Body
			if tt.gzipped {
				if rec.Header().Get("Content-Encoding") != "gzip" {
					t.Fatal("not gzipped")
				}
				zr, err := gzip.NewReader(rec.Body)
				if err != nil {
					t.Fatal(err)
				}
				body = zr
			} else if rec.Header().Get("Content-Encoding") != "" {
				t.Fatalf("Content-Encoding %q", rec.Header().Get("Content-Encoding"))
			}
			text, err := io.ReadAll(body)
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{`spool_queue_entries{queue="outbox",spool="mail"} 3`, "# TYPE go_goroutines gauge", "# TYPE spool_queue_entry_age_seconds histogram"} {
				if !bytes.Contains(text, []byte(want)) {
					t.Errorf("body lacks %q", want)
				}
			}
		})
	}
}

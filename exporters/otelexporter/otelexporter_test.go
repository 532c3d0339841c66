package otelexporter

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"maps"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/spool-agent/spool-agent/internal/testkit"
	"github.com/spool-agent/spool-agent/monitor"
)

var testNow = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func testSnapshot() *monitor.Snapshot {
	return &monitor.Snapshot{
		Name: "mail", Dir: "/var/spool/mail", Up: true, Time: testNow,
		Queues: []monitor.QueueStats{
			{Queue: "deferred"},
			{Queue: "outbox", Entries: 3, CheckedOut: 1, OldestEntry: testNow.Add(-90 * time.Second),
				OldestCheckedOut: testNow.Add(-2 * time.Second), Arrivals: 7},
		},
		RegistryEntries: 4, TmpFiles: 2, DataBytes: 4096,
		Alerting: []monitor.Problem{
			{Kind: monitor.KindTooOld, Dir: monitor.Dir{Kind: monitor.DirCheckout, Queue: "outbox"}, Name: "b"},
			{Kind: monitor.KindTooOld, Dir: monitor.Dir{Kind: monitor.DirCheckout, Queue: "outbox"}, Name: "d"},
			{Kind: monitor.KindOrphaned, Dir: monitor.Dir{Kind: monitor.DirData}, Name: "c"},
		},
		EventsTotal: map[monitor.Kind]map[monitor.EventType]uint64{
			monitor.KindTooOld: {monitor.Start: 3, monitor.End: 1},
		},
		CycleDuration: 250 * time.Millisecond, LastSuccess: testNow.Add(-time.Second),
		Cycles: 12, FailedCycles: 1, FullScans: 2, Watching: true,
	}
}

// flatPoint is one collected data point, for assertions.
type flatPoint struct {
	name, unit string
	attrs      string // sorted k=v pairs joined by ","
	value      float64
	monotonic  bool
	sum        bool
}

func attrString(s attribute.Set) string {
	var parts []string
	for _, kv := range s.ToSlice() {
		parts = append(parts, string(kv.Key)+"="+kv.Value.String())
	}
	return strings.Join(parts, ",")
}

func collect(t *testing.T, snaps ...*monitor.Snapshot) map[string]flatPoint {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	reg, err := RegisterMetrics(mp.Meter(ScopeName), func() []*monitor.Snapshot { return snaps })
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Unregister()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]flatPoint{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			add := func(p flatPoint) { out[p.name+"{"+p.attrs+"}"] = p }
			switch d := m.Data.(type) {
			case metricdata.Gauge[int64]:
				for _, dp := range d.DataPoints {
					add(flatPoint{name: m.Name, unit: m.Unit, attrs: attrString(dp.Attributes), value: float64(dp.Value)})
				}
			case metricdata.Gauge[float64]:
				for _, dp := range d.DataPoints {
					add(flatPoint{name: m.Name, unit: m.Unit, attrs: attrString(dp.Attributes), value: dp.Value})
				}
			case metricdata.Sum[int64]:
				for _, dp := range d.DataPoints {
					add(flatPoint{name: m.Name, unit: m.Unit, attrs: attrString(dp.Attributes), value: float64(dp.Value), monotonic: d.IsMonotonic, sum: true})
				}
			default:
				t.Fatalf("unexpected data type %T for %s", m.Data, m.Name)
			}
		}
	}
	return out
}

func TestRegisterMetrics(t *testing.T) {
	got := collect(t, testSnapshot())
	tests := []struct {
		key       string
		unit      string
		value     float64
		sum       bool
		monotonic bool
	}{
		{"spool.up{spool.name=mail}", "1", 1, false, false},
		{"spool.watching{spool.name=mail}", "1", 1, false, false},
		{"spool.queue.entries{spool.entry.state=waiting,spool.name=mail,spool.queue=outbox}", "{entry}", 3, true, false},
		{"spool.queue.entries{spool.entry.state=checked_out,spool.name=mail,spool.queue=outbox}", "{entry}", 1, true, false},
		{"spool.queue.entries{spool.entry.state=waiting,spool.name=mail,spool.queue=deferred}", "{entry}", 0, true, false},
		{"spool.queue.entries{spool.entry.state=checked_out,spool.name=mail,spool.queue=deferred}", "{entry}", 0, true, false},
		{"spool.queue.oldest_entry.timestamp{spool.entry.state=waiting,spool.name=mail,spool.queue=outbox}", "s", float64(testNow.Unix() - 90), false, false},
		{"spool.queue.oldest_entry.timestamp{spool.entry.state=checked_out,spool.name=mail,spool.queue=outbox}", "s", float64(testNow.Unix() - 2), false, false},
		{"spool.queue.arrivals{spool.name=mail,spool.queue=outbox}", "{entry}", 7, true, true},
		{"spool.queue.arrivals{spool.name=mail,spool.queue=deferred}", "{entry}", 0, true, true},
		{"spool.problems{spool.name=mail,spool.problem.dir=checkout,spool.problem.kind=too_old,spool.queue=outbox}", "{problem}", 2, true, false},
		{"spool.problems{spool.name=mail,spool.problem.dir=data,spool.problem.kind=orphaned}", "{problem}", 1, true, false},
		{"spool.problems{spool.name=mail,spool.problem.kind=duplicated}", "{problem}", 0, true, false},
		{"spool.problems{spool.name=mail,spool.problem.kind=missing_data}", "{problem}", 0, true, false},
		{"spool.problems{spool.name=mail,spool.problem.kind=unexpected}", "{problem}", 0, true, false},
		{"spool.problem.events{spool.name=mail,spool.problem.event=start,spool.problem.kind=too_old}", "{event}", 3, true, true},
		{"spool.problem.events{spool.name=mail,spool.problem.event=end,spool.problem.kind=too_old}", "{event}", 1, true, true},
		{"spool.problem.events{spool.name=mail,spool.problem.event=start,spool.problem.kind=orphaned}", "{event}", 0, true, true},
		{"spool.fsck.duration{spool.name=mail}", "s", 0.25, false, false},
		{"spool.fsck.last_success.timestamp{spool.name=mail}", "s", float64(testNow.Unix() - 1), false, false},
		{"spool.fsck.failures{spool.name=mail}", "{cycle}", 1, true, true},
		{"spool.fsck.cycles{spool.name=mail}", "{cycle}", 12, true, true},
		{"spool.fsck.full_scans{spool.name=mail}", "{scan}", 2, true, true},
		{"spool.tmp.files{spool.name=mail}", "{file}", 2, true, false},
		{"spool.registry.entries{spool.name=mail}", "{entry}", 4, true, false},
		{"spool.data.size{spool.name=mail}", "By", 4096, true, false},
	}
	for _, tt := range tests {
		p, ok := got[tt.key]
		if !ok {
			t.Errorf("missing %s", tt.key)
			continue
		}
		if p.unit != tt.unit || p.value != tt.value || p.sum != tt.sum || p.monotonic != tt.monotonic {
			t.Errorf("%s = %+v, want unit %q value %v sum %v monotonic %v", tt.key, p, tt.unit, tt.value, tt.sum, tt.monotonic)
		}
	}
	if len(got) != len(tests)+7 { // plus zero event counters of the other kinds
		for k := range got {
			t.Log(k)
		}
		t.Errorf("collected %d points, want %d", len(got), len(tests)+7)
	}
	for _, absent := range []string{
		"spool.queue.oldest_entry.timestamp{spool.entry.state=waiting,spool.name=mail,spool.queue=deferred}",
		"spool.queue.oldest_entry.timestamp{spool.entry.state=checked_out,spool.name=mail,spool.queue=deferred}",
	} {
		if _, ok := got[absent]; ok {
			t.Errorf("%s present for an empty queue", absent)
		}
	}
}

func TestRegisterMetricsDownSpool(t *testing.T) {
	got := collect(t, &monitor.Snapshot{Name: "gone", Cycles: 2, FailedCycles: 2})
	if p := got["spool.up{spool.name=gone}"]; p.value != 0 || p.name == "" {
		t.Errorf("spool.up = %+v, want 0", p)
	}
	if _, ok := got["spool.fsck.last_success.timestamp{spool.name=gone}"]; ok {
		t.Error("last success present before the first success")
	}
	if p := got["spool.fsck.failures{spool.name=gone}"]; p.value != 2 {
		t.Errorf("failures = %v, want 2", p.value)
	}
}

// memExporter is an sdklog.Exporter keeping records in memory.
type memExporter struct {
	mu      sync.Mutex
	records []sdklog.Record
}

func (e *memExporter) Export(_ context.Context, rs []sdklog.Record) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, r := range rs {
		e.records = append(e.records, r.Clone())
	}
	return nil
}
func (e *memExporter) Shutdown(context.Context) error   { return nil }
func (e *memExporter) ForceFlush(context.Context) error { return nil }

func recordAttrs(r *sdklog.Record) map[string]string {
	m := map[string]string{}
	r.WalkAttributes(func(kv attribute.KeyValue) bool {
		m[string(kv.Key)] = kv.Value.String()
		return true
	})
	return m
}

func TestEventRecords(t *testing.T) {
	mtime := time.Date(2026, 11, 25, 11, 59, 30, 500, time.UTC)
	tests := []struct {
		name      string
		ev        monitor.Event
		severity  log.Severity
		eventName string
		body      string
		attrs     map[string]string
	}{
		{
			name: "start of an orphan in .data",
			ev: monitor.Event{Type: monitor.Start, Time: testNow,
				Problem: monitor.Problem{Kind: monitor.KindOrphaned, Dir: monitor.Dir{Kind: monitor.DirData}, Name: "orphan", ModTime: mtime}},
			severity: log.SeverityWarn, eventName: EventNameStart,
			body: "spool mail: orphaned problem started: .data/orphan (mtime 2026-11-25T11:59:30.0000005Z)",
			attrs: map[string]string{AttrSpool: "mail", AttrProblemKind: "orphaned", AttrProblemDir: "data",
				AttrEntryName: "orphan", AttrEntryMtime: "2026-11-25T11:59:30.0000005Z", AttrProblemEvent: "start"},
		},
		{
			name: "end of a too old checkout",
			ev: monitor.Event{Type: monitor.End, Time: testNow,
				Problem: monitor.Problem{Kind: monitor.KindTooOld, Dir: monitor.Dir{Kind: monitor.DirCheckout, Queue: "outbox"}, Name: "e1", ModTime: mtime}},
			severity: log.SeverityInfo, eventName: EventNameEnd,
			body: "spool mail: too_old problem ended: outbox/.checkout/e1 (mtime 2026-11-25T11:59:30.0000005Z)",
			attrs: map[string]string{AttrSpool: "mail", AttrProblemKind: "too_old", AttrProblemDir: "checkout", AttrQueue: "outbox",
				AttrEntryName: "e1", AttrProblemEvent: "end"},
		},
		{
			name: "start of a duplicate lists its directories",
			ev: monitor.Event{Type: monitor.Start, Time: testNow,
				Problem: monitor.Problem{Kind: monitor.KindDuplicated, Dir: monitor.Dir{Kind: monitor.DirRegistry}, Name: "d", ModTime: mtime,
					Dirs: []monitor.Dir{{Kind: monitor.DirQueue, Queue: "a"}, {Kind: monitor.DirCheckout, Queue: "b"}}}},
			severity: log.SeverityWarn, eventName: EventNameStart,
			body:  "spool mail: duplicated problem started: d (in a, b/.checkout) (mtime 2026-11-25T11:59:30.0000005Z)",
			attrs: map[string]string{AttrProblemKind: "duplicated", AttrProblemDir: "registry", AttrProblemDirs: `["a","b/.checkout"]`},
		},
		{
			// Names that are not valid UTF-8 (hostile files) go out
			// escaped: OTLP refuses a batch holding one.
			name: "names that are not UTF-8",
			ev: monitor.Event{Type: monitor.Start, Time: testNow,
				Problem: monitor.Problem{Kind: monitor.KindDuplicated, Dir: monitor.Dir{Kind: monitor.DirQueue, Queue: "q\xff"}, Name: "o\\rph\xfe", ModTime: mtime,
					Dirs: []monitor.Dir{{Kind: monitor.DirQueue, Queue: "q\xff"}, {Kind: monitor.DirQueue, Queue: "b"}}}},
			severity: log.SeverityWarn, eventName: EventNameStart,
			body:  `spool mail: duplicated problem started: o\\rph\xfe (in q\xff, b) (mtime 2026-11-25T11:59:30.0000005Z)`,
			attrs: map[string]string{AttrQueue: `q\xff`, AttrEntryName: `o\\rph\xfe`, AttrProblemDirs: `["q\\xff","b"]`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			exp := &memExporter{}
			lp := sdklog.NewLoggerProvider(sdklog.WithProcessor(sdklog.NewSimpleProcessor(exp)))
			NewEventLogger(lp).Emit(context.Background(), "mail", tt.ev)
			if len(exp.records) != 1 {
				t.Fatalf("got %d records, want 1", len(exp.records))
			}
			r := exp.records[0]
			if r.Severity() != tt.severity || r.EventName() != tt.eventName || r.Body().AsString() != tt.body {
				t.Errorf("record severity %v event %q body %q\nwant severity %v event %q body %q",
					r.Severity(), r.EventName(), r.Body().AsString(), tt.severity, tt.eventName, tt.body)
			}
			if !r.Timestamp().Equal(testNow) {
				t.Errorf("timestamp %v, want the cycle's %v", r.Timestamp(), testNow)
			}
			got := recordAttrs(&r)
			for k, v := range tt.attrs {
				if got[k] != v {
					t.Errorf("attribute %s = %q, want %q (all: %v)", k, got[k], v, got)
				}
			}
		})
	}
}

// noProcessOTelEnv fails the test when the process's environment sets an
// OTEL_* variable: Setup reads the variables through Options.LookupEnv, but
// the SDK reads some (certificates, OTEL_BLRP_*) from the process.
func noProcessOTelEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "OTEL_") {
			t.Fatalf("the test environment sets %s, which would change the OTLP setup under test", kv)
		}
	}
}

func TestSetupEnablement(t *testing.T) {
	tests := []struct {
		name           string
		env            map[string]string
		opts           Options
		metrics, logs  bool
		wantErr        error
		wantErrContain string
	}{
		{name: "off without endpoint or flag"},
		{name: "on by option", opts: Options{Enabled: true}, metrics: true, logs: true},
		{name: "on by endpoint option", opts: Options{Endpoint: "http://127.0.0.1:1"}, metrics: true, logs: true},
		{name: "on by generic endpoint", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}, metrics: true, logs: true},
		{name: "metrics endpoint only", env: map[string]string{"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://127.0.0.1:1/v1/metrics"}, metrics: true},
		{name: "logs endpoint only", env: map[string]string{"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://127.0.0.1:1/v1/logs"}, logs: true},
		{name: "logs exporter none", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_LOGS_EXPORTER": "none"}, metrics: true},
		{name: "unsupported exporter", env: map[string]string{"OTEL_METRICS_EXPORTER": "console"}, wantErr: ErrUnsupportedExporter},
		{name: "unsupported protocol", opts: Options{Enabled: true, Protocol: "http/json"}, wantErr: ErrUnsupportedProtocol},
		{name: "unsupported protocol from env", env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"},
			opts: Options{Enabled: true}, wantErr: ErrUnsupportedProtocol, wantErrContain: "OTEL_EXPORTER_OTLP_PROTOCOL"},
		{name: "grpc by env", env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, opts: Options{Enabled: true}, metrics: true, logs: true},
		{name: "resource attribute without =", env: map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "a=b,novalue"}, opts: Options{Enabled: true},
			wantErr: ErrResourceAttributes, wantErrContain: "novalue"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			noProcessOTelEnv(t)
			tt.opts.LookupEnv = envMap(tt.env)
			p, err := Setup(context.Background(), tt.opts)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantErrContain) {
					t.Fatalf("Setup error %v, want %v containing %q", err, tt.wantErr, tt.wantErrContain)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				defer cancel()
				_ = p.Shutdown(ctx) // nothing listens: the last export may fail
			}()
			if p.MetricsEnabled() != tt.metrics || p.LogsEnabled() != tt.logs || p.Enabled() != (tt.metrics || tt.logs) {
				t.Errorf("metrics %v logs %v, want %v %v", p.MetricsEnabled(), p.LogsEnabled(), tt.metrics, tt.logs)
			}
		})
	}
}

func TestDisabledProvidersAreNoOps(t *testing.T) {
	t.Parallel()
	p, err := Setup(context.Background(), Options{LookupEnv: envMap(nil)})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	base := slog.NewTextHandler(&buf, nil)
	if h := p.SlogHandler(base); h != slog.Handler(base) {
		t.Errorf("SlogHandler with logs off = %T, want the base handler", h)
	}
	p.OnEvent("s", monitor.Event{Type: monitor.Start})
	if err := p.Shutdown(context.Background()); err != nil {
		t.Error(err)
	}
	var nilP *Providers
	nilP.OnEvent("s", monitor.Event{})
	if nilP.Enabled() || nilP.Shutdown(context.Background()) != nil {
		t.Error("nil Providers is not a no-op")
	}
}

// TestOTLP exports metrics, event records and slog records through Setup to
// in-process receivers decoding the real OTLP protobuf, over each protocol.
func TestOTLP(t *testing.T) {
	tests := []struct {
		name        string
		grpc        bool
		env         map[string]string
		viaOptions  bool
		wantService string
		wantGzip    bool
	}{
		{name: "http/protobuf from env", env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, wantService: "spool-agent"},
		{name: "http/protobuf gzip, service name from env",
			env:         map[string]string{"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip", "OTEL_SERVICE_NAME": "mail-agent", "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test"},
			wantService: "mail-agent", wantGzip: true},
		{name: "grpc from env", grpc: true, env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, wantService: "spool-agent"},
		{name: "grpc from options", grpc: true, viaOptions: true, wantService: "spool-agent"},
		{name: "http from options", viaOptions: true, wantService: "spool-agent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			noProcessOTelEnv(t)
			var rcv *receiver
			var endpoint string
			if tt.grpc {
				rcv, endpoint = startGRPCReceiver(t)
			} else {
				rcv, endpoint = startHTTPReceiver(t)
			}
			env := maps.Clone(tt.env)
			if env == nil {
				env = map[string]string{}
			}
			opts := Options{
				LookupEnv:      envMap(env),
				ExportInterval: 50 * time.Millisecond,
				ServiceVersion: "1.2.3",
				Snapshots:      func() []*monitor.Snapshot { return []*monitor.Snapshot{testSnapshot()} },
			}
			if tt.viaOptions {
				opts.Endpoint = endpoint
				opts.Protocol = ProtocolHTTPProtobuf
				if tt.grpc {
					opts.Protocol = ProtocolGRPC
				}
				opts.Insecure = true
			} else {
				env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
			}
			p, err := Setup(context.Background(), opts)
			if err != nil {
				t.Fatal(err)
			}
			shutdown := func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := p.Shutdown(ctx); err != nil {
					t.Errorf("Shutdown: %v", err)
				}
			}
			defer func() {
				if p != nil {
					shutdown()
				}
			}()

			testkit.WaitFor(t, 10*time.Second, "queue metrics", func() bool {
				_, ok := rcv.findPoint("spool.queue.entries", map[string]string{AttrSpool: "mail", AttrQueue: "outbox", AttrEntryState: StateWaiting})
				return ok
			})
			pt, _ := rcv.findPoint("spool.queue.entries", map[string]string{AttrSpool: "mail", AttrQueue: "outbox", AttrEntryState: StateWaiting})
			if pt.value != 3 || pt.unit != "{entry}" || pt.kind != "sum" || pt.monotonic {
				t.Errorf("spool.queue.entries point %+v, want 3 {entry} non-monotonic sum", pt)
			}
			if pt.resource["service.name"] != tt.wantService || pt.resource["service.version"] != "1.2.3" {
				t.Errorf("resource %v, want service.name %s and service.version 1.2.3", pt.resource, tt.wantService)
			}
			if pt, ok := rcv.findPoint("spool.problems", map[string]string{AttrProblemKind: "too_old", AttrQueue: "outbox"}); !ok || pt.value != 2 {
				t.Errorf("spool.problems too_old outbox = %+v (found %v), want 2; received %v", pt, ok, rcv.metricNames())
			}

			p.OnEvent("mail", monitor.Event{Type: monitor.Start, Time: testNow,
				Problem: monitor.Problem{Kind: monitor.KindOrphaned, Dir: monitor.Dir{Kind: monitor.DirData}, Name: "orphan", ModTime: testNow}})
			p.OnEvent("mail", monitor.Event{Type: monitor.End, Time: testNow.Add(time.Second),
				Problem: monitor.Problem{Kind: monitor.KindOrphaned, Dir: monitor.Dir{Kind: monitor.DirData}, Name: "orphan", ModTime: testNow}})
			var stderr bytes.Buffer
			logger := slog.New(p.SlogHandler(slog.NewTextHandler(&stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))
			logger.Info("agent started", "spools", 1)
			logger.Debug("not exported: below the stderr level")
			shutdown() // flushes the batch processor
			p = nil

			start, ok := rcv.findRecord(map[string]string{AttrProblemEvent: "start", AttrEntryName: "orphan"})
			if !ok {
				t.Fatalf("no start record; got %+v", rcv.records())
			}
			if start.severityText != "WARN" || start.eventName != EventNameStart || start.attrs[AttrSpool] != "mail" ||
				start.attrs[AttrProblemKind] != "orphaned" || start.attrs[AttrProblemDir] != "data" || start.scope != ScopeName {
				t.Errorf("start record %+v", start)
			}
			end, ok := rcv.findRecord(map[string]string{AttrProblemEvent: "end", AttrEntryName: "orphan"})
			if !ok || end.severityText != "INFO" || end.eventName != EventNameEnd {
				t.Errorf("end record %+v (found %v)", end, ok)
			}
			var slogRecs []record
			for _, r := range rcv.records() {
				if r.scope == "github.com/spool-agent/spool-agent" {
					slogRecs = append(slogRecs, r)
				}
			}
			if len(slogRecs) != 1 || slogRecs[0].body != "agent started" || slogRecs[0].attrs["spools"] != "1" {
				t.Errorf("slog records over OTLP %+v, want only \"agent started\"", slogRecs)
			}
			if !strings.Contains(stderr.String(), "agent started") {
				t.Errorf("stderr lost the record: %q", stderr.String())
			}
			if tt.wantGzip && rcv.gzipped == 0 {
				t.Error("OTEL_EXPORTER_OTLP_COMPRESSION=gzip sent no gzip request")
			}
		})
	}
}

// TestRegisterMetricsNonUTF8Names: queue names that are not valid UTF-8 (a
// hostile directory) go out escaped, so that the push (which refuses
// invalid UTF-8) keeps carrying every spool.
func TestRegisterMetricsNonUTF8Names(t *testing.T) {
	s := testSnapshot()
	s.Queues = append(s.Queues, monitor.QueueStats{Queue: "q\xff", Entries: 5})
	s.Alerting = append(s.Alerting, monitor.Problem{Kind: monitor.KindOrphaned, Dir: monitor.Dir{Kind: monitor.DirQueue, Queue: "q\xfe"}, Name: "n\xfd"})
	got := collect(t, s)
	for _, key := range []string{
		`spool.queue.entries{spool.entry.state=waiting,spool.name=mail,spool.queue=q\xff}`,
		`spool.problems{spool.name=mail,spool.problem.dir=queue,spool.problem.kind=orphaned,spool.queue=q\xfe}`,
	} {
		if _, ok := got[key]; !ok {
			t.Errorf("missing %s", key)
		}
	}
	for k := range got {
		if !utf8.ValidString(k) {
			t.Errorf("point %q is not valid UTF-8", k)
		}
	}
}

package otelexporter

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// receiver is an in-process OTLP receiver that decodes the real protobuf
// messages, over HTTP (httptest) or gRPC, and keeps what it received.
type receiver struct {
	mu      sync.Mutex
	metrics []*metricspb.ResourceMetrics
	logs    []*logspb.ResourceLogs
	gzipped int // HTTP requests that arrived gzip-compressed
	paths   map[string]int
}

// point is one received metric data point, flattened.
type point struct {
	name, unit string
	kind       string // gauge or sum
	monotonic  bool
	attrs      map[string]string
	resource   map[string]string
	value      float64
}

// record is one received log record, flattened.
type record struct {
	eventName, severityText, body string
	severity                      int32
	attrs                         map[string]string
	resource                      map[string]string
	scope                         string
}

func anyString(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return fmt.Sprint(x.IntValue)
	case *commonpb.AnyValue_DoubleValue:
		return fmt.Sprint(x.DoubleValue)
	case *commonpb.AnyValue_BoolValue:
		return fmt.Sprint(x.BoolValue)
	case *commonpb.AnyValue_ArrayValue:
		var parts []string
		for _, e := range x.ArrayValue.GetValues() {
			parts = append(parts, anyString(e))
		}
		return strings.Join(parts, ",")
	}
	return fmt.Sprint(v)
}

func attrMap(kvs []*commonpb.KeyValue) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		m[kv.GetKey()] = anyString(kv.GetValue())
	}
	return m
}

// points returns every received data point.
func (r *receiver) points() []point {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []point
	for _, rm := range r.metrics {
		res := attrMap(rm.GetResource().GetAttributes())
		for _, sm := range rm.GetScopeMetrics() {
			for _, m := range sm.GetMetrics() {
				add := func(kind string, monotonic bool, dps []*metricspb.NumberDataPoint) {
					for _, dp := range dps {
						v := dp.GetAsDouble()
						if _, ok := dp.GetValue().(*metricspb.NumberDataPoint_AsInt); ok {
							v = float64(dp.GetAsInt())
						}
						out = append(out, point{name: m.GetName(), unit: m.GetUnit(), kind: kind, monotonic: monotonic,
							attrs: attrMap(dp.GetAttributes()), resource: res, value: v})
					}
				}
				switch d := m.GetData().(type) {
				case *metricspb.Metric_Gauge:
					add("gauge", false, d.Gauge.GetDataPoints())
				case *metricspb.Metric_Sum:
					add("sum", d.Sum.GetIsMonotonic(), d.Sum.GetDataPoints())
				}
			}
		}
	}
	return out
}

// records returns every received log record.
func (r *receiver) records() []record {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []record
	for _, rl := range r.logs {
		res := attrMap(rl.GetResource().GetAttributes())
		for _, sl := range rl.GetScopeLogs() {
			for _, lr := range sl.GetLogRecords() {
				out = append(out, record{
					eventName: lr.GetEventName(), severityText: lr.GetSeverityText(), severity: int32(lr.GetSeverityNumber()),
					body: anyString(lr.GetBody()), attrs: attrMap(lr.GetAttributes()), resource: res,
					scope: sl.GetScope().GetName(),
				})
			}
		}
	}
	return out
}

// findPoint returns the last received point of name whose attributes include attrs.
func (r *receiver) findPoint(name string, attrs map[string]string) (point, bool) {
	pts := r.points()
	for i := len(pts) - 1; i >= 0; i-- {
		if pts[i].name == name && includes(pts[i].attrs, attrs) {
			return pts[i], true
		}
	}
	return point{}, false
}

// findRecord returns the first received record whose attributes include attrs.
func (r *receiver) findRecord(attrs map[string]string) (record, bool) {
	for _, rec := range r.records() {
		if includes(rec.attrs, attrs) {
			return rec, true
		}
	}
	return record{}, false
}

func includes(have, want map[string]string) bool {
	for k, v := range want {
		if got, ok := have[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// metricNames lists the distinct names received, for failure messages.
func (r *receiver) metricNames() []string {
	seen := map[string]bool{}
	for _, p := range r.points() {
		seen[p.name] = true
	}
	var names []string
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var body io.Reader = req.Body
	gz := req.Header.Get("Content-Encoding") == "gzip"
	if gz {
		zr, err := gzip.NewReader(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		defer zr.Close()
		body = zr
	}
	data, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if ct := req.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		http.Error(w, "unexpected content type "+ct, http.StatusUnsupportedMediaType)
		return
	}
	var resp proto.Message
	switch req.URL.Path {
	case "/v1/metrics":
		var m colmetricspb.ExportMetricsServiceRequest
		if err := proto.Unmarshal(data, &m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.metrics = append(r.metrics, m.GetResourceMetrics()...)
		r.mu.Unlock()
		resp = &colmetricspb.ExportMetricsServiceResponse{}
	case "/v1/logs":
		var m collogspb.ExportLogsServiceRequest
		if err := proto.Unmarshal(data, &m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.logs = append(r.logs, m.GetResourceLogs()...)
		r.mu.Unlock()
		resp = &collogspb.ExportLogsServiceResponse{}
	default:
		http.NotFound(w, req)
		return
	}
	r.mu.Lock()
	if r.paths == nil {
		r.paths = map[string]int{}
	}
	r.paths[req.URL.Path]++
	if gz {
		r.gzipped++
	}
	r.mu.Unlock()
	out, _ := proto.Marshal(resp)
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// startHTTPReceiver serves an OTLP/HTTP receiver and returns its base URL.
func startHTTPReceiver(t *testing.T) (*receiver, string) {
	r := &receiver{}
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return r, srv.URL
}

type grpcMetrics struct {
	colmetricspb.UnimplementedMetricsServiceServer
	r *receiver
}

func (g grpcMetrics) Export(_ context.Context, m *colmetricspb.ExportMetricsServiceRequest) (*colmetricspb.ExportMetricsServiceResponse, error) {
	g.r.mu.Lock()
	g.r.metrics = append(g.r.metrics, m.GetResourceMetrics()...)
	g.r.mu.Unlock()
	return &colmetricspb.ExportMetricsServiceResponse{}, nil
}

type grpcLogs struct {
	collogspb.UnimplementedLogsServiceServer
	r *receiver
}

func (g grpcLogs) Export(_ context.Context, m *collogspb.ExportLogsServiceRequest) (*collogspb.ExportLogsServiceResponse, error) {
	g.r.mu.Lock()
	g.r.logs = append(g.r.logs, m.GetResourceLogs()...)
	g.r.mu.Unlock()
	return &collogspb.ExportLogsServiceResponse{}, nil
}

// startGRPCReceiver serves an OTLP/gRPC receiver on loopback and returns
// its endpoint URL (http://127.0.0.1:PORT: plain text).
func startGRPCReceiver(t *testing.T) (*receiver, string) {
	r := &receiver{}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	colmetricspb.RegisterMetricsServiceServer(srv, grpcMetrics{r: r})
	collogspb.RegisterLogsServiceServer(srv, grpcLogs{r: r})
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return r, "http://" + lis.Addr().String()
}

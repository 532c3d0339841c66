package otelexporter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/contrib/bridges/otelslog"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/metric"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/spool-agent/spool-agent/monitor"
)

// OTLP protocols.
const (
	ProtocolGRPC         = "grpc"
	ProtocolHTTPProtobuf = "http/protobuf"
	// DefaultProtocol is the OTLP specification's default.
	DefaultProtocol = ProtocolHTTPProtobuf
	// DefaultServiceName is service.name unless OTEL_SERVICE_NAME,
	// OTEL_RESOURCE_ATTRIBUTES or Options.ServiceName says otherwise.
	DefaultServiceName = "spool-agent"
)

// Sentinel errors of Setup.
var (
	ErrUnsupportedProtocol = errors.New("unsupported OTLP protocol (want grpc or http/protobuf)")
	ErrUnsupportedExporter = errors.New("unsupported exporter (want otlp or none)")
	ErrResourceAttributes  = errors.New("resource attributes without '=' (want key=value,...)")
)

// Options configure Setup. Every zero field leaves the setting to the
// standard OTEL_* environment variables (and then to the SDK's defaults), so
// a field set here overrides the environment and an unset one never does.
//
// Setup reads the variables through LookupEnv and passes what they say to
// the SDK as options: OTEL_{METRICS,LOGS}_EXPORTER, and
// OTEL_EXPORTER_OTLP_{,METRICS_,LOGS_}{ENDPOINT,PROTOCOL,HEADERS,INSECURE,
// TIMEOUT,COMPRESSION}, OTEL_METRIC_EXPORT_INTERVAL, OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES. The SDK reads the others it knows (certificates,
// OTEL_BLRP_*, OTEL_METRIC_EXPORT_TIMEOUT) from the process's environment.
type Options struct {
	// LookupEnv reads the OTEL_* variables; nil means os.LookupEnv.
	LookupEnv func(string) (string, bool)
	// Enabled switches OTLP on even when no OTEL_EXPORTER_OTLP_*ENDPOINT
	// variable is set (the exporters then use their default endpoint,
	// localhost:4318 or localhost:4317).
	Enabled bool
	// Protocol is grpc or http/protobuf; "" means OTEL_EXPORTER_OTLP_{METRICS,LOGS}_PROTOCOL,
	// then OTEL_EXPORTER_OTLP_PROTOCOL, then DefaultProtocol.
	Protocol string
	// Endpoint is the collector's base URL (http://host:4318, https://host:4317)
	// or host:port, like OTEL_EXPORTER_OTLP_ENDPOINT: for HTTP the signal
	// paths /v1/metrics and /v1/logs are appended. Setting it switches OTLP on.
	Endpoint string
	// Headers are sent with every export (like OTEL_EXPORTER_OTLP_HEADERS).
	Headers map[string]string
	// Insecure forces plain text (like OTEL_EXPORTER_OTLP_INSECURE=true).
	Insecure bool
	// Timeout bounds each export (like OTEL_EXPORTER_OTLP_TIMEOUT).
	Timeout time.Duration
	// ExportInterval is the metrics export period (like OTEL_METRIC_EXPORT_INTERVAL, default 60s).
	ExportInterval time.Duration
	// ServiceName and ServiceVersion describe the agent in the resource;
	// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win over them.
	ServiceName, ServiceVersion string
	// Snapshots feeds the metric instruments (typically
	// collector.Collector.Snapshots); nil registers no spool metrics.
	Snapshots func() []*monitor.Snapshot
	// ErrorLogger, if set, receives the SDK's export errors (it becomes the
	// global otel error handler). It must not itself log to OTel.
	ErrorLogger *slog.Logger
}

// Providers are the OTel providers that Setup built. A Providers with
// neither provider (OTLP off) is valid and all its methods are no-ops.
type Providers struct {
	// MeterProvider exports the spool metrics; nil when metrics are off.
	MeterProvider *sdkmetric.MeterProvider
	// LoggerProvider exports event and slog records; nil when logs are off.
	LoggerProvider *sdklog.LoggerProvider

	registration metric.Registration
	events       *EventLogger
	version      string
}

// signal describes the environment variables of one OTLP signal.
type signal struct {
	name     string // METRICS or LOGS
	exporter string // OTEL_METRICS_EXPORTER or OTEL_LOGS_EXPORTER
}

var (
	metricsSignal = signal{name: "METRICS", exporter: "OTEL_METRICS_EXPORTER"}
	logsSignal    = signal{name: "LOGS", exporter: "OTEL_LOGS_EXPORTER"}
)

// enabled reports whether OTLP is on for sig: Options.Enabled, Options.Endpoint,
// OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_<SIG>_ENDPOINT, unless
// OTEL_<SIG>S_EXPORTER=none.
func (o *Options) enabled(sig signal) (bool, error) {
	switch e := o.getenv(sig.exporter); e {
	case "", "otlp":
	case "none":
		return false, nil
	default:
		return false, fmt.Errorf("%s=%q: %w", sig.exporter, e, ErrUnsupportedExporter)
	}
	return o.Enabled || o.Endpoint != "" ||
		o.getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" ||
		o.getenv("OTEL_EXPORTER_OTLP_"+sig.name+"_ENDPOINT") != "", nil
}

// getenv returns the variable name, trimmed, through LookupEnv.
func (o *Options) getenv(name string) string {
	lookup := o.LookupEnv
	if lookup == nil {
		lookup = os.LookupEnv
	}
	v, _ := lookup(name)
	return strings.TrimSpace(v)
}

// otlpEnv returns OTEL_EXPORTER_OTLP_<SIG>_<x>, or else OTEL_EXPORTER_OTLP_<x>.
func (o *Options) otlpEnv(sig signal, x string) string {
	if v := o.getenv("OTEL_EXPORTER_OTLP_" + sig.name + "_" + x); v != "" {
		return v
	}
	return o.getenv("OTEL_EXPORTER_OTLP_" + x)
}

// envMillis parses a variable that holds milliseconds, as the OTel
// specification defines them; 0 when unset or invalid (the SDK's default).
func envMillis(v string) time.Duration {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0
	}
	return time.Duration(n) * time.Millisecond
}

// keyValues parses "k1=v1,k2=v2" with URL-encoded values, as
// OTEL_EXPORTER_OTLP_HEADERS and OTEL_RESOURCE_ATTRIBUTES spell them; it
// returns the pairs without '=' apart.
func keyValues(s string) (kv map[string]string, invalid []string) {
	kv = map[string]string{}
	for _, p := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(p, "=")
		if !ok || strings.TrimSpace(k) == "" {
			invalid = append(invalid, p)
			continue
		}
		if u, err := url.PathUnescape(strings.TrimSpace(v)); err == nil {
			v = u
		}
		kv[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return kv, invalid
}

// export is the configuration of one signal's exporter: Options over the
// environment.
type export struct {
	endpoint    string // host:port, no scheme
	endpointURL string // a URL, used as it is
	insecure    bool
	headers     map[string]string
	timeout     time.Duration
	gzip        bool
}

// export resolves sig's exporter configuration. signalPath is the path
// appended to an HTTP base endpoint (/v1/metrics, /v1/logs), "" for gRPC.
func (o *Options) export(sig signal, signalPath string) export {
	var e export
	base, perSignal := o.Endpoint, ""
	if base == "" {
		perSignal = o.getenv("OTEL_EXPORTER_OTLP_" + sig.name + "_ENDPOINT")
		base = o.getenv("OTEL_EXPORTER_OTLP_ENDPOINT")
	}
	switch {
	case perSignal != "":
		// A signal's own endpoint is the full URL of its signal path.
		e.endpointURL = perSignal
	case base == "":
	case !strings.Contains(base, "://"):
		e.endpoint = base
	case signalPath != "":
		e.endpointURL = httpEndpoint(base, signalPath)
	default:
		e.endpointURL = base
	}
	e.insecure = o.Insecure || strings.EqualFold(o.otlpEnv(sig, "INSECURE"), "true")
	e.headers = o.Headers
	if e.headers == nil {
		if h := o.otlpEnv(sig, "HEADERS"); h != "" {
			e.headers, _ = keyValues(h)
		}
	}
	e.timeout = o.Timeout
	if e.timeout <= 0 {
		e.timeout = envMillis(o.otlpEnv(sig, "TIMEOUT"))
	}
	e.gzip = o.otlpEnv(sig, "COMPRESSION") == "gzip"
	return e
}

// protocol returns the OTLP protocol of sig.
func (o *Options) protocol(sig signal) (string, error) {
	p := o.Protocol
	source := "protocol"
	for _, v := range []string{"OTEL_EXPORTER_OTLP_" + sig.name + "_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if p != "" {
			break
		}
		p, source = o.getenv(v), v
	}
	switch p {
	case "":
		return DefaultProtocol, nil
	case ProtocolGRPC, ProtocolHTTPProtobuf:
		return p, nil
	}
	return "", fmt.Errorf("%s %q: %w", source, p, ErrUnsupportedProtocol)
}

// Setup builds the MeterProvider (a PeriodicReader over an OTLP metric
// exporter, with the spool instruments registered) and the LoggerProvider
// (a BatchProcessor over an OTLP log exporter) for the signals that are on.
// The resource comes from OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
// over service.name=spool-agent. Call Shutdown to flush and stop.
func Setup(ctx context.Context, opts Options) (*Providers, error) {
	p := &Providers{version: opts.ServiceVersion}
	metricsOn, err := opts.enabled(metricsSignal)
	if err != nil {
		return nil, err
	}
	logsOn, err := opts.enabled(logsSignal)
	if err != nil {
		return nil, err
	}
	if !metricsOn && !logsOn {
		return p, nil
	}
	res, err := newResource(ctx, opts)
	if err != nil {
		return nil, err
	}
	if opts.ErrorLogger != nil {
		logger := opts.ErrorLogger
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
			logger.Warn("OpenTelemetry export failed", "err", err)
		}))
	}
	if metricsOn {
		exp, err := newMetricExporter(ctx, opts)
		if err != nil {
			return nil, err
		}
		var readerOpts []sdkmetric.PeriodicReaderOption
		interval := opts.ExportInterval
		if interval <= 0 {
			interval = envMillis(opts.getenv("OTEL_METRIC_EXPORT_INTERVAL"))
		}
		if interval > 0 {
			readerOpts = append(readerOpts, sdkmetric.WithInterval(interval))
		}
		p.MeterProvider = sdkmetric.NewMeterProvider(
			sdkmetric.WithResource(res),
			sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp, readerOpts...)),
		)
		if opts.Snapshots != nil {
			meter := p.MeterProvider.Meter(ScopeName, metric.WithInstrumentationVersion(opts.ServiceVersion))
			p.registration, err = RegisterMetrics(meter, opts.Snapshots)
			if err != nil {
				_ = p.MeterProvider.Shutdown(ctx)
				return nil, err
			}
		}
	}
	if logsOn {
		exp, err := newLogExporter(ctx, opts)
		if err != nil {
			if p.MeterProvider != nil {
				_ = p.MeterProvider.Shutdown(ctx)
			}
			return nil, err
		}
		p.LoggerProvider = sdklog.NewLoggerProvider(
			sdklog.WithResource(res),
			sdklog.WithProcessor(sdklog.NewBatchProcessor(exp)),
		)
		p.events = NewEventLogger(p.LoggerProvider)
	}
	return p, nil
}

func newResource(ctx context.Context, opts Options) (*resource.Resource, error) {
	name := opts.ServiceName
	if name == "" {
		name = DefaultServiceName
	}
	attrs := []attribute.KeyValue{attribute.String("service.name", name)}
	if opts.ServiceVersion != "" {
		attrs = append(attrs, attribute.String("service.version", opts.ServiceVersion))
	}
	// Later attributes win: the environment overrides the defaults, and
	// OTEL_SERVICE_NAME overrides OTEL_RESOURCE_ATTRIBUTES.
	var invalid []string
	if s := opts.getenv("OTEL_RESOURCE_ATTRIBUTES"); s != "" {
		var kv map[string]string
		kv, invalid = keyValues(s)
		for _, k := range slices.Sorted(maps.Keys(kv)) {
			attrs = append(attrs, attribute.String(k, kv[k]))
		}
	}
	if s := opts.getenv("OTEL_SERVICE_NAME"); s != "" {
		attrs = append(attrs, attribute.String("service.name", s))
	}
	if len(invalid) > 0 {
		return nil, fmt.Errorf("building the OTel resource: OTEL_RESOURCE_ATTRIBUTES: %w: %q", ErrResourceAttributes, invalid)
	}
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithAttributes(attrs...),
	)
	if err != nil {
		return nil, fmt.Errorf("building the OTel resource: %w", err)
	}
	return res, nil
}

// httpEndpoint returns the URL of an HTTP signal path under base.
func httpEndpoint(base, path string) string {
	return strings.TrimSuffix(base, "/") + path
}

func newMetricExporter(ctx context.Context, opts Options) (sdkmetric.Exporter, error) {
	proto, err := opts.protocol(metricsSignal)
	if err != nil {
		return nil, err
	}
	var exp sdkmetric.Exporter
	if proto == ProtocolGRPC {
		exp, err = otlpmetricgrpc.New(ctx, otlpOptionSet[otlpmetricgrpc.Option]{
			otlpmetricgrpc.WithEndpoint, otlpmetricgrpc.WithEndpointURL, otlpmetricgrpc.WithInsecure,
			otlpmetricgrpc.WithHeaders, otlpmetricgrpc.WithTimeout,
			func() otlpmetricgrpc.Option { return otlpmetricgrpc.WithCompressor("gzip") },
		}.from(opts.export(metricsSignal, ""))...)
	} else {
		exp, err = otlpmetrichttp.New(ctx, otlpOptionSet[otlpmetrichttp.Option]{
			otlpmetrichttp.WithEndpoint, otlpmetrichttp.WithEndpointURL, otlpmetrichttp.WithInsecure,
			otlpmetrichttp.WithHeaders, otlpmetrichttp.WithTimeout,
			func() otlpmetrichttp.Option { return otlpmetrichttp.WithCompression(otlpmetrichttp.GzipCompression) },
		}.from(opts.export(metricsSignal, "/v1/metrics"))...)
	}
	if err != nil {
		return nil, fmt.Errorf("creating the OTLP %s metric exporter: %w", proto, err)
	}
	return exp, nil
}

func newLogExporter(ctx context.Context, opts Options) (sdklog.Exporter, error) {
	proto, err := opts.protocol(logsSignal)
	if err != nil {
		return nil, err
	}
	var exp sdklog.Exporter
	if proto == ProtocolGRPC {
		exp, err = otlploggrpc.New(ctx, otlpOptionSet[otlploggrpc.Option]{
			otlploggrpc.WithEndpoint, otlploggrpc.WithEndpointURL, otlploggrpc.WithInsecure,
			otlploggrpc.WithHeaders, otlploggrpc.WithTimeout,
			func() otlploggrpc.Option { return otlploggrpc.WithCompressor("gzip") },
		}.from(opts.export(logsSignal, ""))...)
	} else {
		exp, err = otlploghttp.New(ctx, otlpOptionSet[otlploghttp.Option]{
			otlploghttp.WithEndpoint, otlploghttp.WithEndpointURL, otlploghttp.WithInsecure,
			otlploghttp.WithHeaders, otlploghttp.WithTimeout,
			func() otlploghttp.Option { return otlploghttp.WithCompression(otlploghttp.GzipCompression) },
		}.from(opts.export(logsSignal, "/v1/logs"))...)
	}
	if err != nil {
		return nil, fmt.Errorf("creating the OTLP %s log exporter: %w", proto, err)
	}
	return exp, nil
}

// otlpOptionSet holds one OTLP exporter package's option constructors, so
// the four exporters (metrics and logs, over gRPC and HTTP) share one
// translation of an export configuration into options.
type otlpOptionSet[O any] struct {
	endpoint    func(string) O
	endpointURL func(string) O
	insecure    func() O
	headers     func(map[string]string) O
	timeout     func(time.Duration) O
	gzip        func() O
}

// from returns the options that carry e's non-zero fields.
func (set otlpOptionSet[O]) from(e export) []O {
	var o []O
	switch {
	case e.endpoint != "":
		o = append(o, set.endpoint(e.endpoint))
	case e.endpointURL != "":
		o = append(o, set.endpointURL(e.endpointURL))
	}
	if e.insecure {
		o = append(o, set.insecure())
	}
	if e.headers != nil {
		o = append(o, set.headers(e.headers))
	}
	if e.timeout > 0 {
		o = append(o, set.timeout(e.timeout))
	}
	if e.gzip {
		o = append(o, set.gzip())
	}
	return o
}

// Enabled reports whether any OTLP signal is on.
func (p *Providers) Enabled() bool {
	return p != nil && (p.MeterProvider != nil || p.LoggerProvider != nil)
}

// MetricsEnabled reports whether metrics are exported over OTLP.
func (p *Providers) MetricsEnabled() bool { return p != nil && p.MeterProvider != nil }

// LogsEnabled reports whether logs are exported over OTLP.
func (p *Providers) LogsEnabled() bool { return p != nil && p.LoggerProvider != nil }

// OnEvent emits the log record of a monitor event of spool when logs are on.
// Its signature fits collector.New's onEvent.
func (p *Providers) OnEvent(spool string, ev monitor.Event) {
	if p == nil || p.events == nil {
		return
	}
	p.events.Emit(context.Background(), spool, ev)
}

// SlogHandler returns the agent's log handler: base (stderr) alone when logs
// are off, otherwise base plus an otelslog bridge that receives the records
// base accepts.
func (p *Providers) SlogHandler(base slog.Handler) slog.Handler {
	if !p.LogsEnabled() {
		return base
	}
	bridge := otelslog.NewHandler("github.com/spool-agent/spool-agent",
		otelslog.WithLoggerProvider(p.LoggerProvider), otelslog.WithVersion(p.version))
	return slog.NewMultiHandler(base, levelGate{Handler: bridge, level: base})
}

// levelGate passes to its Handler only the records its level handler is
// enabled for, so the bridge gets what stderr gets and no more.
type levelGate struct {
	slog.Handler
	level slog.Handler
}

func (g levelGate) Enabled(ctx context.Context, l slog.Level) bool {
	return g.level.Enabled(ctx, l) && g.Handler.Enabled(ctx, l)
}

func (g levelGate) WithAttrs(attrs []slog.Attr) slog.Handler {
	return levelGate{Handler: g.Handler.WithAttrs(attrs), level: g.level}
}

func (g levelGate) WithGroup(name string) slog.Handler {
	return levelGate{Handler: g.Handler.WithGroup(name), level: g.level}
}

// Shutdown unregisters the metrics callback after a last export, and flushes
// and stops both providers, within ctx.
func (p *Providers) Shutdown(ctx context.Context) error {
	if p == nil {
		return nil
	}
	var errs []error
	if p.MeterProvider != nil {
		if err := p.MeterProvider.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("shutting down OTel metrics: %w", err))
		}
		if p.registration != nil {
			if err := p.registration.Unregister(); err != nil {
				errs = append(errs, fmt.Errorf("unregistering the spool metrics callback: %w", err))
			}
		}
	}
	if p.LoggerProvider != nil {
		if err := p.LoggerProvider.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("shutting down OTel logs: %w", err))
		}
	}
	return errors.Join(errs...)
}

package otelexporter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
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
)

// Options configure Setup. Every zero field leaves the setting to the
// standard OTEL_* environment variables (and then to the SDK's defaults), so
// a field set here overrides the environment and an unset one never does.
type Options struct {
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
	switch e := strings.TrimSpace(os.Getenv(sig.exporter)); e {
	case "", "otlp":
	case "none":
		return false, nil
	default:
		return false, fmt.Errorf("%s=%q: %w", sig.exporter, e, ErrUnsupportedExporter)
	}
	return o.Enabled || o.Endpoint != "" ||
		os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" ||
		os.Getenv("OTEL_EXPORTER_OTLP_"+sig.name+"_ENDPOINT") != "", nil
}

// protocol returns the OTLP protocol of sig.
func (o *Options) protocol(sig signal) (string, error) {
	p := o.Protocol
	source := "protocol"
	for _, v := range []string{"OTEL_EXPORTER_OTLP_" + sig.name + "_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if p != "" {
			break
		}
		p, source = strings.TrimSpace(os.Getenv(v)), v
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
		if opts.ExportInterval > 0 {
			readerOpts = append(readerOpts, sdkmetric.WithInterval(opts.ExportInterval))
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
	// Later detectors win: the environment overrides the defaults.
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithAttributes(attrs...),
		resource.WithFromEnv(),
	)
	if err != nil {
		return nil, fmt.Errorf("building the OTel resource from OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME: %w", err)
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
		}.from(opts, "")...)
	} else {
		exp, err = otlpmetrichttp.New(ctx, otlpOptionSet[otlpmetrichttp.Option]{
			otlpmetrichttp.WithEndpoint, otlpmetrichttp.WithEndpointURL, otlpmetrichttp.WithInsecure,
			otlpmetrichttp.WithHeaders, otlpmetrichttp.WithTimeout,
		}.from(opts, "/v1/metrics")...)
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
		}.from(opts, "")...)
	} else {
		exp, err = otlploghttp.New(ctx, otlpOptionSet[otlploghttp.Option]{
			otlploghttp.WithEndpoint, otlploghttp.WithEndpointURL, otlploghttp.WithInsecure,
			otlploghttp.WithHeaders, otlploghttp.WithTimeout,
		}.from(opts, "/v1/logs")...)
	}
	if err != nil {
		return nil, fmt.Errorf("creating the OTLP %s log exporter: %w", proto, err)
	}
	return exp, nil
}

// otlpOptionSet holds one OTLP exporter package's option constructors, so
// the four exporters (metrics and logs, over gRPC and HTTP) share one
// translation of Options into options.
type otlpOptionSet[O any] struct {
	endpoint    func(string) O
	endpointURL func(string) O
	insecure    func() O
	headers     func(map[string]string) O
	timeout     func(time.Duration) O
}

// from returns the options that carry opts' non-zero fields. signalPath is
// the path appended to an HTTP endpoint URL (/v1/metrics, /v1/logs), "" for
// gRPC, whose endpoint URL is used as it is.
func (set otlpOptionSet[O]) from(opts Options, signalPath string) []O {
	var o []O
	switch {
	case opts.Endpoint == "":
	case !strings.Contains(opts.Endpoint, "://"):
		o = append(o, set.endpoint(opts.Endpoint))
	case signalPath != "":
		o = append(o, set.endpointURL(httpEndpoint(opts.Endpoint, signalPath)))
	default:
		o = append(o, set.endpointURL(opts.Endpoint))
	}
	if opts.Insecure {
		o = append(o, set.insecure())
	}
	if opts.Headers != nil {
		o = append(o, set.headers(opts.Headers))
	}
	if opts.Timeout > 0 {
		o = append(o, set.timeout(opts.Timeout))
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

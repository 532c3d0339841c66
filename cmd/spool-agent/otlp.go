package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/spool-agent/spool-agent/exporters/otelexporter"
	"github.com/spool-agent/spool-agent/monitor"
)

// OTLPFlags configure the OpenTelemetry export. OTLP is off unless one of
// them or an OTEL_EXPORTER_OTLP_*ENDPOINT variable switches it on; the
// standard OTEL_* variables (protocol, headers, timeout, export intervals,
// OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES) are read as usual, and a flag
// that is set wins over its OTEL_* variable.
type OTLPFlags struct {
	OTLPEnabled        bool              `name:"otlp.enabled" help:"Export metrics and logs over OTLP even when no OTEL_EXPORTER_OTLP_*ENDPOINT variable is set (to the default endpoint, localhost:4318 or localhost:4317)."`
	OTLPEndpoint       string            `name:"otlp.endpoint" placeholder:"URL" help:"OTLP endpoint, like OTEL_EXPORTER_OTLP_ENDPOINT (http://host:4318 for http/protobuf, host:4317 for grpc); setting it switches OTLP on."`
	OTLPProtocol       string            `name:"otlp.protocol" placeholder:"PROTOCOL" help:"OTLP protocol, grpc or http/protobuf, like OTEL_EXPORTER_OTLP_PROTOCOL (default: ${otlp_protocol})."`
	OTLPHeaders        map[string]string `name:"otlp.headers" mapsep:"," placeholder:"KEY=VALUE" help:"Headers of every OTLP export, like OTEL_EXPORTER_OTLP_HEADERS (repeatable)."`
	OTLPInsecure       bool              `name:"otlp.insecure" help:"Use plain text to the OTLP endpoint, like OTEL_EXPORTER_OTLP_INSECURE=true."`
	OTLPTimeout        time.Duration     `name:"otlp.timeout" placeholder:"DURATION" help:"Timeout of each OTLP export, like OTEL_EXPORTER_OTLP_TIMEOUT."`
	OTLPExportInterval time.Duration     `name:"otlp.export-interval" placeholder:"DURATION" help:"Period of the OTLP metrics export, like OTEL_METRIC_EXPORT_INTERVAL (default: 60s)."`
	OTLPServiceName    string            `name:"otlp.service-name" placeholder:"NAME" help:"service.name of the exported resource (default: ${otlp_service_name}; OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win over it)."`
}

// setupOTLP builds the OTel providers: snapshots feeds the metrics, and
// errorLogger (stderr only) receives the export errors.
func (f OTLPFlags) setupOTLP(ctx context.Context, m *Main, snapshots func() []*monitor.Snapshot, errorLogger *slog.Logger) (*otelexporter.Providers, error) {
	switch f.OTLPProtocol {
	case "", otelexporter.ProtocolGRPC, otelexporter.ProtocolHTTPProtobuf:
	default:
		// Said even while OTLP is off, so that a typo never waits for
		// the day an endpoint is set.
		return nil, fmt.Errorf("--otlp.protocol %q: %w", f.OTLPProtocol, otelexporter.ErrUnsupportedProtocol)
	}
	// The OTEL_* variables come from Main's environment, as SPOOL_AGENT_*
	// do (none when Main has none).
	lookupEnv := m.LookupEnv
	if lookupEnv == nil {
		lookupEnv = func(string) (string, bool) { return "", false }
	}
	return otelexporter.Setup(ctx, otelexporter.Options{
		LookupEnv:      lookupEnv,
		Enabled:        f.OTLPEnabled,
		Protocol:       f.OTLPProtocol,
		Endpoint:       f.OTLPEndpoint,
		Headers:        f.OTLPHeaders,
		Insecure:       f.OTLPInsecure,
		Timeout:        f.OTLPTimeout,
		ExportInterval: f.OTLPExportInterval,
		ServiceName:    f.OTLPServiceName,
		ServiceVersion: m.Version,
		Snapshots:      snapshots,
		ErrorLogger:    errorLogger,
	})
}

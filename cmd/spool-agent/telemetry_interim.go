package main

// Interim: OTLP export is wired here once exporters/otelexporter lands; until
// then the agent logs to stderr only.

import (
	"context"
	"log/slog"

	"github.com/spool-agent/spool-agent/monitor"
)

// OTLPFlags will hold the OTLP flags.
type OTLPFlags struct{}

type noTelemetry struct{}

func (noTelemetry) Handler(h slog.Handler) slog.Handler                    { return h }
func (noTelemetry) Event(string, monitor.Event)                            {}
func (noTelemetry) Shutdown(context.Context) error                         { return nil }
func (c *RunCmd) setupTelemetry(context.Context, *Main) (telemetry, error) { return noTelemetry{}, nil }

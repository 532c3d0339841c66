package otelexporter

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// envMap is an environment for Options.LookupEnv.
func envMap(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}
}

// TestOTLPOptionSet checks the one translation of Options and the OTEL_*
// environment into an OTLP exporter package's options, with strings
// standing in for the options.
func TestOTLPOptionSet(t *testing.T) {
	set := otlpOptionSet[string]{
		endpoint:    func(s string) string { return "endpoint " + s },
		endpointURL: func(s string) string { return "url " + s },
		insecure:    func() string { return "insecure" },
		headers:     func(h map[string]string) string { return fmt.Sprint("headers ", h) },
		timeout:     func(d time.Duration) string { return "timeout " + d.String() },
		gzip:        func() string { return "gzip" },
	}
	tests := []struct {
		name       string
		opts       Options
		env        map[string]string
		sig        signal
		signalPath string
		want       []string
	}{
		{name: "nothing set", opts: Options{}, want: nil},
		{name: "host:port", opts: Options{Endpoint: "collector:4317"}, want: []string{"endpoint collector:4317"}},
		{name: "grpc URL as it is", opts: Options{Endpoint: "https://collector:4317/"}, want: []string{"url https://collector:4317/"}},
		{name: "http URL gets the signal path", opts: Options{Endpoint: "http://collector:4318/"}, signalPath: "/v1/logs",
			want: []string{"url http://collector:4318/v1/logs"}},
		{name: "http host:port gets no path", opts: Options{Endpoint: "collector:4318"}, signalPath: "/v1/metrics",
			want: []string{"endpoint collector:4318"}},
		{name: "every field", opts: Options{Endpoint: "c:1", Insecure: true, Headers: map[string]string{"a": "b"}, Timeout: 3 * time.Second},
			want: []string{"endpoint c:1", "insecure", "headers map[a:b]", "timeout 3s"}},
		{name: "empty headers still override the environment", opts: Options{Headers: map[string]string{}},
			env:  map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "a=b"},
			want: []string{"headers map[]"}},
		{name: "generic endpoint from env gets the signal path", sig: metricsSignal, signalPath: "/v1/metrics",
			env:  map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://env:4318"},
			want: []string{"url http://env:4318/v1/metrics"}},
		{name: "signal endpoint from env as it is", sig: logsSignal, signalPath: "/v1/logs",
			env:  map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://env:4318", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://logs:1/x"},
			want: []string{"url http://logs:1/x"}},
		{name: "option endpoint over env", opts: Options{Endpoint: "opt:1"}, sig: logsSignal,
			env:  map[string]string{"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://logs:1/x"},
			want: []string{"endpoint opt:1"}},
		{name: "every variable", sig: metricsSignal,
			env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "env:1", "OTEL_EXPORTER_OTLP_INSECURE": "TRUE",
				"OTEL_EXPORTER_OTLP_HEADERS": "k=v%20w, x = y", "OTEL_EXPORTER_OTLP_TIMEOUT": "2500", "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"},
			want: []string{"endpoint env:1", "insecure", "headers map[k:v w x:y]", "timeout 2.5s", "gzip"}},
		{name: "signal variables over generic ones", sig: metricsSignal,
			env: map[string]string{"OTEL_EXPORTER_OTLP_TIMEOUT": "1000", "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT": "2000",
				"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip", "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION": "none"},
			want: []string{"timeout 2s"}},
		{name: "options over variables", opts: Options{Timeout: time.Second, Headers: map[string]string{"o": "p"}}, sig: logsSignal,
			env:  map[string]string{"OTEL_EXPORTER_OTLP_TIMEOUT": "5000", "OTEL_EXPORTER_OTLP_HEADERS": "k=v"},
			want: []string{"headers map[o:p]", "timeout 1s"}},
		{name: "bad timeout left to the SDK's default", env: map[string]string{"OTEL_EXPORTER_OTLP_TIMEOUT": "5s"}, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.sig.name == "" {
				tt.sig = metricsSignal
			}
			tt.opts.LookupEnv = envMap(tt.env)
			if got := set.from(tt.opts.export(tt.sig, tt.signalPath)); !slices.Equal(got, tt.want) {
				t.Errorf("from(%+v, %q) = %q, want %q", tt.opts, tt.signalPath, got, tt.want)
			}
		})
	}
}

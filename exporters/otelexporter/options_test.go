package otelexporter

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// TestOTLPOptionSet checks the one translation of Options into an OTLP
// exporter package's options, with strings standing in for the options.
func TestOTLPOptionSet(t *testing.T) {
	set := otlpOptionSet[string]{
		endpoint:    func(s string) string { return "endpoint " + s },
		endpointURL: func(s string) string { return "url " + s },
		insecure:    func() string { return "insecure" },
		headers:     func(h map[string]string) string { return fmt.Sprint("headers ", h) },
		timeout:     func(d time.Duration) string { return "timeout " + d.String() },
	}
	tests := []struct {
		name       string
		opts       Options
		signalPath string
		want       []string
	}{
		{name: "nothing set leaves it to OTEL_*", opts: Options{}, want: nil},
		{name: "host:port", opts: Options{Endpoint: "collector:4317"}, want: []string{"endpoint collector:4317"}},
		{name: "grpc URL as it is", opts: Options{Endpoint: "https://collector:4317/"}, want: []string{"url https://collector:4317/"}},
		{name: "http URL gets the signal path", opts: Options{Endpoint: "http://collector:4318/"}, signalPath: "/v1/logs",
			want: []string{"url http://collector:4318/v1/logs"}},
		{name: "http host:port gets no path", opts: Options{Endpoint: "collector:4318"}, signalPath: "/v1/metrics",
			want: []string{"endpoint collector:4318"}},
		{name: "every field", opts: Options{Endpoint: "c:1", Insecure: true, Headers: map[string]string{"a": "b"}, Timeout: 3 * time.Second},
			want: []string{"endpoint c:1", "insecure", "headers map[a:b]", "timeout 3s"}},
		{name: "empty headers still override the environment", opts: Options{Headers: map[string]string{}},
			want: []string{"headers map[]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := set.from(tt.opts, tt.signalPath); !slices.Equal(got, tt.want) {
				t.Errorf("from(%+v, %q) = %q, want %q", tt.opts, tt.signalPath, got, tt.want)
			}
		})
	}
}

package main

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestParseByteSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want byteSize
		ok   bool
	}{
		{"0", 0, true}, {"1024", 1024, true}, {"16MiB", 16 << 20, true}, {"2 KiB", 2048, true},
		{"1TiB", 1 << 40, true}, {"3MB", 3e6, true}, {"7B", 7, true},
		{"", 0, false}, {"-1", 0, false}, {"1.5MiB", 0, false}, {"lots", 0, false}, {"9999999TiB", 0, false},
	} {
		got, err := parseByteSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseByteSize(%q) = %v, %v; want %v (ok %v)", tc.in, got, err, tc.want, tc.ok)
		}
	}
	for _, b := range []byteSize{16 << 20, 1 << 40, 1500, 2048} {
		if back, err := parseByteSize(b.String()); err != nil || back != b {
			t.Errorf("%d formats as %q, which parses as %v, %v", b, b.String(), back, err)
		}
	}
}

// TestMaxMetadataSizeSources checks --max-metadata-size from the command
// line, the environment (a global flag) and the configuration file, on
// show and enqueue.
func TestMaxMetadataSizeSources(t *testing.T) {
	dir := fixtureSpool(t) // a-new has 36 bytes of metadata
	cfg := filepath.Join(t.TempDir(), "agent.yaml")
	writeFile(t, cfg, "max-metadata-size: 10B\n")
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
	}{
		{"flag", nil, []string{"--max-metadata-size", "10", "show", dir, "a-new"}},
		{"environment", map[string]string{"SPOOL_AGENT_MAX_METADATA_SIZE": "10B"}, []string{"show", dir, "a-new"}},
		{"file", nil, []string{"--config", cfg, "show", dir, "a-new"}},
		{"enqueue", nil, []string{"--max-metadata-size", "10", "enqueue", dir, "active", "--metadata-file", "-"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := cli(t, tc.env, strings.Repeat("m", 11), tc.args...)
			if r.code != exitFailure {
				t.Fatalf("exit %d, want 1: %+v", r.code, r)
			}
			checkOneLine(t, r.stderr, "max-metadata-size")
		})
	}
	if r := cli(t, nil, "", "--max-metadata-size", "1KiB", "show", dir, "a-new"); r.code != 0 {
		t.Fatalf("show under the bound: %+v", r)
	}
}

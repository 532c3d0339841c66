package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/spool-agent/spool-agent/spool"
)

// benchEntries is the size of the benchmarks' spool.
const benchEntries = 20000

// bigSpool creates a spool of n entries in queue "active".
func bigSpool(b *testing.B, n int) string {
	b.Helper()
	dir := filepath.Join(b.TempDir(), "spool")
	s, err := spool.Create(dir, []string{"active"}, &spool.Options{Durability: spool.DurabilityNone})
	if err != nil {
		b.Fatal(err)
	}
	for i := range n {
		if _, err := s.EnqueueBytes(context.Background(), "active", []byte("m"), []byte("data"), spool.EnqueueOptions{Name: "e" + strconv.Itoa(i)}); err != nil {
			b.Fatal(err)
		}
	}
	return dir
}

// baselineList is the least a listing with mtimes and data sizes does:
// read the queue directory and lstat each entry's metadata and data file.
func baselineList(b *testing.B, dir string) {
	ents, err := os.ReadDir(filepath.Join(dir, "active"))
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() == spool.CheckoutDir {
			continue
		}
		if _, err := os.Lstat(filepath.Join(dir, "active", e.Name())); err != nil {
			b.Fatal(err)
		}
		if _, err := os.Lstat(filepath.Join(dir, spool.DataDir, e.Name())); err != nil {
			b.Fatal(err)
		}
	}
}

// benchRatio times cmd and the baseline alternately and reports the
// ratio of their total times (1 is as fast as the baseline).
func benchRatio(b *testing.B, args ...string) {
	dir := bigSpool(b, benchEntries)
	m := &Main{Stdin: nil, Stdout: io.Discard, Stderr: io.Discard, LookupEnv: func(string) (string, bool) { return "", false }, Now: time.Now}
	var tCmd, tBase time.Duration
	for b.Loop() {
		t0 := time.Now()
		baselineList(b, dir)
		t1 := time.Now()
		if code := m.Main(context.Background(), append(append([]string{}, args[:1]...), append([]string{dir}, args[1:]...)...)); code != 0 {
			b.Fatalf("%v: exit %d", args, code)
		}
		tBase += t1.Sub(t0)
		tCmd += time.Since(t1)
	}
	b.ReportMetric(float64(tCmd)/float64(tBase), "cmd/baseline")
	b.ReportMetric(float64(tCmd.Nanoseconds())/float64(b.N)/benchEntries, "ns/entry")
}

// BenchmarkLs: go test -run '^$' -bench 'Ls|Shape' ./cmd/spool-agent
func BenchmarkLs(b *testing.B)     { benchRatio(b, "ls") }
func BenchmarkLsJSON(b *testing.B) { benchRatio(b, "ls", "-o", "json") }
func BenchmarkShape(b *testing.B)  { benchRatio(b, "shape") }

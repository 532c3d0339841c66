package reliability

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spool-agent/spool-agent/reliability/internal/workload"
	"github.com/spool-agent/spool-agent/spool"
)

// measured is the outcome of one command whose memory was measured.
type measured struct {
	stdout, stderr string
	code           int
	elapsed        time.Duration
	maxRSS         int64 // bytes: the child's peak resident set (its ru_maxrss, through rsswrap)
}

// runMeasured runs the agent binary with args (bounded by timeout) and
// returns its output, exit code, time and peak RSS.
func runMeasured(t *testing.T, timeout time.Duration, args ...string) measured {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	rssFile := filepath.Join(t.TempDir(), "rss")
	cmd := exec.CommandContext(ctx, bin.rsswrap, append([]string{rssFile, bin.agent}, args...)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	start := time.Now()
	err := cmd.Run()
	m := measured{stdout: o.String(), stderr: e.String(), elapsed: time.Since(start)}
	if ctx.Err() != nil {
		t.Fatalf("%v: did not finish within %v", args, timeout)
	}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("%v: %v", args, err)
		}
		m.code = ee.ExitCode()
	}
	m.maxRSS = readRSS(t, rssFile)
	return m
}

// readRSS reads the peak RSS in bytes that rsswrap wrote to path.
func readRSS(t *testing.T, path string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("rsswrap wrote no peak RSS: %v", err)
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		t.Fatalf("rsswrap's peak RSS %q: %v", b, err)
	}
	return n
}

// sparseCase is one command of TestHostileSparseMetadata.
type sparseCase struct {
	name       string
	checkedOut bool // the sparse file is a checkout, three hours old
	args       func(dir string) []string
}

// TestHostileSparseMetadata: an entry whose metadata file claims a terabyte
// (a sparse file that stores nothing), or 200 MiB (an allocation that
// succeeds), under show, ls, rm, mv and recover: each command succeeds or
// fails with a clear one-line error within seconds, its peak RSS stays
// under 100 MB, and the entry is never stranded in .checkout.
func TestHostileSparseMetadata(t *testing.T) {
	needBinary(t, &bin.agent)
	cases := []sparseCase{
		{"show", false, func(dir string) []string { return []string{"show", dir, "e1"} }},
		{"show-json", false, func(dir string) []string { return []string{"show", "-o", "json", dir, "e1"} }},
		{"ls", false, func(dir string) []string { return []string{"ls", "--all", dir} }},
		{"ls-json", false, func(dir string) []string { return []string{"ls", "--all", "-o", "json", dir} }},
		{"rm", false, func(dir string) []string { return []string{"rm", dir, "e1"} }},
		{"mv", false, func(dir string) []string { return []string{"mv", "--to", "out", dir, "e1"} }},
		{"recover", true, func(dir string) []string { return []string{"recover", "--older-than", "1m", dir} }},
	}
	for _, size := range []int64{1 << 40, 200 << 20} {
		for _, c := range cases {
			t.Run(fmt.Sprintf("%s/%dMiB", c.name, size>>20), func(t *testing.T) { c.run(t, size) })
		}
	}
}

func (c sparseCase) run(t *testing.T, size int64) {
	const maxRSS = 100 << 20
	dir := filepath.Join(t.TempDir(), "spool")
	s, err := spool.Create(dir, []string{"in", "out"}, &spool.Options{Durability: spool.DurabilityNone})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.EnqueueBytes(context.Background(), "in", []byte("meta"), []byte("data"), spool.EnqueueOptions{Name: "e1"}); err != nil {
		t.Fatal(err)
	}
	meta := filepath.Join(dir, "in", "e1")
	co := filepath.Join(dir, "in", spool.CheckoutDir, "e1")
	if c.checkedOut {
		if err := os.Rename(meta, co); err != nil {
			t.Fatal(err)
		}
		meta = co
	}
	if err := os.Truncate(meta, size); err != nil {
		t.Fatal(err)
	}
	if c.checkedOut {
		old := time.Now().Add(-3 * time.Hour)
		os.Chtimes(co, old, old)
	}
	m := runMeasured(t, 60*time.Second, c.args(dir)...)
	t.Logf("%s: exit %d in %v, peak RSS %.1f MB, stderr %q", c.name, m.code, m.elapsed.Round(time.Millisecond), float64(m.maxRSS)/(1<<20), firstLine(m.stderr))
	if m.elapsed > 10*time.Second {
		t.Errorf("%s took %v", c.name, m.elapsed)
	}
	if m.maxRSS > maxRSS {
		t.Errorf("%s: peak RSS %.0f MB, want under %d MB", c.name, float64(m.maxRSS)/(1<<20), maxRSS>>20)
	}
	crashed := strings.Contains(m.stderr, "panic:") || strings.Contains(m.stderr, "fatal error:")
	switch {
	case crashed:
		t.Errorf("%s crashed: %s", c.name, firstLine(m.stderr))
	case m.code != 0 && strings.TrimSpace(m.stderr) == "":
		t.Errorf("%s failed (exit %d) without saying why", c.name, m.code)
	case m.code != 0 && strings.Contains(strings.TrimSpace(m.stderr), "\n"):
		t.Errorf("%s: the error is not one line: %q", c.name, m.stderr)
	}
	if _, err := os.Lstat(co); err == nil {
		t.Errorf("%s: the entry is stranded in %s", c.name, co)
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// TestHostileSparseMetadataReader: a Reader of this library (spoolworker
// consume) on a queue holding an entry whose metadata claims a terabyte and
// an ordinary entry: it processes the ordinary entry, leaves the oversized
// one waiting in its queue (never stranded in .checkout), and its peak RSS
// stays under 100 MB.
func TestHostileSparseMetadataReader(t *testing.T) {
	needBinary(t, &bin.worker)
	base := t.TempDir()
	dir := filepath.Join(base, "spool")
	s, err := spool.Create(dir, []string{"incoming", "done"}, &spool.Options{Durability: spool.DurabilityNone})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"huge", "plain"} {
		if _, err := s.EnqueueBytes(context.Background(), "incoming", workload.Metadata(n), workload.Payload(n, 100), spool.EnqueueOptions{Name: n}); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Truncate(filepath.Join(dir, "incoming", "huge"), 1<<40); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(base, "moved.log")
	rssFile := filepath.Join(base, "rss")
	cmd := exec.Command(bin.rsswrap, rssFile, bin.worker, "consume", "-spool", dir, "-queue", "incoming", "-to", "done", "-log", log)
	var e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &e, &e
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	waitLines(t, log, "moved", 1)
	cmd.Process.Signal(syscall.SIGTERM)
	err = cmd.Wait()
	rss := readRSS(t, rssFile)
	t.Logf("reader: exit %v, peak RSS %.1f MB, output %q", err, float64(rss)/(1<<20), firstLine(e.String()))
	if err != nil {
		t.Errorf("the reader failed: %v: %s", err, e.String())
	}
	if rss > 100<<20 {
		t.Errorf("peak RSS %.0f MB, want under 100 MB", float64(rss)/(1<<20))
	}
	if q, checkedOut, err := s.Find("huge"); err != nil || q != "incoming" || checkedOut {
		t.Errorf("the oversized entry: in %q (checked out %v, %v), want waiting in incoming", q, checkedOut, err)
	}
	if q, _, err := s.Find("plain"); err != nil || q != "done" {
		t.Errorf("the ordinary entry: in %q (%v), want done", q, err)
	}
}

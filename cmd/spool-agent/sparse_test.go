package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/spool-agent/spool-agent/internal/testkit"
	"github.com/spool-agent/spool-agent/spool"
)

// TestSparseMetadata checks the commands on entries whose metadata file
// claims 100 MB or 1 TiB (sparse, so the test writes nothing): show says so
// in one line with little memory, in text and JSON; ls lists them; rm and
// mv never leave the entry in .checkout. It runs the binary, to measure its
// peak memory.
func TestSparseMetadata(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	s, err := spool.Create(dir, []string{"active", "frozen"}, &spool.Options{Durability: spool.DurabilityNone})
	if err != nil {
		t.Fatal(err)
	}
	sizes := map[string]int64{"huge": 100e6, "tera": 1 << 40}
	for name, size := range sizes {
		if _, err := s.EnqueueBytes(context.Background(), "active", []byte("m"), nil, spool.EnqueueOptions{Name: name}); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(filepath.Join(dir, "active", name), size); err != nil {
			t.Fatal(err)
		}
	}
	rssFile := filepath.Join(t.TempDir(), "rss")
	run := func(args ...string) (stdout, stderr string, code int, maxRSS int64) {
		t.Helper()
		// Through rsswrap: Linux gives a child started by this process
		// (os/exec forks with a shared address space) the peak RSS of
		// this process, whatever the child's own.
		cmd := exec.Command(rsswrapBin, append([]string{rssFile, agentBin}, args...)...)
		cmd.Env = testkit.AgentEnv()
		// Only the start of stdout is kept, so that the test's own
		// memory stays small.
		o, e := &headWriter{max: 4096}, &headWriter{max: 4096}
		cmd.Stdout, cmd.Stderr = o, e
		err := cmd.Run()
		if err != nil {
			if _, ok := err.(*exec.ExitError); !ok {
				t.Fatal(err)
			}
		}
		b, err := os.ReadFile(rssFile)
		if err != nil {
			t.Fatalf("rsswrap wrote no peak RSS: %v (stderr %q)", err, e.String())
		}
		rss, err := strconv.ParseInt(string(b), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return o.String(), e.String(), cmd.ProcessState.ExitCode(), rss
	}
	const maxMem = 100 << 20
	for _, name := range []string{"huge", "tera"} {
		for _, o := range []string{"text", "json"} {
			_, stderr, code, rss := run("show", dir, name, "-o", o)
			if code != exitFailure || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "--max-metadata-size 16MiB") {
				t.Errorf("show %s -o %s: exit %d, stderr %q", name, o, code, stderr)
			}
			if rss > maxMem {
				t.Errorf("show %s -o %s: peak RSS %d MB, want under %d MB", name, o, rss>>20, maxMem>>20)
			}
		}
	}
	stdout, _, code, _ := run("ls", dir)
	if code != 0 || !strings.Contains(stdout, "huge") || !strings.Contains(stdout, "tera") {
		t.Errorf("ls: exit %d:\n%s", code, stdout)
	}
	for _, args := range [][]string{{"mv", dir, "huge", "--to", "frozen"}, {"rm", dir, "tera"}} {
		_, stderr, code, rss := run(args...)
		if code != 0 && strings.Count(stderr, "\n") != 1 {
			t.Errorf("%q: exit %d, stderr not one line: %q", args, code, stderr)
		}
		if rss > maxMem {
			t.Errorf("%q: peak RSS %d MB", args, rss>>20)
		}
		if co, _ := s.ListCheckedOut("active"); len(co) != 0 {
			t.Fatalf("%q (exit %d, %q) left %q in .checkout", args, code, stderr, co)
		}
	}

	// A larger bound reads the 100 MB one (zeros; moved to frozen above),
	// escaping as it writes.
	stdout, stderr, code, rss := run("--max-metadata-size", "200MB", "show", dir, "huge", "-o", "json")
	if code != 0 || !strings.Contains(stdout, `"metadata": "m\u0000\u0000`) {
		t.Errorf("show huge with --max-metadata-size 200MB: exit %d, stderr %q, output starts %q", code, stderr, stdout)
	}
	t.Logf("show -o json of 100 MB of metadata (600 MB of JSON): peak RSS %d MB", rss>>20)
}

// headWriter keeps the first max bytes written to it and counts the rest.
type headWriter struct {
	max int
	buf []byte
	n   int64
}

func (h *headWriter) Write(p []byte) (int, error) {
	if room := h.max - len(h.buf); room > 0 {
		h.buf = append(h.buf, p[:min(room, len(p))]...)
	}
	h.n += int64(len(p))
	return len(p), nil
}

func (h *headWriter) String() string { return string(h.buf) }

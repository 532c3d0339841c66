package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spool-agent/spool-agent/internal/syncbuf"
)

// TestStatePath checks that run keeps its alert state in --state.path (or
// the default place) so that after a restart a problem still there alerts
// from the first cycle without a second Start, and refuses a state file
// inside a spool.
func TestStatePath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	mustCLI(t, "", "init", dir, "--queue", "q")
	writeFile(t, filepath.Join(dir, ".data", "orphan"), "x")
	alerting := `spool_problems{dir="data",kind="orphaned",queue="",spool="s"} 1`

	stateDir := t.TempDir()
	defaultPath := filepath.Join(stateDir, "default", "state.json")
	for _, tc := range []struct {
		name string
		args []string
		def  func() (string, error)
		file string
	}{
		{"--state.path", []string{"--state.path", filepath.Join(stateDir, "flag.json")}, nil, filepath.Join(stateDir, "flag.json")},
		{"default place", nil, func() (string, error) { return defaultPath, nil }, defaultPath},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--spool", "s=" + dir, "--web.listen-address", "127.0.0.1:0", "--alert-after-cycles", "3"}, tc.args...)
			// First run: the problem alerts after 4 cycles of 50ms.
			first := testMain(nil, "", nil, nil)
			first.DefaultStatePath = tc.def
			ctx, stop := context.WithCancel(context.Background())
			url, stderr := startRun(t, ctx, first, append(args, "--check-every", "50ms")...)
			waitScrape(t, url, alerting)
			stop()
			waitLine(t, stderr, "run exited 0")
			if _, err := os.Stat(tc.file); err != nil {
				t.Fatalf("no state file: %v", err)
			}
			// Second run: one cycle an hour, so an alert in its first
			// snapshot comes from the state file.
			second := testMain(nil, "", nil, nil)
			second.DefaultStatePath = tc.def
			url, stderr = runInProcess(t, second, append(args, "--check-every", "1h")...)
			waitScrape(t, url, alerting)
			if strings.Contains(stderr.String(), "spool problems started") {
				t.Errorf("the restart started the problem again:\n%s", stderr.String())
			}
		})
	}

	r := cli(t, nil, "", "run", "--spool", "s="+dir, "--web.listen-address", "127.0.0.1:0", "--state.path", filepath.Join(dir, "state.json"))
	if r.code != exitUsage || !strings.Contains(r.stderr, "inside") {
		t.Fatalf("state file inside the spool: exit %d, stderr %q", r.code, r.stderr)
	}
}

// startRun starts `run args...` through Main until ctx ends; it writes "run
// exited N" to the returned stderr when Main returns.
func startRun(t *testing.T, ctx context.Context, m *Main, args ...string) (url string, stderr *syncbuf.Buffer) {
	t.Helper()
	stderr = new(syncbuf.Buffer)
	m.Stdout, m.Stderr = io.Discard, stderr
	done := make(chan struct{})
	go func() {
		defer close(done)
		code := m.Main(ctx, append([]string{"run"}, args...))
		io.WriteString(stderr, "run exited "+strconv.Itoa(code)+"\n")
	}()
	t.Cleanup(func() {
		select {
		case <-done:
		case <-time.After(e2eDeadline):
			t.Errorf("run did not return within %v", e2eDeadline)
		}
	})
	return waitLine(t, stderr, "spool-agent: serving metrics on "), stderr
}

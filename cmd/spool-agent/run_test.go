package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spool-agent/spool-agent/internal/syncbuf"
	"github.com/spool-agent/spool-agent/internal/testkit"
)

// TestRunInProcess drives `run` through Main as the binary does (parse,
// run, close), with a reload request and a cancelled context, so that the
// race detector sees the agent's goroutines.
func TestRunInProcess(t *testing.T) {
	tmp := t.TempDir()
	one, two := filepath.Join(tmp, "one"), filepath.Join(tmp, "two")
	mustCLI(t, "", "init", two, "--queue", "q")
	cfg := filepath.Join(tmp, "agent.yaml")
	writeFile(t, cfg, "log.level: info\n")

	var stderr syncbuf.Buffer
	m := testMain(nil, "", nil, nil)
	m.Stdout, m.Stderr = io.Discard, &stderr
	reload := make(chan os.Signal, 1)
	m.Reload = reload
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	exit := make(chan int, 1)
	go func() {
		exit <- m.Main(ctx, []string{"--config", cfg, "run", "--spool", "one=" + one, "--create",
			"--web.listen-address", "127.0.0.1:0", "--check-every", "50ms"})
	}()

	url := waitLine(t, &stderr, "spool-agent: serving metrics on ")
	get := func() string {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	waitBody := func(what, want string) {
		t.Helper()
		testkit.WaitFor(t, e2eDeadline, what+" ("+want+") in /metrics", func() bool { return strings.Contains(get(), want) })
	}
	waitBody("spool one up", `spool_up{spool="one"} 1`)

	writeFile(t, cfg, fmt.Sprintf("log.level: debug\nspools:\n  two: {dir: %s}\n", two))
	reload <- syscall.SIGHUP
	waitBody("spool two added by the reload", `spool_up{spool="two"} 1`)
	waitLine(t, &stderr, "configuration reloaded")

	for _, path := range []string{"/", "/-/healthy", "/-/ready"} {
		resp, err := http.Get(strings.TrimSuffix(url, "/metrics") + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %s", path, resp.Status)
		}
	}

	cancel()
	select {
	case code := <-exit:
		if code != 0 {
			t.Fatalf("run exited %d after cancel:\n%s", code, stderr.String())
		}
	case <-time.After(e2eDeadline):
		t.Fatalf("run did not return within %v of its context's end", e2eDeadline)
	}
	if _, err := http.Get(url); err == nil {
		t.Error("still serving after run returned")
	}
}

// waitLine waits for a line of w that starts with (or contains) prefix and
// returns the rest of that line after prefix.
func waitLine(t *testing.T, w *syncbuf.Buffer, prefix string) string {
	t.Helper()
	var rest string
	testkit.WaitFor(t, e2eDeadline, fmt.Sprintf("a line with %q", prefix), func() bool {
		for _, line := range strings.Split(w.String(), "\n") {
			if i := strings.Index(line, prefix); i >= 0 {
				rest = line[i+len(prefix):]
				return true
			}
		}
		return false
	})
	return rest
}

// TestRunOTLPFlags checks that the --otlp.* flags, or the OTEL_* variables
// of Main's environment, switch OTLP on and point it at an endpoint: metrics
// arrive on /v1/metrics, and a problem's start event on /v1/logs;
// cancelling run flushes what is left.
func TestRunOTLPFlags(t *testing.T) {
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "OTEL_") {
			t.Fatalf("the test environment sets %s, which would change the OTLP setup under test", kv)
		}
	}
	tests := []struct {
		name string
		args func(url string) []string
		env  func(url string) map[string]string
	}{
		{name: "flags", args: func(url string) []string {
			return []string{"--otlp.endpoint", url, "--otlp.protocol", "http/protobuf", "--otlp.headers", "X-Tenant=t1",
				"--otlp.export-interval", "100ms", "--otlp.service-name", "flags-test"}
		}},
		{name: "environment", env: func(url string) map[string]string {
			return map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": url, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
				"OTEL_EXPORTER_OTLP_HEADERS": "X-Tenant=t1", "OTEL_METRIC_EXPORT_INTERVAL": "100", "OTEL_SERVICE_NAME": "env-test"}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			testRunOTLP(t, tt.args, tt.env)
		})
	}
}

func testRunOTLP(t *testing.T, args func(string) []string, env func(string) map[string]string) {
	var mu sync.Mutex
	posts := map[string]int{}
	headers := map[string]string{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		posts[r.URL.Path]++
		headers[r.URL.Path] = r.Header.Get("X-Tenant")
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer srv.Close()
	count := func(path string) (int, string) {
		mu.Lock()
		defer mu.Unlock()
		return posts[path], headers[path]
	}

	dir := filepath.Join(t.TempDir(), "spool")
	mustCLI(t, "", "init", dir, "--queue", "q")
	writeFile(t, filepath.Join(dir, ".data", "orphan"), "x")
	var stderr syncbuf.Buffer
	var envVars map[string]string
	if env != nil {
		envVars = env(srv.URL)
	}
	m := testMain(envVars, "", nil, nil)
	m.Stdout, m.Stderr = io.Discard, &stderr
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	exit := make(chan int, 1)
	go func() {
		a := []string{"run", "--spool", "s=" + dir, "--web.listen-address", "127.0.0.1:0",
			"--check-every", "50ms", "--alert-after-cycles", "0"}
		if args != nil {
			a = append(a, args(srv.URL)...)
		}
		exit <- m.Main(ctx, a)
	}()
	waitLine(t, &stderr, "spool problems started")
	testkit.WaitFor(t, e2eDeadline, "an OTLP metrics export with the header", func() bool {
		nm, hm := count("/v1/metrics")
		return nm > 0 && hm == "t1"
	})
	cancel()
	select {
	case code := <-exit:
		if code != 0 {
			t.Fatalf("run exited %d:\n%s", code, stderr.String())
		}
	case <-time.After(e2eDeadline):
		t.Fatal("run did not return")
	}
	// The start event's log record was flushed by Close at the latest.
	if nl, hl := count("/v1/logs"); nl == 0 || hl != "t1" {
		t.Fatalf("no OTLP logs export with the header after shutdown (posts %v)", posts)
	}
}

// TestGlobSkipsBadMatches checks that a glob match that is not a valid spool
// name (x=y, .hidden) or not a spool is logged once and skipped, at start
// and when a reload finds it, while the other spools are watched.
func TestGlobSkipsBadMatches(t *testing.T) {
	root := t.TempDir()
	for _, n := range []string{"good", "x=y", ".hidden"} {
		mustCLI(t, "", "init", filepath.Join(root, n), "--queue", "q")
	}
	if err := os.Mkdir(filepath.Join(root, "plain"), 0o755); err != nil {
		t.Fatal(err)
	}
	m := testMain(nil, "", nil, nil)
	reload := make(chan os.Signal, 1)
	m.Reload = reload
	url, stderr := runInProcess(t, m, "--spool-glob", filepath.Join(root, "*"), "--spool-glob", filepath.Join(root, ".*"),
		"--web.listen-address", "127.0.0.1:0", "--check-every", "50ms")
	waitLine(t, stderr, "spool-agent started")
	waitScrape(t, url, `spool_up{spool="good"} 1`)

	mustCLI(t, "", "init", filepath.Join(root, "a,b"), "--queue", "q")
	mustCLI(t, "", "init", filepath.Join(root, "later"), "--queue", "q")
	reload <- syscall.SIGHUP
	waitScrape(t, url, `spool_up{spool="later"} 1`)
	waitLine(t, stderr, "configuration reloaded")
	log := stderr.String()
	for _, p := range []string{"x=y", ".hidden", "plain", "a,b"} {
		if n := strings.Count(log, "--spool-glob match skipped"); n == 0 {
			t.Fatalf("no skip logged:\n%s", log)
		}
		if n := strings.Count(log, "path="+filepath.Join(root, p)+" ") + strings.Count(log, `path="`+filepath.Join(root, p)+`"`); n != 1 {
			t.Errorf("%s skipped %d times in the log, want once:\n%s", p, n, log)
		}
	}
}

// waitScrape waits until /metrics at url contains want.
func waitScrape(t *testing.T, url, want string) {
	t.Helper()
	testkit.WaitFor(t, e2eDeadline, want+" in /metrics", func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return strings.Contains(string(b), want)
	})
}

// TestProblemLogsAggregate checks that the agent logs problems one line per
// kind and directory with a count and the first names, not one per file.
func TestProblemLogsAggregate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	mustCLI(t, "", "init", dir, "--queue", "q")
	for i := range 200 {
		writeFile(t, filepath.Join(dir, ".data", fmt.Sprintf("orphan-%03d", i)), "x")
	}
	m := testMain(nil, "", nil, nil)
	_, stderr := runInProcess(t, m, "--spool", "s="+dir, "--web.listen-address", "127.0.0.1:0",
		"--check-every", "50ms", "--alert-after-cycles", "0")
	line := waitLine(t, stderr, "spool problems started")
	if !strings.Contains(line, "count=200") || !strings.Contains(line, "dir=data") {
		t.Fatalf("want one line for the 200 orphans, got %s", line)
	}
	if n := strings.Count(stderr.String(), "orphan-"); n > 5 {
		t.Errorf("%d names logged for 200 orphans, want the first 5:\n%s", n, stderr.String())
	}
}

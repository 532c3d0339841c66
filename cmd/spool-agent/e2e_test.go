package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/spool-agent/spool-agent/internal/syncbuf"
	"github.com/spool-agent/spool-agent/internal/testkit"
)

// agentBin is the spool-agent binary that TestMain builds once, and
// rsswrapBin internal/testkit/rsswrap, which reports a child's own peak RSS
// (a child of this large test process would report this process's).
var agentBin, rsswrapBin string

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "spool-agent-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	agentBin = filepath.Join(dir, "spool-agent")
	rsswrapBin = filepath.Join(dir, "rsswrap")
	for _, b := range []struct{ out, pkg string }{{agentBin, "."}, {rsswrapBin, "../../internal/testkit/rsswrap"}} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		out, err := exec.CommandContext(ctx, "go", "build", "-o", b.out, b.pkg).CombinedOutput()
		cancel()
		if err != nil {
			fmt.Fprintf(os.Stderr, "go build %s: %v\n%s", b.pkg, err, out)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// e2eDeadline bounds every wait of the end-to-end tests.
const e2eDeadline = 20 * time.Second

// agentProc is a running `spool-agent run`.
type agentProc struct {
	cmd    *exec.Cmd
	stderr syncbuf.Buffer
	url    string // of /metrics
	done   chan struct{}
	err    error // of Wait, once done is closed
}

// startAgent starts `spool-agent run args...` and waits for the line that
// says where it serves metrics.
func startAgent(t *testing.T, args ...string) *agentProc {
	t.Helper()
	a := &agentProc{done: make(chan struct{})}
	a.cmd = exec.Command(agentBin, append([]string{"run"}, args...)...)
	a.cmd.Env = testkit.AgentEnv()
	pipe, err := a.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			line := sc.Text()
			a.stderr.Write([]byte(line + "\n"))
			if u, ok := strings.CutPrefix(line, "spool-agent: serving metrics on "); ok {
				select {
				case urls <- u:
				default:
				}
			}
		}
		a.err = a.cmd.Wait()
		close(a.done)
	}()
	t.Cleanup(func() {
		select {
		case <-a.done:
		default:
			a.cmd.Process.Kill()
			<-a.done
		}
		if t.Failed() {
			t.Logf("--- agent stderr ---\n%s", a.stderr.String())
		}
	})
	select {
	case a.url = <-urls:
	case <-a.done:
		t.Fatalf("the agent exited before serving: %v\n%s", a.err, a.stderr.String())
	case <-time.After(e2eDeadline):
		t.Fatalf("the agent did not say where it serves metrics within %v:\n%s", e2eDeadline, a.stderr.String())
	}
	return a
}

// stop sends sig and waits for the agent to exit.
func (a *agentProc) stop(t *testing.T, sig os.Signal) error {
	t.Helper()
	if err := a.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.done:
		return a.err
	case <-time.After(e2eDeadline):
		t.Fatalf("the agent did not exit within %v of %v", e2eDeadline, sig)
		return nil
	}
}

// scrape is one parsed scrape of /metrics.
type scrape struct {
	body string
	fams map[string]*dto.MetricFamily
}

func (a *agentProc) scrape(t *testing.T) scrape {
	t.Helper()
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(a.url)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s %v", resp.Status, err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("scrape does not parse: %v\n%s", err, body)
	}
	return scrape{body: string(body), fams: fams}
}

// value returns the value of the series name{labels} (given as name,
// value pairs; the series may have more labels) and whether it exists.
func (s scrape) value(name string, labels ...string) (float64, bool) {
	f, ok := s.fams[name]
	if !ok {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		if !testkit.HasLabels(m, labels...) {
			continue
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Untyped != nil:
			return m.GetUntyped().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

// is reports whether the series exists with value want.
func (s scrape) is(want float64, name string, labels ...string) bool {
	v, ok := s.value(name, labels...)
	return ok && v == want
}

// waitFor scrapes every 50ms until cond holds, and returns that scrape.
func (a *agentProc) waitFor(t *testing.T, what string, cond func(scrape) bool) scrape {
	t.Helper()
	deadline := time.Now().Add(e2eDeadline)
	for {
		s := a.scrape(t)
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("within %v: %s did not happen; last scrape:\n%s", e2eDeadline, what, spoolLines(s.body))
		}
		select {
		case <-a.done:
			t.Fatalf("the agent exited while waiting for %s: %v", what, a.err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// spoolLines keeps the spool_ series of a scrape, for failure messages.
func spoolLines(body string) string {
	var b strings.Builder
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, "spool_") && !strings.Contains(l, "_bucket") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// bin runs a subcommand of the binary and returns its standard output.
func bin(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), e2eDeadline)
	defer cancel()
	cmd := exec.CommandContext(ctx, agentBin, args...)
	cmd.Env = testkit.AgentEnv()
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("spool-agent %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

const orphanedData = "spool_problems"

// orphanGauge is spool_problems for orphaned files in .data of spool.
func orphanGauge(s scrape, spool string) (float64, bool) {
	return s.value(orphanedData, "spool", spool, "kind", "orphaned", "dir", "data")
}

func TestAgentEndToEnd(t *testing.T) {
	tmp := t.TempDir()
	alpha := filepath.Join(tmp, "alpha") // created by the agent's --create
	beta := filepath.Join(tmp, "beta")   // from the configuration file
	gamma := filepath.Join(tmp, "gamma") // added by SIGHUP
	bin(t, "", "init", beta, "--queue", "in", "--queue", "out")
	bin(t, "", "init", gamma, "--queue", "g")
	// An orphan planted before the agent starts: its first cycle sees it,
	// so its alert must show exactly from the third cycle on.
	betaOrphan := filepath.Join(beta, ".data", "orphan-before-start")
	writeFile(t, betaOrphan, "x")

	cfg := filepath.Join(tmp, "agent.yaml")
	writeFile(t, cfg, fmt.Sprintf("spools:\n  beta:\n    dir: %s\n", beta))

	a := startAgent(t, "--config", cfg,
		"--spool", "alpha="+alpha, "--create", "--create-queue", "active", "--create-queue", "frozen",
		"--web.listen-address", "127.0.0.1:0",
		"--check-every", "100ms", "--alert-after-cycles", "2")

	// Debouncing, seen on beta from the start: 0 in cycles 1 and 2, 1 from 3 on.
	var seen []string
	a.waitFor(t, "beta's orphan alerting", func(s scrape) bool {
		cycles, ok1 := s.value("spool_fsck_cycles_total", "spool", "beta")
		g, ok2 := orphanGauge(s, "beta")
		if !ok1 || cycles == 0 {
			return false
		}
		if !ok2 {
			g = 0 // zero-filled as kind="orphaned", dir=""
			if !s.is(0, orphanedData, "spool", "beta", "kind", "orphaned") {
				t.Fatalf("no spool_problems series for kind orphaned:\n%s", spoolLines(s.body))
			}
		}
		seen = append(seen, fmt.Sprintf("cycle %v: %v", cycles, g))
		want := 0.0
		if cycles >= 3 {
			want = 1
		}
		if g != want {
			t.Fatalf("beta's orphan gauge is %v after cycle %v, want %v (scrapes: %v)", g, cycles, want, seen)
		}
		return g == 1
	})
	t.Logf("beta's orphan by cycle: %v", seen)

	// alpha was created by --create with its queues.
	for _, q := range []string{"active", "frozen"} {
		if st, err := os.Stat(filepath.Join(alpha, q, ".checkout")); err != nil || !st.IsDir() {
			t.Fatalf("--create did not create queue %s: %v", q, err)
		}
	}

	// Enqueue through the CLI; the queue series follow.
	for i := range 3 {
		bin(t, fmt.Sprintf("payload %d", i), "enqueue", alpha, "active", "--metadata", "m", "--data-file", "-")
	}
	held := strings.TrimSpace(bin(t, "", "enqueue", beta, "out", "--name", "held-entry"))
	if err := os.Rename(filepath.Join(beta, "out", held), filepath.Join(beta, "out", ".checkout", held)); err != nil {
		t.Fatal(err)
	}
	s := a.waitFor(t, "the enqueued entries exported", func(s scrape) bool {
		return s.is(3, "spool_queue_entries", "spool", "alpha", "queue", "active") &&
			s.is(1, "spool_queue_checked_out_entries", "spool", "beta", "queue", "out")
	})
	for _, c := range []struct {
		want   float64
		name   string
		labels []string
	}{
		{1, "spool_up", []string{"spool", "alpha"}},
		{1, "spool_up", []string{"spool", "beta"}},
		{0, "spool_queue_entries", []string{"spool", "alpha", "queue", "frozen"}},
		{0, "spool_queue_checked_out_entries", []string{"spool", "alpha", "queue", "active"}},
		{0, "spool_queue_entries", []string{"spool", "beta", "queue", "out"}},
		{0, "spool_queue_entries", []string{"spool", "beta", "queue", "in"}},
		{3, "spool_queue_entry_age_seconds", []string{"spool", "alpha", "queue", "active"}},
		{1, "spool_agent_build_info", nil},
	} {
		if !s.is(c.want, c.name, c.labels...) {
			v, ok := s.value(c.name, c.labels...)
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, v, ok, c.want)
		}
	}
	now := float64(time.Now().Unix())
	if ts, ok := s.value("spool_queue_oldest_entry_timestamp_seconds", "spool", "alpha", "queue", "active"); !ok || ts < now-60 || ts > now+1 {
		t.Errorf("oldest entry timestamp of alpha/active = %v (present %v), want about %v", ts, ok, now)
	}
	if _, ok := s.value("spool_queue_oldest_entry_timestamp_seconds", "spool", "alpha", "queue", "frozen"); ok {
		t.Error("oldest entry timestamp exported for the empty queue alpha/frozen")
	}
	if _, ok := s.value("spool_queue_oldest_checked_out_timestamp_seconds", "spool", "beta", "queue", "out"); !ok {
		t.Error("no oldest checked-out timestamp for beta/out")
	}
	if _, ok := s.value("spool_fsck_last_success_timestamp_seconds", "spool", "alpha"); !ok {
		t.Error("no spool_fsck_last_success_timestamp_seconds for alpha")
	}

	// An orphan planted while the agent runs: 0 until at least three cycles
	// later (the first cycle that can see it is the one after c0), then 1;
	// the start counter counts it.
	// The counters count every orphaned problem: an enqueue slower than
	// three cycles (fsyncs on a loaded machine) leaves a transient orphaned
	// registry file that may alert too. Count from here.
	s0 := a.scrape(t)
	c0, _ := s0.value("spool_fsck_cycles_total", "spool", "alpha")
	events := func(s scrape, sp, ev string) float64 {
		v, _ := s.value("spool_problem_events_total", "spool", sp, "kind", "orphaned", "event", ev)
		return v
	}
	start0 := events(s0, "alpha", "start")
	alphaOrphan := filepath.Join(alpha, ".data", "orphan-while-running")
	writeFile(t, alphaOrphan, "x")
	seen = nil
	s = a.waitFor(t, "alpha's orphan alerting", func(s scrape) bool {
		cycles, _ := s.value("spool_fsck_cycles_total", "spool", "alpha")
		g, _ := orphanGauge(s, "alpha")
		seen = append(seen, fmt.Sprintf("cycle %v: %v", cycles, g))
		if g != 0 && cycles < c0+3 {
			t.Fatalf("alpha's orphan alerts after cycle %v, planted after cycle %v: fewer than 3 sightings (scrapes: %v)", cycles, c0, seen)
		}
		return g == 1
	})
	t.Logf("alpha's orphan planted after cycle %v; by cycle: %v", c0, seen)
	if got := events(s, "alpha", "start"); got != start0+1 {
		t.Errorf("alpha's orphaned start events went from %v to %v, want one more:\n%s", start0, got, spoolLines(s.body))
	}

	// Removing the files ends the problems at once.
	for _, p := range []string{alphaOrphan, betaOrphan} {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	a.waitFor(t, "the orphans' alerts ended", func(s scrape) bool {
		for _, sp := range []string{"alpha", "beta"} {
			if start, end := events(s, sp, "start"), events(s, sp, "end"); start == 0 || end != start {
				return false
			}
		}
		return s.is(0, orphanedData, "spool", "alpha", "kind", "orphaned") &&
			s.is(0, orphanedData, "spool", "beta", "kind", "orphaned")
	})
	if !strings.Contains(a.stderr.String(), "spool problems started") || !strings.Contains(a.stderr.String(), "spool problems ended") {
		t.Errorf("the problems' start and end were not logged:\n%s", a.stderr.String())
	}

	// Deleting alpha's directory: alpha is down, beta still exported and up.
	if err := os.RemoveAll(alpha); err != nil {
		t.Fatal(err)
	}
	a.waitFor(t, "alpha down, beta up", func(s scrape) bool {
		return s.is(0, "spool_up", "spool", "alpha") && s.is(1, "spool_up", "spool", "beta") &&
			s.is(1, "spool_queue_checked_out_entries", "spool", "beta", "queue", "out")
	})
	bin(t, "", "init", alpha, "--queue", "active")
	bin(t, "", "enqueue", alpha, "active", "--metadata", "back")
	a.waitFor(t, "alpha back up", func(s scrape) bool {
		return s.is(1, "spool_up", "spool", "alpha") && s.is(1, "spool_queue_entries", "spool", "alpha", "queue", "active")
	})

	// SIGHUP with an edited configuration adds gamma; beta keeps its state.
	before := a.scrape(t)
	betaCycles, _ := before.value("spool_fsck_cycles_total", "spool", "beta")
	writeFile(t, cfg, fmt.Sprintf("spools:\n  beta:\n    dir: %s\n  gamma:\n    dir: %s\n", beta, gamma))
	if err := a.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	s = a.waitFor(t, "gamma added by SIGHUP", func(s scrape) bool {
		return s.is(1, "spool_up", "spool", "gamma") && s.is(0, "spool_queue_entries", "spool", "gamma", "queue", "g")
	})
	if c, _ := s.value("spool_fsck_cycles_total", "spool", "beta"); c < betaCycles {
		t.Errorf("beta's cycle counter went from %v to %v across the reload: its state was lost", betaCycles, c)
	}
	if got, was := events(s, "beta", "start"), events(before, "beta", "start"); got < was || got == 0 {
		t.Errorf("beta's start events went from %v to %v across the reload: its state was lost", was, got)
	}

	// A bad configuration on reload is logged and the running one kept.
	writeFile(t, cfg, "spools: [not, a, mapping\n")
	if err := a.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, e2eDeadline, `a "reload failed" log line`, func() bool { return strings.Contains(a.stderr.String(), "reload failed") })
	s = a.scrape(t)
	for _, sp := range []string{"alpha", "beta", "gamma"} {
		if !s.is(1, "spool_up", "spool", sp) {
			t.Errorf("after a failed reload spool %s is not up:\n%s", sp, spoolLines(s.body))
		}
	}

	testkit.CheckMetrics(t, []byte(s.body))

	if err := a.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: the agent exited with %v, want status 0", err)
	}
}

// TestAgentExits checks the exit of the binary: 0 on SIGINT, one line and
// a non-zero status when its port is taken or its configuration is bad.
func TestAgentExits(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	a := startAgent(t, "--spool", "demo="+dir, "--create", "--web.listen-address", "127.0.0.1:0")
	if !strings.HasPrefix(a.url, "http://127.0.0.1:") || !strings.HasSuffix(a.url, "/metrics") {
		t.Errorf("serving line names %q", a.url)
	}
	if err := a.stop(t, os.Interrupt); err != nil {
		t.Fatalf("SIGINT: exit %v, want 0", err)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cfgDir := t.TempDir()
	badCfg := filepath.Join(cfgDir, "bad.yaml")
	writeFile(t, badCfg, "spools:\n  x: {dri: /tmp}\n")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"port in use", []string{"run", "--spool", "demo=" + dir, "--web.listen-address", l.Addr().String()}, "address already in use"},
		{"bad config", []string{"--config", badCfg, "run", "--spool", "demo=" + dir}, `unknown key "dri"`},
		{"missing config", []string{"--config", filepath.Join(cfgDir, "nope.yaml"), "run"}, "no such file"},
		{"bad --spool", []string{"run", "--spool", "demo"}, "want NAME=DIR"},
		{"no spool", []string{"run"}, "no spool to watch"},
		{"bad web config", []string{"run", "--spool", "demo=" + dir, "--web.config.file", badCfg}, "--web.config.file"},
		{"bad check interval", []string{"run", "--spool", "demo=" + dir, "--check-every", "fast"}, "--check-every"},
		{"bad OTLP protocol", []string{"run", "--spool", "demo=" + dir, "--web.listen-address", "127.0.0.1:0", "--otlp.protocol", "carrier-pigeon"}, "unsupported OTLP protocol"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), e2eDeadline)
			defer cancel()
			cmd := exec.CommandContext(ctx, agentBin, tc.args...)
			cmd.Env = testkit.AgentEnv()
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			if err == nil {
				t.Fatal("exit status 0")
			}
			if _, ok := err.(*exec.ExitError); !ok {
				t.Fatal(err)
			}
			checkOneLine(t, stderr.String(), tc.want)
		})
	}
}

package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spool-agent/spool-agent/internal/testkit"
	"github.com/spool-agent/spool-agent/monitor"
)

func TestDiffSpools(t *testing.T) {
	cfg := monitor.DefaultConfig()
	slow := cfg
	slow.CheckEvery = time.Hour
	d := func(name, dir string, c monitor.Config) spoolDef { return spoolDef{Name: name, Dir: dir, Config: c} }
	tests := []struct {
		name                    string
		prev, next              []spoolDef
		added, removed, changed []string
	}{
		{"nothing", nil, nil, nil, nil, nil},
		{"same", []spoolDef{d("a", "/a", cfg)}, []spoolDef{d("a", "/a", cfg)}, nil, nil, nil},
		{"added and removed", []spoolDef{d("a", "/a", cfg)}, []spoolDef{d("b", "/b", cfg)}, []string{"b"}, []string{"a"}, nil},
		{"moved", []spoolDef{d("a", "/a", cfg)}, []spoolDef{d("a", "/x", cfg)}, nil, nil, []string{"a"}},
		{"settings", []spoolDef{d("a", "/a", cfg), d("b", "/b", cfg)}, []spoolDef{d("a", "/a", slow), d("b", "/b", cfg)}, nil, nil, []string{"a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, r, c := diffSpools(tt.prev, tt.next)
			if !slices.Equal(a, tt.added) || !slices.Equal(r, tt.removed) || !slices.Equal(c, tt.changed) {
				t.Errorf("diffSpools = added %v removed %v changed %v, want %v %v %v", a, r, c, tt.added, tt.removed, tt.changed)
			}
		})
	}
}

func TestConfigAutoReloadFlag(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want bool
	}{
		{[]string{"run", "--spool", "a=/a"}, true},
		{[]string{"run", "--spool", "a=/a", "--no-config.auto-reload"}, false},
		{[]string{"run", "--spool", "a=/a", "--config.auto-reload=false"}, false},
	} {
		m := testMain(nil, "", nil, nil)
		if err := m.ParseFlags(tt.args); err != nil {
			t.Fatalf("%v: %v", tt.args, err)
		}
		if got := m.cli.Run.ConfigAutoReload; got != tt.want {
			t.Errorf("%v: ConfigAutoReload = %v, want %v", tt.args, got, tt.want)
		}
	}
}

// returnMemory gives the memory of the scrapes back to the system: a
// child's peak RSS counts this process's until exec, and other tests
// (sparse_test.go) bound their children's. The end-to-end tests of this
// file also run in parallel, so after every sequential test.
func returnMemory() { debug.FreeOSMemory() }

// hasSpool reports whether /metrics serves spool's series.
func hasSpool(name string) func(scrape) bool {
	return func(s scrape) bool { _, ok := s.value("spool_up", "spool", name); return ok }
}

func noSpool(name string) func(scrape) bool {
	return func(s scrape) bool { _, ok := s.value("spool_up", "spool", name); return !ok }
}

// reloadStatus is (last reload successful, successes, failures).
func reloadStatus(s scrape) (ok, successes, failures float64) {
	ok, _ = s.value("spool_agent_config_last_reload_successful")
	successes, _ = s.value("spool_agent_config_reloads_total", "result", "success")
	failures, _ = s.value("spool_agent_config_reloads_total", "result", "failure")
	return ok, successes, failures
}

// TestDiscoveryGlobEndToEnd: a spool created under --spool-glob DIR/* is
// served without SIGHUP, and a removed one forgotten. --check-every is an
// hour: only events can find them.
func TestDiscoveryGlobEndToEnd(t *testing.T) {
	t.Parallel() // after the sequential tests, see returnMemory
	t.Cleanup(returnMemory)
	dir := t.TempDir()
	a := startAgent(t, "--spool-glob", filepath.Join(dir, "*"), "--check-every", "1h",
		"--web.listen-address", "127.0.0.1:0")
	s := a.scrape(t)
	if ok, succ, fail := reloadStatus(s); ok != 1 || succ != 0 || fail != 0 {
		t.Errorf("at start: reload successful %v, successes %v, failures %v; want 1 0 0", ok, succ, fail)
	}
	if v, _ := s.value("spool_agent_config_last_reload_success_timestamp_seconds"); v < float64(time.Now().Add(-time.Hour).Unix()) {
		t.Errorf("last reload success timestamp %v: not the start", v)
	}
	for _, name := range []string{"one", "two"} {
		bin(t, "", "init", filepath.Join(dir, name), "--queue", "q")
		a.waitFor(t, "spool "+name+" discovered", hasSpool(name))
	}
	// A directory that matches but is not (yet) a spool is skipped, then
	// picked up when it becomes one.
	late := filepath.Join(dir, "late")
	if err := os.Mkdir(late, 0o755); err != nil {
		t.Fatal(err)
	}
	waitLog(t, a, "--spool-glob match skipped")
	bin(t, "", "init", late, "--queue", "q")
	a.waitFor(t, "spool late discovered once a spool", hasSpool("late"))

	if err := os.RemoveAll(filepath.Join(dir, "one")); err != nil {
		t.Fatal(err)
	}
	s = a.waitFor(t, "spool one forgotten", noSpool("one"))
	if !hasSpool("two")(s) {
		t.Errorf("spool two lost:\n%s", spoolLines(s.body))
	}
	if ok, succ, _ := reloadStatus(s); ok != 1 || succ < 3 {
		t.Errorf("reload successful %v after %v successes; want 1 after at least 3", ok, succ)
	}
	if !strings.Contains(a.stderr.String(), "removed=one") {
		t.Errorf("no reload line saying one was removed:\n%s", a.stderr.String())
	}
	// SIGHUP shares the code path: one more success.
	_, before, _ := reloadStatus(a.scrape(t))
	if err := a.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	a.waitFor(t, "SIGHUP counted", func(s scrape) bool { _, succ, _ := reloadStatus(s); return succ > before })
}

func waitLog(t *testing.T, a *agentProc, what string) {
	t.Helper()
	testkit.WaitFor(t, e2eDeadline, fmt.Sprintf("a %q log line", what), func() bool { return strings.Contains(a.stderr.String(), what) })
}

// configWriter is a way to put a new configuration file in place.
type configWriter func(t *testing.T, dir, content string)

// inPlace truncates and rewrites the file, as `>` in a shell does.
func inPlace(t *testing.T, dir, content string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, "agent.yaml"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(content); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// byRename writes a temporary file beside it and renames it over, as
// editors and configuration managers do.
func byRename(t *testing.T, dir, content string) {
	t.Helper()
	tmp := filepath.Join(dir, ".agent.yaml.tmp")
	writeFile(t, tmp, content)
	if err := os.Rename(tmp, filepath.Join(dir, "agent.yaml")); err != nil {
		t.Fatal(err)
	}
}

// kubernetesSwap does what the kubelet does to a ConfigMap volume: the
// files in a new timestamped directory, a ..data_tmp symlink to it renamed
// over ..data, agent.yaml a symlink to ..data/agent.yaml, the old
// directory removed.
func kubernetesSwap(t *testing.T, dir, content string) {
	t.Helper()
	ts, err := os.MkdirTemp(dir, "..2026_11_30_")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(ts, "agent.yaml"), content)
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		t.Fatal(err)
	}
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
			t.Fatal(err)
		}
	}
	link := filepath.Join(dir, "agent.yaml")
	if _, err := os.Lstat(link); err != nil {
		if err := os.Symlink(filepath.Join("..data", "agent.yaml"), link); err != nil {
			t.Fatal(err)
		}
	}
}

// TestConfigAutoReloadEndToEnd: spools added to and removed from the
// --config file are served and forgotten without SIGHUP, whichever way
// the file is replaced; a broken edit keeps the running spools and sets
// spool_agent_config_last_reload_successful to 0, a fixed one back to 1.
func TestConfigAutoReloadEndToEnd(t *testing.T) {
	t.Parallel() // after the sequential tests, see returnMemory
	t.Cleanup(returnMemory)
	for _, tt := range []struct {
		name  string
		write configWriter
	}{
		{"edited in place", inPlace},
		{"replaced by rename", byRename},
		{"kubernetes ..data swap", kubernetesSwap},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tmp := t.TempDir()
			cfgDir := filepath.Join(tmp, "config")
			if err := os.Mkdir(cfgDir, 0o755); err != nil {
				t.Fatal(err)
			}
			spools := map[string]string{}
			for _, n := range []string{"red", "green", "blue"} {
				spools[n] = filepath.Join(tmp, n)
				bin(t, "", "init", spools[n], "--queue", "q")
			}
			config := func(names ...string) string {
				sort.Strings(names)
				var b strings.Builder
				b.WriteString("spools:\n")
				for _, n := range names {
					fmt.Fprintf(&b, "  %s:\n    dir: %s\n", n, spools[n])
				}
				return b.String()
			}
			tt.write(t, cfgDir, config("red"))
			a := startAgent(t, "--config", filepath.Join(cfgDir, "agent.yaml"), "--check-every", "1h",
				"--web.listen-address", "127.0.0.1:0")
			a.waitFor(t, "red served", hasSpool("red"))

			tt.write(t, cfgDir, config("red", "green"))
			a.waitFor(t, "green added", hasSpool("green"))

			tt.write(t, cfgDir, config("green"))
			a.waitFor(t, "red removed", noSpool("red"))

			tt.write(t, cfgDir, "spools: [not, a, mapping\n")
			s := a.waitFor(t, "the failed reload", func(s scrape) bool {
				ok, _, fail := reloadStatus(s)
				return ok == 0 && fail >= 1
			})
			if !hasSpool("green")(s) {
				t.Errorf("after a broken edit spool green is not served:\n%s", spoolLines(s.body))
			}
			if !strings.Contains(a.stderr.String(), "reload failed") {
				t.Errorf("no reload failed line:\n%s", a.stderr.String())
			}

			tt.write(t, cfgDir, config("green", "blue"))
			a.waitFor(t, "the fixed edit", func(s scrape) bool {
				ok, _, _ := reloadStatus(s)
				return ok == 1 && hasSpool("blue")(s) && hasSpool("green")(s)
			})
		})
	}
}

// benchAgent starts `spool-agent run args...` for a benchmark and returns
// the URL of its /metrics.
func benchAgent(b *testing.B, args ...string) (*exec.Cmd, string) {
	b.Helper()
	cmd := exec.Command(agentBin, append([]string{"run", "--web.listen-address", "127.0.0.1:0"}, args...)...)
	cmd.Env = testkit.AgentEnv()
	pipe, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "spool-agent: serving metrics on "); ok {
				select {
				case urls <- u:
				default:
				}
			}
		}
	}()
	select {
	case u := <-urls:
		return cmd, u
	case <-time.After(e2eDeadline):
		b.Fatal("the agent did not start serving")
		return nil, ""
	}
}

// waitServed scrapes url until it serves spool's series and returns when.
func waitServed(b *testing.B, url, spool string) time.Time {
	b.Helper()
	want := []byte(`spool_up{spool="` + spool + `"}`)
	client := http.Client{Timeout: 5 * time.Second}
	for end := time.Now().Add(e2eDeadline); time.Now().Before(end); time.Sleep(2 * time.Millisecond) {
		resp, err := client.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			b.Fatal(err)
		}
		if bytes.Contains(body, want) {
			return time.Now()
		}
	}
	b.Fatalf("spool %s not served within %v", spool, e2eDeadline)
	return time.Time{}
}

// BenchmarkDiscoveryLatency measures, for each iteration, the time from a
// spool created with `spool-agent init` under --spool-glob DIR/* to its
// series in /metrics, found by events (--check-every 1h: no polling), and
// interleaved with it the baseline: the same with SIGHUP sent right after
// init to an agent with --no-config.auto-reload. It reports the p50 and
// p99 of both and the ratio of the p50s. Run with -benchtime 20x.
func BenchmarkDiscoveryLatency(b *testing.B) {
	evDir, hupDir := b.TempDir(), b.TempDir()
	_, evURL := benchAgent(b, "--spool-glob", filepath.Join(evDir, "*"), "--check-every", "1h")
	hup, hupURL := benchAgent(b, "--spool-glob", filepath.Join(hupDir, "*"), "--check-every", "1h", "--no-config.auto-reload")
	var events, sighup []time.Duration
	initSpool := func(dir string) {
		cmd := exec.Command(agentBin, "init", dir, "--queue", "q", "-q")
		cmd.Env = testkit.AgentEnv()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("init: %v %s", err, out)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		name := fmt.Sprintf("s%d", i)
		start := time.Now()
		initSpool(filepath.Join(evDir, name))
		events = append(events, waitServed(b, evURL, name).Sub(start))

		start = time.Now()
		initSpool(filepath.Join(hupDir, name))
		if err := hup.Process.Signal(syscall.SIGHUP); err != nil {
			b.Fatal(err)
		}
		sighup = append(sighup, waitServed(b, hupURL, name).Sub(start))
	}
	b.StopTimer()
	pct := func(d []time.Duration, p float64) float64 {
		s := slices.Clone(d)
		slices.Sort(s)
		return float64(s[min(len(s)-1, int(p*float64(len(s))))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(events, 0.50), "events-p50-ms")
	b.ReportMetric(pct(events, 0.99), "events-p99-ms")
	b.ReportMetric(pct(sighup, 0.50), "sighup-p50-ms")
	b.ReportMetric(pct(sighup, 0.99), "sighup-p99-ms")
	b.ReportMetric(pct(events, 0.50)/pct(sighup, 0.50), "p50-ratio")
	b.ReportMetric(0, "ns/op")
}

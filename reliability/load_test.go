package reliability

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spool-agent/spool-agent/spool"
)

// rssKiB returns the resident set size of process pid, from /proc.
func rssKiB(pid int) (int, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			return strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

// loadFigures are the load test's results.
type loadFigures struct {
	Test          string    `json:"test"`
	Seconds       float64   `json:"seconds"`
	Requests      int       `json:"scrapes"`
	Failures      int       `json:"failed_scrapes"`
	PerSecond     float64   `json:"scrapes_per_second"`
	P50ms         float64   `json:"p50_ms"`
	P99ms         float64   `json:"p99_ms"`
	Maxms         float64   `json:"max_ms"`
	BodyBytes     float64   `json:"bytes_per_scrape"`
	ChurnOps      float64   `json:"churn_ops_per_second"`
	RSSStartMiB   float64   `json:"rss_start_mib"`
	RSSEndMiB     float64   `json:"rss_end_mib"`
	RSSMaxMiB     float64   `json:"rss_max_mib"`
	RSSSamplesMiB []float64 `json:"rss_every_minute_mib,omitempty"`
	QuietEntries  int       `json:"quiet_spool_entries"`
	LoadgenConns  int       `json:"loadgen_connections"`
	AgentPid      int       `json:"-"`
	FirstFailures []string  `json:"first_failures,omitempty"`
}

// TestLoad scrapes /metrics from a second process (loadgen, 4 keep-alive
// connections) for -reliability.load (20s by default; scripts/soak.sh runs
// 10 minutes) while one spool churns at 1,500 operations/s (enqueue,
// checkout, remove) and another holds 1,000 entries. It requires zero
// failed scrapes and at least 1,000 operations/s of churn, and reports the
// scrape latency percentiles and the agent's RSS at the start and the end
// (a long run also requires the RSS to stay flat).
func TestLoad(t *testing.T) {
	needBinary(t, &bin.worker)
	needBinary(t, &bin.loadgen)
	needBinary(t, &bin.agent)
	base := t.TempDir()
	churnDir, quietDir := filepath.Join(base, "churn"), filepath.Join(base, "quiet")
	if _, err := spool.Create(churnDir, []string{"q"}, nil); err != nil {
		t.Fatal(err)
	}
	quiet, err := spool.Create(quietDir, []string{"a", "b", "c"}, &spool.Options{Durability: spool.DurabilityNone})
	if err != nil {
		t.Fatal(err)
	}
	fig := &loadFigures{Test: "load", QuietEntries: 1000, LoadgenConns: 4}
	for i := range fig.QuietEntries {
		if _, err := quiet.EnqueueBytes(context.Background(), []string{"a", "b", "c"}[i%3], []byte("m"), []byte("d"), spool.EnqueueOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ag := newAgent(t, map[string]string{"churn": churnDir, "quiet": quietDir}, "--check-every=1s")
	ag.startAndWait(t)
	fig.AgentPid = ag.pid()

	load := *flagLoadTime
	churn := exec.Command(bin.worker, "churn", "-spool", churnDir, "-queue", "q", "-id", "churn",
		"-durability", "none", "-rate", "1500", "-duration", (load + 3*time.Second).String())
	var churnOut, churnErr tailBuffer
	churn.Stdout, churn.Stderr = &churnOut, &churnErr
	if err := churn.Start(); err != nil {
		t.Fatal(err)
	}
	defer churn.Process.Kill()
	time.Sleep(time.Second) // the churn and the agent warm up
	rss0, err := rssKiB(fig.AgentPid)
	if err != nil {
		t.Fatal(err)
	}
	lg := exec.Command(bin.loadgen, "-url", "http://"+ag.addr+"/metrics", "-duration", load.String(),
		"-concurrency", strconv.Itoa(fig.LoadgenConns), "-expect", `spool_up{spool="churn"} 1`)
	var lgOut, lgErr tailBuffer
	lg.Stdout, lg.Stderr = &lgOut, &lgErr
	start := time.Now()
	if err := lg.Start(); err != nil {
		t.Fatal(err)
	}
	lgDone := make(chan error, 1)
	go func() { lgDone <- lg.Wait() }()
	rssMax := rss0
	nextMinute := start.Add(time.Minute)
	var lgExit error
	giveUp := time.After(load + time.Minute)
sample:
	for {
		select {
		case lgExit = <-lgDone:
			break sample
		case <-time.After(time.Second):
			r, err := rssKiB(fig.AgentPid)
			if err != nil {
				continue
			}
			rssMax = max(rssMax, r)
			if time.Now().After(nextMinute) {
				fig.RSSSamplesMiB = append(fig.RSSSamplesMiB, float64(r*10/1024)/10)
				nextMinute = nextMinute.Add(time.Minute)
			}
		case <-giveUp:
			lg.Process.Kill()
			t.Fatalf("loadgen did not finish within %v", load+time.Minute)
		}
	}
	fig.Seconds = time.Since(start).Seconds()
	rss1, err := rssKiB(fig.AgentPid)
	if err != nil {
		t.Fatalf("the agent died under load: %v\n%s", err, ag.output())
	}
	if err := churn.Wait(); err != nil {
		t.Errorf("churn: %v: %s", err, churnErr.String())
	}
	var lr struct {
		Requests    int      `json:"requests"`
		Failures    int      `json:"failures"`
		FirstErrors []string `json:"first_errors"`
		PerSecond   float64  `json:"requests_per_second"`
		P50ms       float64  `json:"p50_ms"`
		P99ms       float64  `json:"p99_ms"`
		Maxms       float64  `json:"max_ms"`
		Body        float64  `json:"bytes_per_body"`
	}
	if err := json.Unmarshal([]byte(lgOut.String()), &lr); err != nil {
		t.Fatalf("loadgen output %q (%v): %v %s", lgOut.String(), lgExit, err, lgErr.String())
	}
	var cr struct {
		OpsPerSecond float64 `json:"ops_per_second"`
	}
	if err := json.Unmarshal([]byte(churnOut.String()), &cr); err != nil {
		t.Fatalf("churn output %q: %v", churnOut.String(), err)
	}
	fig.Requests, fig.Failures, fig.PerSecond = lr.Requests, lr.Failures, lr.PerSecond
	fig.P50ms, fig.P99ms, fig.Maxms, fig.BodyBytes = lr.P50ms, lr.P99ms, lr.Maxms, lr.Body
	fig.FirstFailures = lr.FirstErrors
	fig.ChurnOps = cr.OpsPerSecond
	fig.RSSStartMiB, fig.RSSEndMiB, fig.RSSMaxMiB = float64(rss0)/1024, float64(rss1)/1024, float64(rssMax)/1024
	report(t, fig)

	if fig.Failures > 0 || lgExit != nil {
		t.Errorf("%d of %d scrapes failed (%v): %v", fig.Failures, fig.Requests, lgExit, fig.FirstFailures)
	}
	if fig.Requests == 0 {
		t.Error("no scrape was made")
	}
	if fig.ChurnOps < 1000 {
		t.Errorf("the spool churned at %.0f operations/s, below the 1,000 the test requires", fig.ChurnOps)
	}
	// Memory: a 20s run is too short to tell a leak from warm-up; a long
	// run (the soak) must end within 50% + 16 MiB of where it started.
	if load >= 5*time.Minute && float64(rss1) > 1.5*float64(rss0)+16*1024 {
		t.Errorf("the agent's RSS grew from %.1f MiB to %.1f MiB over %v", fig.RSSStartMiB, fig.RSSEndMiB, load)
	}
	m := ag.waitMetric(t, 5*time.Second, "both spools up", func(m metrics) bool {
		a, _ := m.value("spool_up", "spool", "churn")
		b, _ := m.value("spool_up", "spool", "quiet")
		return a == 1 && b == 1
	})
	if n := m.must(t, "spool_queue_entries", "spool", "quiet"); int(n) != fig.QuietEntries {
		t.Errorf("the quiet spool's entries read %v under load, want %d", n, fig.QuietEntries)
	}
	ag.signal(syscall.SIGTERM)
}

package reliability

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/spool-agent/spool-agent/internal/testkit"
)

// agent is a spool-agent run process under test.
type agent struct {
	*proc
	addr   string // host:port of /metrics
	scheme string // http or https
	user   string // basic auth, if any
	pass   string
}

// newAgent prepares (without starting) `spool-agent run` on spools (name ->
// dir) listening on a free loopback port, checking every 100ms, with extra
// arguments.
func newAgent(t *testing.T, spools map[string]string, extra ...string) *agent {
	t.Helper()
	needBinary(t, &bin.agent)
	a := &agent{addr: testkit.FreeAddr(t), scheme: "http"}
	names := make([]string, 0, len(spools))
	for n := range spools {
		names = append(names, n)
	}
	sort.Strings(names)
	args := []string{bin.agent, "run", "--web.listen-address=" + a.addr, "--check-every=100ms"}
	for _, n := range names {
		args = append(args, "--spool="+n+"="+spools[n])
	}
	args = append(args, extra...)
	a.proc = &proc{name: "spool-agent", args: func(int) []string { return args }}
	t.Cleanup(func() {
		if a.running() {
			a.signal(syscall.SIGTERM)
		}
	})
	return a
}

// startAgent starts a and waits until it serves /metrics.
func (a *agent) startAndWait(t *testing.T) {
	t.Helper()
	if err := a.start(); err != nil {
		t.Fatal(err)
	}
	a.waitReady(t)
}

// waitReady waits (up to 20s) until /metrics answers 200.
func (a *agent) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if !a.running() {
			t.Fatalf("the agent exited: %s", a.output())
		}
		if _, err := a.scrape(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent does not serve /metrics after 20s: %s", a.output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (a *agent) client() *http.Client {
	return &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
	}
}

// get fetches path from the agent.
func (a *agent) get(method, path string) (int, string, error) {
	req, err := http.NewRequest(method, a.scheme+"://"+a.addr+path, nil)
	if err != nil {
		return 0, "", err
	}
	if a.user != "" {
		req.SetBasicAuth(a.user, a.pass)
	}
	resp, err := a.client().Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// metrics is a parsed scrape.
type metrics map[string]*dto.MetricFamily

// scrape fetches and parses /metrics.
func (a *agent) scrape() (metrics, error) {
	code, body, err := a.get(http.MethodGet, "/metrics")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("status %d: %s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("parsing the scrape: %w", err)
	}
	return mfs, nil
}

// value returns the value of the sample of family name whose labels
// include labels (name=value pairs), and whether there is one. With several
// matching samples it returns their sum.
func (m metrics) value(name string, labels ...string) (float64, bool) {
	mf, ok := m[name]
	if !ok {
		return 0, false
	}
	sum, found := 0.0, false
	for _, s := range mf.GetMetric() {
		if !testkit.HasLabels(s, labels...) {
			continue
		}
		found = true
		switch {
		case s.Gauge != nil:
			sum += s.Gauge.GetValue()
		case s.Counter != nil:
			sum += s.Counter.GetValue()
		case s.Untyped != nil:
			sum += s.Untyped.GetValue()
		}
	}
	return sum, found
}

// must returns the value or fails the test.
func (m metrics) must(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	v, ok := m.value(name, labels...)
	if !ok {
		t.Fatalf("no sample %s%v in the scrape", name, labels)
	}
	return v
}

// waitMetric scrapes until cond holds for the scrape (up to timeout).
func (a *agent) waitMetric(t *testing.T, timeout time.Duration, what string, cond func(metrics) bool) metrics {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last metrics
	var lastErr error
	for {
		m, err := a.scrape()
		if err == nil {
			last = m
			if cond(m) {
				return m
			}
		}
		lastErr = err
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s (last error %v; last scrape has %d families)", timeout, what, lastErr, len(last))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

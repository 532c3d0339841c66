// Package testkit holds what the module's tests share: waiting for an
// observable condition, matching a metric's labels, and running promtool.
// Tests only: nothing outside a _test.go file imports it. Its rsswrap
// command, which tests build, reports a child process's own peak RSS.
package testkit

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// WaitFor's pause between two checks starts at pollFirst and doubles up to
// pollMax: a condition met at once is seen at once, and a long wait (a
// scrape polled for seconds) does not load the machine the tests share.
const (
	pollFirst = time.Millisecond
	pollMax   = 50 * time.Millisecond
)

// WaitFor polls cond until it holds, and fails t naming what when timeout
// passes first. cond must only observe (it runs many times).
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	pause := pollFirst
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(pause)
		pause = min(2*pause, pollMax)
	}
}

// HasLabels reports whether m carries every name and value of pairs (name,
// value, name, value, ...); other labels may be there too.
func HasLabels(m *dto.Metric, pairs ...string) bool {
	for i := 0; i+1 < len(pairs); i += 2 {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == pairs[i] && lp.GetValue() == pairs[i+1] {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// Labels returns m's labels as a map from name to value.
func Labels(m *dto.Metric) map[string]string {
	l := make(map[string]string, len(m.GetLabel()))
	for _, p := range m.GetLabel() {
		l[p.GetName()] = p.GetValue()
	}
	return l
}

// promtoolMissing is said when promtool cannot be found.
const promtoolMissing = "promtool is not installed (apt-get install prometheus, Debian's package)"

// Promtool returns the path of promtool. Without it the test is skipped,
// except under CI=true (set by .ci/run, which installs promtool), where it
// fails rather than pass without running.
func Promtool(t testing.TB) string {
	t.Helper()
	p, ok := lookPromtool(t)
	if !ok {
		t.Skip(promtoolMissing)
	}
	return p
}

// lookPromtool finds promtool; a missing one fails t under CI=true.
func lookPromtool(t testing.TB) (string, bool) {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(promtoolMissing + ", and CI=true")
		}
		return "", false
	}
	return p, true
}

// CheckMetrics runs `promtool check metrics` on an exposition and reports
// its complaints as errors. Without promtool it logs that the check was
// not made and returns (the rest of the test still runs), except under
// CI=true, where it fails.
func CheckMetrics(t testing.TB, exposition []byte) {
	t.Helper()
	p, ok := lookPromtool(t)
	if !ok {
		t.Log(promtoolMissing + ": not running promtool check metrics")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, p, "check", "metrics")
	cmd.Stdin = bytes.NewReader(exposition)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s\nexposition:\n%s", err, out, exposition)
	}
}

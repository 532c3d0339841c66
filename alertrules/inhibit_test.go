package alertrules

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/spool-agent/spool-agent/internal/testkit"
)

const (
	bundledInhibit      = "spool-agent.inhibit.yml"
	shippedAlertmanager = "../deploy/alertmanager/alertmanager.yml"
)

func TestBundledInhibitRulesAreGeneratedFromDefaults(t *testing.T) {
	want, err := GenerateInhibitRules(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(bundledInhibit)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is out of date: run go generate ./alertrules", bundledInhibit)
	}
}

// alertmanagerConfig is the part of alertmanager.yml these tests read.
type alertmanagerConfig struct {
	Route struct {
		GroupBy []string `yaml:"group_by"`
	} `yaml:"route"`
	InhibitRules []InhibitRule `yaml:"inhibit_rules"`
}

// TestShippedAlertmanagerConfig: the shipped configuration has exactly the
// generated inhibit rules, groups by every label that tells one problem
// from another, and amtool accepts it.
func TestShippedAlertmanagerConfig(t *testing.T) {
	b, err := os.ReadFile(shippedAlertmanager)
	if err != nil {
		t.Fatal(err)
	}
	var am alertmanagerConfig
	if err := yaml.Unmarshal(b, &am); err != nil {
		t.Fatal(err)
	}
	want, err := InhibitRules(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(am.InhibitRules, want) {
		t.Errorf("%s inhibit_rules = %+v\nwant those of %s: %+v", shippedAlertmanager, am.InhibitRules, bundledInhibit, want)
	}
	// The labels of spool_problems and the queue series
	// (exporters/README.md), the target's, and the alert's name.
	for _, l := range []string{"alertname", "job", "instance", "spool", "kind", "dir", "queue"} {
		if !slices.Contains(am.Route.GroupBy, l) {
			t.Errorf("group_by %q lacks %s: two problems would share a notification", am.Route.GroupBy, l)
		}
	}
	amtool := binary(t, "prometheus-alertmanager", "amtool")
	// The generated file is a fragment: pasted into the smallest
	// configuration, it must be valid as it is.
	frag, err := os.ReadFile(bundledInhibit)
	if err != nil {
		t.Fatal(err)
	}
	pasted := filepath.Join(t.TempDir(), "alertmanager.yml")
	if err := os.WriteFile(pasted, append([]byte("route: {receiver: x}\nreceivers: [{name: x}]\n"), frag...), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{shippedAlertmanager, pasted} {
		out, err := exec.Command(amtool, "check-config", f).CombinedOutput()
		if err != nil {
			t.Errorf("amtool check-config %s: %v\n%s", f, err, out)
		}
	}
}

func TestInhibitRulesFollowTheConfiguration(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Alerts = map[string]AlertOverride{"SpoolDown": {Disabled: true}}
	cfg.Thresholds.CheckedOutAge = 0
	rules, err := InhibitRules(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rules {
		for _, m := range append(slices.Clone(r.SourceMatchers), r.TargetMatchers...) {
			if strings.Contains(m, "SpoolDown") || strings.Contains(m, "SpoolCheckoutStuck") {
				t.Errorf("rule %+v names an alert the rules do not have", r)
			}
		}
	}
	all, err := InhibitRules(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) != len(all)-3 {
		t.Errorf("%d rules without SpoolDown and SpoolCheckoutStuck, want %d", len(rules), len(all)-3)
	}
	if _, err := InhibitRules(Config{}); err == nil {
		t.Error("an invalid configuration gave inhibit rules")
	}
}

// amAlert is an alert as Alertmanager's API v2 takes and gives it.
type amAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations,omitempty"`
	StartsAt    time.Time         `json:"startsAt,omitempty"`
	Status      *struct {
		State       string   `json:"state"`
		InhibitedBy []string `json:"inhibitedBy"`
	} `json:"status,omitempty"`
}

// TestAlertmanagerInhibitsWithTheGeneratedRules runs Debian's Alertmanager
// with the shipped configuration (its inhibit rules are the generated ones),
// posts each rule's source and target alert, and the same target for
// another queue or spool, and checks that Alertmanager suppresses exactly
// the targets of the same spool (and queue).
func TestAlertmanagerInhibitsWithTheGeneratedRules(t *testing.T) {
	t.Parallel()
	amBin := binary(t, "prometheus-alertmanager", "prometheus-alertmanager", "alertmanager")
	dir := t.TempDir()
	addr := testkit.FreeAddr(t)
	am := start(t, dir, "alertmanager", amBin,
		"--config.file="+shippedAlertmanager,
		"--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--cluster.listen-address=",
	)
	waitHTTP(t, am, "http://"+addr+"/-/ready")

	rules, err := InhibitRules(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	var post []amAlert
	type want struct {
		labels     map[string]string
		suppressed bool
	}
	var wants []want
	for i, r := range rules {
		// Each rule on its own spool, so that the rules do not interfere.
		spool := fmt.Sprintf("s%d", i)
		common := map[string]string{"job": "spool-agent", "instance": "agent:19317", "spool": spool, "queue": "outbox"}
		src := labelsOf(t, r.SourceMatchers, common)
		tgt := labelsOf(t, r.TargetMatchers, common)
		otherQueue := labelsOf(t, r.TargetMatchers, common)
		otherQueue["queue"] = "inbox"
		otherSpool := labelsOf(t, r.TargetMatchers, common)
		otherSpool["spool"] = spool + "-other"
		post = append(post, amAlert{Labels: src}, amAlert{Labels: tgt}, amAlert{Labels: otherSpool})
		wants = append(wants, want{src, false}, want{tgt, true}, want{otherSpool, false})
		if slices.Contains(r.Equal, "queue") {
			post = append(post, amAlert{Labels: otherQueue})
			wants = append(wants, want{otherQueue, false})
		}
	}
	body, err := json.Marshal(post)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+addr+"/api/v2/alerts", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /api/v2/alerts: %s", resp.Status)
	}

	ctx, cancel := context.WithTimeout(context.Background(), e2eDeadline)
	defer cancel()
	var problems []string
	for {
		got := getAlerts(t, addr)
		problems = problems[:0]
		for _, w := range wants {
			a, ok := findAlert(got, w.labels)
			switch {
			case !ok:
				problems = append(problems, fmt.Sprintf("%v: not in Alertmanager", w.labels))
			case w.suppressed && (a.Status.State != "suppressed" || len(a.Status.InhibitedBy) == 0):
				problems = append(problems, fmt.Sprintf("%v: %s, want inhibited", w.labels, a.Status.State))
			case !w.suppressed && a.Status.State != "active":
				problems = append(problems, fmt.Sprintf("%v: %s, want active", w.labels, a.Status.State))
			}
		}
		if len(problems) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("Alertmanager with the generated inhibit rules:\n%s", strings.Join(problems, "\n"))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// labelsOf turns equality matchers (and, for =~, the first alternative)
// into labels, over common.
func labelsOf(t *testing.T, matchers []string, common map[string]string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for k, v := range common {
		out[k] = v
	}
	for _, m := range matchers {
		ms, err := parseMatchers(m)
		if err != nil || len(ms) != 1 {
			t.Fatalf("matcher %q: %v", m, err)
		}
		v := strings.Trim(ms[0].value, `"`)
		switch ms[0].op {
		case "=":
		case "=~":
			v, _, _ = strings.Cut(v, "|")
		default:
			t.Fatalf("matcher %q: cannot build labels from %s", m, ms[0].op)
		}
		out[ms[0].name] = v
	}
	return out
}

func getAlerts(t *testing.T, addr string) []amAlert {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/api/v2/alerts")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got []amAlert
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	return got
}

func findAlert(alerts []amAlert, labels map[string]string) (amAlert, bool) {
	for _, a := range alerts {
		if reflect.DeepEqual(a.Labels, labels) && a.Status != nil {
			return a, true
		}
	}
	return amAlert{}, false
}

package alertrules

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/spool-agent/spool-agent/internal/testkit"
)

// bundledRules is the rule file shipped in the repository.
const bundledRules = "spool-agent.rules.yml"

// missingTool skips the test outside CI and fails it under CI=true.
func missingTool(t *testing.T, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

func runPromtool(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(testkit.Promtool(t), args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestBundledRulesAreGeneratedFromDefaults(t *testing.T) {
	want, err := Generate(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(bundledRules)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is out of date: run go generate ./alertrules", bundledRules)
	}
}

func TestThresholdsYAMLDocumentsTheDefaults(t *testing.T) {
	cfg, err := LoadConfigFile("thresholds.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg, DefaultConfig()) {
		t.Errorf("thresholds.yaml = %+v, DefaultConfig() = %+v", cfg, DefaultConfig())
	}
}

func TestOverrideExampleIsGeneratedFromItsConfig(t *testing.T) {
	cfg, err := LoadConfigFile("tests/overrides.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want, err := Generate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("tests/overrides.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("tests/overrides.rules.yml is out of date: run go generate ./alertrules")
	}
}

func TestPromtoolCheckRules(t *testing.T) {
	t.Parallel()
	for _, f := range []string{bundledRules, "tests/overrides.rules.yml"} {
		out := runPromtool(t, "check", "rules", f)
		if !strings.Contains(out, "SUCCESS") {
			t.Errorf("promtool check rules %s:\n%s", f, out)
		}
	}
}

func TestPromtoolTestRules(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("tests/*.test.yml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no promtool test files in tests/: %v", err)
	}
	out := runPromtool(t, append([]string{"test", "rules"}, files...)...)
	if strings.Contains(out, "FAILED") {
		t.Errorf("promtool test rules:\n%s", out)
	}
}

// promtoolTestWith runs the promtool test file against the rules that cfg
// generates (in place of the bundled ones) and returns promtool's output.
func promtoolTestWith(t *testing.T, cfg Config, testFile string) ([]byte, error) {
	t.Helper()
	b, err := Generate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, bundledRules), b, 0o644); err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile(testFile)
	if err != nil {
		t.Fatal(err)
	}
	tests = bytes.Replace(tests, []byte("../"+bundledRules), []byte(bundledRules), 1)
	tf := filepath.Join(dir, "t.test.yml")
	if err := os.WriteFile(tf, tests, 0o644); err != nil {
		t.Fatal(err)
	}
	return exec.Command(testkit.Promtool(t), "test", "rules", tf).CombinedOutput()
}

// TestPromtoolCatchesBrokenRules makes sure the two promtool tests above can
// fail: a rule file with a wrong threshold must fail the unit tests.
func TestPromtoolCatchesBrokenRules(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	cfg.Thresholds.CheckedOutAge = Duration(20 * time.Minute)
	out, err := promtoolTestWith(t, cfg, "tests/spool-agent.test.yml")
	if err == nil {
		t.Fatalf("promtool test rules passed with a 20m checkout threshold:\n%s", out)
	}
	if !strings.Contains(string(out), "SpoolCheckoutStuck") {
		t.Errorf("failure does not name SpoolCheckoutStuck:\n%s", out)
	}
}

// promtoolTests is the part of promtool's test file format this test reads.
type promtoolTests struct {
	RuleFiles []string `yaml:"rule_files"`
	Tests     []struct {
		Name      string `yaml:"name"`
		AlertTest []struct {
			EvalTime  string `yaml:"eval_time"`
			Alertname string `yaml:"alertname"`
			ExpAlerts []any  `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

// TestEveryAlertIsUnitTested checks that the unit tests of the bundled rules
// make every alert fire, and hold it silent at least twice (pending and
// healthy).
func TestEveryAlertIsUnitTested(t *testing.T) {
	b, err := os.ReadFile("tests/spool-agent.test.yml")
	if err != nil {
		t.Fatal(err)
	}
	var pt promtoolTests
	if err := yaml.Unmarshal(b, &pt); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(pt.RuleFiles, []string{"../" + bundledRules}) {
		t.Errorf("rule_files = %q, want the bundled rules", pt.RuleFiles)
	}
	firing := map[string]int{}
	silent := map[string]int{}
	for _, tc := range pt.Tests {
		for _, at := range tc.AlertTest {
			if len(at.ExpAlerts) > 0 {
				firing[at.Alertname]++
			} else {
				silent[at.Alertname]++
			}
		}
	}
	for _, name := range AlertNames() {
		if firing[name] == 0 {
			t.Errorf("%s: no unit test makes it fire", name)
		}
		if silent[name] < 2 {
			t.Errorf("%s: %d silent cases, want at least a pending one and a healthy one", name, silent[name])
		}
	}
}

var (
	camelCase   = regexp.MustCompile(`^Spool[A-Z][A-Za-z]+$`)
	recordNames = regexp.MustCompile(`^[a-z_]+:[a-z_]+(:[a-z0-9_]+)?$`)
)

func TestRulesFollowConventions(t *testing.T) {
	b, err := os.ReadFile(bundledRules)
	if err != nil {
		t.Fatal(err)
	}
	var rf RuleFile
	if err := yaml.Unmarshal(b, &rf); err != nil {
		t.Fatal(err)
	}
	runbook, err := os.ReadFile("RUNBOOK.md")
	if err != nil {
		t.Fatal(err)
	}
	anchors := markdownAnchors(string(runbook))
	var alerts []string
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				if !recordNames.MatchString(r.Record) {
					t.Errorf("record %q is not level:metric:operation", r.Record)
				}
				continue
			}
			alerts = append(alerts, r.Alert)
			if !camelCase.MatchString(r.Alert) {
				t.Errorf("alert %q is not CamelCase with the Spool prefix", r.Alert)
			}
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("%s: severity %q", r.Alert, s)
			}
			if r.For == "" {
				t.Errorf("%s: no for duration", r.Alert)
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if r.Annotations[a] == "" {
					t.Errorf("%s: no %s annotation", r.Alert, a)
				}
			}
			// absent() has no labels to quote; its description quotes the selector.
			if !strings.Contains(r.Annotations["description"], "{{ $labels.") && r.Alert != "SpoolAgentAbsent" {
				t.Errorf("%s: description quotes no label", r.Alert)
			}
			// A problem alert links the section of its dir; every dir
			// the agent reports the kind in has one.
			url := r.Annotations["runbook_url"]
			prefix := DefaultRunbookURL + "#"
			dirs := ProblemDirs()[r.Alert]
			if len(dirs) < 2 {
				dirs = []string{""}
			}
			for _, d := range dirs {
				u := strings.ReplaceAll(url, "{{ $labels.dir }}", d)
				want := prefix + RunbookAnchor(r.Alert, d)
				if u != want || !anchors[RunbookAnchor(r.Alert, d)] {
					t.Errorf("%s (dir %q): runbook_url %q, want %q with a section in RUNBOOK.md", r.Alert, d, u, want)
				}
			}
			for _, a := range []string{"summary", "description"} {
				if strings.Contains(r.Annotations[a], "$value | humanize }}") {
					t.Errorf("%s: %s prints $value with humanize (7.254 entries); use printf \"%%.0f\"", r.Alert, a)
				}
			}
		}
	}
	if !reflect.DeepEqual(alerts, AlertNames()) {
		t.Errorf("alerts in %s = %q, want %q", bundledRules, alerts, AlertNames())
	}
}

// markdownAnchors returns the anchors GitHub gives the headings of md.
func markdownAnchors(md string) map[string]bool {
	out := map[string]bool{}
	strip := regexp.MustCompile(`[^a-z0-9 _-]`)
	for _, line := range strings.Split(md, "\n") {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		h := strings.ToLower(strings.TrimSpace(strings.TrimLeft(line, "#")))
		h = strip.ReplaceAllString(h, "")
		out[strings.ReplaceAll(h, " ", "-")] = true
	}
	return out
}

// TestRestartTestNeedsKeepFiringFor makes sure tests/restart.test.yml tests
// keep_firing_for: the same rules without it must fail it.
func TestRestartTestNeedsKeepFiringFor(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	cfg.Thresholds.KeepFiringFor = 0
	out, err := promtoolTestWith(t, cfg, "tests/restart.test.yml")
	if err == nil {
		t.Fatalf("promtool test rules passed without keep_firing_for:\n%s", out)
	}
	for _, name := range []string{"SpoolOrphanedFiles", "SpoolMissingData", "SpoolCheckoutStuck", "SpoolDown"} {
		if !strings.Contains(string(out), "alertname: "+name+",") {
			t.Errorf("without keep_firing_for, %s does not fail the restart test:\n%s", name, out)
		}
	}
}

func TestRecordedNames(t *testing.T) {
	got := RecordedNames()
	sort.Strings(got)
	want := []string{
		"spool:fsck_last_success_age_seconds",
		"spool:problems:sum",
		"spool_queue:arrivals:rate5m",
		"spool_queue:departures:rate5m",
		"spool_queue:entry_age_seconds:quantile",
		"spool_queue:oldest_checked_out_age_seconds",
		"spool_queue:oldest_entry_age_seconds",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("RecordedNames() = %q, want %q", got, want)
	}
}

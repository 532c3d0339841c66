package alertrules

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spool-agent/spool-agent/monitor"
	"github.com/spool-agent/spool-agent/repair"
)

func TestParseDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		str  string
	}{
		{"0", 0, "0s"},
		{"90s", 90 * time.Second, "1m30s"},
		{"1h30m", 90 * time.Minute, "1h30m"},
		{"2d", 48 * time.Hour, "2d"},
		{"1w", 7 * 24 * time.Hour, "1w"},
		{"1y", 365 * 24 * time.Hour, "1y"},
		{"1500ms", 1500 * time.Millisecond, "1s500ms"},
	} {
		d, err := ParseDuration(tc.in)
		if err != nil {
			t.Errorf("ParseDuration(%q): %v", tc.in, err)
			continue
		}
		if time.Duration(d) != tc.want || d.String() != tc.str {
			t.Errorf("ParseDuration(%q) = %v (%s), want %v (%s)", tc.in, time.Duration(d), d, tc.want, tc.str)
		}
	}
	for _, bad := range []string{"", "1", "1.5h", "-1m", "1m1h", "h", "99999999999999999999y"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) succeeded", bad)
		}
	}
}

func TestLoadConfigKeepsDefaultsForUnsetFields(t *testing.T) {
	cfg, err := LoadConfig(strings.NewReader("thresholds:\n  checkedOutAge: 5m\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	want.Thresholds.CheckedOutAge = MustParseDuration("5m")
	if cfg.Thresholds != want.Thresholds || cfg.Selector != want.Selector || cfg.RunbookURL != want.RunbookURL {
		t.Errorf("got %+v, want %+v", cfg, want)
	}
	empty, err := LoadConfig(strings.NewReader(""))
	if err != nil {
		t.Fatalf("empty config: %v", err)
	}
	if empty.Thresholds != DefaultConfig().Thresholds {
		t.Errorf("empty config changed thresholds: %+v", empty.Thresholds)
	}
}

func TestLoadConfigRejectsMistakes(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"typo", "thresholds:\n  checkoutAge: 5m\n", "checkoutAge"},
		{"bad duration", "thresholds:\n  checkedOutAge: 5 minutes\n", "invalid duration"},
		{"bad selector", "selector: job=spool-agent\n", "malformed label matcher"},
		{"name selector", "selector: __name__=\"up\"\n", "metric name"},
		{"unterminated", "selector: 'job=\"spool'\n", "unterminated"},
		{"bad queue match", "queues:\n  - match: queue\n    checkedOutAge: 1m\n", "queues[0].match"},
		{"empty queue match", "queues:\n  - match: ''\n    checkedOutAge: 1m\n", "must select"},
		{"unknown alert", "alerts:\n  SpoolNope: {for: 1m}\n", "unknown alert"},
		{"bad severity", "alerts:\n  SpoolDown: {severity: page}\n", "severity"},
		{"severity label", "labels: {severity: page}\n", "severity"},
		{"bad label", "labels: {'a-b': x}\n", "invalid label name"},
		{"no runbook", "runbookURL: ''\n", "runbookURL"},
		{"relative runbook", "runbookURL: RUNBOOK.md\n", "absolute URL"},
		{"runbook fragment", "runbookURL: https://x/RUNBOOK.md#top\n", "fragment"},
		{"bad parking queue", "parkingQueues: ['']\n", "parkingQueues[0]"},
		{"bad agent config", "agentConfig: /etc/a b.yml\n", "agentConfig"},
		{"zero window", "thresholds:\n  fsckFailuresWindow: 0\n", "fsckFailuresWindow"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadConfig(strings.NewReader(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("LoadConfig(%q) error = %v, want one mentioning %q", tc.yaml, err, tc.want)
			}
		})
	}
}

func TestParseMatchers(t *testing.T) {
	m, err := parseMatchers(`{spool="a,b", queue=~"x|y" ,env!='p"q', team!~` + "`t.*`" + `}`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, x := range m {
		got = append(got, x.String())
	}
	want := `spool="a,b" queue=~"x|y" env!='p"q' team!~` + "`t.*`"
	if strings.Join(got, " ") != want {
		t.Errorf("got %s, want %s", strings.Join(got, " "), want)
	}
}

func TestGenerateWithoutSelector(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Selector = ""
	rf, err := Rules(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if strings.Contains(r.Expr, "{}") || strings.Contains(r.Expr, "{,") {
				t.Errorf("%s%s: empty selector rendered badly: %s", r.Alert, r.Record, r.Expr)
			}
			if r.Alert == "SpoolAgentDown" && r.Expr != "up == 0" {
				t.Errorf("SpoolAgentDown expr = %q", r.Expr)
			}
		}
	}
}

func TestZeroThresholdsAndDisabledAlertsDropAlerts(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Thresholds.QueueOldestEntryAge = 0
	cfg.Thresholds.FsckStaleAfter = 0
	cfg.Alerts = map[string]AlertOverride{"SpoolMissingData": {Disabled: true}}
	rf, err := Rules(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rf.Groups[1].Rules {
		switch r.Alert {
		case "SpoolQueueOldestEntryTooOld", "SpoolFsckStale", "SpoolMissingData":
			t.Errorf("%s is still generated", r.Alert)
		}
	}
	if got, want := len(rf.Groups[1].Rules), len(AlertNames())-3; got != want {
		t.Errorf("%d alerts, want %d", got, want)
	}

	// A queue override keeps the alert for its queues only.
	cfg.Queues = []QueueOverride{{Match: `queue="outbox"`, QueueOldestEntryAge: ptr(MustParseDuration("10m"))}}
	rf, err = Rules(cfg)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range rf.Groups[1].Rules {
		if r.Alert == "SpoolQueueOldestEntryTooOld" {
			found = true
			want := `time() - spool_queue_oldest_entry_timestamp_seconds{job="spool-agent",queue="outbox",queue!~"frozen|quarantine|removed"} > 600`
			if r.Expr != want {
				t.Errorf("expr = %q, want %q", r.Expr, want)
			}
		}
	}
	if !found {
		t.Error("override did not bring SpoolQueueOldestEntryTooOld back for its queue")
	}
}

func TestTemplateInjectionInSelectorIsQuoted(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Selector = `job="{{ evil }}"`
	rf, err := Rules(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rf.Groups[1].Rules {
		if r.Alert == "SpoolAgentAbsent" {
			want := `{{ "{job=\"{{ evil }}\"}" }}`
			if !strings.Contains(r.Annotations["description"], want) {
				t.Errorf("description = %q, want the selector quoted as %s", r.Annotations["description"], want)
			}
		}
	}
}

func TestParkingQueues(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       string // the NotDraining selector of spool_queue_entries
	}{
		{"default", "", `spool_queue_entries{job="spool-agent",queue!~"frozen|quarantine|removed"}`},
		{"replaced", "parkingQueues: [hold, a.b]\n", `spool_queue_entries{job="spool-agent",queue!~"hold|a\\.b"}`},
		{"none", "parkingQueues: []\n", `spool_queue_entries{job="spool-agent"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := LoadConfig(strings.NewReader(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			rf, err := Rules(cfg)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rf.Groups[1].Rules {
				switch r.Alert {
				case "SpoolQueueNotDraining":
					if !strings.Contains(r.Expr, "delta("+tc.want+"[30m])") {
						t.Errorf("NotDraining expr %q does not select %s", r.Expr, tc.want)
					}
				case "SpoolQueueOldestEntryTooOld":
					if want := strings.Replace(tc.want, "spool_queue_entries", "spool_queue_oldest_entry_timestamp_seconds", 1); !strings.Contains(r.Expr, want) {
						t.Errorf("OldestEntryTooOld expr %q does not select %s", r.Expr, want)
					}
				case "SpoolCheckoutStuck":
					if strings.Contains(r.Expr, "frozen") {
						t.Errorf("a stuck checkout in a parking queue is still stuck: %q", r.Expr)
					}
				}
			}
		})
	}
}

func TestKeepFiringFor(t *testing.T) {
	cfg, err := LoadConfig(strings.NewReader("thresholds: {keepFiringFor: 2m}\nalerts: {SpoolDown: {keepFiringFor: 0}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	rf, err := Rules(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		// Gone with the agent: SpoolAgentDown is their alert.
		"SpoolAgentDown": "", "SpoolAgentAbsent": "",
		// max_over_time bridges a restart; a restarted agent has loaded
		// its configuration (or is down).
		"SpoolAgentConfigReloadFailed": "",
		// Range functions bridge the gap; a recovery ends it at once.
		"SpoolFsckFailing": "",
		"SpoolDown":        "", // overridden
	}
	for _, r := range rf.Groups[1].Rules {
		w, ok := want[r.Alert]
		if !ok {
			w = "2m"
		}
		if r.KeepFiringFor != w {
			t.Errorf("%s: keep_firing_for %q, want %q", r.Alert, r.KeepFiringFor, w)
		}
	}
}

func TestAgentConfigAndSpoolDirInTexts(t *testing.T) {
	cfg := DefaultConfig()
	cfg.SpoolDir = "/var/spool/app/{spool}"
	rf, err := Rules(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.AgentConfig = "/etc/spool-agent/agent.yml"
	rf2, err := Rules(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rf.Groups[1].Rules {
		if strings.HasPrefix(r.Alert, "SpoolAgent") { // of the agent, not of a spool
			continue
		}
		d := r.Annotations["description"]
		if !strings.Contains(d, "(/var/spool/app/{{ $labels.spool }})") || !strings.Contains(d, "Look: spool-agent ") ||
			!strings.Contains(d, " /var/spool/app/{{ $labels.spool }}") {
			t.Errorf("%s: description %q does not name the directory and the command", r.Alert, d)
		}
		d2 := rf2.Groups[1].Rules[i].Annotations["description"]
		if !strings.Contains(d2, " --config /etc/spool-agent/agent.yml {{ $labels.spool }}") {
			t.Errorf("%s: description %q does not give the command with --config", r.Alert, d2)
		}
	}
	for _, bad := range []string{"/x/{{ $labels.spool }}", "/x/{{ evil }}"} {
		cfg := DefaultConfig()
		cfg.SpoolDir = bad
		if _, err := Rules(cfg); err == nil {
			t.Errorf("spoolDir %q accepted", bad)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// TestConsoleURL: every spool alert links the spool's console page, the
// agent alert with an instance the console's home, and the thresholds file
// can point both through a proxy or drop them.
func TestConsoleURL(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		spool      string // console_url of the spool alerts, "" for none
		home       string // of SpoolAgentConfigReloadFailed
	}{
		{"default", "",
			"http://{{ $labels.instance }}/spools/{{ $labels.spool | urlquery }}", "http://{{ $labels.instance }}/"},
		{"behind a proxy", `consoleURL: "https://agents.example/{{ $labels.instance }}/spools/{{ $labels.spool | urlquery }}"`,
			"https://agents.example/{{ $labels.instance }}/spools/{{ $labels.spool | urlquery }}", "https://agents.example/{{ $labels.instance }}/"},
		{"no /spools/ in the address", `consoleURL: "https://console.example/?agent={{ $labels.instance }}&spool={{ $labels.spool | urlquery }}"`,
			"https://console.example/?agent={{ $labels.instance }}&spool={{ $labels.spool | urlquery }}", ""},
		{"dropped", `consoleURL: ""`, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := LoadConfig(strings.NewReader(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			rf, err := Rules(cfg)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rf.Groups[1].Rules {
				want := tc.spool
				switch r.Alert {
				case "SpoolAgentConfigReloadFailed":
					want = tc.home
				case "SpoolAgentDown", "SpoolAgentAbsent": // no console to reach, or no instance
					want = ""
				}
				got, ok := r.Annotations["console_url"]
				if got != want || ok != (want != "") {
					t.Errorf("%s: console_url %q (set %v), want %q", r.Alert, got, ok, want)
				}
			}
		})
	}
	for _, bad := range []string{"ftp://x/{{ $labels.spool }}", "/spools/{{ $labels.spool }}", "http://x/\nfoo"} {
		cfg := DefaultConfig()
		cfg.ConsoleURL = bad
		if _, err := Rules(cfg); err == nil {
			t.Errorf("consoleURL %q accepted", bad)
		}
	}
}

// TestDefaultsMatchTheAgent checks the defaults that repeat the agent's:
// the rules are generated without importing it, so a test ties them.
func TestDefaultsMatchTheAgent(t *testing.T) {
	cfg := DefaultConfig()
	if time.Duration(cfg.Thresholds.CheckedOutAge) != monitor.DefaultMaxCheckedOutAge {
		t.Errorf("CheckedOutAge %v, want the agent's --max-checked-out-age default %v", cfg.Thresholds.CheckedOutAge, monitor.DefaultMaxCheckedOutAge)
	}
	if !slices.Contains(cfg.ParkingQueues, repair.DefaultQuarantineQueue) {
		t.Errorf("parking queues %q lack repair's quarantine queue %q", cfg.ParkingQueues, repair.DefaultQuarantineQueue)
	}
	cfg.ParkingQueues[0] = "changed"
	if DefaultConfig().ParkingQueues[0] == "changed" {
		t.Error("changing a DefaultConfig's parking queues changed the next DefaultConfig's")
	}
}

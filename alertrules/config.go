// Package alertrules generates the Prometheus recording and alerting rules
// that watch spool-agent's series, from a small YAML configuration of
// thresholds, selectors and per-queue overrides.
//
// The bundled spool-agent.rules.yml is Generate(DefaultConfig()); users who
// need other thresholds write their own configuration (see thresholds.yaml)
// and run
//
//	go run ./alertrules/cmd/genrules -config my.yaml -o spool-agent.rules.yml   # from a checkout
//
// instead of editing the rules by hand. The same configuration gives the
// Alertmanager inhibit rules that keep one fault to one notification
// (GenerateInhibitRules, genrules -alertmanager-inhibit).
package alertrules

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// DefaultRunbookURL is where runbook_url annotations point unless the
// configuration says otherwise: the runbook shipped with the rules, installed
// beside them (README.md says how). Each alert appends "#" and the anchor of
// its section in RUNBOOK.md. A team that keeps a copy on a wiki sets
// runbookURL to it; there is no public copy to point at.
const DefaultRunbookURL = "file:///etc/prometheus/rules/RUNBOOK.md"

// DefaultConsoleURL is the console_url annotation of the spool alerts: the
// page of the alert's spool in the agent's read-only console, served on the
// address Prometheus scrapes. urlquery writes a space as "+", which the
// console reads back as a space.
const DefaultConsoleURL = "http://{{ $labels.instance }}/spools/{{ $labels.spool | urlquery }}"

// defaultParkingQueues are queues where entries wait on purpose (frozen by
// an operator, quarantined by repair, kept after removal): a queue that
// fills up there is not a queue whose consumers stopped. Unexported, so
// that DefaultConfig is the one way to get them (a copy); a test checks
// that "quarantine" is repair's default quarantine queue.
var defaultParkingQueues = [...]string{"frozen", "quarantine", "removed"}

// DefaultSelector selects the series scraped from spool-agent by the job
// name used in deploy/prometheus/prometheus.yml.
const DefaultSelector = `job="spool-agent"`

// Config is the generator's input. The zero value of every optional field
// means "keep the default"; DefaultConfig spells the defaults out.
type Config struct {
	// Selector is a comma-separated list of PromQL label matchers, without
	// braces, added to every series the rules read (including up).
	Selector string `yaml:"selector"`
	// RunbookURL is the address of RUNBOOK.md; "#" and the anchor of the
	// alert's section are appended for each alert.
	RunbookURL string `yaml:"runbookURL"`
	// ConsoleURL is the console_url annotation of every alert about one
	// spool, a Prometheus template (set it for agents behind a proxy or
	// TLS). The agent alerts that have an instance label link the part
	// before "spools/" (the console's home page), or nothing when the
	// address has no "/spools/". Empty drops the annotation.
	ConsoleURL string `yaml:"consoleURL"`
	// SpoolDir, when the spools' directories follow a pattern, names a
	// spool's directory in alert texts: "{spool}" stands for the spool
	// label, as in /var/spool/app/{spool}.
	SpoolDir string `yaml:"spoolDir,omitempty"`
	// AgentConfig, when set, is the path of the agent's --config file on
	// its hosts: alert texts then give "spool-agent fsck --config FILE
	// SPOOL", which checks with exactly that spool's limits.
	AgentConfig string `yaml:"agentConfig,omitempty"`
	// ParkingQueues are excluded from the draining alerts
	// (SpoolQueueNotDraining, SpoolQueueOldestEntryTooOld): entries wait in
	// them on purpose. An empty list includes every queue.
	ParkingQueues []string `yaml:"parkingQueues"`
	// Labels are added to every alert, for routing (team, service, ...).
	Labels map[string]string `yaml:"labels,omitempty"`
	// Thresholds are the defaults that apply to every queue.
	Thresholds Thresholds `yaml:"thresholds"`
	// Queues overrides thresholds for the queues its matchers select. The
	// first entry whose matchers select a series wins.
	Queues []QueueOverride `yaml:"queues,omitempty"`
	// Alerts overrides, by alert name, how long a condition must hold, the
	// severity, or disables an alert entirely.
	Alerts map[string]AlertOverride `yaml:"alerts,omitempty"`
}

// Thresholds are the limits shared by all queues. A zero duration disables
// the corresponding alert.
type Thresholds struct {
	// QueueOldestEntryAge is how long the oldest waiting entry of a queue
	// may wait before SpoolQueueOldestEntryTooOld fires.
	QueueOldestEntryAge Duration `yaml:"queueOldestEntryAge"`
	// CheckedOutAge is how long an entry may stay checked out before
	// SpoolCheckoutStuck fires.
	CheckedOutAge Duration `yaml:"checkedOutAge"`
	// NotDrainingWindow is the look-back window of SpoolQueueNotDraining:
	// the queue grew over it and not a single entry left it.
	NotDrainingWindow Duration `yaml:"notDrainingWindow"`
	// FsckStaleAfter is how old the last successful fsck may be before
	// SpoolFsckStale fires.
	FsckStaleAfter Duration `yaml:"fsckStaleAfter"`
	// FsckFailuresWindow is the look-back window in which SpoolFsckFailing
	// counts fsck failures.
	FsckFailuresWindow Duration `yaml:"fsckFailuresWindow"`
	// KeepFiringFor is how long the spool alerts keep firing after their
	// condition stops holding (Prometheus' keep_firing_for, 2.42 and
	// later), so that the gap in the series while the agent restarts does
	// not resolve them. It is also how late a fixed problem resolves.
	KeepFiringFor Duration `yaml:"keepFiringFor"`
}

// QueueOverride replaces per-queue thresholds for the series that Match
// selects. Unset fields keep the defaults; a zero duration silences that
// alert for the selected queues.
type QueueOverride struct {
	// Match is a comma-separated list of PromQL label matchers, for example
	// `spool="mail", queue=~"outbox|retry"`.
	Match               string    `yaml:"match"`
	QueueOldestEntryAge *Duration `yaml:"queueOldestEntryAge,omitempty"`
	CheckedOutAge       *Duration `yaml:"checkedOutAge,omitempty"`
	NotDrainingWindow   *Duration `yaml:"notDrainingWindow,omitempty"`
}

// AlertOverride changes one alert. Unset fields keep the defaults.
type AlertOverride struct {
	// For replaces the alert's "for" duration; "0s" fires on the first
	// evaluation that matches.
	For *Duration `yaml:"for,omitempty"`
	// KeepFiringFor replaces thresholds.keepFiringFor for this alert.
	KeepFiringFor *Duration `yaml:"keepFiringFor,omitempty"`
	// Severity replaces the severity label (critical or warning).
	Severity string `yaml:"severity,omitempty"`
	// Disabled drops the alert from the output.
	Disabled bool `yaml:"disabled,omitempty"`
}

// DefaultConfig returns the configuration that the bundled
// spool-agent.rules.yml is generated from. thresholds.yaml documents the
// same values.
func DefaultConfig() Config {
	return Config{
		Selector:      DefaultSelector,
		RunbookURL:    DefaultRunbookURL,
		ConsoleURL:    DefaultConsoleURL,
		ParkingQueues: slices.Clone(defaultParkingQueues[:]),
		Thresholds: Thresholds{
			QueueOldestEntryAge: Duration(time.Hour),
			// The agent's --max-checked-out-age default: SpoolCheckoutStuck
			// then fires before the agent's too_old problem (which also
			// waits for --alert-after-cycles) and inhibits it.
			CheckedOutAge:      Duration(10 * time.Minute),
			NotDrainingWindow:  Duration(30 * time.Minute),
			FsckStaleAfter:     Duration(15 * time.Minute),
			FsckFailuresWindow: Duration(5 * time.Minute),
			KeepFiringFor:      Duration(5 * time.Minute),
		},
	}
}

// LoadConfig reads a YAML configuration. Fields it does not set keep the
// values of DefaultConfig; unknown fields are an error, so a typo does not
// silently keep a default.
func LoadConfig(r io.Reader) (Config, error) {
	cfg := DefaultConfig()
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("decode alert rules config: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// LoadConfigFile reads a YAML configuration from path; see LoadConfig.
func LoadConfigFile(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read alert rules config: %w", err)
	}
	cfg, err := LoadConfig(bytes.NewReader(b))
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// Validate reports the first problem in c: malformed matchers, an unknown
// alert name or severity, a negative-free but nonsensical window.
func (c Config) Validate() error {
	if _, err := parseMatchers(c.Selector); err != nil {
		return fmt.Errorf("selector: %w", err)
	}
	if c.RunbookURL == "" {
		return errors.New("runbookURL must not be empty")
	}
	if u, err := url.Parse(c.RunbookURL); err != nil || u.Scheme == "" || u.Fragment != "" {
		return fmt.Errorf("runbookURL %q must be an absolute URL without a #fragment", c.RunbookURL)
	}
	if c.ConsoleURL != "" && !(strings.HasPrefix(c.ConsoleURL, "http://") || strings.HasPrefix(c.ConsoleURL, "https://")) ||
		strings.ContainsAny(c.ConsoleURL, "\n\r") {
		return fmt.Errorf("consoleURL %q must be an http:// or https:// address on one line, or empty", c.ConsoleURL)
	}
	if strings.Contains(c.SpoolDir, "{{") || strings.Contains(c.AgentConfig, "{{") {
		return errors.New("spoolDir and agentConfig must not contain {{")
	}
	if strings.ContainsAny(c.AgentConfig, " \t\n'\"") {
		return fmt.Errorf("agentConfig %q: a path without spaces or quotes, please", c.AgentConfig)
	}
	for i, q := range c.ParkingQueues {
		if q == "" || strings.ContainsAny(q, "/\x00\n") {
			return fmt.Errorf("parkingQueues[%d]: %q is not a queue name", i, q)
		}
	}
	for k := range c.Labels {
		if !labelNameRE.MatchString(k) {
			return fmt.Errorf("labels: invalid label name %q", k)
		}
		if k == "severity" || k == "alertname" {
			return fmt.Errorf("labels: %q is set per alert; use alerts.<name>.severity", k)
		}
	}
	if c.Thresholds.FsckFailuresWindow == 0 && !c.alertDisabled("SpoolFsckFailing") {
		return errors.New("thresholds.fsckFailuresWindow must be positive (disable SpoolFsckFailing instead)")
	}
	for i, q := range c.Queues {
		m, err := parseMatchers(q.Match)
		if err != nil {
			return fmt.Errorf("queues[%d].match: %w", i, err)
		}
		if len(m) == 0 {
			return fmt.Errorf("queues[%d].match must select something", i)
		}
	}
	known := map[string]bool{}
	for _, a := range alertSpecs {
		known[a.name] = true
	}
	names := make([]string, 0, len(c.Alerts))
	for n := range c.Alerts {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if !known[n] {
			return fmt.Errorf("alerts: unknown alert %q", n)
		}
		switch s := c.Alerts[n].Severity; s {
		case "", "critical", "warning", "info":
		default:
			return fmt.Errorf("alerts.%s.severity: %q is not critical, warning or info", n, s)
		}
	}
	return nil
}

func (c Config) alertDisabled(name string) bool {
	return c.Alerts[name].Disabled
}

// matcher is one parsed PromQL label matcher.
type matcher struct {
	name, op, value string
}

func (m matcher) String() string {
	return m.name + m.op + m.value
}

var labelNameRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

var matcherRE = regexp.MustCompile(`^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`" + `)\s*$`)

// parseMatchers splits a comma-separated matcher list, honouring quotes, and
// checks each matcher's shape. The values are kept as written (quoted), so
// they are rendered back exactly as the user typed them.
func parseMatchers(s string) ([]matcher, error) {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "{")
	s = strings.TrimSuffix(s, "}")
	var parts []string
	var cur strings.Builder
	var quote rune
	escaped := false
	for _, r := range s {
		switch {
		case escaped:
			escaped = false
		case quote != 0 && r == '\\' && quote != '`':
			escaped = true
		case quote != 0 && r == quote:
			quote = 0
		case quote == 0 && (r == '"' || r == '\'' || r == '`'):
			quote = r
		case quote == 0 && r == ',':
			parts = append(parts, cur.String())
			cur.Reset()
			continue
		}
		cur.WriteRune(r)
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated quote in %q", s)
	}
	parts = append(parts, cur.String())
	var out []matcher
	for _, p := range parts {
		if strings.TrimSpace(p) == "" {
			continue
		}
		g := matcherRE.FindStringSubmatch(p)
		if g == nil {
			return nil, fmt.Errorf("malformed label matcher %q (want name=\"value\", !=, =~ or !~)", strings.TrimSpace(p))
		}
		if g[1] == "__name__" {
			return nil, fmt.Errorf("matcher %q: selecting on the metric name is not allowed", strings.TrimSpace(p))
		}
		out = append(out, matcher{name: g[1], op: g[2], value: g[3]})
	}
	return out, nil
}

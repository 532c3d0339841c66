// Package dashboards holds the Grafana dashboard of spool-agent. Its tests
// check that the dashboard only queries series the agent exports or the
// bundled rules record, and that every panel is documented.
package dashboards

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// exportedSeries are the series the agent publishes: its public interface.
var exportedSeries = []string{
	"spool_up",
	"spool_queue_entries",
	"spool_queue_checked_out_entries",
	"spool_queue_oldest_entry_timestamp_seconds",
	"spool_queue_oldest_checked_out_timestamp_seconds",
	"spool_problems",
	"spool_problem_events_total",
	"spool_fsck_duration_seconds",
	"spool_fsck_last_success_timestamp_seconds",
	"spool_fsck_failures_total",
	"spool_agent_build_info",
	"spool_queue_entry_age_seconds_bucket",
	"spool_queue_entry_age_seconds_sum",
	"spool_queue_entry_age_seconds_count",
	"spool_tmp_files",
	"spool_registry_entries",
	"spool_data_bytes",
	"spool_queue_arrivals_total",
	"spool_agent_config_last_reload_successful",
	"spool_agent_config_last_reload_success_timestamp_seconds",
	"spool_agent_config_reloads_total",
}

// recordedSeries returns the record: names of the bundled rule file.
func recordedSeries(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../alertrules/spool-agent.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rf struct {
		Groups []struct {
			Rules []struct {
				Record string `yaml:"record"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &rf); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				out = append(out, r.Record)
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("the rule file records nothing")
	}
	return out
}

// PromQL words that are not series names.
var promqlKeywords = map[string]bool{
	"and": true, "or": true, "unless": true, "by": true, "without": true, "on": true,
	"ignoring": true, "group_left": true, "group_right": true, "bool": true, "offset": true,
	"inf": true, "nan": true, "atan2": true,
	// aggregation operators, which may be followed by "by (...)" rather than "(".
	"sum": true, "min": true, "max": true, "avg": true, "count": true, "stddev": true,
	"stdvar": true, "topk": true, "bottomk": true, "quantile": true, "count_values": true,
	"group": true, "limitk": true, "limit_ratio": true,
}

var (
	grafanaVar   = regexp.MustCompile(`\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*`)
	stringLit    = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	braces       = regexp.MustCompile(`\{[^}]*\}`)
	brackets     = regexp.MustCompile(`\[[^\]]*\]`)
	labelLists   = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	labelValues  = regexp.MustCompile(`^\s*label_values\(\s*(.*?)\s*,\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$`)
	identifier   = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	numberPrefix = regexp.MustCompile(`[0-9.][0-9.]*[eE]?$`)
)

// seriesNames returns the series a PromQL expression (or a Grafana
// label_values(...) variable query) names: identifiers that are neither
// functions, keywords, label names, strings, durations nor Grafana variables.
func seriesNames(expr string) []string {
	if m := labelValues.FindStringSubmatch(expr); m != nil {
		expr = m[1]
	}
	expr = stringLit.ReplaceAllString(expr, `""`)
	expr = grafanaVar.ReplaceAllString(expr, "")
	expr = braces.ReplaceAllString(expr, "")
	expr = brackets.ReplaceAllString(expr, "")
	expr = labelLists.ReplaceAllString(expr, "")
	var out []string
	for _, loc := range identifier.FindAllStringIndex(expr, -1) {
		name := expr[loc[0]:loc[1]]
		if promqlKeywords[strings.ToLower(name)] {
			continue
		}
		// Part of a number such as 1e3 or 0x1F.
		if loc[0] > 0 && numberPrefix.MatchString(expr[:loc[0]]) {
			continue
		}
		if rest := strings.TrimLeft(expr[loc[1]:], " \t\n"); strings.HasPrefix(rest, "(") {
			continue // a function call
		}
		out = append(out, name)
	}
	return out
}

func TestSeriesNames(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string
	}{
		{`spool_up`, []string{"spool_up"}},
		{`sum by (kind, dir) (spool_problems{spool=~"$spool", kind!="too_old"}) > 0`, []string{"spool_problems"}},
		{`histogram_quantile(0.9, sum without (instance) (rate(x_bucket{le!="+Inf"}[$__rate_interval])))`, []string{"x_bucket"}},
		{`max(spool_queue:oldest_entry_age_seconds{queue=~"${queue}"}) / on(spool) group_left(version) spool_agent_build_info`,
			[]string{"spool_queue:oldest_entry_age_seconds", "spool_agent_build_info"}},
		{`label_values(spool_queue_entries{spool=~"$spool"}, queue)`, []string{"spool_queue_entries"}},
		{`label_values(spool_up, spool)`, []string{"spool_up"}},
		{`time() - a offset 5m > 1e3 and bool b unless c or 0x1F`, []string{"a", "b", "c"}},
		{`-x{a="b or c"} * 2`, []string{"x"}},
		{`vector(1)`, nil},
	} {
		got := seriesNames(tc.expr)
		if !slices.Equal(got, tc.want) {
			t.Errorf("seriesNames(%q) = %q, want %q", tc.expr, got, tc.want)
		}
	}
}

// dashboard is the part of the dashboard JSON the tests read.
type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Definition string          `json:"definition"`
			Datasource *datasource     `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID          int         `json:"id"`
	Type        string      `json:"type"`
	Title       string      `json:"title"`
	Description string      `json:"description"`
	Datasource  *datasource `json:"datasource"`
	GridPos     struct {
		H, W, X, Y int
	} `json:"gridPos"`
	FieldConfig struct {
		Defaults struct {
			Unit string `json:"unit"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
	Targets []struct {
		Expr       string      `json:"expr"`
		RefID      string      `json:"refId"`
		Datasource *datasource `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // collapsed rows
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile("spool-agent.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("spool-agent.json: %v", err)
	}
	return d
}

// allPanels flattens rows.
func allPanels(d dashboard) []panel {
	var out []panel
	for _, p := range d.Panels {
		out = append(out, p)
		out = append(out, p.Panels...)
	}
	return out
}

// queries returns every PromQL query of the dashboard with where it is.
func queries(t *testing.T, d dashboard) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, p := range allPanels(d) {
		for _, tg := range p.Targets {
			out["panel "+p.Title+" target "+tg.RefID] = tg.Expr
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			// Older Grafana stores the query as a plain string.
			if err := json.Unmarshal(v.Query, &q.Query); err != nil {
				t.Fatalf("variable %s: query %s", v.Name, v.Query)
			}
		}
		out["variable "+v.Name] = q.Query
		if v.Definition != "" && v.Definition != q.Query {
			t.Errorf("variable %s: definition %q differs from query %q", v.Name, v.Definition, q.Query)
		}
	}
	return out
}

func TestDashboardQueriesOnlyKnownSeries(t *testing.T) {
	d := loadDashboard(t)
	known := map[string]bool{}
	for _, s := range exportedSeries {
		known[s] = true
	}
	recorded := recordedSeries(t)
	for _, s := range recorded {
		known[s] = true
	}
	used := map[string]bool{}
	qs := queries(t, d)
	if len(qs) < 15 {
		t.Fatalf("only %d queries found", len(qs))
	}
	for where, q := range qs {
		if strings.TrimSpace(q) == "" {
			t.Errorf("%s: empty query", where)
			continue
		}
		names := seriesNames(q)
		if len(names) == 0 {
			t.Errorf("%s: %q names no series", where, q)
		}
		for _, n := range names {
			used[n] = true
			if !known[n] {
				t.Errorf("%s: %q queries %s, which neither the agent exports nor the rules record", where, q, n)
			}
		}
		// The age histogram is a snapshot, not a counter.
		if regexp.MustCompile(`(rate|increase|irate)\([^)]*spool_queue_entry_age_seconds`).MatchString(q) {
			t.Errorf("%s: %q takes a rate of the age snapshot histogram", where, q)
		}
	}
	// The dashboard should make use of the recording rules it relies on.
	var unused []string
	for _, r := range recorded {
		if !used[r] {
			unused = append(unused, r)
		}
	}
	sort.Strings(unused)
	if len(unused) > 0 {
		t.Logf("recording rules the dashboard does not use: %q", unused)
	}
	for _, must := range []string{"spool_up", "spool_queue_entries", "spool_queue_checked_out_entries",
		"spool_queue:oldest_entry_age_seconds", "spool_problem_events_total", "spool_fsck_duration_seconds",
		"spool:fsck_last_success_age_seconds", "spool:problems:sum"} {
		if !used[must] {
			t.Errorf("the dashboard does not show %s", must)
		}
	}
}

func TestDashboardFiltersByTheVariables(t *testing.T) {
	d := loadDashboard(t)
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
	}
	for name, typ := range map[string]string{"datasource": "datasource", "spool": "query", "queue": "query"} {
		if vars[name] != typ {
			t.Errorf("variable %s: type %q, want %q", name, vars[name], typ)
		}
	}
	for where, q := range queries(t, d) {
		if strings.HasPrefix(where, "variable ") {
			continue
		}
		names := seriesNames(q)
		// The agent's own series (spool_agent_*) have no spool label.
		perSpool := !slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, "spool_agent_") })
		if perSpool && !strings.Contains(q, `spool=~"$spool"`) {
			t.Errorf("%s: %q ignores the spool variable", where, q)
		}
		perQueue := false
		for _, n := range names {
			if strings.HasPrefix(n, "spool_queue") {
				perQueue = true
			}
		}
		if perQueue && !strings.Contains(q, `queue=~"$queue"`) {
			t.Errorf("%s: %q ignores the queue variable", where, q)
		}
	}
}

func TestDashboardPanelsAreDocumented(t *testing.T) {
	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Error("the dashboard needs a uid and a title for provisioning")
	}
	ids := map[int]bool{}
	type rect struct {
		title          string
		x0, y0, x1, y1 int
	}
	var rects []rect
	for _, p := range allPanels(d) {
		if ids[p.ID] {
			t.Errorf("panel id %d is used twice", p.ID)
		}
		ids[p.ID] = true
		if p.Title == "" {
			t.Errorf("panel %d has no title", p.ID)
		}
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: bad gridPos %+v", p.Title, g)
		}
		for _, r := range rects {
			if g.X < r.x1 && r.x0 < g.X+g.W && g.Y < r.y1 && r.y0 < g.Y+g.H {
				t.Errorf("panels %q and %q overlap", p.Title, r.title)
			}
		}
		rects = append(rects, rect{p.Title, g.X, g.Y, g.X + g.W, g.Y + g.H})
		if p.Type == "row" {
			continue
		}
		if p.Description == "" {
			t.Errorf("panel %q has no description", p.Title)
		}
		if p.FieldConfig.Defaults.Unit == "" {
			t.Errorf("panel %q has no unit", p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q does not use the datasource variable", p.Title)
		}
		for _, tg := range p.Targets {
			if tg.Datasource != nil && tg.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q target %s does not use the datasource variable", p.Title, tg.RefID)
			}
		}
	}
}

// TestDashboardCoversTheIssue checks that the panels the issue asks for are
// there, by their titles.
func TestDashboardCoversTheIssue(t *testing.T) {
	d := loadDashboard(t)
	var titles []string
	for _, p := range allPanels(d) {
		titles = append(titles, strings.ToLower(p.Title))
	}
	all := strings.Join(titles, "\n")
	for _, want := range []string{"queue depth", "oldest waiting entry age", "checked-out entries", "problems by kind",
		"problem events", "check duration", "time since last successful check", "spools up", "configuration reloads"} {
		if !strings.Contains(all, want) {
			t.Errorf("no panel titled like %q", want)
		}
	}
}

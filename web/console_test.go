package web

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spool-agent/spool-agent/monitor"
	"github.com/spool-agent/spool-agent/spool"
)

// fixedNow is the clock of the fixed snapshots.
var fixedNow = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

// Hostile names, as a spool may hold them.
const (
	scriptName = `<script>alert("x")</script>`
	escName    = "red\x1b[31m\u009b2J"
	badUTF8    = "bad\xff\xfe"
)

// fixedSnapshots are two spools: "mail" up, with an alerting problem whose
// name is a script, a pending one with control characters, one not UTF-8
// and one found but not tracked; "broken" down.
func fixedSnapshots() []*monitor.Snapshot {
	co := monitor.Dir{Kind: monitor.DirCheckout, Queue: "active"}
	data := monitor.Dir{Kind: monitor.DirData}
	alert := monitor.Problem{Kind: monitor.KindTooOld, Dir: co, Name: scriptName, ModTime: fixedNow.Add(-20 * time.Minute)}
	pending := monitor.Problem{Kind: monitor.KindOrphaned, Dir: data, Name: escName, ModTime: fixedNow.Add(-90 * time.Second)}
	bad := monitor.Problem{Kind: monitor.KindOrphaned, Dir: data, Name: badUTF8}
	untracked := monitor.Problem{Kind: monitor.KindUnexpected, Dir: monitor.Dir{Kind: monitor.DirRoot}, Name: "stray"}
	mail := &monitor.Snapshot{
		Name: "mail", Dir: "/var/spool/mail", Up: true, Time: fixedNow.Add(-3 * time.Second), Watching: true,
		Queues: []monitor.QueueStats{
			{Queue: "active", Entries: 3, CheckedOut: 1, OldestEntry: fixedNow.Add(-7 * time.Minute), OldestCheckedOut: alert.ModTime},
			{Queue: "frozen"},
		},
		Problems: []monitor.Problem{alert, bad, pending, untracked}, // sorted, as a monitor has them
		Alerting: []monitor.Problem{alert},
		Tracked: []monitor.TrackedProblem{
			{Problem: alert, Count: 4, Alerting: true},
			{Problem: bad, Count: 2},
			{Problem: pending, Count: 1},
		},
		Cycles: 4, LastSuccess: fixedNow.Add(-3 * time.Second), CycleDuration: 2 * time.Millisecond,
	}
	broken := &monitor.Snapshot{Name: "broken", Dir: "/var/spool/broken", LastError: "open spool /var/spool/broken: permission denied", Cycles: 2, FailedCycles: 2}
	return []*monitor.Snapshot{broken, mail}
}

func newTestConsole(snaps []*monitor.Snapshot) *Console {
	ev := NewEvents()
	return New(Options{
		Snapshots: func() []*monitor.Snapshot { return snaps },
		Events:    ev,
		Metrics:   http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "# metrics\n") }),
		Version:   "spool-agent test",
		Now:       func() time.Time { return fixedNow },
	})
}

type response struct {
	code   int
	header http.Header
	body   string
}

func do(t *testing.T, h http.Handler, method, path string) response {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return response{rec.Code, rec.Header(), rec.Body.String()}
}

// apiSchema is the JSON API's schema: for each object, its fields and
// their JSON types ("?" after a type: may be absent). Every field must be
// there with its type, and no other.
var apiSchema = map[string]map[string]string{
	"doc":     {"spools": "array:spool"},
	"spool":   {"name": "string", "dir": "string", "up": "bool", "queues": "array:queue", "problems": "array:problem"},
	"queue":   {"name": "string", "name_base64": "string?", "entries": "number", "checked_out": "number", "oldest_entry_timestamp": "time|null"},
	"problem": {"kind": "string", "dir": "string", "queue": "string", "queue_base64": "string?", "name": "string", "name_base64": "string?", "mtime": "time|null", "alerting": "bool", "sightings": "number", "dirs": "array:dir?"},
	"dir":     {"dir": "string", "queue": "string?", "queue_base64": "string?"},
}

// checkSchema checks v, a decoded JSON value, against apiSchema's object kind.
func checkSchema(t *testing.T, where, kind string, v any) {
	t.Helper()
	obj, ok := v.(map[string]any)
	if !ok {
		t.Errorf("%s: %T, want an object (%s)", where, v, kind)
		return
	}
	fields := apiSchema[kind]
	for k := range obj {
		if _, ok := fields[k]; !ok {
			t.Errorf("%s: field %q is not in the schema of %s", where, k, kind)
		}
	}
	for name, typ := range fields {
		typ, optional := strings.CutSuffix(typ, "?")
		val, present := obj[name]
		if !present {
			if !optional {
				t.Errorf("%s: no field %q", where, name)
			}
			continue
		}
		at := where + "." + name
		switch {
		case strings.HasPrefix(typ, "array:"):
			arr, ok := val.([]any)
			if !ok {
				t.Errorf("%s: %T, want an array", at, val)
				continue
			}
			for i, e := range arr {
				checkSchema(t, fmt.Sprintf("%s[%d]", at, i), strings.TrimPrefix(typ, "array:"), e)
			}
		case typ == "string":
			if _, ok := val.(string); !ok {
				t.Errorf("%s: %T, want a string", at, val)
			}
		case typ == "bool":
			if _, ok := val.(bool); !ok {
				t.Errorf("%s: %T, want a boolean", at, val)
			}
		case typ == "number":
			if n, ok := val.(float64); !ok || n < 0 || n != float64(int64(n)) {
				t.Errorf("%s: %v, want a count", at, val)
			}
		case typ == "time|null":
			if val == nil {
				continue
			}
			s, ok := val.(string)
			if !ok {
				t.Errorf("%s: %T, want an RFC 3339 string or null", at, val)
			} else if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
				t.Errorf("%s: %v", at, err)
			}
		default:
			t.Fatalf("schema type %q", typ)
		}
	}
}

func TestAPISpools(t *testing.T) {
	c := newTestConsole(fixedSnapshots())
	r := do(t, c, http.MethodGet, "/api/v1/spools")
	if r.code != http.StatusOK || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("%d %s:\n%s", r.code, r.header.Get("Content-Type"), r.body)
	}
	var doc any
	if err := json.Unmarshal([]byte(r.body), &doc); err != nil {
		t.Fatal(err)
	}
	checkSchema(t, "$", "doc", doc)

	// No raw DEL, C0 or C1 control character anywhere: a terminal that
	// shows the document acts on none.
	for i, r := range r.body {
		if r < 0x20 && r != '\n' || r >= 0x7f && r <= 0x9f {
			t.Fatalf("raw control character %U at %d", r, i)
		}
	}
	if !strings.Contains(r.body, `\u009b`) {
		t.Errorf("the C1 control of %q is not escaped as \\u009b:\n%s", escName, r.body)
	}

	var got spoolsJSON
	if err := json.Unmarshal([]byte(r.body), &got); err != nil {
		t.Fatal(err)
	}
	str := func(s string) *string { return &s }
	want := spoolsJSON{Spools: []spoolJSON{
		{Name: "broken", Dir: "/var/spool/broken", Queues: []queueJSON{}, Problems: []problemJSON{}},
		{Name: "mail", Dir: "/var/spool/mail", Up: true,
			Queues: []queueJSON{
				{Name: "active", Entries: 3, CheckedOut: 1, OldestEntryTimestamp: str("2026-11-30T11:53:00Z")},
				{Name: "frozen"},
			},
			Problems: []problemJSON{
				{Kind: "too_old", Dir: "checkout", Queue: "active", Name: scriptName, MTime: str("2026-11-30T11:40:00Z"), Alerting: true, Sightings: 4},
				{Kind: "orphaned", Dir: "data", Name: "bad\ufffd\ufffd", NameBase64: "YmFk//4=", Sightings: 2},
				{Kind: "orphaned", Dir: "data", Name: escName, MTime: str("2026-11-30T11:58:30Z"), Sightings: 1},
				{Kind: "unexpected", Dir: "root", Name: "stray"},
			}},
	}}
	gb, _ := json.MarshalIndent(got, "", " ")
	wb, _ := json.MarshalIndent(want, "", " ")
	if !bytes.Equal(gb, wb) {
		t.Errorf("got\n%s\nwant\n%s", gb, wb)
	}
}

func TestAPISpool(t *testing.T) {
	c := newTestConsole(fixedSnapshots())
	r := do(t, c, http.MethodGet, "/api/v1/spools/mail")
	if r.code != http.StatusOK {
		t.Fatalf("%d\n%s", r.code, r.body)
	}
	var doc any
	if err := json.Unmarshal([]byte(r.body), &doc); err != nil {
		t.Fatal(err)
	}
	checkSchema(t, "$", "spool", doc)
	if doc.(map[string]any)["name"] != "mail" {
		t.Errorf("name %v", doc.(map[string]any)["name"])
	}
}

func TestNotFound(t *testing.T) {
	c := newTestConsole(fixedSnapshots())
	for _, path := range []string{"/spools/nope", "/spools/", "/api/v1/spools/nope", "/api/v1/spools/", "/nope", "/spools/mail/x", "/index.html"} {
		if r := do(t, c, http.MethodGet, path); r.code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, r.code)
		}
	}
	r := do(t, c, http.MethodGet, "/api/v1/spools/nope")
	if r.header.Get("Content-Type") != "application/json" || !json.Valid([]byte(r.body)) {
		t.Errorf("404 of the API: %s %q", r.header.Get("Content-Type"), r.body)
	}
}

// TestReadOnly: every route answers GET and HEAD only; anything else
// gets 405 with Allow, whatever the path.
func TestReadOnly(t *testing.T) {
	c := newTestConsole(fixedSnapshots())
	srv := httptest.NewServer(c)
	defer srv.Close()
	paths := []string{"/", "/spools/mail", "/api/v1/spools", "/api/v1/spools/mail", "/metrics", "/-/healthy", "/static/console.css", "/nope"}
	for _, path := range paths {
		for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions, "PURGE"} {
			r := do(t, c, m, path)
			if r.code != http.StatusMethodNotAllowed || r.header.Get("Allow") != "GET, HEAD" {
				t.Errorf("%s %s: %d Allow=%q, want 405 with Allow: GET, HEAD", m, path, r.code, r.header.Get("Allow"))
			}
		}
		if path == "/nope" {
			continue
		}
		// HEAD through a real server, which sends no body.
		req, _ := http.NewRequest(http.MethodHead, srv.URL+path, nil)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || len(b) != 0 {
			t.Errorf("HEAD %s: %d, %d bytes", path, resp.StatusCode, len(b))
		}
	}
}

func TestSecurityHeaders(t *testing.T) {
	c := newTestConsole(fixedSnapshots())
	for _, path := range []string{"/", "/spools/mail", "/api/v1/spools", "/static/console.css", "/metrics", "/nope"} {
		r := do(t, c, http.MethodGet, path)
		if got := r.header.Get("Content-Security-Policy"); got != "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'" {
			t.Errorf("%s: Content-Security-Policy %q", path, got)
		}
		if got := r.header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("%s: X-Content-Type-Options %q", path, got)
		}
	}
	if r := do(t, c, http.MethodGet, "/static/console.css"); r.header.Get("Content-Type") != "text/css; charset=utf-8" || !strings.Contains(r.body, "table") {
		t.Errorf("console.css: %s %q", r.header.Get("Content-Type"), r.body[:min(len(r.body), 80)])
	}
}

// TestPagesEscape: names from the spool come out as text, control
// characters visibly escaped; the pages hold no script and load nothing
// from elsewhere.
func TestPagesEscape(t *testing.T) {
	c := newTestConsole(fixedSnapshots())
	for _, path := range []string{"/", "/spools/mail"} {
		r := do(t, c, http.MethodGet, path)
		if r.code != http.StatusOK || r.header.Get("Content-Type") != "text/html; charset=utf-8" {
			t.Fatalf("%s: %d %s", path, r.code, r.header.Get("Content-Type"))
		}
		for _, want := range []string{
			"active/.checkout/&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;",
			`.data/red\x1b[31m\u009b2J`,
			`.data/bad\xff\xfe`,
			`href="/metrics"`,
			`<link rel="stylesheet" href="/static/console.css">`,
		} {
			if !strings.Contains(r.body, want) {
				t.Errorf("%s: no %q in\n%s", path, want, r.body)
			}
		}
		if strings.Contains(strings.ToLower(r.body), "<script") {
			t.Errorf("%s: a <script> element", path)
		}
		for _, bad := range []string{"\x1b", "\u009b", "\xff", "http://", "https://"} {
			if strings.Contains(r.body, bad) {
				t.Errorf("%s: %q in the page", path, bad)
			}
		}
	}
}

func TestPageContent(t *testing.T) {
	snaps := fixedSnapshots()
	c := newTestConsole(snaps)
	c.events.Record("mail", monitor.Event{Type: monitor.Start, Time: fixedNow.Add(-time.Minute), Problem: snaps[1].Alerting[0]})
	c.events.Record("mail", monitor.Event{Type: monitor.End, Time: fixedNow.Add(-2 * time.Hour), Problem: monitor.Problem{Kind: monitor.KindOrphaned, Dir: monitor.Dir{Kind: monitor.DirTmp}, Name: "gone"}})
	r := do(t, c, http.MethodGet, "/")
	for _, want := range []string{
		`<a href="/spools/mail">mail</a>`,
		`<span class="state down">down</span>`,
		`<span class="state up">up</span>`,
		"open spool /var/spool/broken: permission denied",
		"Problems: 1 alerting, 3 pending",
		// Queue active: 3 waiting, 1 checked out, the oldest 7 minutes
		// old, 20 minutes for the checkout; no age index: qshape zeros.
		`<td class="name">active</td><td class="n">3</td><td class="n">1</td><td class="n"><span title="2026-11-30T11:53:00Z">7m00s</span></td><td class="n"><span title="2026-11-30T11:40:00Z">20m00s</span></td><td class="n shape">0</td>`,
		`<td class="name">frozen</td><td class="n">0</td><td class="n">0</td><td class="n">–</td>`,
		`<tr class="alerting"><td>too_old</td>`,
		`<td>alerting</td><td class="n">4</td>`,
		`<td>pending</td><td class="n">1</td>`,
		`<th class="n shape">T</th><th class="n shape">5m</th>`,
		`<th class="n shape">1280m</th><th class="n shape">1280m+</th>`,
		`orphaned <code>.tmp/gone</code>, <span title="2026-11-30T10:00:00Z">2h00m ago</span>`,
		`too_old <code>active/.checkout/&lt;script&gt;`,
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("no %q in\n%s", want, r.body)
		}
	}
	one := do(t, c, http.MethodGet, "/spools/mail")
	if strings.Contains(one.body, "broken") || !strings.Contains(one.body, "Registry entries") {
		t.Errorf("the spool page shows another spool or lacks its details:\n%s", one.body)
	}
}

// TestSpoolNames: a spool name with a space, a slash and a plus reaches
// its page by the console's links and by an alert's urlquery link.
func TestSpoolNames(t *testing.T) {
	name := "a b/c+d"
	c := newTestConsole([]*monitor.Snapshot{{Name: name, Dir: "/x", Up: true}, {Name: "a b", Dir: "/y", Up: true}})
	if r := do(t, c, http.MethodGet, "/"); !strings.Contains(r.body, `href="/spools/a%20b%2Fc+d"`) {
		t.Errorf("no path-escaped link in\n%s", r.body)
	}
	for path, want := range map[string]string{
		"/spools/a%20b%2Fc+d":        "/x", // the console's link
		"/spools/a+b%2Fc%2Bd":        "/x", // Go's urlquery, as an alert template has it
		"/api/v1/spools/a+b%2Fc%2Bd": "/x",
		"/spools/a+b":                "/y",
		"/spools/a%20b":              "/y",
	} {
		r := do(t, c, http.MethodGet, path)
		if r.code != http.StatusOK || !strings.Contains(r.body, want) {
			t.Errorf("GET %s: %d, want the spool in %s", path, r.code, want)
		}
	}
}

// TestQshape builds a real spool, takes its monitor's snapshot and checks
// the qshape row (T, 5m, 10m, 20m ... 1280m, 1280m+) against the ages given.
func TestQshape(t *testing.T) {
	now := time.Now()
	dir := filepath.Join(t.TempDir(), "s")
	s, err := spool.Create(dir, []string{"active"}, &spool.Options{Durability: spool.DurabilityNone})
	if err != nil {
		t.Fatal(err)
	}
	ages := []time.Duration{time.Minute, 5*time.Minute - time.Second, 7 * time.Minute, 30 * time.Minute, 2 * time.Hour, 30 * time.Hour}
	for i, a := range ages {
		name := fmt.Sprintf("e%d", i)
		if _, err := s.EnqueueBytes(context.Background(), "active", []byte("m"), []byte("d"), spool.EnqueueOptions{Name: name}); err != nil {
			t.Fatal(err)
		}
		at := now.Add(-a)
		if err := os.Chtimes(filepath.Join(dir, "active", name), at, at); err != nil {
			t.Fatal(err)
		}
	}
	cfg := monitor.DefaultConfig()
	cfg.Now = func() time.Time { return now }
	cfg.DisableWatch = true
	cfg.Logger = slog.New(slog.DiscardHandler)
	m, err := monitor.New("s", dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := m.Cycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	snap := m.Snapshot()
	got := qshape(&snap.Queues[0], now)
	//                 T  5m 10m 20m 40m 80m 160m 320m 640m 1280m 1280m+
	want := []uint64{6, 2, 1, 0, 1, 0, 1, 0, 0, 0, 1}
	if !slices.Equal(got, want) {
		t.Errorf("qshape %v, want %v (columns %v)", got, want, shapeLabels)
	}
	c := New(Options{Snapshots: func() []*monitor.Snapshot { return []*monitor.Snapshot{snap} }, Now: func() time.Time { return now }})
	r := do(t, c, http.MethodGet, "/spools/s")
	row := `<td class="n shape">6</td><td class="n shape">2</td><td class="n shape">1</td><td class="n shape">0</td><td class="n shape">1</td>`
	if !strings.Contains(r.body, row) {
		t.Errorf("no qshape row %q in\n%s", row, r.body)
	}
}

func TestCurrentProblems(t *testing.T) {
	p := func(name string) monitor.Problem {
		return monitor.Problem{Kind: monitor.KindOrphaned, Dir: monitor.Dir{Kind: monitor.DirData}, Name: name}
	}
	tr := func(name string, n int, a bool) monitor.TrackedProblem {
		return monitor.TrackedProblem{Problem: p(name), Count: n, Alerting: a}
	}
	for _, tc := range []struct {
		name     string
		problems []monitor.Problem
		tracked  []monitor.TrackedProblem
		want     []problemState
	}{
		{"none", nil, nil, []problemState{}},
		{"same", []monitor.Problem{p("a"), p("b")}, []monitor.TrackedProblem{tr("a", 3, true), tr("b", 1, false)},
			[]problemState{{p("a"), true, 3}, {p("b"), false, 1}}},
		{"alerting from an unreadable part, not found this cycle", []monitor.Problem{p("b")}, []monitor.TrackedProblem{tr("a", 0, true), tr("b", 2, false)},
			[]problemState{{p("a"), true, 0}, {p("b"), false, 2}}},
		{"found in an unreadable part, not tracked", []monitor.Problem{p("a"), p("b"), p("c")}, []monitor.TrackedProblem{tr("b", 5, true)},
			[]problemState{{p("a"), false, 0}, {p("b"), true, 5}, {p("c"), false, 0}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := currentProblems(&monitor.Snapshot{Problems: tc.problems, Tracked: tc.tracked})
			if !slices.EqualFunc(got, tc.want, func(a, b problemState) bool {
				return monitor.CompareProblems(a.Problem, b.Problem) == 0 && a.Alerting == b.Alerting && a.Sightings == b.Sightings
			}) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestAge(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second:                       "0s",
		0:                                  "0s",
		59 * time.Second:                   "59s",
		61 * time.Second:                   "1m01s",
		time.Hour + 5*time.Minute:          "1h05m",
		47*time.Hour + 59*time.Minute:      "47h59m",
		50 * time.Hour:                     "2d02h",
		400*24*time.Hour + 3*time.Hour + 1: "400d03h",
	} {
		if got := age(fixedNow, fixedNow.Add(-d)); got != want {
			t.Errorf("age(%v) = %q, want %q", d, got, want)
		}
	}
}

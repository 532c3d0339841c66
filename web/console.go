// Package web is the agent's HTTP surface: the routes, the read-only
// console (server-rendered with html/template, no JavaScript, no asset
// from outside the binary) and its JSON API, and /metrics and the health
// endpoints handed in by the caller. It reads only the monitors'
// snapshots, which the collector hands out: a request never touches the
// disk. TLS and basic authentication wrap the whole server
// (exporter-toolkit, in cmd/spool-agent).
package web

import (
	"bytes"
	"embed"
	"encoding/json"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spool-agent/spool-agent/internal/termsafe"
	"github.com/spool-agent/spool-agent/monitor"
)

//go:embed templates/*.html static/console.css
var assets embed.FS

var pages = template.Must(template.ParseFS(assets, "templates/*.html"))

var css = func() []byte {
	b, err := assets.ReadFile("static/console.css")
	if err != nil {
		panic(err)
	}
	return b
}()

// ContentSecurityPolicy is sent with every response: nothing runs, nothing
// loads from elsewhere, no page frames the console. The only asset is
// the style sheet, served from the binary.
const ContentSecurityPolicy = "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

// How many problems a page lists per spool; the JSON API has them all.
const (
	overviewProblems = 20
	spoolProblems    = 1000
)

// Options configure a Console.
type Options struct {
	// Snapshots returns the spools' latest snapshots sorted by name
	// (collector.Collector.Snapshots). Required.
	Snapshots func() []*monitor.Snapshot
	// Events gives each spool's last Start and End events (nil: none).
	Events *Events
	// Metrics serves /metrics (nil: no such route).
	Metrics http.Handler
	// Version is shown at the foot of the pages.
	Version string
	// Now is the clock of ages and qshape rows (default time.Now).
	Now func() time.Time
}

// Console serves the agent's routes:
//
//	GET /                        every spool: state, queues, qshape, problems, last events
//	GET /spools/NAME             one spool (404 for an unknown name)
//	GET /api/v1/spools           the same as JSON
//	GET /api/v1/spools/NAME      one spool as JSON (404 for an unknown name)
//	GET /metrics                 Options.Metrics
//	GET /-/healthy, /-/ready     "OK"
//	GET /static/console.css      the style sheet
//
// HEAD too; any other method gets 405. Every response carries a strict
// Content-Security-Policy and X-Content-Type-Options: nosniff.
type Console struct {
	snapshots func() []*monitor.Snapshot
	events    *Events
	version   string
	now       func() time.Time
	mux       *http.ServeMux
	bufs      sync.Pool
}

// New returns a Console.
func New(o Options) *Console {
	c := &Console{snapshots: o.Snapshots, events: o.Events, version: o.Version, now: o.Now}
	if c.now == nil {
		c.now = time.Now
	}
	c.bufs.New = func() any { return new(bytes.Buffer) }
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", c.serveOverview)
	mux.HandleFunc("GET /spools/{name...}", c.serveSpool)
	mux.HandleFunc("GET /api/v1/spools", c.serveAPI)
	mux.HandleFunc("GET /api/v1/spools/{name...}", c.serveAPISpool)
	mux.HandleFunc("GET /static/console.css", serveCSS)
	if o.Metrics != nil {
		mux.Handle("GET /metrics", o.Metrics)
	}
	ok := func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "OK\n") }
	mux.HandleFunc("GET /-/healthy", ok)
	mux.HandleFunc("GET /-/ready", ok)
	c.mux = mux
	return c
}

// ServeHTTP implements http.Handler.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		// Read-only: no action over HTTP.
		h.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed: the console is read-only", http.StatusMethodNotAllowed)
		return
	}
	c.mux.ServeHTTP(w, r)
}

func serveCSS(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "max-age=3600")
	w.Write(css)
}

// lookup finds the spool that a request's {name...} names. The name is
// path-escaped in the console's links; links built by alert templates with
// Go's urlquery escape a space as "+", so a name not found as is is looked
// up again with "+" as a space ("%2B" stays a plus).
func (c *Console) lookup(r *http.Request, prefix string) *monitor.Snapshot {
	snaps := c.snapshots()
	find := func(name string) *monitor.Snapshot {
		for _, s := range snaps {
			if s != nil && s.Name == name {
				return s
			}
		}
		return nil
	}
	name := r.PathValue("name")
	if name == "" {
		return nil
	}
	if s := find(name); s != nil {
		return s
	}
	raw, ok := strings.CutPrefix(r.URL.EscapedPath(), prefix)
	if !ok || !strings.Contains(raw, "+") {
		return nil
	}
	if alt, err := url.QueryUnescape(raw); err == nil && alt != name {
		return find(alt)
	}
	return nil
}

func (c *Console) page(title string, one bool) pageView {
	return pageView{Title: title, Version: c.version, One: one}
}

func (c *Console) serveOverview(w http.ResponseWriter, r *http.Request) {
	now := c.now()
	p := c.page("spool-agent", false)
	p.Now = rfc3339(now)
	for _, s := range c.snapshots() {
		if s != nil {
			p.Spools = append(p.Spools, c.spoolView(s, now, overviewProblems, false))
		}
	}
	c.render(w, p)
}

func (c *Console) serveSpool(w http.ResponseWriter, r *http.Request) {
	s := c.lookup(r, "/spools/")
	if s == nil {
		http.NotFound(w, r)
		return
	}
	now := c.now()
	v := c.spoolView(s, now, spoolProblems, true)
	p := c.page(v.Name+" - spool-agent", true)
	p.Now = rfc3339(now)
	p.Spools = []spoolView{v}
	c.render(w, p)
}

// render writes the page into a buffer first: an error gives a 500,
// never half a page. The templates give the frame; rows.go the spools.
func (c *Console) render(w http.ResponseWriter, p pageView) {
	buf := c.bufs.Get().(*bytes.Buffer)
	buf.Reset()
	defer c.bufs.Put(buf)
	// The pool loses its buffers at each GC: size the page once rather
	// than double the buffer a dozen times.
	size := 4096
	for i := range p.Spools {
		size += 2048 + 700*len(p.Spools[i].Queues) + 250*len(p.Spools[i].Problems)
	}
	buf.Grow(size)
	err := pages.ExecuteTemplate(buf, "head", p)
	if err == nil && !p.One && len(p.Spools) > 0 {
		summaryRows(html{buf}, p.Spools)
		err = pages.ExecuteTemplate(buf, "summary-end", p)
	}
	for i := range p.Spools {
		if err == nil {
			spoolSection(html{buf}, &p.Spools[i])
		}
	}
	if err == nil {
		err = pages.ExecuteTemplate(buf, "foot", p)
	}
	if err != nil {
		http.Error(w, "rendering the page failed", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.Write(buf.Bytes())
}

func (c *Console) serveAPI(w http.ResponseWriter, _ *http.Request) {
	doc := spoolsJSON{Spools: []spoolJSON{}}
	for _, s := range c.snapshots() {
		if s != nil {
			doc.Spools = append(doc.Spools, newSpoolJSON(s))
		}
	}
	writeJSON(w, doc)
}

func (c *Console) serveAPISpool(w http.ResponseWriter, r *http.Request) {
	s := c.lookup(r, "/api/v1/spools/")
	if s == nil {
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"error":"no such spool"}`+"\n")
		return
	}
	writeJSON(w, newSpoolJSON(s))
}

func writeJSON(w http.ResponseWriter, doc any) {
	b, err := json.Marshal(doc)
	if err != nil {
		http.Error(w, "encoding JSON failed", http.StatusInternalServerError)
		return
	}
	b = append(termsafe.JSON(b), '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.Write(b)
}

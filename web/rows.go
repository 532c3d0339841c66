package web

import (
	"bytes"
	"html/template"
	"strconv"
)

// The parts of a page that repeat per spool, queue and problem are
// written here, straight into the response's buffer, rather than by the
// template: an action of html/template costs one to three microseconds
// (reflection, contextual escaping), and the overview of 100 spools of 10
// queues has some 30,000 cells; written here it renders about ten times
// faster (BenchmarkRender). The templates keep the page's frame. Every string goes through html/template's own
// escaper (after termsafe.Name), in element content or a double-quoted
// attribute, where that escaper is the one the template would apply;
// links are built by spoolPath and path-escaped. TestPagesEscape checks
// the result.
type html struct{ b *bytes.Buffer }

// raw appends trusted markup.
func (h html) raw(s string) { h.b.WriteString(s) }

// text appends s escaped for element content or a quoted attribute
// (HTMLEscapeString returns s itself when it has nothing to escape).
func (h html) text(s string) { h.b.WriteString(template.HTMLEscapeString(s)) }

func (h html) int(n int64) { h.b.Write(strconv.AppendInt(h.b.AvailableBuffer(), n, 10)) }

func (h html) uint(n uint64) { h.b.Write(strconv.AppendUint(h.b.AvailableBuffer(), n, 10)) }

// span appends text with a tooltip.
func (h html) span(title, text string) {
	h.raw(`<span title="`)
	h.text(title)
	h.raw(`">`)
	h.text(text)
	h.raw(`</span>`)
}

// ageCell appends a cell with an age and its time as a tooltip, or a dash.
func (h html) ageCell(age, at string) {
	if age == "" {
		h.raw(`<td class="n">–</td>`)
		return
	}
	h.raw(`<td class="n">`)
	h.span(at, age)
	h.raw(`</td>`)
}

// summaryRows renders the rows of the overview's table of spools: name (a link to
// its page), state, queues, waiting, checked out, alerting, pending, and
// when its statistics were taken.
func summaryRows(h html, ss []spoolView) {
	for i := range ss {
		s := &ss[i]
		h.raw("\n<tr><td class=\"name\"><a href=\"")
		h.text(s.Link)
		h.raw(`">`)
		h.text(s.Name)
		h.raw(`</a></td><td><span class="state `)
		h.text(s.State)
		h.raw(`">`)
		h.text(s.State)
		h.raw(`</span></td><td class="n">`)
		h.int(int64(len(s.Queues)))
		h.raw(`</td><td class="n">`)
		h.int(int64(s.Waiting))
		h.raw(`</td><td class="n">`)
		h.int(int64(s.CheckedOut))
		if s.Alerting > 0 {
			h.raw(`</td><td class="n alerting">`)
		} else {
			h.raw(`</td><td class="n">`)
		}
		h.int(int64(s.Alerting))
		h.raw(`</td><td class="n">`)
		h.int(int64(s.Pending))
		h.raw(`</td><td>`)
		if s.Checked != "" {
			h.span(s.CheckedAt, s.Checked+" ago")
		}
		h.raw(`</td></tr>`)
	}
}

// spoolSection renders one spool: its state, details (on its own page),
// queues with their qshape rows, problems, and last events.
func spoolSection(h html, s *spoolView) {
	h.raw("<section class=\"spool\">\n<h2><a href=\"")
	h.text(s.Link)
	h.raw(`">`)
	h.text(s.Name)
	h.raw(`</a> <span class="state `)
	h.text(s.State)
	h.raw(`">`)
	h.text(s.State)
	h.raw(`</span>`)
	if s.Watching {
		h.raw(` <span class="note">inotify</span>`)
	}
	h.raw("</h2>\n<p class=\"dir\"><code>")
	h.text(s.Dir)
	h.raw(`</code>`)
	if s.Checked != "" {
		h.raw(` · checked `)
		h.span(s.CheckedAt, s.Checked+" ago")
	}
	h.raw("</p>\n")
	if s.Error != "" {
		h.raw(`<p class="error">`)
		h.text(s.Error)
		h.raw("</p>\n")
	}
	if s.Details {
		h.details(s)
	}

	h.raw("<h3>Queues</h3>\n")
	if len(s.Queues) == 0 {
		h.raw("<p>No queue.</p>\n")
	} else {
		h.raw(`<table class="queues">` + "\n" + `<thead><tr><th rowspan="2">Queue</th><th class="n" rowspan="2">Waiting</th><th class="n" rowspan="2">Checked out</th><th class="n" rowspan="2">Oldest waiting</th><th class="n" rowspan="2">Oldest checked out</th>`)
		h.raw(shapeHeader)
		h.raw("</thead>\n<tbody>")
		for _, q := range s.Queues {
			h.raw("\n<tr><td class=\"name\">")
			h.text(q.Name)
			h.raw(`</td><td class="n">`)
			h.int(int64(q.Waiting))
			h.raw(`</td><td class="n">`)
			h.int(int64(q.CheckedOut))
			h.raw(`</td>`)
			h.ageCell(q.Oldest, q.OldestAt)
			h.ageCell(q.OldestCheckedOut, q.OldestCheckedAt)
			for _, n := range q.Shape {
				h.raw(`<td class="n shape">`)
				h.uint(n)
				h.raw(`</td>`)
			}
			h.raw(`</tr>`)
		}
		h.raw("\n</tbody>\n</table>\n")
	}

	h.raw(`<h3>Problems: `)
	h.int(int64(s.Alerting))
	h.raw(` alerting, `)
	h.int(int64(s.Pending))
	h.raw(" pending</h3>\n")
	if len(s.Problems) > 0 {
		h.raw("<table class=\"problems\">\n<thead><tr><th>Kind</th><th>File</th><th class=\"n\">Age</th><th>State</th><th class=\"n\">Sightings</th></tr></thead>\n<tbody>")
		for _, p := range s.Problems {
			state := "pending"
			if p.Alerting {
				state = "alerting"
			}
			h.raw("\n<tr class=\"" + state + `"><td>`)
			h.text(p.Kind)
			h.raw(`</td><td class="name"><code>`)
			h.text(p.Path)
			h.raw(`</code></td>`)
			h.ageCell(p.Age, p.MTime)
			h.raw(`<td>` + state + `</td><td class="n">`)
			h.int(int64(p.Sightings))
			h.raw(`</td></tr>`)
		}
		h.raw("\n</tbody>\n</table>\n")
	}
	if s.MoreProblems > 0 {
		h.raw(`<p>And `)
		h.int(int64(s.MoreProblems))
		h.raw(` more: <a href="`)
		if s.Details {
			h.text(s.APILink)
			h.raw(`">all of them as JSON</a>.</p>` + "\n")
		} else {
			h.text(s.Link)
			h.raw(`">the spool's page</a>.</p>` + "\n")
		}
	}

	h.raw("<h3>Last events</h3>\n<table class=\"events\">\n")
	h.event("Start", s.LastStart)
	h.event("End", s.LastEnd)
	h.raw("</table>\n</section>\n")
}

func (h html) event(what string, e *eventView) {
	h.raw(`<tr><th>` + what + `</th><td>`)
	if e == nil {
		h.raw(`none since the agent started`)
	} else {
		h.text(e.Kind)
		h.raw(` <code>`)
		h.text(e.Path)
		h.raw(`</code>, `)
		h.span(e.Time, e.Age+" ago")
	}
	h.raw("</td></tr>\n")
}

// details renders a spool page's statistics.
func (h html) details(s *spoolView) {
	cell := func(label string, n int64) {
		h.raw(`<th>` + label + `</th><td class="n">`)
		h.int(n)
		h.raw(`</td>`)
	}
	h.raw("<table class=\"details\">\n<tr>")
	cell("Registry entries", int64(s.RegistryEntries))
	cell("Temporary files", int64(s.TmpFiles))
	if s.DataBytesPending {
		h.raw(`<th>Payload bytes</th><td class="n">counting…</td>`)
	} else {
		cell("Payload bytes", s.DataBytes)
	}
	h.raw("</tr>\n<tr>")
	cell("Checks", int64(s.Cycles))
	cell("Failed checks", int64(s.FailedCycles))
	h.raw(`<th>Last check took</th><td class="n">`)
	h.text(s.CycleDuration)
	h.raw("</td></tr>\n<tr><th>Last successful check</th><td colspan=\"5\">")
	if s.LastSuccess == "" {
		h.raw("never")
	} else {
		h.text(s.LastSuccess)
	}
	h.raw("</td></tr>\n</table>\n")
}

// shapeHeader ends the queue table's first header row with the qshape
// columns' title and gives the second: T, 5m ... 1280m+.
var shapeHeader = func() string {
	h := html{b: new(bytes.Buffer)}
	h.raw(`<th class="shape" colspan="` + strconv.Itoa(len(shapeLabels)) + `">Waiting entries by age (qshape)</th></tr>` + "\n<tr>")
	for _, l := range shapeLabels {
		h.raw(`<th class="n shape">`)
		h.text(l)
		h.raw(`</th>`)
	}
	h.raw(`</tr>`)
	return h.b.String()
}()

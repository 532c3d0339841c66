package web

import (
	"math"
	"net/url"
	"strconv"
	"time"

	buckets "github.com/spool-agent/spool-agent/internal/qshape"
	"github.com/spool-agent/spool-agent/internal/termsafe"
	"github.com/spool-agent/spool-agent/monitor"
)

// shapeBounds are the upper bounds of the qshape buckets (package qshape,
// as `spool-agent shape` has them), then a last bound no age exceeds, whose
// count is the total.
var shapeBounds = append(buckets.Bounds(), time.Duration(math.MaxInt64))

// shapeLabels are the qshape columns: T (the total), then qshape.Labels.
var shapeLabels = append([]string{"T"}, buckets.Labels()...)

// qshape returns a queue's qshape row (see shapeLabels) from the
// snapshot's age index, without touching the disk.
func qshape(q *monitor.QueueStats, now time.Time) []uint64 {
	cum, _ := q.AgeBuckets(now, shapeBounds)
	total := cum[len(cum)-1]
	row := make([]uint64, 0, len(cum)+1)
	row = append(row, total)
	var prev uint64
	for _, c := range cum[:len(cum)-1] {
		row = append(row, c-prev)
		prev = c
	}
	return append(row, total-prev)
}

// problemState is a current problem with its debouncing state.
type problemState struct {
	monitor.Problem
	Alerting  bool
	Sightings int // consecutive cycles the problem has been seen
}

// currentProblems lists a snapshot's problems: those the debouncing tracks
// (with their count and whether they alert; this includes alerting
// problems of a part of the spool the last cycle could not read), and
// those the last cycle found that it does not track (found in a part that
// could not be read in full: 0 sightings), sorted by
// monitor.CompareProblems. Both lists come sorted so: a merge.
func currentProblems(s *monitor.Snapshot) []problemState {
	out := make([]problemState, 0, max(len(s.Tracked), len(s.Problems)))
	t, p := s.Tracked, s.Problems
	for len(t) > 0 || len(p) > 0 {
		c := 1
		switch {
		case len(t) == 0:
			c = 1
		case len(p) == 0:
			c = -1
		default:
			c = monitor.CompareProblems(t[0].Problem, p[0])
		}
		switch {
		case c < 0:
			out = append(out, problemState{Problem: t[0].Problem, Alerting: t[0].Alerting, Sightings: t[0].Count})
			t = t[1:]
		case c == 0:
			out = append(out, problemState{Problem: t[0].Problem, Alerting: t[0].Alerting, Sightings: t[0].Count})
			t, p = t[1:], p[1:]
		default:
			out = append(out, problemState{Problem: p[0]})
			p = p[1:]
		}
	}
	return out
}

// spoolPath is the console page of the spool called name.
func spoolPath(name string) string { return "/spools/" + url.PathEscape(name) }

// The views below are what the templates show: every string from a spool
// already passed through termsafe.Name, every number ready to print.

type pageView struct {
	Title   string
	Version string
	Now     string // RFC 3339
	Spools  []spoolView
	One     bool // a spool's own page
}

type spoolView struct {
	Name, Link, Dir string
	APILink         string
	State           string // up, down, starting
	Error           string
	Watching        bool
	Checked         string // age of the snapshot's statistics
	CheckedAt       string // RFC 3339
	Queues          []queueView
	Waiting         int // in every queue
	CheckedOut      int // in every queue
	Problems        []problemView
	MoreProblems    int // problems not shown
	Alerting        int
	Pending         int
	LastStart       *eventView
	LastEnd         *eventView

	// The spool page's details.
	Details                   bool
	RegistryEntries, TmpFiles int
	DataBytes                 int64
	DataBytesPending          bool // the sizes after a full scan are still being read
	Cycles, FailedCycles      uint64
	CycleDuration             string
	LastSuccess               string
}

type queueView struct {
	Name                      string
	Waiting, CheckedOut       int
	Oldest, OldestCheckedOut  string // ages; "" when none
	OldestAt, OldestCheckedAt string // RFC 3339
	Shape                     []uint64
}

type problemView struct {
	Kind, Path string
	Age, MTime string // "" when the mtime is unknown
	Alerting   bool
	Sightings  int
}

type eventView struct {
	Age, Time string
	Kind      string
	Path      string
}

func (c *Console) spoolView(s *monitor.Snapshot, now time.Time, maxProblems int, details bool) spoolView {
	v := spoolView{
		Name:     termsafe.Name(s.Name),
		Link:     spoolPath(s.Name),
		APILink:  "/api/v1" + spoolPath(s.Name),
		Dir:      termsafe.Name(s.Dir),
		Error:    termsafe.Name(s.LastError),
		Watching: s.Watching,
	}
	switch {
	case s.Up:
		v.State = "up"
	case s.Cycles == 0 && s.LastError == "":
		v.State = "starting"
	default:
		v.State = "down"
	}
	if !s.Time.IsZero() {
		v.Checked, v.CheckedAt = age(now, s.Time), rfc3339(s.Time)
	}
	v.Queues = make([]queueView, len(s.Queues))
	for i := range s.Queues {
		q := &s.Queues[i]
		qv := queueView{Name: termsafe.Name(q.Queue), Waiting: q.Entries, CheckedOut: q.CheckedOut, Shape: qshape(q, now)}
		if !q.OldestEntry.IsZero() {
			qv.Oldest, qv.OldestAt = age(now, q.OldestEntry), rfc3339(q.OldestEntry)
		}
		if !q.OldestCheckedOut.IsZero() {
			qv.OldestCheckedOut, qv.OldestCheckedAt = age(now, q.OldestCheckedOut), rfc3339(q.OldestCheckedOut)
		}
		v.Queues[i] = qv
		v.Waiting += q.Entries
		v.CheckedOut += q.CheckedOut
	}
	ps := currentProblems(s)
	for _, p := range ps {
		if p.Alerting {
			v.Alerting++
		} else {
			v.Pending++
		}
	}
	shown := ps
	if len(shown) > maxProblems {
		shown = shown[:maxProblems]
	}
	v.MoreProblems = len(ps) - len(shown)
	v.Problems = make([]problemView, len(shown))
	for i, p := range shown {
		pv := problemView{Kind: termsafe.Name(string(p.Kind)), Path: termsafe.Name(problemPath(p.Problem)), Alerting: p.Alerting, Sightings: p.Sightings}
		if !p.ModTime.IsZero() {
			pv.Age, pv.MTime = age(now, p.ModTime), rfc3339(p.ModTime)
		}
		v.Problems[i] = pv
	}
	start, end := c.events.Last(s.Name)
	v.LastStart, v.LastEnd = newEventView(start, now), newEventView(end, now)
	if details {
		v.Details = true
		v.RegistryEntries, v.TmpFiles, v.DataBytes, v.DataBytesPending = s.RegistryEntries, s.TmpFiles, s.DataBytes, s.DataBytesPending
		v.Cycles, v.FailedCycles = s.Cycles, s.FailedCycles
		v.CycleDuration = s.CycleDuration.Round(time.Microsecond).String()
		if !s.LastSuccess.IsZero() {
			v.LastSuccess = rfc3339(s.LastSuccess)
		}
	}
	return v
}

// problemPath is the problem's file, relative to the spool, and for a
// duplicated entry every place that holds it.
func problemPath(p monitor.Problem) string {
	if p.Kind != monitor.KindDuplicated || len(p.Dirs) == 0 {
		return p.Path()
	}
	s := p.Path() + " in"
	for _, d := range p.Dirs {
		s += " " + d.Path("")
	}
	return s
}

func newEventView(ev *monitor.Event, now time.Time) *eventView {
	if ev == nil {
		return nil
	}
	return &eventView{Age: age(now, ev.Time), Time: rfc3339(ev.Time), Kind: termsafe.Name(string(ev.Problem.Kind)), Path: termsafe.Name(problemPath(ev.Problem))}
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// age formats now-t for a person: 42s, 7m05s, 3h07m, 2d03h; a time in
// the future counts as 0s.
func age(now, t time.Time) string {
	d := max(now.Sub(t), 0)
	s := int64(d / time.Second)
	switch {
	case s < 60:
		return strconv.FormatInt(s, 10) + "s"
	case s < 3600:
		return strconv.FormatInt(s/60, 10) + "m" + pad2(s%60) + "s"
	case s < 48*3600:
		return strconv.FormatInt(s/3600, 10) + "h" + pad2(s/60%60) + "m"
	}
	return strconv.FormatInt(s/86400, 10) + "d" + pad2(s/3600%24) + "h"
}

func pad2(n int64) string {
	if n < 10 {
		return "0" + strconv.FormatInt(n, 10)
	}
	return strconv.FormatInt(n, 10)
}

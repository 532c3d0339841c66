package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/spool-agent/spool-agent/internal/termsafe"
	"github.com/spool-agent/spool-agent/monitor"
	"github.com/spool-agent/spool-agent/repair"
)

// RepairCmd repairs what fsck reports, with fsck's limits, never deleting
// an entry that may have been acknowledged (see package repair).
type RepairCmd struct {
	Dir string `arg:"" help:"The spool directory, or the name of a spool of the --config file (then repaired with the limits the agent gives it, as fsck checks it; limit flags given here win)."`
	LimitFlags
	OutputFlag
	Apply           bool   `help:"Carry the plan out, print every action, and check again. Without it repair prints its plan and changes nothing."`
	QuarantineQueue string `default:"${quarantine_queue}" placeholder:"QUEUE" help:"The queue that receives entries in doubt, as proper entries (created if missing; default: ${default})."`
	WorkersStopped  bool   `help:"Every worker of another implementation is stopped: stale checkouts younger than 1m may be recovered too, as recover's --workers-stopped."`
}

// actionJSON is an action in repair's JSON output.
type actionJSON struct {
	Action     string `json:"action"`
	Path       string `json:"path"`
	Reason     string `json:"reason"`
	Kind       string `json:"kind,omitempty"` // the problem it repairs
	Dir        string `json:"dir"`
	Queue      string `json:"queue,omitempty"`
	Name       string `json:"name"`
	NameBase64 string `json:"name_base64,omitempty"` // the exact name when it is not UTF-8
	// With --apply: "done", "skipped" (the spool changed since the plan:
	// the next run plans afresh) or "failed", and what happened.
	Result string `json:"result,omitempty"`
	Detail string `json:"detail,omitempty"`
	Error  string `json:"error,omitempty"`
}

func newActionJSON(a repair.Action) actionJSON {
	return actionJSON{Action: string(a.Op), Path: a.Path(), Reason: a.Reason, Kind: string(a.Kind),
		Dir: string(a.Dir.Kind), Queue: a.Dir.Queue, Name: a.Name, NameBase64: termsafe.NameBase64(a.Name)}
}

// leftJSON is a problem that repair leaves, and why.
type leftJSON struct {
	problemJSON
	Reason string `json:"reason"`
}

func resultWord(err error) string {
	switch {
	case err == nil:
		return "done"
	case errors.Is(err, repair.ErrChanged):
		return "skipped"
	}
	return "failed"
}

func (c *RepairCmd) run(ctx context.Context, m *Main) error {
	// A spool of --config by name, with fsck's limits exactly.
	dir, sc, err := m.spoolArg(c.Dir)
	if err != nil {
		return &exitError{code: exitNotCheck, err: err}
	}
	limits, err := (&FsckCmd{LimitFlags: c.LimitFlags}).limitsFor(m, sc)
	if err != nil {
		return &exitError{code: exitNotCheck, err: err}
	}
	c.Dir = dir
	r := &repair.Repairer{Limits: limits, QuarantineQueue: c.QuarantineQueue, WorkersStopped: c.WorkersStopped, Now: m.Now,
		MaxMetadataSize: int64(m.cli.MaxMetadataSize)}
	w := bufio.NewWriter(m.Stdout)
	var done []actionJSON
	report := func(res repair.Result) {
		j := newActionJSON(res.Action)
		j.Result, j.Detail = resultWord(res.Err), res.Detail
		if res.Err != nil {
			j.Error = oneLine(res.Err.Error())
		}
		if c.json() {
			done = append(done, j)
			return
		}
		// One line per action as it is carried out, flushed at once, so
		// that a run killed half-way has said what it did.
		fmt.Fprintf(w, "%s %s %s", j.Result, j.Action, termsafe.Name(j.Path))
		if j.Detail != "" {
			fmt.Fprintf(w, " %s", termsafe.Name(j.Detail))
		}
		if res.Err != nil {
			fmt.Fprintf(w, ": %s\n", termsafe.Line(j.Error))
		} else {
			fmt.Fprintf(w, ": %s\n", j.Reason)
		}
		w.Flush()
	}

	var p *repair.Plan
	if c.Apply {
		p, err = r.Repair(ctx, c.Dir, report)
	} else {
		p, err = r.Plan(ctx, c.Dir)
	}
	if err != nil {
		w.Flush()
		return &exitError{code: exitNotCheck, err: fmt.Errorf("repair %s: could not check: %w", c.Dir, err)}
	}

	if c.json() {
		doc := struct {
			Spool   string       `json:"spool"`
			Apply   bool         `json:"apply"`
			Done    []actionJSON `json:"done,omitempty"` // --apply: what was carried out
			Actions []actionJSON `json:"actions"`        // the plan (after --apply: what is still to do)
			Left    []leftJSON   `json:"left"`           // problems that repair does not repair
		}{Spool: filepath.Clean(c.Dir), Apply: c.Apply, Done: done, Actions: []actionJSON{}, Left: []leftJSON{}}
		for _, a := range p.Actions {
			doc.Actions = append(doc.Actions, newActionJSON(a))
		}
		for _, l := range p.Left {
			doc.Left = append(doc.Left, leftJSON{newProblemJSON(l.Problem), l.Reason})
		}
		if err := m.writeJSON(doc); err != nil {
			return err
		}
	} else {
		prefix := ""
		if c.Apply {
			prefix = "not done " // actions a re-check still plans
		}
		for _, a := range p.Actions {
			fmt.Fprintf(w, "%s%s %s: %s\n", prefix, a.Op, termsafe.Name(a.Path()), a.Reason)
		}
		for _, l := range p.Left {
			fmt.Fprintf(w, "leave %s: %s\n", termsafe.Name(problemLine(l.Problem)), l.Reason)
		}
		fmt.Fprintln(w, summary(c.Dir, c.Apply, p))
		if err := w.Flush(); err != nil {
			return err
		}
	}
	if len(p.Left) > 0 || c.Apply && len(p.Actions) > 0 {
		return &exitError{code: exitFailure}
	}
	return nil
}

// problemLine is a problem as fsck prints it, without the mtime.
func problemLine(p monitor.Problem) string {
	p.ModTime = time.Time{}
	return p.String()
}

func plural(n int, one string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %ss", n, one)
}

func summary(dir string, apply bool, p *repair.Plan) string {
	d := termsafe.Name(filepath.Clean(dir))
	switch {
	case !apply && len(p.Actions) == 0 && len(p.Left) == 0:
		return fmt.Sprintf("repair %s: nothing to do, no problems", d)
	case !apply:
		s := fmt.Sprintf("repair %s: %s planned (run with --apply to carry them out)", d, plural(len(p.Actions), "action"))
		if len(p.Left) > 0 {
			s += fmt.Sprintf("; %s left as they are", plural(len(p.Left), "problem"))
		}
		return s
	case len(p.Actions) == 0 && len(p.Left) == 0:
		return fmt.Sprintf("repair %s: no problems left", d)
	case len(p.Actions) == 0:
		return fmt.Sprintf("repair %s: %s left as they are", d, plural(len(p.Left), "problem"))
	}
	return fmt.Sprintf("repair %s: %s not done, %s left as they are", d, plural(len(p.Actions), "action"), plural(len(p.Left), "problem"))
}

package main

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"strings"
	"time"

	"github.com/spool-agent/spool-agent/internal/termsafe"
	"github.com/spool-agent/spool-agent/monitor"
)

// FsckCmd checks a spool once.
type FsckCmd struct {
	Dir string `arg:"" help:"The spool directory, or the name of a spool of the --config file (then checked with the limits the agent gives it; limit flags given here win)."`
	LimitFlags
	OutputFlag
	QuietFlag
}

// problemJSON is a problem in fsck's JSON output.
type problemJSON struct {
	Kind  string `json:"kind"`
	Dir   string `json:"dir"`
	Queue string `json:"queue,omitempty"`
	Name  string `json:"name"`
	// NameBase64 is the exact name when it is not UTF-8 (see entryJSON).
	NameBase64 string    `json:"name_base64,omitempty"`
	MTime      string    `json:"mtime,omitempty"` // RFC 3339; absent when unknown
	Dirs       []dirJSON `json:"dirs,omitempty"`  // duplicated: every directory that holds the name
}

type dirJSON struct {
	Dir   string `json:"dir"`
	Queue string `json:"queue,omitempty"`
}

func newProblemJSON(p monitor.Problem) problemJSON {
	j := problemJSON{Kind: string(p.Kind), Dir: string(p.Dir.Kind), Queue: p.Dir.Queue, Name: p.Name, NameBase64: termsafe.NameBase64(p.Name)}
	if !p.ModTime.IsZero() {
		j.MTime = p.ModTime.UTC().Format(time.RFC3339Nano)
	}
	for _, d := range p.Dirs {
		j.Dirs = append(j.Dirs, dirJSON{Dir: string(d.Kind), Queue: d.Queue})
	}
	return j
}

func (c *FsckCmd) run(_ context.Context, m *Main) error {
	dir, sc, err := m.spoolArg(c.Dir)
	if err != nil {
		return &exitError{code: exitNotCheck, err: err}
	}
	limits, err := c.limitsFor(m, sc)
	if err != nil {
		return &exitError{code: exitNotCheck, err: err}
	}
	c.Dir = dir
	p := m.startProgress("fsck "+termsafe.Name(c.Dir), 0)
	problems, cerr := monitor.Check(c.Dir, limits, m.Now())
	p.finish()

	if c.json() {
		doc := struct {
			Spool    string        `json:"spool"`
			Problems []problemJSON `json:"problems"`
			Error    string        `json:"error,omitempty"` // why the check is incomplete
		}{Spool: filepath.Clean(c.Dir), Problems: []problemJSON{}}
		for _, pr := range problems {
			doc.Problems = append(doc.Problems, newProblemJSON(pr))
		}
		if cerr != nil {
			doc.Error = oneLine(cerr.Error())
		}
		if err := m.writeJSON(doc); err != nil {
			return err
		}
	} else {
		var b strings.Builder
		for _, pr := range problems {
			b.WriteString(termsafe.Name(pr.String()))
			b.WriteByte('\n')
		}
		if cerr == nil && len(problems) == 0 && !c.Quiet {
			fmt.Fprintf(&b, "fsck %s: no problems\n", termsafe.Name(filepath.Clean(c.Dir)))
		}
		fmt.Fprint(m.Stdout, b.String())
	}
	switch {
	case cerr != nil:
		return &exitError{code: exitNotCheck, err: fmt.Errorf("fsck %s: could not check: %w", c.Dir, cerr)}
	case len(problems) > 0:
		return &exitError{code: exitFailure}
	}
	return nil
}

// limitsFor returns the limits of fsck: the flags' (whose defaults are
// run's), or those of the spool sc that the agent would watch, with the
// limit flags given on the command line over them.
func (c *FsckCmd) limitsFor(m *Main, sc *monitor.Config) (monitor.Limits, error) {
	l, err := c.limits()
	if err != nil || sc == nil {
		return l, err
	}
	out := sc.Limits
	out.MaxQueueAge = maps.Clone(sc.Limits.MaxQueueAge)
	if m.cli.given["max-checked-out-age"] {
		out.MaxCheckedOutAge = l.MaxCheckedOutAge
	}
	if m.cli.given["max-tmp-file-age"] {
		out.MaxTmpFileAge = l.MaxTmpFileAge
	}
	if m.cli.given["max-queue-age"] {
		if out.MaxQueueAge == nil {
			out.MaxQueueAge = map[string]time.Duration{}
		}
		maps.Copy(out.MaxQueueAge, l.MaxQueueAge)
	}
	return out, nil
}

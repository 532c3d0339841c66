package web

import (
	"time"

	"github.com/spool-agent/spool-agent/internal/termsafe"
	"github.com/spool-agent/spool-agent/monitor"
)

// The JSON API's documents. The field names are a contract (issue 16):
// add fields, never rename or drop one.

type spoolsJSON struct {
	Spools []spoolJSON `json:"spools"`
}

type spoolJSON struct {
	Name     string        `json:"name"`
	Dir      string        `json:"dir"`
	Up       bool          `json:"up"`
	Queues   []queueJSON   `json:"queues"`
	Problems []problemJSON `json:"problems"`
}

type queueJSON struct {
	Name string `json:"name"`
	// NameBase64 is the exact name when it is not UTF-8 (name then has
	// U+FFFD for the bad bytes), as in the CLI's JSON.
	NameBase64           string  `json:"name_base64,omitempty"`
	Entries              int     `json:"entries"`
	CheckedOut           int     `json:"checked_out"`
	OldestEntryTimestamp *string `json:"oldest_entry_timestamp"` // RFC 3339; null for an empty queue
}

type problemJSON struct {
	Kind        string    `json:"kind"`
	Dir         string    `json:"dir"`
	Queue       string    `json:"queue"` // "" outside queue and checkout directories
	QueueBase64 string    `json:"queue_base64,omitempty"`
	Name        string    `json:"name"`
	NameBase64  string    `json:"name_base64,omitempty"`
	MTime       *string   `json:"mtime"` // RFC 3339; null when unknown
	Alerting    bool      `json:"alerting"`
	Sightings   int       `json:"sightings"`      // consecutive cycles the problem has been seen
	Dirs        []dirJSON `json:"dirs,omitempty"` // duplicated: every directory that holds the name
}

type dirJSON struct {
	Dir         string `json:"dir"`
	Queue       string `json:"queue,omitempty"`
	QueueBase64 string `json:"queue_base64,omitempty"`
}

// rfc3339Nano keeps the nanoseconds (RFC 3339 allows a fraction), so that
// a timestamp compares exactly with the same one in /metrics.
func rfc3339Nano(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := t.UTC().Format(time.RFC3339Nano)
	return &s
}

func newSpoolJSON(s *monitor.Snapshot) spoolJSON {
	j := spoolJSON{Name: s.Name, Dir: s.Dir, Up: s.Up, Queues: make([]queueJSON, len(s.Queues))}
	for i := range s.Queues {
		q := &s.Queues[i]
		j.Queues[i] = queueJSON{
			Name: q.Queue, NameBase64: termsafe.NameBase64(q.Queue),
			Entries: q.Entries, CheckedOut: q.CheckedOut,
			OldestEntryTimestamp: rfc3339Nano(q.OldestEntry),
		}
	}
	ps := currentProblems(s)
	j.Problems = make([]problemJSON, len(ps))
	for i, p := range ps {
		pj := problemJSON{
			Kind: string(p.Kind), Dir: string(p.Dir.Kind),
			Queue: p.Dir.Queue, QueueBase64: termsafe.NameBase64(p.Dir.Queue),
			Name: p.Name, NameBase64: termsafe.NameBase64(p.Name),
			MTime: rfc3339Nano(p.ModTime), Alerting: p.Alerting, Sightings: p.Sightings,
		}
		for _, d := range p.Dirs {
			pj.Dirs = append(pj.Dirs, dirJSON{Dir: string(d.Kind), Queue: d.Queue, QueueBase64: termsafe.NameBase64(d.Queue)})
		}
		j.Problems[i] = pj
	}
	return j
}

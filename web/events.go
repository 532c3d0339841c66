package web

import (
	"sync"

	"github.com/spool-agent/spool-agent/monitor"
)

// Events remembers, per spool, the last Start and the last End event the
// collector reported. A snapshot counts events (EventsTotal) but does not
// carry them, so the console keeps the last ones in memory from the
// collector's event callback: nothing is read from disk, and after a
// restart the console shows none until the next event. Safe for
// concurrent use; the zero value is not usable, call NewEvents.
type Events struct {
	mu   sync.Mutex
	last map[string]*lastEvents
}

type lastEvents struct {
	start, end *monitor.Event
}

// NewEvents returns an empty Events.
func NewEvents() *Events { return &Events{last: map[string]*lastEvents{}} }

// Record keeps ev as spool's last event of its type. Call it from the
// collector's onEvent callback.
func (e *Events) Record(spool string, ev monitor.Event) {
	if e == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	l := e.last[spool]
	if l == nil {
		l = &lastEvents{}
		e.last[spool] = l
	}
	switch ev.Type {
	case monitor.Start:
		l.start = &ev
	case monitor.End:
		l.end = &ev
	}
}

// Last returns spool's last Start and last End events (nil when none).
func (e *Events) Last(spool string) (start, end *monitor.Event) {
	if e == nil {
		return nil, nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if l := e.last[spool]; l != nil {
		return l.start, l.end
	}
	return nil, nil
}

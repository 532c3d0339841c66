package otelexporter

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/log"

	"github.com/spool-agent/spool-agent/internal/termsafe"
	"github.com/spool-agent/spool-agent/monitor"
)

// Event names of the log records (a record with an event name is an OTel event).
const (
	EventNameStart = "spool.problem.start"
	EventNameEnd   = "spool.problem.end"
)

// EventLogger turns monitor events into OTel log records.
type EventLogger struct {
	logger log.Logger
}

// NewEventLogger returns an EventLogger emitting through provider.
func NewEventLogger(provider log.LoggerProvider) *EventLogger {
	return &EventLogger{logger: provider.Logger(ScopeName)}
}

// DirPath returns d's path relative to the spool directory as it is on
// disk: .registry, .tmp, .data, QUEUE, QUEUE/.checkout, or "" for the root.
func DirPath(d monitor.Dir) string {
	switch d.Kind {
	case monitor.DirRegistry:
		return ".registry"
	case monitor.DirTmp:
		return ".tmp"
	case monitor.DirData:
		return ".data"
	case monitor.DirQueue:
		return d.Queue
	case monitor.DirCheckout:
		return d.Queue + "/.checkout"
	}
	return ""
}

func filePath(d monitor.Dir, name string) string {
	if p := DirPath(d); p != "" {
		return p + "/" + name
	}
	return name
}

// Record builds the log record of one event of spool: severity WARN for
// Start and INFO for End, a one-line human body, and the event's details as
// attributes.
func Record(spool string, ev monitor.Event) log.Record {
	p := ev.Problem
	var r log.Record
	r.SetTimestamp(ev.Time)
	r.SetObservedTimestamp(time.Now())
	where := filePath(p.Dir, p.Name)
	if p.Kind == monitor.KindDuplicated && len(p.Dirs) > 0 {
		paths := make([]string, len(p.Dirs))
		for i, d := range p.Dirs {
			paths[i] = DirPath(d)
		}
		where = fmt.Sprintf("%s (in %s)", p.Name, strings.Join(paths, ", "))
	}
	// Names from disk go out only as valid UTF-8 (termsafe.UTF8): OTLP
	// refuses a batch holding one that is not.
	spool, where = spoolName(spool), termsafe.UTF8(where)
	mtime := p.ModTime.UTC().Format(time.RFC3339Nano)
	if ev.Type == monitor.Start {
		r.SetEventName(EventNameStart)
		r.SetSeverity(log.SeverityWarn)
		r.SetSeverityText("WARN")
		r.SetBody(attribute.StringValue(fmt.Sprintf("spool %s: %s problem started: %s (mtime %s)", spool, p.Kind, where, mtime)))
	} else {
		r.SetEventName(EventNameEnd)
		r.SetSeverity(log.SeverityInfo)
		r.SetSeverityText("INFO")
		r.SetBody(attribute.StringValue(fmt.Sprintf("spool %s: %s problem ended: %s (mtime %s)", spool, p.Kind, where, mtime)))
	}
	attrs := []attribute.KeyValue{
		attribute.String(AttrSpool, spool),
		attribute.String(AttrProblemKind, string(p.Kind)),
		attribute.String(AttrProblemDir, string(p.Dir.Kind)),
		attribute.String(AttrEntryName, termsafe.UTF8(p.Name)),
		attribute.String(AttrEntryMtime, mtime),
		attribute.String(AttrProblemEvent, string(ev.Type)),
	}
	if p.Dir.Queue != "" {
		attrs = append(attrs, attribute.String(AttrQueue, termsafe.UTF8(p.Dir.Queue)))
	}
	if len(p.Dirs) > 0 {
		dirs := make([]string, len(p.Dirs))
		for i, d := range p.Dirs {
			dirs[i] = termsafe.UTF8(DirPath(d))
		}
		attrs = append(attrs, attribute.StringSlice(AttrProblemDirs, dirs))
	}
	r.AddAttributes(attrs...)
	return r
}

// Emit emits the log record of one event of spool.
func (l *EventLogger) Emit(ctx context.Context, spool string, ev monitor.Event) {
	l.logger.Emit(ctx, Record(spool, ev))
}

// spoolName is the configuration's name of a spool as attributes and
// bodies carry it: as it is where valid UTF-8 (the console and the alerts'
// links use it), else escaped (termsafe.UTF8).
func spoolName(name string) string {
	if utf8.ValidString(name) {
		return name
	}
	return termsafe.UTF8(name)
}

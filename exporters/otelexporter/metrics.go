// Package otelexporter exports spool snapshots and problem events to
// OpenTelemetry: the snapshots as observable metric instruments read by one
// callback, each Start and End event as a log record, both sent over OTLP
// (gRPC or HTTP/protobuf) as configured by the standard OTEL_* environment
// variables or by Options. It also fans the agent's own slog logs out to OTel
// logs. exporters/README.md maps every OTel metric to its Prometheus name.
package otelexporter

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/spool-agent/spool-agent/internal/termsafe"
	"github.com/spool-agent/spool-agent/monitor"
)

// ScopeName is the instrumentation scope of the metrics and event logs.
const ScopeName = "github.com/spool-agent/spool-agent/exporters/otelexporter"

// Attribute keys of metrics and log records.
const (
	AttrSpool        = "spool.name"
	AttrQueue        = "spool.queue"
	AttrEntryState   = "spool.entry.state"   // waiting or checked_out
	AttrProblemKind  = "spool.problem.kind"  // too_old, orphaned, ...
	AttrProblemDir   = "spool.problem.dir"   // registry, tmp, data, queue, checkout, root
	AttrProblemEvent = "spool.problem.event" // start or end
	AttrProblemDirs  = "spool.problem.dirs"  // duplicated only: every directory holding the name
	AttrEntryName    = "spool.entry.name"    // the problem file's name
	AttrEntryMtime   = "spool.entry.mtime"   // the problem file's mtime, RFC 3339
)

// Entry states of spool.queue.entries and spool.queue.oldest_entry.timestamp.
const (
	StateWaiting    = "waiting"
	StateCheckedOut = "checked_out"
)

// instruments holds the observable instruments that RegisterMetrics creates.
type instruments struct {
	up, watching                             metric.Int64ObservableGauge
	entries, problems, tmpFiles, registry    metric.Int64ObservableUpDownCounter
	dataSize                                 metric.Int64ObservableUpDownCounter
	oldest, fsckDuration, fsckLastSuccess    metric.Float64ObservableGauge
	arrivals, events, failures, cycles, full metric.Int64ObservableCounter
}

// RegisterMetrics creates spool's observable instruments on meter and
// registers one callback that reads snapshots at each collection, so that
// OTel and Prometheus see the very same snapshots. Unregister the returned
// registration to stop.
func RegisterMetrics(meter metric.Meter, snapshots func() []*monitor.Snapshot) (metric.Registration, error) {
	var in instruments
	var err error
	gauge := func(name, unit, desc string) metric.Int64ObservableGauge {
		g, e := meter.Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
		if e != nil && err == nil {
			err = fmt.Errorf("creating instrument %s: %w", name, e)
		}
		return g
	}
	fgauge := func(name, unit, desc string) metric.Float64ObservableGauge {
		g, e := meter.Float64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
		if e != nil && err == nil {
			err = fmt.Errorf("creating instrument %s: %w", name, e)
		}
		return g
	}
	updown := func(name, unit, desc string) metric.Int64ObservableUpDownCounter {
		c, e := meter.Int64ObservableUpDownCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		if e != nil && err == nil {
			err = fmt.Errorf("creating instrument %s: %w", name, e)
		}
		return c
	}
	counter := func(name, unit, desc string) metric.Int64ObservableCounter {
		c, e := meter.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		if e != nil && err == nil {
			err = fmt.Errorf("creating instrument %s: %w", name, e)
		}
		return c
	}
	in.up = gauge("spool.up", "1", "Whether the last check of the spool could read it (1) or not (0).")
	in.watching = gauge("spool.watching", "1", "Whether the spool is watched through inotify (1) or fully scanned every check (0).")
	in.entries = updown("spool.queue.entries", "{entry}", "Entries of the queue, waiting or checked out (spool.entry.state).")
	in.oldest = fgauge("spool.queue.oldest_entry.timestamp", "s", "Modification time (Unix seconds) of the queue's oldest entry in each state; absent when there is none.")
	in.arrivals = counter("spool.queue.arrivals", "{entry}", "Entries seen arriving in the queue through inotify.")
	in.problems = updown("spool.problems", "{problem}", "Problems now alerting (after debouncing).")
	in.events = counter("spool.problem.events", "{event}", "Problem alerts started and ended.")
	in.fsckDuration = fgauge("spool.fsck.duration", "s", "Duration of the last check of the spool.")
	in.fsckLastSuccess = fgauge("spool.fsck.last_success.timestamp", "s", "When the last successful check finished (Unix seconds); absent before the first.")
	in.failures = counter("spool.fsck.failures", "{cycle}", "Checks of the spool that failed.")
	in.cycles = counter("spool.fsck.cycles", "{cycle}", "Checks of the spool run.")
	in.full = counter("spool.fsck.full_scans", "{scan}", "Checks that listed every directory of the spool.")
	in.tmpFiles = updown("spool.tmp.files", "{file}", "Files in the spool's .tmp directory.")
	in.registry = updown("spool.registry.entries", "{entry}", "Names reserved in the spool's .registry directory.")
	in.dataSize = updown("spool.data.size", "By", "Total size of the spool's payload files in .data.")
	if err != nil {
		return nil, err
	}
	reg, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for _, s := range snapshots() {
			if s != nil {
				in.observe(o, s)
			}
		}
		return nil
	}, in.up, in.watching, in.entries, in.oldest, in.arrivals, in.problems, in.events,
		in.fsckDuration, in.fsckLastSuccess, in.failures, in.cycles, in.full, in.tmpFiles, in.registry, in.dataSize)
	if err != nil {
		return nil, fmt.Errorf("registering the spool metrics callback: %w", err)
	}
	return reg, nil
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func (in *instruments) observe(o metric.Observer, s *monitor.Snapshot) {
	spool := attribute.String(AttrSpool, spoolName(s.Name))
	only := metric.WithAttributes(spool)
	o.ObserveInt64(in.up, b2i(s.Up), only)
	o.ObserveInt64(in.watching, b2i(s.Watching), only)
	o.ObserveFloat64(in.fsckDuration, s.CycleDuration.Seconds(), only)
	if !s.LastSuccess.IsZero() {
		o.ObserveFloat64(in.fsckLastSuccess, float64(s.LastSuccess.UnixNano())/1e9, only)
	}
	o.ObserveInt64(in.failures, int64(s.FailedCycles), only)
	o.ObserveInt64(in.cycles, int64(s.Cycles), only)
	o.ObserveInt64(in.full, int64(s.FullScans), only)
	o.ObserveInt64(in.tmpFiles, int64(s.TmpFiles), only)
	o.ObserveInt64(in.registry, int64(s.RegistryEntries), only)
	if !s.DataBytesPending { // left out until the sizes after a full scan are read
		o.ObserveInt64(in.dataSize, s.DataBytes, only)
	}

	waiting := attribute.String(AttrEntryState, StateWaiting)
	checkedOut := attribute.String(AttrEntryState, StateCheckedOut)
	for i := range s.Queues {
		q := &s.Queues[i]
		queue := attribute.String(AttrQueue, termsafe.UTF8(q.Queue))
		o.ObserveInt64(in.entries, int64(q.Entries), metric.WithAttributes(spool, queue, waiting))
		o.ObserveInt64(in.entries, int64(q.CheckedOut), metric.WithAttributes(spool, queue, checkedOut))
		if !q.OldestEntry.IsZero() {
			o.ObserveFloat64(in.oldest, float64(q.OldestEntry.UnixNano())/1e9, metric.WithAttributes(spool, queue, waiting))
		}
		if !q.OldestCheckedOut.IsZero() {
			o.ObserveFloat64(in.oldest, float64(q.OldestCheckedOut.UnixNano())/1e9, metric.WithAttributes(spool, queue, checkedOut))
		}
		o.ObserveInt64(in.arrivals, int64(q.Arrivals), metric.WithAttributes(spool, queue))
	}

	// Problems: one point per (kind, dir, queue) alerting, and a zero point
	// with only the kind for every kind without any (the Prometheus scheme,
	// with absent attributes instead of empty labels).
	type key struct {
		kind  monitor.Kind
		dir   monitor.DirKind
		queue string
	}
	counts := make(map[key]int64)
	kinds := make(map[monitor.Kind]bool)
	for _, p := range s.Alerting {
		counts[key{p.Kind, p.Dir.Kind, p.Dir.Queue}]++
		kinds[p.Kind] = true
	}
	for k, n := range counts {
		attrs := []attribute.KeyValue{spool, attribute.String(AttrProblemKind, string(k.kind)), attribute.String(AttrProblemDir, string(k.dir))}
		if k.queue != "" {
			attrs = append(attrs, attribute.String(AttrQueue, termsafe.UTF8(k.queue)))
		}
		o.ObserveInt64(in.problems, n, metric.WithAttributes(attrs...))
	}
	for _, kind := range monitor.Kinds() {
		if !kinds[kind] {
			o.ObserveInt64(in.problems, 0, metric.WithAttributes(spool, attribute.String(AttrProblemKind, string(kind))))
		}
		byType := s.EventsTotal[kind]
		for _, t := range []monitor.EventType{monitor.Start, monitor.End} {
			o.ObserveInt64(in.events, int64(byType[t]), metric.WithAttributes(spool,
				attribute.String(AttrProblemKind, string(kind)), attribute.String(AttrProblemEvent, string(t))))
		}
	}
}

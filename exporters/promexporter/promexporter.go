// Package promexporter exposes spool snapshots to Prometheus.
//
// Exporter is a prometheus.Collector that builds constant metrics afresh in
// every Collect from the latest monitor snapshots, as the exporter guide
// recommends: there are no long-lived metric vectors to hold stale label
// values, and a scrape never touches the disk.
//
// The series and their labels are a public interface that dashboards and
// alert rules depend on; exporters/README.md lists them.
package promexporter

import (
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spool-agent/spool-agent/internal/termsafe"
	"github.com/spool-agent/spool-agent/monitor"
)

// ageBuckets are the upper bounds of spool_queue_entry_age_seconds:
// minute, hour and day boundaries, as Postfix queue exporters use. An array,
// so that nothing outside can shorten it under a running exporter.
var ageBuckets = [...]time.Duration{
	time.Minute,
	5 * time.Minute,
	10 * time.Minute,
	30 * time.Minute,
	time.Hour,
	2 * time.Hour,
	6 * time.Hour,
	12 * time.Hour,
	24 * time.Hour,
	48 * time.Hour,
	7 * 24 * time.Hour,
}

// AgeBuckets returns the upper bounds of spool_queue_entry_age_seconds'
// buckets (without +Inf); the slice is the caller's own.
func AgeBuckets() []time.Duration {
	return slices.Clone(ageBuckets[:])
}

// Options configure an Exporter.
type Options struct {
	// Version and Revision label spool_agent_build_info.
	Version, Revision string
	// Now is the scrape time the entry ages are computed at; nil means time.Now.
	Now func() time.Time
}

// Exporter is a prometheus.Collector of spool snapshots.
type Exporter struct {
	snapshots func() []*monitor.Snapshot
	now       func() time.Time
	version   string
	revision  string
	spare     atomic.Pointer[textSink] // WriteText's buffers, kept between scrapes
	// ageBounds is the buckets' bounds plus a last bound no age exceeds,
	// whose cumulative count is the histogram's total count; ageLe and
	// ageLeText are the bounds' le labels for Collect and WriteText (with
	// "+Inf" last). All are computed in New and never change.
	ageBounds []time.Duration
	ageLe     []float64
	ageLeText []string
	// kinds are the problem kinds zero-filled in every scrape
	// (monitor.Kinds, fetched once).
	kinds []monitor.Kind
}

// family describes one metric family: its client_golang descriptor and
// what the text writer needs (client_golang keeps a Desc's parts private).
type family struct {
	name, help string
	typ        prometheus.ValueType // GaugeValue, CounterValue, or UntypedValue for the histogram
	labels     []string
	order      []int // indexes of labels sorted by name, the exposition's order
	desc       *prometheus.Desc
	index      int // position in families
}

var families []*family

func newFamily(name, help string, typ prometheus.ValueType, labels ...string) *family {
	f := &family{name: name, help: help, typ: typ, labels: labels,
		desc: prometheus.NewDesc(name, help, labels, nil), index: len(families)}
	for i := range labels {
		f.order = append(f.order, i)
	}
	slices.SortFunc(f.order, func(a, b int) int { return strings.Compare(labels[a], labels[b]) })
	families = append(families, f)
	return f
}

// The families of every series; their names and labels are the public
// interface. Their order is the order of the text exposition.
var (
	famBuildInfo = newFamily("spool_agent_build_info",
		"A constant 1 labelled with the agent's version, revision and Go version.", prometheus.GaugeValue, "version", "revision", "goversion")
	famUp = newFamily("spool_up",
		"Whether the last check of the spool could read it (1) or not (0).", prometheus.GaugeValue, "spool")
	famWatching = newFamily("spool_watching",
		"Whether the spool is watched through inotify (1) or fully scanned every check (0).", prometheus.GaugeValue, "spool")
	famFsckDuration = newFamily("spool_fsck_duration_seconds",
		"Duration of the last check of the spool.", prometheus.GaugeValue, "spool")
	famFsckLastSuccess = newFamily("spool_fsck_last_success_timestamp_seconds",
		"When the last successful check of the spool finished; absent before the first.", prometheus.GaugeValue, "spool")
	famFsckFailures = newFamily("spool_fsck_failures_total",
		"Checks of the spool that failed.", prometheus.CounterValue, "spool")
	famFsckCycles = newFamily("spool_fsck_cycles_total",
		"Checks of the spool run, successful or not.", prometheus.CounterValue, "spool")
	famFullScans = newFamily("spool_full_scans_total",
		"Checks that listed every directory of the spool (rather than relying on inotify).", prometheus.CounterValue, "spool")
	famTmpFiles = newFamily("spool_tmp_files",
		"Files in the spool's .tmp directory.", prometheus.GaugeValue, "spool")
	famRegistryEntries = newFamily("spool_registry_entries",
		"Names reserved in the spool's .registry directory.", prometheus.GaugeValue, "spool")
	famDataBytes = newFamily("spool_data_bytes",
		"Total size of the spool's payload files in .data.", prometheus.GaugeValue, "spool")
	famQueueEntries = newFamily("spool_queue_entries",
		"Entries waiting in the queue.", prometheus.GaugeValue, "spool", "queue")
	famQueueCheckedOut = newFamily("spool_queue_checked_out_entries",
		"Entries of the queue checked out by a worker.", prometheus.GaugeValue, "spool", "queue")
	famQueueOldest = newFamily("spool_queue_oldest_entry_timestamp_seconds",
		"Modification time of the oldest entry waiting in the queue; absent when the queue is empty.", prometheus.GaugeValue, "spool", "queue")
	famQueueOldestCheckedOut = newFamily("spool_queue_oldest_checked_out_timestamp_seconds",
		"Modification time of the oldest checked-out entry of the queue; absent when none is checked out.", prometheus.GaugeValue, "spool", "queue")
	famQueueArrivals = newFamily("spool_queue_arrivals_total",
		"Entries seen arriving in the queue through inotify since the agent started watching the spool.", prometheus.CounterValue, "spool", "queue")
	famQueueAge = newFamily("spool_queue_entry_age_seconds",
		"Age distribution of the entries waiting in the queue at scrape time (a gauge histogram: use the buckets directly, never rate()).", prometheus.UntypedValue, "spool", "queue")
	famProblems = newFamily("spool_problems",
		"Problems now alerting (after debouncing), by kind and directory; a kind with none has one series with dir=\"\" and queue=\"\" at 0.", prometheus.GaugeValue, "spool", "kind", "dir", "queue")
	famProblemEvents = newFamily("spool_problem_events_total",
		"Problem alerts started and ended since the agent started watching the spool.", prometheus.CounterValue, "spool", "kind", "event")
)

// New returns an Exporter of the snapshots that snapshots returns at each
// scrape (typically collector.Collector.Snapshots, which never touches the disk).
func New(snapshots func() []*monitor.Snapshot, o Options) *Exporter {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	bounds := make([]time.Duration, 0, len(ageBuckets)+1)
	bounds = append(bounds, ageBuckets[:]...)
	bounds = append(bounds, time.Duration(math.MaxInt64))
	le := make([]float64, len(ageBuckets))
	leText := make([]string, len(ageBuckets)+1)
	for i, b := range ageBuckets {
		le[i] = b.Seconds()
		leText[i] = strconv.FormatFloat(b.Seconds(), 'g', -1, 64)
	}
	leText[len(ageBuckets)] = "+Inf"
	return &Exporter{
		snapshots: snapshots,
		now:       now,
		version:   o.Version,
		revision:  o.Revision,
		ageBounds: bounds,
		ageLe:     le,
		ageLeText: leText,
		kinds:     monitor.Kinds(),
	}
}

// Describe implements prometheus.Collector.
func (e *Exporter) Describe(ch chan<- *prometheus.Desc) {
	for _, f := range families {
		ch <- f.desc
	}
}

// Collect implements prometheus.Collector.
func (e *Exporter) Collect(ch chan<- prometheus.Metric) {
	e.visit(metricSink{ch: ch, le: e.ageLe})
}

// sink receives the series of one scrape. Label values come in the
// family's label order.
type sink interface {
	sample(f *family, v float64, lvs lv)
	// histogram gets cumulative counts for the buckets' bounds, then the
	// total count (the +Inf bucket).
	histogram(f *family, cum []uint64, sum float64, lvs lv)
}

// lv holds a series' label values in its family's label order (an array,
// not a slice, so that passing it allocates nothing).
type lv [4]string

// metricSink turns series into client_golang constant metrics.
type metricSink struct {
	ch chan<- prometheus.Metric
	le []float64
}

func (m metricSink) sample(f *family, v float64, lvs lv) {
	m.ch <- prometheus.MustNewConstMetric(f.desc, f.typ, v, lvs[:len(f.labels)]...)
}

func (m metricSink) histogram(f *family, cum []uint64, sum float64, lvs lv) {
	buckets := make(map[float64]uint64, len(m.le))
	for i, le := range m.le {
		buckets[le] = cum[i]
	}
	m.ch <- prometheus.MustNewConstHistogram(f.desc, cum[len(cum)-1], sum, buckets, lvs[:len(f.labels)]...)
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func timestamp(t time.Time) float64 {
	return float64(t.UnixNano()) / 1e9
}

// problemKey groups alerting problems into spool_problems series.
type problemKey struct {
	kind  monitor.Kind
	dir   monitor.DirKind
	queue string
}

// visit sends every series of one scrape to out: the one place that says
// which series exist, for both Collect and WriteText.
func (e *Exporter) visit(out sink) {
	out.sample(famBuildInfo, 1, lv{e.version, e.revision, runtime.Version()})
	now := e.now()
	for _, s := range e.snapshots() {
		if s != nil {
			e.visitSpool(out, s, now)
		}
	}
}

func (e *Exporter) visitSpool(out sink, s *monitor.Snapshot, now time.Time) {
	// Names from disk go into labels only as valid UTF-8 (termsafe.UTF8):
	// one hostile queue name would otherwise fail the whole scrape. The
	// spool's name is the configuration's, kept as it is where valid (the
	// console and the alerts' links use it).
	name := s.Name
	if !utf8.ValidString(name) {
		name = termsafe.UTF8(name)
	}
	out.sample(famUp, boolValue(s.Up), lv{name})
	out.sample(famWatching, boolValue(s.Watching), lv{name})
	out.sample(famFsckDuration, s.CycleDuration.Seconds(), lv{name})
	if !s.LastSuccess.IsZero() {
		out.sample(famFsckLastSuccess, timestamp(s.LastSuccess), lv{name})
	}
	out.sample(famFsckFailures, float64(s.FailedCycles), lv{name})
	out.sample(famFsckCycles, float64(s.Cycles), lv{name})
	out.sample(famFullScans, float64(s.FullScans), lv{name})
	out.sample(famTmpFiles, float64(s.TmpFiles), lv{name})
	out.sample(famRegistryEntries, float64(s.RegistryEntries), lv{name})
	if !s.DataBytesPending { // left out until the sizes after a full scan are read
		out.sample(famDataBytes, float64(s.DataBytes), lv{name})
	}

	for i := range s.Queues {
		q := &s.Queues[i]
		queue := termsafe.UTF8(q.Queue)
		out.sample(famQueueEntries, float64(q.Entries), lv{name, queue})
		out.sample(famQueueCheckedOut, float64(q.CheckedOut), lv{name, queue})
		if !q.OldestEntry.IsZero() {
			out.sample(famQueueOldest, timestamp(q.OldestEntry), lv{name, queue})
		}
		if !q.OldestCheckedOut.IsZero() {
			out.sample(famQueueOldestCheckedOut, timestamp(q.OldestCheckedOut), lv{name, queue})
		}
		out.sample(famQueueArrivals, float64(q.Arrivals), lv{name, queue})
		cum, sum := q.AgeBuckets(now, e.ageBounds)
		out.histogram(famQueueAge, cum, sum, lv{name, queue})
	}

	// spool_problems: one series per (kind, dir, queue) that has alerting
	// problems, and for every kind without any a zero series with empty dir
	// and queue, so that sum by (kind) always has a value.
	var counts map[problemKey]int
	var order []problemKey
	for _, p := range s.Alerting {
		k := problemKey{kind: p.Kind, dir: p.Dir.Kind, queue: p.Dir.Queue}
		if counts == nil {
			counts = make(map[problemKey]int)
		}
		if counts[k] == 0 {
			order = append(order, k)
		}
		counts[k]++
	}
	for _, kind := range e.kinds {
		seen := false
		for _, k := range order {
			if k.kind == kind {
				seen = true
				out.sample(famProblems, float64(counts[k]), lv{name, string(k.kind), string(k.dir), termsafe.UTF8(k.queue)})
			}
		}
		if !seen {
			out.sample(famProblems, 0, lv{name, string(kind), "", ""})
		}
	}
	// Kinds the exporter does not know (a newer monitor) are still exported.
	for _, k := range order {
		if !e.knownKind(k.kind) {
			out.sample(famProblems, float64(counts[k]), lv{name, string(k.kind), string(k.dir), termsafe.UTF8(k.queue)})
		}
	}

	// spool_problem_events_total, zero-filled for every kind and type so that
	// increase() sees the first event.
	for _, kind := range e.kinds {
		byType := s.EventsTotal[kind]
		out.sample(famProblemEvents, float64(byType[monitor.Start]), lv{name, string(kind), string(monitor.Start)})
		out.sample(famProblemEvents, float64(byType[monitor.End]), lv{name, string(kind), string(monitor.End)})
	}
	for kind, byType := range s.EventsTotal {
		if e.knownKind(kind) {
			continue
		}
		out.sample(famProblemEvents, float64(byType[monitor.Start]), lv{name, string(kind), string(monitor.Start)})
		out.sample(famProblemEvents, float64(byType[monitor.End]), lv{name, string(kind), string(monitor.End)})
	}
}

func (e *Exporter) knownKind(k monitor.Kind) bool {
	for _, kk := range e.kinds {
		if kk == k {
			return true
		}
	}
	return false
}

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
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spool-agent/spool-agent/monitor"
)

// AgeBuckets are the upper bounds of spool_queue_entry_age_seconds:
// minute, hour and day boundaries, as Postfix queue exporters use.
var AgeBuckets = []time.Duration{
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
	buildInfo prometheus.Metric
	// ageBounds is AgeBuckets plus a last bound no age exceeds, whose
	// cumulative count is the histogram's total count.
	ageBounds []time.Duration
	ageLe     []float64
}

func newDesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

// The descriptors of every series; their names and labels are the public interface.
var (
	descUp = newDesc("spool_up",
		"Whether the last check of the spool could read it (1) or not (0).", "spool")
	descQueueEntries = newDesc("spool_queue_entries",
		"Entries waiting in the queue.", "spool", "queue")
	descQueueCheckedOut = newDesc("spool_queue_checked_out_entries",
		"Entries of the queue checked out by a worker.", "spool", "queue")
	descQueueOldest = newDesc("spool_queue_oldest_entry_timestamp_seconds",
		"Modification time of the oldest entry waiting in the queue; absent when the queue is empty.", "spool", "queue")
	descQueueOldestCheckedOut = newDesc("spool_queue_oldest_checked_out_timestamp_seconds",
		"Modification time of the oldest checked-out entry of the queue; absent when none is checked out.", "spool", "queue")
	descQueueArrivals = newDesc("spool_queue_arrivals_total",
		"Entries seen arriving in the queue through inotify since the agent started watching the spool.", "spool", "queue")
	descQueueAge = newDesc("spool_queue_entry_age_seconds",
		"Age distribution of the entries waiting in the queue at scrape time (a gauge histogram: use the buckets directly, never rate()).", "spool", "queue")
	descProblems = newDesc("spool_problems",
		"Problems now alerting (after debouncing), by kind and directory; a kind with none has one series with dir=\"\" and queue=\"\" at 0.", "spool", "kind", "dir", "queue")
	descProblemEvents = newDesc("spool_problem_events_total",
		"Problem alerts started and ended since the agent started watching the spool.", "spool", "kind", "event")
	descFsckDuration = newDesc("spool_fsck_duration_seconds",
		"Duration of the last check of the spool.", "spool")
	descFsckLastSuccess = newDesc("spool_fsck_last_success_timestamp_seconds",
		"When the last successful check of the spool finished; absent before the first.", "spool")
	descFsckFailures = newDesc("spool_fsck_failures_total",
		"Checks of the spool that failed.", "spool")
	descFsckCycles = newDesc("spool_fsck_cycles_total",
		"Checks of the spool run, successful or not.", "spool")
	descFullScans = newDesc("spool_full_scans_total",
		"Checks that listed every directory of the spool (rather than relying on inotify).", "spool")
	descWatching = newDesc("spool_watching",
		"Whether the spool is watched through inotify (1) or fully scanned every check (0).", "spool")
	descTmpFiles = newDesc("spool_tmp_files",
		"Files in the spool's .tmp directory.", "spool")
	descRegistryEntries = newDesc("spool_registry_entries",
		"Names reserved in the spool's .registry directory.", "spool")
	descDataBytes = newDesc("spool_data_bytes",
		"Total size of the spool's payload files in .data.", "spool")
	descBuildInfo = newDesc("spool_agent_build_info",
		"A constant 1 labelled with the agent's version, revision and Go version.", "version", "revision", "goversion")
)

var allDescs = []*prometheus.Desc{
	descUp, descQueueEntries, descQueueCheckedOut, descQueueOldest,
	descQueueOldestCheckedOut, descQueueArrivals, descQueueAge, descProblems,
	descProblemEvents, descFsckDuration, descFsckLastSuccess, descFsckFailures,
	descFsckCycles, descFullScans, descWatching, descTmpFiles,
	descRegistryEntries, descDataBytes, descBuildInfo,
}

// New returns an Exporter of the snapshots that snapshots returns at each
// scrape (typically collector.Collector.Snapshots, which never touches the disk).
func New(snapshots func() []*monitor.Snapshot, o Options) *Exporter {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	bounds := make([]time.Duration, 0, len(AgeBuckets)+1)
	bounds = append(bounds, AgeBuckets...)
	bounds = append(bounds, time.Duration(math.MaxInt64))
	le := make([]float64, len(AgeBuckets))
	for i, b := range AgeBuckets {
		le[i] = b.Seconds()
	}
	return &Exporter{
		snapshots: snapshots,
		now:       now,
		buildInfo: prometheus.MustNewConstMetric(descBuildInfo, prometheus.GaugeValue, 1,
			o.Version, o.Revision, runtime.Version()),
		ageBounds: bounds,
		ageLe:     le,
	}
}

// Describe implements prometheus.Collector.
func (e *Exporter) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (e *Exporter) Collect(ch chan<- prometheus.Metric) {
	ch <- e.buildInfo
	now := e.now()
	for _, s := range e.snapshots() {
		if s != nil {
			e.collectSpool(ch, s, now)
		}
	}
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v uint64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
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

func (e *Exporter) collectSpool(ch chan<- prometheus.Metric, s *monitor.Snapshot, now time.Time) {
	name := s.Name
	gauge(ch, descUp, boolValue(s.Up), name)
	gauge(ch, descWatching, boolValue(s.Watching), name)
	gauge(ch, descFsckDuration, s.CycleDuration.Seconds(), name)
	if !s.LastSuccess.IsZero() {
		gauge(ch, descFsckLastSuccess, timestamp(s.LastSuccess), name)
	}
	counter(ch, descFsckFailures, s.FailedCycles, name)
	counter(ch, descFsckCycles, s.Cycles, name)
	counter(ch, descFullScans, s.FullScans, name)
	gauge(ch, descTmpFiles, float64(s.TmpFiles), name)
	gauge(ch, descRegistryEntries, float64(s.RegistryEntries), name)
	gauge(ch, descDataBytes, float64(s.DataBytes), name)

	for i := range s.Queues {
		q := &s.Queues[i]
		gauge(ch, descQueueEntries, float64(q.Entries), name, q.Queue)
		gauge(ch, descQueueCheckedOut, float64(q.CheckedOut), name, q.Queue)
		if !q.OldestEntry.IsZero() {
			gauge(ch, descQueueOldest, timestamp(q.OldestEntry), name, q.Queue)
		}
		if !q.OldestCheckedOut.IsZero() {
			gauge(ch, descQueueOldestCheckedOut, timestamp(q.OldestCheckedOut), name, q.Queue)
		}
		counter(ch, descQueueArrivals, q.Arrivals, name, q.Queue)
		cum, sum := q.AgeBuckets(now, e.ageBounds)
		buckets := make(map[float64]uint64, len(e.ageLe))
		for j, le := range e.ageLe {
			buckets[le] = cum[j]
		}
		ch <- prometheus.MustNewConstHistogram(descQueueAge, cum[len(cum)-1], sum, buckets, name, q.Queue)
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
	for _, kind := range monitor.Kinds {
		seen := false
		for _, k := range order {
			if k.kind == kind {
				seen = true
				gauge(ch, descProblems, float64(counts[k]), name, string(k.kind), string(k.dir), k.queue)
			}
		}
		if !seen {
			gauge(ch, descProblems, 0, name, string(kind), "", "")
		}
	}
	// Kinds the exporter does not know (a newer monitor) are still exported.
	for _, k := range order {
		if !knownKind(k.kind) {
			gauge(ch, descProblems, float64(counts[k]), name, string(k.kind), string(k.dir), k.queue)
		}
	}

	// spool_problem_events_total, zero-filled for every kind and type so that
	// increase() sees the first event.
	for _, kind := range monitor.Kinds {
		byType := s.EventsTotal[kind]
		counter(ch, descProblemEvents, byType[monitor.Start], name, string(kind), string(monitor.Start))
		counter(ch, descProblemEvents, byType[monitor.End], name, string(kind), string(monitor.End))
	}
	for kind, byType := range s.EventsTotal {
		if knownKind(kind) {
			continue
		}
		counter(ch, descProblemEvents, byType[monitor.Start], name, string(kind), string(monitor.Start))
		counter(ch, descProblemEvents, byType[monitor.End], name, string(kind), string(monitor.End))
	}
}

func knownKind(k monitor.Kind) bool {
	for _, kk := range monitor.Kinds {
		if kk == k {
			return true
		}
	}
	return false
}

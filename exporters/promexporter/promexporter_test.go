package promexporter

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spool-agent/spool-agent/internal/testkit"
	"github.com/spool-agent/spool-agent/monitor"
	"github.com/spool-agent/spool-agent/spool"
)

var testNow = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// mailSnapshot is an up spool with two queues, a checkout, alerting problems
// of three kinds and some events.
func mailSnapshot() *monitor.Snapshot {
	return &monitor.Snapshot{
		Name: "mail",
		Dir:  "/var/spool/mail",
		Up:   true,
		Time: testNow,
		Queues: []monitor.QueueStats{
			{Queue: "deferred"},
			{
				Queue:            "outbox",
				Entries:          3,
				CheckedOut:       1,
				OldestEntry:      testNow.Add(-90 * time.Second),
				OldestCheckedOut: testNow.Add(-1500 * time.Millisecond),
				Arrivals:         7,
			},
		},
		RegistryEntries: 4,
		TmpFiles:        2,
		DataBytes:       4096,
		Problems: []monitor.Problem{
			{Kind: monitor.KindOrphaned, Dir: monitor.Dir{Kind: monitor.DirData}, Name: "a"},
		},
		Alerting: []monitor.Problem{
			{Kind: monitor.KindTooOld, Dir: monitor.Dir{Kind: monitor.DirCheckout, Queue: "outbox"}, Name: "b"},
			{Kind: monitor.KindTooOld, Dir: monitor.Dir{Kind: monitor.DirTmp}, Name: "c"},
			{Kind: monitor.KindTooOld, Dir: monitor.Dir{Kind: monitor.DirCheckout, Queue: "outbox"}, Name: "d"},
			{Kind: monitor.KindDuplicated, Dir: monitor.Dir{Kind: monitor.DirRegistry}, Name: "e",
				Dirs: []monitor.Dir{{Kind: monitor.DirQueue, Queue: "outbox"}, {Kind: monitor.DirQueue, Queue: "deferred"}}},
		},
		EventsTotal: map[monitor.Kind]map[monitor.EventType]uint64{
			monitor.KindTooOld:   {monitor.Start: 3, monitor.End: 1},
			monitor.KindOrphaned: {monitor.Start: 2, monitor.End: 2},
		},
		CycleDuration: 250 * time.Millisecond,
		LastSuccess:   testNow.Add(-time.Second),
		Cycles:        12,
		FailedCycles:  1,
		FullScans:     2,
		Watching:      true,
	}
}

// downSnapshot is a spool that has never been read.
func downSnapshot() *monitor.Snapshot {
	return &monitor.Snapshot{
		Name:         "gone",
		Dir:          "/var/spool/gone",
		LastError:    "open /var/spool/gone: no such file or directory",
		Time:         testNow,
		Cycles:       3,
		FailedCycles: 3,
	}
}

func newTestExporter(snaps ...*monitor.Snapshot) *Exporter {
	return New(func() []*monitor.Snapshot { return snaps }, Options{
		Version:  "1.2.3",
		Revision: "abc123",
		Now:      func() time.Time { return testNow },
	})
}

const goldenHelp = `# HELP spool_agent_build_info A constant 1 labelled with the agent's version, revision and Go version.
# TYPE spool_agent_build_info gauge
spool_agent_build_info{goversion="GOVERSION",revision="abc123",version="1.2.3"} 1
`

func TestCollectGolden(t *testing.T) {
	tests := []struct {
		name    string
		snaps   []*monitor.Snapshot
		metrics []string
		want    string
	}{
		{
			name:  "build info only without spools",
			snaps: nil,
			want:  goldenHelp,
		},
		{
			name:    "queues are zero-filled, oldest series only while an entry exists",
			snaps:   []*monitor.Snapshot{mailSnapshot()},
			metrics: []string{"spool_queue_entries", "spool_queue_checked_out_entries", "spool_queue_oldest_entry_timestamp_seconds", "spool_queue_oldest_checked_out_timestamp_seconds", "spool_queue_arrivals_total"},
			want: `# HELP spool_queue_arrivals_total Entries seen arriving in the queue through inotify since the agent started watching the spool.
# TYPE spool_queue_arrivals_total counter
spool_queue_arrivals_total{queue="deferred",spool="mail"} 0
spool_queue_arrivals_total{queue="outbox",spool="mail"} 7
# HELP spool_queue_checked_out_entries Entries of the queue checked out by a worker.
# TYPE spool_queue_checked_out_entries gauge
spool_queue_checked_out_entries{queue="deferred",spool="mail"} 0
spool_queue_checked_out_entries{queue="outbox",spool="mail"} 1
# HELP spool_queue_entries Entries waiting in the queue.
# TYPE spool_queue_entries gauge
spool_queue_entries{queue="deferred",spool="mail"} 0
spool_queue_entries{queue="outbox",spool="mail"} 3
# HELP spool_queue_oldest_checked_out_timestamp_seconds Modification time of the oldest checked-out entry of the queue; absent when none is checked out.
# TYPE spool_queue_oldest_checked_out_timestamp_seconds gauge
spool_queue_oldest_checked_out_timestamp_seconds{queue="outbox",spool="mail"} 1.7956079985e+09
# HELP spool_queue_oldest_entry_timestamp_seconds Modification time of the oldest entry waiting in the queue; absent when the queue is empty.
# TYPE spool_queue_oldest_entry_timestamp_seconds gauge
spool_queue_oldest_entry_timestamp_seconds{queue="outbox",spool="mail"} 1.79560791e+09
`,
		},
		{
			name:    "problems grouped by kind, dir and queue, zero-filled per kind",
			snaps:   []*monitor.Snapshot{mailSnapshot()},
			metrics: []string{"spool_problems"},
			want: `# HELP spool_problems Problems now alerting (after debouncing), by kind and directory; a kind with none has one series with dir="" and queue="" at 0.
# TYPE spool_problems gauge
spool_problems{dir="",kind="missing_data",queue="",spool="mail"} 0
spool_problems{dir="",kind="orphaned",queue="",spool="mail"} 0
spool_problems{dir="",kind="unexpected",queue="",spool="mail"} 0
spool_problems{dir="checkout",kind="too_old",queue="outbox",spool="mail"} 2
spool_problems{dir="registry",kind="duplicated",queue="",spool="mail"} 1
spool_problems{dir="tmp",kind="too_old",queue="",spool="mail"} 1
`,
		},
		{
			name: "payload bytes left out while the sizes after a full scan are read",
			snaps: []*monitor.Snapshot{func() *monitor.Snapshot {
				s := mailSnapshot()
				s.DataBytes, s.DataBytesPending = 1000, true
				return s
			}()},
			metrics: []string{"spool_data_bytes", "spool_registry_entries"},
			want: `# HELP spool_registry_entries Names reserved in the spool's .registry directory.
# TYPE spool_registry_entries gauge
spool_registry_entries{spool="mail"} 4
`,
		},
		{
			name:    "event counters zero-filled per kind and event",
			snaps:   []*monitor.Snapshot{mailSnapshot()},
			metrics: []string{"spool_problem_events_total"},
			want: `# HELP spool_problem_events_total Problem alerts started and ended since the agent started watching the spool.
# TYPE spool_problem_events_total counter
spool_problem_events_total{event="end",kind="duplicated",spool="mail"} 0
spool_problem_events_total{event="end",kind="missing_data",spool="mail"} 0
spool_problem_events_total{event="end",kind="orphaned",spool="mail"} 2
spool_problem_events_total{event="end",kind="too_old",spool="mail"} 1
spool_problem_events_total{event="end",kind="unexpected",spool="mail"} 0
spool_problem_events_total{event="start",kind="duplicated",spool="mail"} 0
spool_problem_events_total{event="start",kind="missing_data",spool="mail"} 0
spool_problem_events_total{event="start",kind="orphaned",spool="mail"} 2
spool_problem_events_total{event="start",kind="too_old",spool="mail"} 3
spool_problem_events_total{event="start",kind="unexpected",spool="mail"} 0
`,
		},
		{
			name:  "per-spool series for an up and a down spool",
			snaps: []*monitor.Snapshot{downSnapshot(), mailSnapshot()},
			metrics: []string{"spool_up", "spool_watching", "spool_fsck_duration_seconds", "spool_fsck_last_success_timestamp_seconds",
				"spool_fsck_failures_total", "spool_fsck_cycles_total", "spool_full_scans_total", "spool_tmp_files", "spool_registry_entries", "spool_data_bytes"},
			want: `# HELP spool_data_bytes Total size of the spool's payload files in .data.
# TYPE spool_data_bytes gauge
spool_data_bytes{spool="gone"} 0
spool_data_bytes{spool="mail"} 4096
# HELP spool_fsck_cycles_total Checks of the spool run, successful or not.
# TYPE spool_fsck_cycles_total counter
spool_fsck_cycles_total{spool="gone"} 3
spool_fsck_cycles_total{spool="mail"} 12
# HELP spool_fsck_duration_seconds Duration of the last check of the spool.
# TYPE spool_fsck_duration_seconds gauge
spool_fsck_duration_seconds{spool="gone"} 0
spool_fsck_duration_seconds{spool="mail"} 0.25
# HELP spool_fsck_failures_total Checks of the spool that failed.
# TYPE spool_fsck_failures_total counter
spool_fsck_failures_total{spool="gone"} 3
spool_fsck_failures_total{spool="mail"} 1
# HELP spool_fsck_last_success_timestamp_seconds When the last successful check of the spool finished; absent before the first.
# TYPE spool_fsck_last_success_timestamp_seconds gauge
spool_fsck_last_success_timestamp_seconds{spool="mail"} 1.795607999e+09
# HELP spool_full_scans_total Checks that listed every directory of the spool (rather than relying on inotify).
# TYPE spool_full_scans_total counter
spool_full_scans_total{spool="gone"} 0
spool_full_scans_total{spool="mail"} 2
# HELP spool_registry_entries Names reserved in the spool's .registry directory.
# TYPE spool_registry_entries gauge
spool_registry_entries{spool="gone"} 0
spool_registry_entries{spool="mail"} 4
# HELP spool_tmp_files Files in the spool's .tmp directory.
# TYPE spool_tmp_files gauge
spool_tmp_files{spool="gone"} 0
spool_tmp_files{spool="mail"} 2
# HELP spool_up Whether the last check of the spool could read it (1) or not (0).
# TYPE spool_up gauge
spool_up{spool="gone"} 0
spool_up{spool="mail"} 1
# HELP spool_watching Whether the spool is watched through inotify (1) or fully scanned every check (0).
# TYPE spool_watching gauge
spool_watching{spool="gone"} 0
spool_watching{spool="mail"} 1
`,
		},
		{
			name:    "a down spool has problems and events zero-filled and no queue series",
			snaps:   []*monitor.Snapshot{downSnapshot()},
			metrics: []string{"spool_problems", "spool_queue_entries", "spool_queue_entry_age_seconds"},
			want: `# HELP spool_problems Problems now alerting (after debouncing), by kind and directory; a kind with none has one series with dir="" and queue="" at 0.
# TYPE spool_problems gauge
spool_problems{dir="",kind="duplicated",queue="",spool="gone"} 0
spool_problems{dir="",kind="missing_data",queue="",spool="gone"} 0
spool_problems{dir="",kind="orphaned",queue="",spool="gone"} 0
spool_problems{dir="",kind="too_old",queue="",spool="gone"} 0
spool_problems{dir="",kind="unexpected",queue="",spool="gone"} 0
`,
		},
		{
			name:    "age histogram of a hand-built snapshot has every bucket",
			snaps:   []*monitor.Snapshot{{Name: "s", Up: true, Queues: []monitor.QueueStats{{Queue: "q"}}}},
			metrics: []string{"spool_queue_entry_age_seconds"},
			want: `# HELP spool_queue_entry_age_seconds Age distribution of the entries waiting in the queue at scrape time (a gauge histogram: use the buckets directly, never rate()).
# TYPE spool_queue_entry_age_seconds histogram
spool_queue_entry_age_seconds_bucket{queue="q",spool="s",le="60"} 0
spool_queue_entry_age_seconds_bucket{queue="q",spool="s",le="300"} 0
spool_queue_entry_age_seconds_bucket{queue="q",spool="s",le="600"} 0
spool_queue_entry_age_seconds_bucket{queue="q",spool="s",le="1800"} 0
spool_queue_entry_age_seconds_bucket{queue="q",spool="s",le="3600"} 0
spool_queue_entry_age_seconds_bucket{queue="q",spool="s",le="7200"} 0
spool_queue_entry_age_seconds_bucket{queue="q",spool="s",le="21600"} 0
spool_queue_entry_age_seconds_bucket{queue="q",spool="s",le="43200"} 0
spool_queue_entry_age_seconds_bucket{queue="q",spool="s",le="86400"} 0
spool_queue_entry_age_seconds_bucket{queue="q",spool="s",le="172800"} 0
spool_queue_entry_age_seconds_bucket{queue="q",spool="s",le="604800"} 0
spool_queue_entry_age_seconds_bucket{queue="q",spool="s",le="+Inf"} 0
spool_queue_entry_age_seconds_sum{queue="q",spool="s"} 0
spool_queue_entry_age_seconds_count{queue="q",spool="s"} 0
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := tt.want
			if tt.metrics == nil {
				want = strings.ReplaceAll(want, "GOVERSION", runtime.Version())
			}
			err := testutil.CollectAndCompare(newTestExporter(tt.snaps...), strings.NewReader(want), tt.metrics...)
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestCollectAndLint(t *testing.T) {
	e := newTestExporter(downSnapshot(), mailSnapshot())
	problems, err := testutil.CollectAndLint(e)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// TestRegisterChecked registers the exporter in a pedantic registry, which
// checks that every collected metric matches a described descriptor.
func TestRegisterChecked(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(newTestExporter(downSnapshot(), mailSnapshot()))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) != len(families) {
		var names []string
		for _, mf := range mfs {
			names = append(names, mf.GetName())
		}
		t.Errorf("gathered %d families %v, want all %d described", len(mfs), names, len(families))
	}
}

// TestSnapshotsReadOncePerScrape checks that a scrape reads the snapshots
// exactly once (the function is the collector's, which never touches disk).
func TestSnapshotsReadOncePerScrape(t *testing.T) {
	calls := 0
	e := New(func() []*monitor.Snapshot { calls++; return []*monitor.Snapshot{mailSnapshot(), nil} }, Options{})
	if n := testutil.CollectAndCount(e); n == 0 {
		t.Fatal("no metrics collected")
	}
	if calls != 1 {
		t.Errorf("snapshots read %d times per scrape, want 1", calls)
	}
}

// TestPromtoolCheckMetrics runs `promtool check metrics` over a real scrape
// through promhttp (skipped without promtool, failed under CI=true).
func TestPromtoolCheckMetrics(t *testing.T) {
	testkit.Promtool(t)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(newTestExporter(downSnapshot(), mailSnapshot()))
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	testkit.CheckMetrics(t, body)
}

// TestAgeHistogramFromMonitor builds a real snapshot (the age index is the
// monitor's) of a queue whose entries are 30s, 2h and 3 days old.
func TestAgeHistogramFromMonitor(t *testing.T) {
	dir := t.TempDir()
	sp, err := spool.Create(dir, []string{"outbox"}, &spool.Options{Durability: spool.DurabilityNone})
	if err != nil {
		t.Fatal(err)
	}
	for _, age := range []time.Duration{30 * time.Second, 2 * time.Hour, 72 * time.Hour} {
		name, err := sp.EnqueueBytes(context.Background(), "outbox", []byte("m"), nil, spool.EnqueueOptions{})
		if err != nil {
			t.Fatal(err)
		}
		mtime := testNow.Add(-age)
		for _, p := range []string{filepath.Join(dir, "outbox", name), filepath.Join(dir, ".registry", name), filepath.Join(dir, ".data", name)} {
			if err := os.Chtimes(p, mtime, mtime); err != nil {
				t.Fatal(err)
			}
		}
	}
	cfg := monitor.DefaultConfig()
	cfg.Now, cfg.DisableWatch, cfg.Logger = func() time.Time { return testNow }, true, slog.New(slog.DiscardHandler)
	m, err := monitor.New("mail", dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := m.Cycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := `# HELP spool_queue_entry_age_seconds Age distribution of the entries waiting in the queue at scrape time (a gauge histogram: use the buckets directly, never rate()).
# TYPE spool_queue_entry_age_seconds histogram
spool_queue_entry_age_seconds_bucket{queue="outbox",spool="mail",le="60"} 1
spool_queue_entry_age_seconds_bucket{queue="outbox",spool="mail",le="300"} 1
spool_queue_entry_age_seconds_bucket{queue="outbox",spool="mail",le="600"} 1
spool_queue_entry_age_seconds_bucket{queue="outbox",spool="mail",le="1800"} 1
spool_queue_entry_age_seconds_bucket{queue="outbox",spool="mail",le="3600"} 1
spool_queue_entry_age_seconds_bucket{queue="outbox",spool="mail",le="7200"} 2
spool_queue_entry_age_seconds_bucket{queue="outbox",spool="mail",le="21600"} 2
spool_queue_entry_age_seconds_bucket{queue="outbox",spool="mail",le="43200"} 2
spool_queue_entry_age_seconds_bucket{queue="outbox",spool="mail",le="86400"} 2
spool_queue_entry_age_seconds_bucket{queue="outbox",spool="mail",le="172800"} 2
spool_queue_entry_age_seconds_bucket{queue="outbox",spool="mail",le="604800"} 3
spool_queue_entry_age_seconds_bucket{queue="outbox",spool="mail",le="+Inf"} 3
spool_queue_entry_age_seconds_sum{queue="outbox",spool="mail"} 266430
spool_queue_entry_age_seconds_count{queue="outbox",spool="mail"} 3
`
	e := New(func() []*monitor.Snapshot { return []*monitor.Snapshot{m.Snapshot()} }, Options{Now: func() time.Time { return testNow }})
	if err := testutil.CollectAndCompare(e, strings.NewReader(want), "spool_queue_entry_age_seconds"); err != nil {
		t.Fatal(err)
	}
	// An hour later every entry has aged by an hour: the histogram is
	// computed at scrape time from the same snapshot.
	later := New(func() []*monitor.Snapshot { return []*monitor.Snapshot{m.Snapshot()} }, Options{Now: func() time.Time { return testNow.Add(time.Hour) }})
	wantLater := `# HELP spool_queue_entry_age_seconds Age distribution of the entries waiting in the queue at scrape time (a gauge histogram: use the buckets directly, never rate()).
# TYPE spool_queue_entry_age_seconds histogram
spool_queue_entry_age_seconds_bucket{queue="outbox",spool="mail",le="60"} 0
spool_queue_entry_age_seconds_bucket{queue="outbox",spool="mail",le="300"} 0
spool_queue_entry_age_seconds_bucket{queue="outbox",spool="mail",le="600"} 0
spool_queue_entry_age_seconds_bucket{queue="outbox",spool="mail",le="1800"} 0
spool_queue_entry_age_seconds_bucket{queue="outbox",spool="mail",le="3600"} 0
spool_queue_entry_age_seconds_bucket{queue="outbox",spool="mail",le="7200"} 1
spool_queue_entry_age_seconds_bucket{queue="outbox",spool="mail",le="21600"} 2
spool_queue_entry_age_seconds_bucket{queue="outbox",spool="mail",le="43200"} 2
spool_queue_entry_age_seconds_bucket{queue="outbox",spool="mail",le="86400"} 2
spool_queue_entry_age_seconds_bucket{queue="outbox",spool="mail",le="172800"} 2
spool_queue_entry_age_seconds_bucket{queue="outbox",spool="mail",le="604800"} 3
spool_queue_entry_age_seconds_bucket{queue="outbox",spool="mail",le="+Inf"} 3
spool_queue_entry_age_seconds_sum{queue="outbox",spool="mail"} 277230
spool_queue_entry_age_seconds_count{queue="outbox",spool="mail"} 3
`
	if err := testutil.CollectAndCompare(later, strings.NewReader(wantLater), "spool_queue_entry_age_seconds"); err != nil {
		t.Fatal(err)
	}
}

// TestAgeBucketsCallersCopy checks that what AgeBuckets returns is the
// caller's: shortening or changing it, before or after New, changes neither
// scrape path (a shortened package slice once made every scrape panic).
func TestAgeBucketsCallersCopy(t *testing.T) {
	want := AgeBuckets()
	if len(want) == 0 {
		t.Fatal("AgeBuckets is empty")
	}
	scrape := func(e *Exporter) (collected, text string) {
		t.Helper()
		var buf bytes.Buffer
		if err := e.WriteText(&buf); err != nil {
			t.Fatal(err)
		}
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(e)
		srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		defer srv.Close()
		resp, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return string(body), buf.String()
	}
	wantCollected, wantText := scrape(newTestExporter(mailSnapshot()))

	got := AgeBuckets()
	got[0] = 42 * time.Hour
	before := newTestExporter(mailSnapshot())
	got = got[:1]
	got[0] = 0
	after := newTestExporter(mailSnapshot())
	for name, e := range map[string]*Exporter{"before": before, "after": after} {
		collected, text := scrape(e)
		if collected != wantCollected || text != wantText {
			t.Errorf("exporter made %s changing AgeBuckets' result scrapes differently:\n%s\nwant:\n%s", name, text, wantText)
		}
	}
	if again := AgeBuckets(); !slices.Equal(again, want) {
		t.Errorf("AgeBuckets() = %v after a caller changed its copy, want %v", again, want)
	}
	if n := strings.Count(wantText, `spool_queue_entry_age_seconds_bucket{queue="outbox"`); n != len(want)+1 {
		t.Errorf("%d buckets per queue in the scrape, want %d (AgeBuckets and +Inf)", n, len(want)+1)
	}
}

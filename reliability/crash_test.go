package reliability

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spool-agent/spool-agent/monitor"
	"github.com/spool-agent/spool-agent/reliability/internal/workload"
	"github.com/spool-agent/spool-agent/spool"
)

// crashWorkers is the set of worker processes of the crash test.
type crashWorkers struct {
	dir       string
	producers []*proc
	consumers []*proc
	removers  []*proc
	ackLogs   []string
	rmLogs    []string
}

// startCrashWorkers starts producers (half at DurabilityNone, half at
// DurabilityFull), consumers (incoming -> done) and removers (done -> gone)
// on the spool at dir, logging into logDir.
func startCrashWorkers(t *testing.T, dir, logDir string, nProd, nCons, nRm int) *crashWorkers {
	t.Helper()
	w := &crashWorkers{dir: dir}
	durabilities := []string{"none", "full"}
	for i := range nProd {
		ack := filepath.Join(logDir, fmt.Sprintf("acks-%d.log", i))
		w.ackLogs = append(w.ackLogs, ack)
		w.producers = append(w.producers, &proc{
			name: fmt.Sprintf("producer-%d", i),
			args: func(gen int) []string {
				// Every run gets its own id prefix: ids never repeat.
				return []string{bin.worker, "produce", "-spool", dir, "-queue", "incoming",
					"-id", fmt.Sprintf("p%d.%d", i, gen), "-log", ack, "-size", "512",
					"-durability", durabilities[i%len(durabilities)]}
			},
		})
	}
	for i := range nCons {
		w.consumers = append(w.consumers, &proc{
			name: fmt.Sprintf("consumer-%d", i),
			args: func(int) []string {
				return []string{bin.worker, "consume", "-spool", dir, "-queue", "incoming", "-to", "done",
					"-durability", durabilities[i%len(durabilities)]}
			},
		})
	}
	for i := range nRm {
		rm := filepath.Join(logDir, fmt.Sprintf("removes-%d.log", i))
		w.rmLogs = append(w.rmLogs, rm)
		w.removers = append(w.removers, &proc{
			name: fmt.Sprintf("remover-%d", i),
			args: func(int) []string {
				return []string{bin.worker, "remove", "-spool", dir, "-queue", "done", "-log", rm,
					"-durability", durabilities[i%len(durabilities)]}
			},
		})
	}
	for _, p := range w.all() {
		if err := p.start(); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

func (w *crashWorkers) all() []*proc {
	return slices.Concat(w.producers, w.consumers, w.removers)
}

// crashFigures are the crash test's results.
type crashFigures struct {
	Test             string         `json:"test"`
	Kills            int            `json:"kills"`
	KillsByRole      map[string]int `json:"kills_by_role"`
	Seconds          float64        `json:"seconds"`
	Acked            int            `json:"acked"`
	Present          int            `json:"present"`
	Removed          int            `json:"removed"`
	RemovingUnacked  int            `json:"removing_unacked"`
	UnackedSurvivors int            `json:"unacked_survivors"`
	Lost             int            `json:"lost"`
	Duplicated       int            `json:"duplicated"`
	Recovered        int            `json:"recovered_checkouts"`
	Orphans          int            `json:"orphan_problems"`
	OtherProblems    int            `json:"other_problems"`
	AgentRestarts    int            `json:"agent_restarts,omitempty"`
}

// verifyCrash checks the spool and the logs after every worker is dead:
// every acknowledged id is in exactly one entry or was being removed, no id
// is in two entries, no removed id is back, every payload matches its id,
// and fsck reports no duplicate and no entry without payload.
func verifyCrash(t *testing.T, w *crashWorkers, fig *crashFigures) {
	t.Helper()
	s, err := spool.Open(w.dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The workers are dead: their checkouts are stranded; return them.
	rec, err := s.Recover(context.Background(), -time.Hour, spool.RecoverOptions{WorkersStopped: true})
	if err != nil {
		t.Fatalf("recover: %v", err)
	}
	fig.Recovered = len(rec)

	acked := map[string]bool{}
	for _, l := range w.ackLogs {
		lines, err := workload.ReadLog(l)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range lines {
			if len(f) == 3 && f[0] == "ack" {
				if acked[f[1]] {
					t.Errorf("id %s acknowledged twice", f[1])
				}
				acked[f[1]] = true
			}
		}
	}
	removing, removed := map[string]bool{}, map[string]bool{}
	for _, l := range w.rmLogs {
		lines, err := workload.ReadLog(l)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range lines {
			if len(f) == 3 && f[0] == "removing" {
				removing[f[1]] = true
			}
			if len(f) == 3 && f[0] == "removed" {
				if removed[f[1]] {
					t.Errorf("id %s removed twice", f[1])
				}
				removed[f[1]] = true
			}
		}
	}
	present := map[string][]string{} // id -> where
	for _, q := range s.Queues() {
		for _, list := range []func(string) ([]string, error){s.List, s.ListCheckedOut} {
			names, err := list(q)
			if err != nil {
				t.Fatal(err)
			}
			for _, name := range names {
				meta, err := s.ReadMetadata(q, name)
				if err != nil {
					t.Errorf("entry %s/%s: %v", q, name, err)
					continue
				}
				id, ok := workload.ParseID(meta)
				if !ok {
					t.Errorf("entry %s/%s: metadata %q", q, name, meta)
					continue
				}
				data, err := s.ReadData(name)
				if err != nil || !workload.CheckPayload(id, data) {
					t.Errorf("entry %s/%s (id %s): payload damaged or missing: %v", q, name, id, err)
				}
				present[id] = append(present[id], q+"/"+name)
			}
		}
	}
	for id := range acked {
		if len(present[id]) == 0 && !removing[id] {
			fig.Lost++
			if fig.Lost <= 10 {
				t.Errorf("LOST: id %s was acknowledged, is in no queue and was never being removed", id)
			}
		}
	}
	for id, where := range present {
		if len(where) > 1 {
			fig.Duplicated++
			t.Errorf("DUPLICATE: id %s is in %d entries: %v", id, len(where), where)
		}
		if removed[id] {
			fig.Duplicated++
			t.Errorf("DUPLICATE: id %s was removed (acknowledged) but is back: %v", id, where)
		}
		if !acked[id] {
			fig.UnackedSurvivors++
		}
		if removing[id] && !removed[id] {
			fig.RemovingUnacked++
		}
	}
	fig.Acked, fig.Present, fig.Removed = len(acked), len(present), len(removed)
	// An unacknowledged survivor is an entry whose producer was killed
	// between Enqueue returning and the acknowledgement being logged: at most
	// one per producer kill.
	if fig.UnackedSurvivors > fig.KillsByRole["producer"] {
		t.Errorf("%d entries were never acknowledged, more than the %d producer kills", fig.UnackedSurvivors, fig.KillsByRole["producer"])
	}

	problems, err := monitor.Check(w.dir, monitor.DefaultLimits(), time.Now())
	if err != nil {
		t.Errorf("fsck: %v", err)
	}
	for _, p := range problems {
		switch p.Kind {
		case monitor.KindOrphaned:
			fig.Orphans++
		case monitor.KindDuplicated, monitor.KindMissingData:
			t.Errorf("fsck: %v", p)
			fig.OtherProblems++
		default:
			fig.OtherProblems++
			t.Logf("fsck: %v", p)
		}
	}
}

// killLoop SIGKILLs a random process of procs every few tens of
// milliseconds and restarts it, until kills processes have been killed or
// the deadline passes. role names each process's role for the figures.
func killLoop(t *testing.T, procs []*proc, role func(*proc) string, kills int, deadline time.Time, fig *crashFigures, afterKill func(p *proc)) {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	for fig.Kills < kills {
		if time.Now().After(deadline) {
			t.Errorf("only %d of %d kills before the deadline", fig.Kills, kills)
			return
		}
		time.Sleep(time.Duration(5+rng.IntN(45)) * time.Millisecond)
		p := procs[rng.IntN(len(procs))]
		if !p.running() {
			continue
		}
		if err := p.signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		fig.Kills++
		fig.KillsByRole[role(p)]++
		if afterKill != nil {
			afterKill(p)
		}
		if err := p.start(); err != nil {
			t.Fatal(err)
		}
	}
}

func roleOf(p *proc) string {
	r, _, _ := strings.Cut(p.name, "-")
	if p.name == "spool-agent" {
		return "agent"
	}
	return r
}

// TestCrash SIGKILLs producers, consumers, removers and the spool-agent
// at random (-reliability.kills times, 200 by default) while they run on
// one spool, and checks that no acknowledged entry is lost or duplicated,
// that the agent's counters never go backwards within one agent process,
// and that after a restart the agent's gauges match the disk again.
func TestCrash(t *testing.T) {
	needBinary(t, &bin.worker)
	needBinary(t, &bin.agent)
	base := t.TempDir()
	dir := filepath.Join(base, "spool")
	if _, err := spool.Create(dir, []string{"incoming", "done"}, nil); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ag := newAgent(t, map[string]string{"crash": dir})
	ag.startAndWait(t)
	w := startCrashWorkers(t, dir, base, 3, 2, 2)
	fig := &crashFigures{Test: "crash", KillsByRole: map[string]int{}}

	watch := watchCounters(ag)
	deadline := start.Add(time.Duration(*flagKills) * 300 * time.Millisecond)
	killLoop(t, append(w.all(), ag.proc), roleOf, *flagKills, deadline, fig, nil)
	time.Sleep(200 * time.Millisecond)
	for _, p := range w.all() {
		p.signal(syscall.SIGKILL)
		if u := p.unexpected(); len(u) > 0 {
			t.Errorf("%d unexpected exits of %s; the first: %s", len(u), p.name, u[0])
		}
	}
	watch.stop(t)
	fig.AgentRestarts = fig.KillsByRole["agent"]
	fig.Seconds = time.Since(start).Seconds()
	verifyCrash(t, w, fig)

	// The spool is quiet now. One more agent crash: after the restart its
	// gauges must match the disk and its counters start again from zero
	// (a counter reset, which Prometheus' rate() and increase() handle),
	// while the process start time tells scrapers it restarted.
	before := ag.waitMetric(t, 10*time.Second, "a check cycle", func(m metrics) bool {
		v, ok := m.value("spool_fsck_cycles_total", "spool", "crash")
		return ok && v >= 2
	})
	if err := ag.signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ag.startAndWait(t)
	s, err := spool.Open(dir, &spool.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	disk := map[string]int{}
	for _, q := range s.Queues() {
		names, _ := s.List(q)
		disk[q] = len(names)
	}
	after := ag.waitMetric(t, 20*time.Second, "spool_queue_entries to match the disk after the restart", func(m metrics) bool {
		for q, n := range disk {
			if v, ok := m.value("spool_queue_entries", "spool", "crash", "queue", q); !ok || int(v) != n {
				return false
			}
		}
		return true
	})
	for q := range disk {
		if v := after.must(t, "spool_queue_checked_out_entries", "spool", "crash", "queue", q); v != 0 {
			t.Errorf("after recovery the agent reports %v checked-out entries in %s", v, q)
		}
	}
	if b, a := before.must(t, "spool_fsck_cycles_total", "spool", "crash"), after.must(t, "spool_fsck_cycles_total", "spool", "crash"); a >= b {
		t.Errorf("spool_fsck_cycles_total went from %v to %v across a restart: it should restart from zero", b, a)
	}
	if b, ok1 := before.value("process_start_time_seconds"); ok1 {
		if a, ok2 := after.value("process_start_time_seconds"); !ok2 || a < b {
			t.Errorf("process_start_time_seconds %v -> %v across a restart", b, a)
		}
	}
	t.Logf("queues on disk %v match the restarted agent's spool_queue_entries", disk)
	report(t, fig)
	t.Logf("counter watch: %d scrapes of %d agent processes, %d failed while the agent was down", watch.scrapes, watch.incarnations, watch.failed)
	if fig.Acked == 0 || fig.Removed == 0 {
		t.Errorf("the workload did not run: %d acknowledged, %d removed", fig.Acked, fig.Removed)
	}
}

// counterWatch scrapes the agent every 50ms while the crash test runs and
// checks that within one agent process no counter ever decreases.
type counterWatch struct {
	done         chan struct{}
	finished     chan struct{}
	scrapes      int
	failed       int
	incarnations int
	errs         []string
}

// monotonic are the counters whose values the watch follows.
var monotonic = []string{"spool_fsck_cycles_total", "spool_problem_events_total", "spool_full_scans_total", "spool_queue_arrivals_total", "spool_fsck_failures_total"}

func watchCounters(ag *agent) *counterWatch {
	w := &counterWatch{done: make(chan struct{}), finished: make(chan struct{})}
	go func() {
		defer close(w.finished)
		last := map[string]float64{}
		lastGen := -1
		for {
			select {
			case <-w.done:
				return
			case <-time.After(50 * time.Millisecond):
			}
			ag.mu.Lock()
			gen := ag.gen
			ag.mu.Unlock()
			m, err := ag.scrape()
			ag.mu.Lock()
			same := gen == ag.gen
			ag.mu.Unlock()
			if err != nil {
				w.failed++
				continue
			}
			if !same {
				continue
			}
			w.scrapes++
			if gen != lastGen {
				lastGen, last = gen, map[string]float64{}
				w.incarnations++
			}
			for _, name := range monotonic {
				v, ok := m.value(name)
				if !ok {
					continue
				}
				if old, seen := last[name]; seen && v < old && len(w.errs) < 10 {
					w.errs = append(w.errs, fmt.Sprintf("%s went down from %v to %v within agent run %d", name, old, v, gen))
				}
				last[name] = v
			}
		}
	}()
	return w
}

func (w *counterWatch) stop(t *testing.T) {
	t.Helper()
	close(w.done)
	<-w.finished
	for _, e := range w.errs {
		t.Error(e)
	}
	if w.scrapes == 0 {
		t.Error("the counter watch never scraped the agent")
	}
}

// report logs the figures and appends them to -reliability.report.
func report(t *testing.T, fig any) {
	t.Helper()
	b, err := json.Marshal(fig)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("figures: %s", b)
	if *flagReport == "" {
		return
	}
	f, err := os.OpenFile(*flagReport, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Write(append(b, '\n'))
}

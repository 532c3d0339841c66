package reliability

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spool-agent/spool-agent/monitor"
	"github.com/spool-agent/spool-agent/reliability/internal/workload"
	"github.com/spool-agent/spool-agent/spool"
)

// interopQueues are the queues of the mixed-implementation tests: producers
// enqueue into incoming, consumers move entries to done, removers remove
// them from done.
var interopQueues = []string{"incoming", "done"}

// interopKills is how many SIGKILLs the mixed-implementation test sends.
const interopKills = 150

// mixedWorkers are the worker processes of a mixed-implementation test:
// refworker processes (the OCaml reference's system calls, no locks) and
// spoolworker processes (this library) on one spool.
type mixedWorkers struct {
	dir      string
	logDir   string
	procs    []*proc
	ackLogs  []string
	workLogs []string // consumers' and removers' logs
}

// add adds a worker: impl is "ref" or "lib", role "producer", "consumer"
// or "remover". It is started by start.
func (w *mixedWorkers) add(impl, role string) *proc {
	i := len(w.procs)
	log := filepath.Join(w.logDir, fmt.Sprintf("%s-%s-%d.log", impl, role, i))
	exe := bin.ref
	var extra []string
	if impl == "lib" {
		exe = bin.worker
		// Producers at full durability: as slow as the reference's (it
		// fsyncs every file), so that the drain stays short.
		extra = []string{"-durability", "full"}
		if role != "producer" {
			extra = []string{"-durability", []string{"none", "full"}[i%2], "-beside-reference"}
		}
	}
	p := &proc{name: fmt.Sprintf("%s%s-%d", impl, role, i)}
	switch role {
	case "producer":
		w.ackLogs = append(w.ackLogs, log)
		p.args = func(gen int) []string {
			// Every run gets its own id prefix: ids never repeat.
			return append([]string{exe, "produce", "-spool", w.dir, "-queue", "incoming",
				"-id", fmt.Sprintf("%s%d.%d", impl, i, gen), "-log", log, "-size", "512"}, extra...)
		}
	case "consumer":
		w.workLogs = append(w.workLogs, log)
		p.args = func(int) []string {
			return append([]string{exe, "consume", "-spool", w.dir, "-queue", "incoming", "-to", "done", "-log", log}, extra...)
		}
	case "remover":
		w.workLogs = append(w.workLogs, log)
		p.args = func(int) []string {
			return append([]string{exe, "remove", "-spool", w.dir, "-queue", "done", "-log", log}, extra...)
		}
	}
	w.procs = append(w.procs, p)
	return p
}

// start starts every worker; the test's end kills them whatever happens.
func (w *mixedWorkers) start(t *testing.T) {
	t.Helper()
	t.Cleanup(func() {
		for _, p := range w.procs {
			p.signal(syscall.SIGKILL)
		}
	})
	for _, p := range w.procs {
		if err := p.start(); err != nil {
			t.Fatal(err)
		}
	}
}

// stop signals every worker and reports the exits that were not caused by
// the test.
func (w *mixedWorkers) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	for _, p := range w.procs {
		if err := p.signal(sig); err != nil {
			t.Error(err)
		}
		if sig == syscall.SIGTERM {
			// A worker stopped by SIGTERM must exit cleanly.
			p.mu.Lock()
			err := p.exitErr
			p.mu.Unlock()
			if err != nil {
				t.Errorf("%s exited with %v on SIGTERM:\n%s", p.name, err, p.output())
			}
		}
		for _, u := range p.unexpected() {
			t.Errorf("unexpected exit: %s", u)
		}
	}
}

// interopLogs are the workers' logs, by id.
type interopLogs struct {
	acked    map[string]string // id -> entry name
	lines    map[string]map[string]int
	ackTwice []string
}

func readInteropLogs(t *testing.T, ackLogs, workLogs []string) *interopLogs {
	t.Helper()
	l := &interopLogs{acked: map[string]string{}, lines: map[string]map[string]int{}}
	for _, path := range slices.Concat(ackLogs, workLogs) {
		lines, err := workload.ReadLog(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range lines {
			if len(f) != 3 {
				t.Fatalf("%s: malformed line %q", path, f)
			}
			if f[0] == "ack" {
				if _, dup := l.acked[f[1]]; dup {
					l.ackTwice = append(l.ackTwice, f[1])
				}
				l.acked[f[1]] = f[2]
			}
			if l.lines[f[0]] == nil {
				l.lines[f[0]] = map[string]int{}
			}
			l.lines[f[0]][f[1]]++
		}
	}
	return l
}

func (l *interopLogs) count(kind, id string) int { return l.lines[kind][id] }

// completed returns how many times id's removal was acknowledged.
func (l *interopLogs) completed(id string) int {
	return l.count("removed", id) + l.count("removed-nodata", id)
}

// checkExactlyOnce checks that every acknowledged entry was processed
// exactly once: moved at most once, its removal acknowledged exactly once
// (or, for a remover killed after its remove took effect, logged as being
// removed and gone from the spool), a remove that found no payload only
// after a reference remover had started removing it, and at most one
// unacknowledged entry per producer kill. It returns the figures.
func checkExactlyOnce(t *testing.T, l *interopLogs, producerKills int, fig *crashFigures) {
	t.Helper()
	for _, id := range l.ackTwice {
		t.Errorf("id %s acknowledged twice", id)
	}
	ids := map[string]bool{}
	for _, m := range l.lines {
		for id := range m {
			ids[id] = true
		}
	}
	for id := range ids {
		_, acked := l.acked[id]
		if n := l.count("moved", id); n > 1 {
			fig.Duplicated++
			t.Errorf("DUPLICATE: id %s moved to done %d times", id, n)
		}
		switch n := l.completed(id); {
		case n > 1:
			fig.Duplicated++
			t.Errorf("DUPLICATE: id %s removed %d times (removed %d, removed-nodata %d)", id, n, l.count("removed", id), l.count("removed-nodata", id))
		case n == 1:
			fig.Removed++
		case acked && l.count("removing", id) > 0:
			fig.RemovingUnacked++ // a remover died after its remove took effect
		case acked:
			fig.Lost++
			if fig.Lost <= 10 {
				t.Errorf("LOST: id %s (entry %s) was acknowledged but never removed", id, l.acked[id])
			}
		}
		if l.count("removed-nodata", id) > 0 && l.count("removing", id) == 0 {
			t.Errorf("id %s had no payload, but no remover had started removing it: a payload was lost", id)
		}
		if !acked && l.completed(id) > 0 {
			fig.UnackedSurvivors++
		}
	}
	fig.Acked = len(l.acked)
	t.Logf("%d entries whose payload a killed reference remover had deleted were finished by a library remover", len(l.lines["removed-nodata"]))
	if fig.UnackedSurvivors > producerKills {
		t.Errorf("%d entries were processed but never acknowledged, more than the %d producer kills", fig.UnackedSurvivors, producerKills)
	}
}

// waitDrained waits until the queues and their checkout directories are
// empty (bounded by timeout).
func waitDrained(t *testing.T, dir string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		left := 0
		var some string
		for _, q := range interopQueues {
			for _, d := range []string{filepath.Join(dir, q), filepath.Join(dir, q, spool.CheckoutDir)} {
				ents, err := os.ReadDir(d)
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range ents {
					if e.Name() != spool.CheckoutDir {
						left++
						some = filepath.Join(d, e.Name())
					}
				}
			}
		}
		if left == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the spool did not drain within %v: %d entries left, e.g. %s", timeout, left, some)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// refProblem is a problem as refworker fsck prints it.
type refProblem struct {
	Kind  string   `json:"kind"`
	Dir   string   `json:"dir"`
	Queue string   `json:"queue"`
	Name  string   `json:"name"`
	Dirs  []string `json:"dirs"`
}

func (p refProblem) key() string { return p.Kind + " " + p.Dir + ":" + p.Queue + " " + p.Name }

func problemKey(p monitor.Problem) string {
	return string(p.Kind) + " " + string(p.Dir.Kind) + ":" + p.Dir.Queue + " " + p.Name
}

// refFsck runs the reference monitor's fsck (refworker fsck) on dir.
func refFsck(t *testing.T, dir string) []refProblem {
	t.Helper()
	out, errOut, code := runCmd(t, 30*time.Second, nil, nil, bin.ref, "fsck", "-spool", dir, "-queues", strings.Join(interopQueues, ","))
	if code != 0 {
		t.Fatalf("refworker fsck: exit %d: %s", code, errOut)
	}
	var ps []refProblem
	if err := json.Unmarshal([]byte(out), &ps); err != nil {
		t.Fatalf("refworker fsck: %v: %q", err, out)
	}
	return ps
}

// Temp files that a killed writer leaves: the reference's Writer.save names
// them <name>.tmp.XXXXXX (in .tmp/ for metadata, .data/ for payloads).
// This library stages metadata as <name>.<random hex> in .tmp/.
var (
	refTempName = regexp.MustCompile(`^.+\.tmp\.[A-Za-z0-9]{6}$`)
	libTempName = regexp.MustCompile(`^.+\.[0-9a-f]{1,16}$`)
)

// checkLeftovers checks fsck (monitor.Check and spool-agent fsck) of the
// quiet, drained spool: it reports exactly what the reference's monitor
// reports, and only the leftovers that killed workers leave: temp files of
// interrupted atomic writes (orphaned in .tmp and .data), and registry
// files of interrupted enqueues (a name reserved and never acknowledged)
// and of interrupted removes (an entry that a remover had started
// removing). Anything else fails.
func checkLeftovers(t *testing.T, dir string, l *interopLogs, kills int, fig *crashFigures) {
	t.Helper()
	ours, err := monitor.Check(dir, monitor.DefaultLimits(), time.Now())
	if err != nil {
		t.Fatalf("fsck: %v", err)
	}
	refs := refFsck(t, dir)
	// The CLI's fsck says the same as monitor.Check.
	out, errOut, code := runCmd(t, 30*time.Second, nil, nil, bin.agent, "fsck", dir, "-o", "json")
	var cli struct{ Problems []refProblem }
	if err := json.Unmarshal([]byte(out), &cli); err != nil || code != min(len(ours), 1) {
		t.Errorf("spool-agent fsck: exit %d, %v: %s %s", code, err, out, errOut)
	}
	cliKeys := map[string]bool{}
	for _, p := range cli.Problems {
		cliKeys[p.key()] = true
	}
	refKeys := map[string]bool{}
	for _, p := range refs {
		refKeys[p.key()] = true
	}
	ourKeys := map[string]bool{}
	for _, p := range ours {
		ourKeys[problemKey(p)] = true
		if !refKeys[problemKey(p)] {
			t.Errorf("fsck reports %v, which the reference's monitor does not", p)
		}
		if !cliKeys[problemKey(p)] {
			t.Errorf("monitor.Check reports %v, which spool-agent fsck does not", p)
		}
	}
	if len(cliKeys) != len(ourKeys) {
		t.Errorf("spool-agent fsck reports %d problems, monitor.Check %d", len(cliKeys), len(ourKeys))
	}
	for _, p := range refs {
		if !ourKeys[p.key()] {
			t.Errorf("the reference's monitor reports %s, which fsck does not", p.key())
		}
	}
	byName := map[string]string{} // entry name -> acknowledged id
	for id, name := range l.acked {
		byName[name] = id
	}
	reasons := map[string]int{}
	for _, p := range ours {
		fig.Orphans++
		why := ""
		switch {
		case p.Kind != monitor.KindOrphaned:
		case p.Dir.Kind == monitor.DirTmp || p.Dir.Kind == monitor.DirData:
			if refTempName.MatchString(p.Name) || p.Dir.Kind == monitor.DirTmp && libTempName.MatchString(p.Name) {
				why = "temp file of a killed write"
			}
		case p.Dir.Kind == monitor.DirRegistry:
			id, acked := byName[p.Name]
			switch {
			case !acked:
				why = "reservation of a killed enqueue"
			case l.count("removing", id) > 0 && l.completed(id) == 0:
				why = "registry file of a killed remove"
			}
		}
		if why == "" {
			fig.OtherProblems++
			t.Errorf("fsck of the drained spool: unexpected %v", p)
		} else {
			reasons[why]++
		}
	}
	t.Logf("fsck of the drained spool, as the reference's monitor: %d leftovers of killed workers: %v", fig.Orphans, reasons)
	// A killed worker leaves at most two such files (a reservation and a
	// temp file).
	if fig.Orphans > 2*kills {
		t.Errorf("%d leftovers from %d kills", fig.Orphans, kills)
	}
}

// TestInteropMixedImplementations runs producers, consumers and removers of
// the OCaml reference (refworker: its system calls in its order, no locks)
// and of this library (spoolworker) together on one spool and SIGKILLs them
// at random. Then, as async_smtp does at start-up, every checkout goes back
// to its queue (refworker uncheckout), consumers drain the spool, and the
// workers' logs must show every acknowledged entry processed exactly once
// and none lost; fsck of the quiet spool must report what the reference's
// monitor reports, and only the leftovers of killed workers. While the
// workers run, a Recover with spool.MinRecoverAge beside their young
// checkouts must take none, and one with a shorter age is refused.
func TestInteropMixedImplementations(t *testing.T) {
	base, dir, s := interopSpool(t)
	start := time.Now()
	w := &mixedWorkers{dir: dir, logDir: base}
	for _, impl := range []string{"ref", "lib"} {
		w.add(impl, "producer")
		w.add(impl, "producer")
		w.add(impl, "consumer")
		w.add(impl, "consumer")
		w.add(impl, "remover")
	}
	w.start(t)

	// Beside the live workers: Recover refuses a short age without
	// WorkersStopped, and with MinRecoverAge takes nothing, since every
	// checkout is younger than the test.
	if _, err := s.Recover(context.Background(), 0, spool.RecoverOptions{}); !errors.Is(err, spool.ErrRecoverTooYoung) {
		t.Errorf("Recover(0) without WorkersStopped: %v, want ErrRecoverTooYoung", err)
	}
	var recoverMu sync.Mutex
	var stolen []spool.Recovered
	recoverRuns := 0
	stopRecover := make(chan struct{})
	recoverDone := make(chan struct{})
	go func() {
		defer close(recoverDone)
		for {
			select {
			case <-stopRecover:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if time.Since(start) > spool.MinRecoverAge-5*time.Second {
				return // checkouts left by killed workers may be old enough now
			}
			rec, err := s.Recover(context.Background(), spool.MinRecoverAge, spool.RecoverOptions{})
			recoverMu.Lock()
			recoverRuns++
			stolen = append(stolen, rec...)
			if err != nil {
				t.Errorf("Recover(MinRecoverAge) beside live workers: %v", err)
			}
			recoverMu.Unlock()
		}
	}()

	fig := &crashFigures{Test: "interop", KillsByRole: map[string]int{}}
	killLoop(t, w.procs, roleOf, interopKills, start.Add(40*time.Second), fig, nil)
	close(stopRecover)
	<-recoverDone
	w.stop(t, syscall.SIGKILL)
	chaos := time.Since(start)
	recoverMu.Lock()
	if len(stolen) > 0 {
		t.Errorf("Recover(MinRecoverAge) beside live workers took %d young checkouts, e.g. %+v", len(stolen), stolen[0])
	}
	t.Logf("chaos: %d kills in %v; %d Recover(MinRecoverAge) runs beside the workers took nothing", fig.Kills, chaos.Round(time.Millisecond), recoverRuns)
	recoverMu.Unlock()

	// Every worker is dead: return every checkout to its queue, as
	// async_smtp does at start-up, then drain.
	for _, q := range interopQueues {
		names, _ := s.ListCheckedOut(q)
		fig.Recovered += len(names)
	}
	if _, errOut, code := runCmd(t, 30*time.Second, nil, nil, bin.ref, "uncheckout", "-spool", dir, "-queues", strings.Join(interopQueues, ",")); code != 0 {
		t.Fatalf("refworker uncheckout: exit %d: %s", code, errOut)
	}
	drain := &mixedWorkers{dir: dir, logDir: filepath.Join(base, "drain")}
	os.Mkdir(drain.logDir, 0o755)
	drain.add("ref", "consumer")
	drain.add("lib", "consumer")
	drain.add("lib", "remover") // a reference remover cannot remove an entry whose payload is gone
	drain.start(t)
	waitDrained(t, dir, 30*time.Second)
	drain.stop(t, syscall.SIGTERM)

	logs := readInteropLogs(t, w.ackLogs, slices.Concat(w.workLogs, drain.workLogs))
	checkExactlyOnce(t, logs, fig.KillsByRole["refproducer"]+fig.KillsByRole["libproducer"], fig)
	checkLeftovers(t, dir, logs, fig.Kills, fig)
	fig.Seconds = time.Since(start).Seconds()
	report(t, fig)
	if fig.Acked == 0 || fig.Removed == 0 {
		t.Errorf("the workload did not run: %d acknowledged, %d removed", fig.Acked, fig.Removed)
	}
	for _, impl := range []string{"ref", "lib"} {
		n := 0
		for id := range logs.acked {
			if strings.HasPrefix(id, impl) {
				n++
			}
		}
		if n == 0 {
			t.Errorf("no entry of a %s producer was acknowledged", impl)
		}
	}
}

// TestInteropRecoverSparesReferenceCheckouts: reference workers hold young
// checkouts (as async_smtp holds a message for a whole delivery attempt,
// never refreshing its mtime) while a Recover with spool.MinRecoverAge
// (library and spool-agent recover) runs, and while a consumer of this
// library starts (it recovers at start) and drains the rest of the queue:
// none of the held entries is taken, a shorter age is refused (the CLI
// exits 2 naming --workers-stopped), and the reference workers then remove
// their entries without error.
func TestInteropRecoverSparesReferenceCheckouts(t *testing.T) {
	base, dir, s := interopSpool(t)
	const holders, perHolder, free = 2, 4, 5
	for i := range holders*perHolder + free {
		id := fmt.Sprintf("e-%d", i)
		if _, err := s.EnqueueBytes(context.Background(), "incoming", workload.Metadata(id), workload.Payload(id, 300), spool.EnqueueOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var holds []*proc
	var holdLogs []string
	for i := range holders {
		log := filepath.Join(base, fmt.Sprintf("hold-%d.log", i))
		holdLogs = append(holdLogs, log)
		p := &proc{name: fmt.Sprintf("refhold-%d", i), args: func(int) []string {
			return []string{bin.ref, "hold", "-spool", dir, "-queue", "incoming", "-n", fmt.Sprint(perHolder), "-log", log}
		}}
		if err := p.start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.signal(syscall.SIGKILL) })
		holds = append(holds, p)
		// One holder at a time, so that each gets its perHolder entries.
		waitLines(t, log, "held", perHolder)
	}
	held := map[string]bool{}
	for _, log := range holdLogs {
		lines, _ := workload.ReadLog(log)
		for _, f := range lines {
			held[f[2]] = true
		}
	}

	for _, age := range []time.Duration{0, time.Second, spool.MinRecoverAge - time.Millisecond} {
		if _, err := s.Recover(context.Background(), age, spool.RecoverOptions{}); !errors.Is(err, spool.ErrRecoverTooYoung) {
			t.Errorf("Recover(%v) without WorkersStopped: %v, want ErrRecoverTooYoung", age, err)
		}
	}
	rec, err := s.Recover(context.Background(), spool.MinRecoverAge, spool.RecoverOptions{})
	if err != nil || len(rec) != 0 {
		t.Errorf("Recover(MinRecoverAge) beside young reference checkouts: took %+v, %v; want none", rec, err)
	}
	// The CLI: the same rule, exit 2 naming --workers-stopped.
	for _, age := range []string{"0", "30s"} {
		_, errOut, code := runCmd(t, 30*time.Second, nil, nil, bin.agent, "recover", "--older-than", age, dir)
		if code != 2 || !strings.Contains(errOut, "--workers-stopped") {
			t.Errorf("spool-agent recover --older-than %s beside reference workers: exit %d, %q; want exit 2 naming --workers-stopped", age, code, errOut)
		}
	}
	if out, errOut, code := runCmd(t, 30*time.Second, nil, nil, bin.agent, "recover", "--older-than", "1m", dir); code != 0 {
		t.Errorf("spool-agent recover --older-than 1m beside young reference checkouts: exit %d, %q %q", code, out, errOut)
	}
	if co, err := s.ListCheckedOut("incoming"); err != nil || len(co) != len(held) {
		t.Errorf("after the recovers: %d entries checked out (%v), want the %d that the reference workers hold", len(co), err, len(held))
	}

	// A library consumer starts (recovering at start) and drains the
	// entries nobody holds.
	consLog := filepath.Join(base, "consume.log")
	cons := &proc{name: "libconsumer", args: func(int) []string {
		return []string{bin.worker, "consume", "-spool", dir, "-queue", "incoming", "-to", "done", "-log", consLog, "-beside-reference"}
	}}
	if err := cons.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cons.signal(syscall.SIGKILL) })
	waitLines(t, consLog, "moved", free)
	cons.signal(syscall.SIGTERM)
	for _, u := range cons.unexpected() {
		t.Error(u)
	}
	checkedOut, err := s.ListCheckedOut("incoming")
	if err != nil {
		t.Fatal(err)
	}
	if len(checkedOut) != len(held) {
		t.Errorf("%d entries checked out, want the %d that the reference workers hold: %v", len(checkedOut), len(held), checkedOut)
	}
	for _, name := range checkedOut {
		if !held[name] {
			t.Errorf("%s is checked out but no reference worker holds it", name)
		}
	}
	lines, _ := workload.ReadLog(consLog)
	for _, f := range lines {
		if held[f[2]] {
			t.Errorf("the library consumer processed %s (%s), which a reference worker holds", f[2], f[1])
		}
	}

	// The reference workers finish: every remove must succeed.
	for _, p := range holds {
		if err := p.signal(syscall.SIGTERM); err != nil {
			t.Error(err)
		}
		p.mu.Lock()
		if p.exitErr != nil {
			t.Errorf("%s could not finish its entries: %v\n%s", p.name, p.exitErr, p.out)
		}
		p.mu.Unlock()
	}
	for _, log := range holdLogs {
		waitLines(t, log, "removed", perHolder)
	}
	incoming, _ := s.List("incoming")
	done, _ := s.List("done")
	checkedOut, _ = s.ListCheckedOut("incoming")
	if len(incoming) != 0 || len(checkedOut) != 0 || len(done) != free {
		t.Errorf("after the run: incoming %v, checked out %v, %d in done; want nothing, nothing, %d", incoming, checkedOut, len(done), free)
	}
	problems, err := monitor.Check(dir, monitor.DefaultLimits(), time.Now())
	if err != nil || len(problems) != 0 {
		t.Errorf("fsck after the run: %v, %v; want no problem", problems, err)
	}
}

// waitLines waits (up to 20s) until the log at path has n lines of kind.
func waitLines(t *testing.T, path, kind string, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		lines, err := workload.ReadLog(path)
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for _, f := range lines {
			if f[0] == kind {
				got++
			}
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d %q lines after 20s, want %d", path, got, kind, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestInteropUncheckoutTakesLiveLibraryCheckout: async_smtp's start-up
// recovery (uncheckout_all_entries, here refworker uncheckout) returns every
// checkout to its queue, whoever holds it, including a live checkout of this
// library. The library's holder then gets ErrLost from Save, Remove and
// Touch and changes nothing: the entry is in its queue once, intact.
func TestInteropUncheckoutTakesLiveLibraryCheckout(t *testing.T) {
	needBinary(t, &bin.ref)
	dir := filepath.Join(t.TempDir(), "spool")
	s, err := spool.Create(dir, interopQueues, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, finish := range []struct {
		name string
		f    func(c *spool.Checkout) error
	}{
		{"save", func(c *spool.Checkout) error { return c.Save("done", []byte("id=x;stage=done")) }},
		{"remove", func(c *spool.Checkout) error { return c.Remove() }},
		{"touch", func(c *spool.Checkout) error { return c.Touch() }},
	} {
		id := "held-" + finish.name
		name, err := s.EnqueueBytes(context.Background(), "incoming", workload.Metadata(id), workload.Payload(id, 100), spool.EnqueueOptions{})
		if err != nil {
			t.Fatal(err)
		}
		c, err := s.Checkout(context.Background(), "incoming", name)
		if err != nil {
			t.Fatal(err)
		}
		if _, errOut, code := runCmd(t, 30*time.Second, nil, nil, bin.ref, "uncheckout", "-spool", dir, "-queues", strings.Join(interopQueues, ",")); code != 0 {
			t.Fatalf("refworker uncheckout: exit %d: %s", code, errOut)
		}
		if err := finish.f(c); !errors.Is(err, spool.ErrLost) {
			t.Errorf("%s after async_smtp's uncheckout took the checkout: %v, want ErrLost", finish.name, err)
		}
		q, checkedOut, err := s.Find(name)
		if err != nil || q != "incoming" || checkedOut {
			t.Errorf("after %s: entry in %q (checked out %v, %v), want waiting in incoming", finish.name, q, checkedOut, err)
		}
		meta, err := s.ReadMetadata("incoming", name)
		data, derr := s.ReadData(name)
		if err != nil || string(meta) != string(workload.Metadata(id)) || derr != nil || !workload.CheckPayload(id, data) {
			t.Errorf("after %s: metadata %q (%v), payload ok %v (%v)", finish.name, meta, err, workload.CheckPayload(id, data), derr)
		}
		if done, _ := s.List("done"); len(done) != 0 {
			t.Errorf("after %s: done holds %v", finish.name, done)
		}
		c.Release()
	}
	problems, err := monitor.Check(dir, monitor.DefaultLimits(), time.Now())
	if err != nil || len(problems) != 0 {
		t.Errorf("fsck: %v, %v; want no problem", problems, err)
	}
}

// TestInteropReferenceNames: the reference validates no name, so its
// producers may write entries whose names start with '.' or are longer
// than the names this library creates (here 236 bytes). Workers of this
// library beside them consume and remove every such entry exactly once,
// and fsck of the drained spool reports what the reference's monitor
// reports: nothing.
func TestInteropReferenceNames(t *testing.T) {
	needBinary(t, &bin.worker)
	needBinary(t, &bin.ref)
	needBinary(t, &bin.agent)
	base := t.TempDir()
	dir := filepath.Join(base, "spool")
	if _, err := spool.Create(dir, interopQueues, nil); err != nil {
		t.Fatal(err)
	}
	const perPrefix = 5
	var ackLogs []string
	for i, prefix := range []string{".", strings.Repeat("x", 200)} {
		log := filepath.Join(base, fmt.Sprintf("acks-%d.log", i))
		ackLogs = append(ackLogs, log)
		if _, errOut, code := runCmd(t, 30*time.Second, nil, nil, bin.ref, "produce", "-spool", dir, "-queue", "incoming",
			"-id", fmt.Sprintf("ref%d", i), "-log", log, "-n", fmt.Sprint(perPrefix), "-name-prefix", prefix); code != 0 {
			t.Fatalf("refworker produce: exit %d: %s", code, errOut)
		}
	}
	w := &mixedWorkers{dir: dir, logDir: base}
	w.add("lib", "consumer")
	w.add("lib", "remover")
	w.start(t)
	for _, log := range w.workLogs {
		if strings.Contains(log, "remover") {
			waitLines(t, log, "removed", 2*perPrefix)
		}
	}
	waitDrained(t, dir, 10*time.Second)
	w.stop(t, syscall.SIGTERM)

	logs := readInteropLogs(t, ackLogs, w.workLogs)
	fig := &crashFigures{Test: "interop-names", KillsByRole: map[string]int{}}
	checkExactlyOnce(t, logs, 0, fig)
	if fig.Acked != 2*perPrefix || fig.Removed != 2*perPrefix {
		t.Errorf("%d acknowledged, %d removed; want %d each", fig.Acked, fig.Removed, 2*perPrefix)
	}
	for id, name := range logs.acked {
		if !strings.HasPrefix(name, ".") && len(name) <= spool.MaxNameLen {
			t.Errorf("entry %s of %s: the name is neither dotted nor long", name, id)
		}
		if logs.count("moved", id) != 1 {
			t.Errorf("entry %s of %s moved %d times, want once", name, id, logs.count("moved", id))
		}
	}
	checkLeftovers(t, dir, logs, 0, fig)
	if fig.Orphans != 0 {
		t.Errorf("%d problems in the drained spool, want none", fig.Orphans)
	}
}

// interopSpool needs the three worker binaries and creates the interop
// tests' spool under a fresh base directory.
func interopSpool(t *testing.T) (base, dir string, s *spool.Spool) {
	t.Helper()
	needBinary(t, &bin.worker)
	needBinary(t, &bin.ref)
	needBinary(t, &bin.agent)
	base = t.TempDir()
	dir = filepath.Join(base, "spool")
	s, err := spool.Create(dir, interopQueues, nil)
	if err != nil {
		t.Fatal(err)
	}
	return base, dir, s
}

package spool

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The crash-window test: producer, mover and remover processes are
// SIGKILLed again and again, by the test after a random delay or by
// themselves at a random file-system call, so that the kills land inside
// enqueue, checkout, save and remove. Afterwards every acknowledged entry is
// in exactly one queue (never two places), or was being removed, and every
// other file left is of a kind that the reference's monitor reports.

func init() {
	helpers["crash-producer"] = crashProducer
	helpers["crash-mover"] = crashMover
	helpers["crash-remover"] = crashRemover
}

// crashHelper is what the three roles share: the spool opened through a
// hookFS that kills the process at the SPOOL_KILL_AT-th call (0: never),
// after appending "<phase> <op> <path>" to SPOOL_KILLS, and an append-only
// log written with one write(2) per line.
type crashHelper struct {
	s     *Spool
	phase atomic.Value // string: what the helper is doing
	log   *os.File
}

func newCrashHelper() (*crashHelper, error) {
	h := &crashHelper{}
	h.phase.Store("open")
	killAt, _ := strconv.ParseInt(os.Getenv("SPOOL_KILL_AT"), 10, 64)
	var calls atomic.Int64
	fs := &hookFS{hook: func(op, path string) error {
		if calls.Add(1) == killAt {
			if f, err := appendLog(os.Getenv("SPOOL_KILLS")); err == nil {
				f.WriteString(fmt.Sprintf("%s %s %s\n", h.phase.Load(), op, path))
			}
			unix.Kill(unix.Getpid(), unix.SIGKILL)
			select {}
		}
		return nil
	}}
	s, err := helperSpool(fs)
	if err != nil {
		return nil, err
	}
	h.s = s
	// A log of its own: a line cut short by a SIGKILL stays the last of
	// its file (readLines drops it) instead of running into the next
	// helper's first line, which once hid a logged removal.
	if h.log, err = appendLog(fmt.Sprintf("%s.%d", os.Getenv("SPOOL_LOG"), os.Getpid())); err != nil {
		return nil, err
	}
	return h, nil
}

// record appends one line to the helper's log with a single write.
func (h *crashHelper) record(line string) error {
	h.phase.Store("log")
	_, err := h.log.WriteString(line + "\n")
	return err
}

// crashProducer enqueues into queue a forever: metadata "orig", payload
// "payload-<pid>-<i>". Only after Enqueue returns does it log "<name> <payload>".
func crashProducer() int {
	h, err := newCrashHelper()
	if err != nil {
		return helperFail(err)
	}
	fmt.Println("ready")
	for i := 0; ; i++ {
		data := fmt.Sprintf("payload-%d-%d", os.Getpid(), i)
		h.phase.Store("enqueue")
		name, err := h.s.EnqueueBytes(context.Background(), "a", []byte("orig"), []byte(data), EnqueueOptions{})
		if err != nil {
			return helperFail(err)
		}
		if err := h.record(name + " " + data); err != nil {
			return helperFail(err)
		}
	}
}

// startConsumer recovers stale checkouts (safe beside live workers: they
// hold locks) and returns a reader of queue.
func (h *crashHelper) startConsumer(queue string) (*Reader, error) {
	h.phase.Store("recover")
	if _, err := h.s.Recover(context.Background(), 0, RecoverOptions{WorkersStopped: true}); err != nil {
		return nil, err
	}
	h.phase.Store("open")
	r, err := h.s.NewReader(queue)
	if err != nil {
		return nil, err
	}
	fmt.Println("ready")
	return r, nil
}

// crashMover moves entries from queue a to queue b with metadata "moved".
func crashMover() int {
	h, err := newCrashHelper()
	if err != nil {
		return helperFail(err)
	}
	r, err := h.startConsumer("a")
	if err != nil {
		return helperFail(err)
	}
	for {
		h.phase.Store("checkout")
		c, err := r.Dequeue(context.Background())
		if err != nil {
			return helperFail(err)
		}
		h.phase.Store("save")
		if err := c.Save("b", []byte("moved")); err != nil {
			return helperFail(err)
		}
	}
}

// crashRemover removes entries from queue b, logging "removing <name>"
// while it holds the entry and "removed <name>" once Remove returned.
func crashRemover() int {
	h, err := newCrashHelper()
	if err != nil {
		return helperFail(err)
	}
	r, err := h.startConsumer("b")
	if err != nil {
		return helperFail(err)
	}
	for {
		h.phase.Store("checkout")
		c, err := r.Dequeue(context.Background())
		if err != nil {
			return helperFail(err)
		}
		if err := h.record("removing " + c.Name()); err != nil {
			return helperFail(err)
		}
		h.phase.Store("remove")
		if err := c.Remove(); err != nil {
			return helperFail(err)
		}
		if err := h.record("removed " + c.Name()); err != nil {
			return helperFail(err)
		}
	}
}

// runUntilKilled runs one helper until it dies: it either kills itself at
// its killAt-th file-system call, or the test kills it after delay from
// its "ready" line. It reports whether the helper died of SIGKILL, and an
// error for any other death.
func runUntilKilled(role string, env []string, killAt int, delay time.Duration) (bool, error) {
	exe, err := os.Executable()
	if err != nil {
		return false, err
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), append([]string{helperEnv + "=" + role, fmt.Sprint("SPOOL_KILL_AT=", killAt)}, env...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	pr, pw, err := os.Pipe()
	if err != nil {
		return false, err
	}
	defer pr.Close()
	cmd.Stdout = pw
	if err := cmd.Start(); err != nil {
		pw.Close()
		return false, err
	}
	pw.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	ready := make(chan bool, 1)
	go func() {
		l, _ := bufio.NewReader(pr).ReadString('\n')
		ready <- strings.TrimSpace(l) == "ready"
	}()
	var werr error
	select {
	case werr = <-done:
	case ok := <-ready:
		limit := delay
		if killAt > 0 || !ok {
			limit = 3 * time.Second // a self-kill comes after so many calls
		}
		select {
		case werr = <-done:
		case <-time.After(limit):
			cmd.Process.Kill()
			werr = <-done
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		return false, fmt.Errorf("%s did not start", role)
	}
	var ee *exec.ExitError
	if errors.As(werr, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			return true, nil
		}
	}
	return false, fmt.Errorf("%s exited without being killed: %v: %s", role, werr, stderr.String())
}

func TestCrashWindows(t *testing.T) {
	const target = 240 // SIGKILLs
	dir := filepath.Join(t.TempDir(), "spool")
	logs := t.TempDir()
	if _, err := Create(dir, []string{"a", "b"}, &Options{Durability: DurabilityNone}); err != nil {
		t.Fatal(err)
	}
	slots := []string{"crash-producer", "crash-producer", "crash-mover", "crash-mover", "crash-remover", "crash-remover"}
	var kills, selfKills atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, len(slots))
	start := time.Now()
	for i, role := range slots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), uint64(time.Now().UnixNano())))
			for kills.Load() < target {
				durability := "none"
				if rng.IntN(4) == 0 {
					durability = "full"
				}
				killAt := 0
				if rng.IntN(2) == 0 {
					killAt = 1 + rng.IntN(300)
				}
				delay := time.Duration(1+rng.IntN(40)) * time.Millisecond
				env := []string{
					"SPOOL_DIR=" + dir,
					"SPOOL_DURABILITY=" + durability,
					fmt.Sprintf("SPOOL_LOG=%s/%s-%d", logs, role, i),
					"SPOOL_KILLS=" + logs + "/kills",
				}
				killed, err := runUntilKilled(role, env, killAt, delay)
				if err != nil {
					errc <- err
					return
				}
				if killed {
					kills.Add(1)
				}
			}
			errc <- nil
		}()
	}
	wg.Wait()
	for range slots {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	selfKills.Store(int64(len(readLines(t, logs+"/kills"))))
	t.Logf("%d SIGKILLs (%d self-inflicted at a file-system call) in %v", kills.Load(), selfKills.Load(), time.Since(start).Round(time.Millisecond))
	if kills.Load() < target {
		t.Fatalf("only %d SIGKILLs", kills.Load())
	}

	// Where the self-inflicted kills landed.
	phases := map[string]int{}
	ops := map[string]int{}
	for _, l := range readLines(t, logs+"/kills") {
		f := strings.Fields(l)
		phases[f[0]]++
		ops[f[0]+" "+f[1]]++
	}
	t.Logf("self-kills by phase: %v", phases)
	t.Logf("self-kills by phase and call: %v", ops)
	for _, p := range []string{"enqueue", "checkout", "save", "remove"} {
		if phases[p] == 0 {
			t.Errorf("no kill landed in %s", p)
		}
	}

	checkAfterCrashes(t, dir, logs)
}

// checkAfterCrashes recovers the stale checkouts of the dead helpers and
// checks every entry against the helpers' logs.
func checkAfterCrashes(t *testing.T, dir, logs string) {
	acked := map[string]string{} // name -> payload
	for _, l := range readLines(t, logs+"/crash-producer-*") {
		name, data, ok := strings.Cut(l, " ")
		if !ok {
			t.Fatalf("bad producer log line %q", l)
		}
		acked[name] = data
	}
	removing := map[string]bool{}
	removed := map[string]int{}
	for _, l := range readLines(t, logs+"/crash-remover-*") {
		what, name, _ := strings.Cut(l, " ")
		switch what {
		case "removing":
			removing[name] = true
		case "removed":
			removed[name]++
		default:
			t.Fatalf("bad remover log line %q", l)
		}
	}
	if len(acked) == 0 || len(removed) == 0 {
		t.Fatalf("no progress: %d entries acknowledged, %d removed", len(acked), len(removed))
	}

	s, err := Open(dir, &Options{Durability: DurabilityNone})
	if err != nil {
		t.Fatal(err)
	}
	before := scanSpool(t, dir)
	stranded := 0
	for _, l := range before.locs {
		for _, d := range l {
			if strings.HasSuffix(d, CheckoutDir) {
				stranded++
			}
		}
	}
	rs, err := s.Recover(context.Background(), 0, RecoverOptions{WorkersStopped: true})
	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if len(rs) != stranded {
		t.Errorf("Recover returned %d entries, %d were checked out", len(rs), stranded)
	}
	after := scanSpool(t, dir)

	counts := map[string]int{}
	for name, l := range after.locs {
		if len(l) > 1 {
			t.Errorf("entry %s is in %d places: %v", name, len(l), l)
			continue
		}
		counts["live entries"]++
		loc := l[0]
		if strings.HasSuffix(loc, CheckoutDir) {
			t.Errorf("entry %s still checked out after Recover", name)
		}
		if !after.registry[name] {
			t.Errorf("entry %s in %s has no registry file (orphaned queue entry)", name, loc)
		}
		data, err := os.ReadFile(filepath.Join(dir, DataDir, name))
		switch {
		case err != nil:
			t.Errorf("entry %s in %s has no payload (the reference's monitor would not notice): %v", name, loc, err)
		case acked[name] != "" && string(data) != acked[name]:
			t.Errorf("entry %s has payload %q, want %q", name, data, acked[name])
		case !strings.HasPrefix(string(data), "payload-"):
			t.Errorf("entry %s has payload %q", name, data)
		}
		meta, err := os.ReadFile(filepath.Join(dir, loc, name))
		if err != nil || (loc == "b" && string(meta) != "moved") || (loc == "a" && string(meta) != "orig" && string(meta) != "moved") {
			t.Errorf("entry %s in %s has metadata %q (%v)", name, loc, meta, err)
		}
		if acked[name] == "" {
			counts["live entries never acknowledged (killed before logging)"]++
		}
	}
	for name := range acked {
		switch n := len(after.locs[name]); {
		case n == 0 && !removing[name]:
			t.Errorf("acknowledged entry %s is lost: in no queue and never removed", name)
		case n == 0:
			counts["acknowledged and removed"]++
		case removed[name] > 0:
			t.Errorf("entry %s is in %v after its removal returned", name, after.locs[name])
		}
	}
	for name, n := range removed {
		if n > 1 {
			t.Errorf("entry %s removed %d times", name, n)
		}
	}
	// Everything else must be of a kind the reference's monitor reports.
	for name := range after.registry {
		if len(after.locs[name]) == 0 {
			counts["orphaned registry files (monitor: Orphaned Registry)"]++
		}
	}
	for name := range after.data {
		if !after.registry[name] {
			counts["unregistered payloads (monitor: Orphaned Data)"]++
		}
	}
	for _, f := range after.tmp {
		// The monitor looks the temporary file's own name up in the
		// registry: an enqueue's .tmp/<name> is registered (Too_old once
		// old), a save's .tmp/<name>.<random> never is (Orphaned).
		if after.registry[f] {
			counts["staged metadata of a registered name (monitor: Too_old Tmp)"]++
		} else {
			counts["unregistered temporary files (monitor: Orphaned Tmp)"]++
		}
	}
	for _, u := range after.unexpected {
		t.Errorf("unexpected file %s", u)
	}
	var lines []string
	for k, v := range counts {
		lines = append(lines, fmt.Sprintf("%6d %s", v, k))
	}
	slices.Sort(lines)
	t.Logf("%d acknowledged, %d removals logged, %d checkouts recovered; after recovery:\n%s",
		len(acked), len(removed), len(rs), strings.Join(lines, "\n"))

	// The spool still works.
	name := mustEnqueue(t, s, "a", "m", "d", EnqueueOptions{})
	if err := s.Remove("a", name); err != nil {
		t.Fatal(err)
	}
}

// spoolScan is what a spool directory holds.
type spoolScan struct {
	locs       map[string][]string // entry name -> directories holding it
	registry   map[string]bool
	data       map[string]bool
	tmp        []string
	unexpected []string
}

func scanSpool(t *testing.T, dir string) spoolScan {
	t.Helper()
	sc := spoolScan{locs: map[string][]string{}, registry: map[string]bool{}, data: map[string]bool{}}
	names := func(d string) []string {
		ents, err := os.ReadDir(filepath.Join(dir, d))
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range ents {
			if e.Name() == CheckoutDir {
				continue
			}
			if !e.Type().IsRegular() {
				sc.unexpected = append(sc.unexpected, d+"/"+e.Name())
				continue
			}
			out = append(out, e.Name())
		}
		return out
	}
	for _, d := range []string{"a", "a/" + CheckoutDir, "b", "b/" + CheckoutDir} {
		for _, n := range names(d) {
			sc.locs[n] = append(sc.locs[n], d)
		}
	}
	for _, n := range names(RegistryDir) {
		sc.registry[n] = true
	}
	for _, n := range names(DataDir) {
		sc.data[n] = true
	}
	sc.tmp = names(TmpDir)
	top, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range top {
		switch e.Name() {
		case RegistryDir, DataDir, TmpDir, "a", "b":
		default:
			sc.unexpected = append(sc.unexpected, e.Name())
		}
	}
	return sc
}

package reliability

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spool-agent/spool-agent/reliability/internal/workload"
	"github.com/spool-agent/spool-agent/spool"
)

// repairArgs are the arguments of spool-agent repair --apply on a quiet
// spool whose workers are all stopped: any age counts.
func repairArgs(dir string) []string {
	return []string{bin.agent, "repair", dir, "--apply", "--max-tmp-file-age", "0s", "--max-checked-out-age", "0s", "--workers-stopped"}
}

// mustSurvive is an acknowledged entry that repair must keep: by name, in
// some queue (or its checkout directory), with its metadata, and with its
// payload unless it had none (then, after repair, in quarantine with an
// empty one).
type mustSurvive struct {
	name, id string
	noData   bool
}

// census returns, by entry name, the places (queue or queue/.checkout)
// that hold it.
func census(t *testing.T, dir string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		for _, d := range []string{e.Name(), e.Name() + "/" + spool.CheckoutDir} {
			names, err := os.ReadDir(filepath.Join(dir, d))
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range names {
				if n.Name() != spool.CheckoutDir {
					out[n.Name()] = append(out[n.Name()], d)
				}
			}
		}
	}
	return out
}

// checkSurvivors checks every entry of want: at least one copy (exactly
// one when final) with its metadata, its payload intact, and, for one
// without payload, once final, in quarantine with an empty payload.
func checkSurvivors(t *testing.T, dir string, want []mustSurvive, final bool, when string) {
	t.Helper()
	where := census(t, dir)
	bad := 0
	for _, w := range want {
		places := where[w.name]
		fail := func(format string, args ...any) {
			bad++
			if bad <= 10 {
				t.Errorf("%s: entry %s (id %s): %s", when, w.name, w.id, fmt.Sprintf(format, args...))
			}
		}
		if len(places) == 0 || final && len(places) != 1 {
			fail("in %v", places)
			continue
		}
		meta, err := os.ReadFile(filepath.Join(dir, places[0], w.name))
		if id, ok := workload.ParseID(meta); err != nil || !ok || id != w.id {
			fail("metadata %q, %v", meta, err)
		}
		data, err := os.ReadFile(filepath.Join(dir, spool.DataDir, w.name))
		switch {
		case w.noData && final && (err != nil || len(data) != 0 || places[0] != "quarantine"):
			fail("in %v with payload %d bytes, %v; want quarantine with an empty payload", places, len(data), err)
		case !w.noData && (err != nil || !workload.CheckPayload(w.id, data)):
			fail("payload %d bytes, %v", len(data), err)
		}
		if final {
			if _, err := os.Lstat(filepath.Join(dir, spool.RegistryDir, w.name)); err != nil {
				fail("%v", err)
			}
		}
	}
	if bad > 10 {
		t.Errorf("%s: %d entries wrong in all", when, bad)
	}
}

// killRepairs runs repair --apply on dir kills times, each SIGKILLed after
// a random delay below maxDelay, checking after each kill that every entry
// of want survives; then it runs repair to the end and checks that fsck is
// clean, every entry is there exactly once, and a second run plans nothing.
func killRepairs(t *testing.T, dir string, want []mustSurvive, kills int, maxDelay time.Duration) {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
	killed, finished, midway, actions := 0, 0, 0, 0
	for i := 0; i < kills; i++ {
		cmd := exec.Command(repairArgs(dir)[0], repairArgs(dir)[1:]...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(rng.Int64N(int64(maxDelay))))
		cmd.Process.Signal(syscall.SIGKILL)
		err := cmd.Wait()
		if ee, ok := err.(*exec.ExitError); ok && ee.Sys().(syscall.WaitStatus).Signaled() {
			killed++
			if n := strings.Count(out.String(), "\ndone ") + boolInt(strings.HasPrefix(out.String(), "done ")); n > 0 {
				midway++
				actions += n
			}
		} else {
			finished++
		}
		checkSurvivors(t, dir, want, false, fmt.Sprintf("after kill %d", i))
		if t.Failed() {
			t.Fatalf("repair's output before the kill:\n%s", out.String())
		}
	}
	t.Logf("repair --apply: %d runs SIGKILLed (%d of them after carrying out some actions, %d actions in all), %d finished before the signal", killed, midway, actions, finished)
	stdout, stderr, code := runCmd(t, time.Minute, nil, nil, repairArgs(dir)...)
	if code != 0 {
		t.Fatalf("final repair --apply: exit %d\n%s%s", code, stdout, stderr)
	}
	checkSurvivors(t, dir, want, true, "after repair")
	if stdout, stderr, code := runCmd(t, time.Minute, nil, nil, bin.agent, "fsck", dir, "--max-tmp-file-age", "0s", "--max-checked-out-age", "0s"); code != 0 {
		t.Errorf("fsck after repair: exit %d\n%s%s", code, stdout, stderr)
	}
	stdout, stderr, code = runCmd(t, time.Minute, nil, nil, append(repairArgs(dir)[:len(repairArgs(dir))-1], "-o", "json")...)
	var doc struct {
		Actions []json.RawMessage `json:"actions"`
		Left    []json.RawMessage `json:"left"`
	}
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil || code != 0 || len(doc.Actions)+len(doc.Left) > 0 {
		t.Errorf("second repair plans something: exit %d, %v\n%s%s", code, err, stdout, stderr)
	}
}

// TestRepairKilled builds a spool with hundreds of problems of every
// repairable kind (by hand, as killed workers leave them), SIGKILLs repair
// --apply at random points again and again, and checks after every kill
// that no acknowledged entry was lost, and at the end that fsck is clean,
// every entry is there exactly once and a second run plans nothing.
func TestRepairKilled(t *testing.T) {
	needBinary(t, &bin.agent)
	dir := filepath.Join(t.TempDir(), "spool")
	s, err := spool.Create(dir, []string{"incoming", "done"}, &spool.Options{Durability: spool.DurabilityNone})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	p := func(rel ...string) string { return filepath.Join(append([]string{dir}, rel...)...) }
	var want []mustSurvive
	const n = 480
	for i := range n {
		name, id := fmt.Sprintf("e%03d", i), fmt.Sprintf("id%03d", i)
		_, err := s.EnqueueBytes(context.Background(), "incoming", workload.Metadata(id), workload.Payload(id, 300), spool.EnqueueOptions{Name: name})
		must(err)
		w := mustSurvive{name: name, id: id}
		switch i % 8 {
		case 0: // an entry without registry file
			must(os.Remove(p(".registry", name)))
		case 1: // an entry without payload: quarantined with an empty one
			must(os.Remove(p(".data", name)))
			w.noData = true
		case 2: // a stale checkout
			must(os.Rename(p("incoming", name), p("incoming", ".checkout", name)))
		case 3: // duplicated
			b, err := os.ReadFile(p("incoming", name))
			must(err)
			must(os.WriteFile(p("done", name), b, 0o644))
		case 4: // a leftover copy of the metadata, and a temp file of an atomic write
			must(os.WriteFile(p(".tmp", name), workload.Metadata(id), 0o644))
			must(os.WriteFile(p(".tmp", name+".tmp.abcdef"), []byte("half"), 0o644))
		case 5: // a stale checkout without payload (a killed reference remove)
			must(os.Rename(p("incoming", name), p("incoming", ".checkout", name)))
			must(os.Remove(p(".data", name)))
			w.noData = true
		}
		want = append(want, w)
		switch i % 4 {
		case 0: // a reservation with a partial payload (a killed enqueue)
			r := fmt.Sprintf("r%03d", i)
			must(os.WriteFile(p(".registry", r), nil, 0o644))
			must(os.WriteFile(p(".data", r), []byte("partial"), 0o644))
		case 1: // a payload with nothing else: adopted into quarantine
			must(os.WriteFile(p(".data", fmt.Sprintf("z%03d", i)), []byte("orphan payload"), 0o644))
		}
	}
	killRepairs(t, dir, want, 40, 400*time.Millisecond)
	// The adopted payloads and the copies of duplicates are in quarantine.
	q, err := os.ReadDir(p("quarantine"))
	must(err)
	if wantQ := n/8*2 + n/4 + n/8; len(q)-1 != wantQ { // -1: .checkout
		t.Errorf("quarantine holds %d entries, want %d", len(q)-1, wantQ)
	}
}

// TestRepairAfterMixedCrash runs producers, consumers and removers of the
// OCaml reference (refworker) and of this library (spoolworker) on one
// spool with SIGKILLs, stops them all, and repairs what the killed workers
// left with repair --apply, itself SIGKILLed at random points: every entry
// acknowledged and not being removed must be there exactly once with its
// payload, fsck and the reference's monitor must find the spool clean, and
// a second run must plan nothing.
func TestRepairAfterMixedCrash(t *testing.T) {
	base, dir, s := interopSpool(t)
	s.Close()
	w := &mixedWorkers{dir: dir, logDir: base}
	for _, impl := range []string{"ref", "lib"} {
		w.add(impl, "producer")
		w.add(impl, "consumer")
		w.add(impl, "remover")
	}
	w.start(t)
	fig := &crashFigures{Test: "repair-after-crash", KillsByRole: map[string]int{}}
	killLoop(t, w.procs, roleOf, 60, time.Now().Add(30*time.Second), fig, nil)
	w.stop(t, syscall.SIGKILL)
	l := readInteropLogs(t, w.ackLogs, w.workLogs)

	var want []mustSurvive
	for id, name := range l.acked {
		if l.completed(id) == 0 && l.count("removing", id) == 0 {
			want = append(want, mustSurvive{name: name, id: id})
		}
	}
	slices.SortFunc(want, func(a, b mustSurvive) int { return strings.Compare(a.name, b.name) })
	stdout, _, _ := runCmd(t, time.Minute, nil, nil, bin.agent, "fsck", dir, "--max-tmp-file-age", "0s", "--max-checked-out-age", "0s")
	t.Logf("%d kills; %d acknowledged entries to keep; fsck before repair: %d problems", fig.Kills, len(want), strings.Count(stdout, "\n"))
	killRepairs(t, dir, want, 10, 100*time.Millisecond)

	// The quarantine queue exists only if some repair needed it.
	queues := "incoming,done"
	if _, err := os.Stat(filepath.Join(dir, "quarantine", spool.CheckoutDir)); err == nil {
		queues += ",quarantine"
	}
	out, errOut, code := runCmd(t, 30*time.Second, nil, nil, bin.ref, "fsck", "-spool", dir, "-queues", queues,
		"-max-checked-out-age", "0s", "-max-tmp-file-age", "0s")
	if code != 0 || strings.TrimSpace(out) != "[]" && strings.TrimSpace(out) != "null" {
		t.Errorf("the reference's monitor after repair: exit %d: %s%s", code, out, errOut)
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestRepairDirectorySwap: while repair --apply runs, an attacker who can
// write inside the spool swaps one of its directories with a symlink to a
// victim directory outside the spool in a tight renameat2(RENAME_EXCHANGE)
// loop (as TestHostileDirectorySwap does for the other commands): the victim
// must stay unchanged, repair must not crash, and no entry may be lost.
func TestRepairDirectorySwap(t *testing.T) {
	needBinary(t, &bin.agent)
	base := t.TempDir()
	const runs = 15
	targets := []string{spool.DataDir, spool.RegistryDir, spool.TmpDir, "in", filepath.Join("in", spool.CheckoutDir), "out"}
	for _, target := range targets {
		t.Run(strings.ReplaceAll(target, "/", "_"), func(t *testing.T) {
			var swaps int64
			changed, succeeded, acted := 0, 0, 0
			codes := map[int]int{}
			for run := range runs {
				rundir := filepath.Join(base, fmt.Sprintf("%s-%d", strings.ReplaceAll(target, "/", "_"), run))
				dir, victim := filepath.Join(rundir, "spool"), filepath.Join(rundir, "victim")
				if err := os.Mkdir(rundir, 0o755); err != nil {
					t.Fatal(err)
				}
				// e1 waiting without registry file (register), e2 a stale
				// checkout (recover), a killed enqueue (release), an
				// orphaned payload (adopt), an entry without payload
				// (quarantine).
				hostileSpool(t, dir)
				os.Remove(filepath.Join(dir, spool.RegistryDir, "e1"))
				os.WriteFile(filepath.Join(dir, spool.RegistryDir, "r"), nil, 0o644)
				os.WriteFile(filepath.Join(dir, spool.DataDir, "r"), []byte("partial"), 0o644)
				os.WriteFile(filepath.Join(dir, spool.DataDir, "z"), []byte("orphan"), 0o644)
				os.WriteFile(filepath.Join(dir, "out", "e3"), []byte("meta e3"), 0o644)
				os.WriteFile(filepath.Join(dir, spool.RegistryDir, "e3"), nil, 0o644)
				makeVictim(t, victim, target == "out")
				before := snapshotTree(t, victim)
				link := filepath.Join(filepath.Dir(filepath.Join(dir, target)), ".swap")
				if err := os.Symlink(victim, link); err != nil {
					t.Fatal(err)
				}
				sw := startSwapper(filepath.Join(dir, target), link)
				stdout, stderr, code := runCmd(t, 30*time.Second, nil, nil,
					bin.agent, "repair", dir, "--apply", "--max-tmp-file-age", "0s", "--max-checked-out-age", "0s", "--workers-stopped", "--quarantine-queue", "out")
				n, err := sw.finish()
				if err != nil {
					t.Fatalf("swapper: %v", err)
				}
				swaps += n
				codes[code]++
				if code == 0 {
					succeeded++
				}
				if strings.Contains(stdout, "done ") {
					acted++
				}
				if strings.Contains(stderr, "panic:") || strings.Contains(stderr, "fatal error:") {
					t.Errorf("run %d: repair crashed: %s", run, stderr)
				}
				if d := diffTrees(before, snapshotTree(t, victim)); d != "" {
					changed++
					if changed <= 3 {
						t.Errorf("run %d: repair with %s swapped for a symlink changed the victim directory outside the spool: %s", run, target, d)
					}
				}
				// Nothing lost: e1, e2 and e3 are still entries of the spool.
				where := census(t, dir)
				for _, e := range []string{"e1", "e2", "e3"} {
					if len(where[e]) == 0 {
						t.Errorf("run %d: entry %s lost (spool: %v)", run, e, where)
					}
				}
				os.RemoveAll(rundir)
			}
			if changed > 0 {
				t.Errorf("the victim changed in %d of %d runs", changed, runs)
			}
			t.Logf("%d runs (exit codes %v; %d carried out actions), %d swaps in all, victim changed in %d", runs, codes, acted, swaps, changed)
		})
	}
}

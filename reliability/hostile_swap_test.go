package reliability

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spool-agent/spool-agent/spool"
)

// hostileRuns is how many times each command runs against each swapped
// directory.
const hostileRuns = 40

// victimFile is what a snapshot records of one file or directory.
type victimFile struct {
	mode  os.FileMode
	mtime int64
	data  string // a file's contents, a symlink's target
}

// snapshotTree records every file and directory under root (root
// included): type and mode, mtime to the nanosecond, and contents.
func snapshotTree(t *testing.T, root string) map[string]victimFile {
	t.Helper()
	out := map[string]victimFile{}
	err := filepath.Walk(root, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		f := victimFile{mode: fi.Mode(), mtime: fi.ModTime().UnixNano()}
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			f.data = string(b)
		case fi.Mode()&os.ModeSymlink != 0:
			f.data, _ = os.Readlink(path)
		}
		out[rel] = f
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// diffTrees describes how after differs from before ("" when identical).
func diffTrees(before, after map[string]victimFile) string {
	var d []string
	for p, b := range before {
		a, ok := after[p]
		switch {
		case !ok:
			d = append(d, p+" removed")
		case a.mode != b.mode:
			d = append(d, fmt.Sprintf("%s mode %v -> %v", p, b.mode, a.mode))
		case a.data != b.data:
			d = append(d, p+" contents changed")
		case a.mtime != b.mtime:
			d = append(d, fmt.Sprintf("%s mtime %v -> %v", p, time.Unix(0, b.mtime).UTC(), time.Unix(0, a.mtime).UTC()))
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			d = append(d, p+" created")
		}
	}
	return strings.Join(d, "; ")
}

// makeVictim creates a root-owned directory outside the spool holding what
// a command redirected there would act on: files named like the spool's
// entries (e1, e2) and a .checkout directory with the same names, all old
// enough for any recover, and an unrelated file.
//
// As a destination (empty), it holds only the unrelated file, so that an
// entry moved there would not be stopped by a name already taken.
func makeVictim(t *testing.T, dir string, empty bool) {
	t.Helper()
	old := time.Now().Add(-3 * time.Hour)
	files := []string{".checkout/e1", ".checkout/e2", "e1", "e2", "precious"}
	if empty {
		files = []string{".checkout/precious", "precious"}
	}
	for _, p := range files {
		path := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("victim "+p), 0o600); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(path, old, old)
	}
	os.Chtimes(filepath.Join(dir, ".checkout"), old, old)
	os.Chtimes(dir, old, old)
}

// hostileSpool creates the spool of one attack run: queues in and out; e1
// waiting in in; e2 checked out of in (without a holder) for three hours.
func hostileSpool(t *testing.T, dir string) {
	t.Helper()
	s, err := spool.Create(dir, []string{"in", "out"}, &spool.Options{Durability: spool.DurabilityNone})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"e1", "e2"} {
		if _, err := s.EnqueueBytes(context.Background(), "in", []byte("meta "+n), []byte("data "+n), spool.EnqueueOptions{Name: n}); err != nil {
			t.Fatal(err)
		}
	}
	co := filepath.Join(dir, "in", spool.CheckoutDir, "e2")
	if err := os.Rename(filepath.Join(dir, "in", "e2"), co); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-3 * time.Hour)
	os.Chtimes(co, old, old)
}

// swapper exchanges two paths with renameat2(RENAME_EXCHANGE) in a tight
// loop until stopped, and leaves them as they were.
type swapper struct {
	a, b  string
	stop  chan struct{}
	done  chan struct{}
	swaps atomic.Int64
	err   error
}

func startSwapper(a, b string) *swapper {
	w := &swapper{a: a, b: b, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			select {
			case <-w.stop:
				if w.swaps.Load()%2 == 1 {
					w.err = exchangePaths(a, b)
				}
				return
			default:
			}
			if err := exchangePaths(a, b); err != nil {
				w.err = err
				return
			}
			w.swaps.Add(1)
		}
	}()
	return w
}

func (w *swapper) finish() (int64, error) {
	close(w.stop)
	<-w.done
	return w.swaps.Load(), w.err
}

// TestHostileDirectorySwap: while the CLI's rm, mv, recover and enqueue run
// (as the test's user, root in CI), an attacker who can write inside the
// spool swaps one of its directories (.data, .registry, .tmp, a queue,
// QUEUE/.checkout) with a symlink to a victim directory outside the spool,
// in a tight renameat2(RENAME_EXCHANGE) loop. Each command runs
// hostileRuns times against each directory: the victim directory must stay
// byte-for-byte and mtime-for-mtime unchanged, no command may crash, and a
// command that succeeds must have done its job inside the spool. About 2.5
// minutes on a shared 2-vCPU machine: the attacker's loop keeps the
// directories' locks busy.
func TestHostileDirectorySwap(t *testing.T) {
	needBinary(t, &bin.agent)
	base := t.TempDir()
	payload := filepath.Join(base, "payload")
	os.WriteFile(payload, []byte("attacker payload"), 0o644)
	exists := func(path string) bool { _, err := os.Lstat(path); return err == nil }
	commands := []struct {
		name string
		args func(dir string) []string
		// done reports whether a command that exited 0 did its job in
		// the spool.
		done func(dir, stdout string) bool
	}{
		{"rm", func(dir string) []string { return []string{"rm", dir, "e1"} },
			func(dir, _ string) bool { return !exists(filepath.Join(dir, "in", "e1")) }},
		{"mv", func(dir string) []string { return []string{"mv", "--to", "out", dir, "e1"} },
			func(dir, _ string) bool { return exists(filepath.Join(dir, "out", "e1")) }},
		// recover skips a queue or .checkout that is not a directory when
		// it looks (swapped): e2 is back in its queue or still checked out.
		{"recover", func(dir string) []string { return []string{"recover", "--older-than", "1m", dir} },
			func(dir, _ string) bool {
				return exists(filepath.Join(dir, "in", "e2")) || exists(filepath.Join(dir, "in", spool.CheckoutDir, "e2"))
			}},
		{"enqueue", func(dir string) []string {
			return []string{"enqueue", dir, "in", "--metadata", "m", "--data-file", payload, "--durability", "none"}
		}, func(dir, stdout string) bool {
			name := strings.TrimSpace(stdout)
			return name != "" && exists(filepath.Join(dir, "in", name)) && exists(filepath.Join(dir, spool.DataDir, name))
		}},
	}
	// in is the queue the commands act on, out mv's destination.
	targets := []string{spool.DataDir, spool.RegistryDir, spool.TmpDir, "in", filepath.Join("in", spool.CheckoutDir), "out"}
	for _, c := range commands {
		for _, target := range targets {
			t.Run(c.name+"/"+strings.ReplaceAll(target, "/", "_"), func(t *testing.T) {
				var swaps int64
				changed, crashed, succeeded := 0, 0, 0
				refusal := "" // the first refusal's message
				for run := range hostileRuns {
					rundir := filepath.Join(base, fmt.Sprintf("%s-%s-%d", c.name, strings.ReplaceAll(target, "/", "_"), run))
					dir, victim := filepath.Join(rundir, "spool"), filepath.Join(rundir, "victim")
					if err := os.Mkdir(rundir, 0o755); err != nil {
						t.Fatal(err)
					}
					hostileSpool(t, dir)
					makeVictim(t, victim, target == "out")
					before := snapshotTree(t, victim)
					// The symlink sits beside the directory it replaces,
					// under a name the attacker may create there.
					link := filepath.Join(filepath.Dir(filepath.Join(dir, target)), ".swap")
					if err := os.Symlink(victim, link); err != nil {
						t.Fatal(err)
					}
					sw := startSwapper(filepath.Join(dir, target), link)
					stdout, stderr, code := runCmd(t, 30*time.Second, nil, nil, append([]string{bin.agent}, c.args(dir)...)...)
					n, err := sw.finish()
					if err != nil {
						t.Fatalf("swapper: %v", err)
					}
					if code != 0 && refusal == "" {
						refusal = firstLine(stderr)
					}
					if code == 0 {
						succeeded++
						if !c.done(dir, stdout) {
							t.Errorf("run %d: %s exited 0 but did not do its job in the spool (%q)", run, c.name, stdout)
						}
					}
					swaps += n
					if strings.Contains(stderr, "panic:") || strings.Contains(stderr, "fatal error:") {
						crashed++
						if crashed == 1 {
							t.Errorf("run %d: %s crashed: %s", run, c.name, stderr)
						}
					}
					if d := diffTrees(before, snapshotTree(t, victim)); d != "" {
						changed++
						if changed <= 3 {
							t.Errorf("run %d: %s with %s swapped for a symlink changed the victim directory outside the spool: %s", run, c.name, target, d)
						}
					}
					os.RemoveAll(rundir)
				}
				if changed > 0 {
					t.Errorf("the victim changed in %d of %d runs", changed, hostileRuns)
				}
				t.Logf("%d runs (%d succeeded, the others refused, the first with %q), %d swaps in all, victim changed in %d", hostileRuns, succeeded, refusal, swaps, changed)
			})
		}
	}
}

package spool_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spool-agent/spool-agent/internal/fsys"
	"github.com/spool-agent/spool-agent/monitor"
	"github.com/spool-agent/spool-agent/spool"
	"golang.org/x/sys/unix"
)

// The fault-injection tests run whole entry life cycles through a faultFS
// and, for every call N of the life cycle and every kind of fault, make the
// Nth call fail. After the fault they check that
//
//   - the operation returned (no panic, no hang) and, if it returned nil,
//     did all of its work;
//   - the entry is where an acknowledged history allows: never in two
//     places, never without its payload or registry file, its payload and
//     metadata intact;
//   - a full fsck classifies everything left on disk: each file belongs to a
//     consistent entry or is named by a reported problem;
//
// and then, with the fault removed, that the entry can still be finished
// (recovered, removed) and that the spool keeps working.

// faultKind is one kind of injected fault.
type faultKind struct {
	name   string
	errno  unix.Errno
	short  bool
	sticky bool
}

var faultKinds = []faultKind{
	{name: "EIO", errno: unix.EIO},
	{name: "ENOSPC", errno: unix.ENOSPC},
	{name: "EACCES", errno: unix.EACCES},
	{name: "ENOENT", errno: unix.ENOENT},
	{name: "short-write", short: true},
	// A full disk: from the Nth call on, every call that may allocate
	// (create, write, fsync, rename, mkdir) fails with ENOSPC until space
	// is freed.
	{name: "disk-full", errno: unix.ENOSPC, sticky: true},
}

// place is where the entry is: "" (absent), "q1", "q1/.checkout", "q2", ...
// together with the metadata it has there.
type place struct {
	loc  string
	meta string
}

func (p place) String() string {
	if p.loc == "" {
		return "absent"
	}
	return p.loc + ":" + p.meta
}

var absent = place{}

// lcState is what the steps of a life cycle share.
type lcState struct {
	t    *testing.T
	s    *spool.Spool
	dir  string
	name string
	c    *spool.Checkout // the current checkout, if any
}

// lcStep is one operation of a life cycle. after is where the entry is when
// the step succeeds; also lists the other places a failed step may leave it
// in (besides where it was before and after).
type lcStep struct {
	op    string
	run   func(st *lcState) error
	after place
	also  []place
}

// lifecycle is a sequence of steps, with a setup that runs without faults.
type lifecycle struct {
	name  string
	setup func(st *lcState) place // returns where the entry is
	steps []lcStep
}

var lifecycles = []lifecycle{
	{
		name: "worker", // enqueue, checkout, save to another queue, checkout, remove
		steps: []lcStep{
			{op: "enqueue", after: place{"q1", meta1}, run: func(st *lcState) error {
				name, err := st.s.EnqueueBytes(context.Background(), "q1", []byte(meta1), []byte(payload), spool.EnqueueOptions{})
				if name != "" {
					st.name = name
				}
				return err
			}},
			{op: "checkout", after: place{"q1/.checkout", meta1}, run: func(st *lcState) error {
				c, err := st.s.Checkout(context.Background(), "q1", st.name)
				if err == nil {
					st.c = c
				}
				return err
			}},
			{op: "save", after: place{"q2", meta2}, also: []place{{"q1/.checkout", meta2}}, run: func(st *lcState) error {
				return st.c.Save("q2", []byte(meta2))
			}},
			{op: "checkout", after: place{"q2/.checkout", meta2}, run: func(st *lcState) error {
				c, err := st.s.Checkout(context.Background(), "q2", st.name)
				if err == nil {
					st.c = c
				}
				return err
			}},
			{op: "remove", after: absent, run: func(st *lcState) error {
				return st.c.Remove()
			}},
		},
	},
	{
		name: "admin", // reserve, enqueue under that name, rewrite metadata, move, remove
		steps: []lcStep{
			{op: "reserve", after: absent, run: func(st *lcState) error {
				name, err := st.s.Reserve(nil)
				if err == nil {
					st.name = name
				}
				return err
			}},
			{op: "enqueue-reserved", after: place{"q1", meta1}, run: func(st *lcState) error {
				if st.name == "" {
					return errors.New("no reserved name")
				}
				_, err := st.s.EnqueueBytes(context.Background(), "q1", []byte(meta1), []byte(payload), spool.EnqueueOptions{Name: st.name})
				return err
			}},
			{op: "write-metadata", after: place{"q1", meta2}, also: []place{{"q1/.checkout", meta1}, {"q1/.checkout", meta2}}, run: func(st *lcState) error {
				return st.s.WriteMetadata("q1", st.name, []byte(meta2))
			}},
			{op: "move", after: place{"q2", meta2}, also: []place{{"q1/.checkout", meta2}}, run: func(st *lcState) error {
				return st.s.Move("q1", st.name, "q2")
			}},
			{op: "remove", after: absent, also: []place{{"q2/.checkout", meta2}}, run: func(st *lcState) error {
				return st.s.Remove("q2", st.name)
			}},
		},
	},
	{
		name: "recover", // a holder crashed (no flock): recover, process with WithEntry, remove
		setup: func(st *lcState) place {
			name, err := st.s.EnqueueBytes(context.Background(), "q1", []byte(meta1), []byte(payload), spool.EnqueueOptions{})
			if err != nil {
				st.t.Fatal(err)
			}
			st.name = name
			// What a crashed worker leaves: the file in .checkout, no lock, an old mtime.
			co := filepath.Join(st.dir, "q1", ".checkout", name)
			if err := os.Rename(filepath.Join(st.dir, "q1", name), co); err != nil {
				st.t.Fatal(err)
			}
			old := time.Now().Add(-time.Hour)
			if err := os.Chtimes(co, old, old); err != nil {
				st.t.Fatal(err)
			}
			return place{"q1/.checkout", meta1}
		},
		steps: []lcStep{
			{op: "recover", after: place{"q1", meta1}, run: func(st *lcState) error {
				rs, err := st.s.Recover(context.Background(), time.Minute, spool.RecoverOptions{})
				if err == nil && (len(rs) != 1 || rs[0].Name != st.name) {
					return fmt.Errorf("recover returned %v, want just %s", rs, st.name)
				}
				return err
			}},
			{op: "with-entry", after: place{"q2", meta2}, also: []place{{"q1/.checkout", meta1}, {"q1/.checkout", meta2}}, run: func(st *lcState) error {
				return st.s.WithEntry(context.Background(), "q1", st.name, func(c *spool.Checkout) (spool.Action, error) {
					if string(c.Metadata()) != meta1 {
						return spool.Action{}, fmt.Errorf("metadata %q", c.Metadata())
					}
					return spool.SaveTo("q2", []byte(meta2)), nil
				})
			}},
			{op: "remove", after: absent, also: []place{{"q2/.checkout", meta2}}, run: func(st *lcState) error {
				return st.s.Remove("q2", st.name)
			}},
		},
	},
}

// newFaultSpool creates a spool with queues q1 and q2 (without faults) and
// opens it through ff with durability d and deterministic names.
func newFaultSpool(t *testing.T, dir string, ff *faultFS, d spool.Durability) *spool.Spool {
	t.Helper()
	if _, err := spool.Create(dir, []string{"q1", "q2"}, &spool.Options{Durability: spool.DurabilityNone}); err != nil {
		t.Fatal(err)
	}
	o := &spool.Options{Durability: d, Names: spool.PrefixNames("e")}
	fsys.SetOptions(o, ff)
	s, err := spool.Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// runLifecycle runs lc on a fresh spool in dir with ff armed by arm (nil:
// no fault). It returns the index of the failed step (len(steps) if none
// failed), the state, where the entry was before that step, and its error.
func runLifecycle(t *testing.T, lc lifecycle, dir string, ff *faultFS, d spool.Durability, arm func()) (int, *lcState, place, error) {
	t.Helper()
	st := &lcState{t: t, s: newFaultSpool(t, dir, ff, d), dir: dir}
	where := absent
	if lc.setup != nil {
		where = lc.setup(st)
	}
	if arm != nil {
		arm()
	}
	for i, step := range lc.steps {
		if err := step.run(st); err != nil {
			return i, st, where, err
		}
		where = step.after
	}
	return len(lc.steps), st, where, nil
}

// observe reports where entry name is in the spool, reading the disk
// directly (not through the faulty FS). A problem (two places, missing
// registry or payload, a damaged payload) is returned as an error.
func observe(dir, name string) (place, error) {
	if name == "" {
		return absent, nil
	}
	var found []place
	for _, loc := range []string{"q1", "q1/.checkout", "q2", "q2/.checkout"} {
		b, err := os.ReadFile(filepath.Join(dir, loc, name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return absent, err
		}
		found = append(found, place{loc, string(b)})
	}
	switch len(found) {
	case 0:
		return absent, nil
	case 1:
	default:
		return absent, fmt.Errorf("entry %s is in %d places: %v", name, len(found), found)
	}
	if _, err := os.Lstat(filepath.Join(dir, spool.RegistryDir, name)); err != nil {
		return found[0], fmt.Errorf("entry %s at %v has no registry file: %w", name, found[0], err)
	}
	data, err := os.ReadFile(filepath.Join(dir, spool.DataDir, name))
	if err != nil {
		return found[0], fmt.Errorf("entry %s at %v has no payload: %w", name, found[0], err)
	}
	if string(data) != payload {
		return found[0], fmt.Errorf("entry %s at %v: payload damaged: %q", name, found[0], data)
	}
	return found[0], nil
}

// checkClassified runs a full fsck of the spool (monitor.Check, as if an
// hour had passed, so that every checkout and temporary file counts as too
// old) and checks that every file on disk belongs to a consistent waiting
// entry or is named by a problem, and that nothing is duplicated.
func checkClassified(dir string) error {
	problems, err := monitor.Check(dir, monitor.DefaultLimits(), time.Now().Add(time.Hour))
	if err != nil {
		return fmt.Errorf("fsck: %w", err)
	}
	files, err := spoolFiles(dir)
	if err != nil {
		return err
	}
	named := map[string]bool{}
	for _, p := range problems {
		if p.Kind == monitor.KindDuplicated {
			return fmt.Errorf("fsck reports a duplicate: %v", p)
		}
		named[p.Name] = true
	}
	for _, f := range files {
		if !f.consistent && !named[f.name] {
			return fmt.Errorf("%s is neither part of a consistent entry nor reported by fsck (problems: %v)", f.path, problems)
		}
	}
	return nil
}

// finish brings the entry to the end of its life with the fault removed: it
// releases a checkout the test still holds, recovers stranded checkouts,
// and removes the entry wherever it is. Afterwards no entry may be left in
// a queue, and whatever files remain must be reported by fsck.
//
// A checkout the test still holds is finished by retrying Remove on it,
// which must then clean up completely (Remove is retryable); without one,
// leftovers of a failed remove can only be reported, which checkClassified
// checks.
func finish(st *lcState) error {
	if st.c != nil {
		if err := st.c.Remove(); err == nil {
			files, err := spoolFiles(st.dir)
			if err != nil {
				return err
			}
			if len(files) > 0 {
				return fmt.Errorf("a retried Remove succeeded but left %v", files)
			}
		}
	}
	if _, err := st.s.Recover(context.Background(), -time.Hour, spool.RecoverOptions{WorkersStopped: true}); err != nil {
		return fmt.Errorf("recover after fault: %w", err)
	}
	if st.name != "" {
		if q, _, err := st.s.Find(st.name); err == nil {
			if err := st.s.Remove(q, st.name); err != nil {
				return fmt.Errorf("remove after fault: %w", err)
			}
		} else if !errors.Is(err, spool.ErrNotFound) {
			return fmt.Errorf("find after fault: %w", err)
		}
		if p, err := observe(st.dir, st.name); err != nil || p != absent {
			return fmt.Errorf("after remove the entry is %v (%v)", p, err)
		}
	}
	for _, q := range []string{"q1", "q2"} {
		for _, sub := range []string{q, q + "/.checkout"} {
			ents, err := os.ReadDir(filepath.Join(st.dir, sub))
			if err != nil {
				return err
			}
			for _, e := range ents {
				if e.Name() != ".checkout" {
					return fmt.Errorf("after finishing, %s/%s is still there", sub, e.Name())
				}
			}
		}
	}
	if err := checkClassified(st.dir); err != nil {
		return fmt.Errorf("after finishing: %w", err)
	}
	// The spool still works: a fresh entry goes through.
	name, err := st.s.EnqueueBytes(context.Background(), "q1", []byte("again"), []byte(payload), spool.EnqueueOptions{Names: spool.PrefixNames("again")})
	if err != nil {
		return fmt.Errorf("enqueue after fault: %w", err)
	}
	return st.s.Remove("q1", name)
}

func TestFaultInjectionLifecycles(t *testing.T) {
	for _, lc := range lifecycles {
		for _, d := range []spool.Durability{spool.DurabilityFull, spool.DurabilityNone} {
			// One clean run counts the calls (and writes) of the life cycle.
			ff := newFaultFS()
			var total, writes int
			n, _, _, err := runLifecycle(t, lc, filepath.Join(t.TempDir(), "clean"), ff, d, func() { ff.arm(0, 0, false, false) })
			if err != nil || n != len(lc.steps) {
				t.Fatalf("%s/%s without faults: step %d: %v", lc.name, d, n, err)
			}
			total, writes = ff.counts()
			for _, k := range faultKinds {
				t.Run(fmt.Sprintf("%s/%s/%s", lc.name, d, k.name), func(t *testing.T) {
					base := t.TempDir()
					limit := total
					if k.short {
						limit = writes
					}
					failed := 0
					for i := 1; i <= limit; i++ {
						ff := newFaultFS()
						dir := filepath.Join(base, fmt.Sprint(i))
						n, st, before, err := runLifecycle(t, lc, dir, ff, d, func() { ff.arm(i, k.errno, k.short, k.sticky) })
						ff.mu.Lock()
						injected := ff.injected
						ff.mu.Unlock()
						ff.disarm()
						if err != nil {
							failed++
						}
						if err := checkAfterFault(lc, n, err, st, before); err != nil {
							t.Errorf("fault at %s: %v", injected, err)
							continue
						}
						if err := finish(st); err != nil {
							t.Errorf("fault at %s, failed step %d: then, without the fault: %v", injected, n, err)
						}
						os.RemoveAll(dir)
					}
					t.Logf("%d faults injected into %d calls (%d writes); %d made an operation fail", limit, total, writes, failed)
				})
			}
		}
	}
}

// checkAfterFault checks the spool right after the life cycle stopped at
// step n (n == len(lc.steps): it completed) with err.
func checkAfterFault(lc lifecycle, n int, err error, st *lcState, before place) error {
	got, oerr := observe(st.dir, st.name)
	if oerr != nil {
		return fmt.Errorf("after step %d (%v): %w", n, err, oerr)
	}
	if n == len(lc.steps) {
		if got != absent {
			return fmt.Errorf("the life cycle succeeded but the entry is %v", got)
		}
	} else {
		step := lc.steps[n]
		allowed := append([]place{before, step.after}, step.also...)
		if !slices.Contains(allowed, got) {
			return fmt.Errorf("step %d (%s) failed with %v and left the entry %v; allowed: %v", n, step.op, err, got, allowed)
		}
		if err == nil {
			return fmt.Errorf("step %d failed without an error", n)
		}
	}
	return checkClassified(st.dir)
}

// spoolFile is one file of a spool.
type spoolFile struct {
	path       string
	name       string
	consistent bool // part of an entry with a registry file, payload and exactly one place, waiting in a queue
}

// spoolFiles lists every file in the spool's directories and tells which
// belong to consistent waiting entries.
func spoolFiles(dir string) ([]spoolFile, error) {
	list := func(sub string) ([]string, error) {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			return nil, err
		}
		var out []string
		for _, e := range ents {
			if e.Name() != spool.CheckoutDir {
				out = append(out, e.Name())
			}
		}
		return out, nil
	}
	type where struct{ sub, name string }
	var all []where
	count := map[string]int{}    // name -> queue and checkout places
	waiting := map[string]bool{} // name -> in a queue (not checked out)
	has := map[string][2]bool{}  // name -> registry, data
	for _, sub := range []string{spool.RegistryDir, spool.DataDir, spool.TmpDir} {
		names, err := list(sub)
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			all = append(all, where{sub, n})
			h := has[n]
			switch sub {
			case spool.RegistryDir:
				h[0] = true
			case spool.DataDir:
				h[1] = true
			}
			has[n] = h
		}
	}
	root, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range root {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		for _, sub := range []string{e.Name(), e.Name() + "/" + spool.CheckoutDir} {
			names, err := list(sub)
			if err != nil {
				all = append(all, where{".", e.Name()})
				break
			}
			for _, n := range names {
				all = append(all, where{sub, n})
				count[n]++
				if sub == e.Name() {
					waiting[n] = true
				}
			}
		}
	}
	var out []spoolFile
	for _, w := range all {
		ok := w.sub != spool.TmpDir && has[w.name] == [2]bool{true, true} && count[w.name] == 1 && waiting[w.name]
		out = append(out, spoolFile{path: w.sub + "/" + w.name, name: w.name, consistent: ok})
	}
	return out, nil
}

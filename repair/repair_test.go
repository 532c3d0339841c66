package repair

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

	"golang.org/x/sys/unix"

	"github.com/spool-agent/spool-agent/monitor"
	"github.com/spool-agent/spool-agent/spool"
)

// The tests' clock: an hour after the files were made, so that everything
// built by hand is older than every default limit unless a case sets a
// younger mtime.
var testStart = time.Now()

func testNow() time.Time { return testStart.Add(time.Hour) }

// acked is an acknowledged entry that must survive repair exactly once.
type acked struct {
	name, meta, data string
	// where repair must leave it ("" anywhere)
	queue string
}

// fixture is a spool under test.
type fixture struct {
	t     *testing.T
	dir   string
	s     *spool.Spool
	acked []acked
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "spool")
	s, err := spool.Create(dir, []string{"incoming", "done"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	f := &fixture{t: t, dir: dir, s: s}
	// A bystander: repair must never touch it.
	f.enqueue("incoming", "bystander")
	return f
}

// enqueue adds an acknowledged entry through the library.
func (f *fixture) enqueue(queue, name string) *acked {
	f.t.Helper()
	meta, data := "meta of "+name, "payload of "+name
	if _, err := f.s.EnqueueBytes(context.Background(), queue, []byte(meta), []byte(data), spool.EnqueueOptions{Name: name}); err != nil {
		f.t.Fatal(err)
	}
	f.acked = append(f.acked, acked{name: name, meta: meta, data: data, queue: queue})
	return &f.acked[len(f.acked)-1]
}

func (f *fixture) path(rel string) string { return filepath.Join(f.dir, rel) }

func (f *fixture) write(rel, content string) {
	f.t.Helper()
	if err := os.WriteFile(f.path(rel), []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) rm(rel string) {
	f.t.Helper()
	if err := os.Remove(f.path(rel)); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) mv(from, to string) {
	f.t.Helper()
	if err := os.Rename(f.path(from), f.path(to)); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) cp(from, to string) {
	f.t.Helper()
	b, err := os.ReadFile(f.path(from))
	if err != nil {
		f.t.Fatal(err)
	}
	f.write(to, string(b))
}

// age sets rel's mtime to the test clock minus age.
func (f *fixture) age(rel string, age time.Duration) {
	f.t.Helper()
	ts := unix.NsecToTimespec(testNow().Add(-age).UnixNano())
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, f.path(rel), []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		f.t.Fatal(err)
	}
}

// copies returns the places (queue, or queue/.checkout) that hold name.
func copies(t *testing.T, dir, name string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		for _, d := range []string{e.Name(), e.Name() + "/" + spool.CheckoutDir} {
			if _, err := os.Lstat(filepath.Join(dir, d, name)); err == nil {
				out = append(out, d)
			}
		}
	}
	return out
}

// checkAcked checks that every acknowledged entry is there exactly once,
// registered, with its metadata and its payload.
func (f *fixture) checkAcked() {
	f.t.Helper()
	for _, a := range f.acked {
		where := copies(f.t, f.dir, a.name)
		if len(where) != 1 {
			f.t.Errorf("entry %s is in %v, want exactly one place", a.name, where)
			continue
		}
		if a.queue != "" && where[0] != a.queue {
			f.t.Errorf("entry %s is in %s, want %s", a.name, where[0], a.queue)
		}
		if meta, err := os.ReadFile(filepath.Join(f.dir, where[0], a.name)); err != nil || string(meta) != a.meta {
			f.t.Errorf("entry %s: metadata %q, %v; want %q", a.name, meta, err, a.meta)
		}
		data, err := os.ReadFile(f.path(".data/" + a.name))
		if a.data == "" && errors.Is(err, os.ErrNotExist) && a.queue != "quarantine" {
			err = nil // an entry that had no payload and stays where it was
		}
		if err != nil || string(data) != a.data {
			f.t.Errorf("entry %s: payload %q, %v; want %q", a.name, data, err, a.data)
		}
		if _, err := os.Lstat(f.path(".registry/" + a.name)); err != nil {
			f.t.Errorf("entry %s: %v", a.name, err)
		}
	}
}

func ops(p *Plan) []string {
	var out []string
	for _, a := range p.Actions {
		out = append(out, string(a.Op)+" "+a.Path())
	}
	return out
}

func lefts(p *Plan) []string {
	var out []string
	for _, l := range p.Left {
		out = append(out, string(l.Problem.Kind)+" "+l.Problem.Path())
	}
	return out
}

func TestRepairCases(t *testing.T) {
	defLimits := monitor.DefaultLimits()
	cases := []struct {
		name  string
		build func(f *fixture)
		// limits and options; zero limits mean monitor.DefaultLimits().
		limits         *monitor.Limits
		workersStopped bool
		wantPlan       []string // "op path", in order
		wantLeft       []string // "kind path" of what repair leaves
		check          func(f *fixture, final *Plan)
	}{
		{
			name: "queue entry without registry file",
			build: func(f *fixture) {
				f.enqueue("incoming", "x")
				f.rm(".registry/x")
			},
			wantPlan: []string{"register .registry/x"},
		},
		{
			name: "dot-name and 230-byte name without registry file",
			build: func(f *fixture) {
				for _, n := range []string{".dot", strings.Repeat("L", 230)} {
					f.write("incoming/"+n, "meta of "+n)
					f.write(".data/"+n, "payload of "+n)
					f.acked = append(f.acked, acked{name: n, meta: "meta of " + n, data: "payload of " + n, queue: "incoming"})
				}
			},
			wantPlan: []string{"register .registry/.dot", "register .registry/" + strings.Repeat("L", 230)},
		},
		{
			name: "stale checkout without registry file",
			build: func(f *fixture) {
				f.enqueue("incoming", "x")
				f.mv("incoming/x", "incoming/.checkout/x")
				f.rm(".registry/x")
			},
			wantPlan: []string{"register .registry/x", "recover incoming/.checkout/x"},
		},
		{
			name: "leftover .tmp copy of an entry that exists",
			build: func(f *fixture) {
				f.enqueue("done", "x")
				f.write(".tmp/x", "meta of x")
			},
			wantPlan: []string{"delete .tmp/x"},
		},
		{
			name: "temp files of interrupted atomic writes",
			build: func(f *fixture) {
				f.enqueue("done", "x")
				f.write(".tmp/x.tmp.abcDEF", "new meta of x, half")
				f.write(".data/x.tmp.GHIjkl", "new payload of x, half")
				f.write(".tmp/gone.tmp.qwerty", "meta of an entry since removed")
			},
			wantPlan: []string{"delete .tmp/gone.tmp.qwerty", "delete .data/x.tmp.GHIjkl", "delete .tmp/x.tmp.abcDEF"},
		},
		{
			name:     "reservation alone",
			build:    func(f *fixture) { f.write(".registry/r", "") },
			wantPlan: []string{"release .registry/r"},
		},
		{
			name: "enqueue of this library killed after its payload",
			build: func(f *fixture) {
				f.write(".registry/r", "")
				f.write(".data/r", "partial pay")
			},
			wantPlan: []string{"delete .data/r", "release .registry/r"},
		},
		{
			name: "enqueue of the reference killed before its rename",
			build: func(f *fixture) {
				f.write(".registry/r", "")
				f.write(".tmp/r", "meta of r")
				f.write(".data/r", "payload of r")
			},
			wantPlan: []string{"delete .tmp/r", "delete .data/r", "release .registry/r"},
		},
		{
			name: "remove of this library killed after the metadata",
			build: func(f *fixture) {
				f.enqueue("done", "x")
				f.acked = f.acked[:1] // its remove was under way
				f.rm("done/x")
			},
			wantPlan: []string{"delete .data/x", "release .registry/x"},
		},
		{
			name:     "payload with nothing else",
			build:    func(f *fixture) { f.write(".data/z", "payload of z") },
			wantPlan: []string{"create-queue quarantine", "adopt .data/z"},
			check: func(f *fixture, _ *Plan) {
				f.acked = append(f.acked, acked{name: "z", meta: "", data: "payload of z", queue: "quarantine"})
			},
		},
		{
			// A repair killed between the two mkdirs of the quarantine
			// queue left its directory without .checkout/: not a queue yet,
			// and the next repair completes it.
			name: "payload with nothing else, quarantine half made",
			build: func(f *fixture) {
				if err := os.Mkdir(f.path("quarantine"), 0o777); err != nil {
					f.t.Fatal(err)
				}
				f.write(".data/z", "payload of z")
			},
			wantPlan: []string{"create-queue quarantine", "adopt .data/z"},
			check: func(f *fixture, _ *Plan) {
				f.acked = append(f.acked, acked{name: "z", meta: "", data: "payload of z", queue: "quarantine"})
			},
		},
		{
			name: "half-made quarantine alone",
			build: func(f *fixture) {
				if err := os.Mkdir(f.path("quarantine"), 0o777); err != nil {
					f.t.Fatal(err)
				}
			},
			wantPlan: []string{"create-queue quarantine"},
		},
		{
			name: "half-made directory of another name",
			build: func(f *fixture) {
				if err := os.Mkdir(f.path("other"), 0o777); err != nil {
					f.t.Fatal(err)
				}
			},
			wantLeft: []string{"unexpected other"},
		},
		{
			name: "metadata in .tmp with nothing else",
			build: func(f *fixture) {
				f.write(".tmp/y", "meta of y")
				f.write(".data/y.tmp.abcdef", "half")
			},
			wantPlan: []string{"create-queue quarantine", "delete .data/y.tmp.abcdef", "adopt .tmp/y"},
			check: func(f *fixture, _ *Plan) {
				f.acked = append(f.acked, acked{name: "y", meta: "meta of y", data: "", queue: "quarantine"})
			},
		},
		{
			name: "queue entry without payload",
			build: func(f *fixture) {
				a := f.enqueue("incoming", "x")
				a.queue, a.data = "quarantine", ""
				f.rm(".data/x")
			},
			wantPlan: []string{"create-queue quarantine", "quarantine incoming/x"},
		},
		{
			name: "quarantine entry without payload",
			build: func(f *fixture) {
				if err := f.s.AddQueue("quarantine"); err != nil {
					f.t.Fatal(err)
				}
				a := f.enqueue("quarantine", "x")
				a.data = ""
				f.rm(".data/x")
			},
			wantPlan: []string{"quarantine quarantine/x"},
		},
		{
			name: "remove of the reference killed after the payload",
			build: func(f *fixture) {
				a := f.enqueue("done", "x")
				a.queue, a.data = "quarantine", ""
				f.mv("done/x", "done/.checkout/x")
				f.rm(".data/x")
			},
			wantPlan: []string{"create-queue quarantine", "recover done/.checkout/x", "quarantine done/x"},
		},
		{
			name: "young checkout without payload",
			build: func(f *fixture) {
				a := f.enqueue("done", "x")
				a.queue, a.data = "done/.checkout", ""
				f.mv("done/x", "done/.checkout/x")
				f.rm(".data/x")
				f.age("done/.checkout/x", time.Minute)
			},
			wantLeft: []string{"missing_data done/.checkout/x"},
		},
		{
			name: "stale checkout",
			build: func(f *fixture) {
				f.enqueue("incoming", "x")
				f.mv("incoming/x", "incoming/.checkout/x")
			},
			wantPlan: []string{"recover incoming/.checkout/x"},
		},
		{
			name: "checkout below a minute, workers running",
			build: func(f *fixture) {
				f.enqueue("incoming", "x").queue = "incoming/.checkout"
				f.mv("incoming/x", "incoming/.checkout/x")
				f.age("incoming/.checkout/x", 30*time.Second)
			},
			limits:   &monitor.Limits{},
			wantLeft: []string{"too_old incoming/.checkout/x"},
			check: func(f *fixture, p *Plan) {
				if r := p.Left[0].Reason; !strings.Contains(r, "--workers-stopped") {
					f.t.Errorf("reason %q does not name --workers-stopped", r)
				}
			},
		},
		{
			name: "checkout below a minute, workers stopped",
			build: func(f *fixture) {
				f.enqueue("incoming", "x")
				f.mv("incoming/x", "incoming/.checkout/x")
				f.age("incoming/.checkout/x", 30*time.Second)
			},
			limits:         &monitor.Limits{},
			workersStopped: true,
			wantPlan:       []string{"recover incoming/.checkout/x"},
		},
		{
			name: "duplicated in two queues",
			build: func(f *fixture) {
				f.enqueue("incoming", "x").queue = "done"
				f.cp("incoming/x", "done/x")
			},
			wantPlan: []string{"create-queue quarantine", "split incoming/x"},
			check: func(f *fixture, _ *Plan) {
				// The copy: metadata and payload, under a new name.
				names, err := f.s.List("quarantine")
				if err != nil || len(names) != 1 {
					f.t.Fatalf("quarantine holds %v, %v; want one copy", names, err)
				}
				f.acked = append(f.acked, acked{name: names[0], meta: "meta of x", data: "payload of x", queue: "quarantine"})
			},
		},
		{
			name: "duplicated: waiting and checked out",
			build: func(f *fixture) {
				f.enqueue("incoming", "x").queue = "incoming/.checkout"
				f.cp("incoming/x", "incoming/.checkout/x")
				f.age("incoming/.checkout/x", time.Minute)
			},
			wantPlan: []string{"create-queue quarantine", "split incoming/x"},
			check: func(f *fixture, _ *Plan) {
				names, _ := f.s.List("quarantine")
				if len(names) == 1 {
					f.acked = append(f.acked, acked{name: names[0], meta: "meta of x", data: "payload of x", queue: "quarantine"})
				}
			},
		},
		{
			name: "too old in a queue",
			build: func(f *fixture) {
				f.enqueue("done", "x")
			},
			limits:   &monitor.Limits{MaxCheckedOutAge: defLimits.MaxCheckedOutAge, MaxTmpFileAge: defLimits.MaxTmpFileAge, MaxQueueAge: map[string]time.Duration{"done": time.Minute}},
			wantLeft: []string{"too_old done/x"},
		},
		{
			name: "young reservation",
			build: func(f *fixture) {
				f.write(".registry/r", "")
				f.age(".registry/r", time.Second)
			},
			limits:   &monitor.Limits{MaxCheckedOutAge: time.Hour, MaxTmpFileAge: time.Minute},
			wantLeft: []string{"orphaned .registry/r"},
		},
		{
			name: "unexpected directory and symlink",
			build: func(f *fixture) {
				if err := os.Mkdir(f.path(".data/d"), 0o755); err != nil {
					f.t.Fatal(err)
				}
				f.write(".registry/d", "")
				if err := os.Symlink("/etc/passwd", f.path("incoming/l")); err != nil {
					f.t.Fatal(err)
				}
				f.write(".registry/l", "")
				f.write(".data/l", "")
			},
			wantLeft: []string{"orphaned .registry/d", "unexpected .data/d", "unexpected incoming/l"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			tc.build(f)
			lim := defLimits
			if tc.limits != nil {
				lim = *tc.limits
			}
			r := &Repairer{Limits: lim, WorkersStopped: tc.workersStopped, Now: testNow}
			ctx := context.Background()
			before := snapshot(t, f.dir)
			plan, err := r.Plan(ctx, f.dir)
			if err != nil {
				t.Fatal(err)
			}
			if got := ops(plan); !slices.Equal(got, tc.wantPlan) {
				t.Errorf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.wantPlan, "\n"))
			}
			if got := lefts(plan); !slices.Equal(got, tc.wantLeft) {
				t.Errorf("left: %q, want %q", got, tc.wantLeft)
			}
			// Planning changes nothing.
			if after := snapshot(t, f.dir); after != before {
				t.Errorf("Plan changed the spool")
			}
			var failed []string
			final, err := r.Repair(ctx, f.dir, func(res Result) {
				if res.Err != nil {
					failed = append(failed, fmt.Sprintf("%s %s: %v", res.Op, res.Path(), res.Err))
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(failed) > 0 {
				t.Errorf("actions failed: %q", failed)
			}
			if len(final.Actions) > 0 {
				t.Errorf("after Repair, still planned: %q", ops(final))
			}
			if got := lefts(final); !slices.Equal(got, tc.wantLeft) {
				t.Errorf("after Repair, left: %q, want %q", got, tc.wantLeft)
			}
			if tc.check != nil {
				tc.check(f, final)
			}
			f.checkAcked()
			checkClean(t, f.dir, lim, tc.wantLeft)
			// Idempotent: a second run plans nothing.
			again, err := r.Plan(ctx, f.dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(again.Actions) > 0 {
				t.Errorf("second plan: %q", ops(again))
			}
		})
	}
}

// checkClean checks that fsck reports only the problems in want ("kind path").
func checkClean(t *testing.T, dir string, lim monitor.Limits, want []string) {
	t.Helper()
	ps, err := monitor.Check(dir, lim, testNow())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if !slices.Contains(want, string(p.Kind)+" "+p.Path()) {
			t.Errorf("fsck after repair: %v", p)
		}
	}
}

// snapshot describes every file under dir: path, mode, size, mtime.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %v %d %d\n", p, fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestRepairLiveCheckout: a checkout that a live worker of this library
// holds (its flock) is planned for recovery by age, but the claim finds it
// held, and repair leaves it where it is.
func TestRepairLiveCheckout(t *testing.T) {
	f := newFixture(t)
	f.enqueue("incoming", "x").queue = "incoming/.checkout"
	c, err := f.s.Checkout(context.Background(), "incoming", "x")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Release()
	f.age("incoming/.checkout/x", time.Hour)
	r := &Repairer{Limits: monitor.DefaultLimits(), Now: testNow}
	var results []Result
	final, err := r.Repair(context.Background(), f.dir, func(res Result) { results = append(results, res) })
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 1 || results[0].Op != OpRecover || !errors.Is(results[0].Err, ErrChanged) {
		t.Errorf("results %+v, want one recover skipped with ErrChanged", results)
	}
	if got := ops(final); !slices.Equal(got, []string{"recover incoming/.checkout/x"}) {
		t.Errorf("still planned: %q", got)
	}
	f.checkAcked()
	if err := c.Save("done", nil); err != nil {
		t.Errorf("the worker's Save after repair: %v", err)
	}
}

// TestRepairNotASpool: a directory that is not a spool cannot be checked.
func TestRepairNotASpool(t *testing.T) {
	r := &Repairer{Limits: monitor.DefaultLimits()}
	if _, err := r.Plan(context.Background(), t.TempDir()); err == nil {
		t.Error("Plan of an empty directory: no error")
	}
	if _, err := r.Plan(context.Background(), filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("Plan of a missing directory: no error")
	}
	bad := &Repairer{Limits: monitor.DefaultLimits(), QuarantineQueue: "../x"}
	f := newFixture(t)
	if _, err := bad.Plan(context.Background(), f.dir); !errors.Is(err, spool.ErrInvalidName) {
		t.Errorf("quarantine queue ../x: %v, want ErrInvalidName", err)
	}
}

func TestIsTempName(t *testing.T) {
	for name, want := range map[string]bool{
		"x.tmp.abcDEF": true, "a.b.tmp.ZZZZZZ": true, ".tmp.abcdef": false, "x.tmp.abcde1": true, "x.tmp.abc-de": false,
		"x.tmp.abcdefg": false, "x.tmpXabcdef": false, "x": false,
	} {
		if got := isTempName(name); got != want {
			t.Errorf("isTempName(%q) = %v, want %v", name, got, want)
		}
	}
}

// TestRepairRecoverReportsEach: Recover returns every stale checkout at
// once, planned or not (one that went stale after the plan): Apply reports
// each exactly once.
func TestRepairRecoverReportsEach(t *testing.T) {
	f := newFixture(t)
	for _, n := range []string{"x", "y"} {
		f.enqueue("incoming", n)
		f.mv("incoming/"+n, "incoming/.checkout/"+n)
	}
	r := &Repairer{Limits: monitor.DefaultLimits(), Now: testNow}
	p, err := r.Plan(context.Background(), f.dir)
	if err != nil {
		t.Fatal(err)
	}
	f.enqueue("done", "z")
	f.mv("done/z", "done/.checkout/z")
	var got []string
	if err := r.Apply(context.Background(), p, func(res Result) {
		got = append(got, fmt.Sprintf("%s %s %v", res.Op, res.Path(), res.Err))
	}); err != nil {
		t.Fatal(err)
	}
	want := []string{"recover incoming/.checkout/x <nil>", "recover done/.checkout/z <nil>", "recover incoming/.checkout/y <nil>"}
	if !slices.Equal(got, want) {
		t.Errorf("reported %q, want %q", got, want)
	}
	f.checkAcked()
}

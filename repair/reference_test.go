package repair

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spool-agent/spool-agent/monitor"
)

// refStep is one system call of the OCaml reference (multispool.ml), on a
// path relative to the spool.
type refStep struct {
	call     string // create, write, rename, touch, unlink
	path, to string
	content  string
}

// The reference's call sequences for entry k (see multispool-notes.md,
// section 2): its atomic writer writes <path>.tmp.XXXXXX then renames it.
var (
	refEnqueue = []refStep{
		{call: "create", path: ".registry/k"},
		{call: "write", path: ".tmp/k.tmp.aaaaaa", content: "meta of k"},
		{call: "rename", path: ".tmp/k.tmp.aaaaaa", to: ".tmp/k"},
		{call: "write", path: ".data/k.tmp.bbbbbb", content: "payload of k"},
		{call: "rename", path: ".data/k.tmp.bbbbbb", to: ".data/k"},
		{call: "rename", path: ".tmp/k", to: "incoming/k"},
	}
	refCheckout = []refStep{
		{call: "touch", path: ".registry/k"},
		{call: "touch", path: "incoming/k"},
		{call: "rename", path: "incoming/k", to: "incoming/.checkout/k"},
	}
	refSave = []refStep{
		{call: "write", path: ".tmp/k.tmp.cccccc", content: "new meta of k"},
		{call: "rename", path: ".tmp/k.tmp.cccccc", to: "incoming/.checkout/k"},
		{call: "touch", path: ".registry/k"},
		{call: "touch", path: "incoming/.checkout/k"},
		{call: "rename", path: "incoming/.checkout/k", to: "done/k"},
	}
	refRemove = []refStep{
		{call: "touch", path: ".registry/k"},
		{call: "unlink", path: ".data/k"},
		{call: "unlink", path: "incoming/.checkout/k"},
		{call: "unlink", path: ".registry/k"},
	}
	refDataSave = []refStep{ // Data_file.save of a checked-out entry
		{call: "write", path: ".data/k.tmp.dddddd", content: "new payload of k"},
		{call: "rename", path: ".data/k.tmp.dddddd", to: ".data/k"},
	}
)

func (f *fixture) ref(st refStep) {
	f.t.Helper()
	var err error
	switch st.call {
	case "create":
		err = os.WriteFile(f.path(st.path), nil, 0o644)
	case "write":
		err = os.WriteFile(f.path(st.path), []byte(st.content), 0o666)
	case "rename":
		err = os.Rename(f.path(st.path), f.path(st.to))
	case "touch":
		now := time.Now()
		err = os.Chtimes(f.path(st.path), now, now)
	case "unlink":
		err = os.Remove(f.path(st.path))
	}
	if err != nil {
		f.t.Fatal(err)
	}
}

// TestRepairKilledReferenceOperations kills the reference's operations
// after each of their system calls, repairs, and checks what
// TestRepairKilledLibraryOperations checks.
func TestRepairKilledReferenceOperations(t *testing.T) {
	enqueued := func(f *fixture) {
		for _, st := range refEnqueue {
			f.ref(st)
		}
	}
	checkedOut := func(f *fixture) {
		enqueued(f)
		for _, st := range refCheckout {
			f.ref(st)
		}
	}
	cases := []struct {
		name  string
		pre   func(f *fixture)
		steps []refStep
		mayGo bool // k may be gone (never acknowledged, or being removed)
		// emptyOK: k may end in quarantine with an empty payload (its
		// remove had deleted it).
		emptyOK bool
	}{
		{name: "enqueue", steps: refEnqueue, mayGo: true},
		{name: "checkout", pre: enqueued, steps: refCheckout},
		{name: "save", pre: checkedOut, steps: refSave},
		{name: "remove", pre: checkedOut, steps: refRemove, mayGo: true, emptyOK: true},
		{name: "data save", pre: checkedOut, steps: refDataSave},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for n := 0; n <= len(tc.steps); n++ {
				f := newFixture(t)
				f.enqueue("done", "other")
				if tc.pre != nil {
					tc.pre(f)
				}
				for _, st := range tc.steps[:n] {
					f.ref(st)
				}
				r := &Repairer{Limits: monitor.DefaultLimits(), Now: func() time.Time { return time.Now().Add(time.Hour) }}
				final, err := r.Repair(context.Background(), f.dir, nil)
				if err != nil {
					t.Fatalf("after %d steps: %v", n, err)
				}
				if len(final.Actions) > 0 || len(final.Left) > 0 {
					t.Errorf("after %d steps: planned %q, left %q", n, ops(final), lefts(final))
				}
				f.checkAcked()
				where := copies(t, f.dir, "k")
				switch {
				case len(where) > 1:
					t.Errorf("after %d steps: k in %v", n, where)
				case len(where) == 0 && !tc.mayGo:
					t.Errorf("after %d steps: k lost", n)
				case len(where) == 0 && tc.name == "enqueue" && n == len(tc.steps):
					t.Errorf("k enqueued, then lost")
				case len(where) == 1:
					p, err := os.ReadFile(filepath.Join(f.dir, ".data/k"))
					if err != nil || len(p) == 0 && !(tc.emptyOK && where[0] == "quarantine") {
						t.Errorf("after %d steps: k in %s with payload %q, %v", n, where[0], p, err)
					}
				}
				checkClean(t, f.dir, monitor.DefaultLimits(), nil)
			}
		})
	}
}

package monitor_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spool-agent/spool-agent/monitor"
	"github.com/spool-agent/spool-agent/spool"
)

// FuzzCheck builds a spool from the fuzzer's bytes (files, directories and
// symlinks with a few colliding names in every spool directory) and runs a
// full check. The check must not fail on a readable spool, must name every
// file that is not part of a consistent waiting entry in some problem, must
// report nothing about consistent entries, and must report a duplicate
// exactly when a registered name is in two places.
//
//	go test ./monitor -run '^$' -fuzz '^FuzzCheck$' -fuzztime 30s
func FuzzCheck(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0, 1, 0, 2, 0})          // one consistent entry: registry, data, q1
	f.Add([]byte{0, 0, 1, 0, 2, 0, 4, 0})    // ... also in q2: duplicated
	f.Add([]byte{2, 1, 3, 2, 5, 3, 6, 1})    // orphans, missing data, a checkout
	f.Add([]byte{0x40, 0, 0x81, 1, 0xc2, 2}) // a directory, a symlink, ...
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 64 {
			ops = ops[:64]
		}
		dir := filepath.Join(t.TempDir(), "spool")
		if _, err := spool.Create(dir, []string{"q1", "q2"}, &spool.Options{Durability: spool.DurabilityNone}); err != nil {
			t.Fatal(err)
		}
		dirs := []string{spool.RegistryDir, spool.DataDir, "q1", "q1/" + spool.CheckoutDir, "q2", "q2/" + spool.CheckoutDir, spool.TmpDir}
		names := []string{"a", "b", "c", "d"}
		old := time.Now().Add(-time.Hour)
		for i := 0; i+1 < len(ops); i += 2 {
			d := dirs[int(ops[i]&0x3f)%len(dirs)]
			n := names[int(ops[i+1])%len(names)]
			p := filepath.Join(dir, d, n)
			switch ops[i] >> 6 {
			case 0, 3:
				os.WriteFile(p, []byte("x"), 0o644)
			case 1:
				os.Mkdir(p, 0o755)
			case 2:
				os.Symlink("/nonexistent", p)
			}
			if ops[i+1]&0x80 != 0 {
				os.Chtimes(p, old, old)
			}
		}
		now := time.Now().Add(time.Hour) // every checkout and temporary file is too old
		ps, err := monitor.Check(dir, monitor.DefaultLimits(), now)
		if err != nil {
			t.Fatalf("Check on a readable spool: %v", err)
		}
		// The oracle: what is where, straight from the directories.
		type where struct{ dir, name string }
		var files []where
		regular := map[where]bool{}
		for _, d := range dirs {
			ents, err := os.ReadDir(filepath.Join(dir, d))
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range ents {
				if e.Name() == spool.CheckoutDir {
					continue
				}
				w := where{d, e.Name()}
				files = append(files, w)
				regular[w] = e.Type().IsRegular()
			}
		}
		has := func(d, n string) bool {
			_, ok := regular[where{d, n}]
			return ok
		}
		locs := func(n string) []string {
			var out []string
			for _, d := range []string{"q1", "q1/" + spool.CheckoutDir, "q2", "q2/" + spool.CheckoutDir} {
				if has(d, n) {
					out = append(out, d)
				}
			}
			return out
		}
		consistent := func(n string) bool {
			l := locs(n)
			return len(l) == 1 && !strings.Contains(l[0], spool.CheckoutDir) &&
				regular[where{l[0], n}] && regular[where{spool.RegistryDir, n}] && regular[where{spool.DataDir, n}] &&
				!has(spool.TmpDir, n)
		}
		named := map[string][]monitor.Problem{}
		for _, p := range ps {
			named[p.Name] = append(named[p.Name], p)
		}
		for _, w := range files {
			if !consistent(w.name) && len(named[w.name]) == 0 {
				t.Errorf("%s/%s is not part of a consistent entry, but no problem names it; problems: %v", w.dir, w.name, ps)
			}
		}
		for _, n := range names {
			if consistent(n) && len(named[n]) > 0 {
				t.Errorf("consistent entry %s reported: %v", n, named[n])
			}
			dup := slices.ContainsFunc(named[n], func(p monitor.Problem) bool { return p.Kind == monitor.KindDuplicated })
			want := has(spool.RegistryDir, n) && len(locs(n)) >= 2
			if dup != want {
				t.Errorf("%s is in %v (registered: %v): duplicated reported %v", n, locs(n), has(spool.RegistryDir, n), dup)
			}
		}
		if t.Failed() {
			t.Logf("layout: %s", fmt.Sprint(files))
		}
	})
}

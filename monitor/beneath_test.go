package monitor

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestScanNeverFollowsSwappedDirectory: a spool directory swapped for a
// symlink to an outside directory between the listing of the root and its
// own listing (the attacker's race, made certain through the fault seam)
// makes the scan fail for that directory (ELOOP or ENOTDIR) instead of listing the
// outside directory; Check, a scanning monitor and a warm rescan alike.
func TestScanNeverFollowsSwappedDirectory(t *testing.T) {
	for _, rel := range []string{"queue1", "queue1/.checkout", ".data", ".registry", ".tmp"} {
		t.Run(rel, func(t *testing.T) {
			outside := t.TempDir()
			for _, f := range []string{"evil", "evil2"} {
				if err := os.WriteFile(filepath.Join(outside, f), nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			dir, _ := newTestSpool(t)
			touchAll(t, dir, ".registry/ok", ".data/ok", "queue2/ok")
			swapped := false
			swap := func(path string) error {
				if path != dir+"/"+rel || swapped {
					return nil
				}
				swapped = true
				if err := os.Rename(path, path+".real"); err != nil {
					return err
				}
				return os.Symlink(outside, path)
			}
			unswap := func() {
				if swapped {
					os.Remove(dir + "/" + rel)
					os.Rename(dir+"/"+rel+".real", dir+"/"+rel)
					swapped = false
				}
			}
			check := func(what string, ps []Problem, err error) {
				t.Helper()
				if !errors.Is(err, unix.ELOOP) && !errors.Is(err, unix.ENOTDIR) || !strings.Contains(err.Error(), dir+"/"+rel) {
					t.Errorf("%s: error %v, want ELOOP or ENOTDIR naming %s", what, err, rel)
				}
				for _, p := range ps {
					if strings.HasPrefix(p.Name, "evil") {
						t.Errorf("%s: a file outside the spool was listed: %s", what, p)
					}
				}
			}
			now := t0.Add(time.Minute)
			ps, err := check2(dir, now, swap)
			check("Check", ps, err)
			unswap()

			f := newTestMonitor(t, dir, conf(noWatch), &now)
			f.openDirFault.Store(&swap)
			_, err = f.Cycle(t.Context())
			check("scanning monitor", f.Snapshot().Problems, err)
			f.openDirFault.Store(nil)
			unswap()

			w := newTestMonitor(t, dir, conf(), &now)
			mustCycle(t, w)
			w.openDirFault.Store(&swap)
			setNow(&now, now.Add(DefaultFullRescanEvery)) // the warm rescan
			_, err = w.Cycle(t.Context())
			check("warm rescan", w.Snapshot().Problems, err)
			w.openDirFault.Store(nil)
			unswap()
		})
	}
}

func check2(dir string, now time.Time, fault func(string) error) ([]Problem, error) {
	return check(dir, DefaultLimits(), now, fault)
}

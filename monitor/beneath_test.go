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

// TestOpenBeneath: a spool directory, or a directory on the way to it,
// swapped for a symlink (even one pointing inside the spool) is refused,
// with openat2 and with the component-by-component fallback alike.
func TestOpenBeneath(t *testing.T) {
	outside := t.TempDir()
	tests := []struct {
		name string
		rel  string
		swap string // made a symlink to outside ("" : none)
		ok   bool
	}{
		{"plain queue", "queue1", "", true},
		{"plain checkout", "queue1/.checkout", "", true},
		{"queue swapped", "queue1", "queue1", false},
		{"checkout swapped", "queue1/.checkout", "queue1/.checkout", false},
		{"queue swapped on the way to its checkout", "queue1/.checkout", "queue1", false},
		{".data swapped", ".data", ".data", false},
		{"above the root", "..", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir, _ := newTestSpool(t)
			if tc.swap != "" {
				if err := os.Rename(filepath.Join(dir, tc.swap), filepath.Join(dir, tc.swap+".real")); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(outside, filepath.Join(dir, tc.swap)); err != nil {
					t.Fatal(err)
				}
			}
			root, err := openRoot(dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(root)
			open := map[string]func() (int, error){
				"openBeneath": func() (int, error) { return openBeneath(root, tc.rel, dir+"/"+tc.rel, nil) },
				"openWalk":    func() (int, error) { return openWalk(root, tc.rel) },
			}
			for how, f := range open {
				fd, err := f()
				if fd >= 0 {
					unix.Close(fd)
				}
				if (err == nil) != tc.ok {
					t.Errorf("%s(%s): %v, want success %v", how, tc.rel, err, tc.ok)
				}
			}
		})
	}
}

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

// TestWatchRefusesSymlink: a watch is never added through a symlink.
func TestWatchRefusesSymlink(t *testing.T) {
	base := t.TempDir()
	real := filepath.Join(base, "real")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	w, err := newWatcher()
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	if err := w.add(real); err != nil {
		t.Errorf("watch of a directory: %v", err)
	}
	if err := w.add(link); err == nil {
		t.Error("a symlink to a directory was watched")
	}
}

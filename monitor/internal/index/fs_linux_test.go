//go:build linux

package index

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// waitDeadline bounds every wait of the tests.
const waitDeadline = 20 * time.Second

// newSpoolDirs creates a spool's directories (.registry, .tmp, .data and
// queue1 with its .checkout) in a fresh directory.
func newSpoolDirs(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{".registry", ".tmp", ".data", "queue1/.checkout"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

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
			dir := newSpoolDirs(t)
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
	w, err := newInotifyFeed(FeedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Add(real); err != nil {
		t.Errorf("watch of a directory: %v", err)
	}
	if err := w.Add(link); err == nil {
		t.Error("a symlink to a directory was watched")
	}
}

package fsys

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

func openDirPath(t *testing.T, path string) int {
	t.Helper()
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// TestRenameByLink: the fallback for a rename that must not replace moves
// a file, refuses (EEXIST) when the new name is taken and leaves both files
// as they were, and fails (ENOENT) without a trace when the file is gone.
func TestRenameByLink(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		existing bool // something already at the new name
		missing  bool // nothing at the old name
		want     error
	}{
		{"moves", false, false, nil},
		{"new name taken", true, false, unix.EEXIST},
		{"old name gone", false, true, unix.ENOENT},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			root := t.TempDir()
			from, to := filepath.Join(root, "from"), filepath.Join(root, "to")
			for _, d := range []string{from, to} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if !c.missing {
				os.WriteFile(filepath.Join(from, "e"), []byte("entry"), 0o644)
			}
			if c.existing {
				os.WriteFile(filepath.Join(to, "e"), []byte("live"), 0o644)
			}
			err := renameByLink(openDirPath(t, from), "e", openDirPath(t, to), "e")
			if !errors.Is(err, c.want) && err != c.want {
				t.Fatalf("renameByLink = %v, want %v", err, c.want)
			}
			read := func(p string) string {
				b, err := os.ReadFile(p)
				if err != nil {
					return "<" + err.Error() + ">"
				}
				return string(b)
			}
			var wantFrom, wantTo string
			switch {
			case c.want == nil:
				wantFrom, wantTo = "<gone>", "entry"
			case c.existing:
				wantFrom, wantTo = "entry", "live"
			default:
				wantFrom, wantTo = "<gone>", "<gone>"
			}
			for _, f := range []struct{ path, want string }{{filepath.Join(from, "e"), wantFrom}, {filepath.Join(to, "e"), wantTo}} {
				got := read(f.path)
				if f.want == "<gone>" {
					if _, err := os.Lstat(f.path); !os.IsNotExist(err) {
						t.Errorf("%s: %q, want it gone", f.path, got)
					}
					continue
				}
				if got != f.want {
					t.Errorf("%s: %q, want %q", f.path, got, f.want)
				}
				var st unix.Stat_t
				if err := unix.Lstat(f.path, &st); err != nil || st.Nlink != 1 {
					t.Errorf("%s: %d links, %v", f.path, st.Nlink, err)
				}
			}
		})
	}
}

// TestReadDirOS: the portable listing gives the names and types that
// OS.ReadDir gives, without "." and "..".
func TestReadDirOS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "file"), nil, 0o644)
	os.Mkdir(filepath.Join(dir, "dir"), 0o755)
	os.Symlink("file", filepath.Join(dir, "link"))
	if err := unix.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	fd := openDirPath(t, dir)
	got, err := readDirOS(fd)
	if err != nil {
		t.Fatal(err)
	}
	want, err := OS{}.ReadDir(fd)
	if err != nil {
		t.Fatal(err)
	}
	byName := func(a, b DirEntry) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	}
	slices.SortFunc(got, byName)
	slices.SortFunc(want, byName)
	if !slices.Equal(got, want) || len(got) != 4 {
		t.Errorf("readDirOS = %+v, want %+v", got, want)
	}
}

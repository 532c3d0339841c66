package fsys

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// readDirPath is OS.ReadDir of the directory at path.
func readDirPath(path string) ([]DirEntry, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	return OS{}.ReadDir(fd)
}

// TestReadDirMatchesOS checks the listing against the os package: the
// names OS.ReadDir returns for a real directory are exactly os.ReadDir's.
func TestReadDirMatchesOS(t *testing.T) {
	dir := t.TempDir()
	want := []string{"a", "b b", "ünï", strings.Repeat("z", 255), "-x", "x.y"}
	for _, n := range want {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	ents, err := readDirPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name)
		if e.Name == "sub" && e.Type != unix.DT_DIR && e.Type != unix.DT_UNKNOWN {
			t.Errorf("sub has type %d", e.Type)
		}
	}
	want = append(want, "sub")
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("ReadDir = %q, want %q", got, want)
	}
}

//go:build linux

package fsys

import (
	"bytes"
	"encoding/binary"
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

// fuzzDirent encodes one linux_dirent64 record, padded to 8 bytes.
func fuzzDirent(ino uint64, typ uint8, name string) []byte {
	reclen := (19 + len(name) + 1 + 7) &^ 7
	b := make([]byte, reclen)
	binary.NativeEndian.PutUint64(b[0:], ino)
	binary.NativeEndian.PutUint64(b[8:], uint64(reclen))
	binary.NativeEndian.PutUint16(b[16:], uint16(reclen))
	b[18] = typ
	copy(b[19:], name)
	return b
}

// FuzzParseDirents feeds arbitrary bytes to the getdents parser: it must
// never panic or read past its buffer, and whatever it returns must be a
// plausible name. Buffers that are well-formed records (as the kernel
// writes them) must parse back to exactly their names, in order.
func FuzzParseDirents(f *testing.F) {
	var well []byte
	for i, n := range []string{".", "..", "a", "q1_000000", ".checkout", strings.Repeat("x", 255)} {
		well = append(well, fuzzDirent(uint64(i+1), unix.DT_REG, n)...)
	}
	f.Add(well)
	f.Add(fuzzDirent(1, unix.DT_DIR, "queue"))
	f.Add([]byte{})
	f.Add(make([]byte, 19))
	f.Add(append(fuzzDirent(1, unix.DT_REG, "x"), 0xff, 0xff))
	short := fuzzDirent(1, unix.DT_REG, "abc")
	binary.NativeEndian.PutUint16(short[16:], 5) // a record length shorter than the header
	f.Add(short)
	f.Fuzz(func(t *testing.T, buf []byte) {
		in := slices.Clone(buf)
		ents := parseDirents(buf, nil)
		if !bytes.Equal(in, buf) {
			t.Fatal("parseDirents modified its buffer")
		}
		if len(ents) > len(buf)/19 {
			t.Fatalf("%d entries from %d bytes", len(ents), len(buf))
		}
		for _, e := range ents {
			if e.Name == "." || e.Name == ".." || strings.IndexByte(e.Name, 0) >= 0 {
				t.Fatalf("parsed an impossible name %q", e.Name)
			}
		}
		// Well-formed: re-encode the parsed names and parse them again.
		var again []byte
		for _, e := range ents {
			if e.Name == "" {
				continue
			}
			again = append(again, fuzzDirent(1, e.Type, e.Name)...)
		}
		var want []DirEntry
		for _, e := range ents {
			if e.Name != "" {
				want = append(want, e)
			}
		}
		if got := parseDirents(again, nil); !slices.Equal(got, want) {
			t.Fatalf("round trip: got %v, want %v", got, want)
		}
	})
}

// TestParseDirentsMatchesReadDir checks the parser against the kernel: the
// names OS.ReadDir returns for a real directory are exactly os.ReadDir's.
func TestParseDirentsMatchesReadDir(t *testing.T) {
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

package dirent

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// record encodes one directory record in layout l, padded to 8 bytes as
// the kernels do.
func record(l layout, ino uint64, typ Type, name string) []byte {
	n := (l.name + len(name) + 1 + 7) &^ 7
	b := make([]byte, n)
	binary.NativeEndian.PutUint64(b[l.ino:], ino)
	binary.NativeEndian.PutUint16(b[l.reclen:], uint16(n))
	b[l.typ] = byte(typ)
	if l.namlen >= 0 {
		binary.NativeEndian.PutUint16(b[l.namlen:], uint16(len(name)))
	}
	copy(b[l.name:], name)
	return b
}

type got struct {
	name string
	ino  uint64
	typ  Type
}

func collect(l layout, b []byte) []got {
	var out []got
	l.parse(b, func(e Entry) {
		if full := e.Name[:len(e.Name)+1]; full[len(e.Name)] != 0 {
			panic("name not followed by a NUL")
		}
		out = append(out, got{string(e.Name), e.Ino, e.Type})
	})
	return out
}

// TestParse: records of each system's layout parse into names, inodes and
// types; "." and ".." are skipped; a truncated or malformed record ends
// the buffer or is skipped, never read past.
func TestParse(t *testing.T) {
	// A linux_dirent64 by hand: d_ino 7, d_off 1, d_reclen 24, d_type
	// DT_REG, "ab\0", padding.
	linuxAB := []byte{7, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 24, 0, 8, 'a', 'b', 0, 0, 0}
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		linuxAB = nil // big-endian: the hand-written record does not apply
	}
	cat := func(bs ...[]byte) []byte { return slices.Concat(bs...) }
	for _, sys := range []struct {
		name string
		l    layout
	}{{"linux", linuxLayout}, {"darwin", darwinLayout}, {"freebsd", freebsdLayout}} {
		l := sys.l
		long := strings.Repeat("x", 255)
		noNUL := record(l, 9, Regular, "abcdefg") // its NUL overwritten below
		for i := l.name; i < len(noNUL); i++ {
			noNUL[i] = 'z'
		}
		if l.namlen >= 0 {
			binary.NativeEndian.PutUint16(noNUL[l.namlen:], uint16(len(noNUL)-l.name))
		}
		tests := []struct {
			name string
			buf  []byte
			want []got
		}{
			{"empty", nil, nil},
			{"one file", record(l, 7, Regular, "ab"), []got{{"ab", 7, Regular}}},
			{"dots skipped", cat(record(l, 1, Directory, "."), record(l, 2, Directory, ".."), record(l, 3, Directory, "...")), []got{{"...", 3, Directory}}},
			{"hidden names kept", cat(record(l, 4, Regular, ".registry"), record(l, 5, Symlink, ".x")), []got{{".registry", 4, Regular}, {".x", 5, Symlink}}},
			{"unknown type", record(l, 6, Unknown, "u"), []got{{"u", 6, Unknown}}},
			{"longest name", record(l, 8, Regular, long), []got{{long, 8, Regular}}},
			{"truncated record ends the buffer", cat(record(l, 1, Regular, "a"), record(l, 2, Regular, "b")[:l.name+1]), []got{{"a", 1, Regular}}},
			{"reclen beyond the buffer", func() []byte {
				b := cat(record(l, 1, Regular, "a"), record(l, 2, Regular, "b"))
				binary.NativeEndian.PutUint16(b[len(b)/2+l.reclen:], 4096)
				return b
			}(), []got{{"a", 1, Regular}}},
			{"zero reclen", make([]byte, 64), nil},
			{"name without its NUL skipped", cat(noNUL, record(l, 3, Regular, "c")), []got{{"c", 3, Regular}}},
		}
		if sys.name == "linux" && linuxAB != nil {
			tests = append(tests, struct {
				name string
				buf  []byte
				want []got
			}{"hand-written linux_dirent64", linuxAB, []got{{"ab", 7, Regular}}})
		}
		for _, tc := range tests {
			t.Run(sys.name+"/"+tc.name, func(t *testing.T) {
				if g := collect(l, tc.buf); !slices.Equal(g, tc.want) {
					t.Errorf("got %v, want %v", g, tc.want)
				}
			})
		}
	}
}

// TestParseAllocs: parsing allocates nothing per entry.
func TestParseAllocs(t *testing.T) {
	var b []byte
	for i := range 100 {
		b = append(b, record(native, uint64(i), Regular, "name")...)
	}
	n := 0
	allocs := testing.AllocsPerRun(10, func() { Parse(b, func(Entry) { n++ }) })
	if allocs != 0 {
		t.Errorf("%v allocations per Parse of 100 entries, want 0", allocs)
	}
}

// TestReadAll lists a real directory: every name once, with its type, and
// an empty directory gives none.
func TestReadAll(t *testing.T) {
	tests := []struct {
		name  string
		files []string
		dirs  []string
	}{
		{"empty", nil, nil},
		{"few", []string{"a", ".hidden"}, []string{"sub"}},
		{"more than a buffer", func() []string {
			var out []string
			for i := range 2000 {
				out = append(out, fmt.Sprintf("a-rather-long-name-to-fill-several-buffers-%04d", i))
			}
			return out
		}(), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			want := map[string]Type{}
			for _, f := range tc.files {
				if err := os.WriteFile(filepath.Join(dir, f), nil, 0o600); err != nil {
					t.Fatal(err)
				}
				want[f] = Regular
			}
			for _, d := range tc.dirs {
				if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
					t.Fatal(err)
				}
				want[d] = Directory
			}
			fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			seen := map[string]Type{}
			err = ReadAll(fd, make([]byte, 4096), func(e Entry) {
				if _, dup := seen[string(e.Name)]; dup {
					t.Errorf("%q listed twice", e.Name)
				}
				typ := e.Type
				if typ == Unknown {
					typ = want[string(e.Name)] // the file system does not say
				}
				seen[string(e.Name)] = typ
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(seen) != len(want) {
				t.Fatalf("listed %d names, want %d", len(seen), len(want))
			}
			for n, typ := range want {
				if seen[n] != typ {
					t.Errorf("%q: type %d, want %d", n, seen[n], typ)
				}
			}
		})
	}
}

package spool

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Fuzz targets for everything that takes names or parses what is on disk.
// Seeds are in testdata/fuzz/<target>/ and in the f.Add calls below; run one
// target for a while with
//
//	go test ./spool -run '^$' -fuzz '^FuzzValidateName$' -fuzztime 30s
//
// (scripts/fuzz-short.sh runs every target briefly; scripts/soak.sh for longer).

// nameIsBad is the specification ValidateName implements, written
// independently: empty, longer than MaxNameLen, a leading '.', a '/', a
// control character (C0, DEL, or C1 encoded in UTF-8).
func nameIsBad(name string) bool {
	if name == "" || len(name) > MaxNameLen || name[0] == '.' {
		return true
	}
	for _, c := range []byte(name) {
		if c == '/' || c < 0x20 || c == 0x7f {
			return true
		}
	}
	// C1 controls, U+0080 to U+009F, when they appear as UTF-8.
	return strings.ContainsFunc(name, func(r rune) bool { return r >= 0x80 && r <= 0x9f })
}

// FuzzValidateName checks that ValidateName accepts exactly the names the
// specification allows, that an accepted name stays one path component
// inside the spool, and that an entry with that name goes through enqueue,
// find, read and remove and leaves the spool empty.
func FuzzValidateName(f *testing.F) {
	for _, s := range []string{
		"a", "q1_000000", "20261125T203512.123456789Z-0001f3a2-00000000000000a1",
		"", ".", "..", ".registry", ".checkout", "a/b", "../x", "/abs", "x/..",
		"nul\x00byte", "tab\there", "new\nline", "del\x7f", "ünïcödé", "\xff\xfe",
		"-leading-dash", " space", "trailing.", strings.Repeat("n", MaxNameLen), strings.Repeat("n", MaxNameLen+1),
	} {
		f.Add(s)
	}
	dir := filepath.Join(f.TempDir(), "spool")
	s, err := Create(dir, []string{"q"}, &Options{Durability: DurabilityNone})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := ValidateName(name)
		bad := nameIsBad(name)
		if err != nil {
			if !errors.Is(err, ErrInvalidName) {
				t.Fatalf("ValidateName(%q) = %v, which does not wrap ErrInvalidName", name, err)
			}
			if !bad {
				t.Fatalf("ValidateName(%q) rejects a name the specification allows: %v", name, err)
			}
			// A rejected name is rejected by every operation that takes one
			// (an empty EnqueueOptions.Name means "generate one").
			if name != "" {
				if _, err := s.EnqueueBytes(context.Background(), "q", nil, nil, EnqueueOptions{Name: name}); !errors.Is(err, ErrInvalidName) {
					t.Fatalf("Enqueue with name %q: %v, want ErrInvalidName", name, err)
				}
			}
			// Names that can exist on disk (written by another
			// implementation) are read: Remove finds nothing.
			if err := s.Remove("q", name); ValidateExistingName(name) == nil && err != nil {
				t.Fatalf("Remove of %q (a name that can exist): %v, want nil", name, err)
			} else if ValidateExistingName(name) != nil && !errors.Is(err, ErrInvalidName) {
				t.Fatalf("Remove of %q: %v, want ErrInvalidName", name, err)
			}
			if err := s.AddQueue(name); !errors.Is(err, ErrInvalidName) {
				t.Fatalf("AddQueue(%q): %v, want ErrInvalidName", name, err)
			}
			return
		}
		if bad {
			t.Fatalf("ValidateName(%q) accepts a name the specification forbids", name)
		}
		reg := filepath.Join(dir, RegistryDir)
		if p := filepath.Join(reg, name); filepath.Dir(p) != reg || filepath.Base(p) != name {
			t.Fatalf("accepted name %q is not a single component of %s: %s", name, reg, p)
		}
		meta, data := []byte("m:"+name), []byte("d:"+name)
		got, err := s.EnqueueBytes(context.Background(), "q", meta, data, EnqueueOptions{Name: name})
		if err != nil || got != name {
			t.Fatalf("Enqueue with accepted name %q: %q, %v", name, got, err)
		}
		if q, co, err := s.Find(name); err != nil || q != "q" || co {
			t.Fatalf("Find(%q) = %q, %v, %v", name, q, co, err)
		}
		if b, err := s.ReadData(name); err != nil || !bytes.Equal(b, data) {
			t.Fatalf("ReadData(%q) = %q, %v", name, b, err)
		}
		if b, err := s.ReadMetadata("q", name); err != nil || !bytes.Equal(b, meta) {
			t.Fatalf("ReadMetadata(%q) = %q, %v", name, b, err)
		}
		for _, d := range []string{RegistryDir, DataDir, "q"} {
			ents, err := os.ReadDir(filepath.Join(dir, d))
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, e := range ents {
				if e.Name() != CheckoutDir {
					names = append(names, e.Name())
				}
			}
			if len(names) != 1 || names[0] != name {
				t.Fatalf("after enqueue of %q, %s holds %q", name, d, names)
			}
		}
		if err := s.Remove("q", name); err != nil {
			t.Fatalf("Remove(%q): %v", name, err)
		}
		for _, d := range []string{RegistryDir, DataDir, TmpDir, "q", "q/" + CheckoutDir} {
			ents, _ := os.ReadDir(filepath.Join(dir, d))
			for _, e := range ents {
				if e.Name() != CheckoutDir {
					t.Fatalf("after remove of %q, %s/%s is left", name, d, e.Name())
				}
			}
		}
		top, _ := os.ReadDir(dir)
		if len(top) != 4 { // .registry .tmp .data q
			t.Fatalf("after %q the spool root holds %d names", name, len(top))
		}
	})
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
// names OSFS.ReadDir returns for a real directory are exactly os.ReadDir's.
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

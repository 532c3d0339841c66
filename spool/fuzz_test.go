package spool

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
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

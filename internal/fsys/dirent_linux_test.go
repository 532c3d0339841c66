//go:build linux

package fsys

import (
	"bytes"
	"encoding/binary"
	"slices"
	"strings"
	"testing"

	"github.com/spool-agent/spool-agent/internal/dirent"
	"golang.org/x/sys/unix"
)

// parseDirents is what OS.ReadDir makes of a buffer of records: the
// entries internal/dirent parses, as DirEntry values.
func parseDirents(buf []byte, entries []DirEntry) []DirEntry {
	dirent.Parse(buf, func(e dirent.Entry) {
		entries = append(entries, DirEntry{Name: string(e.Name), Type: uint8(e.Type)})
	})
	return entries
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

package index

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"unsafe"
)

// TestArena: names placed in an arena are found again, each followed by a
// NUL, across chunks; a snapshot (names) stays readable while the arena
// goes on growing in another goroutine (run with -race); names returned by
// internZ share the chunks.
func TestArena(t *testing.T) {
	var ar arena
	var files []listedFile
	var want []string
	add := func(name string) {
		files = append(files, listed(&ar, name))
		want = append(want, name)
	}
	// Enough names of up to 255 bytes to fill several 1 MiB chunks.
	for i := range 20000 {
		add(fmt.Sprintf("%0*d", 1+i%255, i))
	}
	if len(ar.chunks) < 3 {
		t.Fatalf("%d chunks: the test wants names across several", len(ar.chunks))
	}
	check := func(nm names, files []listedFile, want []string) {
		for i := range files {
			got := nm.of(&files[i])
			if got != want[i] {
				t.Errorf("name %d: %q, want %q", i, got, want[i])
				return
			}
			if z := unsafe.Slice(unsafe.StringData(got), len(got)+1)[len(got)]; z != 0 {
				t.Errorf("name %d not followed by a NUL: %q", i, z)
				return
			}
		}
	}
	nm, before, wantBefore := ar.names(), files, want
	var wg sync.WaitGroup
	wg.Go(func() { check(nm, before, wantBefore) })
	more := strings.Repeat("x", 255)
	for range 10000 {
		add(more)
	}
	wg.Wait()
	check(ar.names(), files, want)
	s := ar.internZ([]byte("interned"))
	if s != "interned" {
		t.Errorf("internZ = %q", s)
	}
	if z := unsafe.Slice(unsafe.StringData(s), len(s)+1)[len(s)]; z != 0 {
		t.Errorf("internZ not followed by a NUL: %q", z)
	}
}

// TestListing: files added to a listing are found again in order, through
// at and through the chunks, across chunk boundaries; every chunk but the
// last holds listingChunk files.
func TestListing(t *testing.T) {
	for _, n := range []int{0, 1, listingChunk - 1, listingChunk, listingChunk + 1, 3*listingChunk + 7} {
		var l listing
		for i := range n {
			l.add(listedFile{ino: uint64(i)})
		}
		if l.n != n {
			t.Fatalf("%d added: n = %d", n, l.n)
		}
		for i := range n {
			if got := l.at(i).ino; got != uint64(i) {
				t.Fatalf("%d added: at(%d).ino = %d", n, i, got)
			}
		}
		seen := 0
		for k, c := range l.chunks {
			if k < len(l.chunks)-1 && len(c) != listingChunk {
				t.Errorf("%d added: chunk %d of %d holds %d", n, k, len(l.chunks), len(c))
			}
			for i := range c {
				if c[i].ino != uint64(seen) {
					t.Fatalf("%d added: file %d of the chunks is %d", n, seen, c[i].ino)
				}
				seen++
			}
		}
		if seen != n {
			t.Errorf("%d added: %d in the chunks", n, seen)
		}
	}
}

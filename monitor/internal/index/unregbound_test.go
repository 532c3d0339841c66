package index

import (
	"slices"
	"sync/atomic"
	"testing"
	"testing/synctest"
)

// TestUnregBound: a listing pass keeps registered names and the first max
// unregistered ones in listing order, and only counts the others, whether
// the registry was known before, during or after the names were listed.
func TestUnregBound(t *testing.T) {
	names := []string{"x1", "a", "x2", "b", "x3", "x4", "c", "x5"}
	registered := []string{"a", "b", "c"}
	tests := []struct {
		name    string
		max     int
		readyAt int // the registry is known before names[readyAt] is listed (-1: concurrently)
		want    []string
		dropped int
	}{
		{"no bound", 0, 0, names, 0},
		{"registry known first", 2, 0, []string{"x1", "a", "x2", "b", "c"}, 3},
		{"registry known midway", 2, 1, []string{"x1", "a", "x2", "b", "c"}, 3},
		{"registry known concurrently", 2, -1, []string{"x1", "a", "x2", "b", "c"}, 3},
		{"within the bound", 5, 4, names, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ix := newIndex(t.TempDir(), nil)
			for _, n := range registered {
				ix.newID(n)
			}
			regDone := make(chan struct{})
			var files listing
			var ar arena
			b := unregBound{ix: ix, regDone: regDone, ar: &ar, max: tc.max, lists: []*listing{&files}}
			done := make(chan struct{})
			go func() {
				// keep may wait for the registry once it holds max names.
				defer close(done)
				for i, n := range names {
					if i == tc.readyAt {
						close(regDone)
					}
					if ok, _ := b.keep([]byte(n)); ok {
						files.add(listed(&ar, n))
					}
				}
			}()
			if tc.readyAt < 0 {
				close(regDone)
			}
			<-done
			if !b.ready && tc.max > 0 {
				<-regDone
				b.prune()
			}
			var got []string
			for i := range files.n {
				if f := files.at(i); f.id != droppedID {
					got = append(got, ar.names().of(f))
				}
			}
			if !slices.Equal(got, tc.want) || b.dropped != tc.dropped {
				t.Errorf("kept %v, dropped %d; want %v, %d", got, b.dropped, tc.want, tc.dropped)
			}
		})
	}
}

// TestUnregBoundAlongsideRegistry: before the registry is known a pass
// holds up to max names plus as many as the registry pass has listed so
// far (at most max of them can be unregistered), so it lists alongside the
// registry pass; past that it waits for the registry to list more, or to be
// known.
func TestUnregBoundAlongsideRegistry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ix := newIndex(t.TempDir(), nil)
		regDone := make(chan struct{})
		var reg regProgress
		reg.add(3)
		var files listing
		var ar arena
		b := unregBound{ix: ix, regDone: regDone, ar: &ar, reg: &reg, max: 2, lists: []*listing{&files}}
		for _, n := range []string{"a", "b", "c", "d", "e"} {
			if ok, _ := b.keep([]byte(n)); !ok {
				t.Fatalf("%s not kept while the pass holds fewer than max+listed names", n)
			}
			files.add(listed(&ar, n))
		}
		var kept atomic.Int32
		next := func(name string) {
			if ok, _ := b.keep([]byte(name)); ok {
				files.add(listed(&ar, name))
			}
			kept.Add(1)
		}
		go next("f")
		synctest.Wait()
		if kept.Load() != 0 {
			t.Fatal("the pass held a 6th name with max 2 and 3 registry names listed")
		}
		reg.add(1) // the registry pass lists a 4th name
		synctest.Wait()
		if kept.Load() != 1 {
			t.Fatal("the pass still waits after the registry listed a name more")
		}
		go next("g")
		synctest.Wait()
		if kept.Load() != 1 {
			t.Fatal("the pass held a 7th name with max 2 and 4 registry names listed")
		}
		for _, n := range []string{"a", "b", "c", "f"} {
			ix.newID(n)
		}
		close(regDone) // the registry is known: d and e are unregistered, g too
		synctest.Wait()
		if kept.Load() != 2 {
			t.Fatal("the pass still waits once the registry is known")
		}
		var got []string
		for i := range files.n {
			if f := files.at(i); f.id != droppedID {
				got = append(got, ar.names().of(f))
			}
		}
		if want := []string{"a", "b", "c", "d", "e", "f"}; !slices.Equal(got, want) || b.dropped != 1 {
			t.Errorf("kept %v, dropped %d; want %v, 1", got, b.dropped, want)
		}
	})
}

// listed returns a listed file named name, placed in ar.
func listed(ar *arena, name string) listedFile {
	var f listedFile
	ar.place(&f, []byte(name))
	return f
}

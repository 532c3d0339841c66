package index

import (
	"slices"
	"testing"
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
			var files []listedFile
			b := unregBound{ix: ix, regDone: regDone, max: tc.max, lists: []*[]listedFile{&files}}
			done := make(chan struct{})
			go func() {
				// keep may wait for the registry once it holds max names.
				defer close(done)
				for i, n := range names {
					if i == tc.readyAt {
						close(regDone)
					}
					if b.keep([]byte(n)) {
						files = append(files, listedFile{name: n})
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
			for _, f := range files {
				got = append(got, f.name)
			}
			if !slices.Equal(got, tc.want) || b.dropped != tc.dropped {
				t.Errorf("kept %v, dropped %d; want %v, %d", got, b.dropped, tc.want, tc.dropped)
			}
		})
	}
}

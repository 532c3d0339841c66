package index

import (
	"slices"
	"testing"
)

// TestFind: Index.find tries the entries from *next on, then the map, and
// moves *next past the entry found; a freed entry (empty name) or a name
// past the window is never taken for another.
func TestFind(t *testing.T) {
	ix := newIndex(t.TempDir(), nil)
	for _, n := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		ix.newID(n)
	}
	ix.ents[3].regData = 0 // "d" gone: settle frees it
	ix.settle(3)
	tests := []struct {
		name     string
		next     uint32
		wantID   uint32
		wantOK   bool
		wantNext uint32
	}{
		{"a", 0, 0, true, 1},   // the very next entry
		{"c", 1, 2, true, 3},   // within the window
		{"h", 0, 7, true, 8},   // past the window: the map
		{"b", 5, 1, true, 2},   // behind: the map
		{"d", 3, 0, false, 3},  // freed: not found, next unchanged
		{"", 3, 0, false, 3},   // the freed entry's empty name is no match
		{"zz", 6, 0, false, 6}, // not registered
		{"g", 100, 6, true, 7}, // next past the end
		{"e", 4, 4, true, 5},   // at next exactly
		{"f", 3, 5, true, 6},   // past the freed entry
		{"h", 7, 7, true, 8},   // the last entry
		{"a", 8, 0, true, 1},   // next at the end, then the map
		{"zz", 100, 0, false, 100},
		{"a", noID, 0, true, 1}, // noID: past every entry, no overflow
		{"zz", noID, 0, false, noID},
	}
	for _, tc := range tests {
		next := tc.next
		id, ok := ix.find(tc.name, &next)
		if ok != tc.wantOK || (ok && id != tc.wantID) || next != tc.wantNext {
			t.Errorf("find(%q, next %d) = %d, %v, next %d; want %d, %v, next %d", tc.name, tc.next, id, ok, next, tc.wantID, tc.wantOK, tc.wantNext)
		}
	}
}

// TestAddRegistry: a registry listing that names a file twice makes one
// entry of it, the one the map knows, and empties the other (settle frees
// it once); the count of registry entries counts names, and find never
// returns the emptied one.
func TestAddRegistry(t *testing.T) {
	for _, tc := range []struct {
		listed []string
		want   []string // the live entries' names, in id order
	}{
		{[]string{"a", "b", "c"}, []string{"a", "b", "c"}},
		{[]string{"a", "b", "a", "c"}, []string{"b", "a", "c"}},
		{[]string{"a", "a", "a"}, []string{"a"}},
		{nil, nil},
	} {
		ix := newIndex(t.TempDir(), nil)
		var files listing
		for _, n := range tc.listed {
			f := listed(&ix.arena, n)
			f.flags = listedPresent
			files.add(f)
		}
		ix.addRegistry(&files, ix.arena.names())
		var live []string
		for id, e := range ix.ents {
			if e.name == "" {
				continue
			}
			live = append(live, e.name)
			if got := ix.ids[e.name]; got != uint32(id) {
				t.Errorf("%v: entry %d (%q) but the map says %d", tc.listed, id, e.name, got)
			}
			if e.regData&registryPresent == 0 {
				t.Errorf("%v: entry %q not registered", tc.listed, e.name)
			}
		}
		if !slices.Equal(live, tc.want) || ix.regCount != len(tc.want) || len(ix.ents) != len(tc.listed) {
			t.Errorf("%v: live %v, regCount %d, %d entries; want %v", tc.listed, live, ix.regCount, len(ix.ents), tc.want)
		}
		for id := range ix.ents {
			ix.settle(uint32(id))
		}
		if len(ix.free) != len(tc.listed)-len(tc.want) {
			t.Errorf("%v: %d freed by settle, want %d", tc.listed, len(ix.free), len(tc.listed)-len(tc.want))
		}
		for _, n := range tc.want {
			var next uint32
			if id, ok := ix.find(n, &next); !ok || ix.ents[id].name != n {
				t.Errorf("%v: find(%q) = %d, %v", tc.listed, n, id, ok)
			}
		}
	}
}

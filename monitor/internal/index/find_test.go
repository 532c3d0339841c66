package index

import "testing"

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

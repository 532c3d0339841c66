package index

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestFillSizes: a scan with SizesLater publishes DataBytes as pending and
// counts no regular data file; FillSizes then records the sizes it stats,
// keeps what an event recorded since (a later stat), and records nothing in
// an index that is no longer in use.
func TestFillSizes(t *testing.T) {
	tests := []struct {
		name string
		// between runs between the scan and FillSizes, under the lock.
		between  func(t *testing.T, dir string, ix *Index)
		replaced bool  // the index is no longer in use when FillSizes runs
		want     int64 // DataBytes after FillSizes
		pending  bool  // DataBytesPending after FillSizes
	}{
		{name: "nothing changed", want: 1 + 20 + 300 + 4000},
		{name: "a payload rewritten, its event applied", want: 1 + 20 + 300 + 7, between: func(t *testing.T, dir string, ix *Index) {
			p := filepath.Join(dir, ".data", "d")
			write(t, p, 7)
			ix.Apply(p, OpCreate|OpWrite)
		}},
		{name: "a payload rewritten, its event not yet applied", want: 1 + 20 + 300 + 9, between: func(t *testing.T, dir string, ix *Index) {
			write(t, filepath.Join(dir, ".data", "d"), 9)
		}},
		{name: "a payload removed, its event not yet applied", want: 1 + 20 + 300, between: func(t *testing.T, dir string, ix *Index) {
			if err := os.Remove(filepath.Join(dir, ".data", "d")); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "a payload removed, its event applied", want: 1 + 20 + 300, between: func(t *testing.T, dir string, ix *Index) {
			p := filepath.Join(dir, ".data", "d")
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			ix.Apply(p, OpRemove)
		}},
		{name: "index replaced", replaced: true, want: 0, pending: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := newSpoolDirs(t)
			// a, b, c, d: registered entries in queue1 with payloads of
			// 1, 20, 300 and 4000 bytes; orphan: a payload nobody registered
			// (counted, as a scan counts it); sub: a directory in .data,
			// which has no size.
			for i, n := range []string{"a", "b", "c", "d"} {
				write(t, filepath.Join(dir, ".registry", n), 0)
				write(t, filepath.Join(dir, "queue1", n), 10)
				write(t, filepath.Join(dir, ".data", n), []int{1, 20, 300, 4000}[i])
			}
			write(t, filepath.Join(dir, ".data", "orphan"), 0)
			if err := os.Mkdir(filepath.Join(dir, ".data", "sub"), 0o755); err != nil {
				t.Fatal(err)
			}

			plain, err := Scan(context.Background(), dir, ScanOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if p := plain.Publish(); p.DataBytes != 4321 || p.DataBytesPending {
				t.Fatalf("plain scan: DataBytes %d pending %v, want 4321 false", p.DataBytes, p.DataBytesPending)
			}
			ix, err := Scan(context.Background(), dir, ScanOptions{SizesLater: true})
			if err != nil {
				t.Fatal(err)
			}
			if p := ix.Publish(); p.DataBytes != 0 || !p.DataBytesPending {
				t.Fatalf("scan with SizesLater: DataBytes %d pending %v, want 0 true", p.DataBytes, p.DataBytesPending)
			}
			var mu sync.Mutex
			if tc.between != nil {
				mu.Lock()
				tc.between(t, dir, ix)
				mu.Unlock()
			}
			if err := ix.FillSizes(context.Background(), &mu, func() bool { return !tc.replaced }); err != nil {
				t.Fatal(err)
			}
			if p := ix.Publish(); p.DataBytes != tc.want || p.DataBytesPending != tc.pending {
				t.Errorf("after FillSizes: DataBytes %d pending %v, want %d %v", p.DataBytes, p.DataBytesPending, tc.want, tc.pending)
			}
			if ix.SizesPending() != tc.pending {
				t.Errorf("SizesPending() = %v, want %v", ix.SizesPending(), tc.pending)
			}
		})
	}
}

// TestFillSizesCanceled: a canceled FillSizes returns the context's error
// and leaves DataBytes pending.
func TestFillSizesCanceled(t *testing.T) {
	dir := newSpoolDirs(t)
	write(t, filepath.Join(dir, ".registry", "a"), 0)
	write(t, filepath.Join(dir, ".data", "a"), 5)
	ix, err := Scan(context.Background(), dir, ScanOptions{SizesLater: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var mu sync.Mutex
	if err := ix.FillSizes(ctx, &mu, func() bool { return true }); err != context.Canceled {
		t.Fatalf("FillSizes: %v, want context.Canceled", err)
	}
	if !ix.Publish().DataBytesPending {
		t.Error("DataBytes not pending after a canceled FillSizes")
	}
}

func write(t *testing.T, path string, size int) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Repeat("x", size)), 0o644); err != nil {
		t.Fatal(err)
	}
}

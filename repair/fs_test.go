package repair

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestCopyNew: the copy has the source's size and bytes, its holes stay
// holes (a payload claiming a terabyte costs what it holds), and a missing
// source gives an empty file.
func TestCopyNew(t *testing.T) {
	const tib = 1 << 40
	tests := []struct {
		name  string
		write func(t *testing.T, f *os.File) // nil: no source
		size  int64
	}{
		{"dense", func(t *testing.T, f *os.File) { f.Write(bytes.Repeat([]byte("payload "), 1000)) }, 8000},
		{"sparse, data at both ends and in the middle", func(t *testing.T, f *os.File) {
			for _, off := range []int64{0, tib / 2, tib - 4096} {
				if _, err := f.WriteAt(bytes.Repeat([]byte{byte(off >> 32)}, 4096), off); err != nil {
					t.Fatal(err)
				}
			}
		}, tib},
		{"only a hole", func(t *testing.T, f *os.File) {
			if err := f.Truncate(tib); err != nil {
				t.Fatal(err)
			}
		}, tib},
		{"missing", nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
			if tt.write != nil {
				f, err := os.Create(src)
				if err != nil {
					t.Fatal(err)
				}
				tt.write(t, f)
				f.Close()
			}
			d, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(d)
			if err := copyNew(d, "src", d, "dst", 0o640); err != nil {
				t.Fatal(err)
			}
			var st, sst unix.Stat_t
			if err := unix.Lstat(dst, &st); err != nil {
				t.Fatal(err)
			}
			if st.Size != tt.size {
				t.Errorf("size %d, want %d", st.Size, tt.size)
			}
			if tt.write == nil {
				return
			}
			if err := unix.Lstat(src, &sst); err != nil {
				t.Fatal(err)
			}
			if st.Blocks > sst.Blocks+64 {
				t.Errorf("the copy holds %d blocks of 512 bytes, the source %d: holes were filled", st.Blocks, sst.Blocks)
			}
			// Compare the regions that hold data, and a stretch of hole.
			sf, _ := os.Open(src)
			defer sf.Close()
			df, _ := os.Open(dst)
			defer df.Close()
			for _, off := range []int64{0, tt.size / 2, tt.size / 4, max(tt.size-4096, 0)} {
				a, b := make([]byte, 4096), make([]byte, 4096)
				na, _ := sf.ReadAt(a, off)
				nb, _ := df.ReadAt(b, off)
				if na != nb || !bytes.Equal(a[:na], b[:nb]) {
					t.Errorf("bytes at %d differ", off)
				}
			}
		})
	}
}

// TestCopyNewNoSpace: a copy that needs more than the space left is refused
// with ENOSPC before anything is written, and leaves no file.
func TestCopyNewNoSpace(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "src"), bytes.Repeat([]byte("x"), 64<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(d)
	left := func(int) (uint64, error) { return 32 << 10, nil }
	if err := copyNewWithin(d, "src", d, "dst", 0o640, left); !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("copy = %v, want ENOSPC", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "dst")); !os.IsNotExist(err) {
		t.Errorf("dst after a refused copy: %v", err)
	}
	if err := copyNewWithin(d, "src", d, "dst", 0o640, func(int) (uint64, error) { return 1 << 20, nil }); err != nil {
		t.Errorf("copy with room = %v", err)
	}
}

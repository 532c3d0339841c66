package fsys

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestWritebackErr: the per-file check of group commit writes what is
// still dirty and waits (not WAIT_AFTER alone, which neither writes nor
// reports a page the round left dirty), and reports errors.
func TestWritebackErr(t *testing.T) {
	const all = unix.SYNC_FILE_RANGE_WAIT_BEFORE | unix.SYNC_FILE_RANGE_WRITE | unix.SYNC_FILE_RANGE_WAIT_AFTER
	if writebackFlags != all {
		t.Errorf("sync_file_range flags %#x, want WAIT_BEFORE|WRITE|WAIT_AFTER (%#x)", writebackFlags, all)
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(make([]byte, 1<<16)); err != nil {
		t.Fatal(err)
	}
	if err := (OS{}).WritebackErr(int(f.Fd())); err != nil {
		t.Errorf("WritebackErr of a written file: %v", err)
	}
	if err := (OS{}).WritebackErr(-1); !errors.Is(err, unix.EBADF) {
		t.Errorf("WritebackErr(-1): %v, want EBADF", err)
	}
}

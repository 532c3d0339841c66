package fsys

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
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
	f := writtenFile(t)
	if err := (OS{}).WritebackErr(int(f.Fd())); err != nil {
		t.Errorf("WritebackErr of a written file: %v", err)
	}
	if err := (OS{}).WritebackErr(-1); !errors.Is(err, unix.EBADF) {
		t.Errorf("WritebackErr(-1): %v, want EBADF", err)
	}
}

// writtenFile returns a new file with 64 KiB written and not yet written
// back, closed when the test ends.
func writtenFile(t *testing.T) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if _, err := f.Write(make([]byte, 1<<16)); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestStartWriteback: the write-back start is sync_file_range(2) with
// SYNC_FILE_RANGE_WRITE on the descriptor: it accepts a written file and
// reports what the system call reports for others.
func TestStartWriteback(t *testing.T) {
	f := writtenFile(t)
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	for _, tc := range []struct {
		what string
		fd   int
		want error
	}{
		{"a written file", int(f.Fd()), nil},
		{"a pipe", p[1], unix.ESPIPE},
		{"a closed descriptor", -1, unix.EBADF},
	} {
		if err := (OS{}).StartWriteback(tc.fd); !errors.Is(err, tc.want) {
			t.Errorf("StartWriteback of %s: %v, want %v", tc.what, err, tc.want)
		}
	}
}

// TestSyncfsThenFsync: Syncfs ends with an fsync of its descriptor (the
// cache flush that ext4 without a journal leaves out of syncfs). A pipe
// tells them apart: syncfs of pipefs succeeds, fsync of a pipe is EINVAL.
func TestSyncfsThenFsync(t *testing.T) {
	dir, err := os.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	if err := (OS{}).Syncfs(int(dir.Fd())); err != nil {
		t.Errorf("Syncfs of a directory: %v", err)
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	if err := unix.Syncfs(p[0]); err != nil {
		t.Fatalf("syncfs(2) of a pipe: %v (the test needs it to succeed)", err)
	}
	if err := (OS{}).Syncfs(p[0]); !errors.Is(err, unix.EINVAL) || !strings.Contains(err.Error(), "fsync after syncfs") {
		t.Errorf("Syncfs of a pipe: %v, want EINVAL from its fsync, saying so", err)
	}
	if err := (OS{}).Syncfs(-1); !errors.Is(err, unix.EBADF) {
		t.Errorf("Syncfs(-1): %v, want EBADF", err)
	}
}

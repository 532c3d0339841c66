package spool

import (
	"context"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/spool-agent/spool-agent/internal/fsys"
	"golang.org/x/sys/unix"
)

// devFS reports another device for one descriptor (a queue directory that
// is a mount point) and counts the barriers.
type devFS struct {
	fsys.OS
	other  atomic.Int64 // the descriptor on "another file system"; 0: none
	mu     sync.Mutex
	syncfs int
	fsyncs map[int]int
}

func (f *devFS) Fstat(fd int, st *unix.Stat_t) error {
	err := f.OS.Fstat(fd, st)
	if int64(fd) == f.other.Load() {
		st.Dev++
	}
	return err
}

func (f *devFS) Fsync(fd int) error {
	f.mu.Lock()
	f.fsyncs[fd]++
	f.mu.Unlock()
	return f.OS.Fsync(fd)
}

func (f *devFS) Syncfs(fd int) error {
	f.mu.Lock()
	f.syncfs++
	f.mu.Unlock()
	return f.OS.Syncfs(fd)
}

// TestGroupCommitOtherFS: a directory on another file system than the
// spool's root (a mount point reached where openat2 is refused) is never
// left to a syncfs of the root: it is fsynced.
func TestGroupCommitOtherFS(t *testing.T) {
	f := &devFS{fsyncs: map[int]int{}}
	s, err := Create(filepath.Join(t.TempDir(), "spool"), []string{"q1"}, &Options{fs: f})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	qd, err := s.qdirs("q1")
	if err != nil {
		t.Fatal(err)
	}
	f.other.Store(int64(qd.dir.fd))
	s.commit.syncfsSound = func() bool { return true }
	s.commit.alwaysShare = true
	if _, err := s.EnqueueBytes(context.Background(), "q1", []byte("m"), []byte("d"), EnqueueOptions{}); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.syncfs == 0 || f.fsyncs[qd.dir.fd] == 0 {
		t.Errorf("%d syncfs, %d fsyncs of q1: want the registry and data directories in a syncfs round, q1 fsynced", f.syncfs, f.fsyncs[qd.dir.fd])
	}
}

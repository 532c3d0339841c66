package spool

import (
	"context"
	"errors"
	"fmt"
	"maps"
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

// devSpool creates a spool with queue q1 on a devFS, closed with the test.
func devSpool(t *testing.T) (*Spool, *devFS, *queueDirs) {
	t.Helper()
	f := &devFS{fsyncs: map[int]int{}}
	s, err := Create(filepath.Join(t.TempDir(), "spool"), []string{"q1"}, &Options{fs: f})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	qd, err := s.qdirs("q1")
	if err != nil {
		t.Fatal(err)
	}
	return s, f, qd
}

// TestGroupCommitOtherFS: a directory on another file system than the
// spool's root (a mount point reached where openat2 is refused) is never
// left to a syncfs of the root: it is fsynced.
func TestGroupCommitOtherFS(t *testing.T) {
	s, f, qd := devSpool(t)
	f.other.Store(int64(qd.dir.fd))
	s.commit.syncfsSound = func() bool { return true }
	s.commit.syncfsFS = func(int) bool { return true }
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

// TestSyncfsMagic: syncfs rounds only on ext4, XFS and btrfs; every other
// file system (overlayfs, FUSE, CIFS/SMB, NFS, tmpfs, ...) fsyncs.
func TestSyncfsMagic(t *testing.T) {
	for _, tc := range []struct {
		name  string
		magic uint32
		want  bool
	}{
		{"ext4", unix.EXT4_SUPER_MAGIC, true},
		{"xfs", unix.XFS_SUPER_MAGIC, true},
		{"btrfs", unix.BTRFS_SUPER_MAGIC, true},
		{"overlayfs", unix.OVERLAYFS_SUPER_MAGIC, false},
		{"fuse", unix.FUSE_SUPER_MAGIC, false},
		{"cifs", unix.CIFS_SUPER_MAGIC, false},
		{"smb2", unix.SMB2_SUPER_MAGIC, false},
		{"nfs", unix.NFS_SUPER_MAGIC, false},
		{"tmpfs", unix.TMPFS_MAGIC, false},
		{"zero", 0, false},
	} {
		if got := syncfsMagic(tc.magic); got != tc.want {
			t.Errorf("%s (%#x): got %v, want %v", tc.name, tc.magic, got, tc.want)
		}
	}
}

// TestSyncfsFileSystem: the spool's root is checked with fstatfs, once per
// spool, and a file system off the list keeps the fsync rounds even where
// the kernel's syncfs is sound.
func TestSyncfsFileSystem(t *testing.T) {
	dir := t.TempDir()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil {
		t.Fatal(err)
	}
	if got, want := syncfsFileSystem(fd), syncfsMagic(uint32(st.Type)); got != want {
		t.Errorf("syncfsFileSystem(%s, f_type %#x) = %v, want %v", dir, st.Type, got, want)
	}
	if syncfsFileSystem(-1) {
		t.Error("syncfsFileSystem of a bad descriptor: true")
	}
	for _, onList := range []bool{false, true} {
		var calls atomic.Int32
		c := committer{
			syncfsSound: func() bool { return true },
			syncfsFS: func(got int) bool {
				calls.Add(1)
				if got != fd {
					t.Errorf("file system checked through %d, want the root %d", got, fd)
				}
				return onList
			},
		}
		c.init(fsys.OS{}, fd)
		c.init(fsys.OS{}, fd)
		if (c.batch != nil) != onList || calls.Load() != 1 {
			t.Errorf("on the list %v: syncfs rounds %v, %d checks (want 1)", onList, c.batch != nil, calls.Load())
		}
	}
}

// onceFS fails the next shared barrier it is told to (a syncfs, or the
// fsync of one directory) once, as a write-back error is reported once
// per open file: the round that sees it may not be the one of the change
// whose data it lost.
type onceFS struct {
	fsys.OS
	failSyncfs atomic.Bool
	failFsync  atomic.Int64 // a descriptor + 1; 0: none
}

func (f *onceFS) Syncfs(fd int) error {
	if f.failSyncfs.CompareAndSwap(true, false) {
		return unix.EIO
	}
	return f.OS.Syncfs(fd)
}

func (f *onceFS) Fsync(fd int) error {
	if f.failFsync.CompareAndSwap(int64(fd)+1, 0) {
		return unix.EIO
	}
	return f.OS.Fsync(fd)
}

// TestGroupCommitErrorGeneration: an operation reads the error generation
// before its change; when the error of a shared barrier is taken by another
// operation's round after that, the operation fails too, with an error
// wrapping the barrier's errno, though its own round returned 0.
func TestGroupCommitErrorGeneration(t *testing.T) {
	for _, syncfs := range []bool{true, false} {
		for _, viaFiles := range []bool{false, true} {
			t.Run(fmt.Sprintf("syncfs=%v/staged=%v", syncfs, viaFiles), func(t *testing.T) {
				f := &onceFS{}
				s, err := Create(filepath.Join(t.TempDir(), "spool"), []string{"q1"}, &Options{fs: f, Durability: DurabilityFull})
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				s.commit.syncfsSound = func() bool { return syncfs }
				s.commit.syncfsFS = func(int) bool { return true }
				s.commit.alwaysShare = true

				// The operation reads the generation, then changes.
				var files staged
				gen := s.commit.begin()
				files.begin(s)
				// Another operation's round takes the error.
				if syncfs {
					f.failSyncfs.Store(true)
				} else {
					f.failFsync.Store(int64(s.data.fd) + 1)
				}
				if err := s.syncDirsSince(s.commit.begin(), s.data); !errors.Is(err, unix.EIO) {
					t.Fatalf("the other round: %v, want EIO", err)
				}
				// The operation's own round returns 0.
				if viaFiles {
					if _, err := s.writeStaged(&files, s.tmp, "x", []byte("x"), nil); err != nil {
						t.Fatal(err)
					}
					err = s.commitStaged(&files, s.tmp)
				} else {
					err = s.syncDirsSince(gen, s.tmp)
				}
				if !errors.Is(err, unix.EIO) {
					t.Errorf("acknowledged after a shared barrier failed since its change: %v, want EIO", err)
				}
				// An operation that began after the failure is not failed.
				if err := s.syncDirsSince(s.commit.begin(), s.tmp); err != nil {
					t.Errorf("an operation that began after the failure: %v", err)
				}
			})
		}
	}
}

// TestBarrierKind: a round with files no fsync covered is a syncfs (a
// directory on another file system fsynced after it); a round of
// directories alone fsyncs each, unless one syncfs cost less by the
// running costs, covers them all and serves more than one operation (a lone
// operation's directories are fsynced, as before group commit).
func TestBarrierKind(t *testing.T) {
	for _, tc := range []struct {
		name          string
		files         bool
		dirs          []string // "reg", "data", "q1" (q1 is on another file system when otherFS)
		otherFS       bool
		lone          bool  // the round serves one operation
		noSyncfs      bool  // the spool has no syncfs rounds (batch nil)
		round, fsync  int64 // running costs of a syncfs round and of one directory fsync (ns); 0: not measured
		wantSyncfs    int
		wantFsyncDirs []string
	}{
		{name: "files", files: true, dirs: []string{"reg", "data"}, wantSyncfs: 1},
		{name: "files, a directory elsewhere", files: true, dirs: []string{"reg", "q1"}, otherFS: true, wantSyncfs: 1, wantFsyncDirs: []string{"q1"}},
		{name: "directories, nothing measured", dirs: []string{"reg", "data"}, wantFsyncDirs: []string{"reg", "data"}},
		{name: "directories, fsyncs cheaper", dirs: []string{"reg", "data"}, round: 300, fsync: 150, wantFsyncDirs: []string{"reg", "data"}},
		{name: "directories, syncfs cheaper", dirs: []string{"reg", "data"}, round: 299, fsync: 150, wantSyncfs: 1},
		{name: "directories, syncfs cheaper, one operation", dirs: []string{"reg", "data"}, lone: true, round: 100, fsync: 150, wantFsyncDirs: []string{"reg", "data"}},
		{name: "files, one operation", files: true, dirs: []string{"reg", "data"}, lone: true, wantSyncfs: 1},
		{name: "directories, syncfs cheaper but one elsewhere", dirs: []string{"reg", "q1"}, otherFS: true, round: 100, fsync: 150, wantFsyncDirs: []string{"reg", "q1"}},
		{name: "directories, no syncfs rounds", dirs: []string{"reg", "data"}, noSyncfs: true, round: 100, fsync: 150, wantFsyncDirs: []string{"reg", "data"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, f, qd := devSpool(t)
			byName := map[string]dirRef{"reg": s.reg, "data": s.data, "q1": qd.dir}
			if tc.otherFS {
				f.other.Store(int64(qd.dir.fd))
			}
			c := &s.commit
			if !tc.noSyncfs {
				c.batch = f
			}
			c.syncfsRound.ns.Store(tc.round)
			c.dirFsync.ns.Store(tc.fsync)
			var n need
			for _, d := range tc.dirs {
				n.add(need{dirs: []dirRef{byName[d]}})
			}
			n.files = tc.files
			n.ops = 2
			if tc.lone {
				n.ops = 1
			}
			f.mu.Lock()
			clear(f.fsyncs)
			f.syncfs = 0
			f.mu.Unlock()
			if err := s.barrier(n); err != nil {
				t.Fatal(err)
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			want := map[int]int{}
			for _, d := range tc.wantFsyncDirs {
				want[byName[d].fd]++
			}
			if f.syncfs != tc.wantSyncfs || !maps.Equal(f.fsyncs, want) {
				t.Errorf("%d syncfs, fsyncs %v; want %d syncfs, fsyncs %v (reg %d, data %d, q1 %d)",
					f.syncfs, f.fsyncs, tc.wantSyncfs, want, s.reg.fd, s.data.fd, qd.dir.fd)
			}
		})
	}
}

package spool

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spool-agent/spool-agent/internal/fsys"
	"golang.org/x/sys/unix"
)

// tree lists dir and everything under it like `find spool | sort`, with
// paths relative to dir's parent.
func tree(t testing.TB, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(filepath.Dir(dir), p)
		if err != nil {
			return err
		}
		lines = append(lines, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// treeState is tree with each path's type, permissions, size, mtime and,
// for files, a hash of the contents: two equal treeStates mean nothing
// under dir changed (a file created and removed again changes its
// directory's mtime).
func treeState(t testing.TB, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		line := fmt.Sprintf("%s %v %d %d", p, info.Mode(), info.Size(), info.ModTime().UnixNano())
		if info.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h := sha256.Sum256(b)
			line += " " + hex.EncodeToString(h[:8])
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// layout builds the expected `find spool | sort` listing of a spool named
// "spool" from the paths under it.
func layout(paths ...string) string {
	lines := []string{"spool"}
	for _, p := range paths {
		lines = append(lines, "spool/"+p)
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// bareLayout is the layout of a fresh spool with the given queues.
func bareLayout(queues ...string) []string {
	ps := []string{".data", ".registry", ".tmp"}
	for _, q := range queues {
		ps = append(ps, q, q+"/.checkout")
	}
	return ps
}

// newTestSpool creates a spool named "spool" in a fresh temporary directory.
func newTestSpool(t testing.TB, queues []string, o *Options) *Spool {
	t.Helper()
	s, err := Create(filepath.Join(t.TempDir(), "spool"), queues, o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// mustEnqueue enqueues metadata and data into queue.
func mustEnqueue(t testing.TB, s *Spool, queue, metadata, data string, o EnqueueOptions) string {
	t.Helper()
	name, err := s.EnqueueBytes(context.Background(), queue, []byte(metadata), []byte(data), o)
	if err != nil {
		t.Fatal(err)
	}
	return name
}

// mustList lists queue.
func mustList(t testing.TB, s *Spool, queue string) []string {
	t.Helper()
	names, err := s.List(queue)
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// hookFS wraps OSFS: hook runs before every call with the operation and
// path (for descriptor calls, the path the descriptor was opened with) and
// may block, or return an error to inject instead of making the call. It
// also counts the calls in flight.
type hookFS struct {
	hook func(op, path string) error
	// readDir replaces ReadDir for a call whose hook returns errOverride.
	readDir func(path string) ([]fsys.DirEntry, error)

	mu  sync.Mutex
	fds map[int]string

	inflight, maxInflight atomic.Int64
}

var _ fsys.FS = (*hookFS)(nil)

func (h *hookFS) enter(op, path string) error {
	n := h.inflight.Add(1)
	for {
		m := h.maxInflight.Load()
		if n <= m || h.maxInflight.CompareAndSwap(m, n) {
			break
		}
	}
	if h.hook != nil {
		if err := h.hook(op, path); err != nil {
			h.inflight.Add(-1)
			return err
		}
	}
	return nil
}

func (h *hookFS) exit() { h.inflight.Add(-1) }

func (h *hookFS) path(fd int) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.fds[fd]
}

// at returns the path of name relative to the directory dirfd.
func (h *hookFS) at(dirfd int, name string) string {
	if dirfd == unix.AT_FDCWD {
		return filepath.Clean(name)
	}
	return filepath.Join(h.path(dirfd), name)
}

func (h *hookFS) record(fd int, path string) {
	h.mu.Lock()
	if h.fds == nil {
		h.fds = map[int]string{}
	}
	h.fds[fd] = path
	h.mu.Unlock()
}

func (h *hookFS) Open(dirfd int, name string, flags int, perm uint32) (int, error) {
	path := h.at(dirfd, name)
	if err := h.enter("open", path); err != nil {
		return -1, err
	}
	defer h.exit()
	fd, err := fsys.OS{}.Open(dirfd, name, flags, perm)
	if err == nil {
		h.record(fd, path)
	}
	return fd, err
}

func (h *hookFS) OpenDir(dirfd int, name string) (int, error) {
	path := h.at(dirfd, name)
	if err := h.enter("opendir", path); err != nil {
		return -1, err
	}
	defer h.exit()
	fd, err := fsys.OS{}.OpenDir(dirfd, name)
	if err == nil {
		h.record(fd, path)
	}
	return fd, err
}

func (h *hookFS) Read(fd int, p []byte) (int, error) {
	if err := h.enter("read", h.path(fd)); err != nil {
		return 0, err
	}
	defer h.exit()
	return fsys.OS{}.Read(fd, p)
}

func (h *hookFS) Write(fd int, p []byte) (int, error) {
	if err := h.enter("write", h.path(fd)); err != nil {
		return 0, err
	}
	defer h.exit()
	return fsys.OS{}.Write(fd, p)
}

func (h *hookFS) Fsync(fd int) error {
	if err := h.enter("fsync", h.path(fd)); err != nil {
		return err
	}
	defer h.exit()
	return fsys.OS{}.Fsync(fd)
}

func (h *hookFS) Close(fd int) error {
	path := h.path(fd)
	h.mu.Lock()
	delete(h.fds, fd)
	h.mu.Unlock()
	if err := h.enter("close", path); err != nil {
		unix.Close(fd)
		return err
	}
	defer h.exit()
	return fsys.OS{}.Close(fd)
}

func (h *hookFS) Fstat(fd int, st *unix.Stat_t) error {
	if err := h.enter("fstat", h.path(fd)); err != nil {
		return err
	}
	defer h.exit()
	return fsys.OS{}.Fstat(fd, st)
}

func (h *hookFS) Lstat(dirfd int, name string, st *unix.Stat_t) error {
	if err := h.enter("lstat", h.at(dirfd, name)); err != nil {
		return err
	}
	defer h.exit()
	return fsys.OS{}.Lstat(dirfd, name, st)
}

func (h *hookFS) Rename(olddirfd int, oldname string, newdirfd int, newname string, noReplace bool) error {
	if err := h.enter("rename", h.at(olddirfd, oldname)+" -> "+h.at(newdirfd, newname)); err != nil {
		return err
	}
	defer h.exit()
	return fsys.OS{}.Rename(olddirfd, oldname, newdirfd, newname, noReplace)
}

func (h *hookFS) Unlink(dirfd int, name string) error {
	if err := h.enter("unlink", h.at(dirfd, name)); err != nil {
		return err
	}
	defer h.exit()
	return fsys.OS{}.Unlink(dirfd, name)
}

func (h *hookFS) Mkdir(dirfd int, name string, perm uint32) error {
	if err := h.enter("mkdir", h.at(dirfd, name)); err != nil {
		return err
	}
	defer h.exit()
	return fsys.OS{}.Mkdir(dirfd, name, perm)
}

func (h *hookFS) Touch(dirfd int, name string, t time.Time) error {
	if err := h.enter("touch", h.at(dirfd, name)); err != nil {
		return err
	}
	defer h.exit()
	return fsys.OS{}.Touch(dirfd, name, t)
}

// errOverride, returned by a hook, makes ReadDir call hookFS.readDir.
var errOverride = errors.New("override")

func (h *hookFS) ReadDir(dirfd int) ([]fsys.DirEntry, error) {
	path := h.path(dirfd)
	if err := h.enter("readdir", path); err != nil {
		if err == errOverride {
			defer h.inflight.Add(-1)
			return h.readDir(path)
		}
		return nil, err
	}
	defer h.exit()
	return fsys.OS{}.ReadDir(dirfd)
}

func (h *hookFS) Flock(fd int, how int) error {
	if err := h.enter("flock", h.path(fd)); err != nil {
		return err
	}
	defer h.exit()
	return fsys.OS{}.Flock(fd, how)
}

func (h *hookFS) Fchmod(fd int, mode uint32) error {
	if err := h.enter("fchmod", h.path(fd)); err != nil {
		return err
	}
	defer h.exit()
	return fsys.OS{}.Fchmod(fd, mode)
}

// readDirPath is OSFS.ReadDir of the directory at path.
func readDirPath(path string) ([]fsys.DirEntry, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	return fsys.OS{}.ReadDir(fd)
}

func (h *hookFS) TouchFD(fd int, t time.Time) error {
	if err := h.enter("touch", h.path(fd)); err != nil {
		return err
	}
	defer h.exit()
	return fsys.OS{}.TouchFD(fd, t)
}

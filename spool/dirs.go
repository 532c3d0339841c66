package spool

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/spool-agent/spool-agent/internal/fsys"
	"golang.org/x/sys/unix"
)

// dirRef is an open directory of the spool: the descriptor that every call
// inside it goes through, and its path, for messages only.
type dirRef struct {
	fd   int
	path string
}

// p returns the path of name inside d, for messages.
func (d dirRef) p(name string) string { return d.path + "/" + name }

// queueDirs are a queue's open directories.
type queueDirs struct {
	dir, co dirRef
}

// dirSet holds the spool's open directory descriptors: the root, the
// spool's own directories, and each queue's, opened on first use. A queue's
// descriptors are replaced (AddQueue, Rediscover) when its directory was
// replaced, but never closed before the spool is: an operation in flight
// may still use them. It holds no reference to the Spool, so that a
// cleanup can close the descriptors of a Spool that was never closed.
type dirSet struct {
	fs      fsys.FS
	mu      sync.Mutex
	closed  bool
	shut    atomic.Bool // closed, readable without mu
	fds     []int       // every descriptor opened, to close
	queues  map[string]*queueDirs
	cleanup runtime.Cleanup
}

func (d *dirSet) add(fd int) {
	d.mu.Lock()
	d.fds = append(d.fds, fd)
	d.mu.Unlock()
}

// closeAll closes every descriptor; it reports whether they were open.
func (d *dirSet) closeAll() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return false
	}
	d.closed = true
	d.shut.Store(true)
	for _, fd := range d.fds {
		d.fs.Close(fd)
	}
	d.fds, d.queues = nil, nil
	return true
}

// openDirFlags open a directory for use as a dirfd, never through a symlink.
const openDirFlags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC | unix.O_NOFOLLOW

// openRoot opens the spool root: the user-given path is resolved once
// (symbolic links in it are the user's), then opened with O_NOFOLLOW, and
// everything else is opened relative to that descriptor.
func (s *Spool) openRoot() error {
	real, err := filepath.EvalSymlinks(s.dir)
	if err != nil {
		return pathErr("open spool", s.dir, err)
	}
	fd, err := s.fs.Open(unix.AT_FDCWD, real, openDirFlags, 0)
	if err != nil {
		return pathErr("open spool", s.dir, err)
	}
	s.dirs.add(fd)
	s.root = dirRef{fd: fd, path: s.dir}
	s.dirs.cleanup = runtime.AddCleanup(s, func(d *dirSet) { d.closeAll() }, s.dirs)
	return nil
}

// openSub opens the directory name beneath parent (never through a
// symbolic link, never outside the spool).
func (s *Spool) openSub(parent dirRef, name string) (dirRef, error) {
	p := parent.p(name)
	fd, err := s.fs.OpenDir(parent.fd, name)
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.EXDEV) {
			return dirRef{}, fmt.Errorf("%s: %w: not a directory inside the spool (a symbolic link?): %w", p, ErrNotSpool, err)
		}
		return dirRef{}, pathErr("open directory", p, err)
	}
	s.dirs.add(fd)
	return dirRef{fd: fd, path: p}, nil
}

// openOwnDirs opens .registry, .tmp and .data.
func (s *Spool) openOwnDirs() error {
	var err error
	if s.reg, err = s.openSub(s.root, RegistryDir); err != nil {
		return err
	}
	if s.tmp, err = s.openSub(s.root, TmpDir); err != nil {
		return err
	}
	s.data, err = s.openSub(s.root, DataDir)
	return err
}

// qdirs returns queue q's open directories, opening them on first use. A
// queue whose directory has gone gives an error wrapping ErrUnknownQueue.
func (s *Spool) qdirs(q string) (*queueDirs, error) {
	d := s.dirs
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil, fmt.Errorf("spool %s: %w", s.dir, ErrSpoolClosed)
	}
	qd := d.queues[q]
	d.mu.Unlock()
	if qd != nil {
		return qd, nil
	}
	qd, err := s.openQueue(q)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, fmt.Errorf("spool %s: %w", s.dir, ErrSpoolClosed)
	}
	if cur := d.queues[q]; cur != nil {
		return cur, nil // another goroutine was first; ours close with the spool
	}
	if d.queues == nil {
		d.queues = map[string]*queueDirs{}
	}
	d.queues[q] = qd
	return qd, nil
}

func (s *Spool) openQueue(q string) (*queueDirs, error) {
	dir, err := s.openSub(s.root, q)
	if err != nil {
		if isNotExist(err) {
			return nil, queueGone(q, s.queueDir(q), err)
		}
		return nil, err
	}
	co, err := s.openSub(dir, CheckoutDir)
	if err != nil {
		if isNotExist(err) {
			return nil, queueGone(q, s.checkoutDir(q), err)
		}
		return nil, err
	}
	return &queueDirs{dir: dir, co: co}, nil
}

// forgetQueue drops q's cached descriptors when its directory (or its
// .checkout) no longer is the one they refer to, so that the next use opens
// the directory now at its place. The old descriptors stay open until the
// spool is closed.
func (s *Spool) forgetQueue(q string) {
	d := s.dirs
	d.mu.Lock()
	qd := d.queues[q]
	d.mu.Unlock()
	if qd == nil {
		return
	}
	same := func(parent int, name string, fd int) bool {
		var a, b unix.Stat_t
		return s.fs.Lstat(parent, name, &a) == nil && s.fs.Fstat(fd, &b) == nil && a.Ino == b.Ino && a.Dev == b.Dev
	}
	if same(s.root.fd, q, qd.dir.fd) && same(qd.dir.fd, CheckoutDir, qd.co.fd) {
		return
	}
	d.mu.Lock()
	if d.queues[q] == qd {
		delete(d.queues, q)
	}
	d.mu.Unlock()
}

// dirGone reports whether the directory fd has been removed (an open
// directory that was removed has no links).
func (s *Spool) dirGone(fd int) bool {
	var st unix.Stat_t
	return s.fs.Fstat(fd, &st) == nil && st.Nlink == 0
}

// isOpen fails with ErrSpoolClosed once the spool is closed: its descriptor
// numbers may then name other files of the process.
func (s *Spool) isOpen() error {
	if s.dirs.shut.Load() {
		return fmt.Errorf("spool %s: %w", s.dir, ErrSpoolClosed)
	}
	return nil
}

// procPath names the directory open as fd through /proc, so that an
// inotify watch is added to that very directory, whatever is at its path now.
func procPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// Close closes the spool's directory descriptors. Close the spool's readers
// first, and call nothing else on the spool meanwhile or after: the spool's
// methods then fail with ErrSpoolClosed. Closing twice is harmless. A Spool
// that is never closed has its descriptors closed when it is garbage collected.
func (s *Spool) Close() error {
	if s.dirs.closeAll() {
		s.dirs.cleanup.Stop()
	}
	return nil
}

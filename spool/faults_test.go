package spool_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spool-agent/spool-agent/internal/fsys"
	"golang.org/x/sys/unix"
)

// The metadata and payload of the entries in the fault-injection tests.
const (
	meta1   = "metadata one"
	meta2   = "metadata two, longer than the first"
	payload = "payload bytes: the entry's data, which must survive every fault intact"
)

// faultFS wraps a fsys.FS. It counts calls, injects one fault at the Nth
// call (or, for a short write, at the Nth write), can keep failing
// allocations with ENOSPC from then on (a full disk), and can record every
// call with the paths involved (descriptors are mapped back to the path they
// were opened with) so that tests can check the order of fsyncs.
//
// Fsync is not passed on to the real file system unless realSync is set:
// these tests simulate process crashes and power loss by inspecting the
// sequence of calls, and real fsyncs would only make them slow.
type faultFS struct {
	inner fsys.FS

	mu       sync.Mutex
	calls    int
	writes   int
	failAt   int        // 1-based call (or write, for short) to fail; 0: never
	errno    unix.Errno // the error to inject; 0 with short set: a short write
	short    bool       // inject a short write at the failAt-th Write
	sticky   bool       // after the fault, allocations keep failing with errno
	tripped  bool       // the fault has fired
	injected string     // description of the call that got the fault
	record   bool       // record calls into log
	log      []fsCall   // recorded calls
	fds      map[int]string
	realSync bool
}

// fsCall is one recorded call: the operation, its path(s) and its result.
type fsCall struct {
	Op    string // open, write, kick, fsync, syncfs, wbcheck, close, fstat, lstat, rename, unlink, mkdir, touch, readdir, flock
	Path  string
	Path2 string // rename's new path
	Dir   bool   // open: opened a directory
	Err   error
}

func (c fsCall) String() string {
	s := c.Op + " " + c.Path
	if c.Path2 != "" {
		s += " -> " + c.Path2
	}
	if c.Err != nil {
		s += ": " + c.Err.Error()
	}
	return s
}

func newFaultFS() *faultFS { return &faultFS{inner: fsys.OS{}, fds: map[int]string{}} }

// arm makes the n-th call from now (or the n-th write, for a short write) fail.
func (f *faultFS) arm(n int, errno unix.Errno, short, sticky bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls, f.writes = 0, 0
	f.failAt, f.errno, f.short, f.sticky = n, errno, short, sticky
	f.tripped, f.injected = false, ""
}

// disarm removes the fault (and a sticky full disk).
func (f *faultFS) disarm() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failAt, f.sticky, f.tripped = 0, false, false
}

// counts returns the number of calls and writes since the last arm.
func (f *faultFS) counts() (calls, writes int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls, f.writes
}

// fault decides whether the call op on path fails, and with which error.
// allocates tells whether the call can need new disk space (for a sticky
// ENOSPC). isWrite marks Write calls, which short writes count.
func (f *faultFS) fault(op, path string, allocates, isWrite bool) (error, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if isWrite {
		f.writes++
	}
	if f.tripped {
		if f.sticky && allocates {
			return f.errno, false
		}
		return nil, false
	}
	if f.failAt == 0 {
		return nil, false
	}
	if f.short {
		if isWrite && f.writes == f.failAt {
			f.tripped = true
			f.injected = fmt.Sprintf("write #%d (%s): short write", f.writes, path)
			return nil, true
		}
		return nil, false
	}
	if f.calls == f.failAt {
		f.tripped = true
		f.injected = fmt.Sprintf("call #%d %s %s: %v", f.calls, op, path, f.errno)
		return f.errno, false
	}
	return nil, false
}

func (f *faultFS) rec(c fsCall) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.record {
		f.log = append(f.log, c)
	}
}

func (f *faultFS) fdPath(fd int) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p, ok := f.fds[fd]; ok {
		return p
	}
	return fmt.Sprintf("fd %d", fd)
}

// calls returns the recorded calls and clears the log.
func (f *faultFS) takeLog() []fsCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.log
	f.log = nil
	return l
}

// at returns the path of name relative to the directory dirfd.
func (f *faultFS) at(dirfd int, name string) string {
	if dirfd == unix.AT_FDCWD {
		return filepath.Clean(name)
	}
	return filepath.Join(f.fdPath(dirfd), name)
}

// Open implements fsys.FS.
func (f *faultFS) Open(dirfd int, name string, flags int, perm uint32) (int, error) {
	path := f.at(dirfd, name)
	if err, _ := f.fault("open", path, flags&unix.O_CREAT != 0, false); err != nil {
		f.rec(fsCall{Op: "open", Path: path, Err: err})
		return -1, err
	}
	fd, err := f.inner.Open(dirfd, name, flags, perm)
	if err == nil {
		f.mu.Lock()
		f.fds[fd] = path
		f.mu.Unlock()
	}
	f.rec(fsCall{Op: "open", Path: path, Dir: flags&unix.O_DIRECTORY != 0, Err: err})
	return fd, err
}

// OpenDir implements fsys.FS.
func (f *faultFS) OpenDir(dirfd int, name string) (int, error) {
	path := f.at(dirfd, name)
	if err, _ := f.fault("opendir", path, false, false); err != nil {
		f.rec(fsCall{Op: "opendir", Path: path, Dir: true, Err: err})
		return -1, err
	}
	fd, err := f.inner.OpenDir(dirfd, name)
	if err == nil {
		f.mu.Lock()
		f.fds[fd] = path
		f.mu.Unlock()
	}
	f.rec(fsCall{Op: "opendir", Path: path, Dir: true, Err: err})
	return fd, err
}

// Read implements fsys.FS.
func (f *faultFS) Read(fd int, p []byte) (int, error) {
	if err, _ := f.fault("read", f.fdPath(fd), false, false); err != nil {
		return 0, err
	}
	return f.inner.Read(fd, p)
}

// Write implements fsys.FS.
func (f *faultFS) Write(fd int, p []byte) (int, error) {
	path := f.fdPath(fd)
	err, short := f.fault("write", path, true, true)
	if err != nil {
		f.rec(fsCall{Op: "write", Path: path, Err: err})
		return 0, err
	}
	if short {
		p = p[:len(p)/2]
	}
	n, err := f.inner.Write(fd, p)
	f.rec(fsCall{Op: "write", Path: path, Err: err})
	return n, err
}

// fdCall is one call on fd, op: counted, faulted and recorded with the
// path of fd; pass, when not nil and no fault was injected, passes it on.
func (f *faultFS) fdCall(op string, fd int, allocates bool, pass func() error) error {
	path := f.fdPath(fd)
	err, _ := f.fault(op, path, allocates, false)
	if err == nil && pass != nil {
		err = pass()
	}
	f.rec(fsCall{Op: op, Path: path, Err: err})
	return err
}

// Fsync implements fsys.FS.
func (f *faultFS) Fsync(fd int) error {
	var pass func() error
	if f.realSync {
		pass = func() error { return f.inner.Fsync(fd) }
	}
	return f.fdCall("fsync", fd, true, pass)
}

// batchFS is group commit's optional part of the seam (groupcommit.go).
type batchFS interface {
	Syncfs(fd int) error
	WritebackErr(fd int) error
}

// writebackStarter is the seam's optional write-back start (files.go).
type writebackStarter interface {
	StartWriteback(fd int) error
}

// Syncfs implements group commit's batch flush: counted, faulted and
// recorded like Fsync ("syncfs", the path of fd), and passed on only with
// realSync.
func (f *faultFS) Syncfs(fd int) error {
	var pass func() error
	if b, ok := f.inner.(batchFS); ok && f.realSync {
		pass = func() error { return b.Syncfs(fd) }
	}
	return f.fdCall("syncfs", fd, true, pass)
}

// WritebackErr implements group commit's per-file write-back check
// ("wbcheck"): counted, faulted and recorded, then passed on.
func (f *faultFS) WritebackErr(fd int) error {
	var pass func() error
	if b, ok := f.inner.(batchFS); ok {
		pass = func() error { return b.WritebackErr(fd) }
	}
	return f.fdCall("wbcheck", fd, false, pass)
}

// StartWriteback implements the spool's optional write-back start
// ("kick"): counted, faulted and recorded, then passed on where the inner
// FS has it. A fault here fails the operation, as a failed write would:
// the start may be the only call to see the file system's error.
func (f *faultFS) StartWriteback(fd int) error {
	var pass func() error
	if w, ok := f.inner.(writebackStarter); ok {
		pass = func() error { return w.StartWriteback(fd) }
	}
	return f.fdCall("kick", fd, false, pass)
}

// Close implements fsys.FS. Like close(2) on Linux, it releases the
// descriptor even when it reports an error.
func (f *faultFS) Close(fd int) error {
	path := f.fdPath(fd)
	ferr, _ := f.fault("close", path, false, false)
	// Forget the number before the kernel may hand it out again.
	f.mu.Lock()
	delete(f.fds, fd)
	f.mu.Unlock()
	err := f.inner.Close(fd)
	if ferr != nil {
		err = ferr
	}
	f.rec(fsCall{Op: "close", Path: path, Err: err})
	return err
}

// Fstat implements fsys.FS.
func (f *faultFS) Fstat(fd int, st *unix.Stat_t) error {
	if err, _ := f.fault("fstat", f.fdPath(fd), false, false); err != nil {
		return err
	}
	return f.inner.Fstat(fd, st)
}

// Lstat implements fsys.FS.
func (f *faultFS) Lstat(dirfd int, name string, st *unix.Stat_t) error {
	if err, _ := f.fault("lstat", f.at(dirfd, name), false, false); err != nil {
		return err
	}
	return f.inner.Lstat(dirfd, name, st)
}

// Rename implements fsys.FS.
func (f *faultFS) Rename(olddirfd int, oldname string, newdirfd int, newname string, noReplace bool) error {
	oldpath, newpath := f.at(olddirfd, oldname), f.at(newdirfd, newname)
	err, _ := f.fault("rename", oldpath+" -> "+newpath, true, false)
	if err == nil {
		err = f.inner.Rename(olddirfd, oldname, newdirfd, newname, noReplace)
	}
	f.rec(fsCall{Op: "rename", Path: oldpath, Path2: newpath, Err: err})
	return err
}

// Unlink implements fsys.FS.
func (f *faultFS) Unlink(dirfd int, name string) error {
	path := f.at(dirfd, name)
	err, _ := f.fault("unlink", path, false, false)
	if err == nil {
		err = f.inner.Unlink(dirfd, name)
	} else if err == unix.ENOENT {
		// The honest way for unlink to say ENOENT: someone else (an
		// operator, another process) removed the file just before.
		f.inner.Unlink(dirfd, name)
	}
	f.rec(fsCall{Op: "unlink", Path: path, Err: err})
	return err
}

// Mkdir implements fsys.FS.
func (f *faultFS) Mkdir(dirfd int, name string, perm uint32) error {
	path := f.at(dirfd, name)
	err, _ := f.fault("mkdir", path, true, false)
	if err == nil {
		err = f.inner.Mkdir(dirfd, name, perm)
	}
	f.rec(fsCall{Op: "mkdir", Path: path, Err: err})
	return err
}

// Touch implements fsys.FS.
func (f *faultFS) Touch(dirfd int, name string, t time.Time) error {
	if err, _ := f.fault("touch", f.at(dirfd, name), false, false); err != nil {
		return err
	}
	return f.inner.Touch(dirfd, name, t)
}

// TouchFD implements fsys.FS.
func (f *faultFS) TouchFD(fd int, t time.Time) error {
	if err, _ := f.fault("touch", f.fdPath(fd), false, false); err != nil {
		return err
	}
	return f.inner.TouchFD(fd, t)
}

// ReadDir implements fsys.FS.
func (f *faultFS) ReadDir(dirfd int) ([]fsys.DirEntry, error) {
	if err, _ := f.fault("readdir", f.fdPath(dirfd), false, false); err != nil {
		return nil, err
	}
	return f.inner.ReadDir(dirfd)
}

// Flock implements fsys.FS.
func (f *faultFS) Flock(fd int, how int) error {
	if err, _ := f.fault("flock", f.fdPath(fd), false, false); err != nil {
		return err
	}
	return f.inner.Flock(fd, how)
}

// Fchmod implements fsys.FS.
func (f *faultFS) Fchmod(fd int, mode uint32) error {
	path := f.fdPath(fd)
	err, _ := f.fault("fchmod", path, false, false)
	if err == nil {
		err = f.inner.Fchmod(fd, mode)
	}
	f.rec(fsCall{Op: "fchmod", Path: path, Err: err})
	return err
}

// rel shortens a recorded path to its part inside dir, for messages.
func rel(dir, p string) string {
	if r, err := filepath.Rel(dir, p); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return p
}

// Package fsys is the spool's file-system seam: every call the spool makes
// on a spool's contents goes through an FS, so that the module's tests can
// inject faults or record the order of fsyncs. It is internal so that the
// seam (raw descriptors, unix.Stat_t) is no part of the spool's public API.
//
// Calls name a file relative to a directory descriptor (dirfd plus a single
// name, as the *at system calls do), so a path string never leaves the
// spool: a spool directory swapped for a symbolic link after it was opened
// cannot redirect them. unix.AT_FDCWD as dirfd means the working directory
// (only for the spool root, which the user named).
package fsys

import (
	"errors"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// FS is the seam. [OS] issues the system calls directly.
type FS interface {
	// Open opens name relative to dirfd with openat(2) flags (O_CLOEXEC and
	// O_NOFOLLOW are added by callers).
	Open(dirfd int, name string, flags int, perm uint32) (int, error)
	// OpenDir opens the directory name beneath dirfd for use as a dirfd,
	// refusing symbolic links in any component and mount crossings.
	OpenDir(dirfd int, name string) (int, error)
	// Read reads from fd into p.
	Read(fd int, p []byte) (int, error)
	// Write writes p to fd; it may write less than len(p) without error
	// (the caller loops, and calls a zero-byte write io.ErrShortWrite).
	Write(fd int, p []byte) (int, error)
	// Fsync flushes fd (a file or a directory) to stable storage.
	Fsync(fd int) error
	// Close closes fd.
	Close(fd int) error
	// Fstat stats an open descriptor.
	Fstat(fd int, st *unix.Stat_t) error
	// Lstat stats name relative to dirfd without following a final symlink.
	Lstat(dirfd int, name string, st *unix.Stat_t) error
	// Rename renames oldname in olddirfd to newname in newdirfd; with
	// noReplace it fails with EEXIST rather than replace an existing file.
	Rename(olddirfd int, oldname string, newdirfd int, newname string, noReplace bool) error
	// Unlink removes a file (not a directory).
	Unlink(dirfd int, name string) error
	// Mkdir creates a directory.
	Mkdir(dirfd int, name string, perm uint32) error
	// Touch sets the access and modification times of name relative to
	// dirfd without following symlinks.
	Touch(dirfd int, name string, t time.Time) error
	// TouchFD sets the access and modification times of the open file fd.
	TouchFD(fd int, t time.Time) error
	// ReadDir lists the names in the directory dirfd, unsorted, without "."
	// and "..". It must not disturb dirfd (which others use concurrently).
	ReadDir(dirfd int) ([]DirEntry, error)
	// Flock applies flock(2) to fd.
	Flock(fd int, how int) error
	// Fchmod sets the mode of fd (a file or a directory).
	Fchmod(fd int, mode uint32) error
}

// DirEntry is one name from a directory listing with its d_type.
type DirEntry struct {
	Name string
	// Type is the file type from the directory entry (unix.DT_REG, unix.DT_DIR,
	// unix.DT_LNK, ...), or unix.DT_UNKNOWN when the file system does not say.
	Type uint8
}

// OS is the real file system. The methods whose system calls differ
// between systems (OpenDir, Rename, TouchFD, Fsync) and Mtime are in the
// files named after each system; ReadDir is in readdir.go.
type OS struct{}

var _ FS = OS{}

// Open implements FS.
func (OS) Open(dirfd int, name string, flags int, perm uint32) (int, error) {
	return retry(func() (int, error) { return unix.Openat(dirfd, name, flags, perm) })
}

// openDirFlags open a directory for use as a dirfd, never through a symlink.
const openDirFlags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC | unix.O_NOFOLLOW

// openDirWalk opens name beneath dirfd one component at a time, each with
// O_NOFOLLOW|O_DIRECTORY, refusing "..": where there is no openat2, it
// refuses symbolic links as well (but not mount crossings).
func openDirWalk(dirfd int, name string) (int, error) {
	cur := dirfd
	for _, c := range strings.Split(name, "/") {
		if c == ".." || c == "" {
			if cur != dirfd {
				unix.Close(cur)
			}
			return -1, unix.EXDEV
		}
		fd, err := retry(func() (int, error) { return unix.Openat(cur, c, openDirFlags, 0) })
		if cur != dirfd {
			unix.Close(cur)
		}
		if err != nil {
			return -1, err
		}
		cur = fd
	}
	return cur, nil
}

// Read implements FS.
func (OS) Read(fd int, p []byte) (int, error) {
	return retry(func() (int, error) { return unix.Read(fd, p) })
}

// Write implements FS.
func (OS) Write(fd int, p []byte) (int, error) {
	return retry(func() (int, error) { return unix.Write(fd, p) })
}

// Close implements FS.
func (OS) Close(fd int) error { return unix.Close(fd) }

// Fstat implements FS.
func (OS) Fstat(fd int, st *unix.Stat_t) error { return unix.Fstat(fd, st) }

// Lstat implements FS.
func (OS) Lstat(dirfd int, name string, st *unix.Stat_t) error {
	return unix.Fstatat(dirfd, name, st, unix.AT_SYMLINK_NOFOLLOW)
}

// Unlink implements FS.
func (OS) Unlink(dirfd int, name string) error { return unix.Unlinkat(dirfd, name, 0) }

// Mkdir implements FS.
func (OS) Mkdir(dirfd int, name string, perm uint32) error {
	return unix.Mkdirat(dirfd, name, perm)
}

// Touch implements FS.
func (OS) Touch(dirfd int, name string, t time.Time) error {
	ts := unix.NsecToTimespec(t.UnixNano())
	return unix.UtimesNanoAt(dirfd, name, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
}

// Flock implements FS.
func (OS) Flock(fd int, how int) error {
	_, err := retry(func() (int, error) { return 0, unix.Flock(fd, how) })
	return err
}

// Fchmod implements FS.
func (OS) Fchmod(fd int, mode uint32) error {
	_, err := retry(func() (int, error) { return 0, unix.Fchmod(fd, mode) })
	return err
}

// retry calls f again while it fails with EINTR.
func retry(f func() (int, error)) (int, error) {
	for {
		n, err := f()
		if err != unix.EINTR {
			return n, err
		}
	}
}

// IsNotExist reports whether err means the path does not exist.
func IsNotExist(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, os.ErrNotExist)
}

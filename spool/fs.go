package spool

import (
	"encoding/binary"
	"errors"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// FS is the seam through which the package makes every file-system call.
// Paths are absolute or relative to the working directory; descriptors are
// raw file descriptors. The default, [OSFS], issues the system calls
// directly; tests wrap it to inject faults or to record the order of fsyncs.
type FS interface {
	// Open opens path with open(2) flags (O_CLOEXEC and O_NOFOLLOW are added by callers).
	Open(path string, flags int, perm uint32) (int, error)
	// Read reads from fd into p.
	Read(fd int, p []byte) (int, error)
	// Write writes p to fd; it may write less than len(p) without error only if it also
	// reports io.ErrShortWrite via the caller's loop.
	Write(fd int, p []byte) (int, error)
	// Fsync flushes fd (a file or a directory) to stable storage.
	Fsync(fd int) error
	// Close closes fd.
	Close(fd int) error
	// Fstat stats an open descriptor.
	Fstat(fd int, st *unix.Stat_t) error
	// Lstat stats path without following a final symlink.
	Lstat(path string, st *unix.Stat_t) error
	// Rename renames oldpath to newpath; with noReplace it fails with EEXIST
	// rather than replace an existing newpath.
	Rename(oldpath, newpath string, noReplace bool) error
	// Unlink removes a file (not a directory).
	Unlink(path string) error
	// Mkdir creates a directory.
	Mkdir(path string, perm uint32) error
	// Touch sets path's access and modification times without following symlinks.
	Touch(path string, t time.Time) error
	// ReadDir lists the names in the directory at path, unsorted, without "." and "..".
	ReadDir(path string) ([]DirEntry, error)
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

// OSFS is the real file system.
type OSFS struct{}

var _ FS = OSFS{}

// Open implements FS.
func (OSFS) Open(path string, flags int, perm uint32) (int, error) {
	for {
		fd, err := unix.Open(path, flags, perm)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// Read implements FS.
func (OSFS) Read(fd int, p []byte) (int, error) {
	for {
		n, err := unix.Read(fd, p)
		if err != unix.EINTR {
			return n, err
		}
	}
}

// Write implements FS.
func (OSFS) Write(fd int, p []byte) (int, error) {
	for {
		n, err := unix.Write(fd, p)
		if err != unix.EINTR {
			return n, err
		}
	}
}

// Fsync implements FS.
func (OSFS) Fsync(fd int) error { return unix.Fsync(fd) }

// Close implements FS.
func (OSFS) Close(fd int) error { return unix.Close(fd) }

// Fstat implements FS.
func (OSFS) Fstat(fd int, st *unix.Stat_t) error { return unix.Fstat(fd, st) }

// Lstat implements FS.
func (OSFS) Lstat(path string, st *unix.Stat_t) error { return unix.Lstat(path, st) }

// Rename implements FS. RENAME_NOREPLACE needs Linux 3.15 and a file system
// that supports it (ext4, xfs, btrfs, tmpfs do); where it is not supported the
// rename fails rather than silently risk replacing a live entry.
func (OSFS) Rename(oldpath, newpath string, noReplace bool) error {
	if !noReplace {
		return unix.Rename(oldpath, newpath)
	}
	return unix.Renameat2(unix.AT_FDCWD, oldpath, unix.AT_FDCWD, newpath, unix.RENAME_NOREPLACE)
}

// Unlink implements FS.
func (OSFS) Unlink(path string) error { return unix.Unlink(path) }

// Mkdir implements FS.
func (OSFS) Mkdir(path string, perm uint32) error { return unix.Mkdir(path, perm) }

// Touch implements FS.
func (OSFS) Touch(path string, t time.Time) error {
	ts := unix.NsecToTimespec(t.UnixNano())
	return unix.UtimesNanoAt(unix.AT_FDCWD, path, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
}

// Flock implements FS.
func (OSFS) Flock(fd int, how int) error {
	for {
		err := unix.Flock(fd, how)
		if err != unix.EINTR {
			return err
		}
	}
}

// Fchmod implements FS.
func (OSFS) Fchmod(fd int, mode uint32) error {
	for {
		err := unix.Fchmod(fd, mode)
		if err != unix.EINTR {
			return err
		}
	}
}

// ReadDir implements FS. It reads the directory with getdents(2) directly so
// that a listing costs one system call per few hundred names and no stat.
func (OSFS) ReadDir(path string) ([]DirEntry, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var entries []DirEntry
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return entries, nil
		}
		entries = parseDirents(buf[:n], entries)
	}
}

// parseDirents appends the linux_dirent64 records in buf to entries.
func parseDirents(buf []byte, entries []DirEntry) []DirEntry {
	for len(buf) >= 19 {
		reclen := int(binary.NativeEndian.Uint16(buf[16:18]))
		if reclen < 19 || reclen > len(buf) {
			break
		}
		typ := buf[18]
		nameBytes := buf[19:reclen]
		for i, c := range nameBytes {
			if c == 0 {
				nameBytes = nameBytes[:i]
				break
			}
		}
		buf = buf[reclen:]
		name := string(nameBytes)
		if name == "." || name == ".." {
			continue
		}
		entries = append(entries, DirEntry{Name: name, Type: typ})
	}
	return entries
}

// isNotExist reports whether err means the path does not exist.
func isNotExist(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, os.ErrNotExist)
}

// mtimeOf returns the modification time recorded in st.
func mtimeOf(st *unix.Stat_t) time.Time {
	return time.Unix(st.Mtim.Sec, st.Mtim.Nsec)
}

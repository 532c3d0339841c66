package spool

import (
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// FS is the seam through which the package makes every file-system call on
// a spool's contents. Calls name a file relative to a directory descriptor
// (dirfd plus a single name, as the *at system calls do), so that a path
// string never leaves the spool: a spool directory swapped for a symbolic
// link after it was opened cannot redirect them. unix.AT_FDCWD as dirfd
// means the working directory (only for the spool root, which the user
// named). The default, [OSFS], issues the system calls directly; tests
// wrap it to inject faults or to record the order of fsyncs.
type FS interface {
	// Open opens name relative to dirfd with openat(2) flags (O_CLOEXEC and
	// O_NOFOLLOW are added by callers).
	Open(dirfd int, name string, flags int, perm uint32) (int, error)
	// OpenDir opens the directory name beneath dirfd for use as a dirfd,
	// refusing symbolic links in any component and mount crossings.
	OpenDir(dirfd int, name string) (int, error)
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

// OSFS is the real file system.
type OSFS struct{}

var _ FS = OSFS{}

// Open implements FS.
func (OSFS) Open(dirfd int, name string, flags int, perm uint32) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, name, flags, perm)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// openDirFlags open a directory for use as a dirfd, never through a symlink.
const openDirFlags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC | unix.O_NOFOLLOW

// OpenDir implements FS with openat2(2) and RESOLVE_BENEATH,
// RESOLVE_NO_SYMLINKS and RESOLVE_NO_XDEV (Linux 5.6), which refuse any
// escape in one call; where the kernel lacks openat2 it walks the name's
// components with openat(O_NOFOLLOW|O_DIRECTORY), which refuses symlinks
// as well (but not mount crossings).
func (OSFS) OpenDir(dirfd int, name string) (int, error) {
	how := unix.OpenHow{
		Flags:   openDirFlags,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_XDEV,
	}
	for {
		fd, err := unix.Openat2(dirfd, name, &how)
		switch err {
		case unix.EINTR, unix.EAGAIN:
			continue // EAGAIN: a concurrent rename somewhere; retry
		case unix.ENOSYS, unix.EPERM:
			// No openat2 (or a seccomp filter refusing it).
			return openDirWalk(dirfd, name)
		}
		return fd, err
	}
}

// openDirWalk opens name beneath dirfd one component at a time, each with
// O_NOFOLLOW|O_DIRECTORY, refusing "..".
func openDirWalk(dirfd int, name string) (int, error) {
	cur := dirfd
	comps := strings.Split(name, "/")
	for _, c := range comps {
		if c == ".." || c == "" {
			if cur != dirfd {
				unix.Close(cur)
			}
			return -1, unix.EXDEV
		}
		fd, err := unix.Openat(cur, c, openDirFlags, 0)
		for err == unix.EINTR {
			fd, err = unix.Openat(cur, c, openDirFlags, 0)
		}
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
func (OSFS) Lstat(dirfd int, name string, st *unix.Stat_t) error {
	return unix.Fstatat(dirfd, name, st, unix.AT_SYMLINK_NOFOLLOW)
}

// Rename implements FS. RENAME_NOREPLACE needs Linux 3.15 and a file system
// that supports it (ext4, xfs, btrfs, tmpfs do); where it is not supported the
// rename fails rather than silently risk replacing a live entry.
func (OSFS) Rename(olddirfd int, oldname string, newdirfd int, newname string, noReplace bool) error {
	flags := uint(0)
	if noReplace {
		flags = unix.RENAME_NOREPLACE
	}
	return unix.Renameat2(olddirfd, oldname, newdirfd, newname, flags)
}

// Unlink implements FS.
func (OSFS) Unlink(dirfd int, name string) error { return unix.Unlinkat(dirfd, name, 0) }

// Mkdir implements FS.
func (OSFS) Mkdir(dirfd int, name string, perm uint32) error {
	return unix.Mkdirat(dirfd, name, perm)
}

// Touch implements FS.
func (OSFS) Touch(dirfd int, name string, t time.Time) error {
	ts := unix.NsecToTimespec(t.UnixNano())
	return unix.UtimesNanoAt(dirfd, name, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
}

// TouchFD implements FS with utimensat(fd, NULL, ...), which x/sys does not
// wrap: it sets the times of the very file open as fd, whatever now stands at
// its name.
func (OSFS) TouchFD(fd int, t time.Time) error {
	ts := unix.NsecToTimespec(t.UnixNano())
	times := [2]unix.Timespec{ts, ts}
	_, _, errno := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&times[0])), 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
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
// It reads through a fresh descriptor of dirfd's directory (openat of "."),
// since a directory offset is shared by all users of a descriptor.
func (OSFS) ReadDir(dirfd int) ([]DirEntry, error) {
	fd, err := unix.Openat(dirfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
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

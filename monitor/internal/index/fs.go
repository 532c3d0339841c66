package index

import (
	"fmt"
	"io/fs"
	"math"
	"strings"

	"github.com/spool-agent/spool-agent/internal/dirent"
	"golang.org/x/sys/unix"
)

// pathErr is the error of a read of the spool that failed at path: the
// monitor learns from it which part of the spool a cycle could not see.
func pathErr(op, path string, err error) *fs.PathError {
	return &fs.PathError{Op: op, Path: path, Err: err}
}

func isReg(mode uint32) bool { return mode&unix.S_IFMT == unix.S_IFREG }

// mtimeOf returns the file's mtime in nanoseconds since the epoch, clamped
// to what an int64 holds (years 1677 to 2262): an mtime set beyond (touch
// -d 2300-01-01) must not wrap around to the other end, where it would
// look centuries old.
func mtimeOf(st *unix.Stat_t) int64 {
	const maxSec = math.MaxInt64/1_000_000_000 - 1
	switch s := int64(st.Mtim.Sec); {
	case s > maxSec:
		return math.MaxInt64
	case s < -maxSec:
		return math.MinInt64
	}
	return int64(st.Mtim.Sec)*1e9 + int64(st.Mtim.Nsec)
}

// sharedInode reports whether a queue or checkout file has more than one
// link: it shares its inode with a file elsewhere (perhaps outside the
// spool), whose mtime a checkout would touch, so it is unexpected.
func sharedInode(st *unix.Stat_t) bool { return st.Nlink > 1 }

// typeKnown reports whether the file system filled in d_type.
func typeKnown(t dirent.Type) bool { return t != dirent.Unknown }

// openDir opens path as a directory, following a final symlink only with
// follow. fault, a test seam, makes it fail for the paths it returns an
// error for.
func openDir(path string, follow bool, fault func(path string) error) (int, error) {
	if fault != nil {
		if err := fault(path); err != nil {
			return -1, err
		}
	}
	flags := unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC
	if !follow {
		flags |= unix.O_NOFOLLOW
	}
	for {
		fd, err := unix.Open(path, flags, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// openRoot opens the spool's root directory, following a symlink there
// (where the operator put the spool is the operator's choice): every
// directory below is opened relative to it (openBeneath).
func openRoot(dir string, fault func(string) error) (int, error) {
	fd, err := openDir(dir, true, fault)
	if err != nil {
		return -1, fmt.Errorf("open spool %s: %w", dir, err)
	}
	return fd, nil
}

// openBeneath opens the spool directory rel (".data", "queue" or
// "queue/.checkout") relative to root, the spool root's descriptor,
// refusing a symlink anywhere on the way (ELOOP or ENOTDIR), so that a
// user who can write in the spool cannot make a scan list a directory
// outside it by swapping one of the spool's directories for a symlink.
// path, rel's full path, is for the fault seam. It uses openat2 where the
// kernel has it (Linux 5.6), and else opens each component with
// O_NOFOLLOW.
func openBeneath(root int, rel, path string, fault func(string) error) (int, error) {
	if fault != nil {
		if err := fault(path); err != nil {
			return -1, err
		}
	}
	return openBeneathSys(root, rel)
}

// openWalk is openBeneath without openat2: one openat per component, none
// followed if it is a symlink.
func openWalk(root int, rel string) (int, error) {
	fd := root
	for comp := range strings.SplitSeq(rel, "/") {
		if comp == "" || comp == "." || comp == ".." {
			if fd != root {
				unix.Close(fd)
			}
			return -1, unix.EXDEV // as openat2's RESOLVE_BENEATH
		}
		next, err := unix.Openat(fd, comp, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
		for err == unix.EINTR {
			next, err = unix.Openat(fd, comp, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
		}
		if fd != root {
			unix.Close(fd)
		}
		if err != nil {
			return -1, err
		}
		fd = next
	}
	return fd, nil
}

// lstatAt stats name relative to dirfd without following a symlink.
func lstatAt(dirfd int, name string, st *unix.Stat_t) error {
	for {
		err := unix.Fstatat(dirfd, name, st, unix.AT_SYMLINK_NOFOLLOW)
		if err != unix.EINTR {
			return err
		}
	}
}

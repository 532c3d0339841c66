//go:build linux

package index

import (
	"unsafe"

	"github.com/spool-agent/spool-agent/internal/dirent"
	"golang.org/x/sys/unix"
)

// resolveBeneath is how openBeneath resolves: never above the root, never
// through a symlink, never onto another mount.
const resolveBeneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_XDEV

func openBeneathSys(root int, rel string) (int, error) {
	how := unix.OpenHow{Flags: unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC | unix.O_NOFOLLOW, Resolve: resolveBeneath}
	for range 16 {
		fd, err := unix.Openat2(root, rel, &how)
		switch err {
		case unix.EINTR, unix.EAGAIN: // EAGAIN: a rename raced the lookup
			continue
		case unix.ENOSYS:
			return openWalk(root, rel)
		}
		return fd, err
	}
	return -1, unix.EAGAIN
}

// fstatat stats the name in d (NUL-terminated in the read buffer, see
// dirent.Entry) relative to dirfd, without following a symlink and
// without allocating.
func fstatat(dirfd int, d dirent.Entry, st *unix.Stat_t) error {
	if len(d.Name) == 0 {
		return unix.ENOENT
	}
	return rawFstatat(dirfd, unsafe.Pointer(unsafe.SliceData(d.Name)), st)
}

// fstatatZ is fstatat of a name interned by arena.internZ (NUL-terminated).
func fstatatZ(dirfd int, name string, st *unix.Stat_t) error {
	if len(name) == 0 {
		return unix.ENOENT
	}
	return rawFstatat(dirfd, unsafe.Pointer(unsafe.StringData(name)), st)
}

//go:build linux && !(mips64 || mips64le || loong64)

package index

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawFstatat is fstatat(2) of the NUL-terminated name at p, without
// following a symlink: the system call itself, which fills a unix.Stat_t
// here (sysFstatat), so that no name is copied.
func rawFstatat(dirfd int, p unsafe.Pointer, st *unix.Stat_t) error {
	for {
		_, _, e := unix.Syscall6(sysFstatat, uintptr(dirfd), uintptr(p), uintptr(unsafe.Pointer(st)), unix.AT_SYMLINK_NOFOLLOW, 0, 0)
		switch e {
		case 0:
			return nil
		case unix.EINTR:
			continue
		}
		return e
	}
}

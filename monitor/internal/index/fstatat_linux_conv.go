//go:build linux && (mips64 || mips64le || loong64)

package index

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawFstatat is fstatat(2) of the NUL-terminated name at p, without
// following a symlink, through unix.Fstatat: on 64-bit MIPS the kernel's
// struct stat is not unix.Stat_t (32-bit times, converted by x/sys), and on
// LoongArch newfstatat exists only since Linux 6.11 (x/sys uses statx).
func rawFstatat(dirfd int, p unsafe.Pointer, st *unix.Stat_t) error {
	name := unix.BytePtrToString((*byte)(p))
	for {
		err := unix.Fstatat(dirfd, name, st, unix.AT_SYMLINK_NOFOLLOW)
		if err != unix.EINTR {
			return err
		}
	}
}

package reliability

import "golang.org/x/sys/unix"

// exchangePaths swaps what stands at a and b in one step
// (renameatx_np(RENAME_SWAP)).
func exchangePaths(a, b string) error {
	return unix.RenameatxNp(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_SWAP)
}

package reliability

import "golang.org/x/sys/unix"

// exchangePaths swaps what stands at a and b in one step
// (renameat2(RENAME_EXCHANGE)).
func exchangePaths(a, b string) error {
	return unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE)
}

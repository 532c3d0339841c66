//go:build !linux

package reliability

import "syscall"

// mountTmpfs fails off Linux: callers fill the disk through the FS seam
// instead.
func mountTmpfs(dir, size string) (unmount func(), err error) {
	return nil, syscall.ENOSYS
}

package reliability

import "syscall"

// mountTmpfs mounts a tmpfs of the given size option (e.g. "size=1m") at
// dir, and returns how to unmount it.
func mountTmpfs(dir, size string) (unmount func(), err error) {
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, size); err != nil {
		return nil, err
	}
	return func() { syscall.Unmount(dir, syscall.MNT_DETACH) }, nil
}

//go:build !linux && !darwin && !freebsd

package dirent

var native = linuxLayout

// Read fails with ErrUnsupported on this system.
func Read(fd int, buf []byte) (int, error) { return 0, ErrUnsupported }

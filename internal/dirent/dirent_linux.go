//go:build linux

package dirent

import "golang.org/x/sys/unix"

var native = linuxLayout

// Read reads directory records of the directory open at fd into buf (see
// Parse), returning how many bytes it filled: 0 at the end.
func Read(fd int, buf []byte) (int, error) {
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		return max(n, 0), nil
	}
}

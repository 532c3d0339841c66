//go:build darwin || freebsd

package dirent

import (
	"runtime"

	"golang.org/x/sys/unix"
)

var native = func() layout {
	if runtime.GOOS == "darwin" {
		return darwinLayout
	}
	return freebsdLayout
}()

// Read reads directory records of the directory open at fd into buf (see
// Parse), returning how many bytes it filled: 0 at the end. On darwin the
// system has no getdirentries for 64-bit inodes and golang.org/x/sys
// emulates it with readdir, skipping what earlier calls returned: use a
// large buffer.
func Read(fd int, buf []byte) (int, error) {
	for {
		var base uintptr
		n, err := unix.Getdirentries(fd, buf, &base)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		return max(n, 0), nil
	}
}

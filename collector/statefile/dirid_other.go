//go:build !linux

package statefile

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
)

// DirID returns the device and inode of the directory at path (following
// a symlink), which tell a recreated or replaced spool directory from the
// one a state was saved for.
func DirID(path string) (dev, ino uint64, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, &fs.PathError{Op: "stat", Path: path, Err: errors.ErrUnsupported}
	}
	return uint64(st.Dev), uint64(st.Ino), nil
}

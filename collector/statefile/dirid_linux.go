package statefile

import (
	"io/fs"

	"golang.org/x/sys/unix"
)

// DirID returns the device and inode of the directory at path (following
// a symlink, as the monitor opens the spool's root), which tell a
// recreated or replaced spool directory from the one a state was saved for.
func DirID(path string) (dev, ino uint64, err error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, 0, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	return uint64(st.Dev), st.Ino, nil // Dev is 32 bits on 32-bit MIPS
}

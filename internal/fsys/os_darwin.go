package fsys

import "golang.org/x/sys/unix"

// Fsync implements FS with fcntl(F_FULLFSYNC): on macOS fsync(2) hands the
// data to the drive, which may keep it in a volatile cache across a power
// loss (fsync(2) on macOS says so); F_FULLFSYNC asks the drive to flush
// it. Where the file system refuses it (some network file systems), fsync
// is the best there is.
func (OS) Fsync(fd int) error {
	_, err := retry(func() (int, error) { return unix.FcntlInt(uintptr(fd), unix.F_FULLFSYNC, 0) })
	switch err {
	case unix.ENOTSUP, unix.EINVAL, unix.ENOTTY:
		return unix.Fsync(fd)
	}
	return err
}

// Rename implements FS. Without replacing, it uses renameatx_np(2) with
// RENAME_EXCL (APFS, HFS+), which fails with EEXIST as Linux's
// RENAME_NOREPLACE does; where the file system lacks it, renameByLink.
func (OS) Rename(olddirfd int, oldname string, newdirfd int, newname string, noReplace bool) error {
	if !noReplace {
		return unix.Renameat(olddirfd, oldname, newdirfd, newname)
	}
	err := unix.RenameatxNp(olddirfd, oldname, newdirfd, newname, unix.RENAME_EXCL)
	if err == unix.ENOTSUP || err == unix.EINVAL {
		return renameByLink(olddirfd, oldname, newdirfd, newname)
	}
	return err
}

//go:build linux

package spool

import "golang.org/x/sys/unix"

// Syncfs implements batchFS with syncfs(2).
func (OSFS) Syncfs(fd int) error { return unix.Syncfs(fd) }

// WritebackErr implements batchFS with sync_file_range(2) and
// SYNC_FILE_RANGE_WAIT_AFTER alone: it waits for write-back in flight and
// reports the file's write-back error since fd last saw one (the check
// fsync makes, without fsync's journal commit and cache flush).
func (OSFS) WritebackErr(fd int) error {
	for {
		err := unix.SyncFileRange(fd, 0, 0, unix.SYNC_FILE_RANGE_WAIT_AFTER)
		if err != unix.EINTR {
			return err
		}
	}
}

// syncfsReportsErrors reports whether the running kernel's syncfs returns
// write-back errors: before Linux 5.8 it returned 0 even when pages failed
// to reach the disk (5.8 added the per-superblock error sequence, "vfs:
// track per-sb writeback errors and report them to syncfs"), so it cannot
// stand in for fsync there.
func syncfsReportsErrors() bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	return kernelAtLeast(unix.ByteSliceToString(u.Release[:]), 5, 8)
}

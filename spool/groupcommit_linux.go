//go:build linux

package spool

import "golang.org/x/sys/unix"

// OS.Syncfs and OS.WritebackErr (internal/fsys) implement batchFS.

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

//go:build linux

package spool

import "golang.org/x/sys/unix"

// OS.Syncfs and OS.WritebackErr (internal/fsys) implement batchFS.

// syncfsReportsErrors reports whether the running kernel's syncfs returns
// the errors fsync would (syncfsSoundRelease).
func syncfsReportsErrors() bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	return syncfsSoundRelease(unix.ByteSliceToString(u.Release[:]))
}

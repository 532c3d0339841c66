//go:build !linux

package spool

// syncfsReportsErrors is false where syncfs(2) is Linux's alone: group
// commit then shares the fsyncs of each directory.
func syncfsReportsErrors() bool { return false }

// syncfsFileSystem is false where syncfsReportsErrors is.
func syncfsFileSystem(int) bool { return false }

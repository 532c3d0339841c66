//go:build !linux

package spool

// syncfsReportsErrors is false where syncfs(2) is Linux's alone: group
// commit then shares the fsyncs of each directory.
func syncfsReportsErrors() bool { return false }

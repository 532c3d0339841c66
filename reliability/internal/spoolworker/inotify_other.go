//go:build !linux

package main

import "golang.org/x/sys/unix"

// newInotifyInstance fails: only Linux has inotify (hogInotify then holds
// none, and says why).
func newInotifyInstance() (int, error) { return -1, unix.ENOSYS }

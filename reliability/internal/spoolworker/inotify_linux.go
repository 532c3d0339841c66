package main

import "golang.org/x/sys/unix"

// newInotifyInstance opens one inotify instance (hogInotify holds many).
func newInotifyInstance() (int, error) { return unix.InotifyInit1(unix.IN_CLOEXEC) }

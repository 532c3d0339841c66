// Package inotifyev decodes what read(2) returns from an inotify
// descriptor: a run of events, each a fixed header and a NUL-padded name.
// The spool's readers and the monitor both read inotify themselves (see
// their packages for why) and decode with it.
//
// It exists on Linux only; other systems watch through internal/fswatch.
package inotifyev

//go:build !linux

package spool

// inotifyHub stands for the raw inotify watcher, which only Linux has:
// elsewhere readers use the portable watcher (fsnotifyHub).
type inotifyHub struct{ s *Spool }

// available reports that this system has no raw inotify watcher.
func (h *inotifyHub) available() queueWatcher { return nil }

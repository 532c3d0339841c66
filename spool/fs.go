package spool

import (
	"time"

	"github.com/spool-agent/spool-agent/internal/fsys"
	"golang.org/x/sys/unix"
)

// Every file-system call on a spool's contents goes through Options.fs, an
// internal/fsys.FS (fsys.OS unless a test set another): each open, create,
// read, write, fsync, stat, rename, unlink, mkdir, touch, flock, chmod,
// listing and close of a spool's files and directories. Outside it, by
// design: the checks of Open and Create before the spool root is open
// (checkIsDir: stat and access(2) by path on the spool directory and its
// three own directories, which change nothing and only choose the error),
// and the readers' watchers (inotify, fsnotify), which only wake readers
// that then list through the seam.
//
// The field is unexported so that the seam (raw descriptors, unix.Stat_t)
// is no part of the public API; the module's tests set it with
// fsys.SetOptions, which this init wires up.
func init() {
	fsys.RegisterOptions(func(o *Options, fs fsys.FS) { o.fs = fs })
}

// isNotExist reports whether err means the path does not exist.
func isNotExist(err error) bool { return fsys.IsNotExist(err) }

// mtimeOf returns the modification time recorded in st.
func mtimeOf(st *unix.Stat_t) time.Time { return fsys.Mtime(st) }

package spool

import (
	"time"

	"github.com/spool-agent/spool-agent/internal/fsys"
	"golang.org/x/sys/unix"
)

// Every file-system call on a spool's contents goes through Options.fs, an
// internal/fsys.FS (fsys.OS unless a test set another). The field is
// unexported so that the seam (raw descriptors, unix.Stat_t) is no part of
// the public API; the module's tests set it with fsys.SetOptions, which this
// init wires up.
func init() {
	fsys.RegisterOptions(func(o *Options, fs fsys.FS) { o.fs = fs })
}

// isNotExist reports whether err means the path does not exist.
func isNotExist(err error) bool { return fsys.IsNotExist(err) }

// mtimeOf returns the modification time recorded in st.
func mtimeOf(st *unix.Stat_t) time.Time { return fsys.Mtime(st) }

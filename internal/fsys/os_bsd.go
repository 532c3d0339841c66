//go:build darwin || freebsd

package fsys

import (
	"time"

	"golang.org/x/sys/unix"
)

// OpenDir implements FS by walking name's components with
// openat(O_NOFOLLOW|O_DIRECTORY): these systems have no openat2(2); the
// walk refuses symbolic links in any component, as RESOLVE_NO_SYMLINKS
// does, but not mount crossings.
func (OS) OpenDir(dirfd int, name string) (int, error) {
	return openDirWalk(dirfd, name)
}

// TouchFD implements FS with futimes(2) (microseconds): it sets the times
// of the very file open as fd, whatever now stands at its name.
func (OS) TouchFD(fd int, t time.Time) error {
	tv := unix.NsecToTimeval(t.UnixNano())
	_, err := retry(func() (int, error) { return 0, unix.Futimes(fd, []unix.Timeval{tv, tv}) })
	return err
}

// Mtime returns the modification time recorded in st.
func Mtime(st *unix.Stat_t) time.Time {
	return time.Unix(st.Mtim.Sec, st.Mtim.Nsec)
}

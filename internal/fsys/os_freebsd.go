package fsys

import "golang.org/x/sys/unix"

// Fsync implements FS.
func (OS) Fsync(fd int) error { return unix.Fsync(fd) }

// Rename implements FS. FreeBSD has no rename that refuses to replace, so
// without replacing it uses renameByLink.
func (OS) Rename(olddirfd int, oldname string, newdirfd int, newname string, noReplace bool) error {
	if !noReplace {
		return unix.Renameat(olddirfd, oldname, newdirfd, newname)
	}
	return renameByLink(olddirfd, oldname, newdirfd, newname)
}

//go:build !linux

package index

import (
	"github.com/spool-agent/spool-agent/internal/dirent"
	"golang.org/x/sys/unix"
)

// openBeneathSys walks rel one component at a time: there is no openat2.
func openBeneathSys(root int, rel string) (int, error) { return openWalk(root, rel) }

// fstatat stats the name in d relative to dirfd, without following a
// symlink.
func fstatat(dirfd int, d dirent.Entry, st *unix.Stat_t) error {
	if len(d.Name) == 0 {
		return unix.ENOENT
	}
	return lstatAt(dirfd, string(d.Name), st)
}

// fstatatZ is fstatat of a name interned by arena.internZ.
func fstatatZ(dirfd int, name string, st *unix.Stat_t) error {
	if len(name) == 0 {
		return unix.ENOENT
	}
	return lstatAt(dirfd, name, st)
}

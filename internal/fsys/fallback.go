package fsys

// The portable fallbacks that systems without Linux's system calls use. They
// are built everywhere, so that the tests run them on Linux too.

import (
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// readDirOS lists dirfd's directory with the os package's directory reading
// (types from d_type, a stat only where the file system gives none),
// through a fresh descriptor of the directory, since a directory offset is
// shared by all users of a descriptor.
func readDirOS(dirfd int) ([]DirEntry, error) {
	fd, err := retry(func() (int, error) {
		return unix.Openat(dirfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	})
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), ".")
	defer f.Close()
	ents, err := f.ReadDir(-1)
	if err != nil {
		return nil, err
	}
	entries := make([]DirEntry, 0, len(ents))
	for _, e := range ents {
		entries = append(entries, DirEntry{Name: e.Name(), Type: direntType(e.Type())})
	}
	return entries, nil
}

// direntType maps the type bits of a file mode to a directory entry's
// d_type.
func direntType(m fs.FileMode) uint8 {
	switch {
	case m&fs.ModeDir != 0:
		return unix.DT_DIR
	case m&fs.ModeSymlink != 0:
		return unix.DT_LNK
	case m&fs.ModeNamedPipe != 0:
		return unix.DT_FIFO
	case m&fs.ModeSocket != 0:
		return unix.DT_SOCK
	case m&fs.ModeCharDevice != 0:
		return unix.DT_CHR
	case m&fs.ModeDevice != 0:
		return unix.DT_BLK
	case m&fs.ModeIrregular != 0:
		return unix.DT_UNKNOWN
	}
	return unix.DT_REG
}

// renameByLink moves a file without ever replacing one at newname, where
// the system has no rename that refuses to (Linux's RENAME_NOREPLACE): it
// links the file at newname, which fails with EEXIST if the name is taken,
// then unlinks oldname. If that unlink fails (another mover took oldname
// first) it removes the new link again, so the move did not happen. It
// moves files only, which is all the spool moves without replacing.
// Between the two calls the file has two links: a reader that opens it
// then sees spool.ErrLinked and passes it over until a later listing, and
// a crash between them leaves both names for fsck to report. A plain
// rename(2), which could replace a live entry, is never the fallback.
func renameByLink(olddirfd int, oldname string, newdirfd int, newname string) error {
	if _, err := retry(func() (int, error) { return 0, unix.Linkat(olddirfd, oldname, newdirfd, newname, 0) }); err != nil {
		return err
	}
	if err := unix.Unlinkat(olddirfd, oldname, 0); err != nil {
		unix.Unlinkat(newdirfd, newname, 0)
		return err
	}
	return nil
}

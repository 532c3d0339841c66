package repair

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spool-agent/spool-agent/internal/fsys"
	"github.com/spool-agent/spool-agent/spool"
)

// The raw operations that repair needs and the spool library does not offer
// (create a registry file for a name found on disk, unlink a leftover,
// rename a file into a queue under a new name). Each works relative to a
// directory descriptor opened without following symbolic links, so a spool
// directory swapped for a symlink after it was opened cannot redirect it.
// The calls that differ between systems (openat2, the no-replace rename,
// F_FULLFSYNC, the mtime field) go through internal/fsys, as the library's
// do.

// dirs holds descriptors of a spool's directories. A queue directory or
// .checkout that cannot be opened has fd -1 (every lookup in it then says
// "absent", and the check's own error decides whether repair may act).
type dirs struct {
	path           string // the spool, for error messages
	root           int
	reg, tmp, data int
	queues         map[string]*queueDirs
}

type queueDirs struct{ q, co int }

// openDirs opens dir (following the path the user gave, as the spool
// library does) and beneath it, refusing symlinks, the spool's own
// directories and those of queues.
func openDirs(dir string, queues []string) (*dirs, error) {
	d := &dirs{path: dir, root: -1, reg: -1, tmp: -1, data: -1, queues: map[string]*queueDirs{}}
	root, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: dir, Err: err}
	}
	d.root = root
	for _, x := range []struct {
		fd   *int
		name string
	}{{&d.reg, spool.RegistryDir}, {&d.tmp, spool.TmpDir}, {&d.data, spool.DataDir}} {
		if *x.fd, err = openDir(root, x.name); err != nil {
			d.close()
			return nil, &fs.PathError{Op: "open", Path: filepath.Join(dir, x.name), Err: err}
		}
	}
	for _, q := range queues {
		d.addQueue(q)
	}
	return d, nil
}

// addQueue opens queue q's directories (fd -1 for one that cannot be opened).
func (d *dirs) addQueue(q string) {
	if _, ok := d.queues[q]; ok {
		return
	}
	qd := &queueDirs{q: -1, co: -1}
	if fd, err := openDir(d.root, q); err == nil {
		qd.q = fd
		if fd, err := openDir(qd.q, spool.CheckoutDir); err == nil {
			qd.co = fd
		}
	}
	d.queues[q] = qd
}

func (d *dirs) close() {
	for _, fd := range []int{d.root, d.reg, d.tmp, d.data} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	for _, q := range d.queues {
		for _, fd := range []int{q.q, q.co} {
			if fd >= 0 {
				unix.Close(fd)
			}
		}
	}
}

// openDir opens the directory name beneath dirfd, refusing symbolic links
// (and, on Linux, mount crossings): fsys.OS.OpenDir.
func openDir(dirfd int, name string) (int, error) { return fsys.OS{}.OpenDir(dirfd, name) }

// fsync flushes fd to stable storage (F_FULLFSYNC on darwin): fsys.OS.Fsync.
func fsync(fd int) error { return fsys.OS{}.Fsync(fd) }

func retry(f func() (int, error)) (int, error) {
	for {
		fd, err := f()
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// file is what repair knows of one name in one directory.
type file struct {
	exists  bool
	regular bool
	dir     bool
	mtime   time.Time
	ino     uint64
	size    int64
}

// stat describes name in the directory dirfd without following a symlink.
// A missing file (or directory) is not an error.
func stat(dirfd int, name string) (file, error) {
	if dirfd < 0 {
		return file{}, nil
	}
	var st unix.Stat_t
	err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return file{}, nil
	}
	if err != nil {
		return file{}, err
	}
	return file{
		exists:  true,
		regular: st.Mode&unix.S_IFMT == unix.S_IFREG,
		dir:     st.Mode&unix.S_IFMT == unix.S_IFDIR,
		mtime:   fsys.Mtime(&st),
		ino:     st.Ino,
		size:    st.Size,
	}, nil
}

// createEmpty creates name in dirfd with O_EXCL and perm (minus the umask),
// and fsyncs it and the directory.
func createEmpty(dirfd int, name string, perm uint32) error {
	fd, err := retry(func() (int, error) {
		return unix.Openat(dirfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
	})
	if err != nil {
		return err
	}
	err = fsync(fd)
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return fsync(dirfd)
}

// unlink removes the regular file name from dirfd and fsyncs the directory;
// a file already gone is not an error.
func unlink(dirfd int, name string) error {
	if err := unix.Unlinkat(dirfd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	return fsync(dirfd)
}

// renameNew renames oldname in olddirfd to newname in newdirfd, failing with
// EEXIST rather than replacing a file, and fsyncs both directories.
func renameNew(olddirfd int, oldname string, newdirfd int, newname string) error {
	if err := (fsys.OS{}).Rename(olddirfd, oldname, newdirfd, newname, true); err != nil {
		return err
	}
	if err := fsync(newdirfd); err != nil {
		return err
	}
	return fsync(olddirfd)
}

// copyNew copies the regular file src in srcfd (or nothing, when it is
// missing) into a new file dst in dstfd created with O_EXCL and perm, and
// fsyncs it and the directory. It copies at most the size that src had
// when it was opened. The source is hostile input: holes stay holes (a
// sparse file claiming a terabyte costs what it holds), and a copy of more
// blocks than the space left to unprivileged users, as the source holds
// them when opened, is refused with ENOSPC, so that repair run as root
// does not dig into the blocks reserved for root. (A writer that fills the
// source's holes during the copy can still make it larger.)
func copyNew(srcfd int, src string, dstfd int, dst string, perm uint32) error {
	return copyNewWithin(srcfd, src, dstfd, dst, perm, availBytes)
}

// availBytes returns the space left to unprivileged users on the file
// system of fd.
func availBytes(fd int) (uint64, error) {
	var sf unix.Statfs_t
	if err := unix.Fstatfs(fd, &sf); err != nil {
		return 0, err
	}
	return uint64(sf.Bavail) * uint64(sf.Bsize), nil
}

// copyNewWithin is copyNew with the space left measured by avail.
func copyNewWithin(srcfd int, src string, dstfd int, dst string, perm uint32, avail func(fd int) (uint64, error)) error {
	in := -1
	var size int64
	if fd, err := retry(func() (int, error) {
		return unix.Openat(srcfd, src, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	}); err == nil {
		defer unix.Close(fd)
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			return fmt.Errorf("%s: not a regular file", src)
		}
		left, err := avail(dstfd)
		if err != nil {
			return err
		}
		if need := uint64(st.Blocks) * 512; need > left {
			return fmt.Errorf("%s: its copy needs %d bytes, %d are left: %w", src, need, left, unix.ENOSPC)
		}
		in, size = fd, st.Size
	} else if !errors.Is(err, unix.ENOENT) {
		return err
	}
	out, err := retry(func() (int, error) {
		return unix.Openat(dstfd, dst, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
	})
	if err != nil {
		return err
	}
	fail := func(err error) error {
		unix.Close(out)
		unix.Unlinkat(dstfd, dst, 0)
		return err
	}
	if in >= 0 {
		if err := copySparse(out, in, size); err != nil {
			return fail(err)
		}
	}
	if err := fsync(out); err != nil {
		return fail(err)
	}
	if err := unix.Close(out); err != nil {
		unix.Unlinkat(dstfd, dst, 0)
		return err
	}
	return fsync(dstfd)
}

// copySparse copies the first size bytes of in to out, the data regions
// only (SEEK_DATA, SEEK_HOLE): the holes between them, and after the last,
// stay holes in out, whose size is set to size.
func copySparse(out, in int, size int64) error {
	for off := int64(0); off < size; {
		data, err := unix.Seek(in, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole after off
		}
		if err != nil {
			return err
		}
		if data >= size {
			break
		}
		end, err := unix.Seek(in, data, unix.SEEK_HOLE)
		if err != nil {
			return err
		}
		end = min(end, size)
		if _, err := unix.Seek(in, data, io.SeekStart); err != nil {
			return err
		}
		if _, err := unix.Seek(out, data, io.SeekStart); err != nil {
			return err
		}
		if _, err := io.Copy(fdWriter(out), io.LimitReader(fdReader(in), end-data)); err != nil {
			return err
		}
		off = end
	}
	// The copy's size is the source's, up to size: a source that shrank
	// meanwhile gives a shorter copy, not one padded with zeros.
	var st unix.Stat_t
	if err := unix.Fstat(in, &st); err != nil {
		return err
	}
	return unix.Ftruncate(out, min(size, st.Size))
}

type fdReader int

func (r fdReader) Read(p []byte) (int, error) {
	for {
		n, err := unix.Read(int(r), p)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return 0, err
		case n == 0 && len(p) > 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

type fdWriter int

func (w fdWriter) Write(p []byte) (int, error) {
	done := 0
	for done < len(p) {
		n, err := unix.Write(int(w), p[done:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return done, err
		}
		done += n
	}
	return done, nil
}

// errBusy reports a file that another worker holds locked.
var errBusy = errors.New("locked by a live worker")

// claimRename moves the waiting entry file name from queue directory qfd to
// newname in dstfd as a claim of this library does: it opens the file, takes
// the flock that every claim of the spool library takes before it moves a
// file (so no worker of this library can take it meanwhile), checks that the
// name still holds the locked file, and renames it without replacing
// (renameNew).
func claimRename(qfd int, name string, dstfd int, newname string) error {
	fd, err := retry(func() (int, error) {
		return unix.Openat(qfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	})
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return errors.New("not a regular file")
	}
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return errBusy
		}
		return err
	}
	now, err := stat(qfd, name)
	if err != nil {
		return err
	}
	if !now.exists || now.ino != st.Ino {
		return unix.ENOENT // taken meanwhile
	}
	return renameNew(qfd, name, dstfd, newname)
}

func isExist(err error) bool    { return errors.Is(err, unix.EEXIST) }
func isNotExist(err error) bool { return errors.Is(err, unix.ENOENT) }

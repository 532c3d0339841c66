//go:build linux

package fsys

import (
	"fmt"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// OpenDir implements FS with openat2(2) and RESOLVE_BENEATH,
// RESOLVE_NO_SYMLINKS and RESOLVE_NO_XDEV (Linux 5.6), which refuse any
// escape in one call; where the kernel lacks openat2 it walks the name's
// components with openat(O_NOFOLLOW|O_DIRECTORY), which refuses symlinks
// as well (but not mount crossings).
func (OS) OpenDir(dirfd int, name string) (int, error) {
	how := unix.OpenHow{
		Flags:   openDirFlags,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_XDEV,
	}
	for {
		fd, err := unix.Openat2(dirfd, name, &how)
		switch err {
		case unix.EINTR, unix.EAGAIN:
			continue // EAGAIN: a concurrent rename somewhere; retry
		case unix.ENOSYS, unix.EPERM:
			// No openat2 (or a seccomp filter refusing it).
			return openDirWalk(dirfd, name)
		}
		return fd, err
	}
}

// Fsync implements FS.
func (OS) Fsync(fd int) error { return unix.Fsync(fd) }

// Rename implements FS. RENAME_NOREPLACE needs Linux 3.15 and a file system
// that supports it (ext4, xfs, btrfs, tmpfs do); where it is not supported the
// rename fails rather than silently risk replacing a live entry.
func (OS) Rename(olddirfd int, oldname string, newdirfd int, newname string, noReplace bool) error {
	flags := uint(0)
	if noReplace {
		flags = unix.RENAME_NOREPLACE
	}
	return unix.Renameat2(olddirfd, oldname, newdirfd, newname, flags)
}

// TouchFD implements FS with utimensat(fd, NULL, ...), which x/sys does not
// wrap: it sets the times of the very file open as fd, whatever now stands at
// its name.
func (OS) TouchFD(fd int, t time.Time) error {
	ts := unix.NsecToTimespec(t.UnixNano())
	times := [2]unix.Timespec{ts, ts}
	_, _, errno := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&times[0])), 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// Syncfs flushes the whole file system holding fd with syncfs(2), then
// fsyncs fd (group commit's batch flush, found by a type assertion in
// package spool). The fsync is a cache flush issued after everything
// syncfs wrote has completed: ext4 without a journal issues syncfs's flush
// (ext4_sync_fs) before syncfs writes the inode tables and directory
// blocks (its last sync_blockdev), so without another flush they could
// still sit in the disk's volatile cache; on such ext4 every fsync ends
// with one. Elsewhere (a journal, XFS's log, btrfs's transaction) syncfs's
// commit already covered them and the fsync adds at most a flush per round.
// An error of the fsync says so ("fsync after syncfs: ..."), wrapping its
// errno.
func (OS) Syncfs(fd int) error {
	if _, err := retry(func() (int, error) { return 0, unix.Syncfs(fd) }); err != nil {
		return err
	}
	if _, err := retry(func() (int, error) { return 0, unix.Fsync(fd) }); err != nil {
		return fmt.Errorf("fsync after syncfs: %w", err)
	}
	return nil
}

// StartWriteback starts writing fd's dirty pages back and returns without
// waiting for them and without a cache flush (sync_file_range(2) with
// SYNC_FILE_RANGE_WRITE). It makes nothing durable: the disk works on the
// file while the caller writes its next file, so the fsync or syncfs that
// makes it durable later waits less. It returns what the file system's
// write-out returns; an error that the write-back meets later, on the
// disk, is kept for the file's next fsync or WritebackErr, as any
// write-back's is.
func (OS) StartWriteback(fd int) error {
	_, err := retry(func() (int, error) {
		return 0, unix.SyncFileRange(fd, 0, 0, unix.SYNC_FILE_RANGE_WRITE)
	})
	return err
}

// WritebackErr writes back what of fd's file is still dirty, waits for it
// and for the write-back in flight, and reports the file's write-back
// error since fd last saw one (the check fsync makes, without fsync's
// journal commit and cache flush), with sync_file_range(2) and
// writebackFlags. EINTR is retried.
func (OS) WritebackErr(fd int) error {
	_, err := retry(func() (int, error) {
		return 0, unix.SyncFileRange(fd, 0, 0, writebackFlags)
	})
	return err
}

// writebackFlags: WAIT_AFTER alone neither writes nor reports a page that
// is still dirty after the syncfs round (a write-back that failed without
// setting the file's error, as ext4's after a forced shutdown); with
// WAIT_BEFORE and WRITE (write-back WB_SYNC_ALL since Linux 5.2) such a
// page is written and its error returned. On clean pages it only walks the
// page cache.
const writebackFlags = unix.SYNC_FILE_RANGE_WAIT_BEFORE | unix.SYNC_FILE_RANGE_WRITE | unix.SYNC_FILE_RANGE_WAIT_AFTER

// Mtime returns the modification time recorded in st.
func Mtime(st *unix.Stat_t) time.Time {
	return time.Unix(st.Mtim.Unix())
}

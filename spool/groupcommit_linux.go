//go:build linux

package spool

import "golang.org/x/sys/unix"

// OS.Syncfs and OS.WritebackErr (internal/fsys) implement batchFS.

// syncfsReportsErrors reports whether the running kernel's syncfs returns
// the errors fsync would (syncfsSoundRelease).
func syncfsReportsErrors() bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	return syncfsSoundRelease(unix.ByteSliceToString(u.Release[:]))
}

// syncfsFileSystem reports whether the file system holding fd is one whose
// syncfs writes back, commits and flushes everything fsync of each changed
// file and directory would, and reports its errors: ext4 (whose magic
// number ext2 and ext3 share), XFS and btrfs. Elsewhere syncfs is not a
// substitute: overlayfs checks its own superblock's errors, never set for
// the upper layer's write-back; FUSE reaches the server only where it
// implements FUSE_SYNCFS; CIFS and NFS send no flush or commit for it;
// tmpfs has nothing to flush, and the per-directory fsyncs cost it nothing.
func syncfsFileSystem(fd int) bool {
	var st unix.Statfs_t
	for {
		err := unix.Fstatfs(fd, &st)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return false
		}
		break
	}
	return syncfsMagic(uint32(st.Type))
}

// syncfsMagic reports whether statfs's f_type names a file system of
// syncfsFileSystem's list. (uint32: f_type is 32 bits on some platforms.)
func syncfsMagic(magic uint32) bool {
	switch magic {
	case unix.EXT4_SUPER_MAGIC, unix.XFS_SUPER_MAGIC, unix.BTRFS_SUPER_MAGIC:
		return true
	}
	return false
}

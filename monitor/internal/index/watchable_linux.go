//go:build linux

package index

import "golang.org/x/sys/unix"

// unwatchableFS lists file systems whose changes made by other hosts (or by
// the server) raise no inotify event: watching them would miss changes, so
// the monitor scans them in full every cycle.
var unwatchableFS = map[int64]string{
	unix.NFS_SUPER_MAGIC:   "nfs",
	unix.SMB_SUPER_MAGIC:   "smb",
	unix.SMB2_SUPER_MAGIC:  "smb2",
	unix.CIFS_SUPER_MAGIC:  "cifs",
	unix.FUSE_SUPER_MAGIC:  "fuse",
	unix.V9FS_MAGIC:        "9p",
	unix.CEPH_SUPER_MAGIC:  "ceph",
	unix.AFS_SUPER_MAGIC:   "afs",
	unix.AFS_FS_MAGIC:      "afs",
	unix.CODA_SUPER_MAGIC:  "coda",
	unix.NCP_SUPER_MAGIC:   "ncp",
	unix.XENFS_SUPER_MAGIC: "xenfs",
}

// Watchable reports whether a change feed can be trusted on dir, and why
// not.
func Watchable(dir string) (bool, string) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return true, "" // the scan reports the error
	}
	if name, ok := unwatchableFS[int64(st.Type)]; ok {
		return false, "file system " + name + " raises no inotify events for remote changes"
	}
	return true, ""
}

package index

import (
	"strings"

	"github.com/spool-agent/spool-agent/spool"
	"golang.org/x/sys/unix"
)

// Applied is what Apply learnt beside the change it made.
type Applied struct {
	// RootFile is the name of a regular file at the spool root, when
	// IsRootFile (the checks ignore such files; tests use one as a marker).
	RootFile   string
	IsRootFile bool
	// Arrival is the queue a file was created in or moved into, or "".
	Arrival string
	// Rescan, when not "", says why the index cannot follow the change (the
	// spool's layout changed): the caller scans the spool afresh.
	Rescan string
}

// Apply brings the index up to date with path (a file of a watched
// directory, or the directory itself) after the events op of a batch: it
// stats the file once, whatever the number of events. After only removals
// and renames away the file is gone without asking: had it come back, a
// Create would follow (a feed keeps one directory's events in order).
func (ix *Index) Apply(path string, op Op) Applied {
	if path == ix.dir {
		if op.Has(OpRemove) || op.Has(OpRename) {
			return Applied{Rescan: "spool directory removed or moved"}
		}
		return Applied{}
	}
	slash := strings.LastIndexByte(path, '/')
	if slash < 0 {
		return Applied{}
	}
	dir, name := path[:slash], path[slash+1:]
	ix.applied++
	if ix.rescanning {
		ix.touched[path] = ix.applied
	}
	if name == spool.CheckoutDir {
		if op.Has(OpCreate) || op.Has(OpRemove) || op.Has(OpRename) {
			// A checkout directory appeared or went: a queue came or went.
			return Applied{Rescan: "checkout directory " + path + " created or removed"}
		}
		return Applied{}
	}
	switch dir {
	case ix.dir:
		return ix.applyRoot(path, name, op)
	case ix.dir + "/" + spool.RegistryDir:
		ix.setReg(name, ix.stat(path, op, false, false))
	case ix.dir + "/" + spool.DataDir:
		ix.setData(name, ix.stat(path, op, true, false))
	case ix.dir + "/" + spool.TmpDir:
		ix.setTmp(name, ix.stat(path, op, false, false))
	default:
		l := ix.byPath[dir]
		if l == nil {
			return Applied{} // a directory at the root that is not a queue
		}
		st := ix.stat(path, op, false, true)
		var a Applied
		if !l.checkout && op.Has(OpCreate) {
			// A file created in or moved into the queue: an arrival, even
			// if a worker took it before this batch was applied.
			a.Arrival = l.queue
		}
		ix.setLoc(l, name, st)
		return a
	}
	return Applied{}
}

// applyRoot handles an event for a name at the spool root: a change of
// directory or symlink there changes the spool's layout (a queue added or
// removed, an unexpected directory), which a full rescan picks up.
func (ix *Index) applyRoot(path, name string, op Op) Applied {
	if op == OpChmod || op == OpWrite {
		return Applied{}
	}
	var st unix.Stat_t
	err := unix.Lstat(path, &st)
	known := false
	switch name {
	case spool.RegistryDir, spool.TmpDir, spool.DataDir:
		known = true
	}
	for _, q := range ix.queues {
		known = known || q == name
	}
	for _, u := range ix.rootUnexpected {
		known = known || u == name
	}
	mode := uint32(st.Mode) & unix.S_IFMT
	switch {
	case err == nil && mode == unix.S_IFREG && !known:
		return Applied{RootFile: name, IsRootFile: true}
	case err != nil && err != unix.ENOENT:
		return Applied{Rescan: "cannot stat " + path + ": " + err.Error()}
	case err == unix.ENOENT && !known:
		// A file at the root went: nothing to do.
	case err == nil && (mode == unix.S_IFDIR || mode == unix.S_IFLNK) || known:
		return Applied{Rescan: "spool root changed: " + path}
	}
	return Applied{}
}

// stat returns the state of the file at path after events op, recording a
// failed stat (other than ENOENT) as an error for the next cycle. With
// size it reads the size, and in a queue or checkout directory (loc) a
// file with more than one link is unexpected.
func (ix *Index) stat(path string, op Op, size, loc bool) fileState {
	if !op.Has(OpCreate) && !op.Has(OpWrite) && !op.Has(OpChmod) {
		delete(ix.statErrs, path)
		return fileState{}
	}
	var st unix.Stat_t
	err := unix.Lstat(path, &st)
	if err == nil {
		delete(ix.statErrs, path)
		if !isReg(uint32(st.Mode)) || loc && sharedInode(&st) {
			return irregularFile
		}
		fs := fileState{present: true, mtime: mtimeOf(&st)}
		if size {
			fs.size = st.Size
		}
		return fs
	}
	if err == unix.ENOENT {
		delete(ix.statErrs, path)
		return fileState{}
	}
	ix.statErrs[path] = pathErr("stat", path, err)
	return fileState{present: true, statFailed: true}
}

package index

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"

	"github.com/spool-agent/spool-agent/internal/dirent"
	"github.com/spool-agent/spool-agent/spool"
	"golang.org/x/sys/unix"
)

// ErrLayoutChanged reports that the spool's root no longer matches the
// index (a queue or an unexpected directory came or went, or the index was
// replaced): a warm rescan cannot reconcile that, a cold Scan can.
var ErrLayoutChanged = errors.New("spool layout changed")

// dirRole is the role of a directory a rescan lists.
type dirRole uint8

const (
	roleRegistry dirRole = iota
	roleData
	roleTmp
	rolePlace // a queue or checkout directory
)

// Rescan is the periodic full rescan of a spool whose index the change
// feed has kept current: it lists every directory again and reconciles the
// index in place, statting only the files the index does not know (or
// knows with another type), and forgetting those it holds but the listing
// did not show. The mtimes and sizes the index holds came from stats made
// after the files' last events, so they are not read again: that makes the
// rescan cost a listing of the spool rather than a stat of every file. A
// cold Scan remains the answer to anything that makes the index
// untrustworthy: the first cycle, an overflow, a lost watch, an error, or
// ErrLayoutChanged from Rescan.
//
// The index stays in use during the rescan: mu is the lock its user holds
// while using it, which the rescan takes for one buffer of directory
// entries at a time, so that events applied meanwhile (they mark the files
// they report as seen) are kept by the final sweep. current, called with
// mu held, reports whether ix is still the index in use (ErrLayoutChanged
// if not). openFault is the test seam of Scan.
func (ix *Index) Rescan(ctx context.Context, mu sync.Locker, current func() bool, openFault func(string) error) (err error) {
	buf := make([]byte, direntBuf)
	root, err := openRoot(ix.dir, openFault)
	if err != nil {
		return ErrLayoutChanged // let the cold scan report it
	}
	defer unix.Close(root)
	lay, lerrs, err := readLayout(root, ix.dir, buf, ix.maxDirs)
	if err != nil || len(lerrs) > 0 || lay.over > 0 {
		return ErrLayoutChanged // let the cold scan report it
	}
	mu.Lock()
	if !current() || !slices.Equal(lay.queues, ix.queues) || !slices.Equal(lay.unexpected, ix.rootUnexpected) {
		mu.Unlock()
		return ErrLayoutChanged
	}
	for i := range ix.ents {
		ix.ents[i].regData &^= registrySeen | dataSeen
		ix.ents[i].placed &^= placedSeen
	}
	for _, xs := range ix.otherPlaces {
		for k := range xs {
			xs[k].placed &^= placedSeen
		}
	}
	for name, t := range ix.tmp {
		t.seen = false
		ix.tmp[name] = t
	}
	ix.rescanning, ix.touched = true, make(map[string]uint64)
	mu.Unlock()
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		ix.rescanning, ix.touched = false, nil
	}()

	type target struct {
		path string
		role dirRole
		loc  *location
	}
	targets := []target{
		{ix.dir + "/" + spool.RegistryDir, roleRegistry, nil},
		{ix.dir + "/" + spool.DataDir, roleData, nil},
		{ix.dir + "/" + spool.TmpDir, roleTmp, nil},
	}
	for _, l := range ix.locs {
		targets = append(targets, target{l.path, rolePlace, l})
	}
	for _, t := range targets {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := ix.rescanDir(mu, current, root, t.path, t.role, t.loc, buf, openFault); err != nil {
			return err
		}
	}

	mu.Lock()
	defer mu.Unlock()
	if !current() {
		return ErrLayoutChanged // a cold scan replaced the index meanwhile
	}
	ix.sweepUnseen()
	return nil
}

// rescanDir lists one directory and reconciles the index with it.
func (ix *Index) rescanDir(mu sync.Locker, current func() bool, root int, path string, kind dirRole, l *location, buf []byte, openFault func(string) error) error {
	fd, err := openBeneath(root, strings.TrimPrefix(path, ix.dir+"/"), path, openFault)
	if err != nil {
		return pathErr("open", path, err)
	}
	defer unix.Close(fd)
	var missing []dirent.Entry
	var states []fileState
	var st unix.Stat_t
	for {
		n, err := dirent.Read(fd, buf)
		if err != nil {
			return pathErr("list", path, err)
		}
		if n <= 0 {
			return nil
		}
		// Mark what the index already knows, under the lock, one buffer at
		// a time; collect the rest.
		missing = missing[:0]
		mu.Lock()
		if !current() {
			mu.Unlock()
			return ErrLayoutChanged
		}
		listed := ix.applied
		dirent.Parse(buf[:n], func(d dirent.Entry) {
			if string(d.Name) == spool.CheckoutDir || ix.markSeen(kind, l, d) || ix.pastBound(kind, d.Name) {
				return
			}
			missing = append(missing, d)
		})
		mu.Unlock()
		if len(missing) == 0 {
			continue
		}
		// Stat those outside the lock (their names are still in buf), then
		// apply them as events would.
		states = states[:0]
		for _, d := range missing {
			fs := fileState{present: true}
			switch {
			case kind == roleRegistry && typeKnown(d.Type):
				if d.Type != dirent.Regular {
					fs = irregularFile
				}
			case typeKnown(d.Type) && d.Type != dirent.Regular:
				fs = irregularFile
			default:
				if err := fstatat(fd, d, &st); err != nil {
					if err != unix.ENOENT {
						return pathErr("stat", path+"/"+string(d.Name), err)
					}
					fs = fileState{}
				} else if !isReg(uint32(st.Mode)) || kind == rolePlace && sharedInode(&st) {
					fs = irregularFile
				} else {
					fs.mtime, fs.size = mtimeOf(&st), st.Size
				}
			}
			states = append(states, fs)
		}
		mu.Lock()
		if !current() {
			mu.Unlock()
			return ErrLayoutChanged
		}
		for i, d := range missing {
			if !states[i].present {
				continue // gone since listed: its event says so
			}
			name := string(d.Name)
			if ix.touched[path+"/"+name] > listed {
				// An event applied since the listing reported this file,
				// and Apply stats what it reports: the feed brings every
				// change after the listing, so the index has this file
				// as it is, or will have. Applying the stat above could
				// instead put back a file that has moved away since.
				continue
			}
			switch kind {
			case roleRegistry:
				ix.setReg(name, states[i])
			case roleData:
				ix.setData(name, states[i])
			case roleTmp:
				ix.setTmp(name, states[i])
			default:
				ix.setLoc(l, name, states[i])
			}
		}
		mu.Unlock()
	}
}

// markSeen marks the file d of directory kind (or location l) as seen if
// the index holds it there with the same type, and reports whether it did.
func (ix *Index) markSeen(kind dirRole, l *location, d dirent.Entry) bool {
	known := typeKnown(d.Type)
	irregular := d.Type != dirent.Regular
	switch kind {
	case roleTmp:
		t, ok := ix.tmp[string(d.Name)]
		if !ok || !known || t.irregular != irregular {
			return false
		}
		t.seen = true
		ix.tmp[string(d.Name)] = t
		return true
	}
	id, ok := ix.ids[string(d.Name)]
	if !ok || !known {
		return false
	}
	e := &ix.ents[id]
	switch kind {
	case roleRegistry:
		if e.regData&registryPresent == 0 || (e.regData&registryIrregular != 0) != irregular {
			return false
		}
		e.regData |= registrySeen
	case roleData:
		if e.regData&dataPresent == 0 || (e.regData&dataIrregular != 0) != irregular {
			return false
		}
		e.regData |= dataSeen
	default:
		if e.loc == l.id {
			if (e.placed&placedIrregular != 0) != irregular {
				return false
			}
			e.placed |= placedSeen
			return true
		}
		k := -1
		if e.placed&placedElsewhereToo != 0 {
			k = ix.otherPlaceIndex(id, l.id)
		}
		if k < 0 {
			return false
		}
		x := &ix.otherPlaces[id][k]
		if (x.placed&placedIrregular != 0) != irregular {
			return false
		}
		x.placed |= placedSeen
	}
	return true
}

// pastBound reports whether the index would refuse a name it does not
// hold for the bound of unregistered names (see admit), counting it as
// dropped: a rescan then neither stats nor keeps it.
func (ix *Index) pastBound(kind dirRole, name []byte) bool {
	if ix.maxUnreg <= 0 {
		return false
	}
	switch kind {
	case roleRegistry:
		return false
	case roleTmp:
		if _, ok := ix.tmp[string(name)]; ok || len(ix.tmp) < ix.maxUnreg {
			return false
		}
	default:
		if _, ok := ix.ids[string(name)]; ok || ix.unreg < ix.maxUnreg {
			return false
		}
	}
	ix.dropped++
	return true
}

// sweepUnseen forgets the files that the warm rescan did not see: they went
// without an event reaching the index. Callers hold the index's lock.
func (ix *Index) sweepUnseen() {
	for name, t := range ix.tmp {
		if !t.seen {
			delete(ix.tmp, name)
		}
	}
	for i := range ix.ents {
		id := uint32(i)
		e := &ix.ents[id]
		name := e.name
		if name == "" && e.loc == 0 && e.regData == 0 {
			continue // a free slot
		}
		if e.regData&registryPresent != 0 && e.regData&registrySeen == 0 {
			ix.setReg(name, fileState{})
		}
		if e = &ix.ents[id]; e.name == name && e.regData&dataPresent != 0 && e.regData&dataSeen == 0 {
			ix.setData(name, fileState{})
		}
		for {
			e = &ix.ents[id]
			if e.name != name || e.loc == 0 {
				break
			}
			var gone *location
			for _, x := range ix.locations(id) {
				seen := x.placed&placedSeen != 0
				if x.loc == e.loc {
					seen = e.placed&placedSeen != 0
				}
				if !seen {
					gone = ix.loc(x.loc)
					break
				}
			}
			if gone == nil {
				break
			}
			ix.setLoc(gone, name, fileState{})
		}
	}
}

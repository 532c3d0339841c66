package monitor

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/spool-agent/spool-agent/internal/dirent"
	"github.com/spool-agent/spool-agent/spool"
	"golang.org/x/sys/unix"
)

// errLayoutChanged reports that the spool's root no longer matches the
// index (a queue or an unexpected directory came or went): a warm rescan
// cannot reconcile that, a cold one can.
var errLayoutChanged = errors.New("spool layout changed")

// warmRescan is the periodic full rescan of a spool whose index inotify has
// kept current: it lists every directory again and reconciles the index in
// place, statting only the files the index does not know (or knows with
// another type), and forgetting those it holds but the listing did not
// show. The mtimes and sizes the index holds came from stats made after
// the files' last events, so they are not read again: that makes the
// rescan cost a listing of the spool rather than a stat of every file. A
// cold scan (fullScan) remains the answer to anything that makes the index
// untrustworthy: the first cycle, an overflow, a lost watch, an error.
//
// The index stays in use during the rescan: the rescan holds the lock for
// one getdents buffer at a time, and events applied meanwhile mark the
// files they report as seen, so that the final sweep keeps them. Callers
// hold cycleMu.
func (m *Monitor) warmRescan(ctx context.Context, now time.Time) (err error) {
	buf := make([]byte, direntBuf)
	root, err := openRoot(m.dir, m.openFault())
	if err != nil {
		return errLayoutChanged // let the cold scan report it
	}
	defer unix.Close(root)
	lay, lerrs, err := readLayout(root, m.dir, buf, m.cfg.MaxQueues)
	if err != nil || len(lerrs) > 0 || lay.over > 0 {
		return errLayoutChanged // let the cold scan report it
	}
	m.mu.Lock()
	ix := m.idx
	if ix == nil || !slices.Equal(lay.queues, ix.queues) || !slices.Equal(lay.unexpected, ix.rootUnexpected) {
		m.mu.Unlock()
		return errLayoutChanged
	}
	for i := range ix.ents {
		ix.ents[i].rd &^= fRegSeen | fDataSeen
		ix.ents[i].lf &^= lSeen
	}
	for _, xs := range ix.extras {
		for k := range xs {
			xs[k].lf &^= lSeen
		}
	}
	for name, t := range ix.tmp {
		t.seen = false
		ix.tmp[name] = t
	}
	ix.warm = true
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		ix.warm = false
		if err != nil {
			m.needFull = true
		}
	}()

	type target struct {
		path string
		kind DirKind
		loc  *location
	}
	targets := []target{
		{m.dir + "/" + spool.RegistryDir, DirRegistry, nil},
		{m.dir + "/" + spool.DataDir, DirData, nil},
		{m.dir + "/" + spool.TmpDir, DirTmp, nil},
	}
	for _, l := range ix.locs {
		targets = append(targets, target{l.path, DirQueue, l})
	}
	for _, t := range targets {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := m.warmDir(ix, root, t.path, t.kind, t.loc, buf); err != nil {
			return err
		}
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.idx != ix {
		return errLayoutChanged // a cold scan replaced the index meanwhile
	}
	m.sweepUnseen(ix)
	ix.warm = false
	m.fullScans++
	m.warmScans++
	m.lastFull = now
	m.publishLocked(now)
	return nil
}

// warmDir lists one directory and reconciles the index with it.
func (m *Monitor) warmDir(ix *index, root int, path string, kind DirKind, l *location, buf []byte) error {
	fd, err := openBeneath(root, strings.TrimPrefix(path, m.dir+"/"), path, m.openFault())
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
		m.mu.Lock()
		if m.idx != ix {
			m.mu.Unlock()
			return errLayoutChanged
		}
		dirent.Parse(buf[:n], func(d dirent.Entry) {
			if string(d.Name) == spool.CheckoutDir || ix.markSeen(kind, l, d) || ix.pastBound(kind, d.Name) {
				return
			}
			missing = append(missing, d)
		})
		m.mu.Unlock()
		if len(missing) == 0 {
			continue
		}
		// Stat those outside the lock (their names are still in buf), then
		// apply them as events would.
		states = states[:0]
		for _, d := range missing {
			fs := fileState{present: true}
			switch {
			case kind == DirRegistry && typeKnown(d.Type):
				if d.Type != dirent.Regular {
					fs = badFile
				}
			case typeKnown(d.Type) && d.Type != dirent.Regular:
				fs = badFile
			default:
				if err := fstatat(fd, d, &st); err != nil {
					if err != unix.ENOENT {
						return pathErr("stat", path+"/"+string(d.Name), err)
					}
					fs = fileState{}
				} else if !isReg(st.Mode) || kind == DirQueue && badLinks(&st) {
					fs = badFile
				} else {
					fs.ns, fs.size = stNs(&st), st.Size
				}
			}
			states = append(states, fs)
		}
		m.mu.Lock()
		if m.idx != ix {
			m.mu.Unlock()
			return errLayoutChanged
		}
		for i, d := range missing {
			if !states[i].present {
				continue // gone since listed: its event says so
			}
			name := string(d.Name)
			switch kind {
			case DirRegistry:
				ix.setReg(name, states[i])
			case DirData:
				ix.setData(name, states[i])
			case DirTmp:
				ix.setTmp(name, states[i])
			default:
				ix.setLoc(l, name, states[i])
			}
		}
		m.mu.Unlock()
	}
}

// markSeen marks the file d of directory kind (or location l) as seen if
// the index holds it there with the same type, and reports whether it did.
func (ix *index) markSeen(kind DirKind, l *location, d dirent.Entry) bool {
	known := typeKnown(d.Type)
	bad := d.Type != dirent.Regular
	switch kind {
	case DirTmp:
		t, ok := ix.tmp[string(d.Name)]
		if !ok || !known || t.bad != bad {
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
	case DirRegistry:
		if e.rd&fRegPresent == 0 || (e.rd&fRegBad != 0) != bad {
			return false
		}
		e.rd |= fRegSeen
	case DirData:
		if e.rd&fDataPresent == 0 || (e.rd&fDataBad != 0) != bad {
			return false
		}
		e.rd |= fDataSeen
	default:
		if e.loc == l.id {
			if (e.lf&lBad != 0) != bad {
				return false
			}
			e.lf |= lSeen
			return true
		}
		k := -1
		if e.lf&lExtra != 0 {
			k = ix.extraIndex(id, l.id)
		}
		if k < 0 {
			return false
		}
		x := &ix.extras[id][k]
		if (x.lf&lBad != 0) != bad {
			return false
		}
		x.lf |= lSeen
	}
	return true
}

// pastBound reports whether the index would refuse a name it does not
// hold for the bound of unregistered names (see admit), counting it as
// dropped: a rescan then neither stats nor keeps it.
func (ix *index) pastBound(kind DirKind, name []byte) bool {
	if ix.maxUnreg <= 0 {
		return false
	}
	switch kind {
	case DirRegistry:
		return false
	case DirTmp:
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
// without an event reaching the monitor. Callers hold m.mu.
func (m *Monitor) sweepUnseen(ix *index) {
	for name, t := range ix.tmp {
		if !t.seen {
			delete(ix.tmp, name)
		}
	}
	for i := range ix.ents {
		id := uint32(i)
		e := &ix.ents[id]
		name := e.name
		if name == "" && e.loc == 0 && e.rd == 0 {
			continue // a free slot
		}
		if e.rd&fRegPresent != 0 && e.rd&fRegSeen == 0 {
			ix.setReg(name, fileState{})
		}
		if e = &ix.ents[id]; e.name == name && e.rd&fDataPresent != 0 && e.rd&fDataSeen == 0 {
			ix.setData(name, fileState{})
		}
		for {
			e = &ix.ents[id]
			if e.name != name || e.loc == 0 {
				break
			}
			var gone *location
			for _, x := range ix.locations(id) {
				seen := x.lf&lSeen != 0
				if x.loc == e.loc {
					seen = e.lf&lSeen != 0
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

package monitor

import (
	"math"
	"strings"
	"unsafe"
)

// Flags of an entry's registry and data files (entry.rd) and of its file in
// a queue or checkout directory (entry.lf, extraLoc).
const (
	fRegPresent  uint8 = 1 << iota // .registry/<name> exists
	fRegBad                        // .registry/<name> is not a regular file
	fDataPresent                   // .data/<name> exists
	fDataBad                       // .data/<name> is not a regular file
	fDataBig                       // the data size is in index.bigSizes
	fRegSeen                       // a warm rescan saw .registry/<name> (or an event did during it)
	fDataSeen                      // a warm rescan saw .data/<name>
	fUnreg                         // counted in index.unreg (alive, not registered)
)

// fFiles masks the flags that describe the registry and data files.
const fFiles = fRegPresent | fRegBad | fDataPresent | fDataBad

const (
	lBad    uint8 = 1 << iota // the queue or checkout file is not a regular file
	lNoStat                   // its mtime is unknown (stat failed): not in the sorted set
	lExtra                    // the name is also in other directories (index.extras)
	lSeen                     // a warm rescan saw the file (or an event did during it)
)

// entry is everything the index keeps about one name: 32 bytes plus the
// name's bytes. Registry and data mtimes are not kept: only problems need
// them, and the cycle stats the few files concerned.
type entry struct {
	name string
	ns   int64  // mtime of the file in loc, when loc != 0 and lf has no lNoStat
	size uint32 // the data file's size, or math.MaxUint32 with fDataBig
	loc  uint16 // the queue or checkout directory holding the name (0: none)
	rd   uint8  // fReg*, fData*: written by the registry and data passes
	lf   uint8  // l*: written by the queue pass
}

// extraLoc is a further queue or checkout directory holding a name that is
// already in entry.loc: a duplicated entry, rare.
type extraLoc struct {
	loc uint16
	lf  uint8
	ns  int64
}

// tmpFile is a file in .tmp.
type tmpFile struct {
	ns     int64
	bad    bool
	noStat bool
	seen   bool // by a warm rescan (or an event during it)
}

// location is one queue or checkout directory.
type location struct {
	id       uint16
	queue    string
	checkout bool
	path     string
	count    int // files in the directory that may be entries: not a directory, symlink or other non-regular file (reported as unexpected), but counting those whose stat failed
	set      sortedSet
	dirty    bool     // changed since the last publication
	pub      ageIndex // the last published blocks
	failed   bool     // the directory could not be listed
}

// dir returns the location as a Dir.
func (l *location) dir() Dir {
	if l.checkout {
		return Dir{Kind: DirCheckout, Queue: l.queue}
	}
	return Dir{Kind: DirQueue, Queue: l.queue}
}

// index is the monitor's picture of one spool. A full scan builds one from
// scratch; inotify events then keep it up to date name by name. It is not
// safe for concurrent use: the Monitor guards it with its mutex.
type index struct {
	dir    string
	queues []string    // sorted
	locs   []*location // locs[id-1]: for queue i, 2i+1 is the queue, 2i+2 its .checkout
	byPath map[string]*location

	ids      map[string]uint32
	ents     []entry
	free     []uint32
	extras   map[uint32][]extraLoc
	bigSizes map[uint32]int64
	suspects map[uint32]struct{} // entries that are not exactly registry + data + one regular file in one directory
	tmp      map[string]tmpFile

	regCount  int
	dataBytes int64

	rootUnexpected []string // names at the spool root that are neither queues nor spool directories
	rootFailed     bool     // an entry at the root could not be examined (it may be a queue)
	regFailed      bool     // .registry could not be listed
	dataFailed     bool     // .data could not be listed
	tmpFailed      bool
	scanErrs       []error          // errors of the full scan that built the index
	statErrs       map[string]error // per path: stats that failed since

	// Bounds (0: none) and what went past them.
	maxUnreg    int  // unregistered names tracked, in ents and in tmp each
	unreg       int  // entries alive whose name is not registered
	dropped     int  // unregistered names not tracked for the bound
	maxDirs     int  // for the limit problem's description
	dirsOver    int  // directories at the root not tracked for the bound
	maxWatches  int  // for the limit problem's description
	watchesOver bool // the spool needs more watches than its bound

	gen   uint64 // publication generation, shared by the sorted sets
	arena arena
	// warm is set during a warm rescan: every file that the rescan lists
	// or an event reports is marked seen, and the files left unseen at the
	// end are gone.
	warm bool
}

func newIndex(dir string, queues []string) *index {
	ix := &index{
		dir:      dir,
		queues:   queues,
		byPath:   make(map[string]*location, 2*len(queues)),
		ids:      make(map[string]uint32),
		extras:   make(map[uint32][]extraLoc),
		bigSizes: make(map[uint32]int64),
		suspects: make(map[uint32]struct{}),
		tmp:      make(map[string]tmpFile),
		statErrs: make(map[string]error),
		gen:      1,
	}
	for i, q := range queues {
		for k, co := range []bool{false, true} {
			l := &location{id: uint16(2*i + k + 1), queue: q, checkout: co, path: dir + "/" + q}
			if co {
				l.path += "/.checkout"
			}
			l.set.gen = &ix.gen
			l.dirty = true
			ix.locs = append(ix.locs, l)
			ix.byPath[l.path] = l
		}
	}
	return ix
}

func (ix *index) loc(id uint16) *location { return ix.locs[id-1] }

// arena holds the names read by a full scan in large chunks, saving the
// per-string allocation. The chunks are freed with the index; names that
// events add later are ordinary strings.
type arena struct{ buf []byte }

// internZ copies b into the arena and returns it as a string, with a NUL
// after its bytes so that the name can be passed to a system call as it is
// (see fstatatZ).
func (a *arena) internZ(b []byte) string {
	if len(a.buf)+len(b)+1 > cap(a.buf) {
		a.buf = make([]byte, 0, max(1<<20, len(b)+1))
	}
	off := len(a.buf)
	a.buf = append(a.buf, b...)
	a.buf = append(a.buf, 0)
	return unsafe.String(&a.buf[off], len(b))
}

// newID adds an entry for name and returns its id.
func (ix *index) newID(name string) uint32 {
	var id uint32
	if n := len(ix.free); n > 0 {
		id = ix.free[n-1]
		ix.free = ix.free[:n-1]
		ix.ents[id] = entry{name: name}
	} else {
		id = uint32(len(ix.ents))
		ix.ents = append(ix.ents, entry{name: name})
	}
	ix.ids[name] = id
	return id
}

// limited reports whether the spool holds more than the index's bounds
// let it track: events cannot keep such an index current.
func (ix *index) limited() bool { return ix.dropped > 0 || ix.dirsOver > 0 || ix.watchesOver }

// admit reports whether a new unregistered name may be tracked, counting
// it as dropped if not.
func (ix *index) admit(n int) bool {
	if ix.maxUnreg > 0 && n >= ix.maxUnreg {
		ix.dropped++
		return false
	}
	return true
}

// settle recomputes whether entry id is a suspect and forgets it once
// nothing of it is left on disk.
func (ix *index) settle(id uint32) {
	e := &ix.ents[id]
	alive := e.rd&(fRegPresent|fDataPresent) != 0 || e.loc != 0
	if unreg := alive && e.rd&fRegPresent == 0; unreg != (e.rd&fUnreg != 0) {
		if unreg {
			ix.unreg++
			e.rd |= fUnreg
		} else {
			ix.unreg--
			e.rd &^= fUnreg
		}
	}
	if !alive {
		delete(ix.ids, e.name)
		delete(ix.suspects, id)
		ix.ents[id] = entry{}
		ix.free = append(ix.free, id)
		return
	}
	if e.rd&fFiles == fRegPresent|fDataPresent && e.loc != 0 && e.lf&(lBad|lExtra) == 0 {
		delete(ix.suspects, id)
	} else {
		ix.suspects[id] = struct{}{}
	}
}

// dataSize returns entry id's data size.
func (ix *index) dataSize(id uint32) int64 {
	e := &ix.ents[id]
	if e.rd&fDataBig != 0 {
		return ix.bigSizes[id]
	}
	return int64(e.size)
}

// setDataSize records entry id's data size.
func (ix *index) setDataSize(id uint32, size int64) {
	e := &ix.ents[id]
	if size >= math.MaxUint32 {
		e.size = math.MaxUint32
		e.rd |= fDataBig
		ix.bigSizes[id] = size
		return
	}
	if e.rd&fDataBig != 0 {
		delete(ix.bigSizes, id)
		e.rd &^= fDataBig
	}
	e.size = uint32(size)
}

// fileState is what a stat says about one file.
type fileState struct {
	present bool
	bad     bool // not a regular file
	noStat  bool // present, but its stat failed
	ns      int64
	size    int64
}

// setReg applies the state of .registry/<name>. Like setData, setLoc and
// setTmp it copies name when it keeps it, so that callers may pass a part
// of a longer string (an event's path).
func (ix *index) setReg(name string, st fileState) {
	id, ok := ix.ids[name]
	if !ok {
		if !st.present {
			return
		}
		id = ix.newID(strings.Clone(name))
	}
	e := &ix.ents[id]
	was := e.rd&fRegPresent != 0
	if st.present {
		e.rd |= fRegPresent
		if st.bad {
			e.rd |= fRegBad
		} else {
			e.rd &^= fRegBad
		}
		if ix.warm {
			e.rd |= fRegSeen
		}
		if !was {
			ix.regCount++
		}
	} else {
		e.rd &^= fRegPresent | fRegBad | fRegSeen
		if was {
			ix.regCount--
		}
	}
	ix.settle(id)
}

// setData applies the state of .data/<name>.
func (ix *index) setData(name string, st fileState) {
	id, ok := ix.ids[name]
	if !ok {
		if !st.present || !ix.admit(ix.unreg) {
			return
		}
		id = ix.newID(strings.Clone(name))
	}
	e := &ix.ents[id]
	if e.rd&fDataPresent != 0 {
		ix.dataBytes -= ix.dataSize(id)
	}
	if st.present {
		e.rd |= fDataPresent
		if st.bad {
			e.rd |= fDataBad
		} else {
			e.rd &^= fDataBad
		}
		size := st.size
		if st.bad || st.noStat {
			size = 0
		}
		ix.setDataSize(id, size)
		ix.dataBytes += size
		if ix.warm {
			e.rd |= fDataSeen
		}
	} else {
		ix.setDataSize(id, 0)
		e.rd &^= fDataPresent | fDataBad | fDataSeen
	}
	ix.settle(id)
}

func (ix *index) lflags(st fileState) uint8 {
	var f uint8
	if ix.warm {
		f |= lSeen
	}
	if st.bad {
		f |= lBad
	}
	if st.noStat {
		f |= lNoStat
	}
	return f
}

// setLoc applies the state of <queue>/<name> or <queue>/.checkout/<name>.
func (ix *index) setLoc(l *location, name string, st fileState) {
	id, ok := ix.ids[name]
	if !ok {
		if !st.present || !ix.admit(ix.unreg) {
			return
		}
		id = ix.newID(strings.Clone(name))
	}
	e := &ix.ents[id]
	switch {
	case e.loc == l.id:
		ix.dropItem(l, id, e.lf, e.ns)
		if st.present {
			e.lf = e.lf&lExtra | ix.lflags(st)
			e.ns = st.ns
			ix.addItem(l, id, e.lf, e.ns)
		} else if xs := ix.extras[id]; len(xs) > 0 {
			// Promote another directory holding the name.
			x := xs[0]
			ix.removeExtra(id, 0)
			e.loc, e.ns = x.loc, x.ns
			e.lf = x.lf
			if len(ix.extras[id]) > 0 {
				e.lf |= lExtra
			}
		} else {
			e.loc, e.ns, e.lf = 0, 0, 0
		}
	case e.lf&lExtra != 0 && ix.extraIndex(id, l.id) >= 0:
		k := ix.extraIndex(id, l.id)
		x := &ix.extras[id][k]
		ix.dropItem(l, id, x.lf, x.ns)
		if st.present {
			x.lf, x.ns = ix.lflags(st), st.ns
			ix.addItem(l, id, x.lf, x.ns)
		} else {
			ix.removeExtra(id, k)
			if len(ix.extras[id]) == 0 {
				e.lf &^= lExtra
			}
		}
	case !st.present:
		// Not there and not known there: nothing to do.
	case e.loc == 0:
		e.loc, e.ns = l.id, st.ns
		e.lf = ix.lflags(st)
		ix.addItem(l, id, e.lf, e.ns)
	default:
		x := extraLoc{loc: l.id, lf: ix.lflags(st), ns: st.ns}
		ix.extras[id] = append(ix.extras[id], x)
		e.lf |= lExtra
		ix.addItem(l, id, x.lf, x.ns)
	}
	ix.settle(id)
}

func (ix *index) extraIndex(id uint32, loc uint16) int {
	for k, x := range ix.extras[id] {
		if x.loc == loc {
			return k
		}
	}
	return -1
}

func (ix *index) removeExtra(id uint32, k int) {
	xs := ix.extras[id]
	xs = append(xs[:k:k], xs[k+1:]...)
	if len(xs) == 0 {
		delete(ix.extras, id)
	} else {
		ix.extras[id] = xs
	}
}

func (ix *index) addItem(l *location, id uint32, lf uint8, ns int64) {
	if lf&lBad == 0 {
		l.count++
	}
	l.dirty = true
	if lf&lNoStat == 0 {
		l.set.insert(item{ns: ns, id: id})
	}
}

func (ix *index) dropItem(l *location, id uint32, lf uint8, ns int64) {
	if lf&lBad == 0 {
		l.count--
	}
	l.dirty = true
	if lf&lNoStat == 0 {
		l.set.remove(item{ns: ns, id: id})
	}
}

// setTmp applies the state of .tmp/<name>.
func (ix *index) setTmp(name string, st fileState) {
	if !st.present {
		delete(ix.tmp, name)
		return
	}
	if _, ok := ix.tmp[name]; !ok {
		if !ix.admit(len(ix.tmp)) {
			return
		}
		name = strings.Clone(name)
	}
	ix.tmp[name] = tmpFile{ns: st.ns, bad: st.bad, noStat: st.noStat, seen: ix.warm}
}

// locations returns every directory holding entry id, sorted: by queue
// name, each queue before its checkout directory.
func (ix *index) locations(id uint32) []extraLoc {
	e := &ix.ents[id]
	if e.loc == 0 {
		return nil
	}
	out := []extraLoc{{loc: e.loc, lf: e.lf &^ (lExtra | lSeen), ns: e.ns}}
	if e.lf&lExtra != 0 {
		out = append(out, ix.extras[id]...)
		// loc ids follow that order: sort by id.
		for i := 1; i < len(out); i++ {
			for j := i; j > 0 && out[j].loc < out[j-1].loc; j-- {
				out[j], out[j-1] = out[j-1], out[j]
			}
		}
	}
	return out
}

package index

import (
	"math"
	"strings"
	"unsafe"
)

// fileFlags describe an entry's registry and data files (entry.regData).
type fileFlags uint8

const (
	registryPresent     fileFlags = 1 << iota // .registry/<name> exists
	registryIrregular                         // .registry/<name> is not a regular file
	dataPresent                               // .data/<name> exists
	dataIrregular                             // .data/<name> is not a regular file
	dataSizeBig                               // the data size is in Index.bigSizes
	registrySeen                              // a warm rescan saw .registry/<name> (or an event did during it)
	dataSeen                                  // a warm rescan saw .data/<name>
	countedUnregistered                       // counted in Index.unreg (alive, not registered)
)

// registryDataMask masks the flags that describe the registry and data files.
const registryDataMask = registryPresent | registryIrregular | dataPresent | dataIrregular

// placeFlags describe an entry's file in a queue or checkout directory
// (entry.placed, otherPlace.placed).
type placeFlags uint8

const (
	placedIrregular    placeFlags = 1 << iota // the queue or checkout file is not a regular file
	placedStatFailed                          // its mtime is unknown (stat failed): not in the sorted set
	placedElsewhereToo                        // the name is also in other directories (Index.otherPlaces)
	placedSeen                                // a warm rescan saw the file (or an event did during it)
)

// entry is everything the index keeps about one name: 32 bytes plus the
// name's bytes. Registry and data mtimes are not kept: only problems need
// them, and the cycle stats the few files concerned.
type entry struct {
	name    string
	mtime   int64      // of the file in loc, when loc != 0 and placed has no placedStatFailed
	size    uint32     // the data file's size, or math.MaxUint32 with dataSizeBig, or sizeUnknown
	loc     uint16     // the queue or checkout directory holding the name (0: none)
	regData fileFlags  // written by the registry and data passes
	placed  placeFlags // written by the queue pass
}

// otherPlace is a further queue or checkout directory holding a name that is
// already in entry.loc: a duplicated entry, rare.
type otherPlace struct {
	loc    uint16
	placed placeFlags
	mtime  int64
}

// tmpFile is a file in .tmp.
type tmpFile struct {
	mtime      int64
	irregular  bool
	statFailed bool
	seen       bool // by a warm rescan (or an event during it)
}

// location is one queue or checkout directory.
type location struct {
	id        uint16
	queue     string
	checkout  bool
	path      string
	count     int // files in the directory that may be entries: not a directory, symlink or other non-regular file (reported as unexpected), but counting those whose stat failed
	set       sortedSet
	dirty     bool // changed since the last publication
	published Ages // the last published blocks
	failed    bool // the directory could not be listed
}

// place returns the location as a Place.
func (l *location) place() Place { return Place{Queue: l.queue, Checkout: l.checkout} }

// Index is the picture of one spool: every name of its directories, packed
// (an entry per name, 32 bytes and the name's bytes), each queue's files
// sorted by mtime, and apart the entries that are not exactly a registry
// file, a data file and one regular file in one queue or checkout
// directory (the suspects, where problems are). Scan builds one from
// scratch; Apply keeps it current from change events, name by name, and
// Rescan reconciles it with a listing. It is not safe for concurrent use:
// its user guards it with a mutex.
type Index struct {
	dir    string
	queues []string    // sorted
	locs   []*location // locs[id-1]: for queue i, 2i+1 is the queue, 2i+2 its .checkout
	byPath map[string]*location

	ids         map[string]uint32
	ents        []entry
	free        []uint32
	otherPlaces map[uint32][]otherPlace
	bigSizes    map[uint32]int64
	suspects    map[uint32]struct{} // entries that are not exactly registry + data + one regular file in one directory
	tmp         map[string]tmpFile

	regCount  int
	dataBytes int64 // of the data files whose size is known
	unsized   int   // data files whose size is not known yet (sizeUnknown)
	// pendingSizes are the data files a scan with SizesLater left
	// unsized, in inode order, for FillSizes.
	pendingSizes []pendingSize

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
	// rescanning is set during a warm rescan: every file that the rescan lists
	// or an event reports is marked seen, and the files left unseen at the
	// end are gone.
	rescanning bool
	// applied counts the events applied (Apply); during a warm rescan,
	// touched holds, for each path an event reported, the count after it,
	// so that the rescan does not apply over it a stat it made earlier
	// (rescanDir).
	applied uint64
	touched map[string]uint64
}

func newIndex(dir string, queues []string) *Index {
	ix := &Index{
		dir:         dir,
		queues:      queues,
		byPath:      make(map[string]*location, 2*len(queues)),
		ids:         make(map[string]uint32),
		otherPlaces: make(map[uint32][]otherPlace),
		bigSizes:    make(map[uint32]int64),
		suspects:    make(map[uint32]struct{}),
		tmp:         make(map[string]tmpFile),
		statErrs:    make(map[string]error),
		gen:         1,
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

func (ix *Index) loc(id uint16) *location { return ix.locs[id-1] }

// arena holds the names read by a full scan in large chunks, saving the
// per-string allocation. The chunks are freed with the index; names that
// events add later are ordinary strings.
//
// A name is either returned as a string (internZ) or placed (place) and
// found again through the chunks (names): a listing of a million files
// then holds no pointer, so its growth clears half as much memory and the
// garbage collector does not scan it.
type arena struct {
	chunks [][]byte // each made at its full length, never written but for its unused bytes
	used   int      // bytes used in the last chunk
}

// put copies b and a NUL into the arena and returns the chunk and offset.
func (a *arena) put(b []byte) (chunk, off uint32) {
	n := len(a.chunks)
	if n == 0 || a.used+len(b)+1 > len(a.chunks[n-1]) {
		a.chunks = append(a.chunks, make([]byte, max(1<<20, len(b)+1)))
		a.used = 0
		n++
	}
	c, o := a.chunks[n-1], a.used
	copy(c[o:], b)
	c[o+len(b)] = 0
	a.used += len(b) + 1
	return uint32(n - 1), uint32(o)
}

// internZ copies b into the arena and returns it as a string, with a NUL
// after its bytes so that the name can be passed to a system call as it is
// (see fstatatZ).
func (a *arena) internZ(b []byte) string {
	c, o := a.put(b)
	return unsafe.String(&a.chunks[c][o], len(b))
}

// place copies b into the arena for listed file f (see names).
func (a *arena) place(f *listedFile, b []byte) {
	f.chunk, f.off = a.put(b)
	f.nlen = uint16(len(b))
}

// names returns the arena's chunks as they are now: they name every file
// placed so far, and can be read while the arena goes on growing (a
// chunk's bytes never move, and the slice returned is not appended to).
func (a *arena) names() names { return names(a.chunks) }

// names finds the names an arena placed.
type names [][]byte

// of returns f's name, followed in the arena by a NUL (see fstatatZ).
func (n names) of(f *listedFile) string { return unsafe.String(&n[f.chunk][f.off], int(f.nlen)) }

// newID adds an entry for name and returns its id.
func (ix *Index) newID(name string) uint32 {
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

// admit reports whether a new unregistered name may be tracked, counting
// it as dropped if not.
func (ix *Index) admit(n int) bool {
	if ix.maxUnreg > 0 && n >= ix.maxUnreg {
		ix.dropped++
		return false
	}
	return true
}

// settle recomputes whether entry id is a suspect and forgets it once
// nothing of it is left on disk.
func (ix *Index) settle(id uint32) {
	e := &ix.ents[id]
	alive := e.regData&(registryPresent|dataPresent) != 0 || e.loc != 0
	if unreg := alive && e.regData&registryPresent == 0; unreg != (e.regData&countedUnregistered != 0) {
		if unreg {
			ix.unreg++
			e.regData |= countedUnregistered
		} else {
			ix.unreg--
			e.regData &^= countedUnregistered
		}
	}
	if !alive {
		delete(ix.ids, e.name)
		delete(ix.suspects, id)
		ix.ents[id] = entry{}
		ix.free = append(ix.free, id)
		return
	}
	if e.regData&registryDataMask == registryPresent|dataPresent && e.loc != 0 && e.placed&(placedIrregular|placedElsewhereToo) == 0 {
		delete(ix.suspects, id)
	} else {
		ix.suspects[id] = struct{}{}
	}
}

// sizeUnknown, in entry.size without dataSizeBig, marks a data file whose
// size a scan left for FillSizes (ScanOptions.SizesLater). Such a size
// counts in unsized, not in dataBytes.
const sizeUnknown = math.MaxUint32

// sizeKnown reports whether entry id's data size is known.
func (ix *Index) sizeKnown(id uint32) bool {
	e := &ix.ents[id]
	return e.size != sizeUnknown || e.regData&dataSizeBig != 0
}

// dataSize returns entry id's data size (0 while it is not known).
func (ix *Index) dataSize(id uint32) int64 {
	e := &ix.ents[id]
	if e.regData&dataSizeBig != 0 {
		return ix.bigSizes[id]
	}
	if e.size == sizeUnknown {
		return 0
	}
	return int64(e.size)
}

// setDataSize records entry id's data size.
func (ix *Index) setDataSize(id uint32, size int64) {
	e := &ix.ents[id]
	if !ix.sizeKnown(id) {
		ix.unsized--
	}
	if size >= math.MaxUint32 {
		e.size = math.MaxUint32
		e.regData |= dataSizeBig
		ix.bigSizes[id] = size
		return
	}
	if e.regData&dataSizeBig != 0 {
		delete(ix.bigSizes, id)
		e.regData &^= dataSizeBig
	}
	e.size = uint32(size)
}

// unsetDataSize records that entry id's data size is not known yet.
func (ix *Index) unsetDataSize(id uint32) {
	if !ix.sizeKnown(id) {
		return
	}
	ix.setDataSize(id, 0)
	ix.ents[id].size = sizeUnknown
	ix.unsized++
}

// fileState is what a stat says about one file.
type fileState struct {
	present    bool
	irregular  bool // not a regular file
	statFailed bool // present, but its stat failed
	mtime      int64
	size       int64
	sizeLater  bool // a data file's size is not known yet (ScanOptions.SizesLater)
}

// setReg applies the state of .registry/<name>. Like setData, setLoc and
// setTmp it copies name when it keeps it, so that callers may pass a part
// of a longer string (an event's path).
func (ix *Index) setReg(name string, st fileState) {
	id, ok := ix.ids[name]
	if !ok {
		if !st.present {
			return
		}
		id = ix.newID(strings.Clone(name))
	}
	e := &ix.ents[id]
	was := e.regData&registryPresent != 0
	if st.present {
		e.regData |= registryPresent
		if st.irregular {
			e.regData |= registryIrregular
		} else {
			e.regData &^= registryIrregular
		}
		if ix.rescanning {
			e.regData |= registrySeen
		}
		if !was {
			ix.regCount++
		}
	} else {
		e.regData &^= registryPresent | registryIrregular | registrySeen
		if was {
			ix.regCount--
		}
	}
	ix.settle(id)
}

// setData applies the state of .data/<name>.
func (ix *Index) setData(name string, st fileState) {
	id, ok := ix.ids[name]
	if !ok {
		if !st.present || !ix.admit(ix.unreg) {
			return
		}
		id = ix.newID(strings.Clone(name))
	}
	e := &ix.ents[id]
	if e.regData&dataPresent != 0 {
		ix.dataBytes -= ix.dataSize(id)
	}
	if st.present {
		e.regData |= dataPresent
		if st.irregular {
			e.regData |= dataIrregular
		} else {
			e.regData &^= dataIrregular
		}
		size := st.size
		if st.irregular || st.statFailed {
			size = 0
		}
		if st.sizeLater && !st.irregular && !st.statFailed {
			ix.unsetDataSize(id)
		} else {
			ix.setDataSize(id, size)
			ix.dataBytes += size
		}
		if ix.rescanning {
			e.regData |= dataSeen
		}
	} else {
		ix.setDataSize(id, 0)
		e.regData &^= dataPresent | dataIrregular | dataSeen
	}
	ix.settle(id)
}

func (ix *Index) placedFlags(st fileState) placeFlags {
	var f placeFlags
	if ix.rescanning {
		f |= placedSeen
	}
	if st.irregular {
		f |= placedIrregular
	}
	if st.statFailed {
		f |= placedStatFailed
	}
	return f
}

// setLoc applies the state of <queue>/<name> or <queue>/.checkout/<name>.
func (ix *Index) setLoc(l *location, name string, st fileState) {
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
		ix.dropItem(l, id, e.placed, e.mtime)
		if st.present {
			e.placed = e.placed&placedElsewhereToo | ix.placedFlags(st)
			e.mtime = st.mtime
			ix.addItem(l, id, e.placed, e.mtime)
		} else if xs := ix.otherPlaces[id]; len(xs) > 0 {
			// Promote another directory holding the name.
			x := xs[0]
			ix.removeOtherPlace(id, 0)
			e.loc, e.mtime = x.loc, x.mtime
			e.placed = x.placed
			if len(ix.otherPlaces[id]) > 0 {
				e.placed |= placedElsewhereToo
			}
		} else {
			e.loc, e.mtime, e.placed = 0, 0, 0
		}
	case e.placed&placedElsewhereToo != 0 && ix.otherPlaceIndex(id, l.id) >= 0:
		k := ix.otherPlaceIndex(id, l.id)
		x := &ix.otherPlaces[id][k]
		ix.dropItem(l, id, x.placed, x.mtime)
		if st.present {
			x.placed, x.mtime = ix.placedFlags(st), st.mtime
			ix.addItem(l, id, x.placed, x.mtime)
		} else {
			ix.removeOtherPlace(id, k)
			if len(ix.otherPlaces[id]) == 0 {
				e.placed &^= placedElsewhereToo
			}
		}
	case !st.present:
		// Not there and not known there: nothing to do.
	case e.loc == 0:
		e.loc, e.mtime = l.id, st.mtime
		e.placed = ix.placedFlags(st)
		ix.addItem(l, id, e.placed, e.mtime)
	default:
		x := otherPlace{loc: l.id, placed: ix.placedFlags(st), mtime: st.mtime}
		ix.otherPlaces[id] = append(ix.otherPlaces[id], x)
		e.placed |= placedElsewhereToo
		ix.addItem(l, id, x.placed, x.mtime)
	}
	ix.settle(id)
}

func (ix *Index) otherPlaceIndex(id uint32, loc uint16) int {
	for k, x := range ix.otherPlaces[id] {
		if x.loc == loc {
			return k
		}
	}
	return -1
}

func (ix *Index) removeOtherPlace(id uint32, k int) {
	xs := ix.otherPlaces[id]
	xs = append(xs[:k:k], xs[k+1:]...)
	if len(xs) == 0 {
		delete(ix.otherPlaces, id)
	} else {
		ix.otherPlaces[id] = xs
	}
}

func (ix *Index) addItem(l *location, id uint32, placed placeFlags, mtime int64) {
	if placed&placedIrregular == 0 {
		l.count++
	}
	l.dirty = true
	if placed&placedStatFailed == 0 {
		l.set.insert(item{mtime: mtime, id: id})
	}
}

func (ix *Index) dropItem(l *location, id uint32, placed placeFlags, mtime int64) {
	if placed&placedIrregular == 0 {
		l.count--
	}
	l.dirty = true
	if placed&placedStatFailed == 0 {
		l.set.remove(item{mtime: mtime, id: id})
	}
}

// setTmp applies the state of .tmp/<name>.
func (ix *Index) setTmp(name string, st fileState) {
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
	ix.tmp[name] = tmpFile{mtime: st.mtime, irregular: st.irregular, statFailed: st.statFailed, seen: ix.rescanning}
}

// locations returns every directory holding entry id, sorted: by queue
// name, each queue before its checkout directory.
func (ix *Index) locations(id uint32) []otherPlace {
	e := &ix.ents[id]
	if e.loc == 0 {
		return nil
	}
	out := []otherPlace{{loc: e.loc, placed: e.placed &^ (placedElsewhereToo | placedSeen), mtime: e.mtime}}
	if e.placed&placedElsewhereToo != 0 {
		out = append(out, ix.otherPlaces[id]...)
		// loc ids follow that order: sort by id.
		for i := 1; i < len(out); i++ {
			for j := i; j > 0 && out[j].loc < out[j-1].loc; j-- {
				out[j], out[j-1] = out[j-1], out[j]
			}
		}
	}
	return out
}

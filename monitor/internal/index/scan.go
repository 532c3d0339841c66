package index

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/spool-agent/spool-agent/internal/dirent"
	"github.com/spool-agent/spool-agent/spool"
	"golang.org/x/sys/unix"
)

// layout is what the spool root holds.
type layout struct {
	queues     []string // sorted
	unexpected []string // sorted
	candidates []string // directories with a queue's name but no .checkout: watched, as they may become queues
	over       int      // directories left out of the three lists above for the bound
}

// smallestNames keeps the max smallest names it is given (all of them when
// max <= 0), counting the others in over. It holds at most 2*max names
// whatever a flood of directories adds, so the layout's memory stays flat
// past the bound.
type smallestNames struct {
	names []string
	max   int
	over  *int
}

func (s *smallestNames) add(name string) {
	s.names = append(s.names, name)
	if s.max > 0 && len(s.names) >= 2*s.max {
		s.trim()
	}
}

// trim sorts the names and keeps the max smallest.
func (s *smallestNames) trim() {
	slices.Sort(s.names)
	if s.max > 0 && len(s.names) > s.max {
		*s.over += len(s.names) - s.max
		clear(s.names[s.max:])
		s.names = s.names[:s.max]
	}
}

// readLayout lists the spool root. Queues are the directories whose name is
// a valid queue name and that hold a .checkout directory (as spool.Open
// decides). Reported as unexpected: any other directory (hidden ones
// included, lost+found excepted) and any symlink. Regular files and other
// special files at the root are left alone: the reference ignores them,
// operators keep notes and lock files there, and tests use them as markers.
// Of each list it keeps the first max names (all when max <= 0), counting
// the others in layout.over.
//
// The error is fatal (the spool cannot be listed or is not a spool); the
// slice holds files at the root that could not be examined.
func readLayout(fd int, dir string, buf []byte, max int) (layout, []error, error) {
	var lay layout
	queues := smallestNames{max: max, over: &lay.over}
	unexpected := smallestNames{max: max, over: &lay.over}
	candidates := smallestNames{max: max, over: &lay.over}
	var seen [3]bool // .registry, .tmp, .data are directories
	var errs []error
	err := dirent.ReadAll(fd, buf, func(d dirent.Entry) {
		name := string(d.Name)
		typ := d.Type
		if !typeKnown(typ) {
			var st unix.Stat_t
			if err := fstatat(fd, d, &st); err != nil {
				if err != unix.ENOENT {
					errs = append(errs, pathErr("stat", dir+"/"+name, err))
				}
				return
			}
			typ = dtOfMode(uint32(st.Mode))
		}
		for i, sd := range spoolDirs {
			if name == sd {
				seen[i] = typ == dirent.Directory
				if typ != dirent.Directory {
					unexpected.add(name)
				}
				return
			}
		}
		if name == "lost+found" && typ == dirent.Directory {
			return
		}
		switch typ {
		case dirent.Directory:
			if spool.ValidateName(name) == nil {
				var st unix.Stat_t
				err := unix.Fstatat(fd, name+"/"+spool.CheckoutDir, &st, unix.AT_SYMLINK_NOFOLLOW)
				if err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
					queues.add(name)
					return
				}
				if err != nil && err != unix.ENOENT && err != unix.ENOTDIR {
					errs = append(errs, pathErr("stat", dir+"/"+name+"/"+spool.CheckoutDir, err))
					return
				}
				candidates.add(name)
			}
			unexpected.add(name)
		case dirent.Symlink:
			unexpected.add(name)
		}
	})
	queues.trim()
	unexpected.trim()
	candidates.trim()
	lay.queues, lay.unexpected, lay.candidates = queues.names, unexpected.names, candidates.names
	if err != nil {
		return lay, errs, fmt.Errorf("list spool %s: %w", dir, err)
	}
	for i, d := range spoolDirs {
		if !seen[i] {
			return lay, errs, fmt.Errorf("%s: %w: %s/ is missing or not a directory", dir, spool.ErrNotSpool, d)
		}
	}
	return lay, errs, nil
}

// spoolDirs are the spool's own directories at its root.
var spoolDirs = [...]string{spool.RegistryDir, spool.TmpDir, spool.DataDir}

func dtOfMode(mode uint32) dirent.Type {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return dirent.Regular
	case unix.S_IFDIR:
		return dirent.Directory
	case unix.S_IFLNK:
		return dirent.Symlink
	}
	return dirent.Type(unix.DT_FIFO) // any other special file
}

// ScanOptions configure Scan; the zero value scans without bounds.
type ScanOptions struct {
	// BeforeList, if set, is called with each directory's path before it
	// is listed: the monitor adds its watch there, so that no change
	// between the listing and the watch can go unseen.
	BeforeList func(path string)
	// OpenFault, a test seam, makes opening the directories it returns an
	// error for fail.
	OpenFault func(path string) error
	// Bounds (0: none): unregistered names tracked (in .data and the
	// queues, and apart in .tmp), directories at the root, watches. Past
	// one the index keeps what fits and says so (see Over).
	MaxUnregistered, MaxDirs, MaxWatches int
	// SizesLater leaves the data files' sizes to FillSizes: the scan
	// stats no data file (only the queue and checkout files, for their
	// mtimes), which is half its stats, and the index's DataBytes is
	// pending until FillSizes has run.
	SizesLater bool
}

// Scan reads the spool at dir (a clean path) into a fresh index. The
// index is usable even with an error: directories that could not be read
// are marked unreadable, and the checks that depend on them are skipped.
// A nil index means the spool itself is unreadable (or is not a spool:
// spool.ErrNotSpool).
func Scan(ctx context.Context, dir string, opt ScanOptions) (*Index, error) {
	s := scanner{dir: dir, ctx: ctx, beforeList: opt.BeforeList, openFault: opt.OpenFault,
		maxUnreg: opt.MaxUnregistered, maxDirs: opt.MaxDirs, maxWatches: opt.MaxWatches, sizesLater: opt.SizesLater}
	return s.scan()
}

// scanner reads a whole spool into a fresh index.
type scanner struct {
	dir                           string
	ctx                           context.Context
	beforeList                    func(path string)
	openFault                     func(path string) error
	maxUnreg, maxDirs, maxWatches int  // see ScanOptions
	sizesLater                    bool // see ScanOptions
	root                          int  // the spool root's descriptor during scan
}

func (s *scanner) canceled() error { return s.ctx.Err() }

const direntBuf = 256 << 10

// orphan is a name found in .data or a queue directory but not in the
// registry, collected during the parallel passes and added afterwards.
type orphan struct {
	name string
	loc  *location // nil: the data file
	st   fileState
}

// scan reads the spool (see Scan).
//
// Three passes run at once: the registry (listed, then turned into the
// index's map), .data (listed, then statted for sizes, or with SizesLater
// left to FillSizes) and .tmp with the queue and checkout directories
// (listed, then statted for mtimes). Stats go in inode order, which is
// cheaper than directory order on ext4 (GNU find does the same). Once the
// registry map is built, the other two passes look their names up in it
// (reading only; Index.find) and fill in their own fields of the entries:
// the data pass entry.regData and entry.size, the queue pass entry.loc,
// entry.mtime and entry.placed.
func (s *scanner) scan() (*Index, error) {
	buf := make([]byte, direntBuf)
	watch := func(path string) {
		if s.beforeList != nil {
			s.beforeList(path)
		}
	}
	watch(s.dir)
	root, err := openRoot(s.dir, s.openFault)
	if err != nil {
		return nil, err
	}
	defer unix.Close(root)
	s.root = root
	lay, errs, err := readLayout(root, s.dir, buf, s.maxDirs)
	if err != nil {
		return nil, errors.Join(append([]error{err}, errs...)...)
	}
	ix := newIndex(s.dir, lay.queues)
	ix.rootUnexpected = lay.unexpected
	ix.rootFailed = len(errs) > 0
	ix.maxUnreg, ix.maxDirs, ix.maxWatches = s.maxUnreg, s.maxDirs, s.maxWatches
	ix.dirsOver = lay.over
	// The root's watch is in place; the others need 3 + 2 per queue + 1
	// per candidate. Past the bound, none: the spool is polled.
	if s.maxWatches > 0 && 1+3+2*len(lay.queues)+len(lay.candidates) > s.maxWatches {
		ix.watchesOver = true
		watch = func(string) {}
	}
	for _, c := range lay.candidates {
		watch(s.dir + "/" + c)
	}
	for _, l := range ix.locs {
		if !l.checkout {
			watch(s.dir + "/" + l.queue)
		}
		watch(l.path)
	}
	for _, d := range []string{spool.RegistryDir, spool.TmpDir, spool.DataDir} {
		watch(s.dir + "/" + d)
	}

	regDone := make(chan struct{})
	var reg regProgress
	var regErrs, dataErrs, locErrs []error
	var dataOrphans []orphan
	var dataDropped int
	var pending []pendingSize
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		defer close(regDone)
		path := s.dir + "/" + spool.RegistryDir
		var files listing
		unpublished := 0
		ok := s.listDir(path, make([]byte, direntBuf), &ix.arena, statType, &regErrs, &files, func([]byte) (bool, uint32) {
			if unpublished++; unpublished == regProgressStep {
				reg.add(unpublished)
				unpublished = 0
			}
			return true, noID
		})
		reg.add(unpublished)
		ix.regFailed = !ok
		ix.addRegistry(&files, ix.arena.names())
	}()
	go func() {
		defer wg.Done()
		var ar arena
		path := s.dir + "/" + spool.DataDir
		var files listing
		bound := unregBound{ix: ix, regDone: regDone, ar: &ar, reg: &reg, max: s.maxUnreg, lists: []*listing{&files}}
		mode := statRegular
		if s.sizesLater {
			mode = statType
		}
		ok := s.listDir(path, make([]byte, direntBuf), &ar, mode, &dataErrs, &files, bound.keep)
		ix.dataFailed = !ok
		<-regDone
		dataOrphans, dataDropped, pending = s.joinData(ix, ar.names(), &files)
		dataDropped += bound.dropped
	}()
	var ar arena
	tmpPath := s.dir + "/" + spool.TmpDir
	var tmpFiles listing
	tmpDropped := 0
	ok := s.listDir(tmpPath, buf, &ar, statAll, &locErrs, &tmpFiles, func([]byte) (bool, uint32) {
		// .tmp names are never registered ones: the first maxUnreg are
		// kept, the others only counted.
		if s.maxUnreg > 0 && tmpFiles.n >= s.maxUnreg {
			tmpDropped++
			return false, noID
		}
		return true, noID
	})
	ix.tmpFailed = !ok
	tmpNames := ar.names()
	for i := range tmpFiles.n {
		if f := tmpFiles.at(i); f.present() && ix.admit(len(ix.tmp)) {
			ix.tmp[strings.Clone(tmpNames.of(f))] = tmpFile{mtime: f.val, irregular: f.irregular(), statFailed: f.statFailed()}
		}
	}
	ix.dropped += tmpDropped
	locFiles := make([]listing, len(ix.locs))
	locBound := unregBound{ix: ix, regDone: regDone, ar: &ar, reg: &reg, max: s.maxUnreg}
	// Each directory is statted while the next is listed.
	var locStats sync.WaitGroup
	locStatErrs := make([][]error, len(ix.locs))
	for i, l := range ix.locs {
		if s.canceled() != nil {
			break
		}
		locBound.lists = append(locBound.lists, &locFiles[i])
		ok := s.listDirThen(l.path, buf, &ar, statLoc, &locErrs, &locFiles[i], locBound.keep, &locStats, &locStatErrs[i])
		l.failed = !ok
	}
	locStats.Wait()
	for _, e := range locStatErrs {
		locErrs = append(locErrs, e...)
	}
	<-regDone
	locItems := make([][]item, len(ix.locs))
	locOrphans, locDropped := s.joinLocs(ix, ar.names(), locFiles, locItems)
	wg.Wait()
	if err := s.canceled(); err != nil {
		return nil, err
	}
	errs = append(errs, regErrs...)
	errs = append(errs, dataErrs...)
	errs = append(errs, locErrs...)

	ix.dropped += dataDropped + locDropped + locBound.dropped
	for _, o := range dataOrphans {
		ix.setData(o.name, o.st)
	}
	ix.pendingSizes = pending
	for i, l := range ix.locs {
		l.set.build(locItems[i])
	}
	for _, o := range locOrphans {
		ix.setLoc(o.loc, o.name, o.st)
	}
	for id := range ix.ents {
		ix.settle(uint32(id))
	}
	ix.scanErrs = errs
	return ix, errors.Join(errs...)
}

// addRegistry makes the entries of a fresh index from the registry's
// listing, in listing order (Index.find relies on it). A name listed twice
// (a file system that lists one twice, a FUSE one say) keeps one entry: the
// other is emptied for the scan's settle to free, found by comparing the
// counts rather than by a lookup per name.
func (ix *Index) addRegistry(files *listing, nm names) {
	ix.ids = make(map[string]uint32, files.n)
	ix.ents = make([]entry, 0, files.n)
	for i := range files.n {
		f := files.at(i)
		if !f.present() {
			continue
		}
		id := ix.newID(nm.of(f))
		e := &ix.ents[id]
		e.regData = registryPresent
		if f.irregular() {
			e.regData |= registryIrregular
		}
	}
	if len(ix.ids) != len(ix.ents) {
		for id := range ix.ents {
			if e := &ix.ents[id]; ix.ids[e.name] != uint32(id) {
				*e = entry{} // nothing of it left: the scan's settle frees it
			}
		}
	}
	ix.regCount = len(ix.ids)
}

// listing holds the files a pass listed in a directory. The first
// listingChunk files grow one slice as append does; past them the files go
// in chunks of that size that never move: growing a million-file listing
// by doubling copied it over and over (0.3 s of a cold cycle's CPU at 1M).
type listing struct {
	chunks [][]listedFile // all full (listingChunk files) but the last
	n      int
}

const (
	listingShift = 14
	listingChunk = 1 << listingShift
)

// add appends f.
func (l *listing) add(f listedFile) {
	k := len(l.chunks) - 1
	if k < 0 || len(l.chunks[k]) == listingChunk {
		var c []listedFile
		if k >= 0 {
			c = make([]listedFile, 0, listingChunk)
		}
		l.chunks = append(l.chunks, c)
		k++
	}
	l.chunks[k] = append(l.chunks[k], f)
	l.n++
}

// at returns the i-th file added.
func (l *listing) at(i int) *listedFile {
	return &l.chunks[i>>listingShift][i&(listingChunk-1)]
}

// listedFile is a file listed, and maybe statted, by a pass.
type listedFile struct {
	ino        uint64
	val        int64  // the mtime (statAll) or the size (statRegular)
	chunk, off uint32 // where the pass's arena placed the name (names.of)
	id         uint32 // the registered entry of that name, if the pass looked it up (noID: not looked up, or not registered)
	nlen       uint16 // the name's length
	typ        dirent.Type
	flags      listedFlags
}

// noID is no entry id; droppedID marks a listed name that unregBound
// dropped for the bound after it was kept.
const (
	noID      = ^uint32(0)
	droppedID = noID - 1
)

// lookup returns the id of f's registered entry: the one the pass found
// when it kept f, or else ix.find's (nm: the pass's names; next: find's
// place, kept along one listing).
func (f *listedFile) lookup(ix *Index, nm names, next *uint32) (uint32, bool) {
	if f.id < droppedID {
		*next = f.id + 1
		return f.id, true
	}
	return ix.find(nm.of(f), next)
}

// listedFlags say what a pass found of a listed file.
type listedFlags uint8

const (
	listedPresent listedFlags = 1 << iota
	listedIrregular
	listedStatFailed
	listedStatted // the file was statted: val holds its mtime or size
)

func (f *listedFile) present() bool    { return f.flags&listedPresent != 0 }
func (f *listedFile) irregular() bool  { return f.flags&listedIrregular != 0 }
func (f *listedFile) statFailed() bool { return f.flags&listedStatFailed != 0 }

// state returns the file's state; val is its mtime or its size.
func (f *listedFile) state() fileState {
	return fileState{present: f.present(), irregular: f.irregular(), statFailed: f.statFailed(), mtime: f.val, size: f.val}
}

// What listDir stats.
const (
	statType    = iota // only files whose type the directory entry does not give
	statRegular        // regular files (for their size) and files of unknown type
	statAll            // regular files (for their mtime) and files of unknown type
	statLoc            // statAll, and a file with more than one link is unexpected (queues, checkouts)
)

// listDir lists the directory at path (skipping .checkout) into *files,
// interning the names in ar, then stats them as mode says, in inode order.
// keep (nil: keep all) decides, before a name is interned, whether to
// keep it: past a bound a flood of names costs no memory; it returns the
// name's registered entry if it looked it up (noID otherwise). ok is false when
// the directory could not be listed (*files is then left empty); errs gets
// the errors.
func (s *scanner) listDir(path string, buf []byte, ar *arena, mode int, errs *[]error, out *listing, keep func(name []byte) (bool, uint32)) (ok bool) {
	return s.listDirThen(path, buf, ar, mode, errs, out, keep, nil, nil)
}

// listDirThen is listDir; with stats set, it returns once the directory is
// listed and stats it in a goroutine of stats, appending that phase's
// errors to *statErrs, so that the pass lists its next directory
// meanwhile. The files stay in *out; only their stat fields are written.
func (s *scanner) listDirThen(path string, buf []byte, ar *arena, mode int, errs *[]error, out *listing, keep func(name []byte) (bool, uint32), stats *sync.WaitGroup, statErrs *[]error) (ok bool) {
	fd, err := openBeneath(s.root, strings.TrimPrefix(path, s.dir+"/"), path, s.openFault)
	if err != nil {
		*errs = append(*errs, pathErr("open", path, err))
		return false
	}
	closeFD := true
	defer func() {
		if closeFD {
			unix.Close(fd)
		}
	}()
	err = dirent.ReadAll(fd, buf, func(d dirent.Entry) {
		if string(d.Name) == spool.CheckoutDir {
			return
		}
		id := noID
		if keep != nil {
			var ok bool
			if ok, id = keep(d.Name); !ok {
				return
			}
		}
		f := listedFile{ino: d.Ino, id: id, typ: d.Type}
		ar.place(&f, d.Name)
		out.add(f)
	})
	if err != nil {
		*errs = append(*errs, pathErr("list", path, err))
		*out = listing{}
		return false
	}
	files, nm := out, ar.names()
	if stats != nil {
		closeFD = false
		stats.Go(func() {
			defer unix.Close(fd)
			statFiles(fd, path, mode, nm, files, statErrs)
		})
		return true
	}
	statFiles(fd, path, mode, nm, files, errs)
	return true
}

// statFiles stats files, listed in the directory open as fd (at path) with
// their names in nm, as listDir's mode says, appending failures to errs.
func statFiles(fd int, path string, mode int, nm names, files *listing, errs *[]error) {
	// The order of the stats: by inode (sorting small records, not files).
	var order []byIno
	if mode != statType {
		order = make([]byIno, files.n)
		for i := range files.n {
			order[i] = byIno{files.at(i).ino, uint32(i)}
		}
		slices.SortFunc(order, func(a, b byIno) int { return cmp.Compare(a.ino, b.ino) })
	}
	if order == nil {
		var st unix.Stat_t
		for i := range files.n {
			statListed(fd, path, mode, nm, files.at(i), &st, errs)
		}
		return
	}
	// A large directory is statted by several goroutines, each a range of
	// the inode order: the stats are most of a cold scan's time, and the
	// other passes may be done before this one.
	workers := 1
	if len(order) >= parallelStatMin {
		workers = min(runtime.GOMAXPROCS(0), maxStatWorkers)
	}
	per := (len(order) + workers - 1) / workers
	part := func(w int) []byIno { return order[min(w*per, len(order)):min((w+1)*per, len(order))] }
	statPart := func(part []byIno, errs *[]error) {
		var st unix.Stat_t
		for _, o := range part {
			statListed(fd, path, mode, nm, files.at(int(o.i)), &st, errs)
		}
	}
	werrs := make([][]error, workers)
	var wg sync.WaitGroup
	for w := 1; w < workers; w++ {
		wg.Go(func() { statPart(part(w), &werrs[w]) })
	}
	statPart(part(0), &werrs[0])
	wg.Wait()
	for _, e := range werrs {
		*errs = append(*errs, e...)
	}
}

// byIno is a listed file's place in the stat order.
type byIno struct {
	ino uint64
	i   uint32
}

// Directories of at least parallelStatMin files are statted by up to
// maxStatWorkers goroutines (GOMAXPROCS permitting).
const (
	parallelStatMin = 8192
	maxStatWorkers  = 4
)

// statListed stats f in the directory open as fd (at path) as listDir's
// mode says, recording in f what it found and in errs a failure.
func statListed(fd int, path string, mode int, nm names, f *listedFile, st *unix.Stat_t, errs *[]error) {
	known, reg := typeKnown(f.typ), f.typ == dirent.Regular
	if known && (mode == statType || !reg) {
		f.flags = listedPresent
		if !reg {
			f.flags |= listedIrregular | listedStatFailed
		}
		return
	}
	if err := fstatatZ(fd, nm.of(f), st); err != nil {
		if err == unix.ENOENT {
			return // gone since listed
		}
		*errs = append(*errs, pathErr("stat", path+"/"+nm.of(f), err))
		f.flags = listedPresent | listedStatFailed
		if known && !reg {
			f.flags |= listedIrregular
		}
		return
	}
	f.flags = listedPresent | listedStatted
	if !isReg(uint32(st.Mode)) || mode == statLoc && sharedInode(st) {
		f.flags |= listedIrregular | listedStatFailed
		return
	}
	if mode == statAll || mode == statLoc {
		f.val = mtimeOf(st)
	} else {
		f.val = st.Size
	}
}

// unregBound keeps a listing pass (of .data, or of the queue and checkout
// directories) within the bound of unregistered names while it lists, so
// that a flood of them costs neither memory nor stats: a name is kept if
// it is registered, or if fewer than max unregistered ones are kept, and
// is otherwise only counted in dropped.
//
// Until the registry pass has built ix.ids (regDone) a pass cannot tell
// registered names from others, so it keeps every name while it holds
// fewer than max plus the number of names the registry pass has listed so
// far (reg): at most max of them can be unregistered ones, whatever a flood
// adds, and the passes list and stat alongside the registry instead of
// waiting for it. Past that it waits for the registry to list more, or to
// be known, and then prunes what it holds.
type unregBound struct {
	ix      *Index
	regDone <-chan struct{}
	ar      *arena       // where the pass places the names of its lists
	reg     *regProgress // nil: the registry's progress is not known (only regDone)
	max     int          // 0: no bound
	lists   []*listing   // what the pass holds, in listing order
	ready   bool         // regDone is closed: ix.ids may be read
	held    int          // names kept before ready
	unreg   int          // unregistered names kept
	dropped int          // unregistered names past the bound
	next    uint32       // the entry after the last one found: where admit looks first
}

// keep reports whether the pass keeps the listed name, and the name's
// registered entry if it looked it up (noID otherwise).
func (b *unregBound) keep(name []byte) (bool, uint32) {
	if b.max <= 0 {
		return true, noID
	}
	for !b.ready {
		select {
		case <-b.regDone:
			b.prune()
			continue
		default:
		}
		listed, more := b.reg.load()
		if b.held < b.max+listed {
			b.held++
			return true, noID
		}
		select {
		case <-b.regDone:
		case <-more:
		}
	}
	return b.admit(string(name))
}

// prune, once the registry is known, marks in the lists the unregistered
// names past the bound as dropped, and notes the registered ones' entries.
// It writes only their id: the lists of directories listed earlier may be
// being statted (listDirThen), which writes only the stat fields.
func (b *unregBound) prune() {
	b.ready = true
	nm := b.ar.names()
	for _, l := range b.lists {
		for i := range l.n {
			f := l.at(i)
			if ok, id := b.admit(nm.of(f)); ok {
				f.id = id
			} else {
				f.id = droppedID
			}
		}
	}
}

// admit counts name and reports whether it is kept, with its registered
// entry (noID: not registered).
func (b *unregBound) admit(name string) (bool, uint32) {
	if id, ok := b.ix.find(name, &b.next); ok {
		return true, id
	}
	if b.unreg < b.max {
		b.unreg++
		return true, noID
	}
	b.dropped++
	return false, noID
}

// find returns the registered entry of name. It tries the few entries
// from *next on before the map, and sets *next after the entry found: ext4
// lists a hashed directory in the order of its names' hashes, with one seed
// for the whole file system, and a fresh index numbers the registry's
// entries in its listing order, so .data lists the same names in the same
// order and a queue lists a subset of them in that order. A comparison that
// fails stops at the first byte that differs; the map hashes the whole name
// and reads a random place in a large table. A match is always right (a
// live entry's name is its key in ix.ids, a freed one's is empty, and an
// empty name goes to the map); it is likely only in a fresh index,
// numbered in listing order.
func (ix *Index) find(name string, next *uint32) (uint32, bool) {
	// int64: on 32-bit platforms int cannot hold every uint32 (*next
	// may be noID, which FillSizes passes, or beyond the entries).
	start := int64(*next)
	for id := start; name != "" && id < start+findWindow && id < int64(len(ix.ents)); id++ {
		if ix.ents[id].name == name {
			*next = uint32(id) + 1
			return uint32(id), true
		}
	}
	id, ok := ix.ids[name]
	if ok {
		*next = id + 1
	}
	return id, ok
}

// findWindow is how many entries after the last one found find compares
// with a name before it looks the name up.
const findWindow = 4

// regProgress publishes how many names the registry pass has listed, for
// unregBound. Its zero value is ready; a nil one reports none.
type regProgress struct {
	mu     sync.Mutex
	listed int
	more   chan struct{} // closed (and replaced) when listed grows
}

// regProgressStep is how many names the registry pass lists between two
// publications: waking the other passes for every name would cost more
// than it gains.
const regProgressStep = 4096

// add publishes that n more names were listed.
func (p *regProgress) add(n int) {
	p.mu.Lock()
	p.listed += n
	if p.more != nil {
		close(p.more)
		p.more = nil
	}
	p.mu.Unlock()
}

// load returns the names listed so far and a channel closed when more are.
func (p *regProgress) load() (listed int, more <-chan struct{}) {
	if p == nil {
		return 0, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.more == nil {
		p.more = make(chan struct{})
	}
	return p.listed, p.more
}

// joinData records the .data files in the entries, returning those whose
// name is not registered (and the rare sizes too big for entry.size), and,
// with SizesLater, the files left unsized.
//
// Past the bound of unregistered names it collects no more of them, but
// counts them in dropped.
func (s *scanner) joinData(ix *Index, nm names, files *listing) (orphans []orphan, dropped int, pending []pendingSize) {
	unreg := 0
	var total int64
	unsized := 0
	var next uint32
	for i := range files.n {
		f := files.at(i)
		if !f.present() || f.id == droppedID {
			continue
		}
		size := f.val
		if f.irregular() || f.statFailed() {
			size = 0
		}
		later := s.sizesLater && f.flags&(listedIrregular|listedStatFailed|listedStatted) == 0
		id, ok := f.lookup(ix, nm, &next)
		if !ok && s.maxUnreg > 0 && unreg >= s.maxUnreg {
			dropped++ // over the bound: not even collected
			continue
		}
		if !ok {
			unreg++
		}
		if later {
			p := pendingSize{name: nm.of(f), ino: f.ino, id: noID}
			if ok {
				p.id = id
			}
			pending = append(pending, p)
		}
		if !ok || size >= 1<<32-1 {
			st := f.state()
			st.size, st.sizeLater = size, later
			orphans = append(orphans, orphan{name: nm.of(f), st: st})
			continue
		}
		e := &ix.ents[id]
		e.regData |= dataPresent
		if f.irregular() {
			e.regData |= dataIrregular
		}
		if later {
			e.size = sizeUnknown
			unsized++
			continue
		}
		e.size = uint32(size)
		total += size
	}
	ix.dataBytes += total
	ix.unsized += unsized
	return orphans, dropped, pending
}

// joinLocs records the queue and checkout files in the entries and collects
// each directory's items, returning the files whose name is not registered
// or is already in another directory.
//
// Past the bound of unregistered names it collects no more of them, but
// counts them in dropped.
func (s *scanner) joinLocs(ix *Index, nm names, locFiles []listing, locItems [][]item) (orphans []orphan, dropped int) {
	unreg := 0
	for i := range locFiles {
		files, l := &locFiles[i], ix.locs[i]
		items := make([]item, 0, files.n)
		var next uint32
		for k := range files.n {
			f := files.at(k)
			if !f.present() || f.id == droppedID {
				continue
			}
			id, ok := f.lookup(ix, nm, &next)
			if !ok && s.maxUnreg > 0 && unreg >= s.maxUnreg {
				dropped++
				continue
			}
			if !ok {
				unreg++
			}
			if !ok || ix.ents[id].loc != 0 {
				// Unregistered, or a duplicate: added afterwards through the
				// general path.
				orphans = append(orphans, orphan{name: nm.of(f), loc: l, st: f.state()})
				continue
			}
			e := &ix.ents[id]
			st := f.state()
			e.loc, e.mtime, e.placed = l.id, st.mtime, ix.placedFlags(st)
			if !st.irregular {
				l.count++
			}
			if !st.statFailed {
				items = append(items, item{mtime: st.mtime, id: id})
			}
		}
		locItems[i] = items
	}
	return orphans, dropped
}

// irregularFile is the state of a directory, symlink or other non-regular file
// where a file belongs. Its mtime is not tracked (a directory's changes with
// its contents, which raise no event in the watched directory), so it takes
// no part in the age checks and statistics, and problems about it have a
// zero ModTime.
var irregularFile = fileState{present: true, irregular: true, statFailed: true}

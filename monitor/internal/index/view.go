package index

import (
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// Place is a queue directory, or with Checkout its .checkout directory.
type Place struct {
	Queue    string
	Checkout bool
}

// File is a name's file in one place.
type File struct {
	Place      Place
	MTime      int64 // nanoseconds since the epoch; unknown when StatFailed or Irregular
	Irregular  bool  // not a regular file (or a file with more than one link)
	StatFailed bool  // its mtime is unknown
}

// TmpFile is a file in .tmp.
type TmpFile struct {
	MTime      int64
	Irregular  bool
	StatFailed bool
}

// Suspect is a name that is not exactly a registry file, a data file and
// one regular file in one place: where every problem but too_old is.
type Suspect struct {
	Name              string
	Registered        bool // .registry/<name> exists
	RegistryIrregular bool
	HasData           bool // .data/<name> exists
	DataIrregular     bool
	Files             []File // the places holding it, sorted by queue, each queue before its checkout directory
}

// Unreadable says which parts of the spool the last scan could not read.
type Unreadable struct {
	Registry, Data, Tmp bool
	// Root: an entry at the root could not be examined (it may be a
	// queue); AnyPlace: that, or a queue or checkout directory could not
	// be listed.
	Root, AnyPlace bool
}

// Over says what went past the bounds of ScanOptions.
type Over struct {
	Unregistered bool // names with no registry file were left out
	Dirs         bool // directories at the root were left out
	Watches      bool // the spool needs more watches than MaxWatches
	// The bounds, for a description.
	MaxUnregistered, MaxDirs, MaxWatches int
}

// Any reports whether anything went past a bound: a change feed cannot
// keep such an index current.
func (o Over) Any() bool { return o.Unregistered || o.Dirs || o.Watches }

// Over returns what went past the bounds.
func (ix *Index) Over() Over {
	return Over{Unregistered: ix.dropped > 0, Dirs: ix.dirsOver > 0, Watches: ix.watchesOver,
		MaxUnregistered: ix.maxUnreg, MaxDirs: ix.maxDirs, MaxWatches: ix.maxWatches}
}

// Unreadable returns the parts of the spool the scan could not read.
func (ix *Index) Unreadable() Unreadable {
	u := Unreadable{Registry: ix.regFailed, Data: ix.dataFailed, Tmp: ix.tmpFailed, Root: ix.rootFailed, AnyPlace: ix.rootFailed}
	for _, l := range ix.locs {
		u.AnyPlace = u.AnyPlace || l.failed
	}
	return u
}

// Registered reports whether .registry/<name> exists.
func (ix *Index) Registered(name string) bool {
	id, ok := ix.ids[name]
	return ok && ix.ents[id].regData&registryPresent != 0
}

// EachTmp calls f for each file in .tmp, in no order.
func (ix *Index) EachTmp(f func(name string, t TmpFile)) {
	for name, t := range ix.tmp {
		f(name, TmpFile{MTime: t.mtime, Irregular: t.irregular, StatFailed: t.statFailed})
	}
}

// EachSuspect calls f for each suspect name, in no order.
func (ix *Index) EachSuspect(f func(Suspect)) {
	for id := range ix.suspects {
		e := &ix.ents[id]
		s := Suspect{
			Name:              e.name,
			Registered:        e.regData&registryPresent != 0,
			RegistryIrregular: e.regData&registryIrregular != 0,
			HasData:           e.regData&dataPresent != 0,
			DataIrregular:     e.regData&dataIrregular != 0,
		}
		for _, x := range ix.locations(id) {
			s.Files = append(s.Files, File{Place: ix.loc(x.loc).place(), MTime: x.mtime,
				Irregular: x.placed&placedIrregular != 0, StatFailed: x.placed&placedStatFailed != 0})
		}
		f(s)
	}
}

// Places returns the queue and checkout directories: for each queue in
// name order, the queue then its checkout directory.
func (ix *Index) Places() []Place {
	out := make([]Place, len(ix.locs))
	for i, l := range ix.locs {
		out[i] = l.place()
	}
	return out
}

// Older calls f, oldest first, for each file of Places()[i] whose mtime is
// before cutoff (nanoseconds), until f returns false.
func (ix *Index) Older(i int, cutoff int64, f func(name string, mtime int64) bool) {
	ix.locs[i].set.ascend(func(it item) bool {
		if it.mtime >= cutoff {
			return false
		}
		return f(ix.ents[it.id].name, it.mtime)
	})
}

// RootUnexpected returns the names at the spool root that are neither
// queues nor the spool's directories (sorted; do not modify).
func (ix *Index) RootUnexpected() []string { return ix.rootUnexpected }

// StatErrors returns the stats that failed since the scan (after events),
// sorted by path.
func (ix *Index) StatErrors() []error {
	paths := make([]string, 0, len(ix.statErrs))
	for p := range ix.statErrs {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	errs := make([]error, len(paths))
	for i, p := range paths {
		errs[i] = ix.statErrs[p]
	}
	return errs
}

// Tracked returns how many names the index holds, how many of them are
// not registered, and how many .tmp files it holds.
func (ix *Index) Tracked() (names, unregistered, tmpFiles int) {
	return len(ix.ids), ix.unreg, len(ix.tmp)
}

// QueueState is one queue's part of a Published.
type QueueState struct {
	Queue                          string
	Entries, CheckedOut            int
	Oldest, OldestCheckedOut       int64 // mtimes, when HasOldest, HasOldestCheckedOut
	HasOldest, HasOldestCheckedOut bool
	Ages                           Ages // the waiting entries' mtimes
}

// Published is the index's statistics at a publication.
type Published struct {
	RegistryEntries int
	TmpFiles        int
	DataBytes       int64
	// DataBytesPending: some data files' sizes are not known yet
	// (ScanOptions.SizesLater), so DataBytes counts only the others.
	DataBytesPending bool
	Queues           []QueueState // sorted by queue
}

// Publish returns the index's statistics. The Ages it returns share the
// index's blocks, which the index copies before it changes them from then
// on.
func (ix *Index) Publish() Published {
	p := Published{RegistryEntries: ix.regCount, TmpFiles: len(ix.tmp), DataBytes: ix.dataBytes,
		DataBytesPending: ix.unsized > 0, Queues: make([]QueueState, len(ix.queues))}
	for i, q := range ix.queues {
		wl, cl := ix.locs[2*i], ix.locs[2*i+1]
		qs := QueueState{Queue: q, Entries: wl.count, CheckedOut: cl.count}
		if it, ok := wl.set.first(); ok {
			qs.Oldest, qs.HasOldest = it.mtime, true
		}
		if it, ok := cl.set.first(); ok {
			qs.OldestCheckedOut, qs.HasOldestCheckedOut = it.mtime, true
		}
		if wl.dirty {
			wl.published = wl.set.freeze()
			wl.dirty = false
		}
		qs.Ages = wl.published
		p.Queues[i] = qs
	}
	// The published blocks are now shared: copy before changing them.
	ix.gen++
	return p
}

// Succeed makes ix, a fresh index, follow prev in publications.
func (ix *Index) Succeed(prev *Index) {
	if prev != nil {
		ix.gen = prev.gen + 1
	}
}

// Statter stats registry and data files for a problem's ModTime, relative
// to descriptors opened beneath the spool root (each once, at its first
// use): never through a symlink swapped in for a spool directory.
type Statter struct {
	dir  string
	root int // -1 until opened
	fds  map[string]int
	errs map[string]error
}

// NewStatter returns a Statter of the spool at dir; Close it.
func NewStatter(dir string) *Statter {
	return &Statter{dir: dir, root: -1, fds: map[string]int{}, errs: map[string]error{}}
}

// MTime returns the mtime of sub/name (sub: spool.RegistryDir or
// spool.DataDir). ok is false when the file has gone (the problem is then
// skipped, as the reference skips files that vanish between listing and
// stat). A file that is not a regular one (irregular) gives the zero time,
// as everywhere: its mtime is not tracked. A failure is an *fs.PathError.
func (s *Statter) MTime(sub, name string, irregular bool) (t time.Time, ok bool, err error) {
	var st unix.Stat_t
	path := s.dir + "/" + sub + "/" + name
	err = s.lstat(sub, name, &st)
	if err == unix.ENOENT {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, pathErr("stat", path, err)
	}
	if irregular || !isReg(uint32(st.Mode)) {
		return time.Time{}, true, nil
	}
	return time.Unix(0, mtimeOf(&st)), true, nil
}

// lstat stats sub/name without following a symlink.
func (s *Statter) lstat(sub, name string, st *unix.Stat_t) error {
	fd, ok := s.fds[sub]
	if !ok {
		if err, failed := s.errs[sub]; failed {
			return err
		}
		var err error
		if s.root < 0 {
			if s.root, err = openDir(s.dir, true, nil); err != nil {
				s.root = -1
				s.errs[sub] = err
				return err
			}
		}
		if fd, err = openBeneath(s.root, sub, s.dir+"/"+sub, nil); err != nil {
			s.errs[sub] = err
			return err
		}
		s.fds[sub] = fd
	}
	return lstatAt(fd, name, st)
}

// Close releases the Statter's descriptors.
func (s *Statter) Close() {
	for _, fd := range s.fds {
		unix.Close(fd)
	}
	if s.root >= 0 {
		unix.Close(s.root)
	}
}

package monitor

import (
	"cmp"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spool-agent/spool-agent/spool"
	"golang.org/x/sys/unix"
)

// Default limits, as in the reference.
const (
	DefaultMaxCheckedOutAge = 10 * time.Minute
	DefaultMaxTmpFileAge    = 10 * time.Minute
)

// DefaultLimits returns the reference's default limits: checked-out entries
// and temporary files may be 10 minutes old, queues have no limit.
func DefaultLimits() Limits {
	return Limits{MaxCheckedOutAge: DefaultMaxCheckedOutAge, MaxTmpFileAge: DefaultMaxTmpFileAge}
}

// Check runs one full, stateless check of the spool at dir (the reference's
// run_once) with limits taken as given (a zero limit means that any file
// older than now is too old; see DefaultLimits). The problems are sorted
// (see SortProblems). An unreadable directory or file makes Check return an
// error naming it, together with the problems found elsewhere; checks that
// the unreadable part would decide are skipped rather than guessed (an
// unreadable .registry hides the orphaned checks of the other directories,
// an unreadable queue directory the orphaned-registry check). A directory
// that is missing or not a spool gives no problems and an error wrapping
// ErrNotSpool or the system error.
func Check(dir string, limits Limits, now time.Time) ([]Problem, error) {
	return check(dir, limits, now, nil)
}

// check is Check with the openDir test seam.
func check(dir string, limits Limits, now time.Time, openFault func(string) error) ([]Problem, error) {
	sc := scanner{dir: filepath.Clean(dir), openFault: openFault}
	ix, err := sc.scan()
	if ix == nil {
		return nil, err
	}
	ps, perr := ix.problems(now, limits)
	return ps, errors.Join(err, perr)
}

// registered reports whether .registry/<name> exists.
func (ix *index) registered(name string) bool {
	id, ok := ix.ids[name]
	return ok && ix.ents[id].rd&fRegPresent != 0
}

// mtimeOf stats a registry or data file for a problem's ModTime. ok is false
// when the file has gone since it was indexed (the problem is then skipped,
// as the reference skips files that vanish between listing and stat).
// A file that is not a regular one (bad) gives the zero time, as
// everywhere: its mtime is not tracked.
func mtimeOf(fs *statter, sub, name string, bad bool) (t time.Time, ok bool, err error) {
	var st unix.Stat_t
	path := fs.dir + "/" + sub + "/" + name
	err = fs.lstat(sub, name, &st)
	if err == unix.ENOENT {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, pathErr("stat", path, err)
	}
	if bad || !isReg(st.Mode) {
		return time.Time{}, true, nil
	}
	return time.Unix(0, stNs(&st)), true, nil
}

// statter stats files of the spool's directories relative to descriptors
// opened beneath the spool root (openBeneath), each opened once, at its
// first use: never through a symlink swapped in for a spool directory.
type statter struct {
	dir  string
	root int // -1 until opened
	fds  map[string]int
	errs map[string]error
}

func newStatter(dir string) *statter {
	return &statter{dir: dir, root: -1, fds: map[string]int{}, errs: map[string]error{}}
}

// lstat stats sub/name without following a symlink.
func (s *statter) lstat(sub, name string, st *unix.Stat_t) error {
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
	for {
		err := unix.Fstatat(fd, name, st, unix.AT_SYMLINK_NOFOLLOW)
		if err != unix.EINTR {
			return err
		}
	}
}

func (s *statter) close() {
	for _, fd := range s.fds {
		unix.Close(fd)
	}
	if s.root >= 0 {
		unix.Close(s.root)
	}
}

func nsTime(ns int64, known bool) time.Time {
	if !known {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// problems returns the index's problems at now, sorted. It costs time in
// proportion to the problems and the suspect entries, not to the spool.
func (ix *index) problems(now time.Time, lim Limits) ([]Problem, error) {
	var ps []Problem
	var errs []error
	fs := newStatter(ix.dir)
	defer fs.close()
	nowNs := now.UnixNano()
	regDir := Dir{Kind: DirRegistry}
	tmpDir := Dir{Kind: DirTmp}
	dataDir := Dir{Kind: DirData}
	// A root entry that could not be examined may be a queue: its files
	// are unknown, as those of a directory that could not be listed.
	anyLocFailed := ix.rootFailed
	for _, l := range ix.locs {
		anyLocFailed = anyLocFailed || l.failed
	}

	for name, t := range ix.tmp {
		mt := nsTime(t.ns, !t.noStat)
		if !t.noStat && t.ns < nowNs-int64(lim.MaxTmpFileAge) { // now - mtime > limit, without overflow
			ps = append(ps, Problem{Kind: KindTooOld, Dir: tmpDir, Name: name, ModTime: mt})
		}
		if !ix.regFailed && !ix.registered(name) {
			ps = append(ps, Problem{Kind: KindOrphaned, Dir: tmpDir, Name: name, ModTime: mt})
		}
		if t.bad {
			ps = append(ps, Problem{Kind: KindUnexpected, Dir: tmpDir, Name: name})
		}
	}

	for id := range ix.suspects {
		e := &ix.ents[id]
		reg := e.rd&fRegPresent != 0
		data := e.rd&fDataPresent != 0
		if data && !reg && !ix.regFailed {
			mt, ok, err := mtimeOf(fs, spool.DataDir, e.name, e.rd&fDataBad != 0)
			if err != nil {
				errs = append(errs, err)
			}
			if ok {
				ps = append(ps, Problem{Kind: KindOrphaned, Dir: dataDir, Name: e.name, ModTime: mt})
			}
		}
		if e.rd&fDataBad != 0 {
			ps = append(ps, Problem{Kind: KindUnexpected, Dir: dataDir, Name: e.name})
		}
		if e.rd&fRegBad != 0 {
			ps = append(ps, Problem{Kind: KindUnexpected, Dir: regDir, Name: e.name})
		}
		locs := ix.locations(uint32(id))
		for _, x := range locs {
			d := ix.loc(x.loc).dir()
			mt := nsTime(x.ns, x.lf&lNoStat == 0)
			if !reg && !ix.regFailed {
				ps = append(ps, Problem{Kind: KindOrphaned, Dir: d, Name: e.name, ModTime: mt})
			}
			if !data && !ix.dataFailed {
				ps = append(ps, Problem{Kind: KindMissingData, Dir: d, Name: e.name, ModTime: mt})
			}
			if x.lf&lBad != 0 {
				ps = append(ps, Problem{Kind: KindUnexpected, Dir: d, Name: e.name})
			}
		}
		if reg && (len(locs) >= 2 || len(locs) == 0 && !anyLocFailed) {
			mt, ok, err := mtimeOf(fs, spool.RegistryDir, e.name, e.rd&fRegBad != 0)
			if err != nil {
				errs = append(errs, err)
			}
			if ok {
				p := Problem{Kind: KindOrphaned, Dir: regDir, Name: e.name, ModTime: mt}
				if len(locs) >= 2 {
					p.Kind = KindDuplicated
					for _, x := range locs {
						p.Dirs = append(p.Dirs, ix.loc(x.loc).dir())
					}
				}
				ps = append(ps, p)
			}
		}
	}

	for _, l := range ix.locs {
		limit := lim.MaxCheckedOutAge
		if !l.checkout {
			var ok bool
			if limit, ok = lim.MaxQueueAge[l.queue]; !ok {
				continue
			}
		}
		cutoff := nowNs - int64(limit)
		d := l.dir()
		l.set.ascend(func(it item) bool {
			if it.ns >= cutoff {
				return false
			}
			ps = append(ps, Problem{Kind: KindTooOld, Dir: d, Name: ix.ents[it.id].name, ModTime: time.Unix(0, it.ns)})
			return true
		})
	}

	for _, name := range ix.rootUnexpected {
		ps = append(ps, Problem{Kind: KindUnexpected, Dir: Dir{Kind: DirRoot}, Name: name})
	}
	if ix.dropped > 0 {
		ps = append(ps, Problem{Kind: KindLimit, Dir: Dir{Kind: DirUnregistered}, Name: fmt.Sprintf("more than %d files with no registry entry in .tmp, or in .data and the queues", ix.maxUnreg)})
	}
	if ix.dirsOver > 0 {
		ps = append(ps, Problem{Kind: KindLimit, Dir: Dir{Kind: DirQueues}, Name: fmt.Sprintf("more than %d queues or other directories at the spool root", ix.maxDirs)})
	}
	if ix.watchesOver {
		ps = append(ps, Problem{Kind: KindLimit, Dir: Dir{Kind: DirWatches}, Name: fmt.Sprintf("more than %d inotify watches needed", ix.maxWatches)})
	}
	SortProblems(ps)
	return ps, errors.Join(errs...)
}

var kindRank = func() map[Kind]int {
	m := map[Kind]int{}
	for i, k := range append(Kinds[:len(Kinds):len(Kinds)], KindLimit) {
		m[k] = i
	}
	return m
}()

var dirRank = func() map[DirKind]int {
	m := map[DirKind]int{}
	for i, k := range DirKinds {
		m[k] = i
	}
	return m
}()

// CompareDirs orders directories as the reference does: .registry, .tmp,
// .data, then every queue directory by queue name, then every checkout
// directory by queue name, then the spool root.
func CompareDirs(a, b Dir) int {
	if c := cmp.Compare(dirRank[a.Kind], dirRank[b.Kind]); c != 0 {
		return c
	}
	return strings.Compare(a.Queue, b.Queue)
}

// CompareProblems orders problems by kind (in the order of Kinds), then
// directory (CompareDirs), name (bytewise), mtime, and for duplicated
// problems the list of directories.
func CompareProblems(a, b Problem) int {
	if c := cmp.Compare(kindRank[a.Kind], kindRank[b.Kind]); c != 0 {
		return c
	}
	if c := CompareDirs(a.Dir, b.Dir); c != 0 {
		return c
	}
	if c := strings.Compare(a.Name, b.Name); c != 0 {
		return c
	}
	if c := a.ModTime.Compare(b.ModTime); c != 0 {
		return c
	}
	return slices.CompareFunc(a.Dirs, b.Dirs, CompareDirs)
}

// SortProblems sorts ps with CompareProblems.
func SortProblems(ps []Problem) { slices.SortFunc(ps, CompareProblems) }

// Key returns a string that identifies the problem: two problems have the
// same key exactly when they are the same problem (same kind, directory,
// name, mtime and, for duplicated problems, directories).
func (p Problem) Key() string {
	var b strings.Builder
	b.WriteString(string(p.Kind))
	b.WriteByte(0)
	writeDir(&b, p.Dir)
	b.WriteString(p.Name)
	b.WriteByte(0)
	if !p.ModTime.IsZero() {
		b.WriteString(strconv.FormatInt(p.ModTime.UnixNano(), 10))
	}
	for _, d := range p.Dirs {
		b.WriteByte(0)
		writeDir(&b, d)
	}
	return b.String()
}

func writeDir(b *strings.Builder, d Dir) {
	b.WriteString(string(d.Kind))
	b.WriteByte('/')
	b.WriteString(d.Queue)
	b.WriteByte(0)
}

// Path returns the problem's path relative to the spool directory, such as
// ".registry/foo", "queue1/.checkout/foo" or, for the spool root, "foo".
func (p Problem) Path() string { return p.Dir.Path(p.Name) }

// Path returns name's path in d relative to the spool directory.
func (d Dir) Path(name string) string {
	switch d.Kind {
	case DirRegistry:
		return spool.RegistryDir + "/" + name
	case DirTmp:
		return spool.TmpDir + "/" + name
	case DirData:
		return spool.DataDir + "/" + name
	case DirQueue:
		return d.Queue + "/" + name
	case DirCheckout:
		return d.Queue + "/" + spool.CheckoutDir + "/" + name
	}
	return name
}

// String describes the problem in one line, for logs and the fsck command.
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(string(p.Kind))
	b.WriteByte(' ')
	b.WriteString(p.Path())
	if p.Kind == KindDuplicated {
		b.WriteString(" in")
		for _, d := range p.Dirs {
			b.WriteByte(' ')
			b.WriteString(d.Path(""))
		}
	}
	if !p.ModTime.IsZero() {
		b.WriteString(" mtime ")
		b.WriteString(p.ModTime.UTC().Format(time.RFC3339Nano))
	}
	return b.String()
}

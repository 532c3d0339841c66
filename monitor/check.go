package monitor

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spool-agent/spool-agent/monitor/internal/index"
	"github.com/spool-agent/spool-agent/spool"
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
	ix, err := index.Scan(context.Background(), filepath.Clean(dir), index.ScanOptions{OpenFault: openFault})
	if ix == nil {
		return nil, err
	}
	ps, perr := problems(ix, filepath.Clean(dir), now, limits, 0)
	return ps, errors.Join(err, perr)
}

// dirOf returns a place as a Dir.
func dirOf(p index.Place) Dir {
	if p.Checkout {
		return Dir{Kind: DirCheckout, Queue: p.Queue}
	}
	return Dir{Kind: DirQueue, Queue: p.Queue}
}

func nsTime(ns int64, known bool) time.Time {
	if !known {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// problems returns the problems of ix, the index of the spool at dir, at
// now, sorted. It costs time in proportion to the problems and the suspect
// entries, not to the spool. hint is how many problems to expect (the last
// cycle's): under a flood of problems, growing the slice by doubling would
// allocate twice what it keeps, every cycle.
func problems(ix *index.Index, dir string, now time.Time, lim Limits, hint int) ([]Problem, error) {
	var ps []Problem
	if hint > 0 {
		ps = make([]Problem, 0, hint)
	}
	var errs []error
	fs := index.NewStatter(dir)
	defer fs.Close()
	nowNs := now.UnixNano()
	regDir := Dir{Kind: DirRegistry}
	tmpDir := Dir{Kind: DirTmp}
	dataDir := Dir{Kind: DirData}
	// A root entry that could not be examined may be a queue: its files
	// are unknown, as those of a directory that could not be listed.
	unread := ix.Unreadable()

	ix.EachTmp(func(name string, t index.TmpFile) {
		mt := nsTime(t.MTime, !t.StatFailed)
		if !t.StatFailed && t.MTime < nowNs-int64(lim.MaxTmpFileAge) { // now - mtime > limit, without overflow
			ps = append(ps, Problem{Kind: KindTooOld, Dir: tmpDir, Name: name, ModTime: mt})
		}
		if !unread.Registry && !ix.Registered(name) {
			ps = append(ps, Problem{Kind: KindOrphaned, Dir: tmpDir, Name: name, ModTime: mt})
		}
		if t.Irregular {
			ps = append(ps, Problem{Kind: KindUnexpected, Dir: tmpDir, Name: name})
		}
	})

	ix.EachSuspect(func(e index.Suspect) {
		reg, data := e.Registered, e.HasData
		if data && !reg && !unread.Registry {
			mt, ok, err := fs.MTime(spool.DataDir, e.Name, e.DataIrregular)
			if err != nil {
				errs = append(errs, err)
			}
			if ok {
				ps = append(ps, Problem{Kind: KindOrphaned, Dir: dataDir, Name: e.Name, ModTime: mt})
			}
		}
		if e.DataIrregular {
			ps = append(ps, Problem{Kind: KindUnexpected, Dir: dataDir, Name: e.Name})
		}
		if e.RegistryIrregular {
			ps = append(ps, Problem{Kind: KindUnexpected, Dir: regDir, Name: e.Name})
		}
		for _, x := range e.Files {
			d := dirOf(x.Place)
			mt := nsTime(x.MTime, !x.StatFailed)
			if !reg && !unread.Registry {
				ps = append(ps, Problem{Kind: KindOrphaned, Dir: d, Name: e.Name, ModTime: mt})
			}
			if !data && !unread.Data {
				ps = append(ps, Problem{Kind: KindMissingData, Dir: d, Name: e.Name, ModTime: mt})
			}
			if x.Irregular {
				ps = append(ps, Problem{Kind: KindUnexpected, Dir: d, Name: e.Name})
			}
		}
		if reg && (len(e.Files) >= 2 || len(e.Files) == 0 && !unread.AnyPlace) {
			mt, ok, err := fs.MTime(spool.RegistryDir, e.Name, e.RegistryIrregular)
			if err != nil {
				errs = append(errs, err)
			}
			if ok {
				p := Problem{Kind: KindOrphaned, Dir: regDir, Name: e.Name, ModTime: mt}
				if len(e.Files) >= 2 {
					p.Kind = KindDuplicated
					for _, x := range e.Files {
						p.Dirs = append(p.Dirs, dirOf(x.Place))
					}
				}
				ps = append(ps, p)
			}
		}
	})

	for i, pl := range ix.Places() {
		limit := lim.MaxCheckedOutAge
		if !pl.Checkout {
			var ok bool
			if limit, ok = lim.MaxQueueAge[pl.Queue]; !ok {
				continue
			}
		}
		d := dirOf(pl)
		ix.Older(i, nowNs-int64(limit), func(name string, mtime int64) bool {
			ps = append(ps, Problem{Kind: KindTooOld, Dir: d, Name: name, ModTime: time.Unix(0, mtime)})
			return true
		})
	}

	for _, name := range ix.RootUnexpected() {
		ps = append(ps, Problem{Kind: KindUnexpected, Dir: Dir{Kind: DirRoot}, Name: name})
	}
	over := ix.Over()
	if over.Unregistered {
		ps = append(ps, Problem{Kind: KindLimit, Dir: Dir{Kind: DirUnregistered}, Name: fmt.Sprintf("more than %d files with no registry entry in .tmp, or in .data and the queues", over.MaxUnregistered)})
	}
	if over.Dirs {
		ps = append(ps, Problem{Kind: KindLimit, Dir: Dir{Kind: DirQueues}, Name: fmt.Sprintf("more than %d queues or other directories at the spool root", over.MaxDirs)})
	}
	if over.Watches {
		ps = append(ps, Problem{Kind: KindLimit, Dir: Dir{Kind: DirWatches}, Name: fmt.Sprintf("more than %d inotify watches needed", over.MaxWatches)})
	}
	if len(ps) == 0 {
		ps = nil // as without a hint
	}
	SortProblems(ps)
	return ps, errors.Join(errs...)
}

var kindRank = func() map[Kind]int {
	m := map[Kind]int{}
	for i, k := range append(Kinds(), KindLimit) {
		m[k] = i
	}
	return m
}()

var dirRank = func() map[DirKind]int {
	m := map[DirKind]int{}
	for i, k := range DirKinds() {
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

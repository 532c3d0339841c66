package monitor

import (
	"errors"
	"io/fs"
	"strings"

	"github.com/spool-agent/spool-agent/spool"
)

// unknown is the part of a spool that a cycle could not read: the problems
// it covers are neither counted nor forgotten by the debouncing (a read
// error starts and ends nothing). all covers every problem.
type unknown struct {
	all   bool
	dirs  map[Dir]bool            // directories that could not be listed
	files map[Dir]map[string]bool // files that could not be statted
	roots map[string]bool         // names at the root that could not be examined (queues among them)
	kinds map[Kind]bool           // checks skipped everywhere
	regIn bool                    // the orphaned-registry and duplicated checks were skipped
}

// empty reports whether the cycle read everything.
func (u *unknown) empty() bool {
	return !u.all && len(u.dirs) == 0 && len(u.files) == 0 && len(u.roots) == 0 && len(u.kinds) == 0 && !u.regIn
}

// covers reports whether p lies in what the cycle could not read.
func (u *unknown) covers(p Problem) bool {
	switch {
	case u.all, u.kinds[p.Kind], u.dirs[p.Dir], u.files[p.Dir][p.Name]:
		return true
	case p.Dir.Kind == DirRoot && u.roots[p.Name]:
		return true
	case (p.Dir.Kind == DirQueue || p.Dir.Kind == DirCheckout) && u.roots[p.Dir.Queue]:
		return true
	case p.Dir.Kind == DirRegistry && u.regIn && (p.Kind == KindOrphaned || p.Kind == KindDuplicated):
		return true
	}
	for _, d := range p.Dirs {
		if u.dirs[d] || u.files[d][p.Name] || u.roots[d.Queue] {
			return true
		}
	}
	return false
}

// unknownOf works out from a cycle's errors what it could not read. Every
// read of the spool fails with a *fs.PathError under dir; any other error
// (or a path it cannot place) makes the whole spool unknown.
func unknownOf(dir string, errs []error) *unknown {
	u := &unknown{dirs: map[Dir]bool{}, files: map[Dir]map[string]bool{}, roots: map[string]bool{}, kinds: map[Kind]bool{}}
	for _, err := range errs {
		for _, e := range flatten(err) {
			var pe *fs.PathError
			if !errors.As(e, &pe) || !u.add(dir, pe) {
				u.all = true
			}
		}
	}
	return u
}

// flatten returns the errors joined in err.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	if err == nil {
		return nil
	}
	return []error{err}
}

// add records the part of the spool that pe could not read, and reports
// whether it could place it.
func (u *unknown) add(dir string, pe *fs.PathError) bool {
	rel, ok := strings.CutPrefix(pe.Path, dir+"/")
	if !ok || rel == "" {
		return false
	}
	c := strings.Split(rel, "/")
	listing := pe.Op != "stat" // open or list of a directory
	spoolDir := map[string]DirKind{spool.RegistryDir: DirRegistry, spool.TmpDir: DirTmp, spool.DataDir: DirData}
	file := func(d Dir, name string) {
		if u.files[d] == nil {
			u.files[d] = map[string]bool{}
		}
		u.files[d][name] = true
	}
	whole := func(d Dir) {
		u.dirs[d] = true
		switch d.Kind {
		case DirRegistry:
			u.kinds[KindOrphaned] = true // every orphaned check needs the registry
		case DirData:
			u.kinds[KindMissingData] = true
		case DirQueue, DirCheckout:
			u.regIn = true // which registry files are held, and where
		}
	}
	switch {
	case len(c) == 1 && listing:
		if k, ok := spoolDir[c[0]]; ok {
			whole(Dir{Kind: k})
		} else {
			whole(Dir{Kind: DirQueue, Queue: c[0]})
		}
	case len(c) == 1:
		u.roots[c[0]] = true
		u.regIn = true // it may be a queue holding registered names
	case len(c) == 2 && spoolDir[c[0]] != "":
		file(Dir{Kind: spoolDir[c[0]]}, c[1])
	case len(c) == 2 && c[1] == spool.CheckoutDir && listing:
		whole(Dir{Kind: DirCheckout, Queue: c[0]})
	case len(c) == 2 && c[1] == spool.CheckoutDir:
		u.roots[c[0]] = true // whether it is a queue at all
		u.regIn = true
	case len(c) == 2:
		file(Dir{Kind: DirQueue, Queue: c[0]}, c[1])
	case len(c) == 3 && c[1] == spool.CheckoutDir:
		file(Dir{Kind: DirCheckout, Queue: c[0]}, c[2])
	default:
		return false
	}
	return true
}

package monitor

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"unsafe"

	"github.com/spool-agent/spool-agent/spool"
	"golang.org/x/sys/unix"
)

// ErrNotSpool reports a directory that lacks the spool's own directories.
var ErrNotSpool = errors.New("not a spool")

// dirent is one name from getdents: the name's bytes (NUL-terminated in the
// buffer, which lets fstatat use them without a copy) and its d_type.
type dirent struct {
	name []byte // without the NUL; name[len(name)] is the NUL
	typ  uint8
}

// readDir calls f for each name in the directory open at fd, except "." and
// "..". The name's bytes are valid only during the call.
func readDir(fd int, buf []byte, f func(dirent)) error {
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n <= 0 {
			return nil
		}
		b := buf[:n]
		for len(b) >= 19 {
			reclen := int(binary.NativeEndian.Uint16(b[16:18]))
			if reclen < 19 || reclen > len(b) {
				break
			}
			name := b[19:reclen]
			for i, c := range name {
				if c == 0 {
					name = name[:i]
					break
				}
			}
			typ := b[18]
			b = b[reclen:]
			if len(name) == 0 || (name[0] == '.' && (len(name) == 1 || (len(name) == 2 && name[1] == '.'))) {
				continue
			}
			f(dirent{name: name, typ: typ})
		}
	}
}

// fstatat stats the name in d (NUL-terminated in the getdents buffer)
// relative to dirfd, without following a symlink and without allocating.
func fstatat(dirfd int, d dirent, st *unix.Stat_t) error {
	p := unsafe.Pointer(unsafe.SliceData(d.name))
	if len(d.name) == 0 {
		return unix.ENOENT
	}
	for {
		_, _, e := unix.Syscall6(unix.SYS_NEWFSTATAT, uintptr(dirfd), uintptr(p), uintptr(unsafe.Pointer(st)), unix.AT_SYMLINK_NOFOLLOW, 0, 0)
		switch e {
		case 0:
			return nil
		case unix.EINTR:
			continue
		}
		return e
	}
}

func isReg(mode uint32) bool { return mode&unix.S_IFMT == unix.S_IFREG }

func stNs(st *unix.Stat_t) int64 { return st.Mtim.Sec*1e9 + st.Mtim.Nsec }

// typeKnown reports whether the file system filled in d_type.
func typeKnown(t uint8) bool { return t != unix.DT_UNKNOWN }

// openDir opens path as a directory without following a final symlink.
func openDir(path string, follow bool) (int, error) {
	if openDirFault != nil {
		if err := openDirFault(path); err != nil {
			return -1, err
		}
	}
	flags := unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC
	if !follow {
		flags |= unix.O_NOFOLLOW
	}
	for {
		fd, err := unix.Open(path, flags, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// layout is what the spool root holds.
type layout struct {
	queues     []string // sorted
	unexpected []string // sorted
	candidates []string // directories with a queue's name but no .checkout: watched, as they may become queues
}

// readLayout lists the spool root. Queues are the directories whose name is
// a valid queue name and that hold a .checkout directory (as spool.Open
// decides). Reported as unexpected: any other directory (hidden ones
// included, lost+found excepted) and any symlink. Regular files and other
// special files at the root are left alone: the reference ignores them,
// operators keep notes and lock files there, and tests use them as markers.
//
// The error is fatal (the spool cannot be listed or is not a spool); the
// slice holds files at the root that could not be examined.
func readLayout(dir string, buf []byte) (layout, []error, error) {
	var lay layout
	fd, err := openDir(dir, true)
	if err != nil {
		return lay, nil, fmt.Errorf("open spool %s: %w", dir, err)
	}
	defer unix.Close(fd)
	seen := map[string]bool{}
	var errs []error
	err = readDir(fd, buf, func(d dirent) {
		name := string(d.name)
		typ := d.typ
		if !typeKnown(typ) {
			var st unix.Stat_t
			if err := fstatat(fd, d, &st); err != nil {
				if err != unix.ENOENT {
					errs = append(errs, fmt.Errorf("stat %s/%s: %w", dir, name, err))
				}
				return
			}
			typ = dtOfMode(st.Mode)
		}
		switch name {
		case spool.RegistryDir, spool.TmpDir, spool.DataDir:
			seen[name] = typ == unix.DT_DIR
			if typ != unix.DT_DIR {
				lay.unexpected = append(lay.unexpected, name)
			}
			return
		case "lost+found":
			if typ == unix.DT_DIR {
				return
			}
		}
		switch typ {
		case unix.DT_DIR:
			if spool.ValidateName(name) == nil {
				var st unix.Stat_t
				err := unix.Fstatat(fd, name+"/"+spool.CheckoutDir, &st, unix.AT_SYMLINK_NOFOLLOW)
				if err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
					lay.queues = append(lay.queues, name)
					return
				}
				if err != nil && err != unix.ENOENT && err != unix.ENOTDIR {
					errs = append(errs, fmt.Errorf("stat %s/%s/%s: %w", dir, name, spool.CheckoutDir, err))
					return
				}
				lay.candidates = append(lay.candidates, name)
			}
			lay.unexpected = append(lay.unexpected, name)
		case unix.DT_LNK:
			lay.unexpected = append(lay.unexpected, name)
		}
	})
	if err != nil {
		return lay, errs, fmt.Errorf("list spool %s: %w", dir, err)
	}
	for _, d := range []string{spool.RegistryDir, spool.TmpDir, spool.DataDir} {
		if !seen[d] {
			return lay, errs, fmt.Errorf("%s: %w: %s/ is missing or not a directory", dir, ErrNotSpool, d)
		}
	}
	slices.Sort(lay.queues)
	slices.Sort(lay.unexpected)
	return lay, errs, nil
}

func dtOfMode(mode uint32) uint8 {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return unix.DT_REG
	case unix.S_IFDIR:
		return unix.DT_DIR
	case unix.S_IFLNK:
		return unix.DT_LNK
	}
	return unix.DT_FIFO // any other special file
}

// scanner reads a whole spool into a fresh index.
type scanner struct {
	dir string
	ctx context.Context // nil: not cancellable
	// beforeList, if set, is called with each directory's path before it is
	// listed: the monitor adds its inotify watch there, so that no change
	// between the listing and the watch can go unseen.
	beforeList func(path string)
}

func (s *scanner) canceled() error {
	if s.ctx == nil {
		return nil
	}
	return s.ctx.Err()
}

const direntBuf = 256 << 10

// orphan is a name found in .data or a queue directory but not in the
// registry, collected during the parallel passes and added afterwards.
type orphan struct {
	name string
	loc  *location // nil: the data file
	st   fileState
}

// scan reads the spool. The returned index is usable even with an error:
// directories that could not be read are marked failed, and the checks
// that depend on them are skipped. A nil index means the spool itself is
// unreadable (or is not a spool).
func (s *scanner) scan() (*index, error) {
	buf := make([]byte, direntBuf)
	watch := func(path string) {
		if s.beforeList != nil {
			s.beforeList(path)
		}
	}
	watch(s.dir)
	lay, errs, err := readLayout(s.dir, buf)
	if err != nil {
		return nil, errors.Join(append([]error{err}, errs...)...)
	}
	ix := newIndex(s.dir, lay.queues)
	ix.rootUnexpected = lay.unexpected
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

	// The registry first: it decides which names are entries.
	regPath := s.dir + "/" + spool.RegistryDir
	if err := s.readRegistry(ix, regPath, buf); err != nil {
		ix.regFailed = true
		errs = append(errs, err)
	}
	ix.ents = slices.Clip(ix.ents)
	if err := s.canceled(); err != nil {
		return nil, err
	}

	// Then .data and the queue directories in parallel: the registry map is
	// only read, the data pass writes entry.rd and entry.size, the queue
	// pass entry.loc, entry.ns and entry.lf.
	var wg sync.WaitGroup
	var dataOrphans, locOrphans []orphan
	var dataErrs, locErrs []error
	wg.Add(1)
	go func() {
		defer wg.Done()
		dataOrphans, dataErrs = s.readData(ix, make([]byte, direntBuf))
	}()
	locItems := make([][]item, len(ix.locs))
	locOrphans, locErrs = s.readLocs(ix, buf, locItems)
	wg.Wait()
	if err := s.canceled(); err != nil {
		return nil, err
	}
	errs = append(errs, dataErrs...)
	errs = append(errs, locErrs...)

	for _, o := range dataOrphans {
		ix.setData(o.name, o.st)
	}
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

func (s *scanner) readRegistry(ix *index, path string, buf []byte) error {
	fd, err := openDir(path, false)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer unix.Close(fd)
	var errs []error
	err = readDir(fd, buf, func(d dirent) {
		if string(d.name) == spool.CheckoutDir {
			return
		}
		typ := d.typ
		if !typeKnown(typ) {
			var st unix.Stat_t
			if err := fstatat(fd, d, &st); err != nil {
				if err != unix.ENOENT {
					errs = append(errs, fmt.Errorf("stat %s/%s: %w", path, d.name, err))
				}
				return
			}
			typ = dtOfMode(st.Mode)
		}
		id := ix.newID(ix.arena.intern(d.name))
		e := &ix.ents[id]
		e.rd = fRegPresent
		if typ != unix.DT_REG {
			e.rd |= fRegBad
		}
		ix.regCount++
	})
	if err != nil {
		errs = append(errs, fmt.Errorf("list %s: %w", path, err))
	}
	return errors.Join(errs...)
}

// readData lists .data and stats each data file for its size.
func (s *scanner) readData(ix *index, buf []byte) ([]orphan, []error) {
	path := s.dir + "/" + spool.DataDir
	fd, err := openDir(path, false)
	if err != nil {
		ix.dataFailed = true
		return nil, []error{fmt.Errorf("open %s: %w", path, err)}
	}
	defer unix.Close(fd)
	var errs []error
	var orphans []orphan
	var total int64
	var st unix.Stat_t
	err = readDir(fd, buf, func(d dirent) {
		if string(d.name) == spool.CheckoutDir {
			return
		}
		fs := fileState{present: true}
		if d.typ == unix.DT_REG || !typeKnown(d.typ) {
			if err := fstatat(fd, d, &st); err != nil {
				if err == unix.ENOENT {
					return
				}
				errs = append(errs, fmt.Errorf("stat %s/%s: %w", path, d.name, err))
				fs.noStat = true
			} else {
				fs.bad = !isReg(st.Mode)
				fs.size = st.Size
			}
		} else {
			fs.bad = true
		}
		if fs.bad || fs.noStat {
			fs.size = 0
		}
		id, ok := ix.ids[string(d.name)]
		if !ok {
			orphans = append(orphans, orphan{name: string(d.name), st: fs})
			return
		}
		e := &ix.ents[id]
		if e.rd&fDataPresent != 0 {
			return
		}
		e.rd |= fDataPresent
		if fs.bad {
			e.rd |= fDataBad
		}
		if fs.size >= 1<<32-1 {
			// Rare: record it after the parallel phase (bigSizes is a map).
			orphans = append(orphans, orphan{name: e.name, st: fs})
			e.rd &^= fDataPresent | fDataBad
			return
		}
		e.size = uint32(fs.size)
		total += fs.size
	})
	if err != nil {
		ix.dataFailed = true
		errs = append(errs, fmt.Errorf("list %s: %w", path, err))
	}
	ix.dataBytes += total
	return orphans, errs
}

// readLocs lists .tmp and every queue and checkout directory, statting each
// file for its mtime.
func (s *scanner) readLocs(ix *index, buf []byte, locItems [][]item) ([]orphan, []error) {
	var errs []error
	var orphans []orphan
	var st unix.Stat_t

	tmpPath := s.dir + "/" + spool.TmpDir
	if fd, err := openDir(tmpPath, false); err != nil {
		ix.tmpFailed = true
		errs = append(errs, fmt.Errorf("open %s: %w", tmpPath, err))
	} else {
		err := readDir(fd, buf, func(d dirent) {
			if string(d.name) == spool.CheckoutDir {
				return
			}
			fs := statEntry(fd, d, &st, tmpPath, &errs)
			if fs.present {
				ix.tmp[string(d.name)] = tmpFile{ns: fs.ns, bad: fs.bad, noStat: fs.noStat}
			}
		})
		unix.Close(fd)
		if err != nil {
			ix.tmpFailed = true
			errs = append(errs, fmt.Errorf("list %s: %w", tmpPath, err))
		}
	}

	for i, l := range ix.locs {
		if s.canceled() != nil {
			break
		}
		fd, err := openDir(l.path, false)
		if err != nil {
			l.failed = true
			errs = append(errs, fmt.Errorf("open %s: %w", l.path, err))
			continue
		}
		var items []item
		err = readDir(fd, buf, func(d dirent) {
			if string(d.name) == spool.CheckoutDir {
				return
			}
			fs := statEntry(fd, d, &st, l.path, &errs)
			if !fs.present {
				return
			}
			id, ok := ix.ids[string(d.name)]
			if !ok {
				orphans = append(orphans, orphan{name: string(d.name), loc: l, st: fs})
				return
			}
			e := &ix.ents[id]
			lf := lflags(fs)
			if e.loc != 0 {
				// Already in another directory: a duplicate, rare. Added
				// after the parallel phase through the general path.
				orphans = append(orphans, orphan{name: e.name, loc: l, st: fs})
				return
			}
			e.loc, e.ns, e.lf = l.id, fs.ns, lf
			l.count++
			if lf&lNoStat == 0 {
				items = append(items, item{ns: fs.ns, id: id})
			}
		})
		unix.Close(fd)
		if err != nil {
			l.failed = true
			errs = append(errs, fmt.Errorf("list %s: %w", l.path, err))
		}
		locItems[i] = items
	}
	return orphans, errs
}

// statEntry stats one listed file for its mtime and type.
func statEntry(fd int, d dirent, st *unix.Stat_t, dir string, errs *[]error) fileState {
	if err := fstatat(fd, d, st); err != nil {
		if err == unix.ENOENT {
			return fileState{}
		}
		*errs = append(*errs, fmt.Errorf("stat %s/%s: %w", dir, d.name, err))
		return fileState{present: true, noStat: true, bad: typeKnown(d.typ) && d.typ != unix.DT_REG}
	}
	if !isReg(st.Mode) {
		return badFile
	}
	return fileState{present: true, ns: stNs(st), size: st.Size}
}

// badFile is the state of a directory, symlink or other non-regular file
// where a file belongs. Its mtime is not tracked (a directory's changes with
// its contents, which raise no event in the watched directory), so it takes
// no part in the age checks and statistics, and problems about it have a
// zero ModTime.
var badFile = fileState{present: true, bad: true, noStat: true}

// openDirFault, when set by a test, makes openDir fail for the paths it
// returns an error for.
var openDirFault func(path string) error

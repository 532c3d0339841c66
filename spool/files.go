package spool

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"

	"golang.org/x/sys/unix"
)

const (
	// openRead never follows a symlink and never blocks on a FIFO that
	// someone put in the spool (fstat then rejects it).
	openRead      = unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOFOLLOW | unix.O_NONBLOCK
	openCreateNew = unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_CLOEXEC | unix.O_NOFOLLOW
	openDir       = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC
)

// createFile creates name in d (O_EXCL, never through a symlink) with mode
// m and returns its descriptor. An exact mode is applied with fchmod; on
// that failure the file is removed again.
func (s *Spool) createFile(d dirRef, name string, m createMode) (int, error) {
	fd, err := s.fs.Open(d.fd, name, openCreateNew, m.perm)
	if err != nil {
		return -1, pathErr("create", d.p(name), err)
	}
	if m.exact {
		if err := s.fs.Fchmod(fd, m.perm); err != nil {
			s.fs.Close(fd)
			s.fs.Unlink(d.fd, name)
			return -1, pathErr("chmod", d.p(name), err)
		}
	}
	return fd, nil
}

// writeAll writes b, then everything from r (if not nil), to fd.
func (s *Spool) writeAll(fd int, b []byte, r io.Reader) (int64, error) {
	var total int64
	write := func(p []byte) error {
		for len(p) > 0 {
			n, err := s.fs.Write(fd, p)
			if n > 0 {
				total += int64(n)
				p = p[n:]
			}
			if err != nil {
				return err
			}
			if n == 0 {
				return io.ErrShortWrite
			}
		}
		return nil
	}
	if err := write(b); err != nil {
		return total, err
	}
	if r == nil {
		return total, nil
	}
	buf := make([]byte, 64<<10)
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			if err := write(buf[:n]); err != nil {
				return total, err
			}
		}
		if rerr == io.EOF {
			return total, nil
		}
		if rerr != nil {
			return total, fmt.Errorf("reading input: %w", rerr)
		}
	}
}

// readFile reads the whole regular file name in d without following a
// symlink, at most limit bytes (ErrTooLarge beyond; limit < 0: no bound).
func (s *Spool) readFile(d dirRef, name string, limit int64) ([]byte, error) {
	path := d.p(name)
	fd, err := s.fs.Open(d.fd, name, openRead, 0)
	if err != nil {
		return nil, err
	}
	defer s.fs.Close(fd)
	var st unix.Stat_t
	if err := s.fs.Fstat(fd, &st); err != nil {
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	if limit >= 0 && st.Size > limit {
		return nil, tooLarge(path, st.Size, limit)
	}
	b, err := s.readBounded(fd, st.Size, limit)
	if errors.Is(err, ErrTooLarge) {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, err
}

// tooLarge is the error for a metadata file of size bytes, above limit.
func tooLarge(path string, size, limit int64) error {
	return fmt.Errorf("%s: %w: %d bytes, more than %d (Options.MaxMetadataSize)", path, ErrTooLarge, size, limit)
}

// readChunk bounds the first allocation of a read: a file's size is what
// it claims (a sparse file claims a terabyte and stores nothing), so
// memory grows with what is actually read.
const readChunk = 1 << 20

// readBounded reads fd to its end, at most limit bytes (ErrTooLarge beyond;
// limit < 0: no bound). size is the expected size (from fstat), used to size
// the buffer so that a file that did not change is read with one read(2)
// and one more that reports the end; it is trusted only up to readChunk.
func (s *Spool) readBounded(fd int, size, limit int64) ([]byte, error) {
	c := min(max(size, 0), readChunk)
	buf := make([]byte, 0, c+1)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		p := buf[len(buf):cap(buf)]
		if limit >= 0 && int64(len(p)) > limit+1-int64(len(buf)) {
			p = p[:limit+1-int64(len(buf))]
		}
		n, err := s.fs.Read(fd, p)
		if n > 0 {
			buf = buf[:len(buf)+n]
		}
		if err != nil {
			return nil, err
		}
		if limit >= 0 && int64(len(buf)) > limit {
			return nil, fmt.Errorf("%w: more than %d bytes (Options.MaxMetadataSize)", ErrTooLarge, limit)
		}
		if n == 0 {
			return buf, nil
		}
	}
}

// syncDir fsyncs the open directory d, making the creations, renames and
// unlinks in it durable.
func (s *Spool) syncDir(d dirRef) error {
	if err := s.fs.Fsync(d.fd); err != nil {
		return pathErr("fsync directory", d.path, err)
	}
	return nil
}

// syncPath fsyncs the directory at path (the spool root's parent, which the
// user named).
func (s *Spool) syncPath(path string) error {
	fd, err := s.fs.Open(unix.AT_FDCWD, path, openDir, 0)
	if err != nil {
		return pathErr("open directory", path, err)
	}
	err = s.fs.Fsync(fd)
	s.fs.Close(fd)
	if err != nil {
		return pathErr("fsync directory", path, err)
	}
	return nil
}

// syncDirsSince makes the changes in each directory durable, at
// DurabilityFull only. Concurrent operations share the flushes (group
// commit, groupcommit.go): it returns once a flush that started after it
// was called has returned. gen is the error generation the operation read
// (s.commit.begin()) before its change: it fails if a shared flush failed
// since, since that flush may have taken the change's error.
func (s *Spool) syncDirsSince(gen uint64, dirs ...dirRef) error {
	if s.durability < DurabilityFull || len(dirs) == 0 {
		return nil
	}
	return s.commitChanges(nil, dirs, gen)
}

// staged holds the files an operation wrote and has yet to make durable
// (writeStaged), open until commitStaged has checked them.
type staged struct {
	fds   []int
	paths []string
	dirs  []int // the descriptors of their directories
	// gen is the error generation read before the operation's first
	// change (begin; writeStaged calls it).
	gen   uint64
	begun bool
}

// begin reads the error generation for p's operation, unless it already
// did: call it before the operation's first change.
func (p *staged) begin(s *Spool) {
	if !p.begun {
		p.gen, p.begun = s.commit.begin(), true
	}
}

// writeStaged creates name in d, which must not exist (O_EXCL, never
// through a symlink), and writes what b and r yield. At DurabilityFiles and
// above the file's write-back is started (writebackStarter) and the file is
// left open in p, for commitStaged to make durable together with the
// operation's directories (group commit). It returns the
// number of bytes written. On error it leaves nothing behind: a file it
// created is closed and removed, and when the create itself failed the
// name may be another writer's, which the caller must not remove either.
func (s *Spool) writeStaged(p *staged, d dirRef, name string, b []byte, r io.Reader) (int64, error) {
	path := d.p(name)
	p.begin(s)
	fd, err := s.createFile(d, name, s.fileMode)
	if err != nil {
		return 0, err
	}
	abandon := func(n int64, err error) (int64, error) {
		s.fs.Close(fd)
		s.fs.Unlink(d.fd, name)
		return n, err
	}
	n, err := s.writeAll(fd, b, r)
	if err != nil {
		return abandon(n, pathErr("write", path, err))
	}
	if s.durability < DurabilityFiles {
		if err := s.fs.Close(fd); err != nil {
			s.fs.Unlink(d.fd, name)
			return n, pathErr("close", path, err)
		}
		return n, nil
	}
	if w, ok := s.fs.(writebackStarter); ok {
		if err := w.StartWriteback(fd); err != nil && !writebackUnsupported(err) {
			return abandon(n, pathErr("write back", path, err))
		}
	}
	p.fds = append(p.fds, fd)
	p.paths = append(p.paths, path)
	p.dirs = append(p.dirs, d.fd)
	return n, nil
}

// writebackStarter is the optional part of the FS seam that starts writing
// a file back without waiting (sync_file_range(2) with
// SYNC_FILE_RANGE_WRITE on Linux). writeStaged starts each file's
// write-back as soon as the file is written: the disk then writes it while
// the operation writes its next file and its directories change, and the
// fsync or the syncfs round that makes it durable waits less (with one
// writer at DurabilityFull, Enqueue went from 1.01x to 1.14x the floor, at
// DurabilityFiles from 0.99x to 1.22x; README). Durability does not rest on
// it. Its error does count: it is usually a file's first write-out, and an
// error that the file system's write-out returns without recording it for
// the file (ext4 gives up on pages whose delayed allocation failed for good,
// and later finds them clean) reaches this caller alone; the fsync, or the
// syncfs round's write-back check, after it would report success. An error
// that only says the call is not supported here is ignored
// (writebackUnsupported).
type writebackStarter interface {
	StartWriteback(fd int) error
}

// writebackUnsupported reports an error of StartWriteback that says only
// that the file or the system does not support it (a seccomp filter, a
// file system or an emulation without sync_file_range(2)).
func writebackUnsupported(err error) bool {
	return errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ESPIPE)
}

// commitStaged makes the files of p durable (DurabilityFiles and above) and,
// at DurabilityFull, the changes in dirs; it closes p's files, also on
// error.
func (s *Spool) commitStaged(p *staged, dirs ...dirRef) error {
	if s.durability < DurabilityFull {
		dirs = nil
	}
	p.begin(s)
	err := s.commitChanges(p, dirs, p.gen)
	if cerr := p.close(s); err == nil {
		err = cerr
	}
	return err
}

// close closes p's files and reports the first error.
func (p *staged) close(s *Spool) error {
	var err error
	for i, fd := range p.fds {
		if cerr := s.fs.Close(fd); cerr != nil && err == nil {
			err = pathErr("close", p.paths[i], cerr)
		}
	}
	p.fds, p.paths, p.dirs = nil, nil, nil
	return err
}

// commitChanges makes durable the files of p (nil: none) and the changes in
// dirs. The files are left to a syncfs round when one costs less than their
// fsyncs (useSyncfs; then each is checked for write-back errors through its
// own descriptor), else fsynced one by one; the directories join the
// spool's next round (groupcommit.go) either way. It fails as well if a
// shared flush failed since the error generation gen was read
// (committer.check).
func (s *Spool) commitChanges(p *staged, dirs []dirRef, gen uint64) error {
	var files int
	if p != nil {
		files = len(p.fds)
	}
	if files == 0 && len(dirs) == 0 {
		return nil
	}
	c := &s.commit
	c.init(s.fs, s.root.fd)
	active := int(c.active.Add(1))
	defer c.active.Add(-1)
	if active == 1 && c.fs.busy() {
		active = 2 // a round in flight serves another operation
	}
	// An operation's files are left to a syncfs round when one costs less
	// than their fsyncs (useSyncfs), or fsynced one by one by the
	// operation: a file's fsync cannot be shared. Its directories join
	// the round either way.
	n := files + len(dirs)
	var use, probe bool
	if files > 0 {
		use, probe = c.useSyncfs(n, active)
		use = use && s.rootFSOnly(p, dirs)
	}
	if !use && files > 0 {
		// Only an enqueue has files here, and it counts itself for the
		// rounds' gathering from before it wrote them (enterChange): while
		// it fsyncs them it joins no round, so no round waits for it.
		c.leave()
		err := s.fsyncFiles(p)
		c.enter()
		if err != nil {
			return err
		}
	}
	if !use && len(dirs) == 0 {
		return c.check(gen)
	}
	start := c.clock()
	err := c.fs.do(need{dirs: dirs, files: use}, s.barrier)
	end := c.clock()
	if use {
		c.probed(n, active, end.Sub(start), end, probe)
	}
	if err != nil {
		return ownCopy(err)
	}
	if use {
		for i := range files {
			if err := c.batch.WritebackErr(p.fds[i]); err != nil {
				return pathErr("write back", p.paths[i], err)
			}
		}
	}
	return c.check(gen)
}

// fsyncFiles fsyncs each file of p, measuring the cost of one fsync.
func (s *Spool) fsyncFiles(p *staged) error {
	c := &s.commit
	for i := range p.fds {
		start := c.clock()
		err := s.fs.Fsync(p.fds[i])
		end := c.clock()
		c.fsyncCost.add(end.Sub(start), end)
		if err != nil {
			return pathErr("fsync", p.paths[i], err)
		}
	}
	return nil
}

// ownCopy returns a round's error for one of its operations: every
// operation of the round gets the same error, and each its own
// *fs.PathError value, as when it issued the call itself.
func ownCopy(err error) error {
	if pe, ok := err.(*fs.PathError); ok {
		cp := *pe
		return &cp
	}
	return err
}

// barrier runs one round for the operations that joined it (n, their
// needs together). A round that holds files no fsync made durable is a
// syncfs of the spool's file system (the directories on another file
// system are fsynced after it). A round of directories alone fsyncs each
// of them, or, where syncfs rounds are available and cover them all, runs
// a syncfs instead when that costs less than their fsyncs (syncfsCheaper).
func (s *Spool) barrier(n need) error {
	c := &s.commit
	start := c.clock()
	defer func() {
		end := c.clock()
		c.roundCost.add(end.Sub(start), end)
	}()
	// A lone operation's directories are fsynced as before group commit:
	// a syncfs would also write back other programs' data.
	syncfs := n.files ||
		(n.ops > 1 && c.syncfsCheaper(len(n.dirs)) || c.alwaysShare && c.batch != nil) && s.rootFSOnly(nil, n.dirs)
	if syncfs {
		err := c.batch.Syncfs(s.root.fd)
		end := c.clock()
		c.syncfsRound.add(end.Sub(start), end)
		if err != nil {
			return pathErr("syncfs", s.dir, c.failed(err, "syncfs", s.dir))
		}
	}
	for _, d := range n.dirs {
		if syncfs && s.onRootFS(d.fd) {
			continue
		}
		dstart := c.clock()
		err := s.fs.Fsync(d.fd)
		dend := c.clock()
		c.dirFsync.add(dend.Sub(dstart), dend)
		c.fsyncCost.add(dend.Sub(dstart), dend)
		if err != nil {
			return pathErr("fsync directory", d.path, c.failed(err, "fsync directory", d.path))
		}
	}
	return nil
}

// rootFSOnly reports whether every directory in dirs and of p's files is
// on the file system of the spool's root, which is the one a syncfs of the
// root flushes. The spool's directories are opened with RESOLVE_NO_XDEV,
// but the component walk used where openat2 is refused does not refuse a
// mount point. The answer is kept per descriptor.
func (s *Spool) rootFSOnly(p *staged, dirs []dirRef) bool {
	for _, d := range dirs {
		if !s.onRootFS(d.fd) {
			return false
		}
	}
	if p != nil {
		for _, fd := range p.dirs {
			if !s.onRootFS(fd) {
				return false
			}
		}
	}
	return true
}

// onRootFS reports whether the directory open as fd is on the file system
// of the spool's root (false when that is not known), kept per descriptor.
func (s *Spool) onRootFS(fd int) bool {
	c := &s.commit
	c.mu.Lock()
	v, ok := c.sameFS[fd]
	c.mu.Unlock()
	if ok {
		return v
	}
	var root, st unix.Stat_t
	if s.fs.Fstat(s.root.fd, &root) != nil || s.fs.Fstat(fd, &st) != nil {
		return false // not known: fsync this time
	}
	v = root.Dev == st.Dev
	c.mu.Lock()
	if c.sameFS == nil {
		c.sameFS = map[int]bool{}
	}
	c.sameFS[fd] = v
	c.mu.Unlock()
	return v
}

// tempName returns a fresh temporary file name for entry name as the
// reference's atomic writer names them, "<name>.tmp.XXXXXX" with six random
// letters, the name cut short so that the whole fits in MaxExistingNameLen
// bytes. Callers create it with O_EXCL.
func tempName(name string) string {
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	const suffix = len(".tmp.XXXXXX")
	if len(name) > MaxExistingNameLen-suffix {
		name = name[:MaxExistingNameLen-suffix]
	}
	b := make([]byte, 0, len(name)+suffix)
	b = append(b, name...)
	b = append(b, ".tmp."...)
	for range 6 {
		b = append(b, letters[rand.IntN(len(letters))])
	}
	return string(b)
}

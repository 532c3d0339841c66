package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Checkout is an exclusive claim on an entry: its metadata file sits in
// <queue>/.checkout/ and this process holds an flock on it from before it
// left the queue until it leaves .checkout again. Claims in any process using
// this package take that lock before they move the file, and Recover skips
// locked files, so neither can take an entry that a live worker holds.
// Finish a Checkout with exactly one of Save, Release or Remove.
type Checkout struct {
	s        *Spool
	qd       *queueDirs // the directories of queue, as open at checkout
	queue    string
	name     string
	orig     []byte // the metadata as read at checkout
	metadata []byte // the metadata in the checkout file now

	mu    sync.Mutex
	fd    int // the checkout file, flocked; -1 once finished
	ino   uint64
	mode  uint32 // the checkout file's permission bits, which a rewrite keeps
	state checkoutState
}

type checkoutState int

const (
	coHeld     checkoutState = iota
	coSaved                  // saved or released into a queue
	coRemoving               // the checkout file is gone, the payload or registry file may remain
	coRemoved
	coLost
)

// errNotRegular marks a name in a queue directory that is not a regular file
// (a directory, a symbolic link, a FIFO): not an entry, so readers skip it.
var errNotRegular = errors.New("not a regular file")

// claimWait bounds how long a claim waits for a lock that another worker
// holds on a file that is still in the queue. Such a lock is held only for
// the few system calls between a worker's lock and its rename into
// .checkout, or between its rename back into the queue and its close.
const claimWait = 100 * time.Millisecond

// Checkout claims entry name waiting in queue: it opens and flocks the queue
// file, touches the registry and queue files (so each phase of an entry's
// life is a distinct monitor problem, as in the reference) and renames the
// queue file into <queue>/.checkout/. Exactly one caller, in any process,
// wins; the others get ErrNotFound. ErrBusy means the entry stayed locked by
// another worker for longer than a claim waits. An entry that cannot be
// claimed safely stays where it is: ErrUnregistered without its registry
// file (as in the reference), ErrTooLarge when its metadata exceeds
// Options.MaxMetadataSize, ErrLinked when its metadata or registry file has
// another hard link (touching it would touch a file outside the spool).
// A done ctx ends the waits (for a slot, for the lock) with ctx.Err().
func (s *Spool) Checkout(ctx context.Context, queue, name string) (*Checkout, error) {
	if err := s.checkEntry(queue, name); err != nil {
		return nil, err
	}
	if err := s.writable("checkout", name); err != nil {
		return nil, err
	}
	if err := s.acquireCtx(ctx); err != nil {
		return nil, fmt.Errorf("checkout %s in %s/%s: %w", name, s.dir, queue, err)
	}
	defer s.release()
	return s.checkoutCtx(ctx, queue, name, true, true)
}

// checkout is Checkout without the argument checks and the throttle. Without
// wait, a file that another worker holds locked while it stays in the queue
// gives ErrBusy at once (readers move on to the next entry and look again
// soon). Without read, the metadata is neither read nor bounded (Remove and
// Move need none).
func (s *Spool) checkout(queue, name string, wait, read bool) (*Checkout, error) {
	return s.checkoutCtx(context.Background(), queue, name, wait, read)
}

// checkoutCtx is checkout whose wait for the lock ends when ctx is done.
func (s *Spool) checkoutCtx(ctx context.Context, queue, name string, wait, read bool) (*Checkout, error) {
	qd, err := s.qdirs(queue)
	if err != nil {
		return nil, err
	}
	src, dst := qd.dir.p(name), qd.co.p(name)
	notFound := func() error {
		return fmt.Errorf("checkout: %w: %s in %s/%s", ErrNotFound, name, s.dir, queue)
	}
	fd, err := s.fs.Open(qd.dir.fd, name, openRead, 0)
	if err != nil {
		if isNotExist(err) {
			return nil, notFound()
		}
		if errors.Is(err, unix.ELOOP) {
			return nil, fmt.Errorf("checkout %s: %w (a symbolic link)", src, errNotRegular)
		}
		return nil, pathErr("checkout: open", src, err)
	}
	keep := false
	defer func() {
		if !keep {
			s.fs.Close(fd)
		}
	}()
	var st unix.Stat_t
	if err := s.fs.Fstat(fd, &st); err != nil {
		return nil, pathErr("checkout: stat", src, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("checkout %s: %w", src, errNotRegular)
	}
	if st.Nlink > 1 {
		return nil, fmt.Errorf("checkout %s: %w (%d links); left in place", src, ErrLinked, st.Nlink)
	}
	if read && st.Size > s.maxMeta {
		return nil, fmt.Errorf("checkout: %w; left in place", tooLarge(src, st.Size, s.maxMeta))
	}
	if err := s.lockClaim(ctx, fd, qd.dir, name, st.Ino, wait); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, notFound()
		}
		return nil, err
	}
	// Locked: from here the checkout commits soon, and a round about to
	// start waits for it (enterChange); not while it waited for the lock.
	s.enterChange(false)
	defer s.leaveChange(false)
	// Locked, and still at src: from here until the rename nobody using
	// this package moves it. The registry file comes first, as in the
	// reference, whose checkout fails without it.
	reg := s.reg.p(name)
	var rst unix.Stat_t
	if err := s.fs.Lstat(s.reg.fd, name, &rst); err != nil {
		if isNotExist(err) {
			return nil, fmt.Errorf("checkout %s: %w (%s); left in place", src, ErrUnregistered, reg)
		}
		return nil, pathErr("checkout: stat", reg, err)
	}
	if rst.Mode&unix.S_IFMT == unix.S_IFREG && rst.Nlink > 1 {
		return nil, fmt.Errorf("checkout %s: %w: registry file %s (%d links); left in place", src, ErrLinked, reg, rst.Nlink)
	}
	errGen := s.commit.begin() // before the changes, see syncDirsSince
	now := s.now()
	if err := s.fs.Touch(s.reg.fd, name, now); isNotExist(err) {
		return nil, fmt.Errorf("checkout %s: %w (%s); left in place", src, ErrUnregistered, reg)
	}
	// The queue file is touched through the locked descriptor: a file put
	// at its name meanwhile (a hard link to a file outside) is not touched.
	if err := s.fs.TouchFD(fd, now); isNotExist(err) {
		return nil, notFound()
	}
	if err := s.fs.Rename(qd.dir.fd, name, qd.co.fd, name, true); err != nil {
		if isNotExist(err) {
			return nil, notFound() // taken by something that does not lock (the OCaml library)
		}
		if errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("checkout %s/%s: %w: %s is also checked out (duplicate entry)", queue, name, ErrExists, dst)
		}
		return nil, pathErr("checkout: rename "+src+" to", dst, err)
	}
	// A worker that takes no lock may have checked the entry out and saved
	// it back (a new file) since lockClaim looked: then the claim is lost
	// and the entry waits again.
	if foreign, err := s.putBackForeign(qd.dir, qd.co, name, st.Ino); foreign || err != nil {
		if err != nil {
			return nil, fmt.Errorf("checkout %s: %w", src, err)
		}
		return nil, notFound()
	}
	var b []byte
	if read {
		b, err = s.readBounded(fd, st.Size, s.maxMeta)
		if err != nil {
			// The entry is ours but unreadable (or grew past the bound
			// after the check): put it back rather than strand it.
			s.fs.Rename(qd.co.fd, name, qd.dir.fd, name, true)
			if errors.Is(err, ErrTooLarge) {
				return nil, fmt.Errorf("checkout %s: %w; put back", src, err)
			}
			return nil, pathErr("checkout: read", dst, err)
		}
	}
	if err := s.syncDirsSince(errGen, qd.co, qd.dir); err != nil {
		s.fs.Rename(qd.co.fd, name, qd.dir.fd, name, true)
		return nil, err
	}
	keep = true
	return &Checkout{s: s, qd: qd, queue: queue, name: name, orig: b, metadata: b, fd: fd, ino: st.Ino, mode: uint32(st.Mode) & 0o7777}, nil
}

// lockClaim takes the flock on fd, the queue file at src with inode ino, and
// checks that the file is still at src. It returns ErrNotFound when another
// worker took the file first, and ErrBusy when the lock stayed held (for
// claimWait with wait) while the file stayed in the queue, and ctx.Err()
// when ctx is done during the wait.
func (s *Spool) lockClaim(ctx context.Context, fd int, dir dirRef, name string, ino uint64, wait bool) error {
	src := dir.p(name)
	var deadline time.Time
	backoff := 20 * time.Microsecond
	var cur unix.Stat_t
	for {
		err := s.fs.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			return pathErr("checkout: lock", src, err)
		}
		if !wait {
			// Most likely a competing reader is claiming it; the reader
			// comes back to it (see Reader.Dequeue).
			return fmt.Errorf("checkout %s: %w: locked by another worker", src, ErrBusy)
		}
		// Another worker holds the lock. Either it is claiming the file,
		// which then leaves src at once, or it has just moved the file
		// back into the queue and is about to close it.
		if err := s.fs.Lstat(dir.fd, name, &cur); err != nil {
			if isNotExist(err) {
				return ErrNotFound
			}
			return pathErr("checkout: stat", src, err)
		}
		if cur.Ino != ino {
			return ErrNotFound
		}
		now := time.Now()
		if deadline.IsZero() {
			deadline = now.Add(claimWait)
		} else if now.After(deadline) {
			return fmt.Errorf("checkout %s: %w: locked by another worker for %v", src, ErrBusy, claimWait)
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("checkout %s: %w", src, ctx.Err())
		}
		backoff = min(2*backoff, 5*time.Millisecond)
	}
	// The previous holder may have moved the file elsewhere (or replaced
	// it) before it unlocked; then this lock guards nothing.
	if err := s.fs.Lstat(dir.fd, name, &cur); err != nil {
		if isNotExist(err) {
			return ErrNotFound
		}
		return pathErr("checkout: stat", src, err)
	}
	if cur.Ino != ino {
		return ErrNotFound
	}
	return nil
}

// Name returns the entry's name.
func (c *Checkout) Name() string { return c.name }

// Queue returns the queue the entry was checked out from.
func (c *Checkout) Queue() string { return c.queue }

// Metadata returns the entry's metadata as read at checkout (or as last
// written by a Save that could not move the entry).
func (c *Checkout) Metadata() []byte { return c.metadata }

// DataPath returns the path of the entry's payload. A path re-resolves its
// components when used: prefer OpenData, which opens the payload relative
// to the spool's open .data directory.
func (c *Checkout) DataPath() string { return c.s.dataPath(c.name) }

// ReadData reads the entry's payload.
func (c *Checkout) ReadData() ([]byte, error) { return c.s.ReadData(c.name) }

// OpenData opens the entry's payload for reading.
func (c *Checkout) OpenData() (*os.File, error) { return c.s.OpenData(c.name) }

// WriteData replaces the entry's payload with what r yields, atomically (the
// reference's Data_file.save): it writes a fresh "<name>.tmp.XXXXXX" in
// .data/, as the reference names its temp files, fsyncs it at
// DurabilityFiles and above, renames it over .data/<name> and, at
// DurabilityFull, fsyncs .data/. The new payload keeps the old one's mode.
// A failure leaves the old payload intact and removes the temp file. Only
// the holder of the checkout may rewrite the payload: a lost checkout gives
// ErrLost.
func (c *Checkout) WriteData(r io.Reader) error {
	s := c.s
	s.acquire()
	defer s.release()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.held(); err != nil {
		return err
	}
	dst := s.data.p(c.name)
	mode := s.fileMode
	var st unix.Stat_t
	if err := s.fs.Lstat(s.data.fd, c.name, &st); err == nil && st.Mode&unix.S_IFMT == unix.S_IFREG {
		mode = createMode{perm: uint32(st.Mode) & 0o7777, exact: true}
	}
	errGen := s.commit.begin() // before the changes, see syncDirsSince
	var tmp string
	var fd int
	for attempt := 0; ; attempt++ {
		var err error
		tmp = tempName(c.name)
		fd, err = s.createFile(s.data, tmp, mode)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EEXIST) || attempt >= 10 {
			return fmt.Errorf("write data of %s: %w", c.name, err)
		}
	}
	fail := func(err error) error {
		if fd >= 0 {
			s.fs.Close(fd)
		}
		s.fs.Unlink(s.data.fd, tmp)
		return fmt.Errorf("write data of %s: %w", c.name, err)
	}
	tmpPath := s.data.p(tmp)
	if _, err := s.writeAll(fd, nil, r); err != nil {
		return fail(pathErr("write", tmpPath, err))
	}
	// The payload is written: from here WriteData commits soon (at
	// DurabilityFull: its own file's fsync is not shared), and a round
	// about to start waits for it (enterChange).
	s.enterChange(false)
	defer s.leaveChange(false)
	if s.durability >= DurabilityFiles {
		if err := s.fs.Fsync(fd); err != nil {
			return fail(pathErr("fsync", tmpPath, err))
		}
	}
	err := s.fs.Close(fd)
	fd = -1
	if err != nil {
		return fail(pathErr("close", tmpPath, err))
	}
	// The payload may have taken long to stream: the checkout is checked
	// again before the new payload replaces the old one.
	if err := c.held(); err != nil {
		return fail(err)
	}
	if err := s.fs.Rename(s.data.fd, tmp, s.data.fd, c.name, false); err != nil {
		return fail(pathErr("rename "+tmpPath+" to", dst, err))
	}
	if err := s.syncDirsSince(errGen, s.data); err != nil {
		return fmt.Errorf("write data of %s: %w", c.name, err)
	}
	return nil
}

// Touch renews the checkout's mtime, telling the monitor and Recover's age
// check that the holder is still working on it.
func (c *Checkout) Touch() error {
	c.s.acquire()
	defer c.s.release()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.held(); err != nil {
		return err
	}
	p := c.qd.co.p(c.name)
	if err := c.s.fs.TouchFD(c.fd, c.s.now()); err != nil {
		return pathErr("touch", p, err)
	}
	return nil
}

// held verifies that the checkout file is still the one this Checkout
// claimed. Callers hold c.mu.
func (c *Checkout) held() error {
	p := c.qd.co.p(c.name)
	switch c.state {
	case coHeld:
	case coLost:
		return fmt.Errorf("%w: %s is no longer at %s", ErrLost, c.name, p)
	default:
		return fmt.Errorf("checkout %s/%s: already finished", c.queue, c.name)
	}
	var st unix.Stat_t
	err := c.s.fs.Lstat(c.qd.co.fd, c.name, &st)
	if err != nil && !isNotExist(err) {
		return pathErr("checkout: stat", p, err) // maybe transient: still held
	}
	if err != nil || st.Ino != c.ino {
		return c.lost()
	}
	return nil
}

// lost ends c as lost and returns the ErrLost error for it. Callers hold c.mu.
func (c *Checkout) lost() error {
	c.finish(coLost)
	return fmt.Errorf("%w: %s is no longer at %s", ErrLost, c.name, c.qd.co.p(c.name))
}

// finish releases the flock and records how the checkout ended. Callers hold c.mu.
func (c *Checkout) finish(state checkoutState) {
	if c.fd >= 0 {
		c.s.fs.Close(c.fd)
		c.fd = -1
	}
	c.state = state
}

// Save writes metadata (when it is not nil and differs from what was read)
// atomically over the checkout file, then moves the entry into queue, which
// may be the queue it came from. A crash in between leaves the entry checked
// out with the new metadata, where the monitor reports it and Recover returns it.
func (c *Checkout) Save(queue string, metadata []byte) error {
	s := c.s
	if err := s.checkQueue(queue); err != nil {
		return err
	}
	s.acquire()
	defer s.release()
	c.mu.Lock()
	defer c.mu.Unlock()
	// Counted for the rounds' gathering (enterChange) once it holds the
	// checkout, not while it waits for a WriteData that streams.
	s.enterChange(false)
	defer s.leaveChange(false)
	if err := c.held(); err != nil {
		return err
	}
	dq, err := s.qdirs(queue)
	if err != nil {
		return err
	}
	src := c.qd.co.p(c.name)
	dirs := []dirRef{dq.dir, c.qd.co}
	errGen := s.commit.begin() // before the changes, see syncDirsSince
	if metadata != nil && !bytes.Equal(metadata, c.metadata) {
		if err := c.replace(metadata); err != nil {
			return fmt.Errorf("save %s: %w", c.name, err)
		}
		dirs = append(dirs, s.tmp)
	}
	now := s.now()
	c.touchRegistry(now)
	s.fs.TouchFD(c.fd, now)
	// The rename goes by name: checked again just before it (see Remove),
	// and what it moved is checked after it.
	if err := c.held(); err != nil {
		return err
	}
	dst := dq.dir.p(c.name)
	if err := s.fs.Rename(c.qd.co.fd, c.name, dq.dir.fd, c.name, true); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("save %s: %w: %s", c.name, ErrExists, dst)
		}
		if isNotExist(err) {
			// The checkout file was taken back meanwhile (ErrLost), or it
			// is still ours and the destination queue's directory is gone.
			if herr := c.held(); herr != nil {
				return herr
			}
		}
		return pathErr("save: rename "+src+" to", dst, err)
	}
	// A worker that takes no lock may have taken the entry back and
	// checked it out again between the last check and the rename.
	if foreign, err := s.putBackForeign(c.qd.co, dq.dir, c.name, c.ino); foreign || err != nil {
		lost := c.lost()
		if err != nil {
			return fmt.Errorf("%w; %w", lost, err)
		}
		return lost
	}
	c.finish(coSaved) // unlock only once the file has left .checkout
	if err := s.syncDirsSince(errGen, dirs...); err != nil {
		return fmt.Errorf("save %s: %w", c.name, err)
	}
	return nil
}

// touchRegistry touches the entry's registry file (so each phase of its
// life is a distinct monitor problem), unless it has other hard links:
// touching it would touch a file outside the spool. A missing one is the
// monitor's business.
func (c *Checkout) touchRegistry(now time.Time) {
	s := c.s
	var st unix.Stat_t
	if s.fs.Lstat(s.reg.fd, c.name, &st) != nil || st.Nlink > 1 {
		return
	}
	s.fs.Touch(s.reg.fd, c.name, now)
}

// putBackForeign checks, after a rename of name from src into dst, that
// the file now at dst is the one with inode ino. Every move of an entry
// goes by name after a check of its inode, and a worker that takes no lock
// may have put another file at the name in between (its own save of the
// entry): that file goes back to src, unreplaced, and putBackForeign
// reports true. A file gone from dst meanwhile is not this check's
// business: the mover's later checks (held) see it.
func (s *Spool) putBackForeign(src, dst dirRef, name string, ino uint64) (bool, error) {
	var st unix.Stat_t
	if err := s.fs.Lstat(dst.fd, name, &st); err != nil || st.Ino == ino {
		return false, nil
	}
	if err := s.fs.Rename(dst.fd, name, src.fd, name, true); err != nil {
		return true, fmt.Errorf("another worker's file moved by mistake could not be put back: %w", pathErr("rename "+dst.p(name)+" to", src.p(name), err))
	}
	return true, nil
}

// replace writes metadata to a fresh file in .tmp/ (fsynced at
// DurabilityFiles and above), locks it, and renames it over the checkout
// file, so that the checkout stays locked throughout. The old file's
// lock goes with its last link. The new file gets the old one's mode, as
// the reference's atomic writer keeps it. Callers hold c.mu.
func (c *Checkout) replace(metadata []byte) error {
	s := c.s
	path := c.qd.co.p(c.name)
	tmpName := tempName(c.name)
	tmp := s.tmp.p(tmpName)
	fd, err := s.fs.Open(s.tmp.fd, tmpName, openCreateNew, refFileMode)
	if err != nil {
		return pathErr("create", tmp, err)
	}
	fail := func(err error) error {
		s.fs.Close(fd)
		s.fs.Unlink(s.tmp.fd, tmpName)
		return err
	}
	if _, err := s.writeAll(fd, metadata, nil); err != nil {
		return fail(pathErr("write", tmp, err))
	}
	if s.durability >= DurabilityFiles {
		if err := s.fs.Fsync(fd); err != nil {
			return fail(pathErr("fsync", tmp, err))
		}
	}
	if err := s.fs.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return fail(pathErr("lock", tmp, err))
	}
	var st unix.Stat_t
	if err := s.fs.Fstat(fd, &st); err != nil {
		return fail(pathErr("stat", tmp, err))
	}
	if uint32(st.Mode)&0o7777 != c.mode {
		if err := s.fs.Fchmod(fd, c.mode); err != nil {
			return fail(pathErr("chmod", tmp, err))
		}
	}
	// The rename over the checkout file would recreate it if a worker that
	// takes no lock took the entry back while this file was written and
	// fsynced: checked again just before it.
	if err := c.held(); err != nil {
		return fail(err)
	}
	if err := s.fs.Rename(s.tmp.fd, tmpName, c.qd.co.fd, c.name, false); err != nil {
		return fail(pathErr("rename "+tmp+" to", path, err))
	}
	s.fs.Close(c.fd)
	c.fd, c.ino, c.metadata = fd, st.Ino, bytes.Clone(metadata)
	return nil
}

// Release puts the entry back into the queue it came from, unchanged: with
// the metadata read at checkout, even if a Save that failed to move the
// entry had already replaced it.
func (c *Checkout) Release() error { return c.Save(c.queue, c.orig) }

// Remove deletes the entry. The checkout file goes first: that single unlink
// is the moment the entry stops existing. Then the payload and the registry
// file go, and a missing one is not an error, so a remove interrupted by a
// crash leaves only files that the monitor reports as orphaned. Remove is
// idempotent: calling it again after it succeeded returns nil, and after it
// failed past the first unlink it finishes the job.
func (c *Checkout) Remove() error {
	s := c.s
	s.acquire()
	defer s.release()
	c.mu.Lock()
	defer c.mu.Unlock()
	// Counted for the rounds' gathering (enterChange) once it holds the
	// checkout, not while it waits for a WriteData that streams.
	s.enterChange(false)
	defer s.leaveChange(false)
	// Before this call's changes, see syncDirsSince (a remove resumed after
	// a failure already reported that failure for its first unlink).
	errGen := s.commit.begin()
	switch c.state {
	case coRemoved:
		return nil
	case coRemoving:
	default:
		if err := c.held(); err != nil {
			return err
		}
		c.touchRegistry(s.now())
		// Checked again just before the unlink, which goes by name: a
		// worker that takes no lock (async_smtp's start-up recovery)
		// may have taken the entry back since, and the payload must not
		// go with someone else's entry.
		if err := c.held(); err != nil {
			return err
		}
		if err := s.fs.Unlink(c.qd.co.fd, c.name); err != nil {
			if isNotExist(err) {
				return c.lost() // taken back in between: its payload stays
			}
			return pathErr("remove", c.qd.co.p(c.name), err)
		}
		c.finish(coRemoving)
	}
	if err := s.syncDirsSince(errGen, c.qd.co); err != nil {
		return fmt.Errorf("remove %s: %w", c.name, err)
	}
	for _, d := range []dirRef{s.data, s.reg} {
		if err := s.fs.Unlink(d.fd, c.name); err != nil && !isNotExist(err) {
			return pathErr("remove", d.p(c.name), err)
		}
	}
	if err := s.syncDirsSince(errGen, s.data, s.reg); err != nil {
		return fmt.Errorf("remove %s: %w", c.name, err)
	}
	c.state = coRemoved
	return nil
}

// Action says what WithEntry and the readers' Iter do with an entry after
// the callback: [Keep], [SaveTo] or [Remove] (the typed layer has the same
// three: [TypedKeep], [TypedSaveTo], [TypedRemove]). The zero Action is
// Keep(""): the entry goes back to its queue unchanged.
type Action struct {
	remove   bool
	queue    string
	metadata []byte // nil: unchanged
}

// Keep puts the entry into queue ("" for the queue it came from) with its
// metadata unchanged.
func Keep(queue string) Action { return Action{queue: queue} }

// SaveTo puts the entry into queue ("" for the queue it came from) with
// new metadata; nil metadata keeps it unchanged, as Keep does.
func SaveTo(queue string, metadata []byte) Action { return Action{queue: queue, metadata: metadata} }

// Remove removes the entry.
func Remove() Action { return Action{remove: true} }

// apply finishes c according to a. If f failed, or finishing fails, the
// entry goes back to its queue unchanged (or, failing that, is abandoned
// where it is) instead of being stranded in .checkout under this process's
// lock (the reference leaves it stuck).
func (c *Checkout) apply(a Action, ferr error) error {
	if ferr != nil {
		return errors.Join(ferr, c.abandon())
	}
	var err error
	if a.remove {
		err = c.Remove()
	} else {
		q := a.queue
		if q == "" {
			q = c.queue
		}
		err = c.Save(q, a.metadata)
	}
	if err != nil {
		c.abandon()
	}
	return err
}

// abandon ends a checkout that its caller cannot finish: it puts the entry
// back unchanged, and if even that fails, unlocks the checkout file where it
// is, so that Recover (here or in another process) can return it later.
// It returns the Release error, if any.
func (c *Checkout) abandon() error {
	err := c.Release()
	if err != nil {
		c.mu.Lock()
		if c.state == coHeld {
			c.finish(coLost)
		}
		c.mu.Unlock()
	}
	return err
}

// run calls f on c and finishes c as f says. If f panics, c is released
// before the panic goes on, so the entry is not stranded in .checkout.
func (c *Checkout) run(f func(*Checkout) (Action, error)) error {
	finished := false
	defer func() {
		if !finished {
			c.Release()
		}
	}()
	a, ferr := f(c)
	finished = true
	return c.apply(a, ferr)
}

// WithEntry checks entry name out of queue, runs f, and then saves or removes
// the entry as f's Action says. If f returns an error (or panics) the entry
// is released unchanged and the error returned. An entry another worker took
// first gives ErrNotFound. ctx bounds the checkout's waits, as in Checkout.
func (s *Spool) WithEntry(ctx context.Context, queue, name string, f func(*Checkout) (Action, error)) error {
	c, err := s.Checkout(ctx, queue, name)
	if err != nil {
		return err
	}
	return c.run(f)
}

package spool

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Checkout is an exclusive claim on an entry: its metadata file sits in
// <queue>/.checkout/ and this process holds an flock on it, so that Recover
// (in any process using this package) leaves it alone while the holder lives.
// Finish a Checkout with exactly one of Save, Remove or Release.
type Checkout struct {
	s        *Spool
	queue    string
	name     string
	metadata []byte

	mu   sync.Mutex
	fd   int // the checkout file, flocked; -1 once finished
	ino  uint64
	done bool
}

// Checkout claims entry name waiting in queue: it touches the registry and
// queue files (so each phase of an entry's life is a distinct monitor
// problem, as in the reference) and renames the queue file into
// <queue>/.checkout/. Exactly one caller, in any process, wins; the others get
// ErrNotFound.
func (s *Spool) Checkout(queue, name string) (*Checkout, error) {
	if err := s.checkEntry(queue, name); err != nil {
		return nil, err
	}
	s.acquire()
	defer s.release()
	src, dst := s.queuePath(queue, name), s.checkoutPath(queue, name)
	now := s.now()
	// Touch errors are ignored: a missing queue file shows in the rename.
	s.fs.Touch(s.registryPath(name), now)
	if err := s.fs.Touch(src, now); isNotExist(err) {
		return nil, fmt.Errorf("checkout: %w: %s in %s/%s", ErrNotFound, name, s.dir, queue)
	}
	if err := s.fs.Rename(src, dst, true); err != nil {
		if isNotExist(err) {
			return nil, fmt.Errorf("checkout: %w: %s in %s/%s", ErrNotFound, name, s.dir, queue)
		}
		if errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("checkout %s/%s: %w: %s is also checked out (duplicate entry)", queue, name, ErrExists, dst)
		}
		return nil, pathErr("checkout: rename "+src+" to", dst, err)
	}
	c := &Checkout{s: s, queue: queue, name: name, fd: -1}
	if err := c.lockAndRead(dst); err != nil {
		// The entry is ours but unreadable: put it back rather than strand it.
		s.fs.Rename(dst, src, true)
		return nil, err
	}
	if err := s.syncDirs(s.checkoutDir(queue), s.queueDir(queue)); err != nil {
		c.close()
		s.fs.Rename(dst, src, true)
		return nil, err
	}
	return c, nil
}

func (c *Checkout) lockAndRead(path string) error {
	s := c.s
	fd, err := s.fs.Open(path, openRead, 0)
	if err != nil {
		return pathErr("checkout: open", path, err)
	}
	if err := s.fs.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		s.fs.Close(fd)
		return pathErr("checkout: lock", path, err)
	}
	b, err := s.readFD(fd, path)
	if err != nil {
		s.fs.Close(fd)
		return pathErr("checkout: read", path, err)
	}
	var st unix.Stat_t
	if err := s.fs.Fstat(fd, &st); err != nil {
		s.fs.Close(fd)
		return pathErr("checkout: stat", path, err)
	}
	c.fd, c.ino, c.metadata = fd, st.Ino, b
	return nil
}

// Name returns the entry's name.
func (c *Checkout) Name() string { return c.name }

// Queue returns the queue the entry was checked out from.
func (c *Checkout) Queue() string { return c.queue }

// Metadata returns the entry's metadata as read at checkout.
func (c *Checkout) Metadata() []byte { return c.metadata }

// DataPath returns the path of the entry's payload.
func (c *Checkout) DataPath() string { return c.s.dataPath(c.name) }

// ReadData reads the entry's payload.
func (c *Checkout) ReadData() ([]byte, error) { return c.s.ReadData(c.name) }

// OpenData opens the entry's payload for reading.
func (c *Checkout) OpenData() (*os.File, error) { return c.s.OpenData(c.name) }

// Touch renews the checkout's mtime, telling the monitor and Recover's age
// check that the holder is still working on it.
func (c *Checkout) Touch() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.held(); err != nil {
		return err
	}
	p := c.s.checkoutPath(c.queue, c.name)
	if err := c.s.fs.Touch(p, c.s.now()); err != nil {
		return pathErr("touch", p, err)
	}
	return nil
}

// held verifies that the checkout file is still the one this Checkout
// claimed. Callers hold c.mu.
func (c *Checkout) held() error {
	if c.done {
		return fmt.Errorf("checkout %s: already finished", c.name)
	}
	var st unix.Stat_t
	p := c.s.checkoutPath(c.queue, c.name)
	if err := c.s.fs.Lstat(p, &st); err != nil || st.Ino != c.ino {
		c.close()
		return fmt.Errorf("%w: %s is no longer at %s", ErrLost, c.name, p)
	}
	return nil
}

// close releases the flock and marks the checkout finished. Callers hold c.mu.
func (c *Checkout) close() {
	if c.fd >= 0 {
		c.s.fs.Close(c.fd)
		c.fd = -1
	}
	c.done = true
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
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.held(); err != nil {
		return err
	}
	s.acquire()
	defer s.release()
	src := s.checkoutPath(c.queue, c.name)
	if metadata != nil && !bytes.Equal(metadata, c.metadata) {
		if err := s.replaceFile(src, c.name, metadata); err != nil {
			return fmt.Errorf("save %s: %w", c.name, err)
		}
	}
	now := s.now()
	s.fs.Touch(s.registryPath(c.name), now)
	s.fs.Touch(src, now)
	dst := s.queuePath(queue, c.name)
	if err := s.fs.Rename(src, dst, true); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("save %s: %w: %s", c.name, ErrExists, dst)
		}
		return pathErr("save: rename "+src+" to", dst, err)
	}
	c.close()
	if err := s.syncDirs(s.queueDir(queue), s.checkoutDir(c.queue)); err != nil {
		return fmt.Errorf("save %s: %w", c.name, err)
	}
	return nil
}

// Release puts the entry back into the queue it came from, unchanged.
func (c *Checkout) Release() error { return c.Save(c.queue, nil) }

// Remove deletes the entry. The checkout file goes first: that single unlink
// is the moment the entry stops existing. Then the payload and the registry
// file go, and a missing one is not an error, so a remove interrupted by a
// crash leaves only files that the monitor reports as orphaned.
func (c *Checkout) Remove() error {
	s := c.s
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.held(); err != nil {
		return err
	}
	s.acquire()
	defer s.release()
	s.fs.Touch(s.registryPath(c.name), s.now())
	p := s.checkoutPath(c.queue, c.name)
	if err := s.fs.Unlink(p); err != nil && !isNotExist(err) {
		return pathErr("remove", p, err)
	}
	c.close()
	if err := s.syncDirs(s.checkoutDir(c.queue)); err != nil {
		return fmt.Errorf("remove %s: %w", c.name, err)
	}
	for _, p := range []string{s.dataPath(c.name), s.registryPath(c.name)} {
		if err := s.fs.Unlink(p); err != nil && !isNotExist(err) {
			return pathErr("remove", p, err)
		}
	}
	return s.syncDirs(s.dir+"/"+DataDir, s.dir+"/"+RegistryDir)
}

// Action says what WithEntry and the readers' Iter do with an entry after the
// callback: save it (with new metadata, or nil to keep it) into a queue, or remove it.
type Action struct {
	remove   bool
	queue    string
	metadata []byte
}

// SaveTo returns the action that saves the entry into queue with metadata
// (nil keeps the metadata as it is).
func SaveTo(queue string, metadata []byte) Action { return Action{queue: queue, metadata: metadata} }

// RemoveEntry returns the action that removes the entry.
func RemoveEntry() Action { return Action{remove: true} }

// apply finishes c according to a. If f failed, the entry goes back to its
// queue unchanged instead of being stranded in .checkout (the reference leaves
// it stuck).
func (c *Checkout) apply(a Action, ferr error) error {
	if ferr != nil {
		if err := c.Release(); err != nil {
			return errors.Join(ferr, err)
		}
		return ferr
	}
	if a.remove {
		return c.Remove()
	}
	q := a.queue
	if q == "" {
		q = c.queue
	}
	return c.Save(q, a.metadata)
}

// WithEntry checks entry name out of queue, runs f, and then saves or removes
// the entry as f's Action says. If f returns an error the entry is released
// unchanged and the error returned. An entry another worker took first gives
// ErrNotFound.
func (s *Spool) WithEntry(queue, name string, f func(*Checkout) (Action, error)) error {
	c, err := s.Checkout(queue, name)
	if err != nil {
		return err
	}
	a, ferr := f(c)
	return c.apply(a, ferr)
}

// Recovered names an entry that Recover returned to its queue.
type Recovered struct {
	Queue   string
	Name    string
	ModTime time.Time
}

// Recover returns to their queues the checked-out entries whose checkout file
// is older than olderThan (by mtime, strictly) and that no live holder has
// locked: a Checkout held by a running process of this package keeps its
// flock, so Recover is safe beside live workers. (Holders that do not flock,
// such as OCaml multispool workers, are protected by the age alone.) The
// rename back uses RENAME_NOREPLACE, so an entry that is somehow also in its
// queue is left for an operator.
func (s *Spool) Recover(olderThan time.Duration) ([]Recovered, error) {
	var out []Recovered
	var errs []error
	now := s.now()
	for _, q := range s.Queues() {
		names, err := s.listDir(s.checkoutDir(q))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, name := range names {
			r, ok, err := s.recoverOne(q, name, now, olderThan)
			if err != nil {
				errs = append(errs, err)
			}
			if ok {
				out = append(out, r)
			}
		}
	}
	return out, errors.Join(errs...)
}

func (s *Spool) recoverOne(q, name string, now time.Time, olderThan time.Duration) (Recovered, bool, error) {
	s.acquire()
	defer s.release()
	p := s.checkoutPath(q, name)
	var st unix.Stat_t
	if err := s.fs.Lstat(p, &st); err != nil {
		if isNotExist(err) {
			return Recovered{}, false, nil
		}
		return Recovered{}, false, pathErr("recover: stat", p, err)
	}
	mtime := mtimeOf(&st)
	if st.Mode&unix.S_IFMT != unix.S_IFREG || now.Sub(mtime) <= olderThan {
		return Recovered{}, false, nil
	}
	fd, err := s.fs.Open(p, openRead, 0)
	if err != nil {
		if isNotExist(err) {
			return Recovered{}, false, nil
		}
		return Recovered{}, false, pathErr("recover: open", p, err)
	}
	defer s.fs.Close(fd)
	if err := s.fs.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return Recovered{}, false, nil // a live holder
	}
	var fst unix.Stat_t
	if err := s.fs.Fstat(fd, &fst); err != nil {
		return Recovered{}, false, pathErr("recover: stat", p, err)
	}
	if err := s.fs.Lstat(p, &st); err != nil || st.Ino != fst.Ino {
		return Recovered{}, false, nil // finished meanwhile
	}
	s.fs.Touch(s.registryPath(name), now)
	s.fs.Touch(p, now)
	dst := s.queuePath(q, name)
	if err := s.fs.Rename(p, dst, true); err != nil {
		return Recovered{}, false, pathErr("recover: rename "+p+" to", dst, err)
	}
	if err := s.syncDirs(s.queueDir(q), s.checkoutDir(q)); err != nil {
		return Recovered{}, true, err
	}
	return Recovered{Queue: q, Name: name, ModTime: mtime}, true, nil
}

package spool

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// EntryInfo describes an entry as found on disk.
type EntryInfo struct {
	Name  string
	Queue string
	// CheckedOut is true when the entry is in <queue>/.checkout/.
	CheckedOut bool
	// ModTime is the metadata file's mtime: the last enqueue, checkout,
	// save or touch.
	ModTime time.Time
	// MetadataSize and DataSize are the sizes of the metadata and data files;
	// DataSize is -1 when the data file is missing.
	MetadataSize int64
	DataSize     int64
}

// List returns the names of the entries waiting in queue, sorted bytewise.
// It does not stat them. Like the reference it lists every name but
// .checkout, dot-names included (see ValidateExistingName); it skips names
// that the directory listing says are directories or symbolic links, which
// cannot be entries. A queue whose directory has gone gives an error
// wrapping ErrUnknownQueue.
func (s *Spool) List(queue string) ([]string, error) {
	if err := s.checkQueue(queue); err != nil {
		return nil, err
	}
	qd, err := s.qdirs(queue)
	if err != nil {
		return nil, err
	}
	names, err := s.listDir(qd.dir)
	if isNotExist(err) {
		return nil, queueGone(queue, s.queueDir(queue), err)
	}
	return names, err
}

// ListCheckedOut returns the names of queue's checked-out entries, sorted,
// skipping what List skips.
func (s *Spool) ListCheckedOut(queue string) ([]string, error) {
	if err := s.checkQueue(queue); err != nil {
		return nil, err
	}
	qd, err := s.qdirs(queue)
	if err != nil {
		return nil, err
	}
	names, err := s.listDir(qd.co)
	if isNotExist(err) {
		return nil, queueGone(queue, s.checkoutDir(queue), err)
	}
	return names, err
}

func (s *Spool) listDir(d dirRef) ([]string, error) {
	s.acquire()
	ents, err := s.fs.ReadDir(d.fd)
	s.release()
	if err != nil {
		return nil, pathErr("list", d.path, err)
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		if e.Name == CheckoutDir {
			continue
		}
		if e.Type != unix.DT_REG && e.Type != unix.DT_UNKNOWN {
			continue
		}
		names = append(names, e.Name)
	}
	slices.Sort(names)
	return names, nil
}

// Find returns the queue that holds entry name and whether it is checked
// out, looking in every queue. It returns ErrNotFound when no queue holds it.
func (s *Spool) Find(name string) (queue string, checkedOut bool, err error) {
	if err := s.isOpen(); err != nil {
		return "", false, err
	}
	if err := ValidateExistingName(name); err != nil {
		return "", false, fmt.Errorf("entry: %w", err)
	}
	s.acquire()
	defer s.release()
	return s.find(name)
}

func (s *Spool) find(name string) (queue string, checkedOut bool, err error) {
	for _, q := range s.Queues() {
		var st unix.Stat_t
		qd, err := s.qdirs(q)
		if err != nil {
			continue
		}
		if s.fs.Lstat(qd.dir.fd, name, &st) == nil {
			return q, false, nil
		}
		if s.fs.Lstat(qd.co.fd, name, &st) == nil {
			return q, true, nil
		}
	}
	return "", false, fmt.Errorf("%w: %s in %s", ErrNotFound, name, s.dir)
}

// Stat describes entry name in queue, waiting or checked out.
func (s *Spool) Stat(queue, name string) (EntryInfo, error) {
	if err := s.checkEntry(queue, name); err != nil {
		return EntryInfo{}, err
	}
	s.acquire()
	defer s.release()
	info := EntryInfo{Name: name, Queue: queue, DataSize: -1}
	var st unix.Stat_t
	qd, err := s.qdirs(queue)
	if err != nil {
		return EntryInfo{}, err
	}
	err = s.fs.Lstat(qd.dir.fd, name, &st)
	if isNotExist(err) {
		info.CheckedOut = true
		err = s.fs.Lstat(qd.co.fd, name, &st)
	}
	if isNotExist(err) {
		return EntryInfo{}, fmt.Errorf("%w: %s in %s/%s", ErrNotFound, name, s.dir, queue)
	}
	if err != nil {
		return EntryInfo{}, pathErr("stat", s.queuePath(queue, name), err)
	}
	info.ModTime = mtimeOf(&st)
	info.MetadataSize = st.Size
	if s.fs.Lstat(s.data.fd, name, &st) == nil {
		info.DataSize = st.Size
	}
	return info, nil
}

// ReadMetadata reads the metadata of entry name waiting in queue (or, if it
// is checked out, of its checkout file), without claiming it.
func (s *Spool) ReadMetadata(queue, name string) ([]byte, error) {
	if err := s.checkEntry(queue, name); err != nil {
		return nil, err
	}
	s.acquire()
	defer s.release()
	qd, err := s.qdirs(queue)
	if err != nil {
		return nil, err
	}
	b, err := s.readFile(qd.dir, name, s.maxMeta)
	if isNotExist(err) {
		b, err = s.readFile(qd.co, name, s.maxMeta)
	}
	if isNotExist(err) {
		return nil, fmt.Errorf("%w: %s in %s/%s", ErrNotFound, name, s.dir, queue)
	}
	if errors.Is(err, ErrTooLarge) {
		return nil, fmt.Errorf("read metadata: %w", err)
	}
	if err != nil {
		return nil, pathErr("read", s.queuePath(queue, name), err)
	}
	return b, nil
}

// DataPath returns the path of entry name's payload, for senders that pass
// the file to sendfile(2) or similar. A path re-resolves its components
// when used, so in a spool that others can write prefer OpenData, which
// opens the payload relative to the spool's open .data directory. It returns "" for an invalid name, so
// that it never names a path outside the spool.
func (s *Spool) DataPath(name string) string {
	if ValidateExistingName(name) != nil {
		return ""
	}
	return s.dataPath(name)
}

// ReadData reads entry name's payload.
func (s *Spool) ReadData(name string) ([]byte, error) {
	if err := s.isOpen(); err != nil {
		return nil, err
	}
	if err := ValidateExistingName(name); err != nil {
		return nil, fmt.Errorf("entry: %w", err)
	}
	s.acquire()
	defer s.release()
	b, err := s.readFile(s.data, name, -1)
	if isNotExist(err) {
		return nil, fmt.Errorf("%w: no data for %s in %s", ErrNotFound, name, s.dir)
	}
	if err != nil {
		return nil, pathErr("read", s.dataPath(name), err)
	}
	return b, nil
}

// OpenData opens entry name's payload for reading (never through a symlink).
func (s *Spool) OpenData(name string) (*os.File, error) {
	if err := s.isOpen(); err != nil {
		return nil, err
	}
	if err := ValidateExistingName(name); err != nil {
		return nil, fmt.Errorf("entry: %w", err)
	}
	s.acquire()
	fd, err := s.fs.Open(s.data.fd, name, openRead, 0)
	s.release()
	if isNotExist(err) {
		return nil, fmt.Errorf("%w: no data for %s in %s", ErrNotFound, name, s.dir)
	}
	if err != nil {
		return nil, pathErr("open", s.dataPath(name), err)
	}
	return os.NewFile(uintptr(fd), s.dataPath(name)), nil
}

// WriteMetadata atomically replaces the metadata of entry name waiting in
// queue. Unlike the reference's Direct.save it never races a worker: it
// checks the entry out, replaces the metadata and puts it back, and fails
// with ErrCheckedOut if a worker holds it.
func (s *Spool) WriteMetadata(queue, name string, metadata []byte) error {
	c, err := s.claim(queue, name, true)
	if err != nil {
		return err
	}
	return c.apply(SaveTo(queue, metadata), nil)
}

// Remove removes entry name waiting in queue: its metadata, payload and
// registry file. It first claims the entry by checkout, so it never destroys
// an entry that a worker holds (ErrCheckedOut). Removing an entry that is no
// longer there succeeds: Remove is idempotent. It never reads the metadata,
// so an entry of any size can be removed; an entry without a registry file
// (ErrUnregistered) or with a hard-linked file (ErrLinked) is left alone.
func (s *Spool) Remove(queue, name string) error {
	c, err := s.claim(queue, name, false)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return c.apply(Remove(), nil)
}

// Move moves entry name from queue to dst with its metadata unchanged,
// claiming it first, so it is safe beside workers (ErrCheckedOut if one
// holds it). Like Remove it never reads the metadata.
func (s *Spool) Move(queue, name, dst string) error {
	if err := s.checkQueue(dst); err != nil {
		return err
	}
	c, err := s.claim(queue, name, false)
	if err != nil {
		return err
	}
	return c.apply(Keep(dst), nil)
}

// claim checks entry name out of queue (reading its metadata when read is
// set), telling "held by a worker" (ErrCheckedOut) from "not there"
// (ErrNotFound). A claim can lose to a worker that checks the entry out and
// saves it straight back; when the entry is in the queue again after a
// loss, claim tries again.
func (s *Spool) claim(queue, name string, read bool) (*Checkout, error) {
	if err := s.checkEntry(queue, name); err != nil {
		return nil, err
	}
	if err := s.writable("checkout", name); err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		s.acquire()
		c, err := s.checkout(queue, name, true, read)
		s.release()
		if !errors.Is(err, ErrNotFound) {
			return c, err
		}
		qd, qerr := s.qdirs(queue)
		if qerr != nil {
			return nil, qerr
		}
		var st unix.Stat_t
		var waiting, held bool
		s.acquire()
		// Workers may move it between the queue and .checkout while we
		// look (saved back after we looked in the queue, taken again
		// before we look there once more): look a few times before
		// calling it gone.
		for look := 0; look < claimLooks && !waiting && !held; look++ {
			waiting = s.fs.Lstat(qd.dir.fd, name, &st) == nil
			held = !waiting && s.fs.Lstat(qd.co.fd, name, &st) == nil
		}
		s.release()
		switch {
		case waiting && attempt < 3:
			continue
		case waiting:
			// Still waiting after every retry: the checkout cannot work
			// (its .checkout directory is gone, say). That is an error,
			// never "not found", or Remove would call a waiting entry
			// removed.
			return nil, fmt.Errorf("claim %s in %s/%s: still waiting after %d checkouts said it was gone: %v", name, s.dir, queue, attempt+1, err)
		case held:
			return nil, fmt.Errorf("%w: %s in %s/%s", ErrCheckedOut, name, s.dir, queue)
		}
		return nil, err
	}
}

// claimLooks is how many times claim looks for an entry in the queue and
// in .checkout before it takes the entry for gone.
const claimLooks = 4

func (s *Spool) checkEntry(queue, name string) error {
	if err := s.checkQueue(queue); err != nil {
		return err
	}
	if err := ValidateExistingName(name); err != nil {
		return fmt.Errorf("entry: %w", err)
	}
	return nil
}

package spool

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// Recovered names an entry that Recover returned to its queue.
type Recovered struct {
	Queue   string
	Name    string
	ModTime time.Time
}

// MinRecoverAge is the youngest checkout age that Recover accepts unless
// RecoverOptions.WorkersStopped is set. Workers of this package hold an flock
// on their checkouts, so Recover never takes theirs whatever the age; workers
// of the OCaml reference take no lock and never refresh a checkout's mtime,
// so for them the age is the only protection, and a checkout younger than a
// minute is most likely held by a live one.
const MinRecoverAge = time.Minute

// RecoverOptions say what Recover may assume about the spool's workers.
type RecoverOptions struct {
	// WorkersStopped states that every worker of another implementation
	// (one that takes no lock, such as the OCaml multispool) is stopped, as
	// async_smtp's start-up recovery assumes. It allows any age, 0 included.
	WorkersStopped bool
}

// Recover returns to their queues the checked-out entries whose checkout file
// is older than olderThan (by mtime, strictly) and that no live holder has
// locked. Every Checkout made by this package holds an flock on its file
// from before the file enters .checkout until it leaves, so Recover never
// takes a live checkout of this package, whatever the age. Workers of the
// OCaml reference take no lock: beside them the age is the only protection,
// so an olderThan below MinRecoverAge is refused with ErrRecoverTooYoung
// unless o.WorkersStopped says no such worker runs. The rename back uses
// RENAME_NOREPLACE, so an entry that is somehow also in its queue is left
// for an operator.
//
// A worker of this package whose checkout was nevertheless taken (by
// async_smtp's start-up recovery, uncheckout_all_entries, which takes every
// checkout whoever holds it, or by hand) gets ErrLost from Save, Remove and
// Touch: it never moves or deletes the entry that someone else now holds.
//
// A done ctx stops the walk before the next entry: the entries returned so
// far stay returned, and the error wraps ctx.Err(). An entry moved back
// whose directories then failed to sync is returned too, beside that
// error: it is in its queue, perhaps not durably.
func (s *Spool) Recover(ctx context.Context, olderThan time.Duration, o RecoverOptions) ([]Recovered, error) {
	if olderThan < MinRecoverAge && !o.WorkersStopped {
		return nil, fmt.Errorf("recover in %s: %w: %v is below %v; workers of other implementations (the OCaml multispool) take no lock, so only the age protects their checkouts; set RecoverOptions.WorkersStopped when every such worker is stopped",
			s.dir, ErrRecoverTooYoung, olderThan, MinRecoverAge)
	}
	if err := s.writable("recover", ""); err != nil {
		return nil, err
	}
	if err := s.isOpen(); err != nil {
		return nil, err
	}
	var out []Recovered
	var errs []error
	now := s.now()
	for _, q := range s.Queues() {
		if err := ctx.Err(); err != nil {
			return out, errors.Join(append(errs, fmt.Errorf("recover in %s: %w", s.dir, err))...)
		}
		qd, err := s.qdirs(q)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		names, err := s.listDir(qd.co)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, name := range names {
			if err := ctx.Err(); err != nil {
				return out, errors.Join(append(errs, fmt.Errorf("recover in %s: %w", s.dir, err))...)
			}
			r, ok, err := s.recoverOne(q, qd, name, now, olderThan)
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

func (s *Spool) recoverOne(q string, qd *queueDirs, name string, now time.Time, olderThan time.Duration) (Recovered, bool, error) {
	s.acquireChange()
	defer s.releaseChange()
	p := qd.co.p(name)
	var st unix.Stat_t
	if err := s.fs.Lstat(qd.co.fd, name, &st); err != nil {
		if isNotExist(err) {
			return Recovered{}, false, nil
		}
		return Recovered{}, false, pathErr("recover: stat", p, err)
	}
	mtime := mtimeOf(&st)
	if st.Mode&unix.S_IFMT != unix.S_IFREG || now.Sub(mtime) <= olderThan {
		return Recovered{}, false, nil
	}
	fd, err := s.fs.Open(qd.co.fd, name, openRead, 0)
	if err != nil {
		if isNotExist(err) {
			return Recovered{}, false, nil
		}
		return Recovered{}, false, pathErr("recover: open", p, err)
	}
	locked := true
	defer func() {
		if locked {
			s.fs.Close(fd)
		}
	}()
	if err := s.fs.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return Recovered{}, false, nil // a live holder
		}
		return Recovered{}, false, pathErr("recover: lock", p, err)
	}
	var fst unix.Stat_t
	if err := s.fs.Fstat(fd, &fst); err != nil {
		return Recovered{}, false, pathErr("recover: stat", p, err)
	}
	if err := s.fs.Lstat(qd.co.fd, name, &st); err != nil || st.Ino != fst.Ino {
		return Recovered{}, false, nil // finished meanwhile
	}
	if fst.Nlink > 1 {
		return Recovered{}, false, fmt.Errorf("recover %s: %w (%d links); left in place", p, ErrLinked, fst.Nlink)
	}
	errGen := s.commit.begin() // before the changes, see syncDirsSince
	var rst unix.Stat_t
	if s.fs.Lstat(s.reg.fd, name, &rst) == nil && rst.Nlink <= 1 {
		s.fs.Touch(s.reg.fd, name, now)
	}
	s.fs.TouchFD(fd, now)
	dst := qd.dir.p(name)
	if err := s.fs.Rename(qd.co.fd, name, qd.dir.fd, name, true); err != nil {
		if isNotExist(err) {
			return Recovered{}, false, nil
		}
		return Recovered{}, false, pathErr("recover: rename "+p+" to", dst, err)
	}
	// A worker that takes no lock may have saved the checkout over (a new
	// file, its own) since the check above.
	if foreign, err := s.putBackForeign(qd.co, qd.dir, name, fst.Ino); foreign || err != nil {
		if err != nil {
			err = fmt.Errorf("recover %s: %w", p, err)
		}
		return Recovered{}, false, err
	}
	// Unlock before the fsyncs: a worker may claim the entry at once.
	s.fs.Close(fd)
	locked = false
	// Moved, durable or not: the caller learns which entry the error is about.
	r := Recovered{Queue: q, Name: name, ModTime: mtime}
	if err := s.syncDirsSince(errGen, qd.dir, qd.co); err != nil {
		return r, true, err
	}
	return r, true, nil
}

package spool

import (
	"context"
	"errors"
	"fmt"
	"io"

	"golang.org/x/sys/unix"
)

// Reserve reserves a fresh entry name from gen (the spool's default generator
// when gen is nil) by creating .registry/<name> with O_CREAT|O_EXCL, trying
// attempt 0, 1, 2, ... up to the spool's bound. The name can then be passed
// to Enqueue as EnqueueOptions.Name, as async_smtp does to hand out ids before
// the message is written.
func (s *Spool) Reserve(gen NameGenerator) (string, error) {
	if err := s.isOpen(); err != nil {
		return "", err
	}
	if err := s.writable("reserve", ""); err != nil {
		return "", err
	}
	s.acquireChange()
	defer s.releaseChange()
	errGen := s.commit.begin() // before the change, see syncDirsSince
	name, err := s.reserve(gen)
	if err != nil {
		return "", err
	}
	if err := s.syncDirsSince(errGen, s.reg); err != nil {
		s.fs.Unlink(s.reg.fd, name)
		return "", err
	}
	return name, nil
}

func (s *Spool) reserve(gen NameGenerator) (string, error) {
	if gen == nil {
		gen = s.names
	}
	for attempt := 0; attempt < s.maxReserve; attempt++ {
		name, err := gen.Next(attempt)
		if err != nil {
			return "", fmt.Errorf("name generator: %w", err)
		}
		if err := ValidateName(name); err != nil {
			return "", fmt.Errorf("name generator: %w", err)
		}
		fd, err := s.createFile(s.reg, name, s.regMode)
		if errors.Is(err, unix.EEXIST) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("reserve: %w", err)
		}
		if err := s.fs.Close(fd); err != nil {
			s.fs.Unlink(s.reg.fd, name)
			return "", pathErr("close", s.reg.p(name), err)
		}
		return name, nil
	}
	return "", fmt.Errorf("reserve in %s: %w (%d)", s.dir, ErrReserveExhausted, s.maxReserve)
}

// EnqueueOptions choose how Enqueue names the entry.
type EnqueueOptions struct {
	// Name, if set, is used instead of reserving a new one: either a name
	// returned by Reserve, or a caller-chosen name (reserved on the way). A name
	// that a live entry (or another in-flight enqueue) holds is refused with
	// ErrExists and nothing of that entry is touched.
	Name string
	// Names generates the name when Name is empty; nil means the spool's generator.
	Names NameGenerator
}

// Enqueue adds an entry to queue with the given metadata and the payload read
// from data (nil for an empty payload), and returns its name. The protocol is
// the reference's: reserve .registry/<name>, write .tmp/<name> and
// .data/<name>, then rename .tmp/<name> to <queue>/<name>, which makes the
// entry visible at once and atomically. At DurabilityFull the registry and
// data directories are fsynced before that rename and the queue and tmp
// directories after it, so a visible entry is never without its registry file
// or payload after a power loss. On failure Enqueue removes only the files
// that this call created.
//
// A done ctx stops Enqueue while it waits for a slot, between chunks of data
// and before the rename; it then removes what it wrote and returns an error
// wrapping ctx.Err(). Once the entry is visible it is not taken back.
func (s *Spool) Enqueue(ctx context.Context, queue string, metadata []byte, data io.Reader, o EnqueueOptions) (string, error) {
	if data != nil {
		data = ctxReader{ctx, data}
	}
	return s.enqueue(ctx, queue, metadata, nil, data, o)
}

// EnqueueBytes is Enqueue with the payload in memory. It takes a ctx like
// Enqueue because it waits the same way (for a slot under
// Options.MaxConcurrentOps, and for fsyncs), so the two stay interchangeable.
func (s *Spool) EnqueueBytes(ctx context.Context, queue string, metadata, data []byte, o EnqueueOptions) (string, error) {
	return s.enqueue(ctx, queue, metadata, data, nil, o)
}

// ctxReader ends a stream once ctx is done. writeAll reads in chunks, so
// this is the check between chunks.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func (s *Spool) enqueue(ctx context.Context, queue string, metadata, dataBytes []byte, data io.Reader, o EnqueueOptions) (string, error) {
	if err := s.checkQueue(queue); err != nil {
		return "", err
	}
	if err := s.writable("enqueue into", queue); err != nil {
		return "", err
	}
	qd, err := s.qdirs(queue)
	if err != nil {
		return "", err
	}
	if err := s.acquireCtx(ctx); err != nil {
		return "", fmt.Errorf("enqueue into %s/%s: %w", s.dir, queue, err)
	}
	defer s.release()
	// An enqueue counts itself among the operations a round about to
	// start waits for (enterChange) from here when its payload is in
	// memory, and only once the payload is written when it streams from a
	// reader, which may be slow.
	if data == nil {
		s.enterChange(true)
		defer s.leaveChange(true)
	}

	// The error generation is read before the first change (the registry
	// file), so that a shared flush failing after it fails this enqueue.
	var files staged // payload and metadata, open until commitStaged made them durable
	files.begin(s)
	var name string
	createdRegistry := false
	if o.Name != "" {
		name = o.Name
		if err := ValidateName(name); err != nil {
			return "", fmt.Errorf("entry: %w", err)
		}
		// A name whose payload exists (a live entry, another enqueue in
		// flight, an orphan) is refused before a registry file is made:
		// one left behind would make an orphan payload look like a
		// reservation that was rolled back (repair deletes those).
		var dst unix.Stat_t
		if err := s.fs.Lstat(s.data.fd, name, &dst); err == nil {
			if q, _, err := s.find(name); err == nil {
				return "", fmt.Errorf("enqueue %s: %w in %s/%s", name, ErrExists, s.dir, q)
			}
			return "", fmt.Errorf("enqueue %s: %w: %s", name, ErrExists, s.data.p(name))
		} else if !isNotExist(err) {
			return "", pathErr("enqueue: stat", s.data.p(name), err)
		}
		fd, err := s.createFile(s.reg, name, s.regMode)
		switch {
		case err == nil:
			createdRegistry = true
			if err := s.fs.Close(fd); err != nil {
				s.fs.Unlink(s.reg.fd, name)
				return "", pathErr("close", s.reg.p(name), err)
			}
		case errors.Is(err, unix.EEXIST):
			// Reserved earlier (by Reserve) or live. A live entry is in a
			// queue or checkout directory; the O_EXCL data file below and the
			// RENAME_NOREPLACE into the queue catch the rest.
			if q, _, err := s.find(name); err == nil {
				return "", fmt.Errorf("enqueue %s: %w in %s/%s", name, ErrExists, s.dir, q)
			}
		default:
			return "", fmt.Errorf("reserve: %w", err)
		}
	} else {
		var err error
		if name, err = s.reserve(o.Names); err != nil {
			return "", err
		}
		createdRegistry = true
	}

	var created []dirRef // the directories where this call created name, for cleanup
	fail := func(err error) (string, error) {
		files.close(s)
		for _, d := range created {
			s.fs.Unlink(d.fd, name)
		}
		if createdRegistry {
			s.fs.Unlink(s.reg.fd, name)
		}
		return "", fmt.Errorf("enqueue %s into %s/%s: %w", name, s.dir, queue, err)
	}

	// The payload goes first and with O_EXCL: a live entry always has its
	// .data/<name>, so a caller-supplied name that is in use stops here.
	// writeStaged removes what it created when it fails, and a name it
	// failed to create may be another writer's: a directory joins created
	// only once its file is written.
	dataPath := s.data.p(name)
	if _, err := s.writeStaged(&files, s.data, name, dataBytes, data); err != nil {
		if errors.Is(err, unix.EEXIST) {
			if o.Name != "" {
				// Another enqueue of the same caller-supplied name may
				// have found our fresh registry file, taken it for a
				// reservation, and written this payload: the registry
				// file is its now. A generated name's registry file is
				// ours (reserve created it with O_EXCL; the payload is
				// an orphan) and goes.
				createdRegistry = false
			}
			return fail(fmt.Errorf("%w: %s", ErrExists, dataPath))
		}
		return fail(err)
	}
	created = append(created, s.data)
	if data != nil {
		s.enterChange(true)
		defer s.leaveChange(true)
	}

	tmpPath := s.tmp.p(name)
	if _, err := s.writeStaged(&files, s.tmp, name, metadata, nil); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return fail(fmt.Errorf("%w: %s", ErrExists, tmpPath))
		}
		return fail(err)
	}
	created = append(created, s.tmp)

	if err := s.commitStaged(&files, s.reg, s.data); err != nil {
		return fail(err)
	}
	// The last moment the entry can still be withdrawn unseen.
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	qpath := qd.dir.p(name)
	if err := s.fs.Rename(s.tmp.fd, name, qd.dir.fd, name, true); err != nil {
		if errors.Is(err, unix.EEXIST) {
			err = fmt.Errorf("%w: %s", ErrExists, qpath)
		} else {
			err = pathErr("rename "+tmpPath+" to", qpath, err)
		}
		return fail(err)
	}
	// From here on the entry is acknowledged-visible; a failure to fsync is
	// reported but the entry is not taken back, since a consumer may already
	// hold it.
	if err := s.syncDirsSince(files.gen, qd.dir, s.tmp); err != nil {
		return name, fmt.Errorf("enqueue %s: entry is visible but not durable: %w", name, err)
	}
	return name, nil
}

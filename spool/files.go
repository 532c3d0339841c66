package spool

import (
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"

	"golang.org/x/sys/unix"
)

const (
	// openRead never follows a symlink and never blocks on a FIFO that
	// someone put in the spool (fstat then rejects it).
	openRead      = unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOFOLLOW | unix.O_NONBLOCK
	openCreateNew = unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_CLOEXEC | unix.O_NOFOLLOW
	openDir       = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC
)

// writeNew creates path, which must not exist (O_EXCL, never through a
// symlink), writes what r yields and, at DurabilityFiles and above, fsyncs it.
// It returns the number of bytes written. On error the partly written file is
// left for the caller to remove: only the caller knows it created it.
func (s *Spool) writeNew(path string, b []byte, r io.Reader) (int64, error) {
	fd, err := s.fs.Open(path, openCreateNew, 0o644)
	if err != nil {
		return 0, pathErr("create", path, err)
	}
	n, err := s.writeAll(fd, b, r)
	if err != nil {
		s.fs.Close(fd)
		return n, pathErr("write", path, err)
	}
	if s.durability >= DurabilityFiles {
		if err := s.fs.Fsync(fd); err != nil {
			s.fs.Close(fd)
			return n, pathErr("fsync", path, err)
		}
	}
	if err := s.fs.Close(fd); err != nil {
		return n, pathErr("close", path, err)
	}
	return n, nil
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

// readFile reads the whole regular file at path without following a symlink.
func (s *Spool) readFile(path string) ([]byte, error) {
	fd, err := s.fs.Open(path, openRead, 0)
	if err != nil {
		return nil, err
	}
	defer s.fs.Close(fd)
	return s.readFD(fd, path)
}

func (s *Spool) readFD(fd int, path string) ([]byte, error) {
	var st unix.Stat_t
	if err := s.fs.Fstat(fd, &st); err != nil {
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	return s.readSized(fd, st.Size)
}

// readSized reads fd to its end; size is the expected size (from fstat),
// used to size the buffer so that a file that did not change is read with
// one read(2) and one more that reports the end.
func (s *Spool) readSized(fd int, size int64) ([]byte, error) {
	buf := make([]byte, 0, size+1)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := s.fs.Read(fd, buf[len(buf):cap(buf)])
		if n > 0 {
			buf = buf[:len(buf)+n]
		}
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return buf, nil
		}
	}
}

// syncDir fsyncs the directory at path, making the creations, renames and
// unlinks in it durable.
func (s *Spool) syncDir(path string) error {
	fd, err := s.fs.Open(path, openDir, 0)
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

// syncDirs fsyncs each directory, at DurabilityFull only.
func (s *Spool) syncDirs(paths ...string) error {
	if s.durability < DurabilityFull {
		return nil
	}
	for _, p := range paths {
		if err := s.syncDir(p); err != nil {
			return err
		}
	}
	return nil
}

// uniqueTmp returns a fresh path in .tmp/ for staging a write for entry name:
// the name, a dot and random hex, as async's Writer.save names its temp files.
func (s *Spool) uniqueTmp(name string) string {
	return s.tmpPath(name + "." + strconv.FormatUint(rand.Uint64(), 16))
}

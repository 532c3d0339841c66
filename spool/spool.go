package spool

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/spool-agent/spool-agent/internal/fsys"
	"golang.org/x/sys/unix"
)

// Names of the spool's own directories, as multispool lays them out.
const (
	RegistryDir = ".registry"
	TmpDir      = ".tmp"
	DataDir     = ".data"
	CheckoutDir = ".checkout"
)

// Durability selects which fsyncs an operation issues before it returns.
type Durability int

const (
	// DurabilityDefault (the zero value) means DefaultDurability.
	DurabilityDefault Durability = iota
	// DurabilityNone issues no fsync: an acknowledged operation survives a
	// process crash (the page cache keeps it) but not a power loss.
	DurabilityNone
	// DurabilityFiles fsyncs every file written (metadata and data), as the
	// reference does. Directory changes (the reservation, the renames, the
	// unlinks) may still be lost on power loss.
	DurabilityFiles
	// DurabilityFull fsyncs the files written and every directory an
	// operation changed, ordered so that after a power loss an entry visible
	// in a queue has its registry file and data: an acknowledged enqueue,
	// move or remove survives power loss.
	DurabilityFull
)

// DefaultDurability is DurabilityFull: people put mail and jobs in spools, and
// an acknowledged enqueue that a power cut loses is the worst bug a spool can
// have. The cost is measured in the README's benchmark table.
const DefaultDurability = DurabilityFull

// String returns the durability's configuration name.
func (d Durability) String() string {
	switch d {
	case DurabilityNone:
		return "none"
	case DurabilityFiles:
		return "files"
	case DurabilityFull:
		return "full"
	case DurabilityDefault:
		return "default"
	}
	return fmt.Sprintf("Durability(%d)", int(d))
}

// ParseDurability parses "none", "files" or "full".
func ParseDurability(s string) (Durability, error) {
	for _, d := range []Durability{DurabilityNone, DurabilityFiles, DurabilityFull} {
		if d.String() == s {
			return d, nil
		}
	}
	return 0, fmt.Errorf("unknown durability %q (want none, files or full)", s)
}

// DefaultMaxConcurrentOps is the default bound on concurrent file operations
// per spool (the reference's Throttle; async_smtp uses 400).
const DefaultMaxConcurrentOps = 256

// DefaultMaxMetadataSize is the default bound on the size of a metadata
// file that this package reads (metadata is a small record; payloads go in
// .data/).
const DefaultMaxMetadataSize = 16 << 20

// DefaultMaxReserveAttempts bounds the name-reservation loop.
const DefaultMaxReserveAttempts = 10000

// Options configure a Spool. The zero value is valid and gives the defaults.
type Options struct {
	// Durability selects the fsyncs; the zero value means DefaultDurability.
	Durability Durability
	// MaxConcurrentOps bounds concurrent file operations; 0 means DefaultMaxConcurrentOps.
	MaxConcurrentOps int
	// MaxReserveAttempts bounds name reservation retries; 0 means DefaultMaxReserveAttempts.
	MaxReserveAttempts int
	// MaxMetadataSize bounds the metadata files that checkouts, readers and
	// ReadMetadata read, in bytes; 0 (or less) means DefaultMaxMetadataSize.
	// A larger entry is refused with ErrTooLarge before it is claimed and
	// stays where it was. Remove and Move never read metadata, so they
	// work on any entry.
	MaxMetadataSize int64
	// Names is the default name generator for Enqueue; nil means TimeNames{}.
	Names NameGenerator
	// Now returns the time used for touches; nil means time.Now.
	Now func() time.Time
	// PollInterval is how often readers list their queue when they cannot
	// watch it; 0 means one second.
	PollInterval time.Duration
	// Logger receives rare operational messages (readers falling back to
	// polling, logged once per spool); nil means slog.Default().
	Logger *slog.Logger
	// ReadOnly opens the spool for reading only: Open then needs only read
	// and search permission on the spool's directories, and every method
	// that would change the spool fails with ErrReadOnly. Monitors use it.
	// Create refuses it.
	ReadOnly bool
	// DirMode, FileMode and RegistryMode fix the modes of the directories,
	// the metadata and payload files, and the registry files that this
	// package creates: when set, the mode is applied exactly (fchmod after
	// the creation, so the umask does not apply). Unset, they are the
	// reference's: mkdir 0777, files 0666, registry files 0644, each minus
	// the process umask, so a group-shared spool (umask 002) stays group
	// writable. Only permission bits and setuid, setgid and sticky count.
	// A metadata rewrite always keeps the rewritten file's mode.
	DirMode, FileMode, RegistryMode fs.FileMode

	// fs is the file-system seam; nil means fsys.OS{}. Only the module's
	// tests set it (fsys.SetOptions; see fs.go).
	fs fsys.FS
}

// The reference's creation modes, before the umask.
const (
	refDirMode      = 0o777
	refFileMode     = 0o666
	refRegistryMode = 0o644
)

// createMode is the mode a creation passes to the kernel and whether it is
// then applied exactly with fchmod.
type createMode struct {
	perm  uint32
	exact bool
}

func modeOf(m fs.FileMode, ref uint32) createMode {
	if m == 0 {
		return createMode{perm: ref}
	}
	perm := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		perm |= unix.S_ISUID
	}
	if m&fs.ModeSetgid != 0 {
		perm |= unix.S_ISGID
	}
	if m&fs.ModeSticky != 0 {
		perm |= unix.S_ISVTX
	}
	return createMode{perm: perm, exact: true}
}

// Spool is an open spool directory. It is safe for concurrent use.
type Spool struct {
	dir          string
	fs           fsys.FS
	durability   Durability
	names        NameGenerator
	now          func() time.Time
	maxReserve   int
	maxMeta      int64
	throttle     chan struct{}
	pollInterval time.Duration // how often readers list a queue they cannot watch
	logger       *slog.Logger
	readOnly     bool
	dirMode      createMode
	fileMode     createMode
	regMode      createMode

	dirs           *dirSet   // the open directories
	commit         committer // group commit: the flushes concurrent operations share (groupcommit.go)
	root           dirRef
	reg, tmp, data dirRef

	hub      watchHub  // the watcher (inotify or fsnotify) that the spool's readers share
	pollWarn sync.Once // readers falling back to polling log it once per spool
	mu       sync.RWMutex
	queues   []string // sorted
}

func newSpool(dir string, o *Options) *Spool {
	if o == nil {
		o = &Options{}
	}
	s := &Spool{
		dir:          filepath.Clean(dir),
		fs:           o.fs,
		durability:   o.Durability,
		names:        o.Names,
		now:          o.Now,
		maxReserve:   o.MaxReserveAttempts,
		maxMeta:      o.MaxMetadataSize,
		pollInterval: o.PollInterval,
		logger:       o.Logger,
		readOnly:     o.ReadOnly,
		dirMode:      modeOf(o.DirMode, refDirMode),
		fileMode:     modeOf(o.FileMode, refFileMode),
		regMode:      modeOf(o.RegistryMode, refRegistryMode),
	}
	s.hub.init(s)
	s.root, s.reg, s.tmp, s.data = dirRef{fd: -1}, dirRef{fd: -1}, dirRef{fd: -1}, dirRef{fd: -1}
	if s.durability == DurabilityDefault {
		s.durability = DefaultDurability
	}
	if s.fs == nil {
		s.fs = fsys.OS{}
	}
	s.dirs = &dirSet{fs: s.fs}
	if s.names == nil {
		s.names = TimeNames{Now: o.Now}
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.maxMeta <= 0 {
		s.maxMeta = DefaultMaxMetadataSize
	}
	if s.maxReserve <= 0 {
		s.maxReserve = DefaultMaxReserveAttempts
	}
	if s.pollInterval <= 0 {
		s.pollInterval = time.Second
	}
	if s.logger == nil {
		s.logger = slog.Default()
	}
	n := o.MaxConcurrentOps
	if n <= 0 {
		n = DefaultMaxConcurrentOps
	}
	s.throttle = make(chan struct{}, n)
	return s
}

// Create opens the spool at dir, creating dir (one level, like mkdir) and the
// spool's directories if missing, and adds each of queues that is not there
// yet. A directory that does not look like a spool (no .registry/ and .tmp/)
// must be empty; otherwise Create refuses with ErrNotSpool and changes nothing.
//
// Before it changes anything, Create checks everything it can: the queue
// names, that dir is a directory this process may write, that it is empty or
// a spool, and that the spool's own directories are directories. A refusal
// therefore leaves the disk as it was.
func Create(dir string, queues []string, o *Options) (_ *Spool, err error) {
	if o != nil && o.ReadOnly {
		return nil, fmt.Errorf("create spool %s: %w: Options.ReadOnly is set", dir, ErrReadOnly)
	}
	for _, q := range queues {
		if err := ValidateName(q); err != nil {
			return nil, fmt.Errorf("create spool %s: queue: %w", dir, err)
		}
	}
	s := newSpool(dir, o)
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	created := false
	err = s.fs.Mkdir(unix.AT_FDCWD, s.dir, s.dirMode.perm)
	switch {
	case err == nil:
		created = true
	case errors.Is(err, unix.EEXIST):
	case errors.Is(err, unix.EROFS) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM):
		// The parent cannot be written. If dir exists, say what is wrong
		// with it rather than with the parent.
		var st unix.Stat_t
		if unix.Stat(s.dir, &st) != nil {
			return nil, fmt.Errorf("create spool %s: %w: cannot create the directory: %w", s.dir, ErrReadOnly, err)
		}
	default:
		return nil, pathErr("create spool", s.dir, err)
	}
	if err := s.checkIsDir(s.dir); err != nil {
		return nil, fmt.Errorf("create spool %s: %w", s.dir, err)
	}
	if err := s.openRoot(); err != nil {
		return nil, err
	}
	if created {
		if err := s.fixDirMode(s.root); err != nil {
			return nil, err
		}
		if s.durability == DurabilityFull {
			if err := s.syncPath(filepath.Dir(s.dir)); err != nil {
				return nil, err
			}
		}
	}
	looks, err := s.looksLikeSpool()
	if err != nil {
		return nil, err
	}
	if !looks {
		ents, err := s.fs.ReadDir(s.root.fd)
		if err != nil {
			return nil, pathErr("create spool", s.dir, err)
		}
		if len(ents) > 0 {
			return nil, fmt.Errorf("create spool %s: %w: directory is not empty", s.dir, ErrNotSpool)
		}
	}
	// Refuse before creating anything if one of the names is taken by
	// something that is not a directory.
	check := []string{RegistryDir, TmpDir, DataDir}
	for _, q := range queues {
		check = append(check, q, q+"/"+CheckoutDir)
	}
	for _, d := range check {
		var st unix.Stat_t
		if err := s.fs.Lstat(s.root.fd, d, &st); err == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return nil, fmt.Errorf("create spool %s: %w: %s exists and is not a directory", s.dir, ErrNotSpool, s.root.p(d))
		}
	}
	for _, d := range []string{RegistryDir, TmpDir, DataDir} {
		if err := s.mkdirIfMissing(s.root, d); err != nil {
			return nil, err
		}
	}
	if err := s.openOwnDirs(); err != nil {
		return nil, err
	}
	if err := s.discover(); err != nil {
		return nil, err
	}
	for _, q := range queues {
		if err := s.AddQueue(q); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Open opens an existing spool at dir and discovers its queues: every
// directory at the top level whose name does not start with '.' and that
// holds a .checkout/ directory. It changes nothing on disk. The spool's
// directories must be readable, writable and searchable by this process
// (readable and searchable with Options.ReadOnly); otherwise Open fails with
// an error that wraps ErrReadOnly or the permission error.
//
// Open resolves dir once and opens it and the spool's own directories
// (never through a symbolic link); every later call works relative to those
// descriptors, so a spool directory swapped for a symbolic link afterwards
// cannot redirect it outside the spool. Close the spool to release them.
func Open(dir string, o *Options) (_ *Spool, err error) {
	s := newSpool(dir, o)
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if err := s.checkIsDir(s.dir); err != nil {
		return nil, fmt.Errorf("open spool %s: %w", s.dir, err)
	}
	if err := s.openRoot(); err != nil {
		return nil, err
	}
	looks, err := s.looksLikeSpool()
	if err != nil {
		return nil, err
	}
	if !looks {
		return nil, fmt.Errorf("open spool %s: %w: no %s/ and %s/ directories", s.dir, ErrNotSpool, RegistryDir, TmpDir)
	}
	for _, d := range []string{RegistryDir, TmpDir, DataDir} {
		if err := s.checkIsDir(filepath.Join(s.dir, d)); err != nil {
			return nil, fmt.Errorf("open spool %s: %w", s.dir, err)
		}
	}
	if err := s.openOwnDirs(); err != nil {
		return nil, fmt.Errorf("open spool %s: %w", s.dir, err)
	}
	if err := s.discover(); err != nil {
		return nil, err
	}
	return s, nil
}

// ReadOnly reports whether the spool was opened with Options.ReadOnly.
func (s *Spool) ReadOnly() bool { return s.readOnly }

// writable returns ErrReadOnly, wrapped with what was asked (op, and the
// queue or entry it concerns), for a read-only spool.
func (s *Spool) writable(op, what string) error {
	if !s.readOnly {
		return nil
	}
	if what != "" {
		op += " " + what
	}
	return fmt.Errorf("%s in %s: %w", op, s.dir, ErrReadOnly)
}

// Dir returns the spool's directory.
func (s *Spool) Dir() string { return s.dir }

// Durability returns the spool's durability level.
func (s *Spool) Durability() Durability { return s.durability }

// Queues returns the spool's queues, sorted.
func (s *Spool) Queues() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Clone(s.queues)
}

// HasQueue reports whether the spool has queue q.
func (s *Spool) HasQueue(q string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := slices.BinarySearch(s.queues, q)
	return ok
}

// AddQueue creates queue q (its directory and .checkout/) if it is missing,
// and completes a queue directory that lacks its .checkout/ (a process
// killed between the two mkdirs leaves one; until then it is no queue).
func (s *Spool) AddQueue(q string) error {
	if err := ValidateName(q); err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	if err := s.isOpen(); err != nil {
		return err
	}
	if err := s.writable("add queue", q); err != nil {
		return err
	}
	s.acquire()
	defer s.release()
	if err := s.mkdirIfMissing(s.root, q); err != nil {
		return err
	}
	s.forgetQueue(q) // a directory that replaced the one we had open
	qd, err := s.qdirs(q)
	if isNotExist(err) || errors.Is(err, ErrUnknownQueue) {
		// No .checkout yet: make it, then open the queue.
		dir, err := s.openSub(s.root, q)
		if err != nil {
			return err
		}
		if err := s.mkdirIfMissing(dir, CheckoutDir); err != nil {
			return err
		}
		// The queue directory may be a half-made one whose creator died
		// before its mkdir was made durable: make it durable now.
		if s.durability == DurabilityFull {
			if err := s.syncDir(s.root); err != nil {
				return err
			}
		}
		qd, err = s.qdirs(q)
		if err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	_ = qd
	s.mu.Lock()
	defer s.mu.Unlock()
	if i, ok := slices.BinarySearch(s.queues, q); !ok {
		s.queues = slices.Insert(s.queues, i, q)
	}
	return nil
}

// Rediscover re-reads the spool's queues from disk (queues added by another
// process, queue directories replaced).
func (s *Spool) Rediscover() error {
	if err := s.isOpen(); err != nil {
		return err
	}
	if err := s.discover(); err != nil {
		return err
	}
	for _, q := range s.Queues() {
		s.forgetQueue(q)
	}
	return nil
}

func (s *Spool) discover() error {
	s.acquire()
	defer s.release()
	ents, err := s.fs.ReadDir(s.root.fd)
	if err != nil {
		return pathErr("list spool", s.dir, err)
	}
	var qs []string
	for _, e := range ents {
		if ValidateName(e.Name) != nil {
			continue
		}
		var qst, st unix.Stat_t
		if err := s.fs.Lstat(s.root.fd, e.Name, &qst); err != nil || qst.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue // a symlinked queue directory is never used
		}
		if err := s.fs.Lstat(s.root.fd, e.Name+"/"+CheckoutDir, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			// No .checkout/: not a queue (yet). A process killed between
			// AddQueue's two mkdirs leaves such a directory; AddQueue or
			// Create naming it completes it. The reference differs: its
			// queues are a fixed list, and loading a spool either creates
			// what is missing (create_if_missing) or fails on it; it never
			// skips one.
			continue
		}
		qs = append(qs, e.Name)
	}
	slices.Sort(qs)
	s.mu.Lock()
	s.queues = qs
	s.mu.Unlock()
	return nil
}

func (s *Spool) looksLikeSpool() (bool, error) {
	for _, d := range []string{RegistryDir, TmpDir} {
		var st unix.Stat_t
		err := s.fs.Lstat(s.root.fd, d, &st)
		if isNotExist(err) {
			return false, nil
		}
		if err != nil {
			return false, pathErr("stat", s.root.p(d), err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return false, nil
		}
	}
	return true, nil
}

// checkIsDir requires path to be a directory (following a symlink only for the
// spool root, which the user named) that this process can read, write and
// search (only read and search for a read-only spool). It only checks: what
// is used afterwards is opened without following symlinks. Like the stat in
// Create, it works by path before the root is open, outside the FS seam.
func (s *Spool) checkIsDir(path string) error {
	var st unix.Stat_t
	var err error
	if path == s.dir {
		err = unix.Stat(path, &st)
	} else {
		err = unix.Lstat(path, &st)
	}
	if err != nil {
		if isNotExist(err) {
			return fmt.Errorf("%s: %w: does not exist", path, ErrNotSpool)
		}
		return pathErr("stat", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("%s: %w: not a directory", path, ErrNotSpool)
	}
	if err := unix.Access(path, unix.R_OK|unix.X_OK); err != nil {
		return pathErr("access", path, fmt.Errorf("directory is not readable and searchable: %w", err))
	}
	if s.readOnly {
		return nil
	}
	if err := unix.Access(path, unix.W_OK); err != nil {
		return fmt.Errorf("%s: %w: directory is not writable (%w); open it with Options.ReadOnly to read it", path, ErrReadOnly, err)
	}
	return nil
}

// mkdirIfMissing creates the directory name in parent if it is missing, and
// requires what is there to be a directory.
func (s *Spool) mkdirIfMissing(parent dirRef, name string) error {
	path := parent.p(name)
	err := s.fs.Mkdir(parent.fd, name, s.dirMode.perm)
	if err == nil {
		if s.dirMode.exact {
			d, err := s.openSub(parent, name)
			if err != nil {
				return err
			}
			if err := s.fixDirMode(d); err != nil {
				return err
			}
		}
		if s.durability == DurabilityFull {
			return s.syncDir(parent)
		}
		return nil
	}
	if !errors.Is(err, unix.EEXIST) {
		return pathErr("mkdir", path, err)
	}
	var st unix.Stat_t
	if err := s.fs.Lstat(parent.fd, name, &st); err != nil {
		return pathErr("stat", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("%s: %w: exists and is not a directory", path, ErrNotSpool)
	}
	return nil
}

// fixDirMode applies Options.DirMode exactly to the directory just created,
// when it is set.
func (s *Spool) fixDirMode(d dirRef) error {
	if !s.dirMode.exact {
		return nil
	}
	if err := s.fs.Fchmod(d.fd, s.dirMode.perm); err != nil {
		return pathErr("chmod", d.path, err)
	}
	return nil
}

// pathErr wraps err with the operation and the path that failed, so that
// callers can errors.As it to an *fs.PathError.
func pathErr(op, path string, err error) error {
	return &fs.PathError{Op: op, Path: path, Err: err}
}

// acquire takes a slot of the spool's throttle; release gives it back.
func (s *Spool) acquire() { s.throttle <- struct{}{} }

// acquireCtx is acquire for callers with a context: it gives up with
// ctx.Err() when ctx is done first (a done ctx never takes a slot).
func (s *Spool) acquireCtx(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case s.throttle <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
func (s *Spool) release() { <-s.throttle }

// acquireChange is acquire for a short operation that changes the spool
// and writes no file (it commits at DurabilityFull only): while it runs, a
// group-commit round about to start waits for it to join
// (commitGroup.gather). releaseChange ends it.
func (s *Spool) acquireChange() {
	s.acquire()
	s.enterChange(false)
}

// releaseChange ends what acquireChange began.
func (s *Spool) releaseChange() {
	s.leaveChange(false)
	s.release()
}

// enterChange counts an operation that holds its slot among those a
// gathering round waits for, until leaveChange: from the moment it will
// commit soon (after the wait for a lock or for a payload that streams, so
// that rounds wait on neither). writesFiles says whether it writes files,
// which commit at DurabilityFiles too.
func (s *Spool) enterChange(writesFiles bool) {
	if s.commits(writesFiles) {
		s.commit.enter()
	}
}

// leaveChange ends what enterChange began.
func (s *Spool) leaveChange(writesFiles bool) {
	if s.commits(writesFiles) {
		s.commit.leave()
	}
}

// commits reports whether an operation commits at the spool's durability:
// every change at DurabilityFull, the files an operation writes at
// DurabilityFiles.
func (s *Spool) commits(writesFiles bool) bool {
	return s.durability >= DurabilityFull || writesFiles && s.durability >= DurabilityFiles
}

// Paths of an entry's files.
func (s *Spool) registryPath(name string) string { return s.dir + "/" + RegistryDir + "/" + name }
func (s *Spool) tmpPath(name string) string      { return s.dir + "/" + TmpDir + "/" + name }
func (s *Spool) dataPath(name string) string     { return s.dir + "/" + DataDir + "/" + name }
func (s *Spool) queueDir(q string) string        { return s.dir + "/" + q }
func (s *Spool) checkoutDir(q string) string     { return s.dir + "/" + q + "/" + CheckoutDir }
func (s *Spool) queuePath(q, name string) string { return s.dir + "/" + q + "/" + name }
func (s *Spool) checkoutPath(q, name string) string {
	return s.dir + "/" + q + "/" + CheckoutDir + "/" + name
}

func (s *Spool) checkQueue(q string) error {
	if err := ValidateName(q); err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	if err := s.isOpen(); err != nil {
		return err
	}
	if !s.HasQueue(q) {
		// Another process may have added the queue since we looked. As in
		// discover, the queue directory itself must not be a symlink.
		var st, qst unix.Stat_t
		if s.fs.Lstat(s.root.fd, q, &qst) == nil && qst.Mode&unix.S_IFMT == unix.S_IFDIR &&
			s.fs.Lstat(s.root.fd, q+"/"+CheckoutDir, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			s.mu.Lock()
			if i, ok := slices.BinarySearch(s.queues, q); !ok {
				s.queues = slices.Insert(s.queues, i, q)
			}
			s.mu.Unlock()
			return nil
		}
		return fmt.Errorf("%w %q in spool %s", ErrUnknownQueue, q, s.dir)
	}
	return nil
}

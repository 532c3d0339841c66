// Package discovery tells the agent when its set of spools may have
// changed without a SIGHUP: a directory that a --spool-glob pattern matches
// appears, disappears or becomes a spool (gains .registry/), or the content
// of the --config file changes.
//
// Events (fsnotify) are hints only: each burst is debounced into one rescan
// that globs the patterns and hashes the configuration file, and a change
// is reported only when that fingerprint differs from the last one. The
// same rescan runs every PollEvery as well, which is the whole mechanism
// where a directory cannot be watched (permissions, watch limit, network
// file systems) and repairs anything an overflowing inotify queue dropped.
package discovery

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

// RegistryDir is the directory whose presence makes a directory a spool.
const RegistryDir = ".registry"

// Defaults of Options.
const (
	DefaultDebounce  = 150 * time.Millisecond
	DefaultMaxDelay  = 500 * time.Millisecond
	DefaultPollEvery = 15 * time.Second
)

// Options configure a Watcher.
type Options struct {
	// Patterns are the glob patterns (filepath.Match syntax) whose matches
	// are watched.
	Patterns []string
	// ConfigPath is the configuration file whose content is watched
	// (through its directory); "" for none.
	ConfigPath string
	// Debounce is the quiet time after an event before the rescan, so that
	// a burst of events is one rescan; DefaultDebounce when zero.
	Debounce time.Duration
	// MaxDelay bounds how long a continuous stream of events can put the
	// rescan off; DefaultMaxDelay when zero.
	MaxDelay time.Duration
	// PollEvery is how often the patterns are matched and the file hashed
	// again whatever the events (--check-every); DefaultPollEvery when zero.
	PollEvery time.Duration
	// ForcePoll uses no events at all, only the rescans every PollEvery.
	ForcePoll bool
	// Logger receives the line saying that polling replaces events; nil
	// discards it.
	Logger *slog.Logger
}

// Watcher reports changes of the glob matches and of the configuration file.
type Watcher struct {
	o  Options
	fs *fsnotify.Watcher // nil when polling only

	// addWatch and removeWatch are the fsnotify calls, a seam for tests
	// that make a directory unwatchable.
	addWatch    func(string) error
	removeWatch func(string) error

	changes chan struct{}
	kick    chan struct{}

	mu         sync.Mutex
	patterns   []string
	closed     bool
	pollingNow bool

	// Owned by the rescans (New, then Run's goroutine).
	last       [sha256.Size]byte
	watched    map[string]role // what the last rescan asked to watch
	pollLogged bool
}

// role is why a directory is watched; events in a spool candidate only
// matter for its .registry.
type role uint8

const (
	roleLevel  role = 1 << iota // may gain or lose a match
	roleMatch                   // a match: may gain or lose .registry
	roleConfig                  // holds the configuration file
)

// New returns a Watcher of o, with the current state as its baseline (no
// change is reported for it). Run starts reporting.
func New(o Options) *Watcher {
	if o.Debounce <= 0 {
		o.Debounce = DefaultDebounce
	}
	if o.MaxDelay < o.Debounce {
		o.MaxDelay = max(DefaultMaxDelay, o.Debounce)
	}
	if o.PollEvery <= 0 {
		o.PollEvery = DefaultPollEvery
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	w := &Watcher{
		o:        o,
		changes:  make(chan struct{}, 1),
		kick:     make(chan struct{}, 1),
		patterns: slices.Clone(o.Patterns),
		watched:  map[string]role{},
	}
	if !o.ForcePoll {
		fw, err := fsnotify.NewWatcher()
		if err != nil {
			w.logPolling("", err)
		} else {
			w.fs = fw
			w.addWatch, w.removeWatch = fw.Add, fw.Remove
		}
	}
	w.last = w.rescan()
	return w
}

// Changes receives a value after the glob matches or the configuration
// file changed (several changes before it is read are one value).
func (w *Watcher) Changes() <-chan struct{} { return w.changes }

// Report reports a change now, for one the caller knows of.
func (w *Watcher) Report() {
	select {
	case w.changes <- struct{}{}:
	default:
	}
}

// SetPatterns replaces the patterns (after a reload changed them); the
// next rescan, soon, watches their directories.
func (w *Watcher) SetPatterns(patterns []string) {
	w.mu.Lock()
	same := slices.Equal(w.patterns, patterns)
	w.patterns = slices.Clone(patterns)
	w.mu.Unlock()
	if !same {
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
}

// Polling reports whether the last rescan found a directory it could not
// watch (or events are off), so that only the rescans every PollEvery see
// its changes.
func (w *Watcher) Polling() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.fs == nil || w.pollingNow
}

// Run reports changes until ctx is done, then releases the watches.
func (w *Watcher) Run(ctx context.Context) error {
	defer w.close()
	var events <-chan fsnotify.Event
	var errs <-chan error
	if w.fs != nil {
		events, errs = w.fs.Events, w.fs.Errors
	}
	tick := time.NewTicker(w.o.PollEvery)
	defer tick.Stop()
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	defer debounce.Stop()
	var pending bool
	var first time.Time
	schedule := func() {
		now := time.Now()
		if !pending {
			pending, first = true, now
		}
		wait := min(w.o.Debounce, w.o.MaxDelay-now.Sub(first))
		debounce.Reset(max(wait, 0))
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if w.relevant(ev) {
				schedule()
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			// An overflow lost events: the rescan finds what they said.
			if !errors.Is(err, fsnotify.ErrEventOverflow) {
				w.o.Logger.Debug("discovery: watch error", "err", err)
			}
			schedule()
		case <-w.kick:
			schedule()
		case <-debounce.C:
			pending = false
			w.check()
		case <-tick.C:
			// A change seen by polling may be a file caught between its
			// truncation and its write: it is reported after the quiet
			// time, if it still holds.
			if w.rescan() != w.last {
				schedule()
			}
		}
	}
}

// relevant reports whether ev may change the fingerprint.
func (w *Watcher) relevant(ev fsnotify.Event) bool {
	r := w.watched[filepath.Dir(ev.Name)] | w.watched[ev.Name]
	if r&^roleMatch != 0 {
		return true
	}
	// In a spool (candidate), only .registry matters; the event of the
	// directory itself (removed, moved) matters too.
	return filepath.Base(ev.Name) == RegistryDir || w.watched[ev.Name] != 0
}

// check rescans and reports a change.
func (w *Watcher) check() {
	fp := w.rescan()
	if fp == w.last {
		return
	}
	w.mu.Lock()
	w.last = fp
	w.mu.Unlock()
	w.Report()
}

func (w *Watcher) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	w.closed = true
	if w.fs != nil {
		_ = w.fs.Close()
	}
}

// rescan brings the watches up to date and returns the fingerprint of the
// matches and of the configuration file. The watches are set first, so
// that a change after the fingerprint was taken gives an event.
func (w *Watcher) rescan() [sha256.Size]byte {
	w.mu.Lock()
	patterns := w.patterns
	w.mu.Unlock()
	if w.fs != nil {
		w.updateWatches(patterns)
	}
	return fingerprint(patterns, w.o.ConfigPath)
}

// updateWatches watches the directories that patterns and the
// configuration file need and drops the others.
func (w *Watcher) updateWatches(patterns []string) {
	want := map[string]role{}
	for _, p := range patterns {
		for dir, r := range watchDirs(p) {
			want[dir] |= r
		}
	}
	if w.o.ConfigPath != "" {
		want[filepath.Dir(filepath.Clean(w.o.ConfigPath))] |= roleConfig
		// A file that is a symlink elsewhere (not a ConfigMap's ..data,
		// which lives beside it) is replaced in its target's directory.
		if real, err := filepath.EvalSymlinks(w.o.ConfigPath); err == nil {
			want[filepath.Dir(real)] |= roleConfig
		}
	}
	failed := false
	var failDir string
	var failErr error
	// Adding a watched directory again is cheap and repairs a watch that
	// inotify dropped when the directory was replaced.
	for dir := range want {
		if err := w.addWatch(dir); err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
				delete(want, dir) // gone since: the event of its parent says so
				continue
			}
			failed, failDir, failErr = true, dir, err
			delete(want, dir)
		}
	}
	for dir := range w.watched {
		if _, ok := want[dir]; !ok {
			_ = w.removeWatch(dir) // already gone when the directory was removed
		}
	}
	w.mu.Lock()
	w.watched = want
	w.pollingNow = failed
	w.mu.Unlock()
	if failed {
		w.logPolling(failDir, failErr)
	}
}

// logPolling says once in the watcher's life that polling replaces events.
func (w *Watcher) logPolling(dir string, err error) {
	if w.pollLogged {
		return
	}
	w.pollLogged = true
	w.o.Logger.Warn("discovery: cannot watch for changes; matching the spool globs and reading the configuration file again every check instead",
		"dir", dir, "every", w.o.PollEvery, "err", err)
}

// watchDirs returns the directories to watch for pattern: its fixed
// prefix (or, while that does not exist, its nearest existing ancestor),
// every directory that matches a leading part of the pattern, and the
// matches themselves (to see .registry appear).
func watchDirs(pattern string) map[string]role {
	out := map[string]role{}
	pattern = filepath.Clean(pattern)
	parts := strings.Split(pattern, string(filepath.Separator))
	prefix := "."
	if filepath.IsAbs(pattern) {
		prefix, parts = string(filepath.Separator), parts[1:]
	}
	i := 0
	for i < len(parts)-1 && !hasMeta(parts[i]) {
		prefix = filepath.Join(prefix, parts[i])
		i++
	}
	if !isDir(prefix) {
		for d := filepath.Dir(prefix); ; d = filepath.Dir(d) {
			if isDir(d) {
				out[d] |= roleLevel
				return out
			}
			if d == filepath.Dir(d) {
				return out
			}
		}
	}
	level := []string{prefix}
	for _, comp := range parts[i:] {
		var next []string
		for _, d := range level {
			out[d] |= roleLevel
			if !hasMeta(comp) {
				if p := filepath.Join(d, comp); isDir(p) {
					next = append(next, p)
				}
				continue
			}
			entries, err := os.ReadDir(d)
			if err != nil {
				continue
			}
			for _, e := range entries {
				if ok, err := filepath.Match(comp, e.Name()); err != nil || !ok {
					continue
				}
				if p := filepath.Join(d, e.Name()); isDir(p) {
					next = append(next, p)
				}
			}
		}
		level = next
	}
	for _, d := range level {
		out[d] |= roleMatch
	}
	return out
}

// fingerprint hashes what the agent's spool list depends on: for every
// pattern its matches and which of them are spools, and the content of
// the configuration file (or why it cannot be read).
func fingerprint(patterns []string, configPath string) [sha256.Size]byte {
	h := sha256.New()
	for _, p := range patterns {
		matches, err := filepath.Glob(p)
		fmt.Fprintf(h, "pattern %q %v\n", p, err)
		for _, m := range matches {
			fmt.Fprintf(h, "%q %t\n", m, isDir(filepath.Join(m, RegistryDir)))
		}
	}
	if configPath != "" {
		b, err := os.ReadFile(configPath)
		if err != nil {
			fmt.Fprintf(h, "config error %v\n", err)
		} else {
			fmt.Fprintf(h, "config %d\n", len(b))
			h.Write(b)
		}
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

func hasMeta(s string) bool { return strings.ContainsAny(s, `*?[\`) }

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

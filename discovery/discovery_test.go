package discovery

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// deadline bounds every wait; no test asserts how fast a change is seen.
const deadline = 20 * time.Second

// start runs a Watcher of o until the test ends.
func start(t *testing.T, o Options) *Watcher {
	t.Helper()
	if o.Debounce == 0 {
		o.Debounce = 5 * time.Millisecond
	}
	if o.PollEvery == 0 {
		o.PollEvery = time.Hour // only events, unless a test asks for polling
	}
	w := New(o)
	run(t, w)
	return w
}

func run(t *testing.T, w *Watcher) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// waitChange waits until a change is reported and cond holds.
func waitChange(t *testing.T, w *Watcher, what string, cond func() bool) {
	t.Helper()
	timeout := time.After(deadline)
	for {
		select {
		case <-w.Changes():
			if cond == nil || cond() {
				return
			}
		case <-timeout:
			w.mu.Lock()
			state := fmt.Sprintf("watched %v, polling %v", w.watched, w.pollingNow)
			w.mu.Unlock()
			t.Fatalf("within %v: no change reported for %s (%s)", deadline, what, state)
		}
	}
}

func mkdirs(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestWatchDirs(t *testing.T) {
	root := t.TempDir()
	mkdirs(t,
		filepath.Join(root, "a", "x", "spools", "s1"),
		filepath.Join(root, "a", "y"),
		filepath.Join(root, "b", "s2", RegistryDir),
	)
	writeFile(t, filepath.Join(root, "b", "file"), "")
	j := func(p ...string) string { return filepath.Join(append([]string{root}, p...)...) }
	tests := []struct {
		name, pattern string
		want          map[string]role
	}{
		{"flat", j("b", "*"), map[string]role{j("b"): roleLevel, j("b", "s2"): roleMatch}},
		{"wildcard in the middle", j("a", "*", "spools", "*"), map[string]role{
			j("a"): roleLevel, j("a", "x"): roleLevel, j("a", "y"): roleLevel,
			j("a", "x", "spools"): roleLevel, j("a", "x", "spools", "s1"): roleMatch,
		}},
		{"literal", j("b", "s2"), map[string]role{j("b"): roleLevel, j("b", "s2"): roleMatch}},
		{"missing prefix: nearest ancestor", j("c", "d", "*"), map[string]role{root: roleLevel}},
		{"no match yet", j("a", "*", "nothing", "*"), map[string]role{j("a"): roleLevel, j("a", "x"): roleLevel, j("a", "y"): roleLevel}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := watchDirs(tt.pattern)
			if !maps.Equal(got, tt.want) {
				t.Errorf("watchDirs(%s):\n got %v\nwant %v", tt.pattern, got, tt.want)
			}
		})
	}
}

func TestFingerprint(t *testing.T) {
	root := t.TempDir()
	cfg := filepath.Join(root, "config.yml")
	writeFile(t, cfg, "a: 1\n")
	pattern := filepath.Join(root, "*")
	base := fingerprint([]string{pattern}, cfg)
	if fingerprint([]string{pattern}, cfg) != base {
		t.Fatal("the same state gives another fingerprint")
	}
	steps := []struct {
		name   string
		change func()
	}{
		{"a directory matches", func() { mkdirs(t, filepath.Join(root, "s")) }},
		{"it becomes a spool", func() { mkdirs(t, filepath.Join(root, "s", RegistryDir)) }},
		{"the file changes", func() { writeFile(t, cfg, "a: 2\n") }},
		{"the file goes", func() { os.Remove(cfg) }},
	}
	prev := base
	for _, s := range steps {
		s.change()
		fp := fingerprint([]string{pattern}, cfg)
		if fp == prev {
			t.Errorf("%s: fingerprint unchanged", s.name)
		}
		prev = fp
	}
	// Touching a file without changing it is no change.
	writeFile(t, cfg, "a: 2\n")
	fp := fingerprint([]string{pattern}, cfg)
	now := time.Now().Add(time.Minute)
	os.Chtimes(cfg, now, now)
	if fingerprint([]string{pattern}, cfg) != fp {
		t.Error("a new mtime changed the fingerprint")
	}
}

func isSpool(p string) func() bool {
	return func() bool { return isDir(filepath.Join(p, RegistryDir)) }
}

func TestGlobEvents(t *testing.T) {
	for _, tt := range []struct {
		name    string
		pattern string // under root
		spool   string // a path it matches
	}{
		{"flat", "*", "s1"},
		{"wildcard in the middle", "*/spools/*", "team/spools/s1"},
		{"prefix created later", "later/*", "later/s1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			w := start(t, Options{Patterns: []string{filepath.Join(root, tt.pattern)}})
			s := filepath.Join(root, tt.spool)
			// Not yet a spool: a change (the agent logs the skip), then
			// the spool when .registry appears.
			mkdirs(t, s)
			waitChange(t, w, "a match", nil)
			mkdirs(t, filepath.Join(s, RegistryDir))
			waitChange(t, w, "a match becoming a spool", isSpool(s))
			if err := os.RemoveAll(s); err != nil {
				t.Fatal(err)
			}
			waitChange(t, w, "a removed spool", func() bool { return !isDir(s) })
			// A spool moved in whole.
			other := filepath.Join(t.TempDir(), "s9")
			mkdirs(t, filepath.Join(other, RegistryDir))
			moved := filepath.Join(filepath.Dir(s), "s9")
			if err := os.Rename(other, moved); err != nil {
				t.Fatal(err)
			}
			waitChange(t, w, "a spool renamed into the glob", isSpool(moved))
		})
	}
}

func TestSetPatterns(t *testing.T) {
	root := t.TempDir()
	w := start(t, Options{Patterns: []string{filepath.Join(root, "a", "*")}})
	mkdirs(t, filepath.Join(root, "b", "s", RegistryDir))
	w.SetPatterns([]string{filepath.Join(root, "b", "*")})
	waitChange(t, w, "new patterns", nil)
	s := filepath.Join(root, "b", "t")
	mkdirs(t, filepath.Join(s, RegistryDir))
	waitChange(t, w, "a spool under the new pattern", isSpool(s))
}

func TestConfigFile(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yml")
	writeFile(t, cfg, "v: 1\n")
	w := start(t, Options{ConfigPath: cfg})

	read := func(want string) func() bool {
		return func() bool { b, _ := os.ReadFile(cfg); return string(b) == want }
	}
	// Edited in place.
	f, err := os.OpenFile(cfg, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("v: 2\n")
	f.Close()
	waitChange(t, w, "an edit in place", read("v: 2\n"))

	// Replaced by rename, as editors and configuration managers do.
	tmp := filepath.Join(dir, ".config.yml.tmp")
	writeFile(t, tmp, "v: 3\n")
	if err := os.Rename(tmp, cfg); err != nil {
		t.Fatal(err)
	}
	waitChange(t, w, "a replacement by rename", read("v: 3\n"))
}

// kubeSwap writes content as a ConfigMap volume does: a new timestamped
// directory, a ..data_tmp symlink to it renamed over ..data, the old
// directory removed.
func kubeSwap(t *testing.T, dir, name, content string, gen int) {
	t.Helper()
	ts := filepath.Join(dir, "..2026_11_30_"+strings.Repeat("0", gen)) // a new name each time
	mkdirs(t, ts)
	writeFile(t, filepath.Join(ts, name), content)
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		t.Fatal(err)
	}
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if old != "" {
		os.RemoveAll(filepath.Join(dir, old))
	}
	if _, err := os.Lstat(filepath.Join(dir, name)); err != nil {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestConfigKubernetesSwap(t *testing.T) {
	dir := t.TempDir()
	kubeSwap(t, dir, "config.yml", "v: 1\n", 1)
	cfg := filepath.Join(dir, "config.yml")
	w := start(t, Options{ConfigPath: cfg})
	for gen := 2; gen <= 4; gen++ {
		want := strings.Repeat("v", gen) + ": 1\n"
		kubeSwap(t, dir, "config.yml", want, gen)
		waitChange(t, w, "a ..data swap", func() bool { b, _ := os.ReadFile(cfg); return string(b) == want })
	}
}

func TestForcedPolling(t *testing.T) {
	root := t.TempDir()
	w := start(t, Options{Patterns: []string{filepath.Join(root, "*")}, ForcePoll: true, PollEvery: 20 * time.Millisecond})
	if !w.Polling() {
		t.Error("Polling() = false with ForcePoll")
	}
	if n := inotifyWatches(t); n != 0 {
		t.Errorf("%d inotify watches with ForcePoll", n)
	}
	s := filepath.Join(root, "s")
	mkdirs(t, filepath.Join(s, RegistryDir))
	waitChange(t, w, "a spool found by polling", isSpool(s))
}

// syncBuffer is a log sink safe across goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestUnwatchableParentPolls(t *testing.T) {
	root := t.TempDir()
	var logs syncBuffer
	w := New(Options{
		Patterns:  []string{filepath.Join(root, "*")},
		Debounce:  5 * time.Millisecond,
		PollEvery: 20 * time.Millisecond,
		Logger:    slog.New(slog.NewTextHandler(&logs, nil)),
	})
	// The parent cannot be watched, as when the watch limit is reached.
	w.addWatch = func(dir string) error {
		if dir == root {
			return &os.PathError{Op: "inotify_add_watch", Path: dir, Err: syscall.ENOSPC}
		}
		return w.fs.Add(dir)
	}
	run(t, w)
	for i := range 3 {
		s := filepath.Join(root, "s"+string(rune('0'+i)))
		mkdirs(t, filepath.Join(s, RegistryDir))
		waitChange(t, w, "a spool found by polling", isSpool(s))
	}
	if !w.Polling() {
		t.Error("Polling() = false with an unwatchable parent")
	}
	if n := strings.Count(logs.String(), "cannot watch"); n != 1 {
		t.Errorf("the fallback logged %d times, want once:\n%s", n, logs.String())
	}
}

// inotifyWatches counts the inotify watches of the process.
func inotifyWatches(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fdinfo")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, fd := range fds {
		b, err := os.ReadFile(filepath.Join("/proc/self/fdinfo", fd.Name()))
		if err != nil {
			continue // closed since
		}
		n += strings.Count(string(b), "inotify wd:")
	}
	return n
}

func openFDs(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}

// TestNoLeaks: 1,000 spools created and removed under a glob leave the
// goroutines, file descriptors and inotify watches where they started.
func TestNoLeaks(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("counts /proc/self/fd and fdinfo: Linux only")
	}
	root := t.TempDir()
	pattern := filepath.Join(root, "*")
	w := start(t, Options{Patterns: []string{pattern}, Debounce: time.Millisecond})
	type counts struct{ goroutines, fds, watches int }
	measure := func() counts {
		return counts{runtime.NumGoroutine(), openFDs(t), inotifyWatches(t)}
	}
	before := measure()
	if before.watches == 0 {
		t.Fatal("no inotify watch before the cycles")
	}
	cycles := 1000
	if testing.Short() {
		cycles = 100
	}
	for i := range cycles {
		s := filepath.Join(root, "s")
		if i%2 == 1 {
			s = filepath.Join(root, "t") // alternate names, so that stale watches would show
		}
		mkdirs(t, filepath.Join(s, RegistryDir))
		waitChange(t, w, "a spool", func() bool { return w.reported(pattern) })
		if err := os.RemoveAll(s); err != nil {
			t.Fatal(err)
		}
		waitChange(t, w, "a removed spool", func() bool { return w.reported(pattern) })
	}
	// Events of the last cycle may still be in flight: wait (bounded) for
	// the counts to settle back, then compare.
	// A goroutine of an earlier test may still have been ending before:
	// a leak is growth.
	grew := func(c counts) bool {
		return c.goroutines > before.goroutines || c.fds > before.fds || c.watches != before.watches
	}
	var after counts
	for end := time.Now().Add(deadline); ; {
		after = measure()
		if !grew(after) || time.Now().After(end) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if grew(after) {
		t.Errorf("after %d cycles: goroutines, fds, inotify watches = %+v, before %+v", cycles, after, before)
	}
	if got := slices.Sorted(maps.Keys(w.watchedCopy())); len(got) != 1 {
		t.Errorf("watching %v, want only the glob's directory", got)
	}
}

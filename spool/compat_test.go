package spool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestRecoverAgeRule: below MinRecoverAge, Recover refuses (naming
// WorkersStopped) unless the caller says every worker of another
// implementation is stopped; at or above it, it runs. A refusal changes
// nothing.
func TestRecoverAgeRule(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		age     time.Duration
		stopped bool
		refused bool
		got     int // checkouts recovered: one is 30s old, one 2m old
	}{
		{age: 0, refused: true},
		{age: -time.Hour, refused: true},
		{age: MinRecoverAge - time.Nanosecond, refused: true},
		{age: MinRecoverAge, got: 1},
		{age: time.Hour, got: 0},
		{age: 0, stopped: true, got: 2},
		{age: -time.Hour, stopped: true, got: 2},
		{age: MinRecoverAge, stopped: true, got: 1},
	}
	for _, tt := range tests {
		s := newTestSpool(t, []string{"q"}, &Options{Durability: DurabilityNone, Now: func() time.Time { return now }})
		for name, age := range map[string]time.Duration{"young": 30 * time.Second, "old": 2 * time.Minute} {
			mustEnqueue(t, s, "q", "m", "d", EnqueueOptions{Name: name})
			// A reference worker's checkout: renamed, no lock.
			if err := os.Rename(s.queuePath("q", name), s.checkoutPath("q", name)); err != nil {
				t.Fatal(err)
			}
			mt := now.Add(-age)
			if err := os.Chtimes(s.checkoutPath("q", name), mt, mt); err != nil {
				t.Fatal(err)
			}
		}
		before := treeState(t, s.Dir())
		rs, err := s.Recover(context.Background(), tt.age, RecoverOptions{WorkersStopped: tt.stopped})
		if tt.refused {
			if !errors.Is(err, ErrRecoverTooYoung) || !strings.Contains(err.Error(), "WorkersStopped") || len(rs) != 0 {
				t.Errorf("Recover(%v, stopped=%v) = %v, %v; want ErrRecoverTooYoung naming WorkersStopped", tt.age, tt.stopped, rs, err)
			}
			if after := treeState(t, s.Dir()); after != before {
				t.Errorf("Recover(%v) refused but changed the spool:\n%s\n---\n%s", tt.age, before, after)
			}
			continue
		}
		if err != nil || len(rs) != tt.got {
			t.Errorf("Recover(%v, stopped=%v) = %v, %v; want %d recovered", tt.age, tt.stopped, rs, err, tt.got)
		}
	}
}

// TestModes: without Options modes, the spool's directories are created
// 0777, metadata and payload files 0666 and registry files 0644, each minus
// the umask, as the reference does; Options modes apply exactly; a metadata
// rewrite keeps the file's mode. It changes the process umask, so it does
// not run in parallel.
func TestModes(t *testing.T) {
	tests := []struct {
		name                 string
		umask                int
		o                    Options
		dir, file, reg, meta os.FileMode
	}{
		{name: "umask 022", umask: 0o022, dir: 0o755, file: 0o644, reg: 0o644},
		{name: "umask 002", umask: 0o002, dir: 0o775, file: 0o664, reg: 0o644},
		{name: "umask 077", umask: 0o077, dir: 0o700, file: 0o600, reg: 0o600},
		{name: "fixed", umask: 0o022, o: Options{DirMode: 0o770 | os.ModeSetgid, FileMode: 0o660, RegistryMode: 0o640},
			dir: 0o770 | os.ModeSetgid, file: 0o660, reg: 0o640},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old := unix.Umask(tt.umask)
			defer unix.Umask(old)
			o := tt.o
			o.Durability = DurabilityNone
			s := newTestSpool(t, []string{"q", "r"}, &o)
			name := mustEnqueue(t, s, "q", "m", "d", EnqueueOptions{})
			reserved, err := s.Reserve(nil)
			if err != nil {
				t.Fatal(err)
			}
			named := mustEnqueue(t, s, "q", "m", "d", EnqueueOptions{Name: "chosen"})
			want := map[string]os.FileMode{
				"":                           tt.dir,
				RegistryDir:                  tt.dir,
				TmpDir:                       tt.dir,
				DataDir:                      tt.dir,
				"q":                          tt.dir,
				"q/" + CheckoutDir:           tt.dir,
				"r/" + CheckoutDir:           tt.dir,
				"q/" + name:                  tt.file,
				DataDir + "/" + name:         tt.file,
				RegistryDir + "/" + name:     tt.reg,
				RegistryDir + "/" + reserved: tt.reg,
				RegistryDir + "/" + named:    tt.reg,
			}
			for p, m := range want {
				fi, err := os.Lstat(filepath.Join(s.Dir(), p))
				if err != nil {
					t.Fatal(err)
				}
				if got := fi.Mode() &^ os.ModeType; got != m {
					t.Errorf("%s: mode %v, want %v", p, got, m)
				}
			}
			// A rewrite keeps the file's mode, whatever it is.
			if err := os.Chmod(s.queuePath("q", name), 0o604); err != nil {
				t.Fatal(err)
			}
			if err := s.WriteMetadata("q", name, []byte("rewritten")); err != nil {
				t.Fatal(err)
			}
			if fi, err := os.Lstat(s.queuePath("q", name)); err != nil || fi.Mode().Perm() != 0o604 {
				t.Errorf("rewritten metadata: %v %v, want mode 0604", fi.Mode(), err)
			}
		})
	}
}

// refEnqueue writes an entry as the reference would, by hand: registry
// file, payload, metadata file in the queue. Without reg, the registry
// file is left out (an orphan queue entry).
func refEnqueue(t *testing.T, s *Spool, queue, name, meta string, reg bool) {
	t.Helper()
	if reg {
		writeFile(t, s.registryPath(name), "")
	}
	writeFile(t, s.dataPath(name), "data of "+name)
	writeFile(t, s.queuePath(queue, name), meta)
}

// TestReadingNames: names the reference accepts but this package would not
// create (a leading '.', 230 bytes, a control character) are entries to
// List, ListCheckedOut, Find, Stat, ReadMetadata, Checkout, Move, Remove,
// WithEntry, Recover and the readers; names that cannot be entries are
// refused with ErrInvalidName.
func TestReadingNames(t *testing.T) {
	names := []string{".hidden", strings.Repeat("n", 230), "tab\there", "..x"}
	for _, name := range names {
		if ValidateName(name) == nil {
			t.Fatalf("ValidateName(%q) accepts it: the test needs a name it refuses", name)
		}
		if err := ValidateExistingName(name); err != nil {
			t.Fatalf("ValidateExistingName(%q) = %v", name, err)
		}
	}
	for _, bad := range []string{"", ".", "..", ".checkout", "a/b", "nul\x00", strings.Repeat("n", 256)} {
		if err := ValidateExistingName(bad); !errors.Is(err, ErrInvalidName) {
			t.Errorf("ValidateExistingName(%q) = %v, want ErrInvalidName", bad, err)
		}
	}
	s := newTestSpool(t, []string{"q", "r"}, &Options{Durability: DurabilityNone})
	for _, name := range names {
		refEnqueue(t, s, "q", name, "meta of "+name, true)
	}
	want := slices.Sorted(slices.Values(names))
	if got := mustList(t, s, "q"); !slices.Equal(got, want) {
		t.Fatalf("List = %q, want %q", got, want)
	}
	for _, name := range names {
		if q, co, err := s.Find(name); err != nil || q != "q" || co {
			t.Errorf("Find(%q) = %q %v %v", name, q, co, err)
		}
		if _, err := s.Stat("q", name); err != nil {
			t.Errorf("Stat(%q): %v", name, err)
		}
		if b, err := s.ReadMetadata("q", name); err != nil || string(b) != "meta of "+name {
			t.Errorf("ReadMetadata(%q) = %q, %v", name, b, err)
		}
		if b, err := s.ReadData(name); err != nil || string(b) != "data of "+name {
			t.Errorf("ReadData(%q) = %q, %v", name, b, err)
		}
	}
	// Checkout, then a save that rewrites the metadata (a temp file named
	// after a 230-byte name must fit), then Move and back.
	for _, name := range names {
		c, err := s.Checkout(context.Background(), "q", name)
		if err != nil {
			t.Fatalf("Checkout(%q): %v", name, err)
		}
		if got, err := s.ListCheckedOut("q"); err != nil || !slices.Contains(got, name) {
			t.Errorf("ListCheckedOut = %q, %v; want %q in it", got, err, name)
		}
		if err := c.Save("q", []byte("saved "+name)); err != nil {
			t.Fatalf("Save(%q): %v", name, err)
		}
		if err := s.Move("q", name, "r"); err != nil {
			t.Fatalf("Move(%q): %v", name, err)
		}
		if err := s.WithEntry(context.Background(), "r", name, func(c *Checkout) (Action, error) {
			return SaveTo("q", nil), nil
		}); err != nil {
			t.Fatalf("WithEntry(%q): %v", name, err)
		}
	}
	// A reference worker's checkout of a dot-name is recovered.
	if err := os.Rename(s.queuePath("q", ".hidden"), s.checkoutPath("q", ".hidden")); err != nil {
		t.Fatal(err)
	}
	if rs, err := s.Recover(context.Background(), 0, RecoverOptions{WorkersStopped: true}); err != nil || len(rs) != 1 || rs[0].Name != ".hidden" {
		t.Fatalf("Recover = %v, %v; want .hidden", rs, err)
	}
	// Readers take every one of them, in order.
	r, err := s.NewReader("q")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var got []string
	for range names {
		c, err := r.DequeueAvailable()
		if err != nil || c == nil {
			t.Fatalf("DequeueAvailable = %v, %v", c, err)
		}
		if string(c.Metadata()) != "saved "+c.Name() {
			t.Errorf("%q: metadata %q", c.Name(), c.Metadata())
		}
		got = append(got, c.Name())
		if err := c.Release(); err != nil {
			t.Fatal(err)
		}
		// A released entry is back in the snapshot only at the next listing.
	}
	if !slices.Equal(got, want) {
		t.Errorf("dequeued %q, want %q", got, want)
	}
	// A new entry under a dot-name wakes a blocking reader.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, name := range names {
		if err := s.Remove("q", name); err != nil {
			t.Fatalf("Remove(%q): %v", name, err)
		}
	}
	refEnqueue(t, s, "q", ".late", "m", true)
	c, err := r.Dequeue(ctx)
	if err != nil || c.Name() != ".late" {
		t.Fatalf("Dequeue = %v, %v; want .late", c, err)
	}
	if err := c.Remove(); err != nil {
		t.Fatal(err)
	}
	if got := tree(t, s.Dir()); got != layout(bareLayout("q", "r")...) {
		t.Errorf("after removing everything:\n%s", got)
	}
}

// TestUnregisteredNotClaimable: a queue entry without its registry file
// cannot be checked out (the reference's checkout touches the registry file
// first and fails): Checkout, WithEntry, Remove, Move and WriteMetadata
// refuse it with ErrUnregistered, readers pass over it without spinning,
// and it stays in its queue untouched, an orphan for fsck.
func TestUnregisteredNotClaimable(t *testing.T) {
	s := newTestSpool(t, []string{"q", "r"}, &Options{Durability: DurabilityNone})
	refEnqueue(t, s, "q", "orphan", "m", false)
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	if err := os.Chtimes(s.queuePath("q", "orphan"), old, old); err != nil {
		t.Fatal(err)
	}
	good := mustEnqueue(t, s, "q", "m", "d", EnqueueOptions{Names: PrefixNames("z")})
	calls := map[string]func() error{
		"Checkout": func() error { _, err := s.Checkout(context.Background(), "q", "orphan"); return err },
		"WithEntry": func() error {
			return s.WithEntry(context.Background(), "q", "orphan", func(*Checkout) (Action, error) { return Action{}, nil })
		},
		"Remove":        func() error { return s.Remove("q", "orphan") },
		"Move":          func() error { return s.Move("q", "orphan", "r") },
		"WriteMetadata": func() error { return s.WriteMetadata("q", "orphan", []byte("x")) },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, ErrUnregistered) {
			t.Errorf("%s of an unregistered entry = %v, want ErrUnregistered", name, err)
		}
	}
	r, err := s.NewReader("q")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c, err := r.DequeueAvailable()
	if err != nil || c == nil || c.Name() != good {
		t.Fatalf("DequeueAvailable = %v, %v; want %s", c, err, good)
	}
	if err := c.Remove(); err != nil {
		t.Fatal(err)
	}
	if c, err := r.DequeueAvailable(); c != nil || err != nil {
		t.Fatalf("DequeueAvailable with only the orphan = %v, %v; want nothing", c, err)
	}
	// A blocking Dequeue waits (it does not spin on the orphan) until ctx ends.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if c, err := r.Dequeue(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Dequeue with only the orphan = %v, %v; want context.Canceled", c, err)
	}
	if err := r.IterAvailable(context.Background(), func(c *Checkout) (Action, error) {
		t.Errorf("IterAvailable gave %s", c.Name())
		return Action{}, nil
	}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(s.queuePath("q", "orphan"))
	if err != nil || !fi.ModTime().Equal(old) {
		t.Errorf("the orphan moved or was touched: %v %v", fi, err)
	}
	if got, _ := os.ReadFile(s.queuePath("q", "orphan")); string(got) != "m" {
		t.Errorf("orphan holds %q", got)
	}
}

// TestSparseMetadata: a sparse metadata file that claims a terabyte is
// refused (ErrTooLarge) by Checkout, WithEntry, WriteMetadata and
// ReadMetadata without reading or allocating it, passed over by readers,
// and removed or moved by Remove and Move, which never read metadata; the
// entry is never left in .checkout.
func TestSparseMetadata(t *testing.T) {
	s := newTestSpool(t, []string{"q", "r"}, &Options{Durability: DurabilityNone})
	huge := func(q, name string) {
		t.Helper()
		refEnqueue(t, s, q, name, "", true)
		if err := os.Truncate(s.queuePath(q, name), 1<<40); err != nil {
			t.Fatal(err)
		}
	}
	huge("q", "big")
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	refused := map[string]func() error{
		"Checkout": func() error { _, err := s.Checkout(context.Background(), "q", "big"); return err },
		"WithEntry": func() error {
			return s.WithEntry(context.Background(), "q", "big", func(*Checkout) (Action, error) { return Action{}, nil })
		},
		"WriteMetadata": func() error { return s.WriteMetadata("q", "big", []byte("x")) },
		"ReadMetadata":  func() error { _, err := s.ReadMetadata("q", "big"); return err },
	}
	for name, call := range refused {
		err := call()
		if !errors.Is(err, ErrTooLarge) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s of 1 TiB metadata = %v, want a one-line ErrTooLarge", name, err)
		}
		if _, err := os.Lstat(s.queuePath("q", "big")); err != nil {
			t.Fatalf("after %s the entry left its queue: %v", name, err)
		}
	}
	r, err := s.NewReader("q")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if c, err := r.DequeueAvailable(); c != nil || err != nil {
		t.Errorf("DequeueAvailable = %v, %v; want it to pass over the entry", c, err)
	}
	if err := r.IterAvailable(context.Background(), func(c *Checkout) (Action, error) { return Action{}, nil }); err != nil {
		t.Errorf("IterAvailable = %v", err)
	}
	if got, _ := s.ListCheckedOut("q"); len(got) != 0 {
		t.Errorf("stranded in .checkout: %q", got)
	}
	if err := s.Move("q", "big", "r"); err != nil {
		t.Fatalf("Move: %v", err)
	}
	if err := s.Remove("r", "big"); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	runtime.ReadMemStats(&ms1)
	if d := ms1.TotalAlloc - ms0.TotalAlloc; d > 64<<20 {
		t.Errorf("the calls allocated %d MiB for a sparse file", d>>20)
	}
	if got := tree(t, s.Dir()); got != layout(bareLayout("q", "r")...) {
		t.Errorf("after Remove:\n%s", got)
	}
}

// TestMetadataGrowsAfterCheck: a metadata file that grows past
// MaxMetadataSize between the size check and the read is put back into its
// queue with ErrTooLarge; one within the bound is checked out.
func TestMetadataGrowsAfterCheck(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	hfs := &hookFS{}
	s, err := Create(dir, []string{"q"}, &Options{Durability: DurabilityNone, fs: hfs, MaxMetadataSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	mustEnqueue(t, s, "q", strings.Repeat("m", 100), "", EnqueueOptions{Name: "fits"})
	mustEnqueue(t, s, "q", "small", "", EnqueueOptions{Name: "grows"})
	if _, err := s.EnqueueBytes(context.Background(), "q", nil, nil, EnqueueOptions{Name: "x"}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.queuePath("q", "x"), []byte(strings.Repeat("m", 101)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Checkout(context.Background(), "q", "x"); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Checkout of 101 bytes with a bound of 100 = %v, want ErrTooLarge", err)
	}
	hfs.hook = func(op, path string) error {
		if op == "read" && filepath.Base(path) == "grows" {
			// A reference writer, or an attacker, appends meanwhile.
			os.Truncate(s.checkoutPath("q", "grows"), 1<<30)
		}
		return nil
	}
	if _, err := s.Checkout(context.Background(), "q", "grows"); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Checkout of metadata that grew = %v, want ErrTooLarge", err)
	}
	if _, err := os.Lstat(s.queuePath("q", "grows")); err != nil {
		t.Errorf("the grown entry is not back in its queue: %v", err)
	}
	c, err := s.Checkout(context.Background(), "q", "fits")
	if err != nil || len(c.Metadata()) != 100 {
		t.Fatalf("Checkout of 100 bytes = %v, %v", c, err)
	}
	c.Release()
}

// TestHardLinkedNotTouched: an entry whose metadata or registry file has
// another hard link (touching it would touch a file outside the spool) is
// refused with ErrLinked and left alone; the outside file keeps its mtime.
func TestHardLinkedNotTouched(t *testing.T) {
	for _, which := range []string{"metadata", "registry"} {
		t.Run(which, func(t *testing.T) {
			s := newTestSpool(t, []string{"q", "r"}, &Options{Durability: DurabilityNone})
			outside := filepath.Join(t.TempDir(), "victim")
			writeFile(t, outside, "victim")
			old := time.Now().Add(-time.Hour).Truncate(time.Second)
			os.Chtimes(outside, old, old)
			refEnqueue(t, s, "q", "e", "m", true)
			p := s.queuePath("q", "e")
			if which == "registry" {
				p = s.registryPath("e")
			}
			os.Remove(p)
			if err := os.Link(outside, p); err != nil {
				t.Fatal(err)
			}
			calls := map[string]func() error{
				"Checkout": func() error { _, err := s.Checkout(context.Background(), "q", "e"); return err },
				"Remove":   func() error { return s.Remove("q", "e") },
				"Move":     func() error { return s.Move("q", "e", "r") },
				"Reader": func() error {
					r, err := s.NewReader("q")
					if err != nil {
						return err
					}
					defer r.Close()
					if c, err := r.DequeueAvailable(); c != nil || err != nil {
						return fmt.Errorf("DequeueAvailable = %v, %v", c, err)
					}
					return ErrLinked
				},
			}
			for name, call := range calls {
				if err := call(); !errors.Is(err, ErrLinked) {
					t.Errorf("%s = %v, want ErrLinked", name, err)
				}
			}
			fi, err := os.Stat(outside)
			if err != nil || !fi.ModTime().Equal(old) {
				t.Errorf("the outside file was touched: %v %v", fi.ModTime(), err)
			}
			if _, err := os.Lstat(s.queuePath("q", "e")); err != nil {
				t.Errorf("the entry left its queue: %v", err)
			}
		})
	}
}

// TestWriteData: a checkout's holder replaces the payload atomically,
// keeping its mode; a failure at any step leaves the old payload intact and
// no temp file behind; a lost checkout cannot write.
func TestWriteData(t *testing.T) {
	tests := []struct {
		op   string // the call that fails ("" for none)
		want string // the payload afterwards
	}{
		{"", "new payload"},
		{"open", "old payload"},
		{"write", "old payload"},
		{"fsync", "old payload"},
		{"close", "old payload"},
		{"rename", "old payload"},
	}
	for _, tt := range tests {
		t.Run("fail "+tt.op, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "spool")
			hfs := &hookFS{}
			s, err := Create(dir, []string{"q"}, &Options{Durability: DurabilityFiles, fs: hfs})
			if err != nil {
				t.Fatal(err)
			}
			name := mustEnqueue(t, s, "q", "m", "old payload", EnqueueOptions{})
			if err := os.Chmod(s.dataPath(name), 0o640); err != nil {
				t.Fatal(err)
			}
			c := mustCheckout(t, s, "q", name)
			hfs.hook = func(op, path string) error {
				if op == tt.op && strings.Contains(path, name+".tmp.") {
					return unix.EIO
				}
				return nil
			}
			err = c.WriteData(strings.NewReader("new payload"))
			hfs.hook = nil
			if (err != nil) != (tt.op != "") {
				t.Fatalf("WriteData = %v", err)
			}
			if got, _ := os.ReadFile(s.dataPath(name)); string(got) != tt.want {
				t.Errorf("payload %q, want %q", got, tt.want)
			}
			if fi, err := os.Stat(s.dataPath(name)); err != nil || fi.Mode().Perm() != 0o640 {
				t.Errorf("payload mode %v %v, want 0640", fi.Mode(), err)
			}
			if err := c.Save("q", nil); err != nil {
				t.Fatal(err)
			}
			if got := tree(t, dir); got != layout(append(bareLayout("q"), "q/"+name, ".data/"+name, ".registry/"+name)...) {
				t.Errorf("left behind:\n%s", got)
			}
		})
	}
	s := newTestSpool(t, []string{"q"}, &Options{Durability: DurabilityNone})
	name := mustEnqueue(t, s, "q", "m", "old", EnqueueOptions{})
	c := mustCheckout(t, s, "q", name)
	// async_smtp's start-up recovery (uncheckout_all_entries) takes every
	// checkout, locked or not, by rename.
	if err := os.Rename(s.checkoutPath("q", name), s.queuePath("q", name)); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteData(strings.NewReader("new")); !errors.Is(err, ErrLost) {
		t.Errorf("WriteData of a lost checkout = %v, want ErrLost", err)
	}
	if got, _ := os.ReadFile(s.dataPath(name)); string(got) != "old" {
		t.Errorf("payload %q after a lost WriteData", got)
	}
}

// TestClose: after Close every method fails with ErrSpoolClosed (the
// descriptor numbers may name other files by then); closing twice is
// harmless.
func TestClose(t *testing.T) {
	s := newTestSpool(t, []string{"q"}, &Options{Durability: DurabilityNone})
	name := mustEnqueue(t, s, "q", "m", "d", EnqueueOptions{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	calls := map[string]func() error{
		"Enqueue": func() error {
			_, err := s.EnqueueBytes(context.Background(), "q", nil, nil, EnqueueOptions{})
			return err
		},
		"Reserve":  func() error { _, err := s.Reserve(nil); return err },
		"List":     func() error { _, err := s.List("q"); return err },
		"Checkout": func() error { _, err := s.Checkout(context.Background(), "q", name); return err },
		"Remove":   func() error { return s.Remove("q", name) },
		"Find":     func() error { _, _, err := s.Find(name); return err },
		"ReadData": func() error { _, err := s.ReadData(name); return err },
		"Recover": func() error {
			_, err := s.Recover(context.Background(), 0, RecoverOptions{WorkersStopped: true})
			return err
		},
		"AddQueue":   func() error { return s.AddQueue("r") },
		"NewReader":  func() error { _, err := s.NewReader("q"); return err },
		"Rediscover": func() error { return s.Rediscover() },
	}
	for n, call := range calls {
		if err := call(); !errors.Is(err, ErrSpoolClosed) {
			t.Errorf("%s after Close = %v, want ErrSpoolClosed", n, err)
		}
	}
}

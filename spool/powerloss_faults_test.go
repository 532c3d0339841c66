package spool_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spool-agent/spool-agent/internal/fsys"
	"github.com/spool-agent/spool-agent/spool"
	"golang.org/x/sys/unix"
)

// Power loss cannot be simulated in a test, but what survives it is decided
// by which fsyncs an operation issues, and in which order, before it
// returns. These tests record every call through the FS seam and check, for
// each operation at DurabilityFull, the order RELIABILITY.md argues from:
//
//   - a file's contents are fsynced after its last write and before the
//     rename that publishes it;
//   - a directory that gained or lost a name the operation depends on is
//     fsynced after that change and before the step that relies on it
//     (.registry and .data before an entry becomes visible; .checkout before
//     a removed entry's payload is unlinked);
//   - the directory an entry was renamed into (and the one it left) is
//     fsynced before the operation returns.

// callLog is a recorded sequence of calls with helpers to find them.
type callLog struct {
	t     *testing.T
	dir   string
	op    string
	calls []fsCall
}

// find returns the index of the first successful call matching op and the
// paths (relative to the spool; path2 "" matches any), or -1.
func (l callLog) find(op, path, path2 string) int {
	for i, c := range l.calls {
		if c.Err != nil || c.Op != op || c.Path != filepath.Join(l.dir, path) {
			continue
		}
		if path2 != "" && c.Path2 != filepath.Join(l.dir, path2) {
			continue
		}
		return i
	}
	return -1
}

// last returns the index of the last successful call matching op and path, or -1.
func (l callLog) last(op, path string) int {
	for i := len(l.calls) - 1; i >= 0; i-- {
		c := l.calls[i]
		if c.Err == nil && c.Op == op && c.Path == filepath.Join(l.dir, path) {
			return i
		}
	}
	return -1
}

// fsyncAfter returns the index of the first fsync of path after index i, or -1.
func (l callLog) fsyncAfter(path string, i int) int {
	for j := i + 1; j < len(l.calls); j++ {
		c := l.calls[j]
		if c.Err == nil && c.Op == "fsync" && c.Path == filepath.Join(l.dir, path) {
			return j
		}
	}
	return -1
}

// must reports a failed ordering requirement with the whole sequence.
func (l callLog) must(ok bool, format string, args ...any) {
	l.t.Helper()
	if !ok {
		l.t.Errorf("%s: %s\ncalls:\n%s", l.op, fmt.Sprintf(format, args...), l)
	}
}

func (l callLog) String() string {
	var b strings.Builder
	for i, c := range l.calls {
		if c.Op == "write" || c.Op == "close" {
			continue
		}
		fmt.Fprintf(&b, "  %3d %s %s", i, c.Op, rel(l.dir, c.Path))
		if c.Path2 != "" {
			fmt.Fprintf(&b, " -> %s", rel(l.dir, c.Path2))
		}
		if c.Err != nil {
			fmt.Fprintf(&b, ": %v", c.Err)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// countFsyncs returns the number of file and directory fsyncs in the log.
func (l callLog) countFsyncs() (files, dirs int) {
	isDir := map[string]bool{}
	for _, c := range l.calls {
		if c.Op == "open" && c.Err == nil {
			isDir[c.Path] = c.Dir
		}
		if c.Op == "fsync" && c.Err == nil {
			// The spool's directories are opened once, before the log.
			if fi, err := os.Lstat(c.Path); err == nil && fi.IsDir() {
				isDir[c.Path] = true
			}
			if isDir[c.Path] {
				dirs++
			} else {
				files++
			}
		}
	}
	return files, dirs
}

// recorder runs operations on a spool opened through a recording faultFS
// and returns each operation's calls.
type recorder struct {
	t   *testing.T
	ff  *faultFS
	s   *spool.Spool
	dir string
}

func newRecorder(t *testing.T, d spool.Durability) *recorder {
	ff := newFaultFS()
	dir := filepath.Join(t.TempDir(), "spool")
	ff.record = true
	o := &spool.Options{Durability: d, Names: spool.PrefixNames("e")}
	fsys.SetOptions(o, ff)
	s, err := spool.Create(dir, []string{"q1", "q2"}, o)
	if err != nil {
		t.Fatal(err)
	}
	return &recorder{t: t, ff: ff, s: s, dir: dir}
}

func (r *recorder) do(op string, f func() error) callLog {
	r.t.Helper()
	r.ff.takeLog()
	if err := f(); err != nil {
		r.t.Fatalf("%s: %v", op, err)
	}
	return callLog{t: r.t, dir: r.dir, op: op, calls: r.ff.takeLog()}
}

func TestPowerLossFsyncOrder(t *testing.T) {
	r := newRecorder(t, spool.DurabilityFull)
	var name string

	// Create: every directory it makes is fsynced in its parent.
	t.Run("create", func(t *testing.T) {
		ff := newFaultFS()
		ff.record = true
		dir := filepath.Join(t.TempDir(), "spool")
		var o spool.Options
		fsys.SetOptions(&o, ff)
		if _, err := spool.Create(dir, []string{"q1"}, &o); err != nil {
			t.Fatal(err)
		}
		l := callLog{t: t, dir: dir, op: "create", calls: ff.takeLog()}
		for _, d := range []string{spool.RegistryDir, spool.TmpDir, spool.DataDir, "q1", "q1/" + spool.CheckoutDir} {
			m := l.find("mkdir", d, "")
			l.must(m >= 0, "no mkdir of %s", d)
			l.must(l.fsyncAfter(filepath.Dir(d), m) > m, "mkdir %s is not followed by an fsync of its parent", d)
		}
	})

	t.Run("enqueue", func(t *testing.T) {
		l := r.do("enqueue", func() (err error) {
			name, err = r.s.EnqueueBytes(context.Background(), "q1", []byte(meta1), []byte(payload), spool.EnqueueOptions{})
			return err
		})
		l.t = t
		reg := l.find("open", spool.RegistryDir+"/"+name, "")
		data := spool.DataDir + "/" + name
		tmp := spool.TmpDir + "/" + name
		pub := l.find("rename", tmp, "q1/"+name)
		l.must(reg >= 0, "no create of the registry file")
		l.must(pub >= 0, "no rename of %s into q1", tmp)
		lastData, dataSync := l.last("write", data), l.fsyncAfter(data, l.last("write", data))
		l.must(lastData >= 0 && dataSync > lastData && dataSync < pub, "payload fsync (%d) must follow its last write (%d) and precede the publishing rename (%d)", dataSync, lastData, pub)
		lastTmp := l.last("write", tmp)
		tmpSync := l.fsyncAfter(tmp, lastTmp)
		l.must(lastTmp >= 0 && tmpSync > lastTmp && tmpSync < pub, "metadata fsync (%d) must follow its last write (%d) and precede the publishing rename (%d)", tmpSync, lastTmp, pub)
		for _, f := range []struct{ what, path string }{{"payload", data}, {"metadata", tmp}} {
			lw := l.last("write", f.path)
			kick, sync := l.find("kick", f.path, ""), l.fsyncAfter(f.path, lw)
			l.must(kick > lw && kick < sync, "the %s's write-back must start (%d) after its last write (%d) and before its fsync (%d)", f.what, kick, lw, sync)
		}
		regSync := l.fsyncAfter(spool.RegistryDir, reg)
		l.must(regSync > reg && regSync < pub, ".registry fsync (%d) must follow the reservation (%d) and precede the publishing rename (%d)", regSync, reg, pub)
		dataCreate := l.find("open", data, "")
		dataDirSync := l.fsyncAfter(spool.DataDir, dataCreate)
		l.must(dataDirSync > dataCreate && dataDirSync < pub, ".data fsync (%d) must follow the payload's creation (%d) and precede the publishing rename (%d)", dataDirSync, dataCreate, pub)
		l.must(l.fsyncAfter("q1", pub) > pub, "q1 must be fsynced after the publishing rename, before Enqueue returns")
	})

	var c *spool.Checkout
	t.Run("checkout", func(t *testing.T) {
		l := r.do("checkout", func() (err error) {
			c, err = r.s.Checkout(context.Background(), "q1", name)
			return err
		})
		l.t = t
		mv := l.find("rename", "q1/"+name, "q1/.checkout/"+name)
		l.must(mv >= 0, "no rename into .checkout")
		l.must(l.fsyncAfter("q1/.checkout", mv) > mv, "q1/.checkout must be fsynced after the claim")
		l.must(l.fsyncAfter("q1", mv) > mv, "q1 must be fsynced after the claim")
	})
	if c == nil {
		t.Fatal("no checkout")
	}

	t.Run("save", func(t *testing.T) {
		l := r.do("save", func() error { return c.Save("q2", []byte(meta2)) })
		l.t = t
		// The new metadata is staged in .tmp, fsynced, renamed over the
		// checkout file; then the checkout file moves into q2.
		repl := -1
		for i, call := range l.calls {
			if call.Op == "rename" && call.Err == nil && call.Path2 == filepath.Join(r.dir, "q1/.checkout", name) {
				repl = i
				break
			}
		}
		l.must(repl >= 0, "no rename of new metadata over the checkout file")
		if repl >= 0 {
			staged := rel(r.dir, l.calls[repl].Path)
			lw := l.last("write", staged)
			s := l.fsyncAfter(staged, lw)
			l.must(lw >= 0 && s > lw && s < repl, "new metadata %s must be fsynced (%d) after its last write (%d) and before it replaces the checkout file (%d)", staged, s, lw, repl)
		}
		mv := l.find("rename", "q1/.checkout/"+name, "q2/"+name)
		l.must(mv > repl, "the move into q2 (%d) must follow the metadata replacement (%d)", mv, repl)
		l.must(l.fsyncAfter("q2", mv) > mv, "q2 must be fsynced after the move")
		l.must(l.fsyncAfter("q1/.checkout", mv) > mv, "q1/.checkout must be fsynced after the move (or the entry may reappear there)")
	})

	t.Run("move", func(t *testing.T) {
		l := r.do("move", func() error { return r.s.Move("q2", name, "q1") })
		l.t = t
		co := l.find("rename", "q2/"+name, "q2/.checkout/"+name)
		mv := l.find("rename", "q2/.checkout/"+name, "q1/"+name)
		l.must(co >= 0 && mv > co, "move must claim (%d) then rename into q1 (%d)", co, mv)
		l.must(l.fsyncAfter("q1", mv) > mv, "q1 must be fsynced after the move")
		l.must(l.fsyncAfter("q2/.checkout", mv) > mv, "q2/.checkout must be fsynced after the move")
	})

	t.Run("recover", func(t *testing.T) {
		// A crashed holder: the file in .checkout, unlocked, old.
		co := filepath.Join(r.dir, "q1", spool.CheckoutDir, name)
		if err := os.Rename(filepath.Join(r.dir, "q1", name), co); err != nil {
			t.Fatal(err)
		}
		old := time.Now().Add(-time.Hour)
		os.Chtimes(co, old, old)
		l := r.do("recover", func() error {
			rs, err := r.s.Recover(context.Background(), time.Minute, spool.RecoverOptions{})
			if err == nil && len(rs) != 1 {
				err = fmt.Errorf("recovered %v", rs)
			}
			return err
		})
		l.t = t
		mv := l.find("rename", "q1/.checkout/"+name, "q1/"+name)
		l.must(mv >= 0, "no rename back into q1")
		l.must(l.fsyncAfter("q1", mv) > mv, "q1 must be fsynced after recovery")
		l.must(l.fsyncAfter("q1/.checkout", mv) > mv, "q1/.checkout must be fsynced after recovery")
	})

	t.Run("remove", func(t *testing.T) {
		l := r.do("remove", func() error { return r.s.Remove("q1", name) })
		l.t = t
		u1 := l.find("unlink", "q1/.checkout/"+name, "")
		u2 := l.find("unlink", spool.DataDir+"/"+name, "")
		u3 := l.find("unlink", spool.RegistryDir+"/"+name, "")
		l.must(u1 >= 0 && u2 > u1 && u3 > u1, "remove must unlink the checkout file (%d) before the payload (%d) and registry file (%d)", u1, u2, u3)
		cs := l.fsyncAfter("q1/.checkout", u1)
		l.must(cs > u1 && cs < u2, "q1/.checkout must be fsynced (%d) after the entry's unlink (%d) and before its payload is unlinked (%d): otherwise power loss can leave a waiting entry without payload", cs, u1, u2)
		l.must(l.fsyncAfter(spool.DataDir, u2) > u2, ".data must be fsynced after the payload's unlink")
		l.must(l.fsyncAfter(spool.RegistryDir, u3) > u3, ".registry must be fsynced after the registry file's unlink")
	})

	t.Run("reserve", func(t *testing.T) {
		var n string
		l := r.do("reserve", func() (err error) {
			n, err = r.s.Reserve(nil)
			return err
		})
		l.t = t
		reg := l.find("open", spool.RegistryDir+"/"+n, "")
		l.must(reg >= 0 && l.fsyncAfter(spool.RegistryDir, reg) > reg, "a reservation must be fsynced in .registry before Reserve returns")
	})
}

// kickFS fails every write-back start with err.
type kickFS struct {
	fsys.OS
	err error
}

func (f kickFS) StartWriteback(int) error { return f.err }

// TestWritebackStartError: an error of a write-back start fails the
// enqueue, which leaves nothing behind (the file system may have given up
// on the pages and would report nothing later); an error that only says
// the call is unsupported is ignored.
func TestWritebackStartError(t *testing.T) {
	for _, tc := range []struct {
		err  error
		fail bool
	}{
		{unix.EIO, true},
		{unix.ENOSPC, true},
		{unix.EROFS, true},
		{unix.ENOSYS, false},
		{unix.EOPNOTSUPP, false},
		{unix.EINVAL, false},
		{unix.ESPIPE, false},
	} {
		t.Run(tc.err.Error(), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "spool")
			o := &spool.Options{Durability: spool.DurabilityFull}
			fsys.SetOptions(o, kickFS{err: tc.err})
			s, err := spool.Create(dir, []string{"q1"}, o)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			_, err = s.EnqueueBytes(context.Background(), "q1", []byte(meta1), []byte(payload), spool.EnqueueOptions{})
			if !tc.fail {
				if err != nil {
					t.Fatalf("enqueue: %v, want success", err)
				}
				return
			}
			var pe *fs.PathError
			if !errors.Is(err, tc.err) || !errors.As(err, &pe) || pe.Op != "write back" {
				t.Fatalf("enqueue: %v, want a write back *fs.PathError wrapping %v", err, tc.err)
			}
			for _, d := range []string{"q1", spool.RegistryDir, spool.DataDir, spool.TmpDir} {
				if left, _ := os.ReadDir(filepath.Join(dir, d)); len(left) > 1 || len(left) == 1 && left[0].Name() != spool.CheckoutDir {
					t.Errorf("%s holds %v after the failed enqueue", d, left)
				}
			}
		})
	}
}

// TestDurabilityLevelsFsyncs checks what the weaker levels promise: Files
// fsyncs every file it writes and no directory, None fsyncs nothing. Where
// files are fsynced, an enqueue starts the write-back of its payload and of
// its metadata as soon as each is written; at None it starts none, which
// would only add disk writes.
func TestDurabilityLevelsFsyncs(t *testing.T) {
	for _, tc := range []struct {
		d             spool.Durability
		files, noDirs bool
	}{
		{spool.DurabilityNone, false, true},
		{spool.DurabilityFiles, true, true},
		{spool.DurabilityFull, true, false},
	} {
		t.Run(tc.d.String(), func(t *testing.T) {
			r := newRecorder(t, tc.d)
			var name string
			l := r.do("enqueue", func() (err error) {
				name, err = r.s.EnqueueBytes(context.Background(), "q1", []byte(meta1), []byte(payload), spool.EnqueueOptions{})
				return err
			})
			l.t = t
			var kicked, wantKicked []string
			for _, c := range l.calls {
				if c.Op == "kick" {
					kicked = append(kicked, rel(r.dir, c.Path))
				}
			}
			if tc.files {
				wantKicked = []string{spool.DataDir + "/" + name, spool.TmpDir + "/" + name}
			}
			if !slices.Equal(kicked, wantKicked) {
				t.Errorf("enqueue at %s: write-back started for %q, want %q", tc.d, kicked, wantKicked)
			}
			files, dirs := l.countFsyncs()
			if tc.files && files < 2 {
				t.Errorf("enqueue at %s: %d file fsyncs, want payload and metadata", tc.d, files)
			}
			if !tc.files && files > 0 {
				t.Errorf("enqueue at %s: %d file fsyncs, want none", tc.d, files)
			}
			if tc.noDirs && dirs > 0 {
				t.Errorf("enqueue at %s: %d directory fsyncs, want none", tc.d, dirs)
			}
			if !tc.noDirs && dirs < 3 {
				t.Errorf("enqueue at %s: %d directory fsyncs, want at least .registry, .data and q1", tc.d, dirs)
			}
			l = r.do("remove", func() error { return r.s.Remove("q1", name) })
			files, dirs = l.countFsyncs()
			if tc.noDirs && dirs > 0 || !tc.files && files > 0 {
				t.Errorf("remove at %s: %d file and %d directory fsyncs", tc.d, files, dirs)
			}
		})
	}
}

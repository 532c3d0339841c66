package reliability

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spool-agent/spool-agent/internal/fsys"
	"github.com/spool-agent/spool-agent/internal/testkit"
	"github.com/spool-agent/spool-agent/monitor"
	"github.com/spool-agent/spool-agent/reliability/internal/workload"
	"github.com/spool-agent/spool-agent/spool"
	"golang.org/x/sys/unix"
)

// The bad-input matrix. Every case is a subtest of TestBadInput; each sets
// up a spool (or a configuration, or a request) that is wrong in one way and
// checks that the library, the CLI or the agent gives a clear error, loses
// nothing, writes and deletes nothing outside the spool, and (for the agent)
// keeps serving the other spools.

// outsideFile is a file outside every spool that symlinks point to. check
// fails the test if anything wrote to it, replaced it or removed it.
type outsideFile struct {
	path  string
	data  []byte
	mtime time.Time
	ino   uint64
}

func newOutsideFile(t *testing.T) *outsideFile {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "outside")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	o := &outsideFile{path: filepath.Join(dir, "precious"), data: []byte("precious data outside the spool\n")}
	if err := os.WriteFile(o.path, o.data, 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	os.Chtimes(o.path, old, old)
	fi, err := os.Lstat(o.path)
	if err != nil {
		t.Fatal(err)
	}
	o.mtime, o.ino = fi.ModTime(), fi.Sys().(*syscall.Stat_t).Ino
	return o
}

func (o *outsideFile) check(t *testing.T) {
	t.Helper()
	fi, err := os.Lstat(o.path)
	if err != nil {
		t.Fatalf("the file outside the spool is gone: %v", err)
	}
	b, _ := os.ReadFile(o.path)
	if !bytes.Equal(b, o.data) || !fi.ModTime().Equal(o.mtime) || fi.Sys().(*syscall.Stat_t).Ino != o.ino {
		t.Fatalf("the file outside the spool was changed: %q, mtime %v (was %v)", b, fi.ModTime(), o.mtime)
	}
	ents, _ := os.ReadDir(filepath.Dir(o.path))
	if len(ents) != 1 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("something was created next to the file outside the spool: %v", names)
	}
}

// outsideDir is a directory outside every spool that symlinks point to;
// check fails the test if its contents changed.
type outsideDir struct {
	path  string
	files map[string]string
}

func newOutsideDir(t *testing.T, files map[string]string) *outsideDir {
	t.Helper()
	d := &outsideDir{path: filepath.Join(t.TempDir(), "outside-dir"), files: files}
	for name, content := range files {
		p := filepath.Join(d.path, name)
		if strings.HasSuffix(name, "/") {
			os.MkdirAll(p, 0o755)
			continue
		}
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(d.path, 0o755)
	return d
}

func (d *outsideDir) check(t *testing.T) {
	t.Helper()
	got := map[string]string{}
	filepath.WalkDir(d.path, func(p string, e os.DirEntry, err error) error {
		if err != nil || p == d.path {
			return nil
		}
		r, _ := filepath.Rel(d.path, p)
		if e.IsDir() {
			got[r+"/"] = ""
			return nil
		}
		b, _ := os.ReadFile(p)
		got[r] = string(b)
		return nil
	})
	want := map[string]string{}
	for name, content := range d.files {
		want[name] = content
		for dir := filepath.Dir(name); dir != "."; dir = filepath.Dir(dir) {
			want[dir+"/"] = ""
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("the directory outside the spool changed:\n got %v\nwant %v", got, want)
	}
}

// goodSpool creates a spool with queues "in" and "out" holding a few
// entries, and returns it with the names of its entries.
func goodSpool(t *testing.T, dir string) (*spool.Spool, []string) {
	t.Helper()
	s, err := spool.Create(dir, []string{"in", "out"}, &spool.Options{Durability: spool.DurabilityNone})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for i := range 3 {
		n, err := s.EnqueueBytes(context.Background(), "in", []byte(fmt.Sprintf("meta %d", i)), []byte(fmt.Sprintf("data %d", i)), spool.EnqueueOptions{})
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	return s, names
}

// checkEntries fails the test unless every one of names is intact
// (waiting in some queue with its payload) in the spool at dir.
func checkEntries(t *testing.T, dir string, names []string) {
	t.Helper()
	s, err := spool.Open(dir, &spool.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		q, co, err := s.Find(n)
		if err != nil {
			t.Fatalf("entry %s lost: %v", n, err)
		}
		if co {
			t.Fatalf("entry %s left checked out in %s", n, q)
		}
		if _, err := s.ReadData(n); err != nil {
			t.Fatalf("entry %s: payload: %v", n, err)
		}
	}
}

// wantErr fails the test unless err is not nil and, if is is not nil, wraps is.
func wantErr(t *testing.T, what string, err error, is error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error", what)
	}
	if is != nil && !errors.Is(err, is) {
		t.Fatalf("%s: %v, want an error wrapping %v", what, err, is)
	}
	t.Logf("%s: %v", what, err)
}

// fsckNames runs monitor.Check and returns the problems by kind.
func fsckKinds(t *testing.T, dir string) map[monitor.Kind][]string {
	t.Helper()
	ps, err := monitor.Check(dir, monitor.DefaultLimits(), time.Now())
	if err != nil {
		t.Logf("fsck error: %v", err)
	}
	out := map[monitor.Kind][]string{}
	for _, p := range ps {
		out[p.Kind] = append(out[p.Kind], p.Dir.Path(p.Name))
	}
	return out
}

// badInputCase is one case of the matrix.
type badInputCase struct {
	area string // spool, cli, config, http
	name string
	run  func(t *testing.T)
}

// spoolCases are the bad spool contents, exercised through the library.
var spoolCases = []badInputCase{
	{"spool", "symlinked-queue-dir-to-outside", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "spool")
		s, names := goodSpool(t, dir)
		out := newOutsideDir(t, map[string]string{".checkout/": "", "victim": "outside entry"})
		if err := os.Symlink(out.path, filepath.Join(dir, "evil")); err != nil {
			t.Fatal(err)
		}
		s2, err := spool.Open(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(s2.Queues(), "evil") {
			t.Fatalf("a symlinked queue directory was taken as a queue: %v", s2.Queues())
		}
		for _, sp := range []*spool.Spool{s, s2} {
			_, err = sp.EnqueueBytes(context.Background(), "evil", []byte("m"), []byte("d"), spool.EnqueueOptions{})
			wantErr(t, "enqueue into the symlinked queue", err, spool.ErrUnknownQueue)
			wantErr(t, "remove through the symlinked queue", sp.Remove("evil", "victim"), nil)
			wantErr(t, "move into the symlinked queue", sp.Move("in", names[0], "evil"), spool.ErrUnknownQueue)
			if _, err := sp.Recover(context.Background(), -time.Hour, spool.RecoverOptions{WorkersStopped: true}); err != nil {
				t.Logf("recover: %v", err)
			}
		}
		fsckKinds(t, dir)
		out.check(t)
		checkEntries(t, dir, names)
	}},
	{"spool", "symlinked-entry-in-queue", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "spool")
		s, names := goodSpool(t, dir)
		out := newOutsideFile(t)
		link := "link"
		for _, d := range []string{"in", spool.RegistryDir} {
			if d == "in" {
				os.Symlink(out.path, filepath.Join(dir, d, link))
			} else {
				os.WriteFile(filepath.Join(dir, d, link), nil, 0o644)
			}
		}
		os.Symlink(out.path, filepath.Join(dir, spool.DataDir, link))
		if ls, _ := s.List("in"); slices.Contains(ls, link) {
			t.Fatalf("List returned the symlink: %v", ls)
		}
		_, err := s.Checkout(context.Background(), "in", link)
		wantErr(t, "checkout of the symlink", err, nil)
		wantErr(t, "remove of the symlink", s.Remove("in", link), nil)
		wantErr(t, "move of the symlink", s.Move("in", link, "out"), nil)
		wantErr(t, "metadata write through the symlink", s.WriteMetadata("in", link, []byte("overwrite")), nil)
		_, err = s.ReadData(link)
		wantErr(t, "payload read through the symlink", err, nil)
		if k := fsckKinds(t, dir); len(k[monitor.KindUnexpected]) == 0 {
			t.Errorf("fsck does not report the symlink: %v", k)
		}
		out.check(t)
		checkEntries(t, dir, names)
	}},
	{"spool", "symlink-in-checkout-recover", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "spool")
		s, names := goodSpool(t, dir)
		out := newOutsideFile(t)
		os.Symlink(out.path, filepath.Join(dir, "in", spool.CheckoutDir, "stuck"))
		os.WriteFile(filepath.Join(dir, spool.RegistryDir, "stuck"), nil, 0o644)
		old := time.Now().Add(-time.Hour)
		os.Chtimes(filepath.Join(dir, spool.RegistryDir, "stuck"), old, old)
		rec, err := s.Recover(context.Background(), -time.Hour, spool.RecoverOptions{WorkersStopped: true})
		if err != nil {
			t.Logf("recover: %v", err)
		}
		if len(rec) != 0 {
			t.Fatalf("recover moved a symlink: %v", rec)
		}
		if _, err := os.Lstat(filepath.Join(dir, "in", spool.CheckoutDir, "stuck")); err != nil {
			t.Fatalf("the symlink in .checkout was moved or removed: %v", err)
		}
		wantErr(t, "remove of the symlinked checkout", s.Remove("in", "stuck"), nil)
		out.check(t)
		checkEntries(t, dir, names)
	}},
	{"spool", "symlinked-payload-and-registry", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "spool")
		s, names := goodSpool(t, dir)
		out := newOutsideFile(t)
		victim := names[0]
		for _, d := range []string{spool.DataDir, spool.RegistryDir} {
			p := filepath.Join(dir, d, victim)
			os.Remove(p)
			if err := os.Symlink(out.path, p); err != nil {
				t.Fatal(err)
			}
		}
		_, err := s.ReadData(victim)
		wantErr(t, "payload read through the symlink", err, nil)
		if f, err := s.OpenData(victim); err == nil {
			f.Close()
			t.Fatal("OpenData followed the symlink")
		}
		// Checkout touches the registry file (never through the link), the
		// entry can be moved and removed; the removal unlinks the links, not
		// what they point to.
		if err := s.Move("in", victim, "out"); err != nil {
			t.Fatalf("move: %v", err)
		}
		if err := s.Remove("out", victim); err != nil {
			t.Fatalf("remove: %v", err)
		}
		out.check(t)
		checkEntries(t, dir, names[1:])
	}},
	{"spool", "symlinked-spool-directories", func(t *testing.T) {
		for _, d := range []string{spool.RegistryDir, spool.TmpDir, spool.DataDir} {
			dir := filepath.Join(t.TempDir(), "spool")
			_, names := goodSpool(t, dir)
			out := newOutsideDir(t, map[string]string{"x": "outside"})
			os.Rename(filepath.Join(dir, d), filepath.Join(dir, "saved"))
			if err := os.Symlink(out.path, filepath.Join(dir, d)); err != nil {
				t.Fatal(err)
			}
			_, err := spool.Open(dir, nil)
			wantErr(t, "open with "+d+" a symlink", err, spool.ErrNotSpool)
			_, err = spool.Create(dir, []string{"in"}, nil)
			wantErr(t, "create with "+d+" a symlink", err, nil)
			out.check(t)
			os.Remove(filepath.Join(dir, d))
			os.Rename(filepath.Join(dir, "saved"), filepath.Join(dir, d))
			checkEntries(t, dir, names)
		}
	}},
	{"spool", "entry-replaced-by-directory", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "spool")
		s, names := goodSpool(t, dir)
		victim := names[0]
		p := filepath.Join(dir, "in", victim)
		os.Remove(p)
		os.MkdirAll(filepath.Join(p, "inside"), 0o755)
		if ls, _ := s.List("in"); slices.Contains(ls, victim) {
			t.Fatalf("List returned a directory: %v", ls)
		}
		_, err := s.Checkout(context.Background(), "in", victim)
		wantErr(t, "checkout of a directory", err, nil)
		wantErr(t, "remove of a directory", s.Remove("in", victim), nil)
		if _, err := os.Stat(filepath.Join(p, "inside")); err != nil {
			t.Fatalf("the directory was removed: %v", err)
		}
		if k := fsckKinds(t, dir); len(k[monitor.KindUnexpected]) == 0 {
			t.Errorf("fsck does not report the directory: %v", k)
		}
		checkEntries(t, dir, names[1:])
	}},
	{"spool", "payload-replaced-by-directory", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "spool")
		s, names := goodSpool(t, dir)
		victim := names[0]
		p := filepath.Join(dir, spool.DataDir, victim)
		os.Remove(p)
		os.MkdirAll(filepath.Join(p, "inside"), 0o755)
		_, err := s.ReadData(victim)
		wantErr(t, "payload read of a directory", err, nil)
		err = s.Remove("in", victim)
		wantErr(t, "remove with a directory as payload", err, nil)
		if _, err := os.Stat(filepath.Join(p, "inside")); err != nil {
			t.Fatalf("the directory was removed: %v", err)
		}
		if k := fsckKinds(t, dir); len(k) == 0 {
			t.Errorf("fsck reports nothing")
		}
		checkEntries(t, dir, names[1:])
	}},
	{"spool", "queue-replaced-by-file", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "spool")
		s, names := goodSpool(t, dir)
		if err := s.AddQueue("broken"); err != nil {
			t.Fatal(err)
		}
		os.RemoveAll(filepath.Join(dir, "broken"))
		os.WriteFile(filepath.Join(dir, "broken"), []byte("a file"), 0o644)
		_, err := s.EnqueueBytes(context.Background(), "broken", []byte("m"), []byte("d"), spool.EnqueueOptions{})
		wantErr(t, "enqueue into a queue that is a file", err, nil)
		s2, err := spool.Open(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = s2.EnqueueBytes(context.Background(), "broken", []byte("m"), []byte("d"), spool.EnqueueOptions{})
		wantErr(t, "enqueue into a queue that is a file (fresh open)", err, spool.ErrUnknownQueue)
		if b, _ := os.ReadFile(filepath.Join(dir, "broken")); string(b) != "a file" {
			t.Fatalf("the file was changed: %q", b)
		}
		checkEntries(t, dir, names)
	}},
	{"spool", "checkout-dir-removed-while-open", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "spool")
		s, names := goodSpool(t, dir)
		if err := os.Remove(filepath.Join(dir, "in", spool.CheckoutDir)); err != nil {
			t.Fatal(err)
		}
		// Remove must not call an entry removed when it could not claim it.
		wantErr(t, "remove without a .checkout directory", s.Remove("in", names[0]), nil)
		_, err := s.Checkout(context.Background(), "in", names[0])
		wantErr(t, "checkout without a .checkout directory", err, nil)
		if _, err := os.Stat(filepath.Join(dir, "in", names[0])); err != nil {
			t.Fatalf("entry gone: %v", err)
		}
		os.Mkdir(filepath.Join(dir, "in", spool.CheckoutDir), 0o755)
		checkEntries(t, dir, names)
	}},
	{"spool", "control-characters-in-names", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "spool")
		s, names := goodSpool(t, dir)
		for _, bad := range []string{"a\nb", "esc\x1b[2J", "nul\x00", "tab\t", "del\x7f", "../escape", ".registry", "a/b"} {
			_, err := s.EnqueueBytes(context.Background(), "in", nil, nil, spool.EnqueueOptions{Name: bad})
			wantErr(t, fmt.Sprintf("enqueue named %q", bad), err, spool.ErrInvalidName)
			// Names another implementation can write are read (issue 10):
			// removing one that is not there succeeds.
			if spool.ValidateExistingName(bad) == nil {
				if err := s.Remove("in", bad); err != nil {
					t.Fatalf("remove of %q: %v", bad, err)
				}
			} else {
				wantErr(t, fmt.Sprintf("remove of %q", bad), s.Remove("in", bad), spool.ErrInvalidName)
			}
			_, err = s.EnqueueBytes(context.Background(), bad, nil, nil, spool.EnqueueOptions{})
			wantErr(t, fmt.Sprintf("enqueue into queue %q", bad), err, spool.ErrInvalidName)
		}
		// A file with such a name put there by something else is listed
		// (so an operator sees it), is an entry as it is to the reference
		// (it can be claimed by name), and is checked by fsck without
		// breaking it.
		weird := "weird\nname\x1b"
		for _, d := range []string{"in", spool.RegistryDir, spool.DataDir} {
			os.WriteFile(filepath.Join(dir, d, weird), []byte("x"), 0o644)
		}
		c, err := s.Checkout(context.Background(), "in", weird)
		if err != nil {
			t.Fatalf("checkout of a control-character name: %v", err)
		}
		if err := c.Release(); err != nil {
			t.Fatal(err)
		}
		fsckKinds(t, dir)
		checkEntries(t, dir, names)
	}},
	{"spool", "huge-metadata-10MiB", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "spool")
		s, names := goodSpool(t, dir)
		meta := bytes.Repeat([]byte("0123456789abcdef"), 10<<20/16)
		name, err := s.EnqueueBytes(context.Background(), "in", meta, []byte("small payload"), spool.EnqueueOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.ReadMetadata("in", name)
		if err != nil || !bytes.Equal(got, meta) {
			t.Fatalf("read back %d bytes, %v", len(got), err)
		}
		c, err := s.Checkout(context.Background(), "in", name)
		if err != nil || !bytes.Equal(c.Metadata(), meta) {
			t.Fatalf("checkout: %v", err)
		}
		if err := c.Save("out", append(meta, '!')); err != nil {
			t.Fatal(err)
		}
		if k := fsckKinds(t, dir); len(k) != 0 {
			t.Errorf("fsck: %v", k)
		}
		checkEntries(t, dir, append(names, name))
	}},
	{"spool", "permissions-changed-while-running", testPermissionsChanged},
	{"spool", "full-disk", testFullDisk},
	{"spool", "inotify-instances-exhausted-consumer", testInotifyExhaustedConsumer},
}

// testUID is the unprivileged user the tests run some children as: a
// dedicated uid (no passwd entry needed) so that exhausting its per-user
// limits disturbs nobody else on the machine.
var testUID = 50000 + os.Getpid()%10000

// asTestUser makes cmd run as testUID. The tests run as root, for whom
// permission bits mean nothing; a child without privileges sees them.
func asTestUser(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(testUID), Gid: uint32(testUID)}}
}

// userDir returns a fresh directory that testUID owns and can reach.
func userDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	for p := d; p != "/" && p != os.TempDir(); p = filepath.Dir(p) {
		os.Chmod(p, 0o755)
	}
	if err := os.Chown(d, testUID, testUID); err != nil {
		t.Fatal(err)
	}
	return d
}

// chownTree gives the tree at dir to testUID.
func chownTree(t *testing.T, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, testUID, testUID)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// ackedIDs reads a producer's acknowledgement log.
func ackedIDs(t *testing.T, path string) []string {
	t.Helper()
	lines, err := workload.ReadLog(path)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, f := range lines {
		if len(f) == 3 && f[0] == "ack" {
			ids = append(ids, f[1])
		}
	}
	return ids
}

// checkIDs fails the test unless every id is in exactly one entry of the
// spool at dir, with its payload, and fsck finds no duplicate or entry
// without payload. It returns the number of entries.
func checkIDs(t *testing.T, dir string, ids []string) int {
	t.Helper()
	s, err := spool.Open(dir, &spool.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	n := 0
	for _, q := range s.Queues() {
		for _, list := range []func(string) ([]string, error){s.List, s.ListCheckedOut} {
			names, err := list(q)
			if err != nil {
				t.Fatal(err)
			}
			for _, name := range names {
				meta, err := s.ReadMetadata(q, name)
				id, ok := workload.ParseID(meta)
				if err != nil || !ok {
					t.Fatalf("entry %s/%s: %q, %v", q, name, meta, err)
				}
				if data, err := s.ReadData(name); err != nil || !workload.CheckPayload(id, data) {
					t.Fatalf("entry %s/%s: payload %v", q, name, err)
				}
				seen[id]++
				n++
			}
		}
	}
	for _, id := range ids {
		if seen[id] != 1 {
			t.Fatalf("acknowledged id %s is in %d entries", id, seen[id])
		}
	}
	for k, v := range fsckKinds(t, dir) {
		if k == monitor.KindDuplicated || k == monitor.KindMissingData {
			t.Fatalf("fsck: %s %v", k, v)
		}
	}
	return n
}

// testPermissionsChanged runs a producer as an unprivileged user, takes
// away its write permission on .data while it runs (a real chmod, which an
// unprivileged process cannot ignore), and checks that it stops with a clear
// error, that everything it acknowledged is intact and nothing half-written
// is left, and that it works again once the permission is back.
func testPermissionsChanged(t *testing.T) {
	needBinary(t, &bin.worker)
	base := userDir(t)
	dir := filepath.Join(base, "spool")
	if _, err := spool.Create(dir, []string{"in"}, nil); err != nil {
		t.Fatal(err)
	}
	chownTree(t, dir)
	acks := filepath.Join(base, "acks.log")
	cmd := exec.Command(bin.worker, "produce", "-spool", dir, "-queue", "in", "-id", "perm", "-log", acks, "-durability", "none")
	asTestUser(cmd)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	testkit.WaitFor(t, 10*time.Second, "20 acknowledged entries", func() bool { return len(ackedIDs(t, acks)) >= 20 })
	if err := os.Chmod(filepath.Join(dir, spool.DataDir), 0o500); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Fatalf("producer exited with %v, want status 1", err)
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the producer did not stop within 10s of losing its permission")
	}
	msg := stderr.String()
	if !strings.Contains(msg, "permission denied") || !strings.Contains(msg, filepath.Join(dir, spool.DataDir)) {
		t.Fatalf("unclear error: %q", msg)
	}
	t.Logf("producer: %s", strings.TrimSpace(msg))
	ids := ackedIDs(t, acks)
	n := checkIDs(t, dir, ids)
	if n != len(ids) {
		t.Errorf("%d entries for %d acknowledged ids", n, len(ids))
	}
	if k := fsckKinds(t, dir); len(k) != 0 {
		t.Errorf("a refused enqueue left files behind: %v", k)
	}
	os.Chmod(filepath.Join(dir, spool.DataDir), 0o755)
	cmd = exec.Command(bin.worker, "produce", "-spool", dir, "-queue", "in", "-id", "perm2", "-log", acks, "-n", "5", "-durability", "none")
	asTestUser(cmd)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("after the permission came back: %v: %s", err, out)
	}
	checkIDs(t, dir, ackedIDs(t, acks))
}

// testFullDisk fills a 1 MiB tmpfs (the seam's ENOSPC where mounting is not
// allowed) with entries until enqueue fails, and checks the error, that
// every acknowledged entry is intact, that a failed enqueue leaves nothing
// fsck cannot classify, and that freeing space makes enqueue work again.
func testFullDisk(t *testing.T) {
	mnt := filepath.Join(t.TempDir(), "mnt")
	os.Mkdir(mnt, 0o755)
	opts := &spool.Options{Durability: spool.DurabilityFull}
	if unmount, err := mountTmpfs(mnt, "size=1m"); err != nil {
		t.Logf("cannot mount a tmpfs (%v): the FS seam fills the disk instead", err)
		fsys.SetOptions(opts, &fullFS{OS: fsys.OS{}, budget: 1 << 20})
	} else {
		t.Logf("a real 1 MiB tmpfs fills up")
		t.Cleanup(unmount)
	}
	dir := filepath.Join(mnt, "spool")
	s, err := spool.Create(dir, []string{"in"}, opts)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	var names []string
	var ferr error
	for i := range 1000 {
		id := fmt.Sprintf("full-%d", i)
		name, err := s.EnqueueBytes(context.Background(), "in", workload.Metadata(id), workload.Payload(id, 32<<10), spool.EnqueueOptions{})
		if err != nil {
			ferr = err
			break
		}
		ids, names = append(ids, id), append(names, name)
	}
	if ferr == nil {
		t.Fatal("1000 entries of 32 KiB fit in 1 MiB")
	}
	if !errors.Is(ferr, syscall.ENOSPC) {
		t.Fatalf("enqueue on a full disk: %v, want ENOSPC", ferr)
	}
	t.Logf("after %d entries: %v", len(ids), ferr)
	checkIDs(t, dir, ids)
	for k, v := range fsckKinds(t, dir) {
		t.Errorf("a failed enqueue on a full disk left %s: %v", k, v)
	}
	// Free space: remove two entries; enqueue works again.
	for _, n := range names[:2] {
		if err := s.Remove("in", n); err != nil {
			t.Fatalf("remove on a full disk: %v", err)
		}
	}
	if _, err := s.EnqueueBytes(context.Background(), "in", workload.Metadata("again"), workload.Payload("again", 1024), spool.EnqueueOptions{}); err != nil {
		t.Fatalf("enqueue after freeing space: %v", err)
	}
	checkIDs(t, dir, append(ids[2:], "again"))
}

// fullFS is the seam's full disk: writes fail with ENOSPC once budget
// bytes have been written.
type fullFS struct {
	fsys.OS
	mu     sync.Mutex
	budget int
}

// Write implements fsys.FS.
func (f *fullFS) Write(fd int, p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.budget <= 0 {
		return 0, syscall.ENOSPC
	}
	if len(p) > f.budget {
		p = p[:f.budget]
	}
	n, err := f.OS.Write(fd, p)
	f.budget -= n
	return n, err
}

// Unlink implements fsys.FS: removing a file gives back a little space.
func (f *fullFS) Unlink(dirfd int, name string) error {
	var st unix.Stat_t
	f.OS.Lstat(dirfd, name, &st)
	err := f.OS.Unlink(dirfd, name)
	if err == nil {
		f.mu.Lock()
		f.budget += int(st.Size)
		f.mu.Unlock()
	}
	return err
}

// startHog exhausts testUID's inotify instances until the test ends.
func startHog(t *testing.T) {
	t.Helper()
	needBinary(t, &bin.worker)
	hog := exec.Command(bin.worker, "hog-inotify")
	asTestUser(hog)
	out, err := hog.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := hog.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hog.Process.Kill(); hog.Wait() })
	var res struct {
		Instances int    `json:"instances"`
		Err       string `json:"err"`
	}
	if err := json.NewDecoder(out).Decode(&res); err != nil {
		t.Fatal(err)
	}
	if res.Instances == 0 || !strings.Contains(res.Err, "too many open files") {
		t.Fatalf("the hog got %d inotify instances and then %q", res.Instances, res.Err)
	}
	t.Logf("a process of uid %d holds all %d of its inotify instances (%s)", testUID, res.Instances, res.Err)
}

// testInotifyExhaustedConsumer runs a consumer as a user with no inotify
// instance left: it must fall back to polling, say so, and still consume
// every entry.
func testInotifyExhaustedConsumer(t *testing.T) {
	base := userDir(t)
	dir := filepath.Join(base, "spool")
	if _, err := spool.Create(dir, []string{"in", "done"}, nil); err != nil {
		t.Fatal(err)
	}
	chownTree(t, dir)
	startHog(t)
	acks := filepath.Join(base, "acks.log")
	prod := exec.Command(bin.worker, "produce", "-spool", dir, "-queue", "in", "-id", "noinotify", "-log", acks, "-n", "20", "-durability", "none")
	asTestUser(prod)
	if out, err := prod.CombinedOutput(); err != nil {
		t.Fatalf("producer: %v: %s", err, out)
	}
	cons := exec.Command(bin.worker, "consume", "-spool", dir, "-queue", "in", "-to", "done", "-durability", "none")
	asTestUser(cons)
	var stderr tailBuffer
	cons.Stderr = &stderr
	if err := cons.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cons.Process.Kill(); cons.Wait() }()
	s, err := spool.Open(dir, &spool.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 15*time.Second, "the consumer to move 20 entries without inotify", func() bool {
		n, _ := s.List("done")
		return len(n) == 20
	})
	// One more, after the consumer went idle: polling finds it too.
	prod = exec.Command(bin.worker, "produce", "-spool", dir, "-queue", "in", "-id", "late", "-log", acks, "-n", "1", "-durability", "none")
	asTestUser(prod)
	if out, err := prod.CombinedOutput(); err != nil {
		t.Fatalf("producer: %v: %s", err, out)
	}
	testkit.WaitFor(t, 15*time.Second, "the consumer to poll the late entry", func() bool {
		n, _ := s.List("done")
		return len(n) == 21
	})
	if !strings.Contains(stderr.String(), "poll") {
		t.Errorf("the consumer did not say it fell back to polling: %q", stderr.String())
	}
	t.Logf("consumer: %s", strings.TrimSpace(stderr.String()))
	checkIDs(t, dir, ackedIDs(t, acks))
}

// cli runs the spool-agent binary with args (bounded by 30s).
func cli(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	needBinary(t, &bin.agent)
	return runCmd(t, 30*time.Second, nil, nil, append([]string{bin.agent}, args...)...)
}

// cliFails runs the binary and fails the test unless it exits non-zero with
// a one-line "spool-agent: " message on stderr that contains want.
func cliFails(t *testing.T, want string, args ...string) string {
	t.Helper()
	out, errOut, code := cli(t, args...)
	if code == 0 {
		t.Fatalf("spool-agent %q succeeded: %s", args, out)
	}
	msg := strings.TrimSpace(errOut)
	if !strings.HasPrefix(msg, "spool-agent: ") || !strings.Contains(msg, want) {
		t.Fatalf("spool-agent %q: exit %d, stderr %q, want a message containing %q", args, code, msg, want)
	}
	t.Logf("spool-agent %s: exit %d: %s", strings.Join(args, " "), code, msg)
	return msg
}

// cliOK runs the binary and fails the test unless it exits 0.
func cliOK(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := cli(t, args...)
	if code != 0 {
		t.Fatalf("spool-agent %q: exit %d: %s", args, code, errOut)
	}
	return out
}

// dirListing returns every path under dir (for "nothing changed" checks).
func dirListing(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err == nil {
			fi, _ := e.Info()
			fmt.Fprintf(&b, "%s %v %d\n", p, e.Type(), fi.Size())
		}
		return nil
	})
	return b.String()
}

// cliCases are bad input given to the operator subcommands.
var cliCases = []badInputCase{
	{"cli", "symlinks-never-followed-by-any-command", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "spool")
		_, names := goodSpool(t, dir)
		file := newOutsideFile(t)
		odir := newOutsideDir(t, map[string]string{".checkout/": "", "victim": "outside entry"})
		os.Symlink(odir.path, filepath.Join(dir, "evil"))
		os.Symlink(file.path, filepath.Join(dir, "in", "link"))
		os.WriteFile(filepath.Join(dir, spool.RegistryDir, "link"), nil, 0o644)
		os.Symlink(file.path, filepath.Join(dir, spool.DataDir, "link"))
		os.Symlink(file.path, filepath.Join(dir, "in", spool.CheckoutDir, "stuck"))
		os.WriteFile(filepath.Join(dir, spool.RegistryDir, "stuck"), nil, 0o644)
		// The payload and registry file of a real entry point outside too.
		for _, d := range []string{spool.DataDir, spool.RegistryDir} {
			os.Remove(filepath.Join(dir, d, names[2]))
			os.Symlink(file.path, filepath.Join(dir, d, names[2]))
		}
		cliFails(t, "queue", "enqueue", dir, "evil", "--metadata", "m")
		cliFails(t, "", "rm", dir, "victim")
		cliFails(t, "", "rm", dir, "link")
		cliFails(t, "", "mv", dir, "link", "--to", "out")
		cliFails(t, "", "mv", dir, names[0], "--to", "evil")
		cliFails(t, "", "rm", dir, "stuck")
		cli(t, "recover", dir, "--older-than", "0s")
		cli(t, "fsck", dir)
		cli(t, "ls", dir, "--all")
		cli(t, "show", dir, "link")
		cli(t, "shape", dir)
		cli(t, "init", dir, "--queue", "in")
		// The entry whose payload and registry file are symlinks is moved
		// and removed like any other: the links go, their targets stay.
		cliOK(t, "mv", dir, names[2], "--to", "out")
		cliOK(t, "rm", dir, names[2])
		file.check(t)
		odir.check(t)
		checkEntries(t, dir, names[:2])
	}},
	{"cli", "not-a-spool-directory", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "someone-elses-file"), []byte("x"), 0o644)
		before := dirListing(t, dir)
		for _, args := range [][]string{
			{"ls", dir}, {"fsck", dir}, {"show", dir, "x"}, {"rm", dir, "x"}, {"mv", dir, "x", "--to", "q"},
			{"enqueue", dir, "q", "--metadata", "m"}, {"recover", dir, "--older-than", "1m"}, {"shape", dir},
			{"init", dir, "--queue", "q"},
		} {
			cliFails(t, "not a spool", args...)
		}
		if after := dirListing(t, dir); after != before {
			t.Fatalf("a refused command changed the directory:\n%s\nwas\n%s", after, before)
		}
	}},
	{"cli", "missing-directory", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "missing")
		for _, args := range [][]string{
			{"ls", dir}, {"fsck", dir}, {"rm", dir, "x"}, {"enqueue", dir, "q", "--metadata", "m"}, {"recover", dir, "--older-than", "1m"},
		} {
			cliFails(t, dir, args...)
		}
		if _, err := os.Lstat(dir); err == nil {
			t.Fatal("a refused command created the directory")
		}
	}},
	{"cli", "bad-queue-names", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "spool")
		_, names := goodSpool(t, dir)
		before := dirListing(t, dir)
		for _, q := range []string{"../escape", ".registry", ".checkout", "a/b", "tab\tq", "esc\x1b[2J", "nl\nq", strings.Repeat("q", 300)} {
			cliFails(t, "invalid name", "enqueue", dir, q, "--metadata", "m")
			cliFails(t, "invalid name", "init", dir, "--queue", q)
			cliFails(t, "invalid name", "mv", dir, names[0], "--to", q)
		}
		if after := dirListing(t, dir); after != before {
			t.Fatalf("a refused command changed the spool")
		}
	}},
	{"cli", "bad-entry-names", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "spool")
		_, names := goodSpool(t, dir)
		out := newOutsideFile(t)
		rel, _ := filepath.Rel(filepath.Join(dir, "in"), out.path)
		before := dirListing(t, dir)
		for _, n := range []string{rel, "../" + names[0], ".registry", "a/b", "esc\x1b]0;pwned\x07", "nl\nx", "/etc/passwd"} {
			// rm, show and mv read names: one that another implementation
			// can write (.registry, control characters) is looked for and
			// not found; one that cannot be an entry is refused (issue 10).
			read := "invalid name"
			if spool.ValidateExistingName(n) == nil {
				read = "not found"
			}
			cliFails(t, read, "rm", dir, n)
			cliFails(t, read, "show", dir, n)
			cliFails(t, read, "mv", dir, n, "--to", "out")
			cliFails(t, "invalid name", "enqueue", dir, "in", "--name", n, "--metadata", "m")
		}
		if after := dirListing(t, dir); after != before {
			t.Fatalf("a refused command changed the spool")
		}
		out.check(t)
		checkEntries(t, dir, names)
	}},
	{"cli", "unknown-queue", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "spool")
		_, names := goodSpool(t, dir)
		cliFails(t, "unknown queue", "enqueue", dir, "nosuch", "--metadata", "m")
		cliFails(t, "unknown queue", "mv", dir, names[0], "--to", "nosuch")
		cliFails(t, "unknown queue", "ls", dir, "nosuch")
		checkEntries(t, dir, names)
	}},
	{"cli", "huge-metadata-10MiB", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "spool")
		_, names := goodSpool(t, dir)
		mf := filepath.Join(t.TempDir(), "meta")
		meta := bytes.Repeat([]byte("m"), 10<<20)
		os.WriteFile(mf, meta, 0o644)
		name := strings.TrimSpace(cliOK(t, "enqueue", dir, "in", "--metadata-file", mf))
		s, _ := spool.Open(dir, nil)
		if got, err := s.ReadMetadata("in", name); err != nil || !bytes.Equal(got, meta) {
			t.Fatalf("read back %d bytes: %v", len(got), err)
		}
		cliOK(t, "ls", dir, "-o", "json")
		cliOK(t, "fsck", dir)
		cliOK(t, "mv", dir, name, "--to", "out")
		cliOK(t, "rm", dir, name)
		checkEntries(t, dir, names)
	}},
	{"cli", "control-characters-on-disk-are-escaped", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "spool")
		_, names := goodSpool(t, dir)
		weird := "weird\x1b]0;pwned\x07\nname"
		for _, d := range []string{"in", spool.RegistryDir, spool.DataDir} {
			os.WriteFile(filepath.Join(dir, d, weird), []byte("x"), 0o644)
		}
		for _, args := range [][]string{{"ls", dir}, {"ls", dir, "--all"}, {"fsck", dir}, {"shape", dir}} {
			out, errOut, _ := cli(t, args...)
			if strings.ContainsAny(out+errOut, "\x1b\x07") {
				t.Fatalf("spool-agent %q wrote raw control characters: %q", args, out+errOut)
			}
		}
		// ls -o json either lists the name (JSON-escaped) or refuses with
		// a clear error; it never emits broken JSON.
		out, errOut, code := cli(t, "ls", dir, "-o", "json")
		if code == 0 {
			var doc struct {
				Entries []struct{ Name string } `json:"entries"`
			}
			if err := json.Unmarshal([]byte(out), &doc); err != nil {
				t.Fatalf("ls -o json is not JSON: %v\n%s", err, out)
			}
			found := false
			for _, e := range doc.Entries {
				found = found || e.Name == weird
			}
			if !found {
				t.Fatalf("ls -o json lost the name %q: %s", weird, out)
			}
		} else if !strings.Contains(errOut, "invalid name") || strings.ContainsAny(errOut, "\x1b\x07") {
			t.Fatalf("ls -o json: exit %d: %q", code, errOut)
		} else {
			t.Logf("ls -o json refuses the spool: %s", strings.TrimSpace(errOut))
		}
		checkEntries(t, dir, names)
	}},
	{"cli", "unreadable-input-files", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "spool")
		_, names := goodSpool(t, dir)
		cliFails(t, "no such file", "enqueue", dir, "in", "--metadata-file", filepath.Join(dir, "nosuch"))
		cliFails(t, "", "enqueue", dir, "in", "--metadata", "m", "--data-file", t.TempDir())
		cliFails(t, "no such file", "enqueue", dir, "in", "--metadata", "m", "--data-file", filepath.Join(dir, "nosuch"))
		if k := fsckKinds(t, dir); len(k) != 0 {
			t.Fatalf("a failed enqueue left %v", k)
		}
		s, _ := spool.Open(dir, nil)
		if ls, _ := s.List("in"); len(ls) != len(names) {
			t.Fatalf("a failed enqueue added entries: %v", ls)
		}
	}},
	{"cli", "bad-flag-values", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "spool")
		_, names := goodSpool(t, dir)
		for _, args := range [][]string{
			{"recover", dir, "--older-than", "banana"},
			{"fsck", dir, "--max-checked-out-age", "-"},
			{"fsck", dir, "--max-queue-age", "in"},
			{"enqueue", dir, "in", "--durability", "sometimes"},
			{"ls", dir, "-o", "xml"},
			{"nosuchcommand"},
		} {
			_, errOut, code := cli(t, args...)
			if code != 2 {
				t.Fatalf("spool-agent %q: exit %d (want 2, usage): %s", args, code, errOut)
			}
		}
		checkEntries(t, dir, names)
	}},
}

// configCases are bad configuration files and environment variables.
var configCases = []badInputCase{
	{"config", "invalid-yaml", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "spool")
		goodSpool(t, dir)
		cfg := filepath.Join(t.TempDir(), "bad.yaml")
		os.WriteFile(cfg, []byte("output: [json\n"), 0o644)
		cliFails(t, "bad.yaml", "ls", dir, "--config", cfg)
		cfg2 := filepath.Join(t.TempDir(), "trunc.json")
		os.WriteFile(cfg2, []byte(`{"output": "json"`), 0o644)
		cliFails(t, "trunc.json", "ls", dir, "--config", cfg2)
	}},
	{"config", "unknown-key", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "spool")
		goodSpool(t, dir)
		cfg := filepath.Join(t.TempDir(), "unknown.yaml")
		os.WriteFile(cfg, []byte("nosuchkey: 1\n"), 0o644)
		cliFails(t, "nosuchkey", "ls", dir, "--config", cfg)
	}},
	{"config", "wrong-value-types", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "spool")
		goodSpool(t, dir)
		cfg := filepath.Join(t.TempDir(), "types.yaml")
		os.WriteFile(cfg, []byte("max-checked-out-age: banana\n"), 0o644)
		cliFails(t, "banana", "fsck", dir, "--config", cfg)
	}},
	{"config", "missing-or-directory", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "spool")
		goodSpool(t, dir)
		cliFails(t, "no such file", "ls", dir, "--config", filepath.Join(t.TempDir(), "nosuch.yaml"))
		cliFails(t, "is a directory", "ls", dir, "--config", t.TempDir())
	}},
	{"config", "unreadable-file", func(t *testing.T) {
		// Root reads any file: the command runs as an unprivileged user,
		// for whom a root-owned 0600 file is unreadable.
		needBinary(t, &bin.agent)
		base := userDir(t)
		dir := filepath.Join(base, "spool")
		goodSpool(t, dir)
		chownTree(t, dir)
		cfg := filepath.Join(base, "secret.yaml")
		os.WriteFile(cfg, []byte("output: json\n"), 0o600)
		cmd := exec.Command(bin.agent, "ls", dir, "--config", cfg)
		asTestUser(cmd)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "permission denied") || !strings.Contains(string(out), cfg) {
			t.Fatalf("unreadable config: %v: %s", err, out)
		}
		t.Logf("as uid %d: %s", testUID, strings.TrimSpace(string(out)))
	}},
	{"config", "bad-environment-value", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "spool")
		goodSpool(t, dir)
		needBinary(t, &bin.agent)
		// A global flag's variable is read, and a bad value refused...
		_, errOut, code := runCmd(t, 30*time.Second, nil, []string{"SPOOL_AGENT_MAX_METADATA_SIZE=lots"}, bin.agent, "ls", dir)
		if code != 2 || !strings.Contains(errOut, "SPOOL_AGENT_MAX_METADATA_SIZE") {
			t.Fatalf("bad environment value: exit %d: %q", code, errOut)
		}
		// ...while a one-shot command's flags are never read from the
		// environment (issue 12), so a bad -o there changes nothing.
		if _, errOut, code := runCmd(t, 30*time.Second, nil, []string{"SPOOL_AGENT_OUTPUT=xml"}, bin.agent, "ls", dir); code != 0 {
			t.Fatalf("SPOOL_AGENT_OUTPUT reached ls: exit %d: %q", code, errOut)
		}
	}},
}

// agentPair starts an agent on two spools, "good" (with entries) and
// "bad" (whatever setup makes of it), and waits until both have been
// checked at least once. It returns the agent and the good spool's entries.
func agentPair(t *testing.T, setup func(bad string), extra ...string) (ag *agent, names []string, good, bad string) {
	t.Helper()
	base := t.TempDir()
	good, bad = filepath.Join(base, "good"), filepath.Join(base, "bad")
	_, names = goodSpool(t, good)
	setup(bad)
	ag = newAgent(t, map[string]string{"good": good, "bad": bad}, extra...)
	ag.startAndWait(t)
	return ag, names, good, bad
}

// goodServed waits until the agent reports the good spool up with its 3
// entries waiting in "in".
func goodServed(t *testing.T, ag *agent) metrics {
	t.Helper()
	return ag.waitMetric(t, 10*time.Second, "the good spool served", func(m metrics) bool {
		up, _ := m.value("spool_up", "spool", "good")
		n, _ := m.value("spool_queue_entries", "spool", "good", "queue", "in")
		return up == 1 && n == 3
	})
}

// badDown waits until the agent reports the bad spool down, and the good
// one still served.
func badDown(t *testing.T, ag *agent) {
	t.Helper()
	ag.waitMetric(t, 10*time.Second, "the bad spool down", func(m metrics) bool {
		up, ok := m.value("spool_up", "spool", "bad")
		return ok && up == 0
	})
	goodServed(t, ag)
}

// agentCases are bad spools, flags and environments given to `spool-agent run`.
var agentCases = []badInputCase{
	{"agent", "missing-spool-directory", func(t *testing.T) {
		ag, _, _, _ := agentPair(t, func(bad string) {})
		badDown(t, ag)
		if !strings.Contains(ag.output(), "no such file or directory") {
			t.Errorf("the agent does not say why the spool is down: %s", ag.output())
		}
	}},
	{"agent", "not-a-spool-directory", func(t *testing.T) {
		ag, _, _, _ := agentPair(t, func(bad string) {
			os.MkdirAll(bad, 0o755)
			os.WriteFile(filepath.Join(bad, "file"), []byte("x"), 0o644)
		})
		badDown(t, ag)
		if !strings.Contains(ag.output(), "not a spool") {
			t.Errorf("the agent does not say why the spool is down: %s", ag.output())
		}
	}},
	{"agent", "spool-deleted-and-recreated-while-running", func(t *testing.T) {
		ag, _, _, bad := agentPair(t, func(bad string) { goodSpool(t, bad) })
		ag.waitMetric(t, 10*time.Second, "the second spool up", func(m metrics) bool {
			up, _ := m.value("spool_up", "spool", "bad")
			return up == 1
		})
		os.RemoveAll(bad)
		badDown(t, ag)
		goodSpool(t, bad)
		ag.waitMetric(t, 20*time.Second, "the re-created spool up again with its 3 entries", func(m metrics) bool {
			up, _ := m.value("spool_up", "spool", "bad")
			n, _ := m.value("spool_queue_entries", "spool", "bad", "queue", "in")
			return up == 1 && n == 3
		})
		goodServed(t, ag)
	}},
	{"agent", "registry-replaced-by-file-while-running", func(t *testing.T) {
		ag, _, _, bad := agentPair(t, func(bad string) { goodSpool(t, bad) })
		reg := filepath.Join(bad, spool.RegistryDir)
		os.Rename(reg, reg+".saved")
		os.WriteFile(reg, []byte("not a directory"), 0o644)
		badDown(t, ag)
		os.Remove(reg)
		os.Rename(reg+".saved", reg)
		ag.waitMetric(t, 20*time.Second, "the spool up again", func(m metrics) bool {
			up, _ := m.value("spool_up", "spool", "bad")
			return up == 1
		})
		checkEntries(t, bad, nil)
	}},
	{"agent", "permissions-removed-while-running", func(t *testing.T) {
		// The agent runs as an unprivileged user (root ignores permission
		// bits), and loses access to one spool while it runs.
		needBinary(t, &bin.agent)
		base := userDir(t)
		good, bad := filepath.Join(base, "good"), filepath.Join(base, "bad")
		goodSpool(t, good)
		goodSpool(t, bad)
		chownTree(t, good)
		chownTree(t, bad)
		// In watch mode the agent re-reads a spool's directories at its
		// full rescans; a short period makes the loss visible quickly.
		ag := newAgent(t, map[string]string{"good": good, "bad": bad}, "--full-rescan-every=500ms")
		ag.uid = testUID
		ag.startAndWait(t)
		ag.waitMetric(t, 10*time.Second, "both up", func(m metrics) bool {
			a, _ := m.value("spool_up", "spool", "bad")
			b, _ := m.value("spool_up", "spool", "good")
			return a == 1 && b == 1
		})
		os.Chmod(bad, 0)
		badDown(t, ag)
		if !strings.Contains(ag.output(), "permission denied") {
			t.Errorf("the agent does not say why: %s", ag.output())
		}
		os.Chmod(bad, 0o755)
		ag.waitMetric(t, 20*time.Second, "the spool up again", func(m metrics) bool {
			up, _ := m.value("spool_up", "spool", "bad")
			n, _ := m.value("spool_queue_entries", "spool", "bad", "queue", "in")
			return up == 1 && n == 3
		})
	}},
	{"agent", "inotify-instances-exhausted", func(t *testing.T) {
		needBinary(t, &bin.agent)
		base := userDir(t)
		good := filepath.Join(base, "good")
		s, _ := goodSpool(t, good)
		chownTree(t, good)
		startHog(t)
		ag := newAgent(t, map[string]string{"good": good})
		ag.uid = testUID
		ag.startAndWait(t)
		m := goodServed(t, ag)
		if w, ok := m.value("spool_watching", "spool", "good"); !ok || w != 0 {
			t.Errorf("spool_watching = %v (%v) without inotify, want 0", w, ok)
		}
		// Changes are still seen, by full scans.
		for range 5 {
			if _, err := s.EnqueueBytes(context.Background(), "in", []byte("m"), []byte("d"), spool.EnqueueOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		ag.waitMetric(t, 10*time.Second, "the 5 new entries counted without inotify", func(m metrics) bool {
			n, _ := m.value("spool_queue_entries", "spool", "good", "queue", "in")
			return n == 8
		})
		t.Logf("agent without inotify: %s", firstLines(ag.output(), "inotify", 2))
	}},
	{"agent", "symlinks-and-huge-metadata-in-a-watched-spool", func(t *testing.T) {
		file := newOutsideFile(t)
		odir := newOutsideDir(t, map[string]string{".checkout/": "", "victim": "outside entry"})
		ag, _, _, _ := agentPair(t, func(bad string) {
			s, _ := goodSpool(t, bad)
			os.Symlink(odir.path, filepath.Join(bad, "evil"))
			os.Symlink(file.path, filepath.Join(bad, "in", "link"))
			os.Symlink(file.path, filepath.Join(bad, "in", spool.CheckoutDir, "stuck"))
			os.Symlink(file.path, filepath.Join(bad, spool.DataDir, "dangling"))
			if _, err := s.EnqueueBytes(context.Background(), "in", bytes.Repeat([]byte("h"), 10<<20), nil, spool.EnqueueOptions{}); err != nil {
				t.Fatal(err)
			}
		})
		m := ag.waitMetric(t, 10*time.Second, "the symlinks reported as unexpected", func(m metrics) bool {
			up, _ := m.value("spool_up", "spool", "bad")
			u, _ := m.value("spool_problems", "spool", "bad", "kind", "unexpected")
			return up == 1 && u >= 3
		})
		goodServed(t, ag)
		// 3 entries plus the 10 MiB one: the symlinks in the queue and its
		// checkout directory are reported as unexpected, not counted (as
		// the library's List skips them).
		if n := m.must(t, "spool_queue_entries", "spool", "bad", "queue", "in"); n != 4 {
			t.Errorf("spool_queue_entries{queue=in} = %v, want 4 (4 entries and 1 symlink)", n)
		}
		if n := m.must(t, "spool_queue_checked_out_entries", "spool", "bad", "queue", "in"); n != 0 {
			t.Errorf("spool_queue_checked_out_entries{queue=in} = %v, want 0 (only a symlink)", n)
		}
		file.check(t)
		odir.check(t)
	}},
	{"agent", "port-in-use", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		dir := filepath.Join(t.TempDir(), "spool")
		goodSpool(t, dir)
		out, errOut, code := runCmd(t, 30*time.Second, nil, nil, bin.agent, "run", "--spool=s="+dir, "--web.listen-address="+l.Addr().String())
		if code == 0 || !strings.Contains(errOut, "address already in use") {
			t.Fatalf("port in use: exit %d: %s%s", code, out, errOut)
		}
		t.Logf("exit %d: %s", code, firstLines(errOut, "address already in use", 1))
	}},
	{"agent", "bad-run-flags", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "spool")
		goodSpool(t, dir)
		for _, args := range [][]string{
			{"--spool=noequals"},
			{"--spool=a=" + dir, "--spool=a=" + dir + "2"},
			{"--spool=../x=" + dir},
			{"--spool=a=" + dir, "--check-every=-1s"},
			{"--spool=a=" + dir, "--check-every=banana"},
			{"--spool=a=" + dir, "--max-queue-age=in"},
			{"--spool=a=" + dir, "--web.config.file=" + filepath.Join(dir, "nosuch.yml")},
		} {
			out, errOut, code := runCmd(t, 30*time.Second, nil, nil, append([]string{bin.agent, "run", "--web.listen-address=" + testkit.FreeAddr(t)}, args...)...)
			if code == 0 || !strings.HasPrefix(strings.TrimSpace(errOut), "spool-agent: ") {
				t.Fatalf("run %q: exit %d: %s%s", args, code, out, errOut)
			}
			t.Logf("run %s: exit %d: %s", strings.Join(args, " "), code, strings.TrimSpace(errOut))
		}
	}},
}

// firstLines returns up to n lines of s that contain sub.
func firstLines(s, sub string, n int) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) && len(out) < n {
			out = append(out, l)
		}
	}
	return strings.Join(out, " | ")
}

// httpCases are bad requests to the agent's endpoint.
var httpCases = []badInputCase{
	{"http", "bad-paths", func(t *testing.T) {
		ag, _, _, _ := agentPair(t, func(bad string) { goodSpool(t, bad) })
		for _, p := range []string{"/nosuch", "/metrics/../../../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/metrics%00", "/.registry", "/debug/pprof/"} {
			code, body, err := ag.get(http.MethodGet, p)
			if err != nil {
				t.Fatalf("GET %s: %v", p, err)
			}
			if strings.Contains(body, "root:") {
				t.Fatalf("GET %s served a file: %q", p, body)
			}
			t.Logf("GET %s: %d", p, code)
		}
		goodServed(t, ag)
	}},
	{"http", "methods", func(t *testing.T) {
		ag, _, good, _ := agentPair(t, func(bad string) { goodSpool(t, bad) })
		before := dirListing(t, good)
		for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, "PROPFIND"} {
			for _, p := range []string{"/metrics", "/", "/-/healthy"} {
				code, _, err := ag.get(m, p)
				if err != nil {
					t.Fatalf("%s %s: %v", m, p, err)
				}
				if code != http.StatusMethodNotAllowed {
					t.Errorf("%s %s: %d, want 405", m, p, code)
				}
			}
		}
		if code, _, err := ag.get(http.MethodHead, "/metrics"); err != nil || code != http.StatusOK {
			t.Errorf("HEAD /metrics: %d %v, want 200", code, err)
		}
		if after := dirListing(t, good); after != before {
			t.Fatal("a request changed the spool")
		}
		goodServed(t, ag)
	}},
	{"http", "oversized-header-and-garbage", func(t *testing.T) {
		ag, _, _, _ := agentPair(t, func(bad string) { goodSpool(t, bad) })
		req, _ := http.NewRequest(http.MethodGet, "http://"+ag.addr+"/metrics", nil)
		req.Header.Set("X-Big", strings.Repeat("x", 2<<20))
		if resp, err := ag.client().Do(req); err == nil {
			t.Logf("2 MiB header: %d", resp.StatusCode)
			if resp.StatusCode == http.StatusOK {
				t.Error("a 2 MiB header was accepted")
			}
			resp.Body.Close()
		} else {
			t.Logf("2 MiB header: %v", err)
		}
		for _, junk := range []string{"\x00\x01\x02garbage\r\n\r\n", "GET /metrics HTTP/9.9\r\n\r\n", strings.Repeat("A", 1<<16), "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"} {
			c, err := net.DialTimeout("tcp", ag.addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(time.Second))
			c.Write([]byte(junk))
			b := make([]byte, 512)
			n, _ := c.Read(b)
			c.Close()
			t.Logf("%d bytes of junk: answered %q", len(junk), firstLines(string(b[:n]), "HTTP", 1))
		}
		// Many idle connections do not stop it serving.
		var conns []net.Conn
		for range 200 {
			if c, err := net.Dial("tcp", ag.addr); err == nil {
				conns = append(conns, c)
			}
		}
		goodServed(t, ag)
		for _, c := range conns {
			c.Close()
		}
	}},
}

func TestBadInput(t *testing.T) {
	var all []badInputCase
	all = append(all, spoolCases...)
	all = append(all, cliCases...)
	all = append(all, configCases...)
	all = append(all, agentCases...)
	all = append(all, httpCases...)
	for _, c := range all {
		t.Run(c.area+"/"+c.name, c.run)
	}
	t.Logf("%d bad-input cases", len(all))
}

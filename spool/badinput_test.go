package spool

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

var invalidNames = []string{
	"", ".", "..", ".hidden", ".checkout", ".registry", "a/b", "../x", "/abs",
	"a\x00b", "a\nb", "tab\there", "\x7f", "\x01", strings.Repeat("n", MaxNameLen+1),
}

func TestValidateName(t *testing.T) {
	for _, name := range invalidNames {
		if err := ValidateName(name); !errors.Is(err, ErrInvalidName) {
			t.Errorf("ValidateName(%q) = %v, want ErrInvalidName", name, err)
		}
	}
	for _, name := range []string{"a", "q1_000000", "a.b", "trailing.", "-dash", " space", "ünïcödé", strings.Repeat("n", MaxNameLen)} {
		if err := ValidateName(name); err != nil {
			t.Errorf("ValidateName(%q) = %v, want nil", name, err)
		}
	}
}

// TestInvalidNamesChangeNothing calls every API that takes a queue or entry
// name with each invalid name: each call fails with ErrInvalidName (or, for
// a valid but missing queue, ErrUnknownQueue) and nothing on disk changes.
func TestInvalidNamesChangeNothing(t *testing.T) {
	s := newTestSpool(t, []string{"q", "r"}, &Options{Durability: DurabilityNone})
	name := mustEnqueue(t, s, "q", "meta", "data", EnqueueOptions{Names: PrefixNames("e")})
	parent := filepath.Dir(s.Dir())
	before := treeState(t, parent)
	noop := func(*Checkout) (Action, error) { return Action{}, nil }

	calls := []struct {
		name string
		call func(bad string) error
	}{
		{"Create queue", func(bad string) error { _, err := Create(s.Dir(), []string{"q", bad}, nil); return err }},
		{"AddQueue", func(bad string) error { return s.AddQueue(bad) }},
		{"Enqueue queue", func(bad string) error {
			_, err := s.Enqueue(context.Background(), bad, []byte("m"), strings.NewReader("d"), EnqueueOptions{})
			return err
		}},
		{"EnqueueBytes name", func(bad string) error {
			if bad == "" {
				return ErrInvalidName // the empty name means "generate one": not a bad input
			}
			_, err := s.EnqueueBytes(context.Background(), "q", []byte("m"), []byte("d"), EnqueueOptions{Name: bad})
			return err
		}},
		{"Reserve generator", func(bad string) error {
			_, err := s.Reserve(NameGeneratorFunc(func(int) (string, error) { return bad, nil }))
			return err
		}},
		{"Enqueue generator", func(bad string) error {
			_, err := s.EnqueueBytes(context.Background(), "q", nil, nil, EnqueueOptions{Names: NameGeneratorFunc(func(int) (string, error) { return bad, nil })})
			return err
		}},
		{"List", func(bad string) error { _, err := s.List(bad); return err }},
		{"ListCheckedOut", func(bad string) error { _, err := s.ListCheckedOut(bad); return err }},
		{"Find", func(bad string) error { _, _, err := s.Find(bad); return err }},
		{"Stat queue", func(bad string) error { _, err := s.Stat(bad, name); return err }},
		{"Stat name", func(bad string) error { _, err := s.Stat("q", bad); return err }},
		{"ReadMetadata queue", func(bad string) error { _, err := s.ReadMetadata(bad, name); return err }},
		{"ReadMetadata name", func(bad string) error { _, err := s.ReadMetadata("q", bad); return err }},
		{"ReadData", func(bad string) error { _, err := s.ReadData(bad); return err }},
		{"OpenData", func(bad string) error { _, err := s.OpenData(bad); return err }},
		{"WriteMetadata queue", func(bad string) error { return s.WriteMetadata(bad, name, []byte("x")) }},
		{"WriteMetadata name", func(bad string) error { return s.WriteMetadata("q", bad, []byte("x")) }},
		{"Remove queue", func(bad string) error { return s.Remove(bad, name) }},
		{"Remove name", func(bad string) error { return s.Remove("q", bad) }},
		{"Move src", func(bad string) error { return s.Move(bad, name, "r") }},
		{"Move dst", func(bad string) error { return s.Move("q", name, bad) }},
		{"Move name", func(bad string) error { return s.Move("q", bad, "r") }},
		{"Checkout queue", func(bad string) error { _, err := s.Checkout(context.Background(), bad, name); return err }},
		{"Checkout name", func(bad string) error { _, err := s.Checkout(context.Background(), "q", bad); return err }},
		{"WithEntry", func(bad string) error { return s.WithEntry(context.Background(), "q", bad, noop) }},
		{"NewReader", func(bad string) error { _, err := s.NewReader(bad); return err }},
	}
	// Calls that read or check an existing entry accept every name that
	// can be one (see ValidateExistingName): for those they find nothing.
	readsName := map[string]bool{"Find": true, "Stat name": true, "ReadMetadata name": true, "ReadData": true,
		"OpenData": true, "WriteMetadata name": true, "Remove name": true, "Move name": true,
		"Checkout name": true, "WithEntry": true}
	for _, c := range calls {
		for _, bad := range invalidNames {
			err := c.call(bad)
			if readsName[c.name] && ValidateExistingName(bad) == nil {
				if errors.Is(err, ErrInvalidName) || (err != nil && !errors.Is(err, ErrNotFound)) {
					t.Errorf("%s(%q) = %v, want ErrNotFound or nil (a name that can exist)", c.name, bad, err)
				}
				continue
			}
			if !errors.Is(err, ErrInvalidName) {
				t.Errorf("%s(%q) = %v, want ErrInvalidName", c.name, bad, err)
			}
		}
	}
	// A valid name of a queue that does not exist.
	queueArgs := map[string]bool{"Enqueue queue": true, "List": true, "ListCheckedOut": true, "Stat queue": true,
		"ReadMetadata queue": true, "WriteMetadata queue": true, "Remove queue": true, "Move src": true,
		"Move dst": true, "Checkout queue": true, "NewReader": true}
	for _, c := range calls {
		if !queueArgs[c.name] {
			continue
		}
		if err := c.call("nosuchqueue"); !errors.Is(err, ErrUnknownQueue) {
			t.Errorf("%s(nosuchqueue) = %v, want ErrUnknownQueue", c.name, err)
		}
	}
	if err := s.Move("q", name, "nosuchqueue"); !errors.Is(err, ErrUnknownQueue) {
		t.Errorf("Move to nosuchqueue = %v, want ErrUnknownQueue", err)
	}
	if after := treeState(t, parent); after != before {
		t.Errorf("invalid names changed the disk:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if p := s.DataPath("../../etc/passwd"); p != "" {
		t.Errorf("DataPath of an invalid name = %q, want \"\"", p)
	}

	// Saving a checkout into an invalid queue fails and keeps the checkout.
	c, err := s.Checkout(context.Background(), "q", name)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range invalidNames {
		if err := c.Save(bad, []byte("new")); !errors.Is(err, ErrInvalidName) {
			t.Errorf("Save(%q) = %v, want ErrInvalidName", bad, err)
		}
	}
	if err := c.Release(); err != nil {
		t.Fatal(err)
	}
	if got, want := tree(t, s.Dir()), layout(append(bareLayout("q", "r"), ".data/"+name, ".registry/"+name, "q/"+name)...); got != want {
		t.Errorf("after Save into invalid queues and Release:\n%s\nwant:\n%s", got, want)
	}
}

// TestBadSpoolPaths: a spool path that is a file, a missing spool, a
// non-empty directory that is not a spool, and half-made spools give a clear
// error (wrapping ErrNotSpool) and change nothing on disk.
func TestBadSpoolPaths(t *testing.T) {
	cases := []struct {
		name  string
		setup func(t *testing.T, dir string) // dir does not exist yet
		run   func(dir string) error
		want  string // in the message
	}{
		{"create on a file", func(t *testing.T, dir string) { writeFile(t, dir, "x") },
			func(dir string) error { _, err := Create(dir, []string{"q"}, nil); return err }, "not a directory"},
		{"open a file", func(t *testing.T, dir string) { writeFile(t, dir, "x") },
			func(dir string) error { _, err := Open(dir, nil); return err }, "not a directory"},
		{"open missing", func(t *testing.T, dir string) {},
			func(dir string) error { _, err := Open(dir, nil); return err }, "does not exist"},
		{"create in a missing parent", func(t *testing.T, dir string) {},
			func(dir string) error { _, err := Create(filepath.Join(dir, "sub"), nil, nil); return err }, "no such file"},
		{"create in a non-empty dir", func(t *testing.T, dir string) { mkdir(t, dir); writeFile(t, dir+"/some_file", "") },
			func(dir string) error { _, err := Create(dir, []string{"q"}, nil); return err }, "not empty"},
		{"create in a dir with only a hidden file", func(t *testing.T, dir string) { mkdir(t, dir); writeFile(t, dir+"/.hidden", "") },
			func(dir string) error { _, err := Create(dir, []string{"q"}, nil); return err }, "not empty"},
		{"open a non-spool dir", func(t *testing.T, dir string) { mkdir(t, dir); mkdir(t, dir+"/q") },
			func(dir string) error { _, err := Open(dir, nil); return err }, "no .registry/ and .tmp/"},
		{"open an empty dir", func(t *testing.T, dir string) { mkdir(t, dir) },
			func(dir string) error { _, err := Open(dir, nil); return err }, "no .registry/ and .tmp/"},
		{"open a spool without .data", func(t *testing.T, dir string) {
			mkdir(t, dir)
			mkdir(t, dir+"/.registry")
			mkdir(t, dir+"/.tmp")
		}, func(dir string) error { _, err := Open(dir, nil); return err }, ".data: not a spool: does not exist"},
		{"create with .data a file", func(t *testing.T, dir string) {
			mkdir(t, dir)
			mkdir(t, dir+"/.registry")
			mkdir(t, dir+"/.tmp")
			writeFile(t, dir+"/.data", "")
		}, func(dir string) error { _, err := Create(dir, []string{"q"}, nil); return err }, "exists and is not a directory"},
		{"create a queue where a file is", func(t *testing.T, dir string) {
			if _, err := Create(dir, []string{"a"}, nil); err != nil {
				t.Fatal(err)
			}
			writeFile(t, dir+"/q", "")
		}, func(dir string) error { _, err := Create(dir, []string{"b", "q"}, nil); return err }, "exists and is not a directory"},
		{"create a queue whose .checkout is a file", func(t *testing.T, dir string) {
			if _, err := Create(dir, []string{"a"}, nil); err != nil {
				t.Fatal(err)
			}
			mkdir(t, dir+"/q")
			writeFile(t, dir+"/q/.checkout", "")
		}, func(dir string) error { _, err := Create(dir, []string{"b", "q"}, nil); return err }, "exists and is not a directory"},
		{"create read-only", func(t *testing.T, dir string) {},
			func(dir string) error { _, err := Create(dir, nil, &Options{ReadOnly: true}); return err }, "read-only"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "spool")
			c.setup(t, dir)
			before := treeState(t, parent)
			err := c.run(dir)
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrNotSpool) && !errors.Is(err, ErrReadOnly) && !errors.Is(err, syscall.ENOENT) {
				t.Errorf("error %v wraps neither ErrNotSpool, ErrReadOnly nor ENOENT", err)
			}
			if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), dir) {
				t.Errorf("error %q does not say %q about %s", err, c.want, dir)
			}
			if after := treeState(t, parent); after != before {
				t.Errorf("the disk changed:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mkdir(t *testing.T, path string) {
	t.Helper()
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
}

func init() { helpers["readonly"] = readOnlyHelper }

// readOnlyHelper runs readOnlyChecks as a helper process and prints the
// problems it finds, then "done".
func readOnlyHelper() int {
	for _, p := range readOnlyChecks(os.Getenv("SPOOL_TEST_DIR"), os.Getenv("SPOOL_TEST_ENTRY")) {
		os.Stdout.WriteString(strings.ReplaceAll(p, "\n", " ") + "\n")
	}
	os.Stdout.WriteString("done\n")
	return 0
}

// readOnlyChecks runs, as a user who may read but not write the spool at
// dir (holding entry name in queue q), everything that one may try, and
// returns what went wrong.
func readOnlyChecks(dir, name string) []string {
	var problems []string
	want := func(what string, err, sentinel error) {
		if !errors.Is(err, sentinel) {
			problems = append(problems, what+": got "+errString(err)+", want "+sentinel.Error())
		}
	}
	_, err := Open(dir, nil)
	want("Open", err, ErrReadOnly)
	if err != nil && (!strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "Options.ReadOnly")) {
		problems = append(problems, "Open's error does not name the spool and the way out: "+err.Error())
	}
	_, err = Create(dir, []string{"q"}, nil)
	want("Create on the spool", err, ErrReadOnly)
	_, err = Create(filepath.Join(dir, "sub"), nil, nil)
	want("Create inside the spool", err, ErrReadOnly)

	s, err := Open(dir, &Options{ReadOnly: true})
	if err != nil {
		return append(problems, "Open with ReadOnly: "+err.Error())
	}
	if qs := s.Queues(); len(qs) != 1 || qs[0] != "q" {
		problems = append(problems, "Queues: "+strings.Join(qs, ","))
	}
	if names, err := s.List("q"); err != nil || len(names) != 1 || names[0] != name {
		problems = append(problems, "List: "+strings.Join(names, ",")+" "+errString(err))
	}
	if m, err := s.ReadMetadata("q", name); err != nil || string(m) != "meta" {
		problems = append(problems, "ReadMetadata: "+string(m)+" "+errString(err))
	}
	if d, err := s.ReadData(name); err != nil || string(d) != "data" {
		problems = append(problems, "ReadData: "+string(d)+" "+errString(err))
	}
	if f, err := s.OpenData(name); err != nil {
		problems = append(problems, "OpenData: "+err.Error())
	} else {
		b, _ := io.ReadAll(f)
		f.Close()
		if string(b) != "data" {
			problems = append(problems, "OpenData read "+string(b))
		}
	}
	if _, err := s.Stat("q", name); err != nil {
		problems = append(problems, "Stat: "+err.Error())
	}
	_, err = s.EnqueueBytes(context.Background(), "q", []byte("m"), nil, EnqueueOptions{})
	want("EnqueueBytes", err, ErrReadOnly)
	_, err = s.Reserve(nil)
	want("Reserve", err, ErrReadOnly)
	_, err = s.Checkout(context.Background(), "q", name)
	want("Checkout", err, ErrReadOnly)
	want("Remove", s.Remove("q", name), ErrReadOnly)
	want("Move", s.Move("q", name, "q"), ErrReadOnly)
	want("WriteMetadata", s.WriteMetadata("q", name, []byte("x")), ErrReadOnly)
	want("AddQueue", s.AddQueue("r"), ErrReadOnly)
	_, err = s.Recover(context.Background(), 0, RecoverOptions{WorkersStopped: true})
	want("Recover", err, ErrReadOnly)
	r, err := s.NewReader("q")
	if err != nil {
		return append(problems, "NewReader: "+err.Error())
	}
	defer r.Close()
	_, err = r.Dequeue(context.Background())
	want("Dequeue", err, ErrReadOnly)
	_, err = r.DequeueAvailable()
	want("DequeueAvailable", err, ErrReadOnly)
	return problems
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// TestReadOnlySpool makes a spool read-only for the user that opens it:
// Open and Create fail with a clear error, Open with ReadOnly reads it, and
// every change is refused with ErrReadOnly; nothing on disk changes. Root
// may write anything, so as root the checks run in a helper process as
// user nobody.
func TestReadOnlySpool(t *testing.T) {
	top := t.TempDir()
	dir := filepath.Join(top, "spool")
	s, err := Create(dir, []string{"q"}, &Options{Durability: DurabilityNone})
	if err != nil {
		t.Fatal(err)
	}
	name := mustEnqueue(t, s, "q", "meta", "data", EnqueueOptions{})
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if d.IsDir() {
			return os.Chmod(p, 0o555)
		}
		return os.Chmod(p, 0o444)
	})
	t.Cleanup(func() {
		filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if d != nil && d.IsDir() {
				os.Chmod(p, 0o755)
			}
			return nil
		})
	})
	before := treeState(t, top)
	var problems []string
	if os.Geteuid() != 0 {
		problems = readOnlyChecks(dir, name)
	} else {
		problems = runAsNobody(t, top, map[string]string{
			helperEnv:          "readonly",
			"SPOOL_TEST_DIR":   dir,
			"SPOOL_TEST_ENTRY": name,
		})
	}
	for _, p := range problems {
		t.Error(p)
	}
	if after := treeState(t, top); after != before {
		t.Errorf("the disk changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// runAsNobody runs a copy of the test binary as user and group 65534 with
// env, and returns the lines it prints before "done".
func runAsNobody(t *testing.T, top string, env map[string]string) []string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The test binary and top must be reachable by nobody.
	bin := filepath.Join(t.TempDir(), "spool.test")
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Dir(bin), filepath.Dir(filepath.Dir(bin)), top, filepath.Dir(top)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper as nobody: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) == 0 || lines[len(lines)-1] != "done" {
		t.Fatalf("helper as nobody did not finish:\n%s", out)
	}
	return lines[:len(lines)-1]
}

package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spool-agent/spool-agent/spool"
)

var update = flag.Bool("update", false, "rewrite the testdata/*.golden files")

// testNow is the clock of the in-process commands: fixture mtimes are set
// relative to it, so outputs do not depend on when the tests run.
var testNow = time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)

// result is what one in-process run of the program produced.
type result struct {
	stdout, stderr string
	code           int
}

// cli runs the program in-process with args, the environment env (and no
// other), stdin as standard input and the clock at testNow.
func cli(t *testing.T, env map[string]string, stdin string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	m := testMain(env, stdin, &stdout, &stderr)
	code := m.Main(context.Background(), args)
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

func testMain(env map[string]string, stdin string, stdout, stderr *bytes.Buffer) *Main {
	return &Main{
		Stdin:  strings.NewReader(stdin),
		Stdout: stdout,
		Stderr: stderr,
		LookupEnv: func(k string) (string, bool) {
			v, ok := env[k]
			return v, ok
		},
		Now:      func() time.Time { return testNow },
		Version:  "1.2.3",
		Revision: "abcdef0",
	}
}

// mustCLI runs the program and fails the test unless it exits 0.
func mustCLI(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	r := cli(t, nil, stdin, args...)
	if r.code != 0 {
		t.Fatalf("spool-agent %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// golden compares got with testdata/name.golden, or rewrites it with -update.
// dir, when not empty, is replaced by $SPOOL first.
func golden(t *testing.T, name, dir, got string) {
	t.Helper()
	if dir != "" {
		got = strings.ReplaceAll(got, dir, "$SPOOL")
	}
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from %s (go test -update rewrites it)\n--- got:\n%s\n--- want:\n%s", name, path, got, want)
	}
}

// setMtime sets the mtime of dir/rel to testNow - age.
func setMtime(t *testing.T, dir, rel string, age time.Duration) {
	t.Helper()
	mt := testNow.Add(-age)
	if err := os.Chtimes(filepath.Join(dir, rel), mt, mt); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// fixtureSpool builds a spool with fixed names and ages:
//
//	active:  a-new (2m), a-mid (15m, binary metadata), a-old (3h)
//	active/.checkout: a-held (30m)
//	frozen:  f-ancient (2 days), f-recent (30s, empty metadata)
//	outgoing: empty
func fixtureSpool(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "spool")
	s, err := spool.Create(dir, []string{"active", "frozen", "outgoing"}, &spool.Options{Durability: spool.DurabilityNone})
	if err != nil {
		t.Fatal(err)
	}
	type ent struct {
		queue, name, meta, data string
		age                     time.Duration
		checkout                bool
	}
	ents := []ent{
		{"active", "a-new", "to: alice@example.com\nsubject: hello\n", "payload a-new\n", 2 * time.Minute, false},
		{"active", "a-mid", "esc \x1b[31mred\x1b[0m bell\a bad\xff rtl\u202e end", "0123456789", 15 * time.Minute, false},
		{"active", "a-old", "(Cog 1)", "", 3 * time.Hour, false},
		{"active", "a-held", "(Sprocket \"x\")", "held payload", 30 * time.Minute, true},
		{"frozen", "f-ancient", "ancient", "old old old", 48 * time.Hour, false},
		{"frozen", "f-recent", "", "r", 30 * time.Second, false},
	}
	for _, e := range ents {
		name, err := s.EnqueueBytes(context.Background(), e.queue, []byte(e.meta), []byte(e.data), spool.EnqueueOptions{Name: e.name})
		if err != nil {
			t.Fatal(err)
		}
		rel := filepath.Join(e.queue, name)
		if e.checkout {
			co := filepath.Join(e.queue, spool.CheckoutDir, name)
			if err := os.Rename(filepath.Join(dir, rel), filepath.Join(dir, co)); err != nil {
				t.Fatal(err)
			}
			rel = co
		}
		setMtime(t, dir, rel, e.age)
		setMtime(t, dir, filepath.Join(spool.RegistryDir, name), e.age)
		setMtime(t, dir, filepath.Join(spool.DataDir, name), e.age)
	}
	return dir
}

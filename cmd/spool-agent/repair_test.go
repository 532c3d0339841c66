package main

import (
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spool-agent/spool-agent/spool"
)

// brokenSpool builds a spool with one problem of each repairable kind and
// an unexpected directory, every file an hour older than testNow:
//
//	incoming/orphan      no registry file (register)
//	incoming/nodata      no payload (quarantine)
//	incoming/.checkout/stale  stale checkout (recover)
//	.registry/r + .data/r     a killed enqueue (delete, release)
//	incoming/esc\x1b[31m      no registry file, a name with an escape sequence
func brokenSpool(t *testing.T, unexpected bool) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "spool")
	s, err := spool.Create(dir, []string{"incoming", "done"}, &spool.Options{Durability: spool.DurabilityNone})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, n := range []string{"ok", "orphan", "nodata", "stale", "esc\x1b[31m"} {
		if _, err := s.EnqueueBytes(context.Background(), "incoming", []byte("meta "+n), []byte("data "+n), spool.EnqueueOptions{Name: n}); err != nil && n != "esc\x1b[31m" {
			t.Fatal(err)
		}
	}
	// esc\x1b[31m is not a name this library creates: write it by hand.
	writeFile(t, filepath.Join(dir, "incoming", "esc\x1b[31m"), "meta esc")
	writeFile(t, filepath.Join(dir, ".data", "esc\x1b[31m"), "data esc")
	for _, p := range []string{".registry/orphan", ".data/nodata"} {
		if err := os.Remove(filepath.Join(dir, p)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Rename(filepath.Join(dir, "incoming/stale"), filepath.Join(dir, "incoming/.checkout/stale")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, ".registry/r"), "")
	writeFile(t, filepath.Join(dir, ".data/r"), "partial")
	if unexpected {
		if err := os.Mkdir(filepath.Join(dir, "incoming", "adir"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	old := testNow.Add(-time.Hour)
	err = filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Chtimes(p, old, old)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// treeOf lists every path under dir with its size and mtime.
func treeOf(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		fi, err := d.Info()
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(p + " " + fi.ModTime().String() + " " + fi.Mode().String() + "\n")
		return nil
	})
	return b.String()
}

func TestRepairCommand(t *testing.T) {
	dir := brokenSpool(t, false)
	before := treeOf(t, dir)

	// The plan: one line per action, nothing changed, exit 0 (the spool
	// would be clean).
	r := cli(t, nil, "", "repair", dir)
	if r.code != 0 {
		t.Fatalf("repair (plan): exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	wantPlan := []string{
		"create-queue quarantine: ",
		`register .registry/esc\x1b[31m: `,
		"register .registry/orphan: ",
		"delete .data/r: ",
		"release .registry/r: ",
		"recover incoming/.checkout/stale: ",
		"quarantine incoming/nodata: ",
		"repair " + dir + ": 7 actions planned (run with --apply to carry them out)",
	}
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) != len(wantPlan) {
		t.Fatalf("plan:\n%s\nwant %d lines", r.stdout, len(wantPlan))
	}
	for i, w := range wantPlan {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("plan line %d: %q, want prefix %q", i, lines[i], w)
		}
	}
	if strings.Contains(r.stdout, "\x1b") {
		t.Error("the plan prints a raw escape sequence")
	}
	if after := treeOf(t, dir); after != before {
		t.Errorf("repair without --apply changed the spool:\n%s\n---\n%s", before, after)
	}

	// JSON for scripts.
	r = cli(t, nil, "", "repair", dir, "-o", "json")
	var doc struct {
		Spool   string `json:"spool"`
		Actions []struct {
			Action, Path, Reason, Kind, Dir, Queue, Name string
		} `json:"actions"`
		Left []json.RawMessage `json:"left"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || r.code != 0 {
		t.Fatalf("repair -o json: exit %d, %v\n%s", r.code, err, r.stdout)
	}
	if len(doc.Actions) != 7 || len(doc.Left) != 0 {
		t.Fatalf("repair -o json: %d actions, %d left", len(doc.Actions), len(doc.Left))
	}
	q := doc.Actions[6]
	if q.Action != "quarantine" || q.Path != "incoming/nodata" || q.Kind != "missing_data" || q.Dir != "queue" || q.Queue != "incoming" || q.Name != "nodata" || q.Reason == "" {
		t.Errorf("JSON action: %+v", q)
	}
	if doc.Actions[1].Name != "esc\x1b[31m" {
		t.Errorf("JSON name %q, want the exact name", doc.Actions[1].Name)
	}

	// --apply: every action logged, then clean.
	r = cli(t, nil, "", "repair", dir, "--apply")
	if r.code != 0 {
		t.Fatalf("repair --apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, w := range []string{"done create-queue quarantine", `done register .registry/esc\x1b[31m`, "done release .registry/r", "done recover incoming/.checkout/stale", "done quarantine incoming/nodata", "no problems left"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("repair --apply does not say %q:\n%s", w, r.stdout)
		}
	}
	if r := cli(t, nil, "", "fsck", dir); r.code != 0 {
		t.Errorf("fsck after repair --apply: exit %d\n%s", r.code, r.stdout)
	}
	// Idempotent: nothing left to plan or do.
	r = cli(t, nil, "", "repair", dir, "--apply", "-o", "json")
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || r.code != 0 || len(doc.Actions) != 0 {
		t.Errorf("second repair --apply: exit %d, %v\n%s", r.code, err, r.stdout)
	}
	if r := cli(t, nil, "", "repair", dir); r.code != 0 || !strings.Contains(r.stdout, "nothing to do") {
		t.Errorf("repair of the clean spool: exit %d\n%s", r.code, r.stdout)
	}
	// Every entry is there exactly once.
	s, err := spool.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got := map[string]string{}
	for _, queue := range s.Queues() {
		names, _ := s.List(queue)
		for _, n := range names {
			if prev, dup := got[n]; dup {
				t.Errorf("%s in %s and %s", n, prev, queue)
			}
			got[n] = queue
		}
	}
	want := map[string]string{"ok": "incoming", "orphan": "incoming", "stale": "incoming", "esc\x1b[31m": "incoming", "nodata": "quarantine"}
	for n, queue := range want {
		if got[n] != queue {
			t.Errorf("entry %q in %q, want %q", n, got[n], queue)
		}
	}
	if len(got) != len(want) {
		t.Errorf("entries %v, want %v", got, want)
	}
}

func TestRepairCommandExitCodes(t *testing.T) {
	cases := []struct {
		name     string
		dir      func(t *testing.T) string
		args     []string
		config   string // a --config file ($DIR: the spool): repair the spool "mail" of it
		wantCode int
		want     string
	}{
		{"unexpected left: plan", func(t *testing.T) string { return brokenSpool(t, true) }, nil, "", 1, "leave unexpected incoming/adir: not a regular file"},
		{"unexpected left: apply", func(t *testing.T) string { return brokenSpool(t, true) }, []string{"--apply"}, "", 1, "3 problems left as they are"},
		{"young stale checkout needs --workers-stopped", func(t *testing.T) string {
			dir := brokenSpool(t, false)
			setMtime(t, dir, "incoming/.checkout/stale", 30*time.Second)
			return dir
		}, []string{"--max-checked-out-age", "0s", "--max-tmp-file-age", "0s"}, "", 1, "--workers-stopped"},
		{"young stale checkout with --workers-stopped", func(t *testing.T) string {
			dir := brokenSpool(t, false)
			setMtime(t, dir, "incoming/.checkout/stale", 30*time.Second)
			return dir
		}, []string{"--max-checked-out-age", "0s", "--max-tmp-file-age", "0s", "--workers-stopped", "--apply"}, "", 0, "done recover incoming/.checkout/stale"},
		{"spool name from --config: its limits", func(t *testing.T) string {
			dir := brokenSpool(t, false)
			setMtime(t, dir, "incoming/.checkout/stale", 30*time.Minute)
			return dir
		}, nil, "spools:\n  mail:\n    dir: $DIR\n    max-checked-out-age: 2h\n", 0, "6 actions planned"},
		{"spool name from --config: a flag given wins", func(t *testing.T) string {
			dir := brokenSpool(t, false)
			setMtime(t, dir, "incoming/.checkout/stale", 30*time.Minute)
			return dir
		}, []string{"--max-checked-out-age", "10m"}, "spools:\n  mail:\n    dir: $DIR\n    max-checked-out-age: 2h\n", 0, "recover incoming/.checkout/stale"},
		{"not a spool", func(t *testing.T) string { return t.TempDir() }, nil, "", 2, "could not check"},
		{"negative limit", func(t *testing.T) string { return t.TempDir() }, []string{"--max-tmp-file-age=-1s"}, "", 2, "negative"},
		{"bad quarantine queue", func(t *testing.T) string { return brokenSpool(t, false) }, []string{"--quarantine-queue", ".x"}, "", 2, "quarantine queue"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.dir(t)
			r := cli(t, nil, "", slices.Concat([]string{"repair", dir}, tc.args)...)
			if tc.config != "" {
				cfg := filepath.Join(t.TempDir(), "agent.yaml")
				writeFile(t, cfg, strings.ReplaceAll(tc.config, "$DIR", dir))
				r = cli(t, nil, "", slices.Concat([]string{"--config", cfg, "repair", "mail"}, tc.args)...)
			}
			if r.code != tc.wantCode || !strings.Contains(r.stdout+r.stderr, tc.want) {
				t.Errorf("exit %d, want %d with %q\nstdout: %s\nstderr: %s", r.code, tc.wantCode, tc.want, r.stdout, r.stderr)
			}
		})
	}
}

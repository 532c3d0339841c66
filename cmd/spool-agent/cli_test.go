package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"
	"unicode/utf8"

	"github.com/spool-agent/spool-agent/internal/syncbuf"
	"github.com/spool-agent/spool-agent/spool"
)

func TestGoldenHelp(t *testing.T) {
	t.Setenv("COLUMNS", "80") // kong wraps help to the terminal's width
	for _, tc := range []struct {
		golden string
		args   []string
	}{
		{"help", []string{"--help"}},
		{"help-run", []string{"run", "--help"}},
		{"help-enqueue", []string{"enqueue", "--help"}},
		{"help-ls", []string{"ls", "--help"}},
		{"help-fsck", []string{"fsck", "--help"}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			r := cli(t, nil, "", tc.args...)
			if r.code != 0 || r.stderr != "" {
				t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
			}
			golden(t, tc.golden, "", r.stdout)
		})
	}
}

func TestVersion(t *testing.T) {
	r := cli(t, nil, "", "--version")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "spool-agent version 1.2.3, revision abcdef0, go") {
		t.Fatalf("--version: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

func TestGoldenListings(t *testing.T) {
	dir := fixtureSpool(t)
	for _, tc := range []struct {
		golden string
		args   []string
	}{
		{"ls", []string{"ls", dir}},
		{"ls-all", []string{"ls", dir, "--all"}},
		{"ls-checked-out", []string{"ls", dir, "active", "--checked-out"}},
		{"ls-frozen", []string{"ls", dir, "frozen"}},
		{"ls-json", []string{"ls", dir, "--all", "-o", "json"}},
		{"ls-empty-json", []string{"ls", dir, "outgoing", "-o", "json"}},
		{"show", []string{"show", dir, "a-mid"}},
		{"show-multiline", []string{"show", dir, "a-new"}},
		{"show-checked-out", []string{"show", dir, "a-held"}},
		{"show-json", []string{"show", dir, "a-mid", "-o", "json"}},
		{"shape", []string{"shape", dir}},
		{"shape-frozen", []string{"shape", dir, "frozen"}},
		{"shape-json", []string{"shape", dir, "-o", "json"}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			r := cli(t, nil, "", tc.args...)
			if r.code != 0 || r.stderr != "" {
				t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
			}
			if strings.HasSuffix(tc.golden, "json") && !json.Valid([]byte(r.stdout)) {
				t.Errorf("output is not one JSON document:\n%s", r.stdout)
			}
			golden(t, tc.golden, dir, r.stdout)
		})
	}
}

// TestShowEscapes checks that no control byte of the metadata reaches the
// terminal in text output, and that JSON output keeps the exact bytes.
func TestShowEscapes(t *testing.T) {
	dir := fixtureSpool(t)
	out := mustCLI(t, "", "show", dir, "a-mid")
	for _, c := range out {
		if c < 0x20 && c != '\n' || c == 0x7f || c == '\u202e' {
			t.Fatalf("text output carries control character %U:\n%q", c, out)
		}
	}
	var doc struct {
		Metadata       *string `json:"metadata"`
		MetadataBase64 *string `json:"metadata_base64"`
	}
	if err := json.Unmarshal([]byte(mustCLI(t, "", "show", dir, "a-mid", "-o", "json")), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Metadata != nil || doc.MetadataBase64 == nil {
		t.Fatalf("invalid UTF-8 metadata must come as metadata_base64, got %+v", doc)
	}
}

// problemSpool builds a spool with one problem of each kind.
func problemSpool(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "spool")
	s, err := spool.Create(dir, []string{"active", "frozen"}, &spool.Options{Durability: spool.DurabilityNone})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"ok", "dup", "nodata", "held"} {
		if _, err := s.EnqueueBytes(context.Background(), "active", []byte("m"), []byte("d"), spool.EnqueueOptions{Name: n}); err != nil {
			t.Fatal(err)
		}
	}
	// held: checked out 30 minutes ago (too_old after 10m).
	if err := os.Rename(filepath.Join(dir, "active", "held"), filepath.Join(dir, "active", spool.CheckoutDir, "held")); err != nil {
		t.Fatal(err)
	}
	// dup: also in frozen (duplicated).
	writeFile(t, filepath.Join(dir, "frozen", "dup"), "m")
	// nodata: payload gone (missing_data).
	if err := os.Remove(filepath.Join(dir, spool.DataDir, "nodata")); err != nil {
		t.Fatal(err)
	}
	// An unregistered payload (orphaned data), a stale unregistered tmp
	// file (too_old and orphaned), and a stray directory at the root.
	writeFile(t, filepath.Join(dir, spool.DataDir, "orphan"), "x")
	writeFile(t, filepath.Join(dir, spool.TmpDir, "stale"), "x")
	if err := os.Mkdir(filepath.Join(dir, "junk"), 0o755); err != nil {
		t.Fatal(err)
	}
	for rel, age := range map[string]time.Duration{
		"active/ok": time.Minute, ".registry/ok": time.Minute, ".data/ok": time.Minute,
		"active/dup": 2 * time.Minute, "frozen/dup": 2 * time.Minute, ".registry/dup": 2 * time.Minute, ".data/dup": 2 * time.Minute,
		"active/nodata": 3 * time.Minute, ".registry/nodata": 3 * time.Minute,
		"active/.checkout/held": 30 * time.Minute, ".registry/held": 30 * time.Minute, ".data/held": 30 * time.Minute,
		".data/orphan": time.Hour, ".tmp/stale": 20 * time.Minute,
	} {
		setMtime(t, dir, rel, age)
	}
	return dir
}

func TestGoldenFsck(t *testing.T) {
	dir := problemSpool(t)
	r := cli(t, nil, "", "fsck", dir, "-o", "json")
	if r.code != 1 || r.stderr != "" {
		t.Fatalf("fsck of a spool with problems: exit %d (want 1), stderr %q", r.code, r.stderr)
	}
	golden(t, "fsck-json", dir, r.stdout)

	var doc struct {
		Spool    string `json:"spool"`
		Problems []struct {
			Kind, Dir, Queue, Name, MTime string
		} `json:"problems"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for _, p := range doc.Problems {
		kinds[p.Kind] = true
		if p.MTime != "" {
			if _, err := time.Parse(time.RFC3339, p.MTime); err != nil {
				t.Errorf("mtime %q is not RFC 3339: %v", p.MTime, err)
			}
		}
	}
	for _, k := range []string{"too_old", "orphaned", "duplicated", "missing_data", "unexpected"} {
		if !kinds[k] {
			t.Errorf("no %s problem in %s", k, r.stdout)
		}
	}

	r = cli(t, nil, "", "fsck", dir)
	if r.code != 1 || r.stderr != "" {
		t.Fatalf("fsck (text): exit %d (want 1), stderr %q", r.code, r.stderr)
	}
	golden(t, "fsck", dir, r.stdout)

	// Raised limits make the ages fine; a queue limit makes them not.
	r = cli(t, nil, "", "fsck", dir, "--max-checked-out-age", "1h", "--max-tmp-file-age", "1h", "--max-queue-age", "active=30s", "-o", "json")
	if !strings.Contains(r.stdout, `"dir": "queue",
      "queue": "active",
      "name": "ok"`) || strings.Contains(r.stdout, `"name": "held"`) {
		t.Errorf("limits not applied:\n%s", r.stdout)
	}
}

func TestFsckExitStatus(t *testing.T) {
	clean := fixtureSpool(t)
	// The fixture's checkout is 30 minutes old: allow it.
	for _, tc := range []struct {
		name string
		args []string
		code int
	}{
		{"clean", []string{"fsck", clean, "--max-checked-out-age", "1h"}, 0},
		{"clean json", []string{"fsck", clean, "--max-checked-out-age", "1h", "-o", "json"}, 0},
		{"problems", []string{"fsck", problemSpool(t)}, 1},
		{"not a spool", []string{"fsck", t.TempDir()}, 2},
		{"missing", []string{"fsck", filepath.Join(t.TempDir(), "nope")}, 2},
		{"bad limit", []string{"fsck", clean, "--max-queue-age", "active"}, 2},
		{"bad queue in limit", []string{"fsck", clean, "--max-queue-age", ".x=1m"}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := cli(t, nil, "", tc.args...)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d; stdout %q stderr %q", r.code, tc.code, r.stdout, r.stderr)
			}
		})
	}
	r := cli(t, nil, "", "fsck", clean, "--max-checked-out-age", "1h", "-o", "json")
	if want := `{
  "spool": "` + clean + `",
  "problems": []
}
`; r.stdout != want {
		t.Errorf("clean fsck -o json:\n%s\nwant\n%s", r.stdout, want)
	}
}

func TestEnqueue(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	mustCLI(t, "", "init", dir, "--queue", "in", "--queue", "out")
	metaFile := filepath.Join(t.TempDir(), "meta")
	writeFile(t, metaFile, "from a file\n")
	dataFile := filepath.Join(t.TempDir(), "data")
	writeFile(t, dataFile, "payload from a file")
	for _, tc := range []struct {
		name       string
		stdin      string
		args       []string
		meta, data string
	}{
		{"metadata flag, data on stdin", "stdin payload", []string{"--metadata", "m1", "--data-file", "-"}, "m1", "stdin payload"},
		{"metadata on stdin, data file", "meta from stdin", []string{"--metadata-file", "-", "--data-file", dataFile}, "meta from stdin", "payload from a file"},
		{"metadata file, no data", "", []string{"--metadata-file", metaFile}, "from a file\n", ""},
		{"chosen name", "", []string{"--name", "my-entry", "--metadata", "x", "--durability", "none"}, "x", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := mustCLI(t, tc.stdin, append([]string{"enqueue", dir, "in"}, tc.args...)...)
			name := strings.TrimSuffix(out, "\n")
			if name == "" || strings.Contains(name, "\n") {
				t.Fatalf("enqueue printed %q, want one name", out)
			}
			if tc.name == "chosen name" && name != "my-entry" {
				t.Errorf("name %q, want my-entry", name)
			}
			s, err := spool.Open(dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			meta, err := s.ReadMetadata("in", name)
			if err != nil {
				t.Fatal(err)
			}
			data, err := s.ReadData(name)
			if err != nil {
				t.Fatal(err)
			}
			if string(meta) != tc.meta || string(data) != tc.data {
				t.Errorf("entry has metadata %q data %q, want %q %q", meta, data, tc.meta, tc.data)
			}
		})
	}
}

// TestRmRefusesDuplicate: rm of a name that is in two queues (a duplicated
// entry, whose copies share one payload and registry file) fails with a
// one-line error and leaves every copy, the payload and the registry file.
func TestRmRefusesDuplicate(t *testing.T) {
	dir := fixtureSpool(t)
	copyTo := filepath.Join(dir, "frozen", "a-old")
	b, err := os.ReadFile(filepath.Join(dir, "active", "a-old"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, copyTo, string(b))
	before := map[string][]byte{}
	for _, p := range []string{"active/a-old", "frozen/a-old", spool.DataDir + "/a-old", spool.RegistryDir + "/a-old"} {
		if before[p], err = os.ReadFile(filepath.Join(dir, p)); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{{"rm", dir, "a-old", "--dry-run"}, {"rm", dir, "a-old"}} {
		r := cli(t, nil, "", args...)
		if r.code == 0 {
			t.Fatalf("%v: exit 0; stdout %q", args, r.stdout)
		}
		checkOneLine(t, r.stderr, "duplicated")
	}
	for p, want := range before {
		if got, err := os.ReadFile(filepath.Join(dir, p)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s after rm: %q, %v", p, got, err)
		}
	}
}

func TestMoveRemoveRecover(t *testing.T) {
	dir := fixtureSpool(t)
	s, err := spool.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if out := mustCLI(t, "", "mv", dir, "a-old", "--to", "frozen", "--dry-run"); out != "would move a-old from active to frozen\n" {
		t.Fatalf("mv --dry-run printed %q", out)
	}
	if q, _, err := s.Find("a-old"); err != nil || q != "active" {
		t.Fatalf("after mv --dry-run: Find = %q %v, want active", q, err)
	}
	mustCLI(t, "", "mv", dir, "a-old", "--to", "frozen")
	if q, co, err := s.Find("a-old"); err != nil || q != "frozen" || co {
		t.Fatalf("after mv: Find = %q %v %v, want frozen", q, co, err)
	}
	if out := mustCLI(t, "", "rm", dir, "a-old", "--dry-run"); out != "would remove a-old from frozen\n" {
		t.Fatalf("rm --dry-run printed %q", out)
	}
	if q, _, err := s.Find("a-old"); err != nil || q != "frozen" {
		t.Fatalf("after rm --dry-run: Find = %q %v, want frozen", q, err)
	}
	mustCLI(t, "", "rm", dir, "a-old")
	if _, _, err := s.Find("a-old"); err == nil {
		t.Fatal("rm left the entry")
	}
	if _, err := os.Stat(filepath.Join(dir, spool.RegistryDir, "a-old")); !os.IsNotExist(err) {
		t.Fatalf("rm left the registry file: %v", err)
	}
	// a-held is checked out 30 minutes ago: not older than 1h, older than 10m.
	if out, want := mustCLI(t, "", "recover", dir, "--older-than", "1h"), "recovered 0 entries in "+dir+" (checked out for more than 1h0m0s)\n"; out != want {
		t.Fatalf("recover --older-than 1h printed %q, want %q", out, want)
	}
	if out := mustCLI(t, "", "recover", dir, "--older-than", "1h", "-q"); out != "" {
		t.Fatalf("recover -q printed %q", out)
	}
	out := mustCLI(t, "", "recover", dir, "--older-than", "10m", "--dry-run")
	if want := "would recover a-held to active (checked out at 2025-03-14T14:39:26Z)\nwould recover 1 entry in " + dir + " (checked out for more than 10m0s, unless a live worker of this library holds it)\n"; out != want {
		t.Fatalf("recover --dry-run printed %q, want %q", out, want)
	}
	if _, co, err := s.Find("a-held"); err != nil || !co {
		t.Fatalf("recover --dry-run changed the spool: %v %v", co, err)
	}
	out = mustCLI(t, "", "recover", dir, "--older-than", "10m")
	if want := "recovered a-held to active (checked out at 2025-03-14T14:39:26Z)\nrecovered 1 entry in " + dir + " (checked out for more than 10m0s)\n"; out != want {
		t.Fatalf("recover printed %q, want %q", out, want)
	}
	if q, co, err := s.Find("a-held"); err != nil || q != "active" || co {
		t.Fatalf("after recover: Find = %q %v %v, want active, waiting", q, co, err)
	}
}

// TestBadInput checks that every bad input gives one line on stderr,
// starting with "spool-agent: ", and a non-zero exit status.
func TestBadInput(t *testing.T) {
	dir := fixtureSpool(t)
	notSpool := t.TempDir()
	writeFile(t, filepath.Join(notSpool, "file"), "x")
	missing := filepath.Join(t.TempDir(), "missing")
	cfgDir := t.TempDir()
	badYAML := filepath.Join(cfgDir, "bad.yaml")
	writeFile(t, badYAML, "check-every: [unclosed\n")
	unknownKey := filepath.Join(cfgDir, "unknown.yaml")
	writeFile(t, unknownKey, "chek-every: 1s\n")
	badValue := filepath.Join(cfgDir, "value.yaml")
	writeFile(t, badValue, "max-tmp-file-age: soon\n")
	badSpools := filepath.Join(cfgDir, "spools.yaml")
	writeFile(t, badSpools, "spools:\n  x:\n    dir: /tmp\n    check-evry: 1s\n")
	unreadable := filepath.Join(cfgDir, "unreadable.yaml")
	writeFile(t, unreadable, "log.level: info\n")
	if err := os.Chmod(unreadable, 0); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		unreadable = cfgDir // root reads any file; a directory cannot be read as one
	}

	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string // a substring of the line
	}{
		{"unknown command", nil, []string{"frobnicate"}, "unexpected argument frobnicate"},
		{"no command", nil, nil, "expected one of"},
		{"unknown flag", nil, []string{"ls", dir, "--bogus"}, "unknown flag --bogus"},
		{"bad duration", nil, []string{"fsck", dir, "--max-tmp-file-age", "soon"}, "--max-tmp-file-age"},
		{"bad enum", nil, []string{"ls", dir, "-o", "xml"}, "xml"},
		{"bad log level", nil, []string{"--log.level", "loud", "ls", dir}, "loud"},
		{"missing argument", nil, []string{"show", dir}, "expected \"<name>\""},
		{"missing required flag", nil, []string{"mv", dir, "a-new"}, "--to"},
		{"both xor flags", nil, []string{"ls", dir, "--all", "--checked-out"}, "can't be used together"},
		{"unknown queue (ls)", nil, []string{"ls", dir, "nope"}, `unknown queue "nope"`},
		{"unknown queue (shape)", nil, []string{"shape", dir, "nope"}, `unknown queue "nope"`},
		{"unknown queue (enqueue)", nil, []string{"enqueue", dir, "nope"}, `unknown queue "nope"`},
		{"unknown queue (mv)", nil, []string{"mv", dir, "a-new", "--to", "nope"}, `unknown queue "nope"`},
		{"invalid queue (init)", nil, []string{"init", filepath.Join(t.TempDir(), "s"), "--queue", "../x"}, "invalid name"},
		{"unknown entry (show)", nil, []string{"show", dir, "nope"}, "entry not found"},
		{"unknown entry (mv)", nil, []string{"mv", dir, "nope", "--to", "frozen"}, "entry not found"},
		{"unknown entry (rm)", nil, []string{"rm", dir, "nope"}, "entry not found"},
		{"invalid entry name", nil, []string{"show", dir, "../x"}, "invalid name"},
		{"checked-out entry (mv)", nil, []string{"mv", dir, "a-held", "--to", "frozen"}, "checked out"},
		{"checked-out entry (rm)", nil, []string{"rm", dir, "a-held"}, "checked out"},
		{"entry name in use", nil, []string{"enqueue", dir, "active", "--name", "a-new"}, "already exists"},
		{"stdin twice", nil, []string{"enqueue", dir, "active", "--metadata-file", "-", "--data-file", "-"}, "standard input"},
		{"missing data file", nil, []string{"enqueue", dir, "active", "--data-file", missing}, "no such file"},
		{"non-spool directory (ls)", nil, []string{"ls", notSpool}, "not a spool"},
		{"non-spool directory (init)", nil, []string{"init", notSpool, "--queue", "q"}, "not a spool"},
		{"non-spool directory (fsck)", nil, []string{"fsck", notSpool}, "not a spool"},
		{"missing directory (show)", nil, []string{"show", missing, "x"}, "does not exist"},
		{"negative duration", nil, []string{"recover", dir, "--older-than=-1m"}, "negative"},
		{"missing config", nil, []string{"--config", missing, "ls", dir}, "no such file"},
		{"unreadable config", nil, []string{"--config", unreadable, "ls", dir}, "config file"},
		{"invalid YAML config", nil, []string{"--config", badYAML, "ls", dir}, "yaml"},
		{"unknown config key", nil, []string{"--config", unknownKey, "ls", dir}, `unknown key "chek-every"`},
		{"bad config value", nil, []string{"--config", badValue, "fsck", dir}, "max-tmp-file-age"},
		{"bad per-spool key", nil, []string{"--config", badSpools, "ls", dir}, `unknown key "check-evry"`},
		{"config from env", map[string]string{"SPOOL_AGENT_CONFIG": missing}, []string{"ls", dir}, "no such file"},
		{"bad env value", map[string]string{"SPOOL_AGENT_MAX_TMP_FILE_AGE": "soon"}, []string{"run", "--spool", "a=" + dir}, "$SPOOL_AGENT_MAX_TMP_FILE_AGE"},
		{"bad env enum", map[string]string{"SPOOL_AGENT_LOG_FORMAT": "xml"}, []string{"ls", dir}, "$SPOOL_AGENT_LOG_FORMAT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := cli(t, tc.env, "", tc.args...)
			if r.code == 0 {
				t.Fatalf("exit 0; stdout %q", r.stdout)
			}
			checkOneLine(t, r.stderr, tc.want)
		})
	}
}

// checkOneLine checks that stderr is one line "spool-agent: ..." containing want.
func checkOneLine(t *testing.T, stderr, want string) {
	t.Helper()
	if strings.Count(stderr, "\n") != 1 || !strings.HasSuffix(stderr, "\n") || !strings.HasPrefix(stderr, "spool-agent: ") {
		t.Fatalf("stderr is not one line \"spool-agent: ...\": %q", stderr)
	}
	if !strings.Contains(stderr, want) {
		t.Fatalf("stderr %q does not mention %q", stderr, want)
	}
}

func TestProgressOnlyOnTerminal(t *testing.T) {
	dir := fixtureSpool(t)
	// stderr is a buffer here, not a terminal: nothing but the output.
	r := cli(t, nil, "", "ls", dir)
	if r.stderr != "" {
		t.Fatalf("progress written to a non-terminal: %q", r.stderr)
	}

	// On a terminal, in a bubble whose clock paces the line: the first
	// line after progressDelay, then one every progressEvery.
	synctest.Test(t, func(t *testing.T) {
		var buf syncbuf.Buffer
		p := newProgress(&buf, "ls x", 10, true)
		p.add(4)
		time.Sleep(progressDelay - time.Nanosecond)
		synctest.Wait()
		if out := buf.String(); out != "" {
			t.Fatalf("progress drawn before progressDelay: %q", out)
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if want := "\r\x1b[Kls x: 4/10 (40%) 1s"; buf.String() != want {
			t.Fatalf("progress at progressDelay %q, want %q", buf.String(), want)
		}
		p.add(1)
		time.Sleep(progressEvery)
		synctest.Wait()
		if want := "\r\x1b[Kls x: 4/10 (40%) 1s\r\x1b[Kls x: 5/10 (50%) 1s"; buf.String() != want {
			t.Fatalf("progress after progressEvery %q, want %q", buf.String(), want)
		}
		p.finish()
		if out := buf.String(); !strings.HasSuffix(out, "\r\x1b[K") {
			t.Fatalf("progress line not cleared at the end: %q", out)
		}
	})
}

// TestTextOutputsEscapeNames checks that names with control bytes (valid
// names may hold raw bytes 0x80-0x9f, which some terminals take for C1
// controls, and bidi overrides) reach the terminal escaped in every text
// output and error line, and that ls lists, escaped, the entries whose
// names the library would not create but the reference accepts (made by
// hand or by other software).
func TestTextOutputsEscapeNames(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	queue := "q\u202e"
	s, err := spool.Create(dir, []string{queue}, &spool.Options{Durability: spool.DurabilityNone})
	if err != nil {
		t.Fatal(err)
	}
	name := "n\x80\x9b2J"
	if _, err := s.EnqueueBytes(context.Background(), queue, nil, nil, spool.EnqueueOptions{Name: name}); err != nil {
		t.Fatal(err)
	}
	bad := "bad\u0085" // refused by spool.ValidateName, read by everything
	for _, p := range []string{filepath.Join(queue, bad), filepath.Join(spool.RegistryDir, bad), filepath.Join(spool.DataDir, bad)} {
		writeFile(t, filepath.Join(dir, p), "x")
	}
	writeFile(t, filepath.Join(dir, spool.DataDir, "orphan\x9b"), "x")
	for _, args := range [][]string{
		{"ls", dir}, {"ls", dir, "--all"}, {"show", dir, name}, {"shape", dir}, {"fsck", dir},
		{"show", dir, "missing\x9b"}, {"ls", dir, "nope\x9b"},
	} {
		r := cli(t, nil, "", args...)
		for _, out := range []string{r.stdout, r.stderr} {
			for _, c := range []byte(out) {
				if c < 0x20 && c != '\n' || c == 0x7f {
					t.Errorf("spool-agent %q prints byte %#x:\n%q", args, c, out)
					break
				}
			}
			for _, c := range out {
				if c >= 0x80 && c < 0xa0 || c == '\u202e' || c == utf8.RuneError {
					t.Errorf("spool-agent %q prints %U:\n%q", args, c, out)
					break
				}
			}
		}
	}
	// A name that is not UTF-8 can be named on the command line.
	if out := mustCLI(t, "", "show", dir, name); !strings.Contains(out, `name:      n\x80\x9b2J`) {
		t.Errorf("show of a name that is not UTF-8:\n%s", out)
	}
	r := cli(t, nil, "", "ls", dir)
	lines := strings.Split(r.stdout, "\n")
	if r.code != 0 || r.stderr != "" || len(lines) != 4 ||
		!strings.HasPrefix(strings.Join(strings.Fields(lines[1]), " "), `bad\u0085 q\u202e waiting `) ||
		!strings.HasPrefix(lines[2], `n\x80\x9b2J  q\u202e  waiting`) {
		t.Errorf("ls: exit %d, stderr %q, stdout:\n%s", r.code, r.stderr, r.stdout)
	}
	r = cli(t, nil, "", "ls", dir, "-o", "json")
	var doc struct{ Entries []entryJSON }
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || len(doc.Entries) != 2 {
		t.Fatalf("ls -o json: %v\n%s", err, r.stdout)
	}
	if e := doc.Entries[0]; e.Name != bad || e.NameBase64 != "" || e.State != "waiting" || e.MTime == "" || e.DataSize == nil {
		t.Errorf("ls -o json lists the name the reference accepts as %+v", e)
	}
	// JSON strings are UTF-8: a name that is not comes exactly in name_base64.
	wantB64 := base64.StdEncoding.EncodeToString([]byte(name))
	if e := doc.Entries[1]; e.NameBase64 != wantB64 || e.State != "waiting" {
		t.Errorf("ls -o json lists the non-UTF-8 name as %+v, want name_base64 %s", e, wantB64)
	}
	var shown entryJSON
	if err := json.Unmarshal([]byte(mustCLI(t, "", "show", dir, name, "-o", "json")), &shown); err != nil || shown.NameBase64 != wantB64 {
		t.Errorf("show -o json: %v, name_base64 %q, want %s", err, shown.NameBase64, wantB64)
	}
	r = cli(t, nil, "", "fsck", dir, "-o", "json")
	var fsck struct{ Problems []problemJSON }
	if err := json.Unmarshal([]byte(r.stdout), &fsck); err != nil {
		t.Fatalf("fsck -o json: %v\n%s", err, r.stdout)
	}
	orphanB64 := base64.StdEncoding.EncodeToString([]byte("orphan\x9b"))
	found := false
	for _, p := range fsck.Problems {
		if p.NameBase64 == orphanB64 && p.Kind == "orphaned" {
			found = true
		} else if p.NameBase64 != "" && utf8.ValidString(p.Name) && !strings.ContainsRune(p.Name, utf8.RuneError) {
			t.Errorf("fsck -o json: name_base64 on the UTF-8 name %q", p.Name)
		}
	}
	if !found {
		t.Errorf("fsck -o json: no orphaned problem with name_base64 %s:\n%s", orphanB64, r.stdout)
	}
	r = cli(t, nil, "", "shape", dir)
	if r.code != 0 || r.stderr != "" {
		t.Errorf("shape: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestRecoverAgeRule checks that recover refuses an age below a minute
// (workers of the OCaml reference take no lock: only the age protects
// their checkouts) unless --workers-stopped says none runs.
func TestRecoverAgeRule(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string // in stderr (refused) or stdout
	}{
		{"zero refused", []string{"--older-than", "0s"}, exitUsage, "--workers-stopped"},
		{"59s refused", []string{"--older-than", "59s"}, exitUsage, "--workers-stopped"},
		{"dry run refused too", []string{"--older-than", "0s", "--dry-run"}, exitUsage, "--workers-stopped"},
		{"1m allowed", []string{"--older-than", "1m", "--dry-run"}, 0, "would recover a-held"},
		{"zero with --workers-stopped", []string{"--older-than", "0s", "--workers-stopped"}, 0, "recovered a-held to active"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := fixtureSpool(t)
			r := cli(t, nil, "", append([]string{"recover", dir}, tc.args...)...)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d: %+v", r.code, tc.code, r)
			}
			if tc.code != 0 {
				checkOneLine(t, r.stderr, tc.want)
				s, err := spool.Open(dir, nil)
				if err != nil {
					t.Fatal(err)
				}
				if _, co, err := s.Find("a-held"); err != nil || !co {
					t.Fatalf("a refused recover changed the spool: %v %v", co, err)
				}
			} else if !strings.Contains(r.stdout, tc.want) {
				t.Fatalf("stdout %q does not say %q", r.stdout, tc.want)
			}
		})
	}
	r := cli(t, nil, "", "recover", "--help")
	if !strings.Contains(strings.Join(strings.Fields(r.stdout), " "), "Below 1m it is refused unless --workers-stopped") {
		t.Errorf("recover --help does not state the age rule:\n%s", r.stdout)
	}
}

// TestSuccessLines checks that init, recover and fsck say one line on
// success, and nothing with -q; that enqueue into an unknown queue lists
// the queues.
func TestSuccessLines(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"init", dir, "--queue", "a", "--queue", "b"}, "created spool " + dir + " (queues: a, b)\n"},
		{[]string{"init", dir, "--queue", "c"}, "spool " + dir + ": added queues c (queues: a, b, c)\n"},
		{[]string{"init", dir, "--queue", "c"}, "spool " + dir + " exists, nothing to add (queues: a, b, c)\n"},
		{[]string{"init", dir, "-q", "--queue", "d"}, ""},
		{[]string{"fsck", dir}, "fsck " + dir + ": no problems\n"},
		{[]string{"fsck", dir, "-q"}, ""},
		{[]string{"recover", dir, "--older-than", "1h"}, "recovered 0 entries in " + dir + " (checked out for more than 1h0m0s)\n"},
		{[]string{"recover", dir, "--older-than", "1h", "-q"}, ""},
	} {
		r := cli(t, nil, "", tc.args...)
		if r.code != 0 || r.stdout != tc.want || r.stderr != "" {
			t.Errorf("spool-agent %q: exit %d, stdout %q (want %q), stderr %q", tc.args, r.code, r.stdout, tc.want, r.stderr)
		}
	}
	r := cli(t, nil, "", "enqueue", dir, "nope")
	checkOneLine(t, r.stderr, `unknown queue "nope" in spool `+dir+" (queues: a, b, c, d)")
}

// TestShowWhatExists checks that show reports what exists of a name that is
// not a whole entry (a producer killed mid-enqueue leaves a registry file
// and a partial payload), names every place of a duplicated entry, and
// says when nothing at all exists.
func TestShowWhatExists(t *testing.T) {
	dir := problemSpool(t) // dup in active and frozen, nodata without payload
	writeFile(t, filepath.Join(dir, spool.RegistryDir, "killed"), "")
	writeFile(t, filepath.Join(dir, spool.DataDir, "killed"), "part")
	setMtime(t, dir, filepath.Join(spool.RegistryDir, "killed"), 5*time.Minute)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"killed producer", []string{"killed"}, 0, []string{"state:     incomplete (no queue holds it", "registry:  present (reserved at 2025-03-14T15:04:26Z)", "data:      4 bytes (" + dir + "/.data/killed; may be partial)"}},
		{"orphaned payload", []string{"orphan"}, 0, []string{"registry:  missing", "data:      1 bytes"}},
		{"stale tmp file", []string{"stale"}, 0, []string{"tmp:       1 bytes"}},
		{"duplicated", []string{"dup"}, 0, []string{"places:    active, frozen (duplicated"}},
		{"missing payload", []string{"nodata"}, 0, []string{"data:      missing"}},
		{"killed producer json", []string{"killed", "-o", "json"}, 0, []string{`"state": "incomplete"`, `"registry": true`, `"data_size": 4`}},
		{"duplicated json", []string{"dup", "-o", "json"}, 0, []string{`"places": [`, `"queue": "frozen"`}},
		{"nothing", []string{"nope"}, 1, []string{"entry not found: nope", "no queue, registry, payload or temporary file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := cli(t, nil, "", append([]string{"show", dir}, tc.args...)...)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d: %+v", r.code, tc.code, r)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stdout+r.stderr, w) {
					t.Errorf("show %q does not say %q:\n%s%s", tc.args, w, r.stdout, r.stderr)
				}
			}
			if tc.args[len(tc.args)-1] == "json" && !json.Valid([]byte(r.stdout)) {
				t.Errorf("not one JSON document:\n%s", r.stdout)
			}
		})
	}
}

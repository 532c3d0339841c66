package alertrules

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spool-agent/spool-agent/internal/testkit"
)

// runbookBlock is a fenced block of RUNBOOK.md marked for testing
// (```sh test=NAME), with the anchor of the section it sits in. A block
// marked manual (```sh test=NAME manual) may hold the runbook's one manual
// step (see TestRunbookNoRawCommandsInSpool).
type runbookBlock struct {
	name, anchor, script string
	manual               bool
}

var (
	fenceRE  = regexp.MustCompile("^```sh test=([a-z0-9-]+)( manual)?\\s*$")
	headerRE = regexp.MustCompile(`^#{2,3} `)
)

// runbookBlocks reads the testable blocks of RUNBOOK.md.
func runbookBlocks(t *testing.T) []runbookBlock {
	t.Helper()
	b, err := os.ReadFile("RUNBOOK.md")
	if err != nil {
		t.Fatal(err)
	}
	var out []runbookBlock
	var anchor string
	var cur *runbookBlock
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case cur != nil && line == "```":
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.script += line + "\n"
		case headerRE.MatchString(line):
			for a := range markdownAnchors(line) {
				anchor = a
			}
		case fenceRE.MatchString(line):
			m := fenceRE.FindStringSubmatch(line)
			cur = &runbookBlock{name: m[1], anchor: anchor, manual: m[2] != ""}
		}
	}
	if cur != nil {
		t.Fatalf("RUNBOOK.md: block %s is not closed", cur.name)
	}
	return out
}

// runbookCase builds one fault in a spool (queues work and other, and an
// entry ENTRY in work) and returns the values of the block's placeholders.
type runbookCase struct {
	name    string
	block   string // the test= name of the block that fixes it
	section string // the anchor of the section the block must be in
	// The problem fsck must report before the fix.
	kind, dir string
	fsck      []string // the agent's limits, when not the defaults
	build     func(t *testing.T, s *testSpool) map[string]string
	// leftAlone: the runbook says repair leaves this problem; the test
	// checks that `repair --apply` exits 1 and fsck still reports it.
	leftAlone bool
	// after checks the outcome the runbook documents, once the block ran;
	// out is the block's output. It may add values for then.
	after func(t *testing.T, s *testSpool, vars map[string]string, out string)
	// then is a block run next (in any section), as the runbook says.
	then string
}

// testSpool is a spool made with the CLI for one case.
type testSpool struct {
	bin, dir string
}

func (s *testSpool) path(p ...string) string { return filepath.Join(append([]string{s.dir}, p...)...) }

// exists reports whether the spool's file p exists (not following a symlink).
func (s *testSpool) exists(t *testing.T, p string) bool {
	t.Helper()
	_, err := os.Lstat(s.path(p))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

// wantFiles fails unless exactly the files of want exist among those of p.
func (s *testSpool) wantFiles(t *testing.T, want []string, p ...string) {
	t.Helper()
	for _, f := range p {
		if got := s.exists(t, f); got != slices.Contains(want, f) {
			t.Errorf("%s exists: %v, want %v", f, got, !got)
		}
	}
}

// quarantined checks that NAME is a whole entry of the quarantine queue
// with a payload of size bytes, and is nowhere else.
func (s *testSpool) quarantined(t *testing.T, name string, size int64) {
	t.Helper()
	s.wantFiles(t, []string{"quarantine/" + name, ".registry/" + name, ".data/" + name},
		"quarantine/"+name, ".registry/"+name, ".data/"+name, ".tmp/"+name, "work/"+name, "work/.checkout/"+name, "other/"+name)
	if fi, err := os.Stat(s.path(".data", name)); err == nil && fi.Size() != size {
		t.Errorf(".data/%s is %d bytes, want %d", name, fi.Size(), size)
	}
}

// enqueue adds an entry to work and returns its name.
func (s *testSpool) enqueue(t *testing.T) string {
	t.Helper()
	return strings.TrimSpace(cli(t, s.bin, "payload\n", "enqueue", s.dir, "work", "--metadata", "m", "--data-file", "-"))
}

// age sets the mtimes of the spool's files p to 20 minutes ago, older than
// the default tmp and checkout limits (10m).
func (s *testSpool) age(t *testing.T, p ...string) {
	t.Helper()
	old := time.Now().Add(-20 * time.Minute)
	for _, f := range p {
		if err := os.Chtimes(s.path(f), old, old); err != nil {
			t.Fatal(err)
		}
	}
}

func (s *testSpool) checkout(t *testing.T, name string) {
	t.Helper()
	if err := os.Rename(s.path("work", name), s.path("work", ".checkout", name)); err != nil {
		t.Fatal(err)
	}
}

func (s *testSpool) write(t *testing.T, p, content string) {
	t.Helper()
	writeFile(t, s.path(p), content)
}

func (s *testSpool) remove(t *testing.T, p string) {
	t.Helper()
	if err := os.Remove(s.path(p)); err != nil {
		t.Fatal(err)
	}
}

func (s *testSpool) mkdir(t *testing.T, p string) {
	t.Helper()
	if err := os.Mkdir(s.path(p), 0o755); err != nil {
		t.Fatal(err)
	}
}

func (s *testSpool) symlink(t *testing.T, p string) {
	t.Helper()
	if err := os.Symlink("nowhere", s.path(p)); err != nil {
		t.Fatal(err)
	}
}

// unfinishedEnqueue leaves what a producer killed mid-enqueue leaves:
// .registry/NAME, a partial payload, and with tmp its metadata in .tmp.
func unfinishedEnqueue(data, tmp bool) func(*testing.T, *testSpool) map[string]string {
	return func(t *testing.T, s *testSpool) map[string]string {
		name := "20261130T120000.000000000Z-00000001-0000000000000001"
		files := []string{".registry/" + name}
		s.write(t, files[0], "")
		if data {
			files = append(files, ".data/"+name)
			s.write(t, files[1], "the first half of a pay")
		}
		if tmp {
			files = append(files, ".tmp/"+name)
			s.write(t, files[len(files)-1], "metadata")
		}
		s.age(t, files...)
		return map[string]string{"NAME": name}
	}
}

// rolledBack checks that nothing is left of NAME.
func rolledBack(t *testing.T, s *testSpool, vars map[string]string, _ string) {
	n := vars["NAME"]
	s.wantFiles(t, nil, ".registry/"+n, ".data/"+n, ".tmp/"+n, "work/"+n, "quarantine/"+n)
}

// waiting checks that NAME is a whole entry waiting in work, and nowhere else.
func waiting(t *testing.T, s *testSpool, vars map[string]string, _ string) {
	n := vars["NAME"]
	s.wantFiles(t, []string{"work/" + n, ".registry/" + n, ".data/" + n},
		"work/"+n, ".registry/"+n, ".data/"+n, "work/.checkout/"+n, "other/"+n, "quarantine/"+n)
}

// quarantinedEmpty checks that NAME is in quarantine with an empty payload.
func quarantinedEmpty(t *testing.T, s *testSpool, vars map[string]string, _ string) {
	s.quarantined(t, vars["NAME"], 0)
}

var splitRE = regexp.MustCompile(`(?m)^done split (work|other)/(\S+) as quarantine/(\S+):`)

var runbookCases = []runbookCase{
	{name: "tmp leftover of a save", block: "tmp-leftover", section: "spooltoooldfiles-dirtmp", kind: "too_old", dir: "tmp",
		build: func(t *testing.T, s *testSpool) map[string]string {
			n := s.enqueue(t)
			f := n + ".tmp.QwErTy"
			s.write(t, ".tmp/"+f, "half a metadata save")
			s.age(t, ".tmp/"+f)
			return map[string]string{"FILE": f, "NAME": n}
		},
		after: func(t *testing.T, s *testSpool, vars map[string]string, out string) {
			s.wantFiles(t, nil, ".tmp/"+vars["FILE"])
			waiting(t, s, vars, out)
		}},
	{name: "leftover copy of an entry's metadata", block: "tmp-leftover", section: "spooltoooldfiles-dirtmp", kind: "too_old", dir: "tmp",
		build: func(t *testing.T, s *testSpool) map[string]string {
			n := s.enqueue(t)
			s.write(t, ".tmp/"+n, "m")
			s.age(t, ".tmp/"+n)
			return map[string]string{"FILE": n, "NAME": n}
		},
		after: func(t *testing.T, s *testSpool, vars map[string]string, out string) {
			s.wantFiles(t, nil, ".tmp/"+vars["NAME"])
			waiting(t, s, vars, out)
		}},
	{name: "producer killed after writing the metadata", block: "unfinished-enqueue", section: "spoolorphanedfiles-dirregistry",
		kind: "too_old", dir: "tmp", build: unfinishedEnqueue(true, true), after: rolledBack},
	{name: "entry waiting too long", block: "park-waiting", section: "spooltoooldfiles-dirqueue", kind: "too_old", dir: "queue",
		fsck: []string{"--max-queue-age", "work=1h"}, leftAlone: true,
		build: func(t *testing.T, s *testSpool) map[string]string {
			n := s.enqueue(t)
			old := time.Now().Add(-2 * time.Hour)
			if err := os.Chtimes(s.path("work", n), old, old); err != nil {
				t.Fatal(err)
			}
			return map[string]string{"NAME": n}
		},
		after: func(t *testing.T, s *testSpool, vars map[string]string, _ string) {
			s.quarantined(t, vars["NAME"], int64(len("payload\n")))
		}},
	{name: "stale checkout seen with the agent's limits", block: "repair-agent-limits", section: "the-agents-problem-alerts",
		kind: "too_old", dir: "checkout", fsck: []string{"--max-checked-out-age", "1m", "--max-tmp-file-age", "2m"},
		build: func(t *testing.T, s *testSpool) map[string]string {
			n := s.enqueue(t)
			s.checkout(t, n)
			old := time.Now().Add(-5 * time.Minute)
			if err := os.Chtimes(s.path("work", ".checkout", n), old, old); err != nil {
				t.Fatal(err)
			}
			if p := fsck(t, s.bin, s.dir); len(p) != 0 {
				t.Fatalf("with the default limits fsck finds %+v, want nothing", p)
			}
			cfg := filepath.Join(filepath.Dir(s.dir), "agent.yml")
			writeFile(t, cfg, "spools:\n  mail:\n    dir: "+s.dir+"\n    max-checked-out-age: 1m\n    max-tmp-file-age: 2m\n")
			return map[string]string{"FILE": cfg, "SPOOL": "mail", "NAME": n}
		},
		after: waiting},
	{name: "stale checkout", block: "recover", section: "spooltoooldfiles-dircheckout", kind: "too_old", dir: "checkout",
		build: func(t *testing.T, s *testSpool) map[string]string {
			n := s.enqueue(t)
			s.checkout(t, n)
			s.age(t, "work/.checkout/"+n)
			return map[string]string{"NAME": n}
		},
		after: waiting},
	{name: "producer killed while writing the payload", block: "unfinished-enqueue", section: "spoolorphanedfiles-dirregistry",
		kind: "orphaned", dir: "registry", build: unfinishedEnqueue(true, false), after: rolledBack},
	{name: "producer killed after reserving the name", block: "unfinished-enqueue", section: "spoolorphanedfiles-dirregistry",
		kind: "orphaned", dir: "registry", build: unfinishedEnqueue(false, false), after: rolledBack},
	{name: "remove stopped after the queue file", block: "unfinished-enqueue", section: "spoolorphanedfiles-dirregistry",
		kind: "orphaned", dir: "registry",
		build: func(t *testing.T, s *testSpool) map[string]string {
			n := s.enqueue(t)
			s.remove(t, "work/"+n)
			s.age(t, ".registry/"+n, ".data/"+n)
			return map[string]string{"NAME": n}
		},
		after: rolledBack},
	{name: "tmp file without reservation", block: "tmp-orphan", section: "spoolorphanedfiles-dirtmp", kind: "orphaned", dir: "tmp",
		build: func(t *testing.T, s *testSpool) map[string]string {
			s.write(t, ".tmp/gone.tmp.AbCdEf", "x")
			s.age(t, ".tmp/gone.tmp.AbCdEf")
			return map[string]string{"FILE": "gone.tmp.AbCdEf"}
		},
		after: func(t *testing.T, s *testSpool, _ map[string]string, _ string) {
			s.wantFiles(t, nil, ".tmp/gone.tmp.AbCdEf", "quarantine/gone.tmp.AbCdEf")
		}},
	{name: "metadata in .tmp with neither reservation nor entry", block: "tmp-orphan", section: "spoolorphanedfiles-dirtmp",
		kind: "orphaned", dir: "tmp", then: "drop-adopted",
		build: func(t *testing.T, s *testSpool) map[string]string {
			s.write(t, ".tmp/stray", "metadata")
			s.age(t, ".tmp/stray")
			return map[string]string{"FILE": "stray", "NAME": "stray"}
		},
		after: func(t *testing.T, s *testSpool, vars map[string]string, _ string) {
			s.quarantined(t, "stray", 0)
		}},
	{name: "payload without reservation", block: "data-orphan", section: "spoolorphanedfiles-dirdata", kind: "orphaned", dir: "data",
		build: func(t *testing.T, s *testSpool) map[string]string {
			s.write(t, ".data/gone.tmp.AbCdEf", "x")
			s.age(t, ".data/gone.tmp.AbCdEf")
			return map[string]string{"FILE": "gone.tmp.AbCdEf"}
		},
		after: func(t *testing.T, s *testSpool, _ map[string]string, _ string) {
			s.wantFiles(t, nil, ".data/gone.tmp.AbCdEf", "quarantine/gone.tmp.AbCdEf")
		}},
	{name: "payload in .data with neither reservation nor entry", block: "data-orphan", section: "spoolorphanedfiles-dirdata",
		kind: "orphaned", dir: "data", then: "drop-adopted",
		build: func(t *testing.T, s *testSpool) map[string]string {
			s.write(t, ".data/stray", "a payload")
			s.age(t, ".data/stray")
			return map[string]string{"FILE": "stray", "NAME": "stray"}
		},
		after: func(t *testing.T, s *testSpool, vars map[string]string, _ string) {
			s.quarantined(t, "stray", int64(len("a payload")))
		}},
	{name: "queue file without reservation", block: "reregister", section: "spoolorphanedfiles-dirqueue", kind: "orphaned", dir: "queue",
		build: func(t *testing.T, s *testSpool) map[string]string {
			n := s.enqueue(t)
			s.remove(t, ".registry/"+n)
			s.age(t, "work/"+n, ".data/"+n)
			return map[string]string{"NAME": n}
		},
		after: waiting},
	{name: "queue file without reservation or payload", block: "reregister", section: "spoolorphanedfiles-dirqueue", kind: "orphaned", dir: "queue",
		build: func(t *testing.T, s *testSpool) map[string]string {
			n := s.enqueue(t)
			s.remove(t, ".registry/"+n)
			s.remove(t, ".data/"+n)
			s.age(t, "work/"+n)
			return map[string]string{"NAME": n}
		},
		after: quarantinedEmpty},
	{name: "checkout without reservation", block: "reregister-checkout", section: "spoolorphanedfiles-dircheckout", kind: "orphaned", dir: "checkout",
		build: func(t *testing.T, s *testSpool) map[string]string {
			n := s.enqueue(t)
			s.checkout(t, n)
			s.remove(t, ".registry/"+n)
			s.age(t, "work/.checkout/"+n, ".data/"+n)
			return map[string]string{"NAME": n}
		},
		after: waiting},
	{name: "entry in two queues", block: "duplicate", section: "spoolduplicatedentries", kind: "duplicated", dir: "registry",
		then: "duplicate-compare",
		build: func(t *testing.T, s *testSpool) map[string]string {
			n := s.enqueue(t)
			s.write(t, "other/"+n, "m")
			s.age(t, "work/"+n, "other/"+n, ".data/"+n, ".registry/"+n)
			return map[string]string{"NAME": n, "OTHER": "other"}
		},
		after: func(t *testing.T, s *testSpool, vars map[string]string, out string) {
			m := splitRE.FindStringSubmatch(out)
			if m == nil || m[2] != vars["NAME"] {
				t.Fatalf("repair printed no \"done split QUEUE/%s as quarantine/NEW\":\n%s", vars["NAME"], out)
			}
			n, kept := vars["NAME"], "work"
			if m[1] == "work" {
				kept = "other"
			}
			s.wantFiles(t, []string{kept + "/" + n, ".registry/" + n, ".data/" + n}, "work/"+n, "other/"+n, ".registry/"+n, ".data/"+n)
			s.quarantined(t, m[3], int64(len("payload\n")))
			vars["NEW"] = m[3]
		}},
	{name: "waiting entry without payload", block: "missing-data", section: "spoolmissingdata-dirqueue", kind: "missing_data", dir: "queue",
		build: func(t *testing.T, s *testSpool) map[string]string {
			n := s.enqueue(t)
			s.remove(t, ".data/"+n)
			s.age(t, "work/"+n, ".registry/"+n)
			return map[string]string{"NAME": n}
		},
		after: quarantinedEmpty},
	{name: "checked-out entry without payload", block: "missing-data-checkout", section: "spoolmissingdata-dircheckout", kind: "missing_data", dir: "checkout",
		build: func(t *testing.T, s *testSpool) map[string]string {
			n := s.enqueue(t)
			s.checkout(t, n)
			s.remove(t, ".data/"+n)
			s.age(t, "work/.checkout/"+n, ".registry/"+n)
			return map[string]string{"NAME": n}
		},
		after: quarantinedEmpty},
	{name: "directory in .registry", block: "unexpected-registry", section: "spoolunexpectedfiles-dirregistry", kind: "unexpected", leftAlone: true, dir: "registry",
		build: func(t *testing.T, s *testSpool) map[string]string {
			s.mkdir(t, ".registry/adir")
			return map[string]string{"THING": ".registry/adir"}
		}},
	{name: "directory in .tmp", block: "unexpected-tmp", section: "spoolunexpectedfiles-dirtmp", kind: "unexpected", leftAlone: true, dir: "tmp",
		build: func(t *testing.T, s *testSpool) map[string]string {
			s.mkdir(t, ".tmp/adir")
			return map[string]string{"THING": ".tmp/adir"}
		}},
	{name: "symlink in .data", block: "unexpected-data", section: "spoolunexpectedfiles-dirdata", kind: "unexpected", leftAlone: true, dir: "data",
		build: func(t *testing.T, s *testSpool) map[string]string {
			s.symlink(t, ".data/alink")
			return map[string]string{"THING": ".data/alink"}
		}},
	{name: "symlink in a queue", block: "unexpected-queue", section: "spoolunexpectedfiles-dirqueue", kind: "unexpected", leftAlone: true, dir: "queue",
		build: func(t *testing.T, s *testSpool) map[string]string {
			s.symlink(t, "work/alink")
			return map[string]string{"THING": "work/alink"}
		}},
	{name: "directory in a checkout", block: "unexpected-checkout", section: "spoolunexpectedfiles-dircheckout", kind: "unexpected", leftAlone: true, dir: "checkout",
		build: func(t *testing.T, s *testSpool) map[string]string {
			s.mkdir(t, "work/.checkout/adir")
			return map[string]string{"THING": "work/.checkout/adir"}
		}},
	{name: "queue made by hand", block: "queue-by-hand", section: "spoolunexpectedfiles-dirroot", kind: "unexpected", leftAlone: true, dir: "root",
		build: func(t *testing.T, s *testSpool) map[string]string {
			s.mkdir(t, "handmade")
			return map[string]string{"THING": "handmade"}
		}},
	{name: "symlink at the top", block: "unexpected-root", section: "spoolunexpectedfiles-dirroot", kind: "unexpected", leftAlone: true, dir: "root",
		build: func(t *testing.T, s *testSpool) map[string]string {
			s.symlink(t, "alink")
			return map[string]string{"THING": "alink"}
		}},
}

// untestedFixes are the runbook sections of problems that no fsck can show,
// so no case can check a fix by fsck coming clean, with the reason.
var untestedFixes = map[string]string{
	// fsck and repair are one-shot and unbounded (the monitor's bounds are
	// the running agent's): they never report limit, and show a flood as
	// the orphaned and unexpected problems of its files, whose fixes are
	// tested above.
	RunbookAnchor("SpoolMonitorLimitReached", "unregistered"): "fsck has no --max-unregistered and never reports limit",
	RunbookAnchor("SpoolMonitorLimitReached", "queues"):       "fsck has no --max-queues and never reports limit",
	RunbookAnchor("SpoolMonitorLimitReached", "watches"):      "fsck watches nothing and never reports limit",
}

// TestRunbookCoversEveryProblem: every (kind, dir) the agent reports has
// its section with a tested fix, and every tested block has a case.
func TestRunbookCoversEveryProblem(t *testing.T) {
	blocks := runbookBlocks(t)
	where := map[string]string{}
	for _, b := range blocks {
		if _, dup := where[b.name]; dup {
			t.Errorf("RUNBOOK.md: two blocks test=%s", b.name)
		}
		where[b.name] = b.anchor
	}
	tested := map[string]bool{}
	for _, c := range runbookCases {
		a, ok := where[c.block]
		if !ok {
			t.Errorf("case %q: RUNBOOK.md has no block test=%s", c.name, c.block)
		} else if a != c.section {
			t.Errorf("case %q: block test=%s is in section #%s, want #%s", c.name, c.block, a, c.section)
		}
		tested[c.block] = true
		if c.then != "" {
			if _, ok := where[c.then]; !ok {
				t.Errorf("case %q: RUNBOOK.md has no block test=%s", c.name, c.then)
			}
			tested[c.then] = true
		}
	}
	for _, b := range blocks {
		if !tested[b.name] {
			t.Errorf("RUNBOOK.md block test=%s (in #%s) has no test case", b.name, b.anchor)
		}
	}
	sections := map[string]bool{}
	for _, c := range runbookCases {
		sections[c.section] = true
	}
	for alert, dirs := range ProblemDirs() {
		if len(dirs) == 1 {
			dirs = []string{""}
		}
		for _, d := range dirs {
			if why, ok := untestedFixes[RunbookAnchor(alert, d)]; ok {
				if sections[RunbookAnchor(alert, d)] {
					t.Errorf("%s dir=%s has a tested fix: take it out of untestedFixes (%s)", alert, d, why)
				}
				continue
			}
			if !sections[RunbookAnchor(alert, d)] {
				t.Errorf("%s dir=%s: no tested fix in section #%s", alert, d, RunbookAnchor(alert, d))
			}
		}
	}
}

// fsckProblem is a problem as `spool-agent fsck -o json` prints it.
type fsckProblem struct {
	Kind string `json:"kind"`
	Dir  string `json:"dir"`
	Name string `json:"name"`
}

// fsck runs `spool-agent fsck -o json` and returns its problems.
func fsck(t *testing.T, bin, dir string, args ...string) []fsckProblem {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"fsck", dir, "-o", "json"}, args...)...)
	cmd.Env = testkit.AgentEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 1) {
		t.Fatalf("spool-agent fsck %s: %v\n%s", dir, err, stderr.String())
	}
	var res struct {
		Problems []fsckProblem `json:"problems"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("spool-agent fsck -o json: %v\n%s", err, stdout.String())
	}
	if (err == nil) != (len(res.Problems) == 0) {
		t.Errorf("spool-agent fsck exited with %v and printed %d problems", err, len(res.Problems))
	}
	return res.Problems
}

// TestRunbookFixes builds each fault in a spool, runs the runbook's block
// for it as written (with the placeholders filled in, and the spool-agent
// built from this repository first on PATH), and checks that fsck, with
// the limits that showed the fault, comes clean.
func TestRunbookFixes(t *testing.T) {
	t.Parallel()
	sh := binary(t, "dash", "sh")
	tmp := t.TempDir()
	bin := testkit.BuildAgent(t, tmp)
	blocks := map[string]string{}
	for _, b := range runbookBlocks(t) {
		blocks[b.name] = b.script
	}
	for _, c := range runbookCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			root := t.TempDir()
			s := &testSpool{bin: bin, dir: filepath.Join(root, "spool")}
			cli(t, bin, "", "init", s.dir, "--queue", "work", "--queue", "other")
			vars := c.build(t, s)
			before := fsck(t, bin, s.dir, c.fsck...)
			if !slices.ContainsFunc(before, func(p fsckProblem) bool { return p.Kind == c.kind && p.Dir == c.dir }) {
				t.Fatalf("the fault is not a %s problem in %s: fsck found %+v", c.kind, c.dir, before)
			}
			keep := filepath.Join(root, "keep")
			if err := os.Mkdir(keep, 0o755); err != nil {
				t.Fatal(err)
			}
			if c.leftAlone {
				// The runbook says repair leaves this problem: it must.
				args := append([]string{"repair", s.dir, "--apply"}, c.fsck...)
				cmd := exec.Command(bin, args...)
				cmd.Env = testkit.AgentEnv()
				out, err := cmd.CombinedOutput()
				var exit *exec.ExitError
				if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), "leave "+c.kind+" ") {
					t.Errorf("spool-agent repair --apply on a %s problem in %s: %v, want exit 1 and a leave line\n%s", c.kind, c.dir, err, out)
				}
				if after := fsck(t, bin, s.dir, c.fsck...); !slices.Equal(after, before) {
					t.Errorf("repair changed what fsck reports: %+v, before %+v", after, before)
				}
			}
			values := map[string]string{"DIR": s.dir, "KEEP": keep, "QUEUE": "work"}
			for k, v := range vars {
				values[k] = v
			}
			out := runBlock(t, sh, root, bin, c.block, blocks[c.block], values)
			if after := fsck(t, bin, s.dir, c.fsck...); len(after) != 0 {
				t.Errorf("after the runbook's fix %s, fsck still finds %+v", c.block, after)
			}
			if c.after != nil {
				c.after(t, s, values, out)
			}
			if c.then != "" {
				runBlock(t, sh, root, bin, c.then, blocks[c.then], values)
				if after := fsck(t, bin, s.dir, c.fsck...); len(after) != 0 {
					t.Errorf("after the runbook's block %s, fsck still finds %+v", c.then, after)
				}
			}
		})
	}
}

var placeholderRE = regexp.MustCompile(`\b(DIR|KEEP|QUEUE|OTHER|NAME|NEW|FILE|THING|SPOOL)\b`)

// runBlock runs a block of the runbook with sh -e in dir, with its
// placeholders filled in from values and the spool-agent bin first on
// PATH, and returns its output; it fails the test if the block fails.
func runBlock(t *testing.T, sh, dir, bin, name, block string, values map[string]string) string {
	t.Helper()
	script := placeholderRE.ReplaceAllStringFunc(block, func(w string) string {
		v, ok := values[w]
		if !ok {
			t.Fatalf("block test=%s uses %s, which its case does not set", name, w)
		}
		return "'" + strings.ReplaceAll(v, "'", `'\''`) + "'"
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, sh, "-e", "-c", script)
	cmd.Dir = dir
	cmd.Env = append(testkit.AgentEnv(), "PATH="+filepath.Dir(bin)+string(os.PathListSeparator)+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the runbook's block test=%s failed: %v\n%s\n%s", name, err, script, out)
	}
	return string(out)
}

// TestAlertTextCommandsWork runs the command each alert text gives to look
// at the spool, as generated with agentConfig and with spoolDir, against a
// spool named by an agent configuration file: each must run (exit 0, or 1
// for fsck finding problems).
func TestAlertTextCommandsWork(t *testing.T) {
	t.Parallel()
	tmp := t.TempDir()
	bin := testkit.BuildAgent(t, tmp)
	spools := filepath.Join(tmp, "spools")
	dir := filepath.Join(spools, "mail")
	if err := os.Mkdir(spools, 0o755); err != nil {
		t.Fatal(err)
	}
	cli(t, bin, "", "init", dir, "--queue", "work")
	agentConfig := filepath.Join(tmp, "agent.yml")
	writeFile(t, agentConfig, "spools:\n  mail:\n    dir: "+dir+"\n")

	lookRE := regexp.MustCompile(`Look: (spool-agent .*?) on \{\{ \$labels\.instance \}\}\.`)
	labels := strings.NewReplacer("{{ $labels.spool }}", "mail", "{{ $labels.queue }}", "work")
	for _, cfg := range []Config{
		func() Config { c := DefaultConfig(); c.AgentConfig = agentConfig; return c }(),
		func() Config { c := DefaultConfig(); c.SpoolDir = spools + "/{spool}"; return c }(),
	} {
		rf, err := Rules(cfg)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, r := range rf.Groups[1].Rules {
			m := lookRE.FindStringSubmatch(r.Annotations["description"])
			if m == nil {
				if !strings.HasPrefix(r.Alert, "SpoolAgent") { // of the agent, not of a spool
					t.Errorf("%s: no command to look in %q", r.Alert, r.Annotations["description"])
				}
				continue
			}
			command := labels.Replace(m[1])
			if seen[command] {
				continue
			}
			seen[command] = true
			args := strings.Fields(command)[1:]
			cmd := exec.Command(bin, args...)
			cmd.Env = testkit.AgentEnv()
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if err != nil && !(args[0] == "fsck" && errors.As(err, &exit) && exit.ExitCode() == 1) {
				t.Errorf("%s gives %q, which fails: %v\n%s", r.Alert, command, err, out)
			}
		}
		if len(seen) < 3 {
			t.Errorf("only %d distinct commands: %v", len(seen), seen)
		}
	}
}

// rawSpoolCommand says why a shell command line changes a spool by hand
// (DIR, the spool's directory, is where it writes), or "" if it does not:
// rm, rmdir, unlink, find, touch, truncate, mv or ln naming a path in DIR,
// cp or install into DIR, or a redirection (`: >`, `>`, `>>`, tee) into
// DIR. `spool-agent` commands, and reading (ls, cat, cp out of DIR, cmp),
// are fine.
func rawSpoolCommand(line string) string {
	inDir := func(w string) bool {
		w = strings.Trim(w, `"'()`)
		return w == "DIR" || strings.HasPrefix(w, "DIR/")
	}
	for _, cmd := range regexp.MustCompile(`&&|\|\||[;|]|\$\(|\bthen\b|\bdo\b|\belse\b`).Split(line, -1) {
		words := strings.Fields(cmd)
		for len(words) > 0 && slices.Contains([]string{"sudo", "if", "!", "(", "{", "-n", "[", "command", "xargs"}, words[0]) {
			words = words[1:]
		}
		for i, w := range words {
			if strings.HasPrefix(w, ">") {
				target := strings.TrimLeft(w, ">")
				if target == "" && i+1 < len(words) {
					target = words[i+1]
				}
				if inDir(target) {
					return "redirects into the spool"
				}
			}
		}
		if len(words) == 0 {
			continue
		}
		switch words[0] {
		case "rm", "rmdir", "unlink", "find", "touch", "truncate", "mv", "ln":
			if slices.ContainsFunc(words[1:], inDir) {
				return words[0] + " inside the spool"
			}
		case "cp", "install", "tee":
			if inDir(words[len(words)-1]) {
				return words[0] + " into the spool"
			}
		}
	}
	return ""
}

func TestRawSpoolCommand(t *testing.T) {
	for _, tc := range []struct {
		line string
		raw  bool
	}{
		{"rm -f DIR/.registry/NAME DIR/.data/NAME DIR/.tmp/NAME", true},
		{"find DIR/.tmp/FILE -mmin +10 -delete", true},
		{`if [ -n "$(find DIR/.registry/NAME -mmin +10)" ]; then`, true},
		{"test -f DIR/.data/NAME && touch DIR/.registry/NAME", true},
		{": > DIR/.data/NAME", true},
		{"echo x >>DIR/.data/NAME", true},
		{"mv DIR/OTHER/NAME KEEP/", true},
		{"sudo mv DIR/THING KEEP/", true},
		{"cp BACKUP/NAME DIR/.data/NAME", true},
		{"spool-agent rm DIR NAME", false},
		{"spool-agent mv DIR NAME --to quarantine", false},
		{"spool-agent repair DIR --apply", false},
		{"cp DIR/.data/NAME KEEP/", false},
		{"ls -l DIR/.registry/NAME DIR/.data/NAME DIR/.tmp/NAME", false},
		{"cmp DIR/QUEUE/NAME DIR/OTHER/NAME", false},
		{"mkdir -p /var/tmp/spool-keep", false},
		{"rm", false},
	} {
		if got := rawSpoolCommand(tc.line) != ""; got != tc.raw {
			t.Errorf("rawSpoolCommand(%q) = %v, want %v", tc.line, got, tc.raw)
		}
	}
}

// TestRunbookNoRawCommandsInSpool: no command of RUNBOOK.md (in a fenced
// or indented block, or inline code) removes, moves, creates or truncates a
// file inside a spool by hand; the spool-agent commands do it, claiming
// first. The one exception is the manual step for unexpected files, which
// no spool-agent command touches: `mv DIR/THING KEEP/`, in a block marked
// manual in a SpoolUnexpectedFiles section.
func TestRunbookNoRawCommandsInSpool(t *testing.T) {
	b, err := os.ReadFile("RUNBOOK.md")
	if err != nil {
		t.Fatal(err)
	}
	inline := regexp.MustCompile("`([^`]+)`")
	check := func(line int, c string, allowed bool) {
		if why := rawSpoolCommand(c); why != "" && !allowed {
			t.Errorf("RUNBOOK.md:%d: %q: %s by hand; use spool-agent repair, rm or mv", line, c, why)
		}
	}
	// Inline code may wrap: a paragraph's text is scanned as one line.
	var para []string
	paraLine := 0
	flush := func() {
		for _, m := range inline.FindAllStringSubmatch(strings.Join(para, " "), -1) {
			check(paraLine, m[1], false)
		}
		para = nil
	}
	fence, manual, anchor := false, false, ""
	for i, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(line, "```"):
			flush()
			fence = !fence
			m := fenceRE.FindStringSubmatch(line)
			manual = fence && m != nil && m[2] != ""
			if manual && !strings.HasPrefix(anchor, "spoolunexpectedfiles-") {
				t.Errorf("RUNBOOK.md:%d: a manual block outside the SpoolUnexpectedFiles sections (in #%s)", i+1, anchor)
			}
		case fence:
			check(i+1, line, manual && strings.TrimSpace(line) == "mv DIR/THING KEEP/")
		case strings.HasPrefix(line, "    ") && len(para) == 0:
			check(i+1, line, false)
		case strings.TrimSpace(line) == "" || headerRE.MatchString(line):
			flush()
			for a := range markdownAnchors(line) {
				anchor = a
			}
		default:
			if len(para) == 0 {
				paraLine = i + 1
			}
			para = append(para, line)
		}
	}
	flush()
}

package alertrules

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// runbookBlock is a fenced block of RUNBOOK.md marked for testing
// (```sh test=NAME), with the anchor of the section it sits in.
type runbookBlock struct {
	name, anchor, script string
}

var (
	fenceRE  = regexp.MustCompile("^```sh test=([a-z0-9-]+)\\s*$")
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
			cur = &runbookBlock{name: fenceRE.FindStringSubmatch(line)[1], anchor: anchor}
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
}

// testSpool is a spool made with the CLI for one case.
type testSpool struct {
	bin, dir string
}

func (s *testSpool) path(p ...string) string { return filepath.Join(append([]string{s.dir}, p...)...) }

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

var runbookCases = []runbookCase{
	{name: "tmp leftover of a save", block: "tmp-leftover", section: "spooltoooldfiles-dirtmp", kind: "too_old", dir: "tmp",
		build: func(t *testing.T, s *testSpool) map[string]string {
			f := s.enqueue(t) + ".tmp.QwErTy"
			s.write(t, ".tmp/"+f, "half a metadata save")
			s.age(t, ".tmp/"+f)
			return map[string]string{"FILE": f}
		}},
	{name: "producer killed after writing the metadata", block: "unfinished-enqueue", section: "spoolorphanedfiles-dirregistry",
		kind: "too_old", dir: "tmp", build: unfinishedEnqueue(true, true)},
	{name: "entry waiting too long", block: "park-waiting", section: "spooltoooldfiles-dirqueue", kind: "too_old", dir: "queue",
		fsck: []string{"--max-queue-age", "work=1h"},
		build: func(t *testing.T, s *testSpool) map[string]string {
			n := s.enqueue(t)
			old := time.Now().Add(-2 * time.Hour)
			if err := os.Chtimes(s.path("work", n), old, old); err != nil {
				t.Fatal(err)
			}
			return map[string]string{"NAME": n}
		}},
	{name: "stale checkout", block: "recover", section: "spooltoooldfiles-dircheckout", kind: "too_old", dir: "checkout",
		build: func(t *testing.T, s *testSpool) map[string]string {
			n := s.enqueue(t)
			s.checkout(t, n)
			s.age(t, "work/.checkout/"+n)
			return nil
		}},
	{name: "producer killed while writing the payload", block: "unfinished-enqueue", section: "spoolorphanedfiles-dirregistry",
		kind: "orphaned", dir: "registry", build: unfinishedEnqueue(true, false)},
	{name: "producer killed after reserving the name", block: "unfinished-enqueue", section: "spoolorphanedfiles-dirregistry",
		kind: "orphaned", dir: "registry", build: unfinishedEnqueue(false, false)},
	{name: "remove stopped after the queue file", block: "unfinished-enqueue", section: "spoolorphanedfiles-dirregistry",
		kind: "orphaned", dir: "registry",
		build: func(t *testing.T, s *testSpool) map[string]string {
			n := s.enqueue(t)
			s.remove(t, "work/"+n)
			s.age(t, ".registry/"+n, ".data/"+n)
			return map[string]string{"NAME": n}
		}},
	{name: "tmp file without reservation", block: "tmp-orphan", section: "spoolorphanedfiles-dirtmp", kind: "orphaned", dir: "tmp",
		build: func(t *testing.T, s *testSpool) map[string]string {
			s.write(t, ".tmp/gone.tmp.AbCdEf", "x")
			s.age(t, ".tmp/gone.tmp.AbCdEf")
			return map[string]string{"FILE": "gone.tmp.AbCdEf"}
		}},
	{name: "payload without reservation", block: "data-orphan", section: "spoolorphanedfiles-dirdata", kind: "orphaned", dir: "data",
		build: func(t *testing.T, s *testSpool) map[string]string {
			s.write(t, ".data/gone.tmp.AbCdEf", "x")
			s.age(t, ".data/gone.tmp.AbCdEf")
			return map[string]string{"FILE": "gone.tmp.AbCdEf"}
		}},
	{name: "queue file without reservation", block: "reregister", section: "spoolorphanedfiles-dirqueue", kind: "orphaned", dir: "queue",
		build: func(t *testing.T, s *testSpool) map[string]string {
			n := s.enqueue(t)
			s.remove(t, ".registry/"+n)
			return map[string]string{"NAME": n}
		}},
	{name: "checkout without reservation", block: "reregister-checkout", section: "spoolorphanedfiles-dircheckout", kind: "orphaned", dir: "checkout",
		build: func(t *testing.T, s *testSpool) map[string]string {
			n := s.enqueue(t)
			s.checkout(t, n)
			s.remove(t, ".registry/"+n)
			return map[string]string{"NAME": n}
		}},
	{name: "entry in two queues", block: "duplicate", section: "spoolduplicatedentries", kind: "duplicated", dir: "registry",
		build: func(t *testing.T, s *testSpool) map[string]string {
			n := s.enqueue(t)
			s.write(t, "other/"+n, "m")
			return map[string]string{"NAME": n, "OTHER": "other"}
		}},
	{name: "waiting entry without payload", block: "missing-data", section: "spoolmissingdata-dirqueue", kind: "missing_data", dir: "queue",
		build: func(t *testing.T, s *testSpool) map[string]string {
			n := s.enqueue(t)
			s.remove(t, ".data/"+n)
			return map[string]string{"NAME": n}
		}},
	{name: "checked-out entry without payload", block: "missing-data-checkout", section: "spoolmissingdata-dircheckout", kind: "missing_data", dir: "checkout",
		build: func(t *testing.T, s *testSpool) map[string]string {
			n := s.enqueue(t)
			s.checkout(t, n)
			s.remove(t, ".data/"+n)
			s.age(t, "work/.checkout/"+n)
			return map[string]string{"NAME": n}
		}},
	{name: "directory in .registry", block: "unexpected-registry", section: "spoolunexpectedfiles-dirregistry", kind: "unexpected", dir: "registry",
		build: func(t *testing.T, s *testSpool) map[string]string {
			s.mkdir(t, ".registry/adir")
			return map[string]string{"THING": ".registry/adir"}
		}},
	{name: "directory in .tmp", block: "unexpected-tmp", section: "spoolunexpectedfiles-dirtmp", kind: "unexpected", dir: "tmp",
		build: func(t *testing.T, s *testSpool) map[string]string {
			s.mkdir(t, ".tmp/adir")
			return map[string]string{"THING": ".tmp/adir"}
		}},
	{name: "symlink in .data", block: "unexpected-data", section: "spoolunexpectedfiles-dirdata", kind: "unexpected", dir: "data",
		build: func(t *testing.T, s *testSpool) map[string]string {
			s.symlink(t, ".data/alink")
			return map[string]string{"THING": ".data/alink"}
		}},
	{name: "symlink in a queue", block: "unexpected-queue", section: "spoolunexpectedfiles-dirqueue", kind: "unexpected", dir: "queue",
		build: func(t *testing.T, s *testSpool) map[string]string {
			s.symlink(t, "work/alink")
			return map[string]string{"THING": "work/alink"}
		}},
	{name: "directory in a checkout", block: "unexpected-checkout", section: "spoolunexpectedfiles-dircheckout", kind: "unexpected", dir: "checkout",
		build: func(t *testing.T, s *testSpool) map[string]string {
			s.mkdir(t, "work/.checkout/adir")
			return map[string]string{"THING": "work/.checkout/adir"}
		}},
	{name: "queue made by hand", block: "queue-by-hand", section: "spoolunexpectedfiles-dirroot", kind: "unexpected", dir: "root",
		build: func(t *testing.T, s *testSpool) map[string]string {
			s.mkdir(t, "handmade")
			return map[string]string{"THING": "handmade"}
		}},
	{name: "symlink at the top", block: "unexpected-root", section: "spoolunexpectedfiles-dirroot", kind: "unexpected", dir: "root",
		build: func(t *testing.T, s *testSpool) map[string]string {
			s.symlink(t, "alink")
			return map[string]string{"THING": "alink"}
		}},
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
	cmd.Env = cleanEnv()
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
	bin := buildAgent(t, tmp)
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
			values := map[string]string{"DIR": s.dir, "KEEP": keep, "QUEUE": "work"}
			for k, v := range vars {
				values[k] = v
			}
			script := regexp.MustCompile(`\b(DIR|KEEP|QUEUE|OTHER|NAME|FILE|THING)\b`).ReplaceAllStringFunc(blocks[c.block], func(w string) string {
				v, ok := values[w]
				if !ok {
					t.Fatalf("block test=%s uses %s, which case %q does not set", c.block, w, c.name)
				}
				return "'" + strings.ReplaceAll(v, "'", `'\''`) + "'"
			})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, sh, "-e", "-c", script)
			cmd.Dir = root
			cmd.Env = append(cleanEnv(), "PATH="+filepath.Dir(bin)+string(os.PathListSeparator)+os.Getenv("PATH"))
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("the runbook's fix failed: %v\n%s\n%s", err, script, out)
			}
			if after := fsck(t, bin, s.dir, c.fsck...); len(after) != 0 {
				t.Errorf("after the runbook's fix\n%sfsck still finds %+v", script, after)
			}
		})
	}
}

// TestAlertTextCommandsWork runs the command each alert text gives to look
// at the spool, as generated with agentConfig and with spoolDir, against a
// spool named by an agent configuration file: each must run (exit 0, or 1
// for fsck finding problems).
func TestAlertTextCommandsWork(t *testing.T) {
	t.Parallel()
	tmp := t.TempDir()
	bin := buildAgent(t, tmp)
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
				if r.Alert != "SpoolAgentDown" && r.Alert != "SpoolAgentAbsent" {
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
			cmd.Env = cleanEnv()
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

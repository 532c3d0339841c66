package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spool-agent/spool-agent/internal/testkit"
)

// lsNames runs ls with args and -o json and returns the names it lists,
// sorted, and its stderr.
func lsNames(t *testing.T, args ...string) ([]string, string) {
	t.Helper()
	r := cli(t, nil, "", append(append([]string{"ls"}, args...), "-o", "json")...)
	if r.code != 0 {
		t.Fatalf("ls %q: exit %d: %s", args, r.code, r.stderr)
	}
	var doc struct {
		Entries []entryJSON `json:"entries"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("ls %q: %v\n%s", args, err, r.stdout)
	}
	names := []string{}
	for _, e := range doc.Entries {
		names = append(names, e.Name)
	}
	slices.Sort(names)
	return names, r.stderr
}

// TestLsFilters checks each filter of ls and their combinations over the
// fixture (ages: a-new 2m, a-mid 15m, a-old 3h, a-held 30m checked out,
// f-ancient 48h, f-recent 30s).
func TestLsFilters(t *testing.T) {
	dir := fixtureSpool(t)
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"no filter", nil, []string{"a-mid", "a-new", "a-old", "f-ancient", "f-recent"}},
		{"older-than", []string{"--older-than", "10m"}, []string{"a-mid", "a-old", "f-ancient"}},
		{"older-than is strict", []string{"--older-than", "15m"}, []string{"a-old", "f-ancient"}},
		{"younger-than", []string{"--younger-than", "10m"}, []string{"a-new", "f-recent"}},
		{"younger-than is strict", []string{"--younger-than", "15m"}, []string{"a-new", "f-recent"}},
		{"age window", []string{"--older-than", "10m", "--younger-than", "1h"}, []string{"a-mid"}},
		{"empty age window", []string{"--older-than", "1h", "--younger-than", "10m"}, []string{}},
		{"match", []string{"--match", "alice@"}, []string{"a-new"}},
		{"match anchored", []string{"--match", `^\(`}, []string{"a-old"}},
		{"match with --all", []string{"--match", `^\(`, "--all"}, []string{"a-held", "a-old"}},
		{"match with --checked-out", []string{"--match", "Sprocket", "--checked-out"}, []string{"a-held"}},
		{"match with queue", []string{"frozen", "--match", "."}, []string{"f-ancient"}},
		{"match and age", []string{"--match", "^[a-z(]", "--older-than", "1h"}, []string{"a-old", "f-ancient"}},
		{"match none", []string{"--match", "nothing-like-this"}, []string{}},
		{"checked-out and age", []string{"--checked-out", "--older-than", "10m"}, []string{"a-held"}},
		{"checked-out and younger", []string{"--checked-out", "--younger-than", "10m"}, []string{}},
		// The metadata of a-mid has ESC, BEL, a byte 0xff and U+202E.
		{"binary: escape sequence", []string{"--match", `\x1b\[31mred\x1b\[0m bell\x07`}, []string{"a-mid"}},
		{"binary: bad byte as U+FFFD", []string{"--match", `bad\x{FFFD} rtl\x{202E}`}, []string{"a-mid"}},
		{"binary: any byte", []string{"--match", `(?s)bad. rtl`}, []string{"a-mid"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, stderr := lsNames(t, append([]string{dir}, tc.args...)...)
			if !slices.Equal(got, tc.want) {
				t.Errorf("ls %q = %q, want %q", tc.args, got, tc.want)
			}
			if stderr != "" {
				t.Errorf("stderr %q", stderr)
			}
		})
	}
}

// TestLsLimitCount checks --limit and --count, in text and JSON.
func TestLsLimitCount(t *testing.T) {
	dir := fixtureSpool(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"count", []string{"--count"}, "5\n"},
		{"count json", []string{"--count", "-o", "json"}, "{\"count\": 5}\n"},
		{"count all", []string{"--count", "--all"}, "6\n"},
		{"count filtered", []string{"--count", "--older-than", "10m"}, "3\n"},
		{"count filtered json", []string{"--count", "--match", "alice", "-o", "json"}, "{\"count\": 1}\n"},
		{"count none", []string{"outgoing", "--count"}, "0\n"},
		{"count none json", []string{"outgoing", "--count", "-o", "json"}, "{\"count\": 0}\n"},
		{"count limited", []string{"--count", "--limit", "2"}, "2\n"},
		{"count limit above", []string{"--count", "--limit", "100"}, "5\n"},
		{"count limited filtered", []string{"--count", "--limit", "2", "--older-than", "1h"}, "2\n"},
		{"count limited filtered below", []string{"--count", "--limit", "2", "--younger-than", "1m"}, "1\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := mustCLI(t, "", append([]string{"ls", dir}, tc.args...)...)
			if out != tc.want {
				t.Errorf("ls %q = %q, want %q", tc.args, out, tc.want)
			}
		})
	}

	t.Run("limit text", func(t *testing.T) {
		out := mustCLI(t, "", "ls", dir, "--limit", "2")
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME") {
			t.Errorf("ls --limit 2 = %q, want a header and two entries", out)
		}
	})
	t.Run("limit json", func(t *testing.T) {
		got, _ := lsNames(t, dir, "--limit", "2", "--older-than", "10m")
		all, _ := lsNames(t, dir, "--older-than", "10m")
		if len(got) != 2 || !slices.Contains(all, got[0]) || !slices.Contains(all, got[1]) {
			t.Errorf("ls --limit 2 --older-than 10m = %q, want two of %q", got, all)
		}
	})
	t.Run("unfiltered text unchanged", func(t *testing.T) {
		golden(t, "ls", dir, mustCLI(t, "", "ls", dir))
	})
}

// TestLsMatchOversized checks that --match skips, with one warning per
// entry, an entry whose metadata exceeds --max-metadata-size, including a
// sparse file claiming a terabyte (never read, never allocated).
func TestLsMatchOversized(t *testing.T) {
	dir := fixtureSpool(t)
	if err := os.Truncate(filepath.Join(dir, "frozen", "f-ancient"), 1<<40); err != nil {
		t.Fatal(err)
	}
	// a-new has 36 bytes of metadata and a-mid 48: above 30; a-old 7.
	r := cli(t, nil, "", "--max-metadata-size", "30", "ls", dir, "--match", ".", "-o", "json")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var doc struct{ Entries []entryJSON }
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || len(doc.Entries) != 1 || doc.Entries[0].Name != "a-old" {
		t.Errorf("entries %+v (%v), want a-old only", doc.Entries, err)
	}
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("stderr %q: want one warning for each of a-new, a-mid, f-ancient", r.stderr)
	}
	for _, n := range []string{"a-new", "a-mid", "f-ancient"} {
		if c := strings.Count(r.stderr, "skipped "+n+" "); c != 1 {
			t.Errorf("stderr names %s %d times, want once:\n%s", n, c, r.stderr)
		}
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "spool-agent: warning: skipped ") || !strings.Contains(l, "--max-metadata-size") {
			t.Errorf("warning %q", l)
		}
	}
	// Without --match nothing is read, so nothing is skipped.
	if r := cli(t, nil, "", "--max-metadata-size", "30", "ls", dir, "--count"); r.stdout != "5\n" || r.stderr != "" {
		t.Errorf("ls --count without --match: %+v", r)
	}
}

// TestLsFilterBadInput checks that bad filter values are usage errors.
func TestLsFilterBadInput(t *testing.T) {
	dir := fixtureSpool(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"bad regex", []string{"--match", "a("}, "--match"},
		{"negative limit", []string{"--limit", "-1"}, "--limit"},
		{"negative age", []string{"--older-than=-1m"}, "negative"},
		{"bad duration", []string{"--younger-than", "soon"}, "--younger-than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := cli(t, nil, "", append([]string{"ls", dir}, tc.args...)...)
			if r.code != exitUsage || r.stdout != "" {
				t.Errorf("exit %d, stdout %q; want exit %d and no output", r.code, r.stdout, exitUsage)
			}
			checkOneLine(t, r.stderr, tc.want)
		})
	}
}

// where returns the queues (and queue/.checkout) holding each name of the
// fixture, as ls --all sees them.
func where(t *testing.T, dir string) map[string]string {
	t.Helper()
	r := cli(t, nil, "", "ls", dir, "--all", "-o", "json")
	var doc struct{ Entries []entryJSON }
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range doc.Entries {
		out[e.Name] = e.Queue + "/" + e.State
	}
	return out
}

func TestMvRmSeveralNames(t *testing.T) {
	for _, tc := range []struct {
		name       string
		stdin      string
		args       []string // after DIR
		code       int
		stdout     string
		errNames   []string // names that fail, one stderr line each
		wantMoved  map[string]string
		wantAbsent []string
	}{
		{
			name: "mv two", args: []string{"mv", "a-new", "a-old", "--to", "frozen"},
			stdout:    "moved a-new from active to frozen\nmoved a-old from active to frozen\n",
			wantMoved: map[string]string{"a-new": "frozen/waiting", "a-old": "frozen/waiting", "a-mid": "active/waiting"},
		},
		{
			name: "mv from stdin", args: []string{"mv", "-", "--to", "outgoing"}, stdin: "a-new\n\nf-ancient\n",
			stdout:    "moved a-new from active to outgoing\nmoved f-ancient from frozen to outgoing\n",
			wantMoved: map[string]string{"a-new": "outgoing/waiting", "f-ancient": "outgoing/waiting", "a-old": "active/waiting"},
		},
		{
			name: "mv stdin without final newline, and names around it", args: []string{"mv", "a-mid", "-", "a-old", "--to", "frozen"}, stdin: "a-new",
			stdout:    "moved a-mid from active to frozen\nmoved a-new from active to frozen\nmoved a-old from active to frozen\n",
			wantMoved: map[string]string{"a-mid": "frozen/waiting", "a-new": "frozen/waiting", "a-old": "frozen/waiting"},
		},
		{
			name: "mv a missing and a held name among good ones", args: []string{"mv", "a-new", "nope", "a-held", "a-old", "--to", "frozen"},
			code:      exitFailure,
			stdout:    "moved a-new from active to frozen\nmoved a-old from active to frozen\n",
			errNames:  []string{"nope", "a-held"},
			wantMoved: map[string]string{"a-new": "frozen/waiting", "a-old": "frozen/waiting", "a-held": "active/checked_out"},
		},
		{
			name: "mv an invalid name from stdin", args: []string{"mv", "-", "--to", "frozen"}, stdin: "../x\na-new\n",
			code: exitFailure, stdout: "moved a-new from active to frozen\n", errNames: []string{"../x"},
			wantMoved: map[string]string{"a-new": "frozen/waiting"},
		},
		{
			name: "mv dry run", args: []string{"mv", "a-new", "-", "nope", "--to", "frozen", "--dry-run"}, stdin: "a-old\n",
			code:      exitFailure,
			stdout:    "would move a-new from active to frozen\nwould move a-old from active to frozen\n",
			errNames:  []string{"nope"},
			wantMoved: map[string]string{"a-new": "active/waiting", "a-old": "active/waiting"},
		},
		{
			name: "rm two", args: []string{"rm", "a-new", "f-recent"},
			stdout:     "removed a-new from active\nremoved f-recent from frozen\n",
			wantAbsent: []string{"a-new", "f-recent"}, wantMoved: map[string]string{"a-old": "active/waiting"},
		},
		{
			name: "rm from stdin with a missing name", args: []string{"rm", "-"}, stdin: "a-new\nnope\n\nf-recent\n",
			code: exitFailure, stdout: "removed a-new from active\nremoved f-recent from frozen\n", errNames: []string{"nope"},
			wantAbsent: []string{"a-new", "f-recent"},
		},
		{
			name: "rm dry run", args: []string{"rm", "a-new", "a-old", "--dry-run"},
			stdout:    "would remove a-new from active\nwould remove a-old from active\n",
			wantMoved: map[string]string{"a-new": "active/waiting", "a-old": "active/waiting"},
		},
		{
			name: "empty stdin", args: []string{"rm", "-"}, stdin: "\n\n",
			wantMoved: map[string]string{"a-new": "active/waiting"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := fixtureSpool(t)
			before := where(t, dir)
			args := append([]string{tc.args[0], dir}, tc.args[1:]...)
			r := cli(t, nil, tc.stdin, args...)
			if r.code != tc.code || r.stdout != tc.stdout {
				t.Errorf("exit %d, stdout %q; want exit %d, stdout %q (stderr %q)", r.code, r.stdout, tc.code, tc.stdout, r.stderr)
			}
			lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
			if r.stderr == "" {
				lines = nil
			}
			if len(lines) != len(tc.errNames) {
				t.Errorf("stderr %q: want one line for each of %q", r.stderr, tc.errNames)
			} else {
				for i, n := range tc.errNames {
					if !strings.HasPrefix(lines[i], "spool-agent: "+tc.args[0]+" "+n+": ") {
						t.Errorf("stderr line %q, want one for %s", lines[i], n)
					}
				}
			}
			after := where(t, dir)
			for n, w := range tc.wantMoved {
				if after[n] != w {
					t.Errorf("%s is in %q, want %q", n, after[n], w)
				}
			}
			for _, n := range tc.wantAbsent {
				if _, ok := after[n]; ok {
					t.Errorf("%s still there", n)
				}
			}
			if strings.Contains(tc.name, "dry run") && !mapsEqual(before, after) {
				t.Errorf("a dry run changed the spool: %v → %v", before, after)
			}
		})
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestMvRmStdinBadInput checks the usage errors of names on stdin.
func TestMvRmStdinBadInput(t *testing.T) {
	dir := fixtureSpool(t)
	r := cli(t, nil, "a-new\n", "mv", dir, "-", "-", "--to", "frozen")
	if r.code != exitUsage {
		t.Errorf("- twice: exit %d, want %d", r.code, exitUsage)
	}
	checkOneLine(t, r.stderr, "standard input")
	r = cli(t, nil, "a-new\n"+strings.Repeat("x", maxNameLine+1)+"\n", "rm", dir, "-")
	if r.code == 0 || !strings.Contains(r.stderr, "not an entry name") {
		t.Errorf("an overlong line: %+v", r)
	}
	if got := where(t, dir); got["a-new"] != "" {
		t.Errorf("a-new, before the overlong line, was not removed: %v", got)
	}
}

// TestFindPipeline runs the README's pipeline in-process: ls --match -o
// json, the names taken out as jq -r '.entries[].name' does, into mv -.
func TestFindPipeline(t *testing.T) {
	dir := fixtureSpool(t)
	out := mustCLI(t, "", "ls", dir, "active", "--match", `(?m)^to: .*@example\.com$|^\(Cog`, "-o", "json")
	var doc struct {
		Entries []struct {
			Name string `json:"name"`
		} `json:"entries"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	var names strings.Builder
	for _, e := range doc.Entries {
		names.WriteString(e.Name + "\n")
	}
	if names.String() != "a-new\na-old\n" {
		t.Fatalf("ls --match found %q, want a-new and a-old", names.String())
	}
	mv := mustCLI(t, names.String(), "mv", dir, "-", "--to", "frozen")
	if mv != "moved a-new from active to frozen\nmoved a-old from active to frozen\n" {
		t.Errorf("mv -: %q", mv)
	}
	if got, _ := lsNames(t, dir, "frozen"); !slices.Equal(got, []string{"a-new", "a-old", "f-ancient", "f-recent"}) {
		t.Errorf("frozen holds %q", got)
	}
}

// TestFindPipelineBinary runs the README's pipeline through the real
// binary, a shell and jq.
func TestFindPipelineBinary(t *testing.T) {
	jq, err := exec.LookPath("jq")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("jq is not installed (apt-get install jq)")
		}
		t.Skip("jq is not installed (apt-get install jq)")
	}
	dir := fixtureSpool(t)
	ctx, cancel := context.WithTimeout(context.Background(), e2eDeadline)
	defer cancel()
	script := `"$SA" ls "$DIR" active --match '(?m)^to: .*@example\.com$' -o json | "$JQ" -r '.entries[].name' | "$SA" mv "$DIR" - --to frozen`
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", "set -e; "+script)
	cmd.Env = append(testkit.AgentEnv(), "SA="+agentBin, "DIR="+dir, "JQ="+jq)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v", script, err)
	}
	if string(out) != "moved a-new from active to frozen\n" {
		t.Errorf("pipeline printed %q", out)
	}
	if got := where(t, dir); got["a-new"] != "frozen/waiting" || got["a-old"] != "active/waiting" {
		t.Errorf("after the pipeline: %v", got)
	}
}

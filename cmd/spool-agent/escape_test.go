package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spool-agent/spool-agent/spool"
)

// hostileNames are entry names a hostile spool may hold: every C0 control
// but NUL (no file name holds it), every C1 control in UTF-8, escape
// sequences that retitle a window or clear the screen, a newline that would
// forge a line, DEL, and C1 bytes that are not UTF-8.
func hostileNames() []string {
	var c0, c1 strings.Builder
	for c := rune(1); c < 0x20; c++ {
		c0.WriteRune(c)
	}
	for c := rune(0x80); c < 0xa0; c++ {
		c1.WriteRune(c)
	}
	return []string{
		"c0-" + c0.String(),
		"c1-" + c1.String(),
		"esc-\x1b]0;owned\x07\x1b[2J\x1b[31mred",
		"nl-\nspool-agent: forged line",
		"del-\x7f",
		"raw-\x9b\x85",
	}
}

// rawControl returns the first raw control byte sequence in out, if any:
// a C0 control but the newline that separates lines, DEL, or a C1 control
// in UTF-8 (0xc2 0x80-0x9f).
func rawControl(out string) (int, bool) {
	for i := 0; i < len(out); i++ {
		c := out[i]
		if c < 0x20 && c != '\n' || c == 0x7f || c == 0xc2 && i+1 < len(out) && out[i+1] >= 0x80 && out[i+1] <= 0x9f {
			return i, true
		}
	}
	return 0, false
}

func checkNoControls(t *testing.T, what, out string) {
	t.Helper()
	if i, ok := rawControl(out); ok {
		t.Errorf("%s prints a raw control byte %#x at %d:\n%q", what, out[i], i, out)
	}
}

// hostileSpool writes, by hand as other software could, one whole entry
// per hostile name in active (the first checked out an hour ago), and an
// orphaned payload and a stale temporary file per name.
func hostileSpool(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "spool")
	if _, err := spool.Create(dir, []string{"active", "frozen"}, &spool.Options{Durability: spool.DurabilityNone}); err != nil {
		t.Fatal(err)
	}
	for i, n := range hostileNames() {
		writeFile(t, filepath.Join(dir, spool.RegistryDir, n), "")
		writeFile(t, filepath.Join(dir, spool.DataDir, n), "payload")
		q := filepath.Join("active", n)
		if i == 0 {
			q = filepath.Join("active", spool.CheckoutDir, n)
		}
		writeFile(t, filepath.Join(dir, q), "meta\x1b[2J\u009b\x7f of "+n)
		setMtime(t, dir, q, time.Hour)
		writeFile(t, filepath.Join(dir, spool.DataDir, "orphan-"+n), "x")
		writeFile(t, filepath.Join(dir, spool.TmpDir, "tmp-"+n), "x")
		setMtime(t, dir, filepath.Join(spool.TmpDir, "tmp-"+n), time.Hour)
	}
	return dir
}

// TestNoRawControlsInOutput runs every command on hostile names, in text
// and JSON, successes and errors: no raw control byte reaches stdout or
// stderr, and JSON stays valid.
func TestNoRawControlsInOutput(t *testing.T) {
	dir := hostileSpool(t)
	names := hostileNames()
	var runs [][]string
	for _, o := range []string{"text", "json"} {
		runs = append(runs,
			[]string{"ls", dir, "-o", o}, []string{"ls", dir, "--all", "-o", o},
			[]string{"shape", dir, "-o", o}, []string{"fsck", dir, "-o", o},
			[]string{"ls", dir, names[2], "-o", o}, // an unknown queue
		)
		for _, n := range names {
			runs = append(runs, []string{"show", dir, n, "-o", o}, []string{"show", dir, "orphan-" + n, "-o", o})
		}
	}
	for _, n := range names[1:] {
		runs = append(runs, []string{"mv", dir, n, "--to", "frozen", "--dry-run"}, []string{"rm", dir, n, "--dry-run"},
			[]string{"mv", dir, n, "--to", n}, []string{"enqueue", dir, n}, []string{"enqueue", dir, "active", "--name", n},
			[]string{"init", dir, "--queue", n}, []string{"show", dir, "missing-" + n})
	}
	runs = append(runs,
		[]string{"recover", dir, "--older-than", "10m", "--dry-run"},
		[]string{"recover", dir, "--older-than", "10m"},
		[]string{"mv", dir, names[1], "--to", "frozen"}, []string{"rm", dir, names[2]},
		[]string{"ls", filepath.Join(dir, names[2])}, []string{"fsck", filepath.Join(dir, names[3])},
	)
	for _, args := range runs {
		r := cli(t, nil, "", args...)
		checkNoControls(t, "stdout of "+strings.Join(args, " "), r.stdout)
		checkNoControls(t, "stderr of "+strings.Join(args, " "), r.stderr)
		if args[len(args)-1] == "json" && r.stdout != "" && !json.Valid([]byte(r.stdout)) {
			t.Errorf("%q: not one JSON document:\n%s", args, r.stdout)
		}
	}
	// The recover above returned the hostile checkout, and said so escaped.
	if r := cli(t, nil, "", "ls", dir, "--checked-out"); strings.Count(r.stdout, "\n") != 1 {
		t.Errorf("recover left checkouts:\n%s", r.stdout)
	}
}

// TestLogsEscapeNames checks the agent's logs in both formats: problem
// events name hostile files, and no raw control byte reaches the log.
func TestLogsEscapeNames(t *testing.T) {
	dir := hostileSpool(t)
	for _, format := range []string{"logfmt", "json"} {
		t.Run(format, func(t *testing.T) {
			m := testMain(nil, "", nil, nil)
			_, stderr := runInProcess(t, m, "--log.format", format, "--spool", "s="+dir, "--web.listen-address", "127.0.0.1:0",
				"--check-every", "50ms", "--alert-after-cycles", "0")
			waitLine(t, stderr, "orphan-c0-")
			waitLine(t, stderr, "tmp-c0-")
			checkNoControls(t, "the "+format+" log", stderr.String())
			if format == "json" {
				for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
					if strings.HasPrefix(line, "{") && !json.Valid([]byte(line)) {
						t.Errorf("log line is not JSON: %q", line)
					}
				}
			}
		})
	}
}

// TestLogHandlersEscape checks both log formats on attributes with raw
// controls (as a glob match's path or an error may carry).
func TestLogHandlersEscape(t *testing.T) {
	for _, format := range []string{"logfmt", "json"} {
		var out bytes.Buffer
		logger := slog.New(newHandler(&out, format, slog.LevelInfo))
		for _, n := range hostileNames() {
			logger.Warn("skipped", "path", "/srv/"+n, "err", errors.New("open /srv/"+n+": denied"))
		}
		checkNoControls(t, format+" log", out.String())
		if !strings.Contains(out.String(), `\x1b]0;owned`) && !strings.Contains(out.String(), `\u001b]0;owned`) {
			t.Errorf("%s log lost the escaped name:\n%s", format, out.String())
		}
	}
}

package statefile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spool-agent/spool-agent/monitor"
)

func TestRoundTrip(t *testing.T) {
	mtime := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	tracked := []monitor.TrackedProblem{
		{Problem: monitor.Problem{Kind: monitor.KindTooOld, Dir: monitor.Dir{Kind: monitor.DirCheckout, Queue: "q"}, Name: "a", ModTime: mtime}, Count: 3, Alerting: true},
		{Problem: monitor.Problem{Kind: monitor.KindUnexpected, Dir: monitor.Dir{Kind: monitor.DirRoot}, Name: "not utf-8 \xff\xfe"}, Count: 1},
		{Problem: monitor.Problem{Kind: monitor.KindDuplicated, Dir: monitor.Dir{Kind: monitor.DirRegistry}, Name: ".hidden\n", ModTime: time.Unix(0, 0),
			Dirs: []monitor.Dir{{Kind: monitor.DirQueue, Queue: "a"}, {Kind: monitor.DirCheckout, Queue: "b"}}}, Count: 7, Alerting: true},
		{Problem: monitor.Problem{Kind: monitor.KindOrphaned, Dir: monitor.Dir{Kind: monitor.DirData}, Name: strings.Repeat("x", 255), ModTime: mtime}, Alerting: true}, // alerting, not counted
	}
	path := filepath.Join(t.TempDir(), "sub", "state.json")
	in := &File{Version: Version, Written: mtime, Spools: map[string]Spool{"mail": {Dir: "/var/spool/mail", Dev: 2049, Ino: 12, Problems: FromTracked(tracked)}}}
	if err := Write(path, in); err != nil {
		t.Fatal(err)
	}
	out, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Tracked(out.Spools["mail"].Problems)
	if err != nil {
		t.Fatal(err)
	}
	for i := range tracked {
		a, b := tracked[i], got[i]
		if monitor.CompareProblems(a.Problem, b.Problem) != 0 || a.Problem.Key() != b.Problem.Key() || a.Count != b.Count || a.Alerting != b.Alerting {
			t.Errorf("problem %d: wrote %+v, read %+v", i, a, b)
		}
	}
	if s := out.Spools["mail"]; s.Dir != "/var/spool/mail" || s.Dev != 2049 || s.Ino != 12 || !out.Written.Equal(mtime) {
		t.Errorf("read %+v", out)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, %v, want 0600", fi.Mode(), err)
	}
	// Rewrite: no temporary file is left behind.
	in.Spools = nil
	if err := Write(path, in); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 1 {
		t.Errorf("directory holds %d files, want the state file alone", len(ents))
	}
	if out, err := Read(path); err != nil || len(out.Spools) != 0 {
		t.Errorf("rewritten file: %+v, %v", out, err)
	}
}

func TestReadRefuses(t *testing.T) {
	tests := []struct {
		name, content string
		want          error
	}{
		{"not JSON", "{", ErrCorrupt},
		{"other version", `{"version": 2, "written": "2026-01-01T00:00:00Z"}`, ErrVersion},
		{"no version", `{"written": "2026-01-01T00:00:00Z"}`, ErrVersion},
		{"unknown field", `{"version": 1, "written": "2026-01-01T00:00:00Z", "spoolz": {}}`, ErrCorrupt},
		{"no written time", `{"version": 1, "spools": {}}`, ErrCorrupt},
		{"bad directory kind", `{"version": 1, "written": "2026-01-01T00:00:00Z", "spools": {"s": {"dir": "/s", "problems": [{"kind": "orphaned", "dir": "nowhere", "count": 1}]}}}`, ErrCorrupt},
		{"negative count", `{"version": 1, "written": "2026-01-01T00:00:00Z", "spools": {"s": {"dir": "/s", "problems": [{"kind": "orphaned", "dir": "data", "count": -1}]}}}`, ErrCorrupt},
		{"bad base64", `{"version": 1, "written": "2026-01-01T00:00:00Z", "spools": {"s": {"dir": "/s", "problems": [{"kind": "orphaned", "dir": "data", "name_base64": "!!", "count": 1}]}}}`, ErrCorrupt},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.json")
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := Read(path); !errors.Is(err, tc.want) {
				t.Errorf("Read error %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := Read(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestDirID(t *testing.T) {
	dir := t.TempDir()
	dev, ino, err := DirID(dir)
	if err != nil || ino == 0 {
		t.Fatalf("DirID = %d, %d, %v", dev, ino, err)
	}
	dev2, ino2, _ := DirID(dir + "/")
	if !reflect.DeepEqual([]uint64{dev, ino}, []uint64{dev2, ino2}) {
		t.Errorf("DirID differs for the same directory")
	}
	if _, _, err := DirID(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing directory: %v", err)
	}
}

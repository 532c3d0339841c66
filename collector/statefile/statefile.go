// Package statefile reads and writes the agent's state file: each spool's
// debouncing state (the problems counted, their counts, which alert), so
// that an agent restart neither ends an alert whose fault is still there
// nor makes it wait alert_after_cycles again.
//
// The file is JSON, versioned, written atomically (a temporary file in the
// same directory, fsync, rename, fsync of the directory) with mode 0600,
// since problem names are entry names. It records each spool's directory
// and that directory's device and inode, so that a reader can tell a
// spool that moved or was recreated from the one whose state it holds.
package statefile

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
	"unicode/utf8"

	"github.com/spool-agent/spool-agent/monitor"
)

// Version is the format version this package writes and reads.
const Version = 1

// MaxSize bounds the file read: a state file is a few hundred bytes per
// problem, and the agent bounds the problems it tracks.
const MaxSize = 256 << 20

// Errors.
var (
	// ErrVersion: the file was written in another format version.
	ErrVersion = errors.New("state file of another version")
	// ErrCorrupt: the file is not a state file (bad JSON, bad fields, too large).
	ErrCorrupt = errors.New("corrupt state file")
)

// File is the state file's content.
type File struct {
	Version int              `json:"version"`
	Written time.Time        `json:"written"` // when the state was last known current
	Spools  map[string]Spool `json:"spools"`  // by spool name
}

// Spool is one spool's saved state.
type Spool struct {
	Dir      string    `json:"dir"`
	Dev      uint64    `json:"dev"`
	Ino      uint64    `json:"ino"`
	Problems []Problem `json:"problems"`
}

// Problem is a monitor.TrackedProblem in the file's terms. A name that is
// not UTF-8 is kept as NameBase64 (JSON would replace its bad bytes).
type Problem struct {
	Kind       monitor.Kind `json:"kind"`
	Dir        string       `json:"dir"`
	Queue      string       `json:"queue,omitempty"`
	Name       string       `json:"name,omitempty"`
	NameBase64 string       `json:"name_base64,omitempty"`
	MtimeNs    *int64       `json:"mtime_ns,omitempty"` // absent: no mtime (unexpected problems)
	Dirs       []DirRef     `json:"dirs,omitempty"`
	Count      int          `json:"count"`
	Alerting   bool         `json:"alerting,omitempty"`
}

// DirRef is one directory of a duplicated problem.
type DirRef struct {
	Dir   string `json:"dir"`
	Queue string `json:"queue,omitempty"`
}

// FromTracked converts the monitor's debouncing state for the file.
func FromTracked(ts []monitor.TrackedProblem) []Problem {
	out := make([]Problem, 0, len(ts))
	for _, t := range ts {
		p := Problem{Kind: t.Problem.Kind, Dir: string(t.Problem.Dir.Kind), Queue: t.Problem.Dir.Queue, Count: t.Count, Alerting: t.Alerting}
		if utf8.ValidString(t.Problem.Name) {
			p.Name = t.Problem.Name
		} else {
			p.NameBase64 = base64.StdEncoding.EncodeToString([]byte(t.Problem.Name))
		}
		if !t.Problem.ModTime.IsZero() {
			ns := t.Problem.ModTime.UnixNano()
			p.MtimeNs = &ns
		}
		for _, d := range t.Problem.Dirs {
			p.Dirs = append(p.Dirs, DirRef{Dir: string(d.Kind), Queue: d.Queue})
		}
		out = append(out, p)
	}
	return out
}

var dirKinds = map[string]monitor.DirKind{}

func init() {
	for _, k := range monitor.DirKinds() {
		dirKinds[string(k)] = k
	}
}

// Tracked converts the file's problems back into the monitor's terms.
func Tracked(ps []Problem) ([]monitor.TrackedProblem, error) {
	out := make([]monitor.TrackedProblem, 0, len(ps))
	for i, p := range ps {
		dk, ok := dirKinds[p.Dir]
		if !ok || p.Kind == "" || p.Count < 0 {
			return nil, fmt.Errorf("%w: problem %d: kind %q, dir %q, count %d", ErrCorrupt, i, p.Kind, p.Dir, p.Count)
		}
		mp := monitor.Problem{Kind: p.Kind, Dir: monitor.Dir{Kind: dk, Queue: p.Queue}, Name: p.Name}
		if p.NameBase64 != "" {
			b, err := base64.StdEncoding.DecodeString(p.NameBase64)
			if err != nil {
				return nil, fmt.Errorf("%w: problem %d: name_base64: %w", ErrCorrupt, i, err)
			}
			mp.Name = string(b)
		}
		if p.MtimeNs != nil {
			mp.ModTime = time.Unix(0, *p.MtimeNs)
		}
		for _, d := range p.Dirs {
			dk, ok := dirKinds[d.Dir]
			if !ok {
				return nil, fmt.Errorf("%w: problem %d: dir %q", ErrCorrupt, i, d.Dir)
			}
			mp.Dirs = append(mp.Dirs, monitor.Dir{Kind: dk, Queue: d.Queue})
		}
		out = append(out, monitor.TrackedProblem{Problem: mp, Count: p.Count, Alerting: p.Alerting})
	}
	return out, nil
}

// Read reads and checks the state file at path. A missing file is an
// error satisfying errors.Is(err, fs.ErrNotExist).
func Read(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: path, Err: err}
	}
	if len(b) > MaxSize {
		return nil, fmt.Errorf("%s: %w: larger than %d bytes", path, ErrCorrupt, MaxSize)
	}
	var head struct {
		Version int `json:"version"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", path, ErrCorrupt, err)
	}
	if head.Version != Version {
		return nil, fmt.Errorf("%s: %w: version %d, want %d", path, ErrVersion, head.Version, Version)
	}
	var sf File
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sf); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", path, ErrCorrupt, err)
	}
	if sf.Written.IsZero() {
		return nil, fmt.Errorf("%s: %w: no written time", path, ErrCorrupt)
	}
	for name, s := range sf.Spools {
		if _, err := Tracked(s.Problems); err != nil {
			return nil, fmt.Errorf("%s: spool %q: %w", path, name, err)
		}
	}
	return &sf, nil
}

// Write replaces the file at path with f atomically and durably: a
// temporary file in the same directory (created if missing, mode 0700),
// written, synced and renamed over path, then the directory synced, so
// that a crash leaves the old file or the new one, never a mixture.
func Write(path string, f *File) error {
	b, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return err
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	done = true
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return &fs.PathError{Op: "fsync", Path: dir, Err: err}
	}
	return nil
}

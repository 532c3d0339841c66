package main

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"unicode"

	"github.com/spool-agent/spool-agent/monitor"
	"github.com/spool-agent/spool-agent/spool"
)

// spoolDef is one spool the agent watches.
type spoolDef struct {
	Name   string
	Dir    string
	Source string // where it was defined: "--spool", "config file", "--spool-glob PATTERN"
	Config monitor.Config
}

// explicit reports whether the spool was named by the user rather than
// found by a glob (only explicit spools are created by --create).
func (d spoolDef) explicit() bool { return !strings.HasPrefix(d.Source, "--spool-glob") }

// baseConfig is the monitor configuration of the flags.
func (c *RunCmd) baseConfig() (monitor.Config, error) {
	limits, err := c.limits()
	if err != nil {
		return monitor.Config{}, err
	}
	switch {
	case c.CheckEvery <= 0:
		return monitor.Config{}, fmt.Errorf("--check-every %v: must be positive", c.CheckEvery)
	case c.FullRescanEvery <= 0:
		return monitor.Config{}, fmt.Errorf("--full-rescan-every %v: must be positive", c.FullRescanEvery)
	case c.AlertAfterCycles < 0:
		return monitor.Config{}, fmt.Errorf("--alert-after-cycles %d: must not be negative", c.AlertAfterCycles)
	case c.MaxUnregistered <= 0:
		return monitor.Config{}, fmt.Errorf("--max-unregistered %d: must be positive", c.MaxUnregistered)
	case c.MaxQueues <= 0:
		return monitor.Config{}, fmt.Errorf("--max-queues %d: must be positive", c.MaxQueues)
	case c.MaxWatches <= 0:
		return monitor.Config{}, fmt.Errorf("--max-watches %d: must be positive", c.MaxWatches)
	}
	cfg := monitor.DefaultConfig()
	cfg.Limits = limits
	cfg.CheckEvery = c.CheckEvery
	cfg.AlertAfterCycles = c.AlertAfterCycles
	cfg.FullRescanEvery = c.FullRescanEvery
	cfg.MaxUnregistered = c.MaxUnregistered
	cfg.MaxQueues = c.MaxQueues
	cfg.MaxWatches = c.MaxWatches
	return cfg, nil
}

// spoolDefs returns the spools to watch, sorted by name: those of the
// configuration file's spools: section, then --spool (which replaces the
// directory of a spool of the same name in the file), then the spool
// directories that --spool-glob patterns match now (a name already defined
// explicitly is not taken from a glob). Settings in the spools: section
// apply to the spool of that name wherever it comes from.
//
// A glob match that cannot be a spool (not a spool directory, or a base name
// that is not a valid spool name, such as x=y or .hidden) is skipped and
// returned in skipped, for the caller to log: one bad directory must not
// stop the agent from watching the others.
func (c *RunCmd) spoolDefs(cfg *configFile) (defs []spoolDef, skipped []skippedMatch, err error) {
	if _, err := c.baseConfig(); err != nil {
		return nil, nil, err
	}
	byName := map[string]*spoolDef{}
	settings := map[string]spoolConfig{}
	if cfg != nil {
		for _, sc := range cfg.spools {
			settings[sc.Name] = sc
			if sc.Dir != "" {
				byName[sc.Name] = &spoolDef{Name: sc.Name, Dir: sc.Dir, Source: "config file " + cfg.path}
			}
		}
	}
	fromFlag := map[string]bool{}
	for _, s := range c.Spool {
		name, dir, ok := strings.Cut(s, "=")
		if !ok || dir == "" {
			return nil, nil, fmt.Errorf("--spool %q: want NAME=DIR", s)
		}
		if err := validSpoolName(name); err != nil {
			return nil, nil, fmt.Errorf("--spool %q: %w", s, err)
		}
		if fromFlag[name] {
			return nil, nil, fmt.Errorf("--spool %q: spool %s given twice", s, name)
		}
		fromFlag[name] = true
		byName[name] = &spoolDef{Name: name, Dir: dir, Source: "--spool"}
	}
	for _, pattern := range c.SpoolGlob {
		found, notSpools, err := globSpools(pattern)
		if err != nil {
			return nil, nil, err
		}
		for _, dir := range notSpools {
			skipped = append(skipped, skippedMatch{Pattern: pattern, Path: dir, Reason: "not a spool directory (no " + spool.RegistryDir + " directory)"})
		}
		for _, dir := range found {
			name := filepath.Base(dir)
			if d, ok := byName[name]; ok {
				if d.explicit() {
					continue
				}
				return nil, nil, fmt.Errorf("--spool-glob %s: %s and %s would both be spool %q; name one with --spool", pattern, d.Dir, dir, name)
			}
			if err := validSpoolName(name); err != nil {
				skipped = append(skipped, skippedMatch{Pattern: pattern, Path: dir, Reason: err.Error()})
				continue
			}
			byName[name] = &spoolDef{Name: name, Dir: dir, Source: "--spool-glob " + pattern}
		}
	}
	defs = make([]spoolDef, 0, len(byName))
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		d := byName[name]
		d.Dir = filepath.Clean(d.Dir)
		if d.Config, err = c.withSettings(settings[name]).baseConfig(); err != nil {
			return nil, nil, fmt.Errorf("spool %s: %w", name, err)
		}
		defs = append(defs, *d)
	}
	return defs, skipped, nil
}

// withSettings returns c with the settings of sc over its flags: a value
// replaces the flag's, a mapping (max-queue-age) is merged over it.
func (c *RunCmd) withSettings(sc spoolConfig) *RunCmd {
	rc := *c
	rc.MaxQueueAge = maps.Clone(c.MaxQueueAge)
	rv := reflect.ValueOf(&rc).Elem()
	for _, f := range reflect.VisibleFields(rv.Type()) {
		if _, ok := f.Tag.Lookup("spool"); !ok || f.Anonymous {
			continue
		}
		v, ok := sc.settings[flagName(f)]
		if !ok {
			continue
		}
		field := rv.FieldByIndex(f.Index)
		if field.Kind() != reflect.Map {
			field.Set(v)
			continue
		}
		if v.Len() == 0 {
			continue
		}
		if field.IsNil() {
			field.Set(reflect.MakeMap(field.Type()))
		}
		for it := v.MapRange(); it.Next(); {
			field.SetMapIndex(it.Key(), it.Value())
		}
	}
	return &rc
}

// flagName is the long name kong gives the flag of a struct field: its
// name: tag, or its name in lower case with - between words.
func flagName(f reflect.StructField) string {
	if n := f.Tag.Get("name"); n != "" {
		return n
	}
	var b strings.Builder
	for i, r := range f.Name {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte('-')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

// skippedMatch is a glob match that is not watched, and why.
type skippedMatch struct {
	Pattern, Path, Reason string
}

// globSpools returns the spool directories (those with a .registry
// directory) that pattern matches, and the other matches, sorted.
func globSpools(pattern string) (spools, others []string, err error) {
	matches, err := filepath.Glob(pattern)
	if err != nil {
		return nil, nil, fmt.Errorf("--spool-glob %q: %w", pattern, err)
	}
	for _, m := range matches {
		st, err := os.Stat(filepath.Join(m, spool.RegistryDir))
		if err == nil && st.IsDir() {
			spools = append(spools, filepath.Clean(m))
		} else {
			others = append(others, filepath.Clean(m))
		}
	}
	slices.Sort(spools)
	slices.Sort(others)
	return spools, others, nil
}

// skipLog logs each skipped glob match once in the agent's life (whatever
// the patterns that match it), at start or at the reload that first finds it.
type skipLog struct {
	seen map[[2]string]bool // path and reason
}

func (l *skipLog) log(logger *slog.Logger, skipped []skippedMatch) {
	if l.seen == nil {
		l.seen = map[[2]string]bool{}
	}
	for _, s := range skipped {
		key := [2]string{s.Path, s.Reason}
		if l.seen[key] {
			continue
		}
		l.seen[key] = true
		logger.Warn("--spool-glob match skipped", "pattern", s.Pattern, "path", s.Path, "reason", s.Reason)
	}
}

// createMissing creates, with queues, the directories of the explicit
// spools that do not exist yet (or are empty); it leaves existing spools
// as they are.
func createMissing(defs []spoolDef, queues []string) error {
	for _, q := range queues {
		if err := validQueue(q); err != nil {
			return fmt.Errorf("--create-queue: %w", err)
		}
	}
	var errs []error
	for _, d := range defs {
		if !d.explicit() {
			continue
		}
		if st, err := os.Stat(filepath.Join(d.Dir, spool.RegistryDir)); err == nil && st.IsDir() {
			continue
		}
		if _, err := spool.Create(d.Dir, queues, nil); err != nil {
			errs = append(errs, fmt.Errorf("--create: spool %s: %w", d.Name, err))
		}
	}
	return errors.Join(errs...)
}

package collector

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spool-agent/spool-agent/collector/statefile"
	"github.com/spool-agent/spool-agent/monitor"
)

// DefaultStateMaxAge is DefaultOptions' StateMaxAge.
const DefaultStateMaxAge = time.Hour

// ErrStateInSpool: the state file would be inside a watched spool, where
// it would be the spool's content (and the spool's users could write it).
var ErrStateInSpool = errors.New("state file inside a watched spool")

// ErrNoStateDir: DefaultStatePath found no directory for the state file
// (no STATE_DIRECTORY, XDG_STATE_HOME or HOME).
var ErrNoStateDir = errors.New("no state directory: $STATE_DIRECTORY, $XDG_STATE_HOME and $HOME are not set")

// Options configure a Collector beyond its logger and event callback.
// Start from DefaultOptions.
type Options struct {
	// StatePath is the state file that keeps each spool's debouncing state
	// (problem counts, the alerting set) across restarts; "" keeps none.
	// See DefaultStatePath. It must not be inside a watched spool.
	StatePath string
	// StateMaxAge: a state file last written longer ago than this when the
	// collector starts is ignored (its problems may have come and gone
	// unseen); zero ignores none for its age. The collector rewrites an
	// unchanged state every StateMaxAge/4 so that a current one never
	// looks old.
	StateMaxAge time.Duration
	// EventLog, if set, gets the spools' events as log lines, aggregated:
	// per spool and cycle, one line per type, kind and directory with the
	// count and the first EventLogNames names (quoted, so that no byte of
	// a name reaches a terminal), whatever the number of files concerned.
	// Starts are logged at warning level, ends at info level.
	EventLog *slog.Logger
}

// EventLogNames is how many names a line of Options.EventLog lists.
const EventLogNames = 5

// DefaultOptions returns the default options: no state file, a state
// file's bound DefaultStateMaxAge.
func DefaultOptions() Options { return Options{StateMaxAge: DefaultStateMaxAge} }

// DefaultStatePath returns where the agent keeps its state file by
// default, from the environment that lookupEnv reads (os.LookupEnv in the
// binary): $STATE_DIRECTORY/state.json under systemd (StateDirectory=; the
// first directory if it lists several), else the user's state directory
// ($XDG_STATE_HOME, or $HOME/.local/state) /spool-agent/state.json.
func DefaultStatePath(lookupEnv func(string) (string, bool)) (string, error) {
	getenv := func(k string) string { v, _ := lookupEnv(k); return v }
	if d, _, _ := strings.Cut(getenv("STATE_DIRECTORY"), ":"); d != "" {
		return filepath.Join(d, "state.json"), nil
	}
	if d := getenv("XDG_STATE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "spool-agent", "state.json"), nil
	}
	home := getenv("HOME")
	if home == "" {
		return "", ErrNoStateDir
	}
	return filepath.Join(home, ".local", "state", "spool-agent", "state.json"), nil
}

// stateEvery is how often the collector looks for a changed state to write.
const stateEvery = time.Second

// stateFileBudget is what the spools' states may take in the state file:
// its reader refuses a file over statefile.MaxSize whole, so spools
// flooded with problems must not take the others' state with them.
const stateFileBudget = statefile.MaxSize - 1<<20

// loadState reads the state file at start-up; what it cannot use it
// ignores with one log line.
func (c *Collector) loadState() {
	sf, err := statefile.Read(c.opts.StatePath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return
	case err != nil:
		c.logger.Warn("ignoring the state file: alert state starts afresh", "path", c.opts.StatePath, "err", err)
		return
	}
	if age := c.now().Sub(sf.Written); c.opts.StateMaxAge > 0 && age > c.opts.StateMaxAge {
		c.logger.Warn("ignoring the state file: too old, alert state starts afresh", "path", c.opts.StatePath,
			"written", sf.Written.UTC().Format(time.RFC3339), "max_age", c.opts.StateMaxAge)
		return
	}
	c.restore = sf.Spools
}

// restoreState gives the new monitor m of spool s the state the state
// file kept for it, if it is that spool's: same directory, same device and
// inode. Each spool's saved state is used at most once, at its first
// Apply. c.mu is held.
func (c *Collector) restoreState(s Spool, m spoolMonitor) {
	saved, ok := c.restore[s.Name]
	if !ok {
		return
	}
	delete(c.restore, s.Name)
	dir := filepath.Clean(s.Dir)
	if filepath.Clean(saved.Dir) != dir {
		c.logger.Warn("ignoring the saved alert state of a spool whose directory changed", "spool", s.Name, "dir", dir, "saved_dir", saved.Dir)
		return
	}
	dev, ino, err := statefile.DirID(dir)
	if err != nil {
		c.logger.Warn("ignoring the saved alert state of a spool whose directory cannot be read", "spool", s.Name, "dir", dir, "err", err)
		return
	}
	if dev != saved.Dev || ino != saved.Ino {
		c.logger.Warn("ignoring the saved alert state of a spool whose directory was replaced (another device or inode)", "spool", s.Name, "dir", dir)
		return
	}
	tracked, err := statefile.Tracked(saved.Problems)
	if err != nil { // Read checked them
		c.logger.Warn("ignoring the saved alert state of a spool", "spool", s.Name, "err", err)
		return
	}
	m.Resume(monitor.StateOf(tracked))
	alerting := 0
	for _, t := range tracked {
		if t.Alerting {
			alerting++
		}
	}
	c.logger.Info("restored the alert state of a spool", "spool", s.Name, "problems", len(tracked), "alerting", alerting)
}

// checkStatePath refuses a state file inside one of spools.
func (c *Collector) checkStatePath(spools []Spool) error {
	if c.opts.StatePath == "" {
		return nil
	}
	path := absPath(c.opts.StatePath)
	for _, s := range spools {
		dir := absPath(s.Dir)
		if strings.HasPrefix(path, dir+string(filepath.Separator)) {
			return fmt.Errorf("%w: %s is inside spool %s (%s)", ErrStateInSpool, c.opts.StatePath, s.Name, s.Dir)
		}
	}
	return nil
}

// absPath is path absolute, with the symlinks of its existing part resolved.
func absPath(path string) string {
	p, err := filepath.Abs(path)
	if err != nil {
		p = filepath.Clean(path)
	}
	// Resolve the longest existing prefix.
	rest := ""
	for cur := p; ; {
		if r, err := filepath.EvalSymlinks(cur); err == nil {
			return filepath.Join(r, rest)
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return p
		}
		rest = filepath.Join(filepath.Base(cur), rest)
		cur = parent
	}
}

// savedSpool is what the state writer last made of one runner's snapshot.
type savedSpool struct {
	cycles  uint64
	tracked *monitor.TrackedProblem // first element of the snapshot's Tracked, to notice a Resume
	n       int
	entry   statefile.Spool
	enc     []byte // entry encoded, counts capped: compared to notice a change
}

// saveState writes the state file if the state changed since the last
// write, if the last write is StateMaxAge/4 old, or if force is set. It
// runs on the state writer's goroutine (and, last, on Run's).
func (c *Collector) saveState(force bool) {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	c.mu.Lock()
	type spoolNow struct {
		name string
		r    *runner
		snap *monitor.Snapshot
	}
	var now []spoolNow
	for name, r := range c.runners {
		now = append(now, spoolNow{name, r, r.mon.Load().m.Snapshot()})
	}
	c.mu.Unlock()

	changed := force || len(now) != len(c.saved)
	next := make(map[string]*savedSpool, len(now))
	for _, sn := range now {
		prev := c.saved[sn.name]
		var first *monitor.TrackedProblem
		if len(sn.snap.Tracked) > 0 {
			first = &sn.snap.Tracked[0]
		}
		if prev != nil && prev.entry.Dir == filepath.Clean(sn.r.spec.Dir) && prev.cycles == sn.snap.Cycles && prev.tracked == first && prev.n == len(sn.snap.Tracked) {
			next[sn.name] = prev
			continue
		}
		sv := &savedSpool{cycles: sn.snap.Cycles, tracked: first, n: len(sn.snap.Tracked)}
		sv.entry.Dir = filepath.Clean(sn.r.spec.Dir)
		if prev != nil && prev.entry.Dir == sv.entry.Dir && prev.entry.Ino != 0 {
			sv.entry.Dev, sv.entry.Ino = prev.entry.Dev, prev.entry.Ino
		} else if dev, ino, err := statefile.DirID(sv.entry.Dir); err == nil {
			sv.entry.Dev, sv.entry.Ino = dev, ino
		}
		sv.entry.Problems = statefile.FromTracked(sn.snap.Tracked)
		// Counts past alert_after_cycles+1 change nothing: capping them
		// keeps a spool whose problems stay from rewriting every cycle.
		capped := make([]statefile.Problem, len(sv.entry.Problems))
		copy(capped, sv.entry.Problems)
		for i := range capped {
			capped[i].Count = min(capped[i].Count, sn.r.cfg.AlertAfterCycles+1)
		}
		sv.entry.Problems = capped
		sv.enc, _ = json.Marshal(sv.entry)
		if prev == nil || !bytes.Equal(prev.enc, sv.enc) {
			changed = true
		}
		next[sn.name] = sv
	}
	for name := range c.saved {
		if _, ok := next[name]; !ok {
			changed = true
		}
	}
	refresh := c.opts.StateMaxAge > 0 && c.now().Sub(c.lastSave) >= c.opts.StateMaxAge/4
	if !changed && !refresh {
		return
	}
	sf := &statefile.File{Version: statefile.Version, Written: c.now().UTC(), Spools: map[string]statefile.Spool{}}
	// The smallest states first, while they fit the budget: a spool
	// flooded with problems loses its own saved state, not the others'.
	names := make([]string, 0, len(next))
	for name, sv := range next {
		if sv.entry.Ino != 0 { // else its directory cannot be identified: nothing to restore it by
			names = append(names, name)
		}
	}
	slices.SortFunc(names, func(a, b string) int {
		return cmp.Or(cmp.Compare(len(next[a].enc), len(next[b].enc)), cmp.Compare(a, b))
	})
	var omitted []string
	used := 0
	for _, name := range names {
		key, _ := json.Marshal(name)
		size := len(next[name].enc) + len(key) + 2 // its key, colon, comma
		if used+size > c.stateBudget {
			omitted = append(omitted, name)
			continue
		}
		used += size
		sf.Spools[name] = next[name].entry
	}
	if o := strings.Join(omitted, ", "); o != c.omitted {
		c.omitted = o
		if o != "" {
			c.logger.Warn("leaving the largest spools' alert state out of the state file, which would be too large to read: after a restart their alerts start afresh", "path", c.opts.StatePath, "spools", o)
		}
	}
	if err := statefile.Write(c.opts.StatePath, sf); err != nil {
		if msg := err.Error(); msg != c.saveErr {
			c.saveErr = msg
			c.logger.Warn("cannot write the state file", "path", c.opts.StatePath, "err", err)
		}
		return // c.saved unchanged: try again next time
	}
	if c.saveErr != "" {
		c.logger.Info("state file written again", "path", c.opts.StatePath)
		c.saveErr = ""
	}
	c.saved = next
	c.lastSave = c.now()
}

// logEvents logs one spool's batch of events to Options.EventLog,
// aggregated by type, kind and directory, in the batch's order (ends
// before starts).
func (c *Collector) logEvents(spool string, events []monitor.Event) {
	if c.opts.EventLog == nil || len(events) == 0 {
		return
	}
	type group struct {
		typ   monitor.EventType
		kind  monitor.Kind
		dir   monitor.Dir
		n     int
		names []string
	}
	type key struct {
		typ  monitor.EventType
		kind monitor.Kind
		dir  monitor.Dir
	}
	var groups []*group
	byKey := map[key]*group{}
	for _, ev := range events {
		k := key{typ: ev.Type, kind: ev.Problem.Kind, dir: ev.Problem.Dir}
		g := byKey[k]
		if g == nil {
			g = &group{typ: k.typ, kind: k.kind, dir: k.dir}
			byKey[k] = g
			groups = append(groups, g)
		}
		g.n++
		if len(g.names) < EventLogNames {
			g.names = append(g.names, strconv.QuoteToASCII(ev.Problem.Name))
		}
	}
	for _, g := range groups {
		names := strings.Join(g.names, " ")
		if g.n > len(g.names) {
			names += " …"
		}
		attrs := []any{"spool", spool, "kind", string(g.kind), "dir", string(g.dir.Kind), "queue", g.dir.Queue, "count", g.n, "names", names}
		if g.typ == monitor.Start {
			c.opts.EventLog.Warn("spool problems started", attrs...)
		} else {
			c.opts.EventLog.Info("spool problems ended", attrs...)
		}
	}
}

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spool-agent/spool-agent/internal/termsafe"
	"github.com/spool-agent/spool-agent/spool"
)

// openSpool opens the spool at dir for the operator subcommands.
func (m *Main) openSpool(dir string, o spool.Options) (*spool.Spool, error) {
	o.Now = m.Now
	if m.cli != nil {
		o.MaxMetadataSize = int64(m.cli.MaxMetadataSize)
	}
	return spool.Open(dir, &o)
}

// InitCmd creates a spool or adds queues to one.
type InitCmd struct {
	Dir   string   `arg:"" help:"The spool directory (created if missing, one level like mkdir)."`
	Queue []string `placeholder:"QUEUE" help:"A queue to create (repeatable)."`
	QuietFlag
}

func (c *InitCmd) run(_ context.Context, m *Main) error {
	for _, q := range c.Queue {
		if err := validQueue(q); err != nil {
			return err
		}
	}
	var before []string
	existed := false
	if s, err := spool.Open(c.Dir, &spool.Options{ReadOnly: true}); err == nil {
		existed, before = true, s.Queues()
	}
	s, err := spool.Create(c.Dir, c.Queue, &spool.Options{Now: m.Now})
	if err != nil {
		return err
	}
	if c.Quiet {
		return nil
	}
	var added []string
	for _, q := range s.Queues() {
		if !slices.Contains(before, q) {
			added = append(added, q)
		}
	}
	switch {
	case !existed:
		_, err = fmt.Fprintf(m.Stdout, "created spool %s (queues: %s)\n", termsafe.Name(s.Dir()), queueList(s.Queues()))
	case len(added) > 0:
		_, err = fmt.Fprintf(m.Stdout, "spool %s: added queues %s (queues: %s)\n", termsafe.Name(s.Dir()), queueList(added), queueList(s.Queues()))
	default:
		_, err = fmt.Fprintf(m.Stdout, "spool %s exists, nothing to add (queues: %s)\n", termsafe.Name(s.Dir()), queueList(s.Queues()))
	}
	return err
}

// queueList is a list of queues for a text line: escaped, comma-separated.
func queueList(queues []string) string {
	if len(queues) == 0 {
		return "none"
	}
	out := make([]string, len(queues))
	for i, q := range queues {
		out[i] = termsafe.Name(q)
	}
	return strings.Join(out, ", ")
}

// QuietFlag is the -q flag of the commands that print a line on success.
type QuietFlag struct {
	Quiet bool `short:"q" help:"Print nothing on success."`
}

// DryRunFlag is the --dry-run flag of the commands that change a spool.
type DryRunFlag struct {
	DryRun bool `help:"Say what would be done, and change nothing."`
}

// unknownQueue is the error for a queue the spool does not have; it lists
// the queues it has.
func unknownQueue(s *spool.Spool, q string) error {
	if err := validQueue(q); err != nil {
		return err
	}
	return fmt.Errorf("%w %q in spool %s (queues: %s)", spool.ErrUnknownQueue, q, s.Dir(), queueList(s.Queues()))
}

// EnqueueCmd adds one entry through the library's full protocol.
type EnqueueCmd struct {
	Dir          string `arg:"" help:"The spool directory."`
	Queue        string `arg:"" help:"The queue to enqueue into."`
	Name         string `placeholder:"NAME" help:"Use this entry name instead of generating one; refused if it is in use."`
	Metadata     string `xor:"metadata" placeholder:"STRING" help:"The entry's metadata."`
	MetadataFile string `xor:"metadata" placeholder:"FILE|-" help:"Read the entry's metadata from FILE, or from standard input for -."`
	DataFile     string `placeholder:"FILE|-" help:"Read the entry's payload from FILE, or from standard input for - (default: empty payload)."`
	Durability   string `default:"${durability}" enum:"none,files,full" placeholder:"LEVEL" help:"What to fsync before returning: none, files or full (files and directories; default: ${default})."`
}

func (c *EnqueueCmd) run(ctx context.Context, m *Main) error {
	if c.MetadataFile == "-" && c.DataFile == "-" {
		return errors.New("--metadata-file and --data-file cannot both read standard input")
	}
	dur, err := spool.ParseDurability(c.Durability)
	if err != nil {
		return err
	}
	if c.Name != "" {
		if err := spool.ValidateName(c.Name); err != nil {
			return fmt.Errorf("--name: %w", err)
		}
	}
	meta := []byte(c.Metadata)
	if c.MetadataFile != "" {
		if meta, err = m.readInput(c.MetadataFile); err != nil {
			return fmt.Errorf("--metadata-file: %w", err)
		}
	}
	var data io.Reader
	switch c.DataFile {
	case "":
	case "-":
		data = m.Stdin
	default:
		f, err := os.Open(c.DataFile)
		if err != nil {
			return fmt.Errorf("--data-file: %w", err)
		}
		defer f.Close()
		data = f
	}
	s, err := m.openSpool(c.Dir, spool.Options{Durability: dur})
	if err != nil {
		return err
	}
	if !s.HasQueue(c.Queue) {
		return unknownQueue(s, c.Queue)
	}
	name, err := s.Enqueue(ctx, c.Queue, meta, data, spool.EnqueueOptions{Name: c.Name})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(m.Stdout, name)
	return err
}

// readInput reads all of a file, or of standard input for "-", up to
// --max-metadata-size.
func (m *Main) readInput(path string) ([]byte, error) {
	r := m.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	limit := int64(m.cli.MaxMetadataSize)
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err == nil && int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: more than --max-metadata-size %v", spool.ErrTooLarge, m.cli.MaxMetadataSize)
	}
	return b, err
}

// MvCmd moves entries to another queue.
type MvCmd struct {
	Dir   string   `arg:"" help:"The spool directory."`
	Names []string `arg:"" name:"name" help:"The entries' names; - reads names from standard input, one per line (blank lines ignored)."`
	To    string   `required:"" placeholder:"QUEUE" help:"The destination queue."`
	DryRunFlag
}

// maxRaceRetries bounds the retries of mv and rm when the entry moves
// between finding it and claiming it.
const maxRaceRetries = 3

func (c *MvCmd) run(ctx context.Context, m *Main) error {
	s, err := m.openSpool(c.Dir, spool.Options{})
	if err != nil {
		return err
	}
	if !s.HasQueue(c.To) {
		return fmt.Errorf("--to: %w", unknownQueue(s, c.To))
	}
	return m.eachName(ctx, "mv", c.Dir, c.Names, func(name string) (string, error) {
		return c.moveOne(s, name)
	})
}

// moveOne moves entry name to c.To and returns the line that says so
// ("" when only several names are reported).
func (c *MvCmd) moveOne(s *spool.Spool, name string) (string, error) {
	for attempt := 0; ; attempt++ {
		q, err := findWaiting(s, name)
		if err != nil {
			return "", err
		}
		if c.DryRun {
			return fmt.Sprintf("would move %s from %s to %s", termsafe.Name(name), termsafe.Name(q), termsafe.Name(c.To)), nil
		}
		err = s.Move(q, name, c.To)
		// A worker (or another operator) moved the entry between Find
		// and the claim: look for it again.
		if errors.Is(err, spool.ErrNotFound) && attempt < maxRaceRetries {
			continue
		}
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("moved %s from %s to %s", termsafe.Name(name), termsafe.Name(q), termsafe.Name(c.To)), nil
	}
}

// eachName runs do on every name of names, in order, with "-" standing
// for the names on standard input (one per line, blank lines ignored; so
// a name with a newline cannot come that way). One name alone behaves as
// before several were accepted: its error is the command's, and only a
// dry run prints a line. Otherwise every name gets one line, on stdout
// when done and on stderr when it failed; a failure does not stop the
// others, and the exit status is 1 if any failed.
func (m *Main) eachName(ctx context.Context, cmd, dir string, names []string, do func(string) (string, error)) error {
	if len(names) == 1 && names[0] != "-" {
		line, err := do(names[0])
		if err != nil {
			return err
		}
		if strings.HasPrefix(line, "would ") {
			_, err = fmt.Fprintln(m.Stdout, line)
		}
		return err
	}
	if n := countOf(names, "-"); n > 1 {
		return &exitError{code: exitUsage, err: fmt.Errorf("%s: - (standard input) given %d times", cmd, n)}
	}
	p := m.startProgress(cmd+" "+termsafe.Name(dir), 0)
	defer p.finish()
	w, flush := m.textWriter()
	failed := 0
	one := func(name string) {
		p.add(1)
		line, err := do(name)
		if err != nil {
			failed++
			flush() // keep stdout and stderr in order on a terminal
			fmt.Fprintln(m.Stderr, "spool-agent: "+cmd+" "+termsafe.Name(name)+": "+termsafe.Line(oneLine(err.Error())))
			return
		}
		w.WriteString(line)
		w.WriteByte('\n')
	}
	for _, n := range names {
		if err := ctx.Err(); err != nil {
			flush()
			return err
		}
		if n != "-" {
			one(n)
			continue
		}
		if err := readNames(ctx, m.Stdin, one); err != nil {
			flush()
			return fmt.Errorf("%s: standard input: %w", cmd, err)
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if failed > 0 {
		return &exitError{code: exitFailure}
	}
	return nil
}

func countOf(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}

// maxNameLine bounds a line of names on standard input: a name is a file
// name (255 bytes on Linux), so a longer line is not one.
const maxNameLine = 4096

// readNames calls f with each non-blank line of r, without its newline.
func readNames(ctx context.Context, r io.Reader, f func(string)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 512), maxNameLine)
	for sc.Scan() {
		if err := ctx.Err(); err != nil {
			return err
		}
		if line := sc.Text(); line != "" {
			f(line)
		}
	}
	if errors.Is(sc.Err(), bufio.ErrTooLong) {
		return fmt.Errorf("a line of more than %d bytes is not an entry name", maxNameLine)
	}
	return sc.Err()
}

// findWaiting finds the queue in which entry name waits; a checked-out
// entry is refused, since a worker holds it.
func findWaiting(s *spool.Spool, name string) (string, error) {
	q, checkedOut, err := s.Find(name)
	if err != nil {
		return "", err
	}
	if checkedOut {
		return "", fmt.Errorf("%w: %s in %s/%s: a worker holds it (spool-agent recover returns stale checkouts)", spool.ErrCheckedOut, name, s.Dir(), q)
	}
	return q, nil
}

// RmCmd removes entries.
type RmCmd struct {
	Dir   string   `arg:"" help:"The spool directory."`
	Names []string `arg:"" name:"name" help:"The entries' names; - reads names from standard input, one per line (blank lines ignored)."`
	DryRunFlag
}

func (c *RmCmd) run(ctx context.Context, m *Main) error {
	s, err := m.openSpool(c.Dir, spool.Options{})
	if err != nil {
		return err
	}
	return m.eachName(ctx, "rm", c.Dir, c.Names, func(name string) (string, error) {
		return c.removeOne(s, name)
	})
}

func (c *RmCmd) removeOne(s *spool.Spool, name string) (string, error) {
	var from string
	for attempt := 0; ; attempt++ {
		q, err := findWaiting(s, name)
		if err != nil {
			if attempt > 0 && errors.Is(err, spool.ErrNotFound) {
				return "removed " + termsafe.Name(name) + " from " + termsafe.Name(from), nil // or someone else did meanwhile
			}
			return "", err
		}
		if attempt == 0 {
			// The copies of a duplicated entry share one payload and
			// registry file: removing one would take them from the others.
			// The queues are looked at one after another, so an entry that
			// a worker moves meanwhile can show in two: it must show so
			// in every look.
			p, err := presence(s, name)
			for look := 1; err == nil && len(p.places) > 1 && look < maxRaceRetries; look++ {
				p, err = presence(s, name)
			}
			if err != nil {
				return "", err
			}
			if len(p.places) > 1 {
				return "", fmt.Errorf("%w: %s is in %s (duplicated; its copies share one payload): left in place, spool-agent fsck reports it", spool.ErrExists, termsafe.Name(name), p.placesText())
			}
		}
		if c.DryRun {
			return fmt.Sprintf("would remove %s from %s", termsafe.Name(name), termsafe.Name(q)), nil
		}
		if err := s.Remove(q, name); err != nil {
			return "", err
		}
		from = q
		// Remove succeeds when the entry has left q; make sure it did
		// not just move to another queue meanwhile.
		if _, _, err := s.Find(name); errors.Is(err, spool.ErrNotFound) || attempt >= maxRaceRetries {
			return "removed " + termsafe.Name(name) + " from " + termsafe.Name(q), nil
		}
	}
}

// RecoverCmd returns stale checkouts to their queues.
type RecoverCmd struct {
	Dir            string        `arg:"" help:"The spool directory."`
	OlderThan      time.Duration `required:"" placeholder:"DURATION" help:"Return checked-out entries whose checkout is older than this (by mtime) and that no live worker of this library holds. Below 1m it is refused unless --workers-stopped, because workers of other implementations (the OCaml multispool) take no lock and only the age protects their checkouts."`
	WorkersStopped bool          `help:"Every worker of another implementation is stopped (as async_smtp does at start-up): allow any --older-than, 0 included."`
	DryRunFlag
	QuietFlag
}

func (c *RecoverCmd) run(ctx context.Context, m *Main) error {
	if c.OlderThan < 0 {
		return fmt.Errorf("--older-than %v: negative duration", c.OlderThan)
	}
	if c.OlderThan < spool.MinRecoverAge && !c.WorkersStopped {
		return &exitError{code: exitUsage, err: fmt.Errorf("--older-than %v is below %v: workers of other implementations take no lock, so a young checkout may be held by a live one; give --workers-stopped if every such worker is stopped", c.OlderThan, spool.MinRecoverAge)}
	}
	s, err := m.openSpool(c.Dir, spool.Options{ReadOnly: c.DryRun})
	if err != nil {
		return err
	}
	p := m.startProgress("recover "+termsafe.Name(c.Dir), 0)
	var recovered []spool.Recovered
	if c.DryRun {
		recovered, err = staleCheckouts(s, m.Now(), c.OlderThan)
	} else {
		recovered, err = s.Recover(ctx, c.OlderThan, spool.RecoverOptions{WorkersStopped: c.WorkersStopped})
	}
	p.finish()
	if errors.Is(err, spool.ErrRecoverTooYoung) {
		return &exitError{code: exitUsage, err: err}
	}
	verb := "recovered"
	if c.DryRun {
		verb = "would recover"
	}
	w := bufio.NewWriter(m.Stdout)
	for _, r := range recovered {
		fmt.Fprintf(w, "%s %s to %s (checked out at %s)\n", verb, termsafe.Name(r.Name), termsafe.Name(r.Queue), r.ModTime.UTC().Format(time.RFC3339))
	}
	if err == nil && !c.Quiet {
		n := "1 entry"
		if len(recovered) != 1 {
			n = fmt.Sprintf("%d entries", len(recovered))
		}
		fmt.Fprintf(w, "%s %s in %s (checked out for more than %v", verb, n, termsafe.Name(s.Dir()), c.OlderThan)
		if c.DryRun {
			w.WriteString(", unless a live worker of this library holds it")
		}
		w.WriteString(")\n")
	}
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	return err
}

// staleCheckouts lists what Recover would take: the checkouts older than
// olderThan (a live worker of this library may hold some of them, and
// Recover leaves those).
func staleCheckouts(s *spool.Spool, now time.Time, olderThan time.Duration) ([]spool.Recovered, error) {
	var out []spool.Recovered
	for _, q := range s.Queues() {
		names, err := s.ListCheckedOut(q)
		if err != nil {
			return out, err
		}
		for _, n := range names {
			info, err := s.Stat(q, n)
			switch {
			case errors.Is(err, spool.ErrNotFound), errors.Is(err, spool.ErrInvalidName):
				continue
			case err != nil:
				return out, err
			}
			if info.CheckedOut && now.Sub(info.ModTime) > olderThan {
				out = append(out, spool.Recovered{Queue: q, Name: n, ModTime: info.ModTime})
			}
		}
	}
	return out, nil
}

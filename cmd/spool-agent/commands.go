package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spool-agent/spool-agent/spool"
)

// openSpool opens the spool at dir for the operator subcommands.
func (m *Main) openSpool(dir string, o spool.Options) (*spool.Spool, error) {
	o.Now = m.Now
	return spool.Open(dir, &o)
}

// InitCmd creates a spool or adds queues to one.
type InitCmd struct {
	Dir   string   `arg:"" help:"The spool directory (created if missing, one level like mkdir)."`
	Queue []string `placeholder:"QUEUE" help:"A queue to create (repeatable)."`
}

func (c *InitCmd) run(_ context.Context, m *Main) error {
	for _, q := range c.Queue {
		if err := validQueue(q); err != nil {
			return err
		}
	}
	_, err := spool.Create(c.Dir, c.Queue, &spool.Options{Now: m.Now})
	return err
}

// EnqueueCmd adds one entry through the library's full protocol.
type EnqueueCmd struct {
	Dir          string `arg:"" help:"The spool directory."`
	Queue        string `arg:"" help:"The queue to enqueue into."`
	Name         string `placeholder:"NAME" help:"Use this entry name instead of generating one; refused if it is in use."`
	Metadata     string `xor:"metadata" placeholder:"STRING" help:"The entry's metadata."`
	MetadataFile string `xor:"metadata" placeholder:"FILE|-" help:"Read the entry's metadata from FILE, or from standard input for -."`
	DataFile     string `placeholder:"FILE|-" help:"Read the entry's payload from FILE, or from standard input for - (default: empty payload)."`
	Durability   string `default:"full" enum:"none,files,full" placeholder:"LEVEL" help:"What to fsync before returning: none, files or full (files and directories; default: ${default})."`
}

func (c *EnqueueCmd) run(_ context.Context, m *Main) error {
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
	name, err := s.Enqueue(c.Queue, meta, data, spool.EnqueueOptions{Name: c.Name})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(m.Stdout, name)
	return err
}

// readInput reads all of a file, or of standard input for "-".
func (m *Main) readInput(path string) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(m.Stdin)
	}
	return os.ReadFile(path)
}

// MvCmd moves an entry to another queue.
type MvCmd struct {
	Dir  string `arg:"" help:"The spool directory."`
	Name string `arg:"" help:"The entry's name."`
	To   string `required:"" placeholder:"QUEUE" help:"The destination queue."`
}

// maxRaceRetries bounds the retries of mv and rm when the entry moves
// between finding it and claiming it.
const maxRaceRetries = 3

func (c *MvCmd) run(_ context.Context, m *Main) error {
	s, err := m.openSpool(c.Dir, spool.Options{})
	if err != nil {
		return err
	}
	if !s.HasQueue(c.To) {
		if err := validQueue(c.To); err != nil {
			return fmt.Errorf("--to: %w", err)
		}
		return fmt.Errorf("--to: %w %q in spool %s (queues: %v)", spool.ErrUnknownQueue, c.To, s.Dir(), s.Queues())
	}
	for attempt := 0; ; attempt++ {
		q, err := findWaiting(s, c.Name)
		if err != nil {
			return err
		}
		err = s.Move(q, c.Name, c.To)
		// A worker (or another operator) moved the entry between Find
		// and the claim: look for it again.
		if errors.Is(err, spool.ErrNotFound) && attempt < maxRaceRetries {
			continue
		}
		return err
	}
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

// RmCmd removes an entry.
type RmCmd struct {
	Dir  string `arg:"" help:"The spool directory."`
	Name string `arg:"" help:"The entry's name."`
}

func (c *RmCmd) run(_ context.Context, m *Main) error {
	s, err := m.openSpool(c.Dir, spool.Options{})
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		q, err := findWaiting(s, c.Name)
		if err != nil {
			if attempt > 0 && errors.Is(err, spool.ErrNotFound) {
				return nil // someone else removed it meanwhile
			}
			return err
		}
		if err := s.Remove(q, c.Name); err != nil {
			return err
		}
		// Remove succeeds when the entry has left q; make sure it did
		// not just move to another queue meanwhile.
		if _, _, err := s.Find(c.Name); errors.Is(err, spool.ErrNotFound) || attempt >= maxRaceRetries {
			return nil
		}
	}
}

// RecoverCmd returns stale checkouts to their queues.
type RecoverCmd struct {
	Dir       string        `arg:"" help:"The spool directory."`
	OlderThan time.Duration `required:"" placeholder:"DURATION" help:"Return checked-out entries whose checkout is older than this (by mtime) and that no live worker of this library holds."`
}

func (c *RecoverCmd) run(_ context.Context, m *Main) error {
	if c.OlderThan < 0 {
		return fmt.Errorf("--older-than %v: negative duration", c.OlderThan)
	}
	s, err := m.openSpool(c.Dir, spool.Options{})
	if err != nil {
		return err
	}
	p := m.startProgress("recover "+c.Dir, 0)
	recovered, err := s.Recover(c.OlderThan, spool.RecoverOptions{})
	p.finish()
	for _, r := range recovered {
		fmt.Fprintf(m.Stdout, "recovered %s to %s (checked out at %s)\n", r.Name, r.Queue, r.ModTime.UTC().Format(time.RFC3339))
	}
	return err
}

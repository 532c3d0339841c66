package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spool-agent/spool-agent/spool"
)

// Entry states as ls and show print them.
const (
	stateWaiting    = "waiting"
	stateCheckedOut = "checked_out"
	stateInvalid    = "invalid" // a file whose name the library refuses
)

// LsCmd lists entries.
type LsCmd struct {
	Dir        string `arg:"" help:"The spool directory."`
	Queue      string `arg:"" optional:"" help:"Only this queue (default: every queue)."`
	CheckedOut bool   `xor:"which" help:"List the checked-out entries instead of the waiting ones."`
	All        bool   `xor:"which" help:"List the waiting and the checked-out entries."`
	OutputFlag
}

// listing is one directory to list: a queue's waiting or checked-out entries.
type listing struct {
	queue      string
	checkedOut bool
	names      []string
}

// queuesOf returns the spool's queues, or just queue (checked) if given.
func queuesOf(s *spool.Spool, queue string) ([]string, error) {
	if queue == "" {
		return s.Queues(), nil
	}
	if !s.HasQueue(queue) {
		if err := validQueue(queue); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w %q in spool %s (queues: %v)", spool.ErrUnknownQueue, queue, s.Dir(), s.Queues())
	}
	return []string{queue}, nil
}

// listEntries lists the names of the entries of the given queues: waiting
// ones if waiting, checked-out ones if checkedOut.
func listEntries(s *spool.Spool, queues []string, waiting, checkedOut bool) ([]listing, int, error) {
	var out []listing
	total := 0
	for _, q := range queues {
		if waiting {
			names, err := s.List(q)
			if err != nil {
				return nil, 0, err
			}
			out = append(out, listing{queue: q, names: names})
			total += len(names)
		}
		if checkedOut {
			names, err := s.ListCheckedOut(q)
			if err != nil {
				return nil, 0, err
			}
			out = append(out, listing{queue: q, checkedOut: true, names: names})
			total += len(names)
		}
	}
	return out, total, nil
}

// entryJSON is an entry in the JSON output of ls and show.
type entryJSON struct {
	Name           string  `json:"name"`
	NameBase64     string  `json:"name_base64,omitempty"` // the exact name, when it is not UTF-8 (name then has U+FFFD for the bad bytes)
	Queue          string  `json:"queue"`
	State          string  `json:"state"`
	MTime          string  `json:"mtime,omitempty"`         // absent for state invalid
	DataSize       *int64  `json:"data_size"`               // null when the payload is missing (or the state invalid)
	MetadataSize   *int64  `json:"metadata_size,omitempty"` // absent for state invalid
	Error          string  `json:"error,omitempty"`         // why the state is invalid
	DataPath       string  `json:"data_path,omitempty"`
	Metadata       *string `json:"metadata,omitempty"`        // show: when it is valid UTF-8
	MetadataBase64 *string `json:"metadata_base64,omitempty"` // show: otherwise
}

func newEntryJSON(info spool.EntryInfo) entryJSON {
	e := entryJSON{
		Name:         info.Name,
		NameBase64:   nameBase64(info.Name),
		Queue:        info.Queue,
		State:        stateOf(info),
		MTime:        info.ModTime.UTC().Format(time.RFC3339Nano),
		MetadataSize: &info.MetadataSize,
	}
	if info.DataSize >= 0 {
		size := info.DataSize
		e.DataSize = &size
	}
	return e
}

// nameBase64 returns name in base64 when it is not UTF-8, which JSON
// cannot carry exactly, and "" otherwise.
func nameBase64(name string) string {
	if utf8.ValidString(name) {
		return ""
	}
	return base64.StdEncoding.EncodeToString([]byte(name))
}

func stateOf(info spool.EntryInfo) string {
	if info.CheckedOut {
		return stateCheckedOut
	}
	return stateWaiting
}

func dataSize(info spool.EntryInfo) string {
	if info.DataSize < 0 {
		return "-"
	}
	return strconv.FormatInt(info.DataSize, 10)
}

func (c *LsCmd) run(_ context.Context, m *Main) error {
	s, err := m.openSpool(c.Dir, spool.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	queues, err := queuesOf(s, c.Queue)
	if err != nil {
		return err
	}
	listings, total, err := listEntries(s, queues, !c.CheckedOut, c.CheckedOut || c.All)
	if err != nil {
		return err
	}
	p := m.startProgress("ls "+c.Dir, int64(total))
	defer p.finish()

	w := bufio.NewWriterSize(m.Stdout, 64<<10)
	nameW, queueW := len("NAME"), len("QUEUE")
	if c.json() {
		b, _ := json.Marshal(s.Dir())
		fmt.Fprintf(w, "{\"spool\":%s,\"entries\":[", b)
	} else {
		for _, l := range listings {
			queueW = max(queueW, textWidth(l.queue))
			for _, n := range l.names {
				nameW = max(nameW, textWidth(n))
			}
		}
		fmt.Fprintf(w, "%-*s  %-*s  %-11s  %-20s  %s\n", nameW, "NAME", queueW, "QUEUE", "STATE", "MTIME", "SIZE")
	}
	first := true
	for _, l := range listings {
		for _, name := range l.names {
			p.add(1)
			var e entryJSON
			mtime, size := "-", "-"
			info, err := s.Stat(l.queue, name)
			switch {
			case errors.Is(err, spool.ErrNotFound):
				continue // removed since it was listed
			case errors.Is(err, spool.ErrInvalidName):
				// Made by hand or by other software: the library refuses
				// the name, but the operator sees the file.
				e = entryJSON{Name: name, NameBase64: nameBase64(name), Queue: l.queue, State: stateInvalid, Error: "invalid name (see spool-agent fsck)"}
			case err != nil:
				w.Flush()
				return err
			default:
				e = newEntryJSON(info)
				mtime, size = info.ModTime.UTC().Format(time.RFC3339), dataSize(info)
			}
			if c.json() {
				b, err := json.Marshal(e)
				if err != nil {
					return err
				}
				if !first {
					w.WriteByte(',')
				}
				w.WriteByte('\n')
				w.Write(b)
			} else {
				fmt.Fprintf(w, "%-*s  %-*s  %-11s  %-20s  %s\n", nameW, escapeName(name), queueW, escapeName(e.Queue), e.State, mtime, size)
			}
			first = false
		}
	}
	if c.json() {
		if !first {
			w.WriteByte('\n')
		}
		w.WriteString("]}\n")
	}
	return w.Flush()
}

// warnInvalid says on stderr how many entries shape skipped because the
// library refuses their names.
func warnInvalid(m *Main, n int) {
	switch {
	case n == 1:
		fmt.Fprintln(m.Stderr, "spool-agent: warning: skipped 1 entry whose name is invalid (spool-agent fsck lists the spool's problems)")
	case n > 1:
		fmt.Fprintf(m.Stderr, "spool-agent: warning: skipped %d entries whose names are invalid (spool-agent fsck lists the spool's problems)\n", n)
	}
}

// ShowCmd shows one entry.
type ShowCmd struct {
	Dir  string `arg:"" help:"The spool directory."`
	Name string `arg:"" help:"The entry's name."`
	OutputFlag
}

func (c *ShowCmd) run(_ context.Context, m *Main) error {
	s, err := m.openSpool(c.Dir, spool.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	q, _, err := s.Find(c.Name)
	if err != nil {
		return err
	}
	info, err := s.Stat(q, c.Name)
	if err != nil {
		return err
	}
	meta, err := s.ReadMetadata(q, c.Name)
	if err != nil {
		return err
	}
	if c.json() {
		e := newEntryJSON(info)
		e.DataPath = s.DataPath(c.Name)
		if utf8.Valid(meta) {
			str := string(meta)
			e.Metadata = &str
		} else {
			str := base64.StdEncoding.EncodeToString(meta)
			e.MetadataBase64 = &str
		}
		doc := struct {
			Spool string `json:"spool"`
			entryJSON
		}{s.Dir(), e}
		b, err := json.MarshalIndent(doc, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(m.Stdout, "%s\n", b)
		return err
	}
	var b strings.Builder
	field := func(k, v string) { fmt.Fprintf(&b, "%-10s %s\n", k+":", v) }
	field("name", escapeName(info.Name))
	field("queue", escapeName(info.Queue))
	field("state", stateOf(info))
	field("mtime", info.ModTime.UTC().Format(time.RFC3339Nano))
	if info.DataSize < 0 {
		field("data", "missing ("+escapeName(s.DataPath(c.Name))+")")
	} else {
		field("data", fmt.Sprintf("%d bytes (%s)", info.DataSize, escapeName(s.DataPath(c.Name))))
	}
	field("metadata", fmt.Sprintf("%d bytes", len(meta)))
	if len(meta) > 0 {
		text := strings.TrimSuffix(escapeText(meta), "\n")
		for _, line := range strings.Split(text, "\n") {
			b.WriteString("  " + line + "\n")
		}
	}
	_, err = fmt.Fprint(m.Stdout, b.String())
	return err
}

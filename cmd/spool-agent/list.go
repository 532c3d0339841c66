package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/spool-agent/spool-agent/internal/termsafe"
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
	Dir        string `arg:"" help:"The spool directory, or the name of a spool of the --config file."`
	Queue      string `arg:"" optional:"" help:"Only this queue (default: every queue)."`
	CheckedOut bool   `xor:"which" help:"List the checked-out entries instead of the waiting ones."`
	All        bool   `xor:"which" help:"List the waiting and the checked-out entries."`
	lsFilter
	Limit int  `placeholder:"N" help:"Stop after N entries (0: no limit)."`
	Count bool `help:"Print only the number of entries (with -o json: {\"count\": N})."`
	OutputFlag
}

// lsFilter is the selection of ls beyond queue and state; the filters
// combine with AND.
type lsFilter struct {
	OlderThan   time.Duration `placeholder:"DURATION" help:"Only entries whose file is older than this: now - mtime > DURATION (0: any)."`
	YoungerThan time.Duration `placeholder:"DURATION" help:"Only entries whose file is younger than this: now - mtime < DURATION (0: any)."`
	Match       string        `placeholder:"REGEX" help:"Only entries whose metadata matches this RE2 regular expression (bytes that are not UTF-8 match as U+FFFD). An entry with more than --max-metadata-size of metadata is skipped with a warning."`

	re *regexp.Regexp
}

// active reports whether any filter is set: then entries with an invalid
// name, which have no mtime or metadata to test, are left out.
func (f *lsFilter) active() bool { return f.OlderThan != 0 || f.YoungerThan != 0 || f.re != nil }

func (f *lsFilter) compile() error {
	if f.OlderThan < 0 || f.YoungerThan < 0 {
		return &exitError{code: exitUsage, err: fmt.Errorf("--older-than %v, --younger-than %v: negative duration", f.OlderThan, f.YoungerThan)}
	}
	if f.Match == "" {
		return nil
	}
	re, err := regexp.Compile(f.Match)
	if err != nil {
		return &exitError{code: exitUsage, err: fmt.Errorf("--match: %w", err)}
	}
	f.re = re
	return nil
}

// keep reports whether the entry described by info passes the filters.
// The age test comes first, since it costs no read. An entry whose
// metadata is larger than the spool's bound is reported on stderr and
// not kept; ReadMetadata reads at most that bound whatever stat says.
func (f *lsFilter) keep(m *Main, s *spool.Spool, info spool.EntryInfo, now time.Time) (bool, error) {
	age := now.Sub(info.ModTime)
	if f.OlderThan != 0 && !(age > f.OlderThan) {
		return false, nil
	}
	if f.YoungerThan != 0 && !(age < f.YoungerThan) {
		return false, nil
	}
	if f.re == nil {
		return true, nil
	}
	tooLarge := func() (bool, error) {
		fmt.Fprintf(m.Stderr, "spool-agent: warning: skipped %s in %s: %d bytes of metadata, more than --max-metadata-size %v (not matched)\n",
			termsafe.Name(info.Name), termsafe.Name(info.Queue), info.MetadataSize, m.cli.MaxMetadataSize)
		return false, nil
	}
	if info.MetadataSize > int64(m.cli.MaxMetadataSize) {
		return tooLarge()
	}
	meta, err := s.ReadMetadata(info.Queue, info.Name)
	switch {
	case errors.Is(err, spool.ErrTooLarge):
		return tooLarge() // it grew since the stat
	case errors.Is(err, spool.ErrNotFound):
		return false, nil // removed since it was listed
	case err != nil:
		return false, err
	}
	return f.re.Match(meta), nil
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
		return nil, unknownQueue(s, queue)
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
	Registry       *bool   `json:"registry,omitempty"`        // show: whether the registry file exists
	TmpSize        *int64  `json:"tmp_size,omitempty"`        // show of an incomplete name: size of .tmp/NAME
	Places         []place `json:"places,omitempty"`          // show of a duplicated entry: every queue file of the name
	Metadata       *string `json:"metadata,omitempty"`        // show: when it is valid UTF-8
	MetadataBase64 *string `json:"metadata_base64,omitempty"` // show: otherwise
}

func newEntryJSON(info spool.EntryInfo) entryJSON {
	e := entryJSON{
		Name:         info.Name,
		NameBase64:   termsafe.NameBase64(info.Name),
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

func (c *LsCmd) run(ctx context.Context, m *Main) error {
	dir, _, err := m.spoolArg(c.Dir)
	if err != nil {
		return err
	}
	c.Dir = dir
	if c.Limit < 0 {
		return &exitError{code: exitUsage, err: fmt.Errorf("--limit %d: negative", c.Limit)}
	}
	if err := c.compile(); err != nil {
		return err
	}
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
	p := m.startProgress("ls "+termsafe.Name(c.Dir), int64(total))
	defer p.finish()

	w, flush := m.textWriter()
	if c.json() {
		w, flush = m.jsonWriter()
	}
	now := m.Now()
	nameW, queueW := len("NAME"), len("QUEUE")
	switch {
	case c.Count:
	case c.json():
		b, _ := json.Marshal(s.Dir())
		fmt.Fprintf(w, "{\"spool\":%s,\"entries\":[", b)
	default:
		for _, l := range listings {
			queueW = max(queueW, textWidth(l.queue))
			for _, n := range l.names {
				nameW = max(nameW, textWidth(n))
			}
		}
		fmt.Fprintf(w, "%-*s  %-*s  %-11s  %-20s  %s\n", nameW, "NAME", queueW, "QUEUE", "STATE", "MTIME", "SIZE")
	}
	first, n := true, 0
	for _, l := range listings {
		for _, name := range l.names {
			if c.Limit > 0 && n >= c.Limit {
				break
			}
			if err := ctx.Err(); err != nil {
				flush()
				return err
			}
			p.add(1)
			var e entryJSON
			mtime, size := "-", "-"
			info, err := s.Stat(l.queue, name)
			switch {
			case errors.Is(err, spool.ErrNotFound):
				continue // removed since it was listed
			case errors.Is(err, spool.ErrInvalidName):
				if c.active() {
					continue
				}
				// Made by hand or by other software: the library refuses
				// the name, but the operator sees the file.
				e = entryJSON{Name: name, NameBase64: termsafe.NameBase64(name), Queue: l.queue, State: stateInvalid, Error: "invalid name (see spool-agent fsck)"}
			case err != nil:
				flush()
				return err
			default:
				ok, err := c.keep(m, s, info, now)
				if err != nil {
					flush()
					return err
				}
				if !ok {
					continue
				}
				e = newEntryJSON(info)
				mtime, size = info.ModTime.UTC().Format(time.RFC3339), dataSize(info)
			}
			n++
			switch {
			case c.Count:
				continue
			case c.json():
				b, err := json.Marshal(e)
				if err != nil {
					return err
				}
				if !first {
					w.WriteByte(',')
				}
				w.WriteByte('\n')
				w.Write(b)
			default:
				fmt.Fprintf(w, "%-*s  %-*s  %-11s  %-20s  %s\n", nameW, termsafe.Name(name), queueW, termsafe.Name(e.Queue), e.State, mtime, size)
			}
			first = false
		}
	}
	switch {
	case c.Count && c.json():
		fmt.Fprintf(w, "{\"count\": %d}\n", n)
	case c.Count:
		fmt.Fprintf(w, "%d\n", n)
	case c.json():
		if !first {
			w.WriteByte('\n')
		}
		w.WriteString("]}\n")
	}
	return flush()
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

// stateIncomplete is show's state of a name that no queue holds but that
// has a registry file, a payload or a temporary file.
const stateIncomplete = "incomplete"

// place is one directory of a spool that holds a name.
type place struct {
	Queue      string `json:"queue"`
	CheckedOut bool   `json:"checked_out"`
}

// namePresence is what exists of a name in a spool, whole entry or not.
type namePresence struct {
	places   []place // queue files, waiting or checked out, in queue order
	registry bool
	regMTime time.Time
	dataSize int64 // -1 when there is no payload
	tmpSize  int64 // -1 when there is no file of that name in .tmp
}

// presence looks for name in every directory of the spool at dir, through
// an os.Root so that a directory swapped for a symlink cannot make it look
// outside the spool.
func presence(s *spool.Spool, name string) (namePresence, error) {
	p := namePresence{dataSize: -1, tmpSize: -1}
	root, err := os.OpenRoot(s.Dir())
	if err != nil {
		return p, err
	}
	defer root.Close()
	lstat := func(rel string) (fs.FileInfo, bool, error) {
		fi, err := root.Lstat(rel)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil, false, nil
		}
		return fi, err == nil, err
	}
	for _, q := range s.Queues() {
		for _, co := range []bool{false, true} {
			rel := path.Join(q, name)
			if co {
				rel = path.Join(q, spool.CheckoutDir, name)
			}
			_, ok, err := lstat(rel)
			if err != nil {
				return p, err
			}
			if ok {
				p.places = append(p.places, place{Queue: q, CheckedOut: co})
			}
		}
	}
	fi, ok, err := lstat(path.Join(spool.RegistryDir, name))
	if err != nil {
		return p, err
	}
	if ok {
		p.registry, p.regMTime = true, fi.ModTime()
	}
	if fi, ok, err = lstat(path.Join(spool.DataDir, name)); err != nil {
		return p, err
	} else if ok {
		p.dataSize = fi.Size()
	}
	if fi, ok, err = lstat(path.Join(spool.TmpDir, name)); err != nil {
		return p, err
	} else if ok {
		p.tmpSize = fi.Size()
	}
	return p, nil
}

func (p namePresence) placesText() string {
	out := make([]string, len(p.places))
	for i, pl := range p.places {
		out[i] = termsafe.Name(pl.Queue)
		if pl.CheckedOut {
			out[i] += "/" + spool.CheckoutDir
		}
	}
	return strings.Join(out, ", ")
}

func (c *ShowCmd) run(_ context.Context, m *Main) error {
	s, err := m.openSpool(c.Dir, spool.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	if c.Name == "" || c.Name == "." || c.Name == ".." || c.Name == spool.CheckoutDir || strings.ContainsAny(c.Name, "/\x00") {
		return fmt.Errorf("entry: %w %q", spool.ErrInvalidName, c.Name)
	}
	pr, err := presence(s, c.Name)
	if err != nil {
		return err
	}
	if len(pr.places) == 0 {
		if !pr.registry && pr.dataSize < 0 && pr.tmpSize < 0 {
			return fmt.Errorf("%w: %s in %s (no queue, registry, payload or temporary file of that name)", spool.ErrNotFound, c.Name, s.Dir())
		}
		return c.showIncomplete(m, s, pr)
	}
	q, _, err := s.Find(c.Name)
	if err != nil {
		return err
	}
	info, err := s.Stat(q, c.Name)
	if err != nil {
		return err
	}
	tooLarge := func() error {
		return fmt.Errorf("%w: %s in %s/%s claims %d bytes of metadata, more than --max-metadata-size %v (a sparse or runaway file? spool-agent ls and fsck still list it)",
			spool.ErrTooLarge, c.Name, s.Dir(), q, info.MetadataSize, m.cli.MaxMetadataSize)
	}
	if info.MetadataSize > int64(m.cli.MaxMetadataSize) {
		return tooLarge()
	}
	meta, err := s.ReadMetadata(q, c.Name)
	if errors.Is(err, spool.ErrTooLarge) {
		return tooLarge()
	}
	if err != nil {
		return err
	}
	if c.json() {
		e := newEntryJSON(info)
		e.DataPath = s.DataPath(c.Name)
		e.Registry = &pr.registry
		if len(pr.places) > 1 {
			e.Places = pr.places
		}
		doc := struct {
			Spool string `json:"spool"`
			entryJSON
		}{s.Dir(), e}
		return m.writeJSONWithMetadata(doc, meta)
	}
	w, flush := m.textWriter()
	field := func(k, v string) { fmt.Fprintf(w, "%-10s %s\n", k+":", v) }
	field("name", termsafe.Name(info.Name))
	field("queue", termsafe.Name(info.Queue))
	field("state", stateOf(info))
	if len(pr.places) > 1 {
		field("places", pr.placesText()+" (duplicated: spool-agent fsck reports it)")
	}
	if !pr.registry {
		field("registry", "missing (not claimable: spool-agent fsck reports it)")
	}
	field("mtime", info.ModTime.UTC().Format(time.RFC3339Nano))
	if info.DataSize < 0 {
		field("data", "missing ("+termsafe.Name(s.DataPath(c.Name))+")")
	} else {
		field("data", fmt.Sprintf("%d bytes (%s)", info.DataSize, termsafe.Name(s.DataPath(c.Name))))
	}
	field("metadata", fmt.Sprintf("%d bytes", len(meta)))
	if len(meta) > 0 {
		if err := writeIndented(w, meta); err != nil {
			return err
		}
	}
	return flush()
}

// showIncomplete shows a name that no queue holds but of which a registry
// file, a payload or a temporary file exists (a producer that died while
// enqueueing leaves such names).
func (c *ShowCmd) showIncomplete(m *Main, s *spool.Spool, pr namePresence) error {
	if c.json() {
		e := entryJSON{Name: c.Name, NameBase64: termsafe.NameBase64(c.Name), State: stateIncomplete, Registry: &pr.registry, DataPath: s.DataPath(c.Name)}
		if pr.dataSize >= 0 {
			e.DataSize = &pr.dataSize
		}
		if pr.tmpSize >= 0 {
			e.TmpSize = &pr.tmpSize
		}
		doc := struct {
			Spool string `json:"spool"`
			entryJSON
		}{s.Dir(), e}
		return m.writeJSONWithMetadata(doc, nil)
	}
	w, flush := m.textWriter()
	field := func(k, v string) { fmt.Fprintf(w, "%-10s %s\n", k+":", v) }
	field("name", termsafe.Name(c.Name))
	field("state", stateIncomplete+" (no queue holds it: not an entry; spool-agent fsck says what to do)")
	if pr.registry {
		field("registry", "present (reserved at "+pr.regMTime.UTC().Format(time.RFC3339Nano)+")")
	} else {
		field("registry", "missing")
	}
	if pr.dataSize < 0 {
		field("data", "missing")
	} else {
		field("data", fmt.Sprintf("%d bytes (%s; may be partial)", pr.dataSize, termsafe.Name(s.DataPath(c.Name))))
	}
	if pr.tmpSize >= 0 {
		field("tmp", fmt.Sprintf("%d bytes (%s)", pr.tmpSize, termsafe.Name(filepath.Join(s.Dir(), spool.TmpDir, c.Name))))
	}
	return flush()
}

// writeIndented writes metadata escaped (escapeText), each line indented by
// two spaces, streaming.
func writeIndented(w *bufio.Writer, meta []byte) error {
	nl := []byte("\n")
	meta = bytes.TrimSuffix(meta, nl)
	for {
		line, rest, more := bytes.Cut(meta, nl)
		w.WriteString("  ")
		termsafe.EscapeTo(w, line, true, true)
		w.WriteByte('\n')
		if !more {
			return nil
		}
		meta = rest
	}
}

// textWriter returns a buffered writer to m.Stdout and the function that
// flushes it.
func (m *Main) textWriter() (*bufio.Writer, func() error) {
	w := bufio.NewWriterSize(m.Stdout, 64<<10)
	return w, w.Flush
}

// jsonWriter returns a buffered writer of JSON to m.Stdout through
// termsafe.JSONWriter, and the function that flushes both.
func (m *Main) jsonWriter() (*bufio.Writer, func() error) {
	j := termsafe.NewJSONWriter(m.Stdout)
	w := bufio.NewWriterSize(j, 64<<10)
	return w, func() error {
		if err := w.Flush(); err != nil {
			return err
		}
		return j.Flush()
	}
}

// writeJSON writes doc indented, as one document, through jsonSafe.
func (m *Main) writeJSON(doc any) error {
	w, flush := m.jsonWriter()
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return err
	}
	return flush()
}

// writeJSONWithMetadata writes doc indented with, when meta is not nil, a
// last member "metadata" (meta as a string, when UTF-8) or
// "metadata_base64", streamed: the document never holds a copy of meta.
func (m *Main) writeJSONWithMetadata(doc any, meta []byte) error {
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	w, flush := m.jsonWriter()
	if meta == nil {
		w.Write(b)
		w.WriteByte('\n')
		return flush()
	}
	w.Write(bytes.TrimSuffix(b, []byte("\n}")))
	if utf8.Valid(meta) {
		w.WriteString(",\n  \"metadata\": \"")
		if err := writeJSONStringContent(w, meta); err != nil {
			return err
		}
		w.WriteString("\"\n}\n")
	} else {
		w.WriteString(",\n  \"metadata_base64\": \"")
		enc := base64.NewEncoder(base64.StdEncoding, w)
		enc.Write(meta)
		enc.Close()
		w.WriteString("\"\n}\n")
	}
	return flush()
}

// writeJSONStringContent writes the UTF-8 text b as the inside of a JSON
// string, escaped by encoding/json a piece at a time.
func writeJSONStringContent(w *bufio.Writer, b []byte) error {
	const piece = 32 << 10
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for len(b) > 0 {
		n := min(piece, len(b))
		for n < len(b) && !utf8.RuneStart(b[n]) {
			n++
		}
		buf.Reset()
		if err := enc.Encode(string(b[:n])); err != nil {
			return err
		}
		out := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
		w.Write(out[1 : len(out)-1])
		b = b[n:]
	}
	return nil
}

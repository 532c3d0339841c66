package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spool-agent/spool-agent/internal/qshape"
	"github.com/spool-agent/spool-agent/internal/termsafe"
	"github.com/spool-agent/spool-agent/spool"
)

// ShapeCmd prints the age distribution of a spool's entries.
type ShapeCmd struct {
	Dir   string `arg:"" help:"The spool directory, or the name of a spool of the --config file."`
	Queue string `arg:"" optional:"" help:"Only this queue (default: every queue)."`
	OutputFlag
}

// shapeBounds are the upper bounds of shape's age buckets and shapeLabels
// their column labels (one more: the older entries), those of package
// qshape, which the console shows too.
var (
	shapeBounds = qshape.Bounds()
	shapeLabels = qshape.Labels()
)

// shapeRow is one row of the table: a queue's waiting or checked-out entries.
type shapeRow struct {
	Name       string   `json:"row"`
	Queue      string   `json:"queue,omitempty"`
	CheckedOut bool     `json:"checked_out"`
	Total      int      `json:"total"`
	Counts     []uint64 `json:"counts"` // per bucket, as in shapeLabels
}

func (r *shapeRow) add(age time.Duration) {
	r.Total++
	for i, b := range shapeBounds {
		if age <= b {
			r.Counts[i]++
			return
		}
	}
	r.Counts[len(shapeBounds)]++
}

func newShapeRow(name, queue string, checkedOut bool) *shapeRow {
	return &shapeRow{Name: name, Queue: queue, CheckedOut: checkedOut, Counts: make([]uint64, len(shapeLabels))}
}

func (c *ShapeCmd) run(_ context.Context, m *Main) error {
	dir, _, err := m.spoolArg(c.Dir)
	if err != nil {
		return err
	}
	c.Dir = dir
	s, err := m.openSpool(c.Dir, spool.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	queues, err := queuesOf(s, c.Queue)
	if err != nil {
		return err
	}
	listings, total, err := listEntries(s, queues, true, true)
	if err != nil {
		return err
	}
	p := m.startProgress("shape "+termsafe.Name(c.Dir), int64(total))
	now := m.Now()
	invalid := 0
	totalRow := newShapeRow("TOTAL", "", false)
	rows := []*shapeRow{totalRow}
	for _, l := range listings {
		name := l.queue
		if l.checkedOut {
			name += "/checkout"
		}
		row := newShapeRow(name, l.queue, l.checkedOut)
		rows = append(rows, row)
		for _, n := range l.names {
			p.add(1)
			info, err := s.Stat(l.queue, n)
			if errors.Is(err, spool.ErrNotFound) {
				continue
			}
			if errors.Is(err, spool.ErrInvalidName) {
				invalid++
				continue
			}
			if err != nil {
				p.finish()
				return err
			}
			age := max(now.Sub(info.ModTime), 0)
			row.add(age)
			totalRow.add(age)
		}
	}
	p.finish()
	defer warnInvalid(m, invalid)

	if c.json() {
		doc := struct {
			Spool   string      `json:"spool"`
			Time    string      `json:"time"`
			Buckets []string    `json:"buckets"`
			Rows    []*shapeRow `json:"rows"`
		}{s.Dir(), now.UTC().Format(time.RFC3339), shapeLabels, rows}
		return m.writeJSON(doc)
	}

	// Columns: the row name, T (total), then one per bucket; numbers are
	// right-aligned under their labels.
	header := append([]string{"T"}, shapeLabels...)
	cells := make([][]string, len(rows))
	widths := make([]int, len(header))
	for i, h := range header {
		widths[i] = len(h)
	}
	nameW := 0
	for i, r := range rows {
		nameW = max(nameW, textWidth(r.Name))
		cells[i] = append(cells[i], strconv.Itoa(r.Total))
		for _, n := range r.Counts {
			cells[i] = append(cells[i], strconv.FormatUint(n, 10))
		}
		for j, cell := range cells[i] {
			widths[j] = max(widths[j], len(cell))
		}
	}
	var b strings.Builder
	line := func(name string, cols []string) {
		fmt.Fprintf(&b, "%-*s", nameW, termsafe.Name(name))
		for j, col := range cols {
			fmt.Fprintf(&b, " %*s", widths[j], col)
		}
		b.WriteByte('\n')
	}
	line("", header)
	for i, r := range rows {
		line(r.Name, cells[i])
	}
	_, err = fmt.Fprint(m.Stdout, b.String())
	return err
}

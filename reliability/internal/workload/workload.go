// Package workload holds the producers and consumers that the reliability
// tests run as separate processes (through reliability/internal/spoolworker)
// and kill at random, and the entry format they agree on, so that a checker
// can tell, from the spool and the workers' logs alone, whether an
// acknowledged entry was lost or duplicated.
//
// Every entry carries an id, unique across all workers and all their
// restarts: its metadata is "id=<id>" (plus ";stage=<stage>" once a
// consumer has processed it) and its payload is derived from the id, so a
// damaged or swapped payload is detected.
//
// The logs are append-only text files written with one write(2) per line,
// which a SIGKILL cannot tear:
//
//	producer:  "ack <id> <name>"      after Enqueue returned nil
//	remover:   "removing <id> <name>" before Remove, "removed <id> <name>" after it returned nil
//	consumer:  "moved <id> <name>"    after Save returned nil
//
// Beside workers of the OCaml reference (see Options.BesideReference), a
// remover that finds an entry whose payload is gone, which a reference
// remover killed between its unlinks leaves, finishes removing it and logs
// "removing-nodata <id> <name>" and "removed-nodata <id> <name>".
package workload

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spool-agent/spool-agent/spool"
)

// Metadata returns the metadata of the entry with id.
func Metadata(id string) []byte { return []byte("id=" + id) }

// ParseID returns the id in metadata, ignoring a ";stage=" suffix.
func ParseID(metadata []byte) (string, bool) {
	s, ok := strings.CutPrefix(string(metadata), "id=")
	if !ok {
		return "", false
	}
	id, _, _ := strings.Cut(s, ";")
	return id, id != ""
}

// Payload returns the payload of the entry with id: size bytes (at least
// the id line) derived from the id's SHA-256.
func Payload(id string, size int) []byte {
	sum := sha256.Sum256([]byte(id))
	h := hex.EncodeToString(sum[:])
	head := "payload of " + id + "\n"
	b := []byte(head)
	for len(b) < size {
		b = append(b, h...)
	}
	if len(b) > size && size >= len(head) {
		b = b[:size]
	}
	return b
}

// CheckPayload reports whether data is a payload Payload(id, n) for some n.
func CheckPayload(id string, data []byte) bool {
	want := Payload(id, len(data))
	return string(want) == string(data)
}

// Log is an append-only log file, one write per line.
type Log struct{ f *os.File }

// OpenLog opens (creating) the log at path for appending.
func OpenLog(path string) (*Log, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	return &Log{f: f}, nil
}

// Line appends one line made of fields; on a nil Log it does nothing.
func (l *Log) Line(fields ...string) error {
	if l == nil {
		return nil
	}
	_, err := l.f.WriteString(strings.Join(fields, " ") + "\n")
	return err
}

// Close closes the log.
func (l *Log) Close() error { return l.f.Close() }

// ReadLog returns the complete lines of the log at path, split into fields.
// A missing log is empty.
func ReadLog(path string) ([][]string, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out [][]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fs := strings.Fields(sc.Text()); len(fs) > 0 {
			out = append(out, fs)
		}
	}
	return out, sc.Err()
}

// Counter counts operations, for rates.
type Counter struct{ n atomic.Uint64 }

// Add adds one; on a nil Counter it does nothing.
func (c *Counter) Add() {
	if c != nil {
		c.n.Add(1)
	}
}

// Load returns the count.
func (c *Counter) Load() uint64 { return c.n.Load() }

// Produce enqueues entries into queue until ctx is done or n entries (n > 0)
// are acknowledged, logging each acknowledgement. Ids are prefix-<seq>.
// With pace > 0 it enqueues at most one entry per pace on average.
func Produce(ctx context.Context, s *spool.Spool, queue, prefix string, n, size int, pace time.Duration, acks *Log, ops *Counter) error {
	start := time.Now()
	for i := 0; n <= 0 || i < n; i++ {
		if ctx.Err() != nil {
			return nil
		}
		if pace > 0 {
			if wait := time.Until(start.Add(time.Duration(i) * pace)); wait > 0 {
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(wait):
				}
			}
		}
		id := fmt.Sprintf("%s-%d", prefix, i)
		name, err := s.EnqueueBytes(ctx, queue, Metadata(id), Payload(id, size), spool.EnqueueOptions{})
		if err != nil && ctx.Err() != nil {
			return nil // stopped before the entry was visible: nothing to acknowledge
		}
		if err != nil {
			return fmt.Errorf("enqueue %s: %w", id, err)
		}
		if ops != nil {
			ops.Add()
		}
		if acks != nil {
			if err := acks.Line("ack", id, name); err != nil {
				return err
			}
		}
	}
	return nil
}

// ErrCorrupt reports an entry whose payload does not match its metadata.
var ErrCorrupt = errors.New("entry payload does not match its id")

// Options say how Consume and Remove share the spool.
type Options struct {
	// BesideReference says workers of the OCaml reference share the spool.
	// They take no lock, so the start-up Recover takes only checkouts older
	// than spool.MinRecoverAge (this package's live workers are safe
	// whatever the age: they hold locks) instead of every unlocked one; and
	// the reference removes an entry's payload before its metadata, so
	// Remove finishes an entry whose payload is gone instead of failing with
	// ErrCorrupt.
	BesideReference bool
}

// Consume takes entries from queue from, checks their payload, and saves
// them into queue to with ";stage=<to>" appended to the metadata, until ctx
// is done. It first recovers checkouts left by killed workers (see Options).
func Consume(ctx context.Context, s *spool.Spool, from, to string, o Options, log *Log, ops *Counter) error {
	return consumeChecked(ctx, s, from, o, func(c *spool.Checkout, id string) error {
		meta := append(append([]byte{}, c.Metadata()...), ";stage="+to...)
		if err := c.Save(to, meta); err != nil {
			return fmt.Errorf("save %s: %w", id, err)
		}
		ops.Add() // the checkout
		ops.Add() // the save
		return log.Line("moved", id, c.Name())
	}, nil)
}

// Remove takes entries from queue, checks their payload and removes them,
// logging the intent before and the acknowledgement after, until ctx is done.
func Remove(ctx context.Context, s *spool.Spool, queue string, o Options, log *Log, ops *Counter) error {
	remove := func(suffix string) func(c *spool.Checkout, id string) error {
		return func(c *spool.Checkout, id string) error {
			if err := log.Line("removing"+suffix, id, c.Name()); err != nil {
				return err
			}
			if err := c.Remove(); err != nil {
				return fmt.Errorf("remove %s: %w", id, err)
			}
			ops.Add() // the checkout
			ops.Add() // the remove
			return log.Line("removed"+suffix, id, c.Name())
		}
	}
	var noData func(c *spool.Checkout, id string) error
	if o.BesideReference {
		noData = remove("-nodata")
	}
	return consumeChecked(ctx, s, queue, o, remove(""), noData)
}

// consumeChecked recovers stale checkouts, then dequeues entries of queue
// until ctx is done, checks each one's payload against its id (releasing it
// and failing with ErrCorrupt on a mismatch) and hands it to finish, which
// must save or remove it. An entry whose payload is missing goes to noData
// instead, when it is not nil.
func consumeChecked(ctx context.Context, s *spool.Spool, queue string, o Options, finish, noData func(c *spool.Checkout, id string) error) error {
	age, ro := time.Duration(0), spool.RecoverOptions{WorkersStopped: true}
	if o.BesideReference {
		age, ro = spool.MinRecoverAge, spool.RecoverOptions{}
	}
	if _, err := s.Recover(ctx, age, ro); err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	r, err := s.NewReader(queue)
	if err != nil {
		return err
	}
	defer r.Close()
	for {
		c, err := r.Dequeue(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("dequeue: %w", err)
		}
		id, ok := ParseID(c.Metadata())
		data, derr := c.ReadData()
		if ok && noData != nil && errors.Is(derr, spool.ErrNotFound) {
			if err := noData(c, id); err != nil {
				return err
			}
			continue
		}
		if !ok || derr != nil || !CheckPayload(id, data) {
			c.Release()
			return fmt.Errorf("%w: %s (%q, %v)", ErrCorrupt, c.Name(), c.Metadata(), derr)
		}
		if err := finish(c, id); err != nil {
			return err
		}
	}
}

// Churn runs one producer and one remover on queue until ctx is done:
// every entry is enqueued, checked out and removed, three operations, which
// ops counts. rate > 0 paces the producer to about rate operations per
// second in all.
func Churn(ctx context.Context, s *spool.Spool, queue, prefix string, size int, rate float64, ops *Counter) error {
	var pace time.Duration
	if rate > 0 {
		pace = time.Duration(float64(time.Second) * 3 / rate)
	}
	errc := make(chan error, 2)
	go func() { errc <- Produce(ctx, s, queue, prefix, 0, size, pace, nil, ops) }()
	go func() { errc <- Remove(ctx, s, queue, Options{}, nil, ops) }()
	return errors.Join(<-errc, <-errc)
}

// Rate returns ops per second over d.
func Rate(n uint64, d time.Duration) float64 { return float64(n) / d.Seconds() }

package spool

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// MaxNameLen bounds queue and entry names, in bytes. Linux allows 255 bytes
// per path component; .tmp files get a suffix, so names stay below that.
const MaxNameLen = 200

// ValidateName reports whether name may be used as a queue or entry name
// that this package creates (Create, AddQueue, Enqueue, Reserve); names
// found on disk are checked with the looser ValidateExistingName:
// non-empty, at most MaxNameLen bytes, no '/', no NUL or other control
// characters (C0, DEL, and C1 in UTF-8), not starting with '.' (which also rules out "." and
// ".." and the spool's own .registry, .tmp, .data and .checkout). The error
// wraps ErrInvalidName.
func ValidateName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty", ErrInvalidName)
	case len(name) > MaxNameLen:
		return fmt.Errorf("%w: %d bytes, longer than %d", ErrInvalidName, len(name), MaxNameLen)
	case name[0] == '.':
		return fmt.Errorf("%w %q: starts with '.'", ErrInvalidName, name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == '/' {
			return fmt.Errorf("%w %q: contains '/'", ErrInvalidName, name)
		}
		if c < 0x20 || c == 0x7f {
			return fmt.Errorf("%w %q: contains control character 0x%02x", ErrInvalidName, name, c)
		}
		// C1 control characters (U+0080 to U+009F) in UTF-8: some
		// terminals act on them (U+009B is CSI) when a name is printed.
		if c == 0xc2 && i+1 < len(name) && name[i+1] >= 0x80 && name[i+1] <= 0x9f {
			return fmt.Errorf("%w %q: contains control character U+%04X", ErrInvalidName, name, rune(name[i+1]))
		}
	}
	return nil
}

// MaxExistingNameLen bounds the names of entries found on disk: Linux's
// NAME_MAX, the longest name a directory can hold.
const MaxExistingNameLen = 255

// ValidateExistingName reports whether name may name an entry found on disk,
// written by this package or by another implementation: everything that
// lists or checks entries accepts it. The reference lists every name but "."
// and ".." (and skips .checkout in queues), so dot-names, long names and
// names with control characters are entries to it; only "", ".", "..",
// ".checkout", names containing '/' or NUL (which no directory can hold, and
// which would escape the directory) and names longer than MaxExistingNameLen
// are refused. ValidateName, stricter, applies to the names this package
// creates. The error wraps ErrInvalidName.
func ValidateExistingName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty", ErrInvalidName)
	case name == "." || name == "..":
		return fmt.Errorf("%w %q", ErrInvalidName, name)
	case name == CheckoutDir:
		return fmt.Errorf("%w %q: the queue's checkout directory", ErrInvalidName, name)
	case len(name) > MaxExistingNameLen:
		return fmt.Errorf("%w: %d bytes, longer than %d", ErrInvalidName, len(name), MaxExistingNameLen)
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("%w %q: contains '/' or NUL", ErrInvalidName, name)
	}
	return nil
}

// NameGenerator proposes entry names. Next is called with attempt = 0, 1, 2, ...
// until a proposed name can be reserved in .registry/ (O_CREAT|O_EXCL) or the
// spool's bound on attempts is reached.
type NameGenerator interface {
	Next(attempt int) (string, error)
}

// NameGeneratorFunc adapts a function to NameGenerator.
type NameGeneratorFunc func(attempt int) (string, error)

// Next implements NameGenerator.
func (f NameGeneratorFunc) Next(attempt int) (string, error) { return f(attempt) }

// PrefixNames returns the reference tests' generator: prefix followed by the
// attempt as six digits ("q1_000000", "q1_000001", ...).
func PrefixNames(prefix string) NameGenerator {
	return NameGeneratorFunc(func(attempt int) (string, error) {
		return fmt.Sprintf("%s%06d", prefix, attempt), nil
	})
}

// TimeNames is the default generator. Its names are unique across processes
// (they carry the host's process id and a per-process sequence) and, for one
// producer process, sort bytewise in creation order: a fixed-width UTC
// timestamp with nanoseconds that never goes backwards within the process,
// then the pid and sequence in fixed-width hex. Example:
//
//	20261125T203512.123456789Z-0001f3a2-00000000000000a1
type TimeNames struct {
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

var timeNamesState struct {
	sync.Mutex
	last time.Time
	seq  uint64
}

var pidHex = fmt.Sprintf("%08x", os.Getpid())

// Next implements NameGenerator. Every call (whatever the attempt) returns a
// fresh name, so a collision with another host's producer costs one retry.
func (g TimeNames) Next(int) (string, error) {
	now := time.Now
	if g.Now != nil {
		now = g.Now
	}
	t := now().UTC()
	st := &timeNamesState
	st.Lock()
	if !t.After(st.last) {
		t = st.last.Add(time.Nanosecond)
	}
	st.last = t
	st.seq++
	seq := st.seq
	st.Unlock()
	b := make([]byte, 0, 64)
	b = t.AppendFormat(b, "20060102T150405.000000000Z")
	b = append(b, '-')
	b = append(b, pidHex...)
	b = append(b, '-')
	hex := strconv.FormatUint(seq, 16)
	for i := len(hex); i < 16; i++ {
		b = append(b, '0')
	}
	b = append(b, hex...)
	return string(b), nil
}

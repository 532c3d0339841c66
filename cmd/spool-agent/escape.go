package main

import (
	"io"
	"log/slog"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Every text that the program prints and that comes from a spool (names,
// metadata, paths, problems, errors quoting them, log attributes) goes
// through escapeTo, so no byte of a spool can drive an operator's terminal;
// JSON goes through jsonSafe, which completes encoding/json the same way.

// escapeText makes metadata safe to print on a terminal: printable UTF-8
// and newlines are kept; a backslash becomes \\, other bytes of
// invalid UTF-8 and control characters \xNN, and non-printable runes
// (such as U+202E, which reorders what follows, or the C1 control U+009B)
// \uNNNN. No escape sequence of the metadata ever reaches the terminal,
// and the output is unambiguous.
func escapeText(b []byte) string { return escapeString(b, true, true) }

// escapeName is escapeText for one-line fields (names, paths, problems):
// newlines are escaped too, as \x0a.
func escapeName(s string) string { return escapeString([]byte(s), true, false) }

// safeLine escapes control characters and non-printable runes but leaves
// backslashes, for messages (such as errors) that quote what they quote.
func safeLine(s string) string { return escapeString([]byte(s), false, false) }

func escapeString(b []byte, backslash, keepLines bool) string {
	var sb strings.Builder
	sb.Grow(len(b))
	escapeTo(&sb, b, backslash, keepLines)
	return sb.String()
}

// byteWriter is what escapeTo writes to (strings.Builder, bufio.Writer).
type byteWriter interface {
	io.ByteWriter
	io.StringWriter
	WriteRune(r rune) (int, error)
}

// escapeTo writes b escaped to w (see escapeText), straight into w's
// buffer: escaping large metadata never builds a string of it. A rune cut
// at the end of b is escaped byte by byte, so callers that write in pieces
// cut at rune boundaries.
func escapeTo(w byteWriter, b []byte, backslash, keepLines bool) {
	var num [20]byte
	hex := func(prefix string, v uint64, digits int) {
		w.WriteString(prefix)
		s := strconv.AppendUint(num[:0], v, 16)
		for i := len(s); i < digits; i++ {
			w.WriteByte('0')
		}
		w.WriteString(string(s))
	}
	for len(b) > 0 {
		c := b[0]
		if c >= 0x20 && c < 0x7f && c != '\\' {
			w.WriteByte(c) // the common case, printable ASCII
			b = b[1:]
			continue
		}
		r, size := utf8.DecodeRune(b)
		switch {
		case r == utf8.RuneError && size <= 1:
			hex(`\x`, uint64(b[0]), 2)
		case r == '\\' && backslash:
			w.WriteString(`\\`)
		case r == '\n' && keepLines:
			w.WriteRune(r)
		case r < utf8.RuneSelf && !unicode.IsPrint(r):
			hex(`\x`, uint64(r), 2)
		case !unicode.IsPrint(r):
			if r > 0xffff {
				hex(`\U`, uint64(r), 8)
			} else {
				hex(`\u`, uint64(r), 4)
			}
		default:
			w.WriteRune(r)
		}
		b = b[size:]
	}
}

// jsonSafe wraps a writer of JSON (encoding/json, slog's JSON handler) and
// escapes what they leave raw and a terminal would act on: DEL as \u007f
// and the C1 controls U+0080-U+009F (UTF-8 0xc2 0x80-0x9f) as \u0080-
// \u009f. Outside strings JSON has only ASCII, and valid UTF-8 has 0xc2 only
// as a lead byte, so the rewrite is always inside a string and keeps the
// document's meaning.
type jsonSafe struct {
	w       io.Writer
	pending bool // the last byte written was 0xc2
	buf     []byte
}

func newJSONSafe(w io.Writer) *jsonSafe { return &jsonSafe{w: w} }

func (j *jsonSafe) Write(p []byte) (int, error) {
	out := j.buf[:0]
	for _, c := range p {
		if j.pending {
			j.pending = false
			if c >= 0x80 && c <= 0x9f {
				out = append(out, '\\', 'u', '0', '0', hexDigit(c>>4), hexDigit(c&0xf))
				continue
			}
			out = append(out, 0xc2)
		}
		switch c {
		case 0xc2:
			j.pending = true
		case 0x7f:
			out = append(out, `\u007f`...)
		default:
			out = append(out, c)
		}
	}
	j.buf = out[:0]
	if _, err := j.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush writes a 0xc2 held back at the end (never, for valid JSON).
func (j *jsonSafe) Flush() error {
	if !j.pending {
		return nil
	}
	j.pending = false
	_, err := j.w.Write([]byte{0xc2})
	return err
}

func hexDigit(b byte) byte { return "0123456789abcdef"[b] }

// escapeLogAttr escapes the string values of log attributes for logfmt
// (slog's text handler quotes C1 controls but leaves DEL raw), as
// HandlerOptions.ReplaceAttr. Backslashes are left to slog's quoting, so
// that names the collector already quoted are not escaped twice.
func escapeLogAttr(_ []string, a slog.Attr) slog.Attr {
	switch a.Value.Kind() {
	case slog.KindString:
		a.Value = slog.StringValue(safeLine(a.Value.String()))
	case slog.KindAny:
		if err, ok := a.Value.Any().(error); ok {
			a.Value = slog.StringValue(safeLine(err.Error()))
		}
	}
	return a
}

// textWidth is the width of s once escaped, in runes (as fmt pads).
func textWidth(s string) int { return utf8.RuneCountInString(escapeName(s)) }

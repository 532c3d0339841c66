// Package termsafe escapes what comes from a spool (names, metadata, paths,
// errors quoting them) so that no byte of it can drive an operator's
// terminal or mislead the eye: the one rule of the CLI's output and the
// console's pages and JSON.
//
// Printable UTF-8 is kept; a backslash becomes \\, bytes of invalid UTF-8
// and ASCII controls \xNN, and non-printable runes (C1 controls such as
// U+009B, U+202E which reorders what follows, zero-width characters)
// \uNNNN or \UNNNNNNNN. The output is unambiguous.
package termsafe

import (
	"encoding/base64"
	"io"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Name escapes a one-line field (a name, a path, a problem): newlines too.
// Printable ASCII without a backslash, the common case, is returned as it is.
func Name(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '\\' {
			return escape([]byte(s), true, false)
		}
	}
	return s
}

// Text escapes text shown over several lines (metadata): newlines are kept.
func Text(b []byte) string { return escape(b, true, true) }

// Line escapes control characters and non-printable runes but leaves
// backslashes, for messages (such as errors) that quote what they quote.
func Line(s string) string { return escape([]byte(s), false, false) }

func escape(b []byte, backslash, keepLines bool) string {
	var sb strings.Builder
	sb.Grow(len(b) + 8)
	EscapeTo(&sb, b, backslash, keepLines)
	return sb.String()
}

// Writer is what EscapeTo writes to (strings.Builder, bufio.Writer).
type Writer interface {
	io.ByteWriter
	io.StringWriter
	WriteRune(r rune) (int, error)
}

// EscapeTo writes b escaped to w, straight into w's buffer: escaping large
// metadata never builds a string of it. backslash says whether a backslash
// becomes \\ (Line leaves it), keepLines whether newlines stay (Text). A
// rune cut at the end of b is escaped byte by byte, so callers that write
// in pieces cut at rune boundaries.
func EscapeTo(w Writer, b []byte, backslash, keepLines bool) {
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

// NameBase64 returns name in base64 when it is not UTF-8, which JSON
// cannot carry exactly (encoding/json turns the bad bytes into U+FFFD),
// and "" otherwise: the name_base64 rule of the CLI's and the API's JSON.
func NameBase64(name string) string {
	if utf8.ValidString(name) {
		return ""
	}
	return base64.StdEncoding.EncodeToString([]byte(name))
}

// JSON escapes, in a JSON document (encoding/json's output), what
// encoding/json leaves raw and a terminal would act on: DEL as \u007f and
// the C1 controls U+0080-U+009F (UTF-8 0xc2 0x80-0x9f) as \u0080-\u009f.
// Outside strings JSON is ASCII, and valid UTF-8 has 0xc2 only as a lead
// byte, so every rewrite is inside a string and keeps its meaning. It
// returns b itself when there is nothing to escape.
func JSON(b []byte) []byte {
	i := 0
	for ; i < len(b); i++ {
		if b[i] == 0x7f || b[i] == 0xc2 && i+1 < len(b) && b[i+1] >= 0x80 && b[i+1] <= 0x9f {
			break
		}
	}
	if i == len(b) {
		return b
	}
	out := make([]byte, 0, len(b)+32)
	out = append(out, b[:i]...)
	j := JSONWriter{}
	out = j.escape(out, b[i:])
	if j.pending {
		out = append(out, 0xc2)
	}
	return out
}

// JSONWriter applies JSON's escaping to a stream (encoding/json's
// Encoder, slog's JSON handler) written in pieces of any size; Flush at
// the end.
type JSONWriter struct {
	w       io.Writer
	pending bool // the last byte written was 0xc2
	buf     []byte
}

// NewJSONWriter returns a JSONWriter that writes to w.
func NewJSONWriter(w io.Writer) *JSONWriter { return &JSONWriter{w: w} }

func (j *JSONWriter) escape(out, p []byte) []byte {
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
	return out
}

// Write implements io.Writer.
func (j *JSONWriter) Write(p []byte) (int, error) {
	out := j.escape(j.buf[:0], p)
	j.buf = out[:0]
	if _, err := j.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush writes a 0xc2 held back at the end (never, for valid JSON).
func (j *JSONWriter) Flush() error {
	if !j.pending {
		return nil
	}
	j.pending = false
	_, err := j.w.Write([]byte{0xc2})
	return err
}

func hexDigit(b byte) byte { return "0123456789abcdef"[b] }

// UTF8 returns s as exporters put names from disk into label values and
// attributes, which must be valid UTF-8 (Prometheus's text format and OTLP
// refuse anything else, so one such name would fail a whole scrape or
// push): valid UTF-8 without a backslash as it is, the rest with each
// backslash doubled and each byte of invalid UTF-8 written \xNN. Doubling
// the backslashes of valid names too keeps the mapping one to one: a
// directory named q\xff and one named q followed by the byte 0xff give two
// labels, not one series twice (which fails a scrape as well).
func UTF8(s string) string {
	if utf8.ValidString(s) && strings.IndexByte(s, '\\') < 0 {
		return s
	}
	const digits = "0123456789abcdef"
	var sb strings.Builder
	sb.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			sb.WriteString(`\x`)
			sb.WriteByte(digits[s[i]>>4])
			sb.WriteByte(digits[s[i]&0xf])
		case r == '\\':
			sb.WriteString(`\\`)
		default:
			sb.WriteString(s[i : i+n])
		}
		i += n
	}
	return sb.String()
}

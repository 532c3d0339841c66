package web

import (
	"encoding/base64"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Names in a spool are attacker-controlled. html/template makes them inert
// as HTML; visible also makes them unambiguous to the eye, as the CLI's
// escapeName does for a terminal: printable UTF-8 is kept, a backslash
// becomes \\, bytes of invalid UTF-8 and ASCII controls \xNN, and other
// non-printable runes (C1 controls such as U+009B, U+202E which reorders
// what follows, zero-width characters) \uNNNN or \UNNNNNNNN.
func visible(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '\\' {
			clean = false
			break
		}
	}
	if clean {
		return s // the common case: printable ASCII, no copy
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	var num [20]byte
	hex := func(prefix string, v uint64, digits int) {
		b.WriteString(prefix)
		d := strconv.AppendUint(num[:0], v, 16)
		for i := len(d); i < digits; i++ {
			b.WriteByte('0')
		}
		b.Write(d)
	}
	for len(s) > 0 {
		c := s[0]
		if c >= 0x20 && c < 0x7f && c != '\\' {
			b.WriteByte(c)
			s = s[1:]
			continue
		}
		r, size := utf8.DecodeRuneInString(s)
		switch {
		case r == utf8.RuneError && size <= 1:
			hex(`\x`, uint64(s[0]), 2)
		case r == '\\':
			b.WriteString(`\\`)
		case r < utf8.RuneSelf:
			hex(`\x`, uint64(r), 2)
		case !unicode.IsPrint(r):
			if r > 0xffff {
				hex(`\U`, uint64(r), 8)
			} else {
				hex(`\u`, uint64(r), 4)
			}
		default:
			b.WriteString(s[:size])
		}
		s = s[size:]
	}
	return b.String()
}

// nameBase64 returns name in base64 when it is not UTF-8, which JSON cannot
// carry exactly (encoding/json turns the bad bytes into U+FFFD), and ""
// otherwise: the CLI's name_base64 rule.
func nameBase64(name string) string {
	if utf8.ValidString(name) {
		return ""
	}
	return base64.StdEncoding.EncodeToString([]byte(name))
}

// jsonSafe escapes, in encoding/json's output, what it leaves raw and a
// terminal would act on when a user prints the document (curl in a
// terminal): DEL as \u007f and the C1 controls U+0080-U+009F as
// \u0080-\u009f, as the CLI's JSON output does. Outside strings JSON is
// ASCII, and in valid UTF-8 0xc2 is only a lead byte, so every rewrite is
// inside a string and keeps its meaning. It rewrites b in place when it
// has nothing to escape.
func jsonSafe(b []byte) []byte {
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
	for ; i < len(b); i++ {
		c := b[i]
		switch {
		case c == 0x7f:
			out = append(out, `\u007f`...)
		case c == 0xc2 && i+1 < len(b) && b[i+1] >= 0x80 && b[i+1] <= 0x9f:
			d := b[i+1]
			out = append(out, '\\', 'u', '0', '0', hexDigit(d>>4), hexDigit(d&0xf))
			i++
		default:
			out = append(out, c)
		}
	}
	return out
}

func hexDigit(b byte) byte { return "0123456789abcdef"[b] }

package main

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// escapeText makes metadata safe to print on a terminal: printable UTF-8,
// newlines and tabs are kept; a backslash becomes \\, other bytes of
// invalid UTF-8 and control characters \xNN, and non-printable runes
// (such as U+202E, which reorders what follows) \uNNNN. No escape sequence
// of the metadata ever reaches the terminal, and the output is unambiguous.
func escapeText(b []byte) string { return escape(b, true, true) }

// escapeName is escapeText for one-line fields (names, paths, problems):
// newlines and tabs are escaped too, as \x0a and \x09.
func escapeName(s string) string { return escape([]byte(s), true, false) }

// safeLine escapes control characters and non-printable runes but leaves
// backslashes, for messages (such as errors) that quote what they quote.
func safeLine(s string) string { return escape([]byte(s), false, false) }

func escape(b []byte, backslash, keepLines bool) string {
	var sb strings.Builder
	sb.Grow(len(b))
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		switch {
		case r == utf8.RuneError && size <= 1:
			fmt.Fprintf(&sb, `\x%02x`, b[0])
		case r == '\\' && backslash:
			sb.WriteString(`\\`)
		case (r == '\n' || r == '\t') && keepLines:
			sb.WriteRune(r)
		case r < utf8.RuneSelf && !unicode.IsPrint(r):
			fmt.Fprintf(&sb, `\x%02x`, r)
		case !unicode.IsPrint(r):
			if r > 0xffff {
				fmt.Fprintf(&sb, `\U%08x`, r)
			} else {
				fmt.Fprintf(&sb, `\u%04x`, r)
			}
		default:
			sb.WriteRune(r)
		}
		b = b[size:]
	}
	return sb.String()
}

// textWidth is the width of s once escaped, in runes (as fmt pads).
func textWidth(s string) int { return utf8.RuneCountInString(escapeName(s)) }

package main

import (
	"log/slog"
	"unicode/utf8"

	"github.com/spool-agent/spool-agent/internal/termsafe"
)

// Every text that the program prints and that comes from a spool (names,
// metadata, paths, problems, errors quoting them, log attributes) goes
// through package termsafe, so no byte of a spool can drive an operator's
// terminal; JSON goes through termsafe.JSONWriter, which completes
// encoding/json the same way.

// escapeLogAttr escapes the string values of log attributes for logfmt
// (slog's text handler quotes C1 controls but leaves DEL raw), as
// HandlerOptions.ReplaceAttr. Backslashes are left to slog's quoting, so
// that names the collector already quoted are not escaped twice.
func escapeLogAttr(_ []string, a slog.Attr) slog.Attr {
	switch a.Value.Kind() {
	case slog.KindString:
		a.Value = slog.StringValue(termsafe.Line(a.Value.String()))
	case slog.KindAny:
		if err, ok := a.Value.Any().(error); ok {
			a.Value = slog.StringValue(termsafe.Line(err.Error()))
		}
	}
	return a
}

// textWidth is the width of s once escaped, in runes (as fmt pads).
func textWidth(s string) int { return utf8.RuneCountInString(termsafe.Name(s)) }

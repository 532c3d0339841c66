package termsafe

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"unicode/utf8"
)

func TestName(t *testing.T) {
	for in, want := range map[string]string{
		"plain.name-1":     "plain.name-1",
		"été":              "été",
		`back\slash`:       `back\\slash`,
		"tab\tnl\n":        `tab\x09nl\x0a`,
		"esc\x1b[31m":      `esc\x1b[31m`,
		"del\x7f":          `del\x7f`,
		"c1\u009b":         `c1\u009b`,
		"rtl\u202eevil":    `rtl\u202eevil`,
		"bad\xff":          `bad\xff`,
		"tag\U000E0001":    `tag\U000e0001`,
		"<script>&amp;\"'": "<script>&amp;\"'", // html/template's job
	} {
		if got := Name(in); got != want {
			t.Errorf("Name(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestText(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain text", "plain text"},
		{"two\nlines\tand tab", `two
lines\x09and tab`},
		{"esc\x1b[31m", `esc\x1b[31m`},
		{"cr\rnul\x00del\x7f", `cr\x0dnul\x00del\x7f`},
		{"back\\slash", `back\\slash`},
		{"bad\xffutf8", `bad\xffutf8`},
		{"rtl\u202eoverride", `rtl\u202eoverride`},
		{"héllo wörld ✓", "héllo wörld ✓"},
		{"tag\U000E0001", `tag\U000e0001`},
	} {
		if got := Text([]byte(tc.in)); got != tc.want {
			t.Errorf("Text(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestLine(t *testing.T) {
	for in, want := range map[string]string{
		`open "a\b": no such file`: `open "a\b": no such file`, // backslashes kept
		"forged\nline\x1b[2J":      `forged\x0aline\x1b[2J`,
		"c1\u009b":                 `c1\u009b`,
	} {
		if got := Line(in); got != want {
			t.Errorf("Line(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNameBase64(t *testing.T) {
	if got := NameBase64("utf8-é"); got != "" {
		t.Errorf("NameBase64 of UTF-8 = %q, want \"\"", got)
	}
	if got := NameBase64("raw\x9b"); got != "cmF3mw==" {
		t.Errorf("NameBase64(raw\\x9b) = %q, want cmF3mw==", got)
	}
}

// TestJSON checks JSON and JSONWriter (whole, and one byte at a time: a
// 0xc2 at the end of one Write) on the same documents.
func TestJSON(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"a":"plain"}`, `{"a":"plain"}`},
		{"{\"a\":\"\u009b[2J\u0080\u009f\"}", `{"a":"\u009b[2J\u0080\u009f"}`},
		{"{\"a\":\"del\x7f\"}", `{"a":"del\u007f"}`},
		{"{\"a\":\"\u0080é\"}", `{"a":"\u0080é"}`},
		{"{\"a\":\"\u00a0é\u00c2\"}", "{\"a\":\"\u00a0é\u00c2\"}"}, // 0xc2 0xa0 and 0xc3 0x82 are left alone
	} {
		if got := string(JSON([]byte(tc.in))); got != tc.want {
			t.Errorf("JSON(%q) = %q, want %q", tc.in, got, tc.want)
		}
		for _, oneByte := range []bool{false, true} {
			var out bytes.Buffer
			j := NewJSONWriter(&out)
			var r io.Reader = strings.NewReader(tc.in)
			if oneByte {
				r = iotest.OneByteReader(r)
			}
			if _, err := io.Copy(j, r); err != nil {
				t.Fatal(err)
			}
			if err := j.Flush(); err != nil {
				t.Fatal(err)
			}
			if out.String() != tc.want {
				t.Errorf("JSONWriter(%q) (one byte at a time: %v) = %q, want %q", tc.in, oneByte, out.String(), tc.want)
			}
			var v, w any
			if json.Unmarshal([]byte(tc.in), &v) != nil || json.Unmarshal(out.Bytes(), &w) != nil || !jsonEqual(v, w) {
				t.Errorf("JSONWriter(%q) changed the document's meaning: %v -> %v", tc.in, v, w)
			}
		}
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

func TestUTF8(t *testing.T) {
	for in, want := range map[string]string{
		"plain":             "plain",
		`back\slash`:        `back\\slash`, // a backslash is doubled: one to one
		"été\n\x1b":         "été\n\x1b",   // other valid UTF-8 is left as it is
		"bad\xff":           `bad\xff`,
		"bad\xff" + `and\`:  `bad\xffand\\`, // once escaped, backslashes are doubled
		"cut\xe2\x82":       `cut\xe2\x82`,
		"\xfe\xff" + "é\\x": `\xfe\xffé\\x`,
	} {
		got := UTF8(in)
		if got != want {
			t.Errorf("UTF8(%q) = %q, want %q", in, got, want)
		}
		if !utf8.ValidString(got) {
			t.Errorf("UTF8(%q) = %q is not valid UTF-8", in, got)
		}
	}
	for _, pair := range [][2]string{{"q\xff", "q\xfe"}, {"q\xff", `q\xff`}, {"a\xff", `a\xff` + "\xfe"}, {`a\`, `a\\`}} {
		if UTF8(pair[0]) == UTF8(pair[1]) {
			t.Errorf("%q and %q map to one %q", pair[0], pair[1], UTF8(pair[0]))
		}
	}
}

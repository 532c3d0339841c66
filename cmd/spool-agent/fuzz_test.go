package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spool-agent/spool-agent/internal/termsafe"
	"github.com/spool-agent/spool-agent/spool"
)

// Fuzz targets of the binary's parsers and outputs: the configuration file,
// the terminal escaping of metadata, and the JSON documents of show and ls.
// Seeds are in testdata/fuzz/<target>/ and the f.Add calls; scripts/fuzz-short.sh
// runs every target briefly, scripts/soak.sh for longer.

// fuzzMain returns a Main with buffers for its output, no environment and
// the real clock, as the binary runs.
func fuzzMain(stdout, stderr *bytes.Buffer) *Main {
	return &Main{
		Stdin:     strings.NewReader(""),
		Stdout:    stdout,
		Stderr:    stderr,
		LookupEnv: func(string) (string, bool) { return "", false },
		Now:       time.Now,
		Version:   "fuzz",
		Revision:  "fuzz",
	}
}

// unescapeText inverts escapeText: \\, \xNN, \uNNNN and \UNNNNNNNN.
func unescapeText(s string) ([]byte, bool) {
	var out []byte
	for i := 0; i < len(s); {
		if s[i] != '\\' {
			out = append(out, s[i])
			i++
			continue
		}
		if i+1 >= len(s) {
			return nil, false
		}
		var n int
		switch s[i+1] {
		case '\\':
			out = append(out, '\\')
			i += 2
			continue
		case 'x':
			n = 2
		case 'u':
			n = 4
		case 'U':
			n = 8
		default:
			return nil, false
		}
		if i+2+n > len(s) {
			return nil, false
		}
		v, err := strconv.ParseUint(s[i+2:i+2+n], 16, 32)
		if err != nil {
			return nil, false
		}
		if n == 2 {
			out = append(out, byte(v))
		} else {
			out = utf8.AppendRune(out, rune(v))
		}
		i += 2 + n
	}
	return out, true
}

// FuzzEscapeText checks that escaped metadata is valid UTF-8 without any
// control character but newline and tab (so nothing reaches the terminal as
// an escape sequence), and that it is unambiguous: it decodes back to the
// exact bytes.
func FuzzEscapeText(f *testing.F) {
	for _, s := range []string{"", "plain", "multi\nline\ttab", "\x1b[2J\x1b]0;title\x07", "\xff\xfe", "back\\slash",
		"\u202egnp.exe", "\U0001F4E8", "\x00\x7f\u0085\u2028", "\\x41"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e := termsafe.Text(b)
		if !utf8.ValidString(e) {
			t.Fatalf("termsafe.Text(%q) = %q: invalid UTF-8", b, e)
		}
		for _, r := range e {
			if r != '\n' && r != '\t' && (r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0)) {
				t.Fatalf("termsafe.Text(%q) = %q keeps control character %U", b, e, r)
			}
		}
		back, ok := unescapeText(e)
		if !ok || !bytes.Equal(back, b) {
			t.Fatalf("termsafe.Text(%q) = %q does not decode back (got %q)", b, e, back)
		}
	})
}

// FuzzShowJSON enqueues an entry with a fuzzed name (when valid) and
// metadata, and checks that show -o json and ls -o json print valid JSON
// that carries the name and the metadata exactly (as a string when it is
// UTF-8, base64 otherwise), and that the text forms print no control
// characters.
func FuzzShowJSON(f *testing.F) {
	f.Add("entry", []byte("subject: hello"))
	f.Add("weird\u202ename", []byte("\x1b[31mred\x00\xff"))
	f.Add("q1_000000", []byte{})
	f.Add("quote\"and\\backslash", []byte(`{"json": "inside"}`))
	f.Add("<script>", []byte("\u2028\u2029"))
	dir := filepath.Join(f.TempDir(), "spool")
	s, err := spool.Create(dir, []string{"in"}, &spool.Options{Durability: spool.DurabilityNone})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, name string, metadata []byte) {
		if spool.ValidateName(name) != nil {
			return
		}
		if _, err := s.EnqueueBytes(context.Background(), "in", metadata, []byte("payload"), spool.EnqueueOptions{Name: name}); err != nil {
			t.Fatalf("enqueue %q: %v", name, err)
		}
		defer s.Remove("in", name)
		run := func(args ...string) string {
			var stdout, stderr bytes.Buffer
			if code := fuzzMain(&stdout, &stderr).Main(context.Background(), args); code != 0 {
				t.Fatalf("spool-agent %q: exit %d: %s", args, code, stderr.String())
			}
			return stdout.String()
		}
		// "--" ends the flags: a name may start with '-'.
		out := run("show", "-o", "json", "--", dir, name)
		var doc struct {
			Name           string  `json:"name"`
			Metadata       *string `json:"metadata"`
			MetadataBase64 *string `json:"metadata_base64"`
		}
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatalf("show -o json for %q: invalid JSON: %v\n%s", name, err, out)
		}
		// JSON strings are UTF-8: encoding/json replaces the invalid bytes
		// of a name that is not UTF-8 with U+FFFD, so only UTF-8 names can
		// be compared.
		if utf8.ValidString(name) && doc.Name != name {
			t.Fatalf("show -o json: name %q, want %q", doc.Name, name)
		}
		var got []byte
		switch {
		case doc.Metadata != nil:
			got = []byte(*doc.Metadata)
		case doc.MetadataBase64 != nil:
			if got, err = base64.StdEncoding.DecodeString(*doc.MetadataBase64); err != nil {
				t.Fatalf("metadata_base64: %v", err)
			}
		}
		if !bytes.Equal(got, metadata) {
			t.Fatalf("show -o json: metadata %q, want %q", got, metadata)
		}
		ls := run("ls", dir, "-o", "json")
		if !json.Valid([]byte(ls)) || !strings.Contains(ls, string(mustJSON(t, name))) {
			t.Fatalf("ls -o json does not carry %q: %s", name, ls)
		}
		// Text output escapes the name; a name of printable UTF-8 appears as it is.
		if utf8.ValidString(name) && strings.IndexFunc(name, func(r rune) bool { return !unicode.IsPrint(r) || r == '\\' }) < 0 &&
			!strings.Contains(run("show", "--", dir, name), name) {
			t.Fatalf("show does not print the name %q", name)
		}
		for _, args := range [][]string{{"show", "--", dir, name}, {"ls", dir}} {
			for _, r := range run(args...) {
				if r != '\n' && r != '\t' && (r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0)) {
					t.Fatalf("spool-agent %q prints control character %U", args, r)
				}
			}
		}
	})
}

func mustJSON(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzConfigFile feeds arbitrary configuration files to the parser of every
// command (run's included, without running it) and to fsck: the program
// never panics, a bad file exits 2 with one "spool-agent: " line on stderr,
// and a good one gives fsck's valid JSON.
func FuzzConfigFile(f *testing.F) {
	for _, s := range []string{
		"output: json\n",
		"max-checked-out-age: 1m\nmax-queue-age: {in: 5m}\n",
		"spools:\n  mail:\n    dir: /srv/mail\n    check-every: 1s\n    max-queue-age: {active: 5m}\n",
		"spools: [1, 2]\n",
		"max-queue-age: {in: 1d}\n",
		"{\"output\": \"json\"}",
		"output: [json\n",
		"nosuchkey: 1\n",
		"&a [*a]\n",
		"log.level: debug\nweb.listen-address: [\":0\"]\n",
		"\x00\xff",
	} {
		f.Add(s)
	}
	base := f.TempDir()
	dir := filepath.Join(base, "spool")
	if _, err := spool.Create(dir, []string{"in"}, nil); err != nil {
		f.Fatal(err)
	}
	cfg := filepath.Join(base, "config.yaml")
	f.Fuzz(func(t *testing.T, content string) {
		if err := os.WriteFile(cfg, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		var stdout, stderr bytes.Buffer
		m := fuzzMain(&stdout, &stderr)
		if err := m.ParseFlags([]string{"--config", cfg, "run", "--spool", "s=" + dir}); err != nil && err.Error() == "" {
			t.Fatal("empty error")
		}
		m.Close()
		stdout.Reset()
		stderr.Reset()
		code := fuzzMain(&stdout, &stderr).Main(context.Background(), []string{"fsck", dir, "--config", cfg, "-o", "json"})
		switch code {
		case 0, 1:
			if !json.Valid(stdout.Bytes()) {
				t.Fatalf("fsck -o json with config %q: invalid JSON %q", content, stdout.String())
			}
		case 2:
			msg := stderr.String()
			if !strings.HasPrefix(msg, "spool-agent: ") || strings.Count(strings.TrimSpace(msg), "\n") != 0 {
				t.Fatalf("config %q: exit 2 with %q: want one spool-agent: line", content, msg)
			}
		default:
			t.Fatalf("config %q: exit %d: %s", content, code, stderr.String())
		}
	})
}

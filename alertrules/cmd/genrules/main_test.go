package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spool-agent/spool-agent/alertrules"
)

func TestRunWritesTheConfiguredRules(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "t.yaml")
	if err := os.WriteFile(cfgPath, []byte("thresholds:\n  checkedOutAge: 7m\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "rules.yml")
	if err := run([]string{"-config", cfgPath, "-o", out}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	cfg := alertrules.DefaultConfig()
	cfg.Thresholds.CheckedOutAge = alertrules.MustParseDuration("7m")
	want, err := alertrules.Generate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("-o wrote\n%s\nwant\n%s", got, want)
	}
	if !strings.Contains(string(got), "> 420") {
		t.Error("the 7m threshold is not in the rules")
	}
	if st, err := os.Stat(out); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("rules file mode: %v %v", st.Mode(), err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".genrules-*"))
	if len(left) != 0 {
		t.Errorf("temporary files left behind: %q", left)
	}
}

func TestRunRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("thresholds:\n  nope: 1m\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"-config", bad},
		{"-config", filepath.Join(dir, "missing.yaml")},
		{"extra"},
		{"-nosuchflag"},
	} {
		if err := run(args); err == nil {
			t.Errorf("run(%q) succeeded", args)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "rules.yml")); err == nil {
		t.Error("a failed run wrote rules")
	}
}

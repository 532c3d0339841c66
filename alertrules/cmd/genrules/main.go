// Command genrules writes spool-agent's Prometheus recording and alerting
// rules, with the thresholds, selector and per-queue overrides of a YAML
// configuration (see alertrules/thresholds.yaml), to standard output or to
// the file named by -o; with -alertmanager-inhibit, the Alertmanager inhibit
// rules that go with those rules instead.
//
//	go run ./alertrules/cmd/genrules -config thresholds.yaml -o spool-agent.rules.yml
//	go run ./alertrules/cmd/genrules -config thresholds.yaml -alertmanager-inhibit -o spool-agent.inhibit.yml
//
// Without -config it writes the bundled files (the defaults).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spool-agent/spool-agent/alertrules"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "genrules:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("genrules", flag.ContinueOnError)
	config := fs.String("config", "", "YAML `file` of thresholds, selector and overrides (default: the built-in defaults)")
	out := fs.String("o", "", "write the rules to `file` instead of standard output")
	inhibit := fs.Bool("alertmanager-inhibit", false, "write the Alertmanager inhibit rules that go with the rules instead of the rules")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	cfg := alertrules.DefaultConfig()
	if *config != "" {
		var err error
		if cfg, err = alertrules.LoadConfigFile(*config); err != nil {
			return err
		}
	}
	generate := alertrules.Generate
	if *inhibit {
		generate = alertrules.GenerateInhibitRules
	}
	b, err := generate(cfg)
	if err != nil {
		return err
	}
	if *out == "" {
		_, err = os.Stdout.Write(b)
		return err
	}
	// Write next to the target and rename, so Prometheus never reloads a
	// half-written file.
	tmp, err := os.CreateTemp(filepath.Dir(*out), ".genrules-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), *out)
}

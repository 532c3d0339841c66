package main

import (
	"fmt"
	"strings"

	"github.com/spool-agent/spool-agent/monitor"
)

// spoolArg resolves the DIR argument of fsck, shape and ls: the name of a
// spool that the agent would watch with the --config file (its spools:
// section, its spool and spool-glob keys) is that spool, with the settings
// the agent gives it; anything else is a directory, with no settings (the
// caller's flags, whose defaults are run's). The agent's view is built from
// the file alone, never from the environment, as the one-shot commands'
// flags are.
func (m *Main) spoolArg(arg string) (dir string, cfg *monitor.Config, err error) {
	if m.config == nil || arg == "" || strings.ContainsRune(arg, '/') {
		return arg, nil, nil
	}
	defs, err := m.agentSpools()
	if err != nil {
		return "", nil, fmt.Errorf("the spools of %s: %w", m.config.path, err)
	}
	for _, d := range defs {
		if d.Name == arg {
			return d.Dir, &d.Config, nil
		}
	}
	return arg, nil, nil
}

// agentSpools returns the spools that `run --config FILE` would watch.
func (m *Main) agentSpools() ([]spoolDef, error) {
	agent := *m
	agent.LookupEnv = nil
	cli, _, cfg, err := agent.parse([]string{"--config", m.config.path, "run"})
	if err != nil {
		return nil, err
	}
	defs, _, err := cli.Run.spoolDefs(cfg)
	return defs, err
}

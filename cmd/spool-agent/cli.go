package main

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kong"

	"github.com/spool-agent/spool-agent/exporters/otelexporter"
	"github.com/spool-agent/spool-agent/monitor"
	"github.com/spool-agent/spool-agent/repair"
	"github.com/spool-agent/spool-agent/spool"
)

// envPrefix prefixes the environment variable of every flag:
// --web.listen-address is SPOOL_AGENT_WEB_LISTEN_ADDRESS.
const envPrefix = "SPOOL_AGENT_"

const description = `Watch multispool spools and export their health to Prometheus and OpenTelemetry, and operate on spools by hand.

The global flags and run's flags can also be set in the environment (SPOOL_AGENT_ and the flag's name in capitals with - and . as _, lists comma-separated); the other commands' flags are never read from it, so that a variable meant for the agent cannot change a one-shot command. Every flag can be set in the file of --config (YAML or JSON, keys are long flag names). Precedence: command line, then environment, then configuration file, then default.`

// CLI is the command-line grammar.
type CLI struct {
	Config    string      `placeholder:"FILE" help:"Read flag values (and run's per-spool settings) from this YAML or JSON file."`
	LogLevel  string      `name:"log.level" default:"info" enum:"debug,info,warn,error" placeholder:"LEVEL" help:"Log level: debug, info, warn or error (default: ${default})."`
	LogFormat string      `name:"log.format" default:"logfmt" enum:"logfmt,json" placeholder:"FORMAT" help:"Log format: logfmt or json (default: ${default})."`
	Version   versionFlag `help:"Print the version and revision, then exit."`
	// MaxMetadataSize bounds what is read of an entry's metadata: a larger
	// (or sparse) file is refused before the entry is claimed.
	MaxMetadataSize byteSize `default:"${max_metadata_size}" placeholder:"SIZE" help:"Refuse to read metadata files larger than this (KiB, MiB, GiB units); such an entry is left where it is (default: ${default})."`

	Run     RunCmd     `cmd:"" help:"Run the agent: watch spools, serve /metrics, export over OTLP."`
	Init    InitCmd    `cmd:"" help:"Create a spool, or add queues to an existing one."`
	Enqueue EnqueueCmd `cmd:"" help:"Add an entry to a queue and print its name."`
	Ls      LsCmd      `cmd:"" help:"List entries: name, queue, state, mtime, data size."`
	Show    ShowCmd    `cmd:"" help:"Show one entry with its metadata."`
	Shape   ShapeCmd   `cmd:"" help:"Show the age distribution of each queue's entries and checkouts (like Postfix's qshape)."`
	Fsck    FsckCmd    `cmd:"" help:"Check a spool once; exit 0 when clean, 1 when problems were found, 2 when it could not check."`
	Mv      MvCmd      `cmd:"" help:"Move entries to another queue (claiming each first, so never under a worker's feet; names from standard input with -)."`
	Rm      RmCmd      `cmd:"" help:"Remove entries (claiming each first, so never one a worker holds; names from standard input with -)."`
	Recover RecoverCmd `cmd:"" help:"Return checked-out entries older than a duration to their queues."`
	Repair  RepairCmd  `cmd:"" help:"Repair what fsck reports without deleting an entry that may have been acknowledged; prints the plan unless --apply."`

	// given holds the long names of the flags given on the command line
	// (not from the environment or the file), which win over a spool's
	// settings from --config.
	given map[string]bool
}

// command is implemented by every subcommand.
type command interface {
	run(ctx context.Context, m *Main) error
}

func (c *CLI) run(ctx context.Context, m *Main) error {
	var cmd command
	switch strings.Fields(m.cmd)[0] {
	case "run":
		cmd = &c.Run
	case "init":
		cmd = &c.Init
	case "enqueue":
		cmd = &c.Enqueue
	case "ls":
		cmd = &c.Ls
	case "show":
		cmd = &c.Show
	case "shape":
		cmd = &c.Shape
	case "fsck":
		cmd = &c.Fsck
	case "mv":
		cmd = &c.Mv
	case "rm":
		cmd = &c.Rm
	case "recover":
		cmd = &c.Recover
	case "repair":
		cmd = &c.Repair
	default:
		return fmt.Errorf("unknown command %q", m.cmd)
	}
	return cmd.run(ctx, m)
}

// LimitFlags are the monitor's age limits, shared by run and fsck (and
// settable per spool, see RunCmd).
type LimitFlags struct {
	MaxCheckedOutAge time.Duration            `spool:"" default:"${max_checked_out_age}" placeholder:"DURATION" help:"A checked-out entry older than this is a too_old problem (default: ${default})."`
	MaxTmpFileAge    time.Duration            `spool:"" default:"${max_tmp_file_age}" placeholder:"DURATION" help:"A file in .tmp older than this is a too_old problem (default: ${default})."`
	MaxQueueAge      map[string]time.Duration `spool:"" mapsep:"," placeholder:"QUEUE=DURATION" help:"An entry waiting in QUEUE longer than DURATION is a too_old problem (repeatable; default: no limit)."`
}

func (l LimitFlags) limits() (monitor.Limits, error) {
	if l.MaxCheckedOutAge < 0 || l.MaxTmpFileAge < 0 {
		return monitor.Limits{}, errors.New("age limits must not be negative")
	}
	for q, d := range l.MaxQueueAge {
		if err := validQueue(q); err != nil {
			return monitor.Limits{}, fmt.Errorf("--max-queue-age %s=%v: %w", q, d, err)
		}
		if d < 0 {
			return monitor.Limits{}, fmt.Errorf("--max-queue-age %s=%v: negative duration", q, d)
		}
	}
	return monitor.Limits{
		MaxCheckedOutAge: l.MaxCheckedOutAge,
		MaxTmpFileAge:    l.MaxTmpFileAge,
		MaxQueueAge:      l.MaxQueueAge,
	}, nil
}

// OutputFlag is the -o flag of the commands that can print JSON.
type OutputFlag struct {
	Output string `short:"o" default:"text" enum:"text,json" placeholder:"FORMAT" help:"Output format: text or json (one JSON document)."`
}

func (o OutputFlag) json() bool { return o.Output == "json" }

// defaultVars are the defaults of the flags, taken from the packages that
// own them, for the tags' ${...}: each default is written once.
func defaultVars() kong.Vars {
	return kong.Vars{
		"max_metadata_size":   byteSize(spool.DefaultMaxMetadataSize).String(),
		"durability":          spool.DefaultDurability.String(),
		"check_every":         flagDuration(monitor.DefaultCheckEvery),
		"alert_after_cycles":  strconv.Itoa(monitor.DefaultAlertAfterCycles),
		"full_rescan_every":   flagDuration(monitor.DefaultFullRescanEvery),
		"max_checked_out_age": flagDuration(monitor.DefaultMaxCheckedOutAge),
		"max_tmp_file_age":    flagDuration(monitor.DefaultMaxTmpFileAge),
		"max_unregistered":    strconv.Itoa(monitor.DefaultMaxUnregistered),
		"max_queues":          strconv.Itoa(monitor.DefaultMaxQueues),
		"max_watches":         strconv.Itoa(monitor.DefaultMaxWatches),
		"listen_address":      DefaultListenAddress,
		"quarantine_queue":    repair.DefaultQuarantineQueue,
		"otlp_protocol":       otelexporter.DefaultProtocol,
		"otlp_service_name":   otelexporter.DefaultServiceName,
	}
}

// flagDuration formats d as a person writes it in a flag: 10m rather than
// time.Duration's 10m0s.
func flagDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// versionFlag prints the version line and exits.
type versionFlag bool

// BeforeReset prints the version before anything else is parsed.
func (versionFlag) BeforeReset(app *kong.Kong, vars kong.Vars) error {
	fmt.Fprintln(app.Stdout, vars["version"])
	app.Exit(0)
	return nil
}

// exitPanic is how kong's Exit (after --help or --version) unwinds Parse.
type exitPanic int

// newParser builds the kong parser of cli for m.
func (m *Main) newParser(cli *CLI, res *resolvers) (*kong.Kong, error) {
	// The flags read from the environment, known once the model is built
	// (help is rendered later, at parse time).
	fromEnv := map[*kong.Value]bool{}
	helpWithEnv := func(v *kong.Value) string {
		if v.Flag == nil || !fromEnv[v] {
			return v.Help
		}
		return v.Help + " ($" + envName(v.Name) + ")"
	}
	parser, err := kong.New(cli,
		kong.Name("spool-agent"),
		kong.Description(description),
		kong.Writers(m.Stdout, m.Stderr),
		kong.Exit(func(code int) { panic(exitPanic(code)) }),
		defaultVars().CloneWith(kong.Vars{"version": versionLine(m.Version, m.Revision)}),
		kong.ValueFormatter(helpWithEnv),
		kong.ConfigureHelp(kong.HelpOptions{WrapUpperBound: 100}),
		kong.Resolvers(res.config, res.env),
		kong.KindMapper(reflect.String, rawString),
	)
	if err != nil {
		return nil, err
	}
	for _, f := range parser.Model.Flags {
		fromEnv[f.Value] = envFlag(f)
	}
	for _, n := range parser.Model.Children {
		if n.Type == kong.CommandNode && n.Name == "run" {
			for _, f := range n.Flags {
				fromEnv[f.Value] = envFlag(f)
			}
		}
	}
	return parser, nil
}

// envFlag reports whether f, a global flag or one of run's, is read from
// the environment (all but --help and --version).
func envFlag(f *kong.Flag) bool { return f.Name != "help" && f.Name != "version" }

// readsEnv reports whether a flag of the node at path is read from the
// environment: global flags and run's are; the one-shot commands' flags are
// not, so that SPOOL_AGENT_NAME meant for nothing (or SPOOL_AGENT_OUTPUT
// meant for a script) never changes what enqueue or ls do.
func readsEnv(path *kong.Path, flag *kong.Flag) bool {
	if !envFlag(flag) {
		return false
	}
	switch {
	case path == nil:
		return false
	case path.App != nil:
		return true
	case path.Command != nil:
		return path.Command.Name == "run"
	}
	return false
}

// rawString decodes a string flag or argument as given. (kong's own
// mapper goes through encoding/json, which turns bytes that are not UTF-8
// into U+FFFD: a path or an entry name with such bytes, legal on Linux,
// could not be named.)
var rawString = kong.MapperFunc(func(ctx *kong.DecodeContext, target reflect.Value) error {
	t, err := ctx.Scan.PopValue("string")
	if err != nil {
		return err
	}
	if s, ok := t.Value.(string); ok {
		target.SetString(s)
	} else {
		target.SetString(fmt.Sprint(t.Value))
	}
	return nil
})

// parse parses args with the configuration file and the environment.
func (m *Main) parse(args []string) (cli *CLI, cmd string, cfg *configFile, err error) {
	cli = &CLI{}
	res := m.newResolvers()
	parser, err := m.newParser(cli, res)
	if err != nil {
		return nil, "", nil, fmt.Errorf("building the command line: %w", err)
	}
	defer func() {
		if r := recover(); r != nil {
			code, ok := r.(exitPanic)
			if !ok {
				panic(r)
			}
			cli, cmd, cfg, err = nil, "", nil, errExit
			if code != 0 {
				err = &exitError{code: int(code)}
			}
		}
	}()
	kctx, err := parser.Parse(args)
	// A configuration file that cannot be read or is invalid is the
	// first thing to say: the other errors may follow from it.
	if res.cfgErr != nil {
		return nil, "", nil, &exitError{code: exitUsage, err: res.cfgErr}
	}
	if err != nil {
		return nil, "", nil, &exitError{code: exitUsage, err: err}
	}
	cli.given = map[string]bool{}
	for _, p := range kctx.Path {
		if p.Flag != nil && !p.Resolved {
			cli.given[p.Flag.Name] = true
		}
	}
	return cli, kctx.Command(), res.cfg, nil
}

// envName is the environment variable of the flag named name.
func envName(name string) string {
	return envPrefix + strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(name))
}

// Command spool-agent watches multispool spools and exports their health to
// Prometheus and OpenTelemetry (`spool-agent run`), and gives operators
// subcommands to create spools and to enqueue, list, show, move, remove,
// recover and check entries. Run `spool-agent --help` for the reference.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spool-agent/spool-agent/collector"
	"github.com/spool-agent/spool-agent/internal/termsafe"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	m := NewMain()
	m.Reload = hup
	code := m.Main(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// Exit statuses.
const (
	exitOK       = 0
	exitFailure  = 1 // the command failed (fsck: problems found)
	exitUsage    = 2 // bad flags or arguments, unreadable or invalid configuration
	exitNotCheck = 2 // fsck could not check the spool
)

// Main is the program with its environment injected, so that tests drive
// it in-process as the binary runs: ParseFlags, then Run, then Close.
type Main struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// LookupEnv reads the environment (SPOOL_AGENT_* variables and the
	// standard OTEL_* ones).
	LookupEnv func(string) (string, bool)
	// Now is the clock of the operator subcommands (ages in shape, fsck
	// limits, recover).
	Now func() time.Time
	// Reload receives a value for each reload request (SIGHUP in the binary).
	Reload <-chan os.Signal
	// DefaultStatePath is where run keeps its state file without
	// --state.path (collector.DefaultStatePath in the binary); nil keeps
	// none, as in tests.
	DefaultStatePath func() (string, error)
	// Version and Revision label --version and spool_agent_build_info.
	Version, Revision string

	// httpLimits replaces the agent's HTTP timeouts and connection cap
	// (tests shorten them); nil means defaultHTTPLimits.
	httpLimits *httpLimits

	args   []string // the command line, kept to parse it again on reload
	cli    *CLI
	cmd    string      // the selected command, as kong names it ("ls <dir>")
	config *configFile // the --config file, nil without one
	// closers run in reverse order by Close.
	closers []func() error
}

// NewMain returns a Main attached to the process's standard streams,
// environment and clock.
func NewMain() *Main {
	v, r := buildVersion()
	m := &Main{
		Stdin:     os.Stdin,
		Stdout:    os.Stdout,
		Stderr:    os.Stderr,
		LookupEnv: os.LookupEnv,
		Now:       time.Now,
		Version:   v,
		Revision:  r,
	}
	// The binary's state file follows systemd's and XDG's variables, read
	// through Main's environment as every other variable.
	m.DefaultStatePath = func() (string, error) {
		lookup := m.LookupEnv
		if lookup == nil {
			lookup = func(string) (string, bool) { return "", false }
		}
		return collector.DefaultStatePath(lookup)
	}
	return m
}

// exitError carries an exit status with an error; a nil err means that
// the command already said what there is to say.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// errExit is returned by ParseFlags when --help or --version has been
// served: the program ends with status 0 without running a command.
var errExit = errors.New("exit requested")

// Main runs the program on args and returns its exit status. Every error
// is printed as one line on Stderr, prefixed with "spool-agent: ".
func (m *Main) Main(ctx context.Context, args []string) int {
	err := m.ParseFlags(args)
	if err == nil {
		err = m.Run(ctx)
	}
	if cerr := m.Close(); err == nil && cerr != nil {
		err = cerr
	}
	switch {
	case err == nil, errors.Is(err, errExit):
		return exitOK
	}
	code := exitFailure
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
		if ee.err == nil {
			return code
		}
	}
	fmt.Fprintln(m.Stderr, "spool-agent: "+termsafe.Line(oneLine(err.Error())))
	return code
}

// oneLine joins the lines of a multi-line message (errors.Join) with "; ".
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "\n") {
		return s
	}
	lines := strings.FieldsFunc(s, func(r rune) bool { return r == '\n' })
	return strings.Join(lines, "; ")
}

// ParseFlags parses args (without the program name) with the configuration
// file and the environment.
func (m *Main) ParseFlags(args []string) error {
	m.args = args
	cli, cmd, cfg, err := m.parse(args)
	if err != nil {
		return err
	}
	m.cli, m.cmd, m.config = cli, cmd, cfg
	return nil
}

// Run runs the selected command until it finishes or ctx is done.
func (m *Main) Run(ctx context.Context) error {
	if m.cli == nil {
		return errors.New("Run called before ParseFlags")
	}
	return m.cli.run(ctx, m)
}

// Close releases what Run left open, in reverse order of acquisition.
func (m *Main) Close() error {
	var errs []error
	for i := len(m.closers) - 1; i >= 0; i-- {
		errs = append(errs, m.closers[i]())
	}
	m.closers = nil
	return errors.Join(errs...)
}

func (m *Main) onClose(f func() error) { m.closers = append(m.closers, f) }

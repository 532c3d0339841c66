package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/exporter-toolkit/web"
	"gopkg.in/yaml.v3"

	"github.com/spool-agent/spool-agent/collector"
	"github.com/spool-agent/spool-agent/exporters/promexporter"
	"github.com/spool-agent/spool-agent/internal/termsafe"
	"github.com/spool-agent/spool-agent/monitor"
	console "github.com/spool-agent/spool-agent/web"
)

// DefaultListenAddress is where the agent serves /metrics. Port 19317 lies
// outside 9100-9999, which Prometheus' list of default exporter ports
// has fully allocated.
const DefaultListenAddress = ":19317"

// RunCmd runs the agent.
type RunCmd struct {
	Spool       []string `placeholder:"NAME=DIR" help:"Watch the spool in DIR, called NAME in metrics and logs (repeatable)."`
	SpoolGlob   []string `placeholder:"PATTERN" help:"Watch every spool directory (one with a .registry directory) that PATTERN matches, named after its base name (repeatable; matched again on SIGHUP, and on changes unless --no-config.auto-reload)."`
	Create      bool     `help:"Create the missing spool directories of --spool and of the configuration file."`
	CreateQueue []string `default:"active" placeholder:"QUEUE" help:"The queues of the spools that --create creates (repeatable; default: ${default})."`

	// The fields tagged spool:"" can also be set per spool, in the
	// spools: section of the configuration file (under their long names).
	CheckEvery       time.Duration `spool:"" default:"${check_every}" placeholder:"DURATION" help:"Check each spool this often (default: ${default})."`
	AlertAfterCycles int           `spool:"" default:"${alert_after_cycles}" placeholder:"N" help:"A problem alerts once seen in more than N consecutive checks, so from the third with 2 (default: ${default})."`
	FullRescanEvery  time.Duration `spool:"" default:"${full_rescan_every}" placeholder:"DURATION" help:"List every directory of a spool this often even when inotify reports its changes (default: ${default})."`
	MaxUnregistered  int           `default:"${max_unregistered}" placeholder:"N" help:"Track at most N files with no registry file per spool (in queues, checkouts, .data); past it a limit problem, and the spool is scanned in full each cycle instead of watched (default: ${default})."`
	MaxQueues        int           `default:"${max_queues}" placeholder:"N" help:"Track at most N queues (and other root directories) per spool; past it a limit problem (default: ${default})."`
	MaxWatches       int           `default:"${max_watches}" placeholder:"N" help:"Use at most N inotify watches per spool; past it a limit problem, and the spool is polled (default: ${default})."`
	LimitFlags

	ConfigAutoReload bool `name:"config.auto-reload" default:"true" negatable:"" help:"Reload as on SIGHUP, within a second, when the --config file's content or the --spool-glob matches change (a directory that becomes a spool, a spool removed); --no-config.auto-reload leaves reloads to SIGHUP (default: on)."`

	StatePath string `name:"state.path" placeholder:"FILE" help:"Keep each spool's alert state (problem counts, which alert) in FILE, so that a restart neither ends nor delays an alert; never inside a spool (default: $$STATE_DIRECTORY/state.json under systemd, else $$XDG_STATE_HOME/spool-agent/state.json or ~/.local/state/spool-agent/state.json)."`

	WebListenAddress []string `name:"web.listen-address" default:"${listen_address}" placeholder:"ADDRESS" help:"Address to serve /metrics on (repeatable; default: ${default})."`
	WebConfigFile    string   `name:"web.config.file" placeholder:"FILE" help:"Web configuration file (exporter-toolkit format) for TLS and basic authentication."`

	OTLPFlags
}

// shutdownTimeout bounds the clean shutdown (HTTP, collector, OTLP flush).
const shutdownTimeout = 10 * time.Second

func parseLevel(s string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return slog.LevelInfo
	}
	return l
}

func newHandler(w io.Writer, format string, level slog.Leveler) slog.Handler {
	o := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.NewJSONHandler(termsafe.NewJSONWriter(w), o)
	}
	o.ReplaceAttr = escapeLogAttr
	return slog.NewTextHandler(w, o)
}

func (c *RunCmd) run(ctx context.Context, m *Main) error {
	level := new(slog.LevelVar)
	level.Set(parseLevel(m.cli.LogLevel))
	stderrHandler := newHandler(m.Stderr, m.cli.LogFormat, level)
	logger := slog.New(stderrHandler)

	defs, skipped, err := c.spoolDefs(m.config)
	if err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	skips := &skipLog{}
	skips.log(logger, skipped)
	if len(defs) == 0 && len(c.SpoolGlob) == 0 {
		return &exitError{code: exitUsage, err: errors.New("no spool to watch: give --spool NAME=DIR, --spool-glob PATTERN or a spools: section in --config")}
	}
	if c.Create {
		if err := createMissing(defs, c.CreateQueue); err != nil {
			return err
		}
	}
	if err := web.Validate(c.WebConfigFile); err != nil {
		return &exitError{code: exitUsage, err: fmt.Errorf("--web.config.file %s: %w", c.WebConfigFile, err)}
	}
	scheme, err := webScheme(c.WebConfigFile)
	if err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	if len(c.WebListenAddress) == 0 {
		return &exitError{code: exitUsage, err: errors.New("--web.listen-address: no address")}
	}
	var listeners []net.Listener
	for _, addr := range c.WebListenAddress {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			for _, l := range listeners {
				l.Close()
			}
			return fmt.Errorf("--web.listen-address %s: %w", addr, err)
		}
		listeners = append(listeners, l)
	}
	closeListeners := func() {
		for _, l := range listeners {
			l.Close()
		}
	}

	// The OTel metrics read the collector's snapshots, and the collector
	// logs through the OTel fan-out: the collector comes second.
	var current atomic.Pointer[collector.Collector]
	snapshots := func() []*monitor.Snapshot {
		if col := current.Load(); col != nil {
			return col.Snapshots()
		}
		return nil
	}
	otlp, err := c.setupOTLP(ctx, m, snapshots, logger)
	if err != nil {
		closeListeners()
		return &exitError{code: exitUsage, err: fmt.Errorf("OTLP: %w", err)}
	}
	// Close flushes OTLP, after run has stopped everything that exports.
	m.onClose(func() error {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
		defer cancel()
		return otlp.Shutdown(sctx)
	})
	// Events go to stderr as aggregated log lines and to OTel as event
	// records (one per event: not also through the slog bridge).
	eventLogger := logger
	logger = slog.New(otlp.SlogHandler(stderrHandler))
	events := console.NewEvents() // the console's last Start and End

	onEvent := func(spoolName string, ev monitor.Event) {
		otlp.OnEvent(spoolName, ev)
		events.Record(spoolName, ev)
	}
	opts := collector.DefaultOptions()
	opts.StatePath = c.statePath(m, logger)
	// The log gets one line per spool, cycle, kind and directory (a count
	// and the first names), not one per file: a flood of files in a spool
	// cannot flood the log.
	opts.EventLog = eventLogger
	col := collector.NewWithOptions(logger, onEvent, opts)
	if err := col.Apply(collectorSpools(defs)); err != nil {
		closeListeners()
		return &exitError{code: exitUsage, err: err}
	}
	current.Store(col)
	collCtx, stopCollector := context.WithCancel(context.WithoutCancel(ctx))
	collDone := make(chan error, 1)
	go func() { collDone <- col.Run(collCtx) }()
	stopColl := func() {
		stopCollector()
		<-collDone
	}

	reloads := newReloadState(skips, defs, time.Now)
	handler, err := c.handler(m, col, events, reloads.collectors()...)
	if err != nil {
		closeListeners()
		stopColl()
		return err
	}
	limits := defaultHTTPLimits()
	if m.httpLimits != nil {
		limits = *m.httpLimits
	}
	server := limits.server(refuseBodies(handler), slog.NewLogLogger(logger.Handler(), slog.LevelWarn))
	var conns connLimiter
	server.ConnState = conns.connState
	systemd := false
	flags := &web.FlagConfig{WebListenAddresses: &c.WebListenAddress, WebSystemdSocket: &systemd, WebConfigFile: &c.WebConfigFile}
	serveDone := make(chan error, 1)
	limited := make([]net.Listener, len(listeners))
	for i, l := range listeners {
		limited[i] = conns.listen(l, limits.MaxConns)
	}
	go func() { serveDone <- web.ServeMultiple(limited, server, flags, logger) }()
	for _, l := range listeners {
		fmt.Fprintf(m.Stderr, "spool-agent: serving metrics on %s\n", servingLine(scheme, l.Addr()))
	}
	logger.Info("spool-agent started", "spools", len(defs), "state", opts.StatePath, "version", m.Version, "revision", m.Revision)
	changes, stopDiscovery := c.startDiscovery(ctx, m, logger, reloads)

	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			logger.Info("shutting down")
			break loop
		case err := <-serveDone:
			runErr = fmt.Errorf("serving HTTP: %w", err)
			break loop
		case <-m.Reload:
			c.reload(m, col, level, logger, reloads)
		case <-changes:
			c.reload(m, col, level, logger, reloads)
		}
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := server.Shutdown(sctx); err != nil && runErr == nil {
		runErr = fmt.Errorf("HTTP shutdown: %w", err)
	}
	closeListeners()
	stopDiscovery()
	stopColl()
	return runErr
}

// statePath is the state file of the collector: --state.path, else the
// default place (Main.DefaultStatePath); "" (logged) when there is none.
func (c *RunCmd) statePath(m *Main, logger *slog.Logger) string {
	if c.StatePath != "" {
		return c.StatePath
	}
	if m.DefaultStatePath == nil {
		return ""
	}
	p, err := m.DefaultStatePath()
	if err != nil {
		logger.Warn("no state file: alerts restart from zero after a restart (give --state.path)", "err", err)
		return ""
	}
	return p
}

// reload parses the command line, the environment and the configuration
// file again, and applies the new set of spools; the collector keeps the
// state of the spools whose settings did not change. A bad configuration
// is logged and the running one kept. Listen addresses, the web and OTLP
// settings and the log format take effect at the next start only. SIGHUP
// and the discovery watcher (reload.go) both come here.
func (c *RunCmd) reload(m *Main, coll *collector.Collector, level *slog.LevelVar, logger *slog.Logger, rs *reloadState) {
	logger.Info("reloading the configuration")
	cli, _, cfg, err := m.parse(m.args)
	var defs []spoolDef
	var skipped []skippedMatch
	if err == nil {
		defs, skipped, err = cli.Run.spoolDefs(cfg)
	}
	rs.skips.log(logger, skipped)
	if err == nil && cli.Run.Create {
		err = createMissing(defs, cli.Run.CreateQueue)
	}
	if err == nil {
		err = coll.Apply(collectorSpools(defs))
	}
	if err != nil {
		rs.failed(logger, err)
		return
	}
	m.cli, m.config = cli, cfg
	level.Set(parseLevel(cli.LogLevel))
	rs.succeeded(logger, defs, cli.Run.SpoolGlob)
}

// handler serves the console (package web), its JSON API, /metrics from
// the collector's snapshots, and the health endpoints.
func (c *RunCmd) handler(m *Main, coll *collector.Collector, events *console.Events, extra ...prometheus.Collector) (http.Handler, error) {
	// The spool series are written straight from the snapshots (the fast
	// path, see exporters/promexporter.NewHandler); Go and process metrics
	// come from their own registry. exp must not be registered there too.
	exp := promexporter.New(coll.Snapshots, promexporter.Options{Version: m.Version, Revision: m.Revision})
	others := prometheus.NewRegistry()
	others.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	others.MustRegister(extra...) // the reload metrics
	// Every route is GET (and so HEAD): another method gets 405 with Allow.
	return console.New(console.Options{
		Snapshots: coll.Snapshots,
		Events:    events,
		Metrics:   promexporter.NewHandler(exp, others, promhttp.HandlerOpts{Registry: others}),
		Version:   versionLine(m.Version, m.Revision),
	}), nil
}

// webScheme returns "https" when the web configuration file sets up TLS.
func webScheme(path string) (string, error) {
	if path == "" {
		return "http", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--web.config.file: %w", err)
	}
	var cfg struct {
		TLS struct {
			CertFile string `yaml:"cert_file"`
			Cert     string `yaml:"cert"`
		} `yaml:"tls_server_config"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		return "", fmt.Errorf("--web.config.file %s: %w", path, err)
	}
	if cfg.TLS.CertFile != "" || cfg.TLS.Cert != "" {
		return "https", nil
	}
	return "http", nil
}

// metricsURL is the URL of /metrics on a listener's address.
func metricsURL(scheme string, addr net.Addr) string {
	return scheme + "://" + addr.String() + "/metrics"
}

// servingLine says where the agent serves /metrics: the address actually
// bound, and, when that is every interface, says so and gives the
// loopback URL to try from the host itself.
func servingLine(scheme string, addr net.Addr) string {
	a, ok := addr.(*net.TCPAddr)
	if !ok || a.IP != nil && !a.IP.IsUnspecified() {
		return metricsURL(scheme, addr)
	}
	local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: a.Port}
	return fmt.Sprintf("%s (all interfaces; from this host %s)", metricsURL(scheme, addr), metricsURL(scheme, local))
}

// httpLimits bound what clients can hold of the agent's HTTP server, so
// that slow, idle or numerous clients cannot take its file descriptors
// or stall scrapes.
type httpLimits struct {
	ReadHeaderTimeout time.Duration // a request's headers
	ReadTimeout       time.Duration // a whole request, body included
	WriteTimeout      time.Duration // a response: far above the slowest scrape measured (12 ms, see README)
	IdleTimeout       time.Duration // a keep-alive connection between requests
	MaxConns          int           // connections served at once per listen address; more wait to be accepted, idle ones are shed for them
}

func defaultHTTPLimits() httpLimits {
	return httpLimits{
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxConns:          64,
	}
}

func (l httpLimits) server(h http.Handler, errorLog *log.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		ReadTimeout:       l.ReadTimeout,
		WriteTimeout:      l.WriteTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          errorLog,
	}
}

// refuseBodies answers a request that carries a body (every route is a GET)
// with 413 and closes the connection, without reading the body: a client
// that sends one slowly cannot hold the connection. (net/http would read
// up to 256 KiB of an unread body before closing, at the client's pace:
// the read deadline in the past stops that.)
func refuseBodies(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength != 0 || len(r.TransferEncoding) > 0 {
			_ = http.NewResponseController(w).SetReadDeadline(time.Now())
			w.Header().Set("Connection", "close")
			http.Error(w, "request bodies are not accepted", http.StatusRequestEntityTooLarge)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// collectorSpools converts the spool definitions for the collector.
func collectorSpools(defs []spoolDef) []collector.Spool {
	out := make([]collector.Spool, len(defs))
	for i, d := range defs {
		out[i] = collector.Spool{Name: d.Name, Dir: d.Dir, Config: d.Config}
	}
	return out
}

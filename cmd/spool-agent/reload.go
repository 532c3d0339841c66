package main

import (
	"context"
	"log/slog"
	"reflect"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spool-agent/spool-agent/discovery"
)

// reloadState is what the reloads of a run share, whatever asked for them
// (SIGHUP, or the discovery watcher seeing a spool or the configuration
// file change): the running spools, to log what a reload changed, the
// reload metrics, as Prometheus and Alertmanager expose them, and the
// watcher, which follows the patterns of the running configuration.
type reloadState struct {
	skips   *skipLog
	defs    []spoolDef // of the running configuration
	now     func() time.Time
	watcher *discovery.Watcher // nil without discovery

	successful  prometheus.Gauge
	successTime prometheus.Gauge
	reloads     *prometheus.CounterVec
}

func newReloadState(skips *skipLog, defs []spoolDef, now func() time.Time) *reloadState {
	r := &reloadState{
		skips: skips,
		defs:  defs,
		now:   now,
		successful: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spool_agent_config_last_reload_successful",
			Help: "Whether the last reload of the configuration (SIGHUP, or a change of the --config file or of the --spool-glob matches) succeeded (1) or not (0).",
		}),
		successTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spool_agent_config_last_reload_success_timestamp_seconds",
			Help: "When the configuration was last loaded successfully (the start counts).",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spool_agent_config_reloads_total",
			Help: "Reloads of the configuration, by result (success or failure).",
		}, []string{"result"}),
	}
	// The start is a successful load, as in Prometheus.
	r.successful.Set(1)
	r.successTime.Set(float64(now().UnixNano()) / 1e9)
	r.reloads.WithLabelValues("success")
	r.reloads.WithLabelValues("failure")
	return r
}

// collectors are the reload metrics, for the registry of /metrics.
func (r *reloadState) collectors() []prometheus.Collector {
	return []prometheus.Collector{r.successful, r.successTime, r.reloads}
}

// failed records a reload that kept the running configuration.
func (r *reloadState) failed(logger *slog.Logger, err error) {
	r.successful.Set(0)
	r.reloads.WithLabelValues("failure").Inc()
	logger.Error("reload failed; keeping the running configuration", "err", oneLine(err.Error()))
}

// succeeded records a reload that applied defs, logs in one line which
// spools it added, removed or changed, and has the watcher follow the
// new patterns.
func (r *reloadState) succeeded(logger *slog.Logger, defs []spoolDef, patterns []string) {
	added, removed, changed := diffSpools(r.defs, defs)
	r.defs = defs
	r.successful.Set(1)
	r.successTime.Set(float64(r.now().UnixNano()) / 1e9)
	r.reloads.WithLabelValues("success").Inc()
	if r.watcher != nil {
		r.watcher.SetPatterns(patterns)
	}
	logger.Info("configuration reloaded", "spools", len(defs),
		"added", strings.Join(added, ","), "removed", strings.Join(removed, ","), "changed", strings.Join(changed, ","))
}

// diffSpools returns the names of the spools of next not in prev, of prev
// not in next, and of both whose directory or settings differ (sorted as
// the definitions are).
func diffSpools(prev, next []spoolDef) (added, removed, changed []string) {
	old := make(map[string]spoolDef, len(prev))
	for _, d := range prev {
		old[d.Name] = d
	}
	seen := make(map[string]bool, len(next))
	for _, d := range next {
		seen[d.Name] = true
		o, ok := old[d.Name]
		switch {
		case !ok:
			added = append(added, d.Name)
		case o.Dir != d.Dir || !reflect.DeepEqual(o.Config, d.Config):
			changed = append(changed, d.Name)
		}
	}
	for _, d := range prev {
		if !seen[d.Name] {
			removed = append(removed, d.Name)
		}
	}
	return added, removed, changed
}

// startDiscovery watches the --spool-glob matches and the --config file
// (unless --no-config.auto-reload, or there is neither) and returns the
// channel of their changes, nil without discovery, and the function that
// stops the watcher.
func (c *RunCmd) startDiscovery(ctx context.Context, m *Main, logger *slog.Logger, r *reloadState) (<-chan struct{}, func()) {
	configPath := ""
	if m.cli != nil {
		configPath = m.cli.Config
	}
	if !c.ConfigAutoReload || configPath == "" && len(c.SpoolGlob) == 0 {
		return nil, func() {}
	}
	w := discovery.New(discovery.Options{
		Patterns:   c.SpoolGlob,
		ConfigPath: configPath,
		PollEvery:  c.CheckEvery,
		Logger:     logger,
	})
	r.watcher = w
	// A spool that appeared or went between the start's globbing and the
	// watches being in place has no event to come: reload for it now.
	if defs, _, err := c.spoolDefs(m.config); err == nil {
		if added, removed, changed := diffSpools(r.defs, defs); len(added)+len(removed)+len(changed) > 0 {
			w.Report()
		}
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = w.Run(ctx)
	}()
	return w.Changes(), func() {
		cancel()
		<-done
	}
}

package main

// Interim: one monitor per spool, run directly, until collector/ lands and
// replaces this file (it will isolate the spools and keep the state of the
// unchanged ones across reloads more carefully).

import (
	"context"
	"log/slog"
	"sync"

	"github.com/spool-agent/spool-agent/monitor"
)

type interimCollector struct {
	logger  *slog.Logger
	onEvent func(string, monitor.Event)
	mu      sync.Mutex
	mons    map[string]*interimMon
	ctx     context.Context
	wg      sync.WaitGroup
}

type interimMon struct {
	def    spoolDef
	m      *monitor.Monitor
	cancel context.CancelFunc
}

func newCollector(logger *slog.Logger, onEvent func(string, monitor.Event)) agentCollector {
	return &interimCollector{logger: logger, onEvent: onEvent, mons: map[string]*interimMon{}}
}

func (c *interimCollector) Apply(defs []spoolDef) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	keep := map[string]bool{}
	for _, d := range defs {
		keep[d.Name] = true
		if old, ok := c.mons[d.Name]; ok && old.def.Dir == d.Dir {
			continue
		} else if ok {
			old.cancel()
			old.m.Close()
		}
		cfg := d.Config
		cfg.Logger = c.logger
		m, err := monitor.New(d.Name, d.Dir, cfg)
		if err != nil {
			return err
		}
		c.mons[d.Name] = &interimMon{def: d, m: m}
		if c.ctx != nil {
			c.start(c.mons[d.Name])
		}
	}
	for n, mon := range c.mons {
		if !keep[n] {
			if mon.cancel != nil {
				mon.cancel()
			}
			mon.m.Close()
			delete(c.mons, n)
		}
	}
	return nil
}

func (c *interimCollector) start(mon *interimMon) {
	ctx, cancel := context.WithCancel(c.ctx)
	mon.cancel = cancel
	name := mon.def.Name
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		mon.m.Run(ctx, func(ev monitor.Event) { c.onEvent(name, ev) })
	}()
}

func (c *interimCollector) Run(ctx context.Context) error {
	c.mu.Lock()
	c.ctx = ctx
	for _, mon := range c.mons {
		c.start(mon)
	}
	c.mu.Unlock()
	<-ctx.Done()
	c.wg.Wait()
	c.mu.Lock()
	for _, mon := range c.mons {
		mon.m.Close()
	}
	c.mu.Unlock()
	return nil
}

func (c *interimCollector) Snapshots() []*monitor.Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*monitor.Snapshot
	for _, mon := range c.mons {
		out = append(out, mon.m.Snapshot())
	}
	return out
}

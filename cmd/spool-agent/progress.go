package main

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// progress shows how far a long operation has got on a terminal's stderr:
// after a first second, it rewrites one line every 200ms, and clears it when
// the operation ends. On anything but a terminal it writes nothing, so
// scripts and logs never see it.
type progress struct {
	w      io.Writer
	label  string
	total  int64 // 0: unknown, only the count and the elapsed time are shown
	n      atomic.Int64
	start  time.Time
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
	active bool
}

// progressDelay and progressEvery pace the progress line.
const (
	progressDelay = time.Second
	progressEvery = 200 * time.Millisecond
)

// startProgress starts a progress line on m.Stderr when it is a terminal.
func (m *Main) startProgress(label string, total int64) *progress {
	return newProgress(m.Stderr, label, total, isTerminal(m.Stderr))
}

func newProgress(w io.Writer, label string, total int64, active bool) *progress {
	p := &progress{w: w, label: label, total: total, start: time.Now(), active: active,
		stop: make(chan struct{}), done: make(chan struct{})}
	if !active {
		close(p.done)
		return p
	}
	go p.loop()
	return p
}

// add counts n more items done.
func (p *progress) add(n int64) { p.n.Add(n) }

func (p *progress) loop() {
	defer close(p.done)
	delay := time.NewTimer(progressDelay)
	defer delay.Stop()
	select {
	case <-p.stop:
		return
	case <-delay.C:
	}
	tick := time.NewTicker(progressEvery)
	defer tick.Stop()
	for {
		p.draw()
		select {
		case <-p.stop:
			fmt.Fprint(p.w, "\r\x1b[K")
			return
		case <-tick.C:
		}
	}
}

func (p *progress) draw() {
	n := p.n.Load()
	elapsed := time.Since(p.start).Truncate(time.Second)
	switch total := p.total; {
	case total > 0:
		fmt.Fprintf(p.w, "\r\x1b[K%s: %d/%d (%d%%) %v", p.label, n, total, n*100/total, elapsed)
	case n > 0:
		fmt.Fprintf(p.w, "\r\x1b[K%s: %d %v", p.label, n, elapsed)
	default:
		fmt.Fprintf(p.w, "\r\x1b[K%s... %v", p.label, elapsed)
	}
}

// finish stops the progress line and clears it.
func (p *progress) finish() {
	p.once.Do(func() {
		if p.active {
			close(p.stop)
		}
	})
	<-p.done
}

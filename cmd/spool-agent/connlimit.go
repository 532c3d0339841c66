package main

import (
	"net"
	"net/http"
	"sync"
)

// connLimiter caps the connections the agent serves at once on each listen
// address, and sheds idle keep-alive connections to make room: without
// that, as many idle clients as the cap (each sending one request, then
// nothing) would hold every slot for the whole idle timeout, renew them,
// and starve Prometheus' scrapes. A connection that is reading a request
// is bounded by the server's read timeouts instead.
type connLimiter struct {
	mu        sync.Mutex
	listeners []*limitListener
}

// listen wraps l so that it holds at most max connections at once.
func (cl *connLimiter) listen(l net.Listener, max int) net.Listener {
	ll := &limitListener{Listener: l, slots: make(chan struct{}, max), idle: map[net.Conn]bool{}}
	cl.mu.Lock()
	cl.listeners = append(cl.listeners, ll)
	cl.mu.Unlock()
	return ll
}

// connState is the server's ConnState hook: it records which connections
// are idle, and closes one that turns idle while its listener is full.
func (cl *connLimiter) connState(c net.Conn, state http.ConnState) {
	// Behind TLS the server sees the *tls.Conn that wraps ours.
	if nc, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = nc.NetConn()
	}
	cl.mu.Lock()
	listeners := cl.listeners
	cl.mu.Unlock()
	for _, ll := range listeners {
		if ll.setState(c, state) {
			return
		}
	}
}

type limitListener struct {
	net.Listener
	slots chan struct{} // one token per open connection

	mu   sync.Mutex
	idle map[net.Conn]bool // this listener's open connections: true while idle
}

// Accept waits for a free slot, first shedding the idle connections when
// every slot is taken.
func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	default:
		l.shedIdle()
		l.slots <- struct{}{}
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	lc := &limitedConn{Conn: c, l: l}
	l.mu.Lock()
	l.idle[lc] = false
	l.mu.Unlock()
	return lc, nil
}

func (l *limitListener) full() bool { return len(l.slots) == cap(l.slots) }

// shedIdle closes every idle connection of the listener.
func (l *limitListener) shedIdle() {
	l.mu.Lock()
	var idle []net.Conn
	for c, isIdle := range l.idle {
		if isIdle {
			idle = append(idle, c)
		}
	}
	l.mu.Unlock()
	for _, c := range idle {
		c.Close()
	}
}

// setState records state for c if it is one of l's connections, and
// reports whether it was.
func (l *limitListener) setState(c net.Conn, state http.ConnState) bool {
	l.mu.Lock()
	_, ours := l.idle[c]
	if ours && state != http.StateClosed && state != http.StateHijacked {
		l.idle[c] = state == http.StateIdle
	}
	l.mu.Unlock()
	if ours && state == http.StateIdle && l.full() {
		c.Close()
	}
	return ours
}

type limitedConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

// Close closes the connection and frees its slot, once.
func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.idle, c)
		c.l.mu.Unlock()
		<-c.l.slots
	})
	return err
}

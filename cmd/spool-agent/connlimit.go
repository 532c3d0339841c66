package main

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// newGrace is how long a connection may stay silent after it was accepted
// before it may be shed for a new one when every slot is taken: a client
// that connects sends its request at once.
const newGrace = time.Second

// connLimiter caps the connections the agent serves at once on each listen
// address, and when every slot is taken it sheds the connections that are
// doing nothing to make room: idle keep-alive connections, and connections
// that have sent nothing for newGrace. Without that, as many silent or idle
// clients as the cap would hold every slot for the whole header or idle
// timeout, renew them, and starve Prometheus' scrapes. A connection that is
// sending a request is bounded by the server's read timeouts instead.
type connLimiter struct {
	mu        sync.Mutex
	listeners []*limitListener
}

// listen wraps l so that it holds at most max connections at once.
func (cl *connLimiter) listen(l net.Listener, max int) net.Listener {
	ll := &limitListener{Listener: l, slots: make(chan struct{}, max), conns: map[net.Conn]connState{}}
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

	mu    sync.Mutex
	conns map[net.Conn]connState // this listener's open connections
}

type connState struct {
	state http.ConnState
	since time.Time // when it entered state
}

// Accept waits for a free slot, shedding the connections that do nothing
// while every slot is taken.
func (l *limitListener) Accept() (net.Conn, error) {
	for acquired := false; !acquired; {
		select {
		case l.slots <- struct{}{}:
			acquired = true
		default:
			l.shed(time.Now())
			select {
			case l.slots <- struct{}{}:
				acquired = true
			case <-time.After(newGrace / 4):
			}
		}
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	lc := &limitedConn{Conn: c, l: l}
	l.mu.Lock()
	l.conns[lc] = connState{http.StateNew, time.Now()}
	l.mu.Unlock()
	return lc, nil
}

func (l *limitListener) full() bool { return len(l.slots) == cap(l.slots) }

// shed closes the listener's idle connections and those that have sent
// nothing since newGrace before now.
func (l *limitListener) shed(now time.Time) {
	l.mu.Lock()
	var shed []net.Conn
	for c, cs := range l.conns {
		if cs.state == http.StateIdle || cs.state == http.StateNew && now.Sub(cs.since) >= newGrace {
			shed = append(shed, c)
		}
	}
	l.mu.Unlock()
	for _, c := range shed {
		c.Close()
	}
}

// setState records state for c if it is one of l's connections, and
// reports whether it was.
func (l *limitListener) setState(c net.Conn, state http.ConnState) bool {
	l.mu.Lock()
	_, ours := l.conns[c]
	if ours && state != http.StateClosed && state != http.StateHijacked {
		l.conns[c] = connState{state, time.Now()}
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
		delete(c.l.conns, c)
		c.l.mu.Unlock()
		<-c.l.slots
	})
	return err
}

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spool-agent/spool-agent/internal/syncbuf"
)

// runInProcess starts `run args...` through Main with m's settings and
// returns the URL of /metrics; the agent stops at the end of the test.
func runInProcess(t *testing.T, m *Main, args ...string) (url string, stderr *syncbuf.Buffer) {
	t.Helper()
	stderr = new(syncbuf.Buffer)
	m.Stdout, m.Stderr = io.Discard, stderr
	ctx, cancel := context.WithCancel(context.Background())
	exit := make(chan int, 1)
	go func() { exit <- m.Main(ctx, append([]string{"run"}, args...)) }()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-exit:
			if code != 0 {
				t.Errorf("run exited %d:\n%s", code, stderr.String())
			}
		case <-time.After(e2eDeadline):
			t.Errorf("run did not return within %v of its context's end", e2eDeadline)
		}
	})
	return waitLine(t, stderr, "spool-agent: serving metrics on "), stderr
}

// TestHTTPLimits checks that slow, idle and body-sending clients (a
// bounded number, on loopback) are cut off while a normal scrape is served,
// also when they hold every connection the agent accepts at once. The
// timeouts are shortened through Main.httpLimits; waits are bounded by
// e2eDeadline and measure nothing.
func TestHTTPLimits(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	mustCLI(t, "", "init", dir, "--queue", "q")
	m := testMain(nil, "", nil, nil)
	m.httpLimits = &httpLimits{
		ReadHeaderTimeout: 300 * time.Millisecond,
		ReadTimeout:       600 * time.Millisecond,
		WriteTimeout:      5 * time.Second,
		IdleTimeout:       300 * time.Millisecond,
		MaxConns:          6,
	}
	url, _ := runInProcess(t, m, "--spool", "s="+dir, "--web.listen-address", "127.0.0.1:0", "--check-every", "50ms")
	addr := strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/metrics")

	dial := func() net.Conn { return dialTCP(t, addr) }
	// closedByServer reads c until the server closes it (what it answered
	// first is returned) or e2eDeadline passes.
	closedByServer := func(c net.Conn) (string, error) { return closedByServer(c) }

	type client struct {
		name  string
		start func(c net.Conn) // what the client does before waiting
		want  string           // in what the server answers before closing ("" for nothing)
	}
	stop := make(chan struct{})
	var trickling sync.WaitGroup
	trickle := func(c net.Conn, s string) {
		trickling.Add(1)
		go func() {
			defer trickling.Done()
			for i := 0; i < len(s); i++ {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
				if _, err := c.Write([]byte{s[i]}); err != nil {
					return
				}
			}
		}()
	}
	clients := []client{
		{"silent", func(net.Conn) {}, ""},
		{"slow headers", func(c net.Conn) { trickle(c, "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: "+strings.Repeat("a", 200)) }, ""},
		{"idle keep-alive", func(c net.Conn) { io.WriteString(c, "GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n") }, "200 OK"},
		{"slow body", func(c net.Conn) {
			io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
			trickle(c, strings.Repeat("b", 1000))
		}, "413"},
		{"chunked body", func(c net.Conn) {
			io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
			trickle(c, strings.Repeat("1\r\nc\r\n", 100))
		}, "413"},
		{"silent 2", func(net.Conn) {}, ""},
	}
	if len(clients) != m.httpLimits.MaxConns {
		t.Fatalf("the test means to hold every connection: %d clients, cap %d", len(clients), m.httpLimits.MaxConns)
	}
	conns := make([]net.Conn, len(clients))
	for i, cl := range clients {
		conns[i] = dial()
		cl.start(conns[i])
	}

	// A normal scrape is served meanwhile (once the agent has cut a
	// hostile client off, if they hold every connection).
	scraped := make(chan error, 1)
	go func() {
		c := &http.Client{Timeout: e2eDeadline}
		resp, err := c.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `spool_up{spool="s"}`) {
				err = fmt.Errorf("%s: %.200s", resp.Status, b)
			}
		}
		scraped <- err
	}()

	var wg sync.WaitGroup
	for i, cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := closedByServer(conns[i])
			if err != nil {
				t.Errorf("%s client: %v", cl.name, err)
				return
			}
			if cl.want != "" && !strings.Contains(firstLine(got), cl.want) {
				t.Errorf("%s client: answered %q, want %q", cl.name, firstLine(got), cl.want)
			}
		}()
	}
	wg.Wait()
	close(stop)
	trickling.Wait()
	if err := <-scraped; err != nil {
		t.Fatalf("scrape beside hostile clients: %v", err)
	}
}

// closedByServer reads c until the server closes it (what it answered
// first is returned) or e2eDeadline passes. A reset is a close too: the
// kernel resets a connection closed with unread data in its buffer.
func closedByServer(c net.Conn) (string, error) {
	c.SetReadDeadline(time.Now().Add(e2eDeadline))
	b, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		return string(b), fmt.Errorf("not closed by the agent within %v: %w", e2eDeadline, err)
	}
	return string(b), nil
}

// TestHTTPShedsIdleAndBodies checks, with timeouts far longer than the
// test, that idle keep-alive and silent connections holding every slot are
// shed for a scrape, and that a request with a body is answered and closed
// at once rather than when the read timeout ends.
func TestHTTPShedsIdleAndBodies(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	mustCLI(t, "", "init", dir, "--queue", "q")
	m := testMain(nil, "", nil, nil)
	m.httpLimits = &httpLimits{
		ReadHeaderTimeout: time.Hour,
		ReadTimeout:       time.Hour,
		WriteTimeout:      time.Hour,
		IdleTimeout:       time.Hour,
		MaxConns:          4,
	}
	url, _ := runInProcess(t, m, "--spool", "s="+dir, "--web.listen-address", "127.0.0.1:0", "--check-every", "50ms")
	addr := strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/metrics")
	dial := func() net.Conn { return dialTCP(t, addr) }

	// A body trickled after its headers: 413 and a close, not an hour's wait.
	c := dial()
	io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nb")
	got, err := closedByServer(c)
	if err != nil {
		t.Fatalf("slow body: %v", err)
	}
	if !strings.Contains(firstLine(got), "413") {
		t.Fatalf("slow body: answered %q, want 413", firstLine(got))
	}

	// Idle keep-alive clients take every slot; each has had its answer.
	idle := make([]net.Conn, m.httpLimits.MaxConns)
	for i := range idle {
		idle[i] = dial()
		io.WriteString(idle[i], "GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
		line, err := bufio.NewReader(idle[i]).ReadString('\n')
		if err != nil || !strings.Contains(line, "200") {
			t.Fatalf("idle client %d: %q, %v", i, line, err)
		}
	}
	client := &http.Client{Timeout: e2eDeadline, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("scrape beside %d idle connections: %v", len(idle), err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s", resp.Status)
	}
	// The scrape got a slot, so a shed connection was closed before it
	// was served: its end is already in the client's buffer.
	shed := 0
	for _, c := range idle {
		c.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := io.ReadAll(c); err == nil || errors.Is(err, syscall.ECONNRESET) {
			shed++
		}
	}
	if shed == 0 {
		t.Fatal("no idle connection was shed, yet the scrape was served")
	}

	// Silent clients (connected, nothing sent) take every slot: those
	// silent for newGrace are shed for a scrape too.
	for range m.httpLimits.MaxConns {
		dial()
	}
	resp, err = client.Get(url)
	if err != nil {
		t.Fatalf("scrape beside %d silent connections: %v", m.httpLimits.MaxConns, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s", resp.Status)
	}
}

// dialTCP connects to addr, closing the connection at the end of the test.
func dialTCP(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(line)
}

// TestRefuseBodies checks the body check of every route.
func TestRefuseBodies(t *testing.T) {
	h := refuseBodies(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }))
	for _, tc := range []struct {
		name    string
		request string
		status  int
	}{
		{"no body", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 200},
		{"empty body", "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 200},
		{"body", "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", 413},
		{"chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(tc.request)))
			if err != nil {
				t.Fatal(err)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d", w.Code, tc.status)
			}
			if tc.status != 200 && w.Header().Get("Connection") != "close" {
				t.Error("a refused request does not close the connection")
			}
		})
	}
}

// TestServingLine checks that the start-up line names the address bound,
// and says when that is every interface.
func TestServingLine(t *testing.T) {
	for _, tc := range []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 19317}, "http://127.0.0.1:19317/metrics"},
		{&net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 80}, "http://192.0.2.7:80/metrics"},
		{&net.TCPAddr{IP: net.IPv6unspecified, Port: 19317}, "http://[::]:19317/metrics (all interfaces; from this host http://127.0.0.1:19317/metrics)"},
		{&net.TCPAddr{IP: net.IPv4zero, Port: 19317}, "http://0.0.0.0:19317/metrics (all interfaces; from this host http://127.0.0.1:19317/metrics)"},
	} {
		if got := servingLine("http", tc.addr); got != tc.want {
			t.Errorf("servingLine(%v) = %q, want %q", tc.addr, got, tc.want)
		}
	}
}

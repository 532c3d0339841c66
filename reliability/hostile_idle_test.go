package reliability

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spool-agent/spool-agent/spool"
)

// TestHostileAgentIdleKeepAlives: as many idle keep-alive connections as
// the agent serves at once (64 by default), each after one request, must
// not stop a scrape: without shedding they would hold every slot for the
// idle timeout (2 min), and the scrape would wait to be accepted until then.
func TestHostileAgentIdleKeepAlives(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	if _, err := spool.Create(dir, []string{"in"}, &spool.Options{Durability: spool.DurabilityNone}); err != nil {
		t.Fatal(err)
	}
	a := newAgent(t, map[string]string{"s": dir}, statePath(t))
	a.startAndWait(t)
	const maxConns = 64
	for range maxConns {
		c, err := net.Dial("tcp", a.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		io.WriteString(c, "GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
		// Answered, so the connection is idle (the rest is left unread).
		if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || !strings.Contains(line, "200") {
			t.Fatalf("idle client: %q, %v", line, err)
		}
	}
	start := time.Now()
	c := &http.Client{Timeout: 20 * time.Second}
	resp, err := c.Get("http://" + a.addr + "/metrics")
	if err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), "spool_up") {
			t.Errorf("scrape: %s", resp.Status)
		}
	}
	t.Logf("scrape beside %d idle keep-alives: %v after %v", maxConns, err, time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Errorf("a scrape beside %d idle keep-alive connections failed: %v", maxConns, err)
	}
}

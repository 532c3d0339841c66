package reliability

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/spool-agent/spool-agent/internal/testkit"
	"github.com/spool-agent/spool-agent/spool"
)

// procStatus returns a field of /proc/PID/status in bytes (VmHWM, VmRSS).
func procStatus(t *testing.T, pid int, field string) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("%s: %v", field, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// inotifyWatches counts the inotify watches the process holds (the
// "inotify wd:" lines of its descriptors' fdinfo).
func inotifyWatches(pid int) int {
	fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fdinfo/*", pid))
	n := 0
	for _, fd := range fds {
		b, err := os.ReadFile(fd)
		if err != nil {
			continue // closed meanwhile
		}
		n += strings.Count(string(b), "inotify wd:")
	}
	return n
}

// openFDs counts the process's open file descriptors.
func openFDs(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// scrapeClosed fetches and parses /metrics on a connection it closes
// afterwards. agent.scrape leaves each of its connections idle in a
// discarded transport, and the agent keeps an idle connection 2 minutes
// within its cap of 64: polled every 50 ms, scrapes would stall after 3 s.
func (a *agent) scrapeClosed() (metrics, error) {
	body, err := a.getClosed("/metrics")
	if err != nil {
		return nil, err
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(strings.NewReader(body))
}

// getClosed GETs path on a connection it closes afterwards; anything but
// 200 is an error.
func (a *agent) getClosed(path string) (string, error) {
	req, err := http.NewRequest(http.MethodGet, a.scheme+"://"+a.addr+path, nil)
	if err != nil {
		return "", err
	}
	req.Close = true
	resp, err := a.client().Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s: %.200s", path, resp.Status, b)
	}
	return string(b), err
}

// pollMetrics scrapes (with scrapeClosed) until cond holds (up to timeout).
func (a *agent) pollMetrics(t *testing.T, timeout time.Duration, what string, cond func(metrics) bool) metrics {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		m, err := a.scrapeClosed()
		if err == nil && cond(m) {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s (last error %v)", timeout, what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// statePath keeps the agent's alert state out of the test user's home.
func statePath(t *testing.T) string {
	return "--state.path=" + filepath.Join(t.TempDir(), "state.json")
}

// agentCrashed reports a Go runtime crash in the agent's output.
func agentCrashed(out string) bool {
	return strings.Contains(out, "panic:") || strings.Contains(out, "fatal error:")
}

// TestHostileAgentSwap: the agent (run, checking every 200 ms with a full
// rescan every 400 ms) watches six spools while, in each, an attacker loop
// swaps one directory (.data, .registry, .tmp, the queue in, in/.checkout,
// the spool root) with a symlink to a victim directory outside the spool
// in a tight renameat2(RENAME_EXCHANGE) loop, in hostileRuns windows of
// 150 ms. The victim holds files named like the spool's entries and files
// only it has (victimfile*, precious), three hours old. Each window: the
// victims stay byte-for-byte and mtime-for-mtime unchanged, /metrics is
// served, spool_queue_entries and spool_queue_checked_out_entries never
// count a victim's files, and the agent never names one in its logs.
// Afterwards every spool is reported as it is (one entry waiting, one
// checked out).
func TestHostileAgentSwap(t *testing.T) {
	base := t.TempDir()
	targets := []string{spool.DataDir, spool.RegistryDir, spool.TmpDir, "in", filepath.Join("in", spool.CheckoutDir), "."}
	type spoolCase struct {
		name, target, dir, victim, a, b string
		before                          map[string]victimFile
	}
	var cases []*spoolCase
	spools := map[string]string{}
	for i, target := range targets {
		c := &spoolCase{name: fmt.Sprintf("s%d", i), target: target}
		rundir := filepath.Join(base, c.name)
		c.dir, c.victim = filepath.Join(rundir, "spool"), filepath.Join(rundir, "victim")
		if err := os.Mkdir(rundir, 0o755); err != nil {
			t.Fatal(err)
		}
		hostileSpool(t, c.dir) // e1 waiting in in, e2 checked out three hours ago
		makeVictim(t, c.victim, false)
		old := time.Now().Add(-3 * time.Hour)
		for j := range 5 {
			for _, p := range []string{fmt.Sprintf("victimfile%d", j), fmt.Sprintf(".checkout/victimfile%d", j)} {
				path := filepath.Join(c.victim, p)
				if err := os.WriteFile(path, []byte("victim "+p), 0o600); err != nil {
					t.Fatal(err)
				}
				os.Chtimes(path, old, old)
			}
		}
		os.Chtimes(filepath.Join(c.victim, ".checkout"), old, old)
		os.Chtimes(c.victim, old, old)
		c.before = snapshotTree(t, c.victim)
		c.a = filepath.Clean(filepath.Join(c.dir, target))
		c.b = filepath.Join(filepath.Dir(c.a), ".swap") // beside it, where the attacker may create it
		if err := os.Symlink(c.victim, c.b); err != nil {
			t.Fatal(err)
		}
		spools[c.name] = c.dir
		cases = append(cases, c)
	}
	a := newAgent(t, spools, "--check-every=200ms", "--full-rescan-every=400ms", statePath(t))
	a.startAndWait(t)
	countsOK := func(m metrics) string {
		var bad []string
		for _, c := range cases {
			// A victim read as a queue or a checkout directory would
			// count at least its 8 files.
			if v, _ := m.value("spool_queue_entries", "spool", c.name); v > 2 {
				bad = append(bad, fmt.Sprintf("%s (%s swapped): spool_queue_entries %v", c.name, c.target, v))
			}
			if v, _ := m.value("spool_queue_checked_out_entries", "spool", c.name); v > 2 {
				bad = append(bad, fmt.Sprintf("%s (%s swapped): spool_queue_checked_out_entries %v", c.name, c.target, v))
			}
		}
		return strings.Join(bad, "; ")
	}
	var swaps int64
	scrapeFails, miscounts, disturbed := 0, 0, 0
	var firstScrapeErr error
	for w := range hostileRuns {
		var sws []*swapper
		for _, c := range cases {
			sws = append(sws, startSwapper(c.a, c.b))
		}
		time.Sleep(100 * time.Millisecond)
		m, err := a.scrapeClosed()
		time.Sleep(50 * time.Millisecond)
		for i, sw := range sws {
			n, err := sw.finish()
			if err != nil {
				t.Fatalf("window %d: swapper of %s: %v", w, cases[i].target, err)
			}
			swaps += n
		}
		if err != nil {
			scrapeFails++
			if firstScrapeErr == nil {
				firstScrapeErr = err
			}
		} else if bad := countsOK(m); bad != "" {
			miscounts++
			if miscounts <= 3 {
				t.Errorf("window %d: the agent counts the victim's files as the spool's: %s", w, bad)
			}
		}
		if err == nil {
			// Whether the agent saw a swap (a spool down or a queue
			// missing): evidence that the windows reach its scans.
			for _, c := range cases {
				up, _ := m.value("spool_up", "spool", c.name)
				e, ok := m.value("spool_queue_entries", "spool", c.name, "queue", "in")
				if up != 1 || !ok || e != 1 {
					disturbed++
					break
				}
			}
		}
		for _, c := range cases {
			if d := diffTrees(c.before, snapshotTree(t, c.victim)); d != "" {
				t.Fatalf("window %d: the agent beside %s swapped for a symlink changed the victim outside the spool: %s", w, c.target, d)
			}
		}
		if !a.running() {
			t.Fatalf("window %d: the agent exited: %s", w, a.output())
		}
	}
	t.Logf("%d windows of 150 ms x %d directories, %d swaps in all; %d scrapes failed (first: %v), %d miscounted, %d showed a swap (a spool down or its queue in not counted as 1 entry)",
		hostileRuns, len(cases), swaps, scrapeFails, firstScrapeErr, miscounts, disturbed)
	if scrapeFails > 0 {
		t.Errorf("%d of %d scrapes during the swaps failed, the first with %v", scrapeFails, hostileRuns, firstScrapeErr)
	}
	out := a.output()
	if agentCrashed(out) {
		t.Fatalf("the agent crashed: %s", out)
	}
	for _, name := range []string{"victimfile", "precious"} {
		if i := strings.Index(out, name); i >= 0 {
			t.Errorf("the agent's log names the victim's %s: %q", name, out[max(0, strings.LastIndex(out[:i], "\n")+1):min(len(out), i+200)])
		}
	}
	// With the attack over, every spool is reported as it is.
	a.pollMetrics(t, 15*time.Second, "every spool reported as it is after the swaps", func(m metrics) bool {
		for _, c := range cases {
			e, ok1 := m.value("spool_queue_entries", "spool", c.name, "queue", "in")
			co, ok2 := m.value("spool_queue_checked_out_entries", "spool", c.name, "queue", "in")
			if !ok1 || !ok2 || e != 1 || co != 1 {
				return false
			}
		}
		return true
	})
}

// TestHostileAgentSparse: the agent watching a spool whose waiting entry's
// metadata and whose checkout's metadata are sparse 1 TiB files (beside an
// ordinary entry) counts them, keeps serving /metrics and the console's
// JSON over 20 cycles and full rescans, and its peak RSS (VmHWM) stays
// under 100 MB.
func TestHostileAgentSparse(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	s, err := spool.Create(dir, []string{"in"}, &spool.Options{Durability: spool.DurabilityNone})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"huge", "plain", "hugeco"} {
		if _, err := s.EnqueueBytes(context.Background(), "in", []byte("meta"), []byte("data"), spool.EnqueueOptions{Name: n}); err != nil {
			t.Fatal(err)
		}
	}
	co := filepath.Join(dir, "in", spool.CheckoutDir, "hugeco")
	if err := os.Rename(filepath.Join(dir, "in", "hugeco"), co); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(dir, "in", "huge"), co} {
		if err := os.Truncate(p, 1<<40); err != nil {
			t.Fatal(err)
		}
	}
	a := newAgent(t, map[string]string{"s": dir}, "--check-every=100ms", "--full-rescan-every=300ms", statePath(t))
	a.startAndWait(t)
	a.pollMetrics(t, 10*time.Second, "the sparse entries counted", func(m metrics) bool {
		e, _ := m.value("spool_queue_entries", "spool", "s", "queue", "in")
		c, _ := m.value("spool_queue_checked_out_entries", "spool", "s", "queue", "in")
		return e == 2 && c == 1
	})
	for i := range 20 {
		if _, err := a.scrapeClosed(); err != nil {
			t.Fatalf("scrape %d: %v", i, err)
		}
		if body, err := a.getClosed("/api/v1/spools"); err != nil || !json.Valid([]byte(body)) {
			t.Fatalf("/api/v1/spools: %v %.200s", err, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	hwm := procStatus(t, a.pid(), "VmHWM")
	t.Logf("agent beside two 1 TiB metadata files: peak RSS %.1f MB over 20 cycles", float64(hwm)/(1<<20))
	if hwm > 100<<20 {
		t.Errorf("peak RSS %.0f MB, want under 100 MB", float64(hwm)/(1<<20))
	}
	if out := a.output(); agentCrashed(out) {
		t.Fatalf("the agent crashed: %s", out)
	}
}

// TestHostileAgentHTTPClients: against the real binary with its default
// limits (10 s for headers, 30 s per request, 64 connections per address;
// there are no flags for them), loopback clients
// that send headers a byte every 2 s, that send a body slowly (with
// Content-Length, chunked), that stay idle after a keep-alive request, and
// that connect and say nothing: the slow and silent ones are closed by
// the agent within its header timeout (plus margin), the bodies answered
// 413 at once and closed within its 30 s request timeout (net/http drains
// an unread body of up to 256 KiB before it honours Connection: close),
// normal scrapes every 250 ms succeed throughout, and the agent's
// descriptors stay bounded. Then 80 silent connections (more than the
// cap): the agent's descriptors stay under the cap, and a scrape is
// served once the header timeout has cut them off.
func TestHostileAgentHTTPClients(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	if _, err := spool.Create(dir, []string{"in"}, &spool.Options{Durability: spool.DurabilityNone}); err != nil {
		t.Fatal(err)
	}
	a := newAgent(t, map[string]string{"s": dir}, statePath(t))
	a.startAndWait(t)
	pid := a.pid()
	fdsBefore := openFDs(t, pid)
	// The agent's defaults (cmd/spool-agent defaultHTTPLimits).
	const headerTimeout, readTimeout, margin = 10 * time.Second, 30 * time.Second, 5 * time.Second

	var conns []net.Conn
	dial := func() net.Conn {
		c, err := net.Dial("tcp", a.addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		return c
	}
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	stop := make(chan struct{})
	var bg sync.WaitGroup
	trickle := func(c net.Conn, s string, every time.Duration) {
		bg.Add(1)
		go func() {
			defer bg.Done()
			for i := 0; i < len(s); i++ {
				if _, err := c.Write([]byte{s[i]}); err != nil {
					return
				}
				select {
				case <-stop:
					return
				case <-time.After(every):
				}
			}
		}()
	}
	type client struct {
		name      string
		c         net.Conn
		want      string // what the answer's first line holds ("" for none)
		closed    bool   // the agent must close it within cut (plus margin)
		cut       time.Duration
		closedAt  time.Duration
		answer    string
		readError error
	}
	var clients []*client
	add := func(name, want string, cut time.Duration, start func(c net.Conn)) {
		c := dial()
		start(c)
		clients = append(clients, &client{name: name, c: c, want: want, closed: cut > 0, cut: cut})
	}
	for i := range 4 {
		add(fmt.Sprintf("slow headers %d", i), "", headerTimeout, func(c net.Conn) {
			trickle(c, "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: "+strings.Repeat("a", 100), 2*time.Second)
		})
	}
	for i := range 2 {
		add(fmt.Sprintf("silent %d", i), "", headerTimeout, func(net.Conn) {})
		add(fmt.Sprintf("slow body %d", i), "413", readTimeout, func(c net.Conn) {
			io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
			trickle(c, strings.Repeat("b", 1000), 2*time.Second)
		})
		add(fmt.Sprintf("chunked body %d", i), "413", readTimeout, func(c net.Conn) {
			io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
			trickle(c, strings.Repeat("1\r\nc\r\n", 100), 2*time.Second)
		})
	}
	// Idle keep-alives are cut after 2 minutes by default, longer than
	// this test: they only have to leave the scrapes served
	// (cmd/spool-agent TestHTTPLimits checks the cut with a shortened
	// timeout).
	for i := range 4 {
		add(fmt.Sprintf("idle keep-alive %d", i), "200 OK", 0, func(c net.Conn) {
			io.WriteString(c, "GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
		})
	}
	start := time.Now()
	var readers sync.WaitGroup
	for _, cl := range clients {
		readers.Add(1)
		go func() {
			defer readers.Done()
			if !cl.closed {
				cl.c.SetReadDeadline(time.Now().Add(time.Second))
				b := make([]byte, 4096)
				n, _ := cl.c.Read(b)
				cl.answer = string(b[:n])
				return
			}
			cl.c.SetReadDeadline(start.Add(cl.cut + margin))
			b, err := io.ReadAll(cl.c)
			if errors.Is(err, syscall.ECONNRESET) {
				err = nil // closed with the client's unread bytes in the agent's buffer
			}
			cl.closedAt, cl.answer, cl.readError = time.Since(start), string(b), err
		}()
	}
	done := make(chan struct{})
	go func() { readers.Wait(); close(done) }()
	scrapes, maxFDs := 0, 0
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		case <-time.After(250 * time.Millisecond):
		}
		if _, err := a.scrapeClosed(); err != nil {
			t.Fatalf("a scrape beside the hostile clients failed after %v: %v", time.Since(start).Round(time.Millisecond), err)
		}
		scrapes++
		maxFDs = max(maxFDs, openFDs(t, pid))
	}
	close(stop)
	bg.Wait()
	for _, cl := range clients {
		line, _, _ := strings.Cut(cl.answer, "\n")
		switch {
		case cl.closed && cl.readError != nil:
			t.Errorf("%s: not closed by the agent within %v: %v", cl.name, cl.cut+margin, cl.readError)
		case cl.want != "" && !strings.Contains(line, cl.want):
			t.Errorf("%s: answered %q, want %q", cl.name, line, cl.want)
		case cl.want == "" && cl.answer != "" && !strings.Contains(line, " 400 ") && !strings.Contains(line, " 408 "):
			t.Errorf("%s: answered %q", cl.name, line)
		}
		if cl.closed {
			t.Logf("%s: closed after %v (%q)", cl.name, cl.closedAt.Round(time.Millisecond), strings.TrimSpace(line))
		}
	}
	t.Logf("%d scrapes served meanwhile; agent descriptors %d before, %d at most", scrapes, fdsBefore, maxFDs)
	if limit := fdsBefore + len(clients) + 8; maxFDs > limit {
		t.Errorf("the agent held %d descriptors, want at most %d", maxFDs, limit)
	}

	// More silent connections than the cap: the agent holds at most the
	// cap, and serves a scrape once the header timeout has cut them off.
	const silent, maxConns = 80, 64
	for range silent {
		dial()
	}
	start = time.Now()
	scraped := make(chan error, 1)
	go func() {
		c := &http.Client{Timeout: headerTimeout + margin}
		resp, err := c.Get("http://" + a.addr + "/metrics")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("status %s", resp.Status)
			}
		}
		scraped <- err
	}()
	maxFDs = 0
	var scrapeErr error
	for waiting := true; waiting; {
		select {
		case scrapeErr = <-scraped:
			waiting = false
		case <-time.After(200 * time.Millisecond):
		}
		maxFDs = max(maxFDs, openFDs(t, pid))
	}
	t.Logf("%d silent connections: agent descriptors %d at most; a scrape served after %v (%v)", silent, maxFDs, time.Since(start).Round(time.Millisecond), scrapeErr)
	if scrapeErr != nil {
		t.Errorf("scrape beside %d silent connections: %v", silent, scrapeErr)
	}
	if limit := fdsBefore + maxConns + 4 + 8; maxFDs > limit { // + the 4 idle keep-alives still open
		t.Errorf("the agent held %d descriptors, want at most %d", maxFDs, limit)
	}
	if out := a.output(); agentCrashed(out) {
		t.Fatalf("the agent crashed: %s", out)
	}
}

// controlNames are entry names with every C0 control but NUL, every C1
// control in UTF-8, escape sequences that retitle a window or clear the
// screen, a newline that would forge a log line, DEL and bare C1 bytes.
func controlNames() []string {
	var c0, c1 strings.Builder
	for c := rune(1); c < 0x20; c++ {
		c0.WriteRune(c)
	}
	for c := rune(0x80); c < 0xa0; c++ {
		c1.WriteRune(c)
	}
	return []string{
		"c0-" + c0.String(),
		"c1-" + c1.String(),
		"esc-\x1b]0;owned\x07\x1b[2J\x1b[31mred",
		"nl-\nlevel=error msg=forged",
		"del-\x7f",
		"raw-\x9b\x85",
	}
}

// rawControlAt returns where out holds a raw control: a C0 control but
// the newline between lines, DEL, or a C1 control in UTF-8.
func rawControlAt(out string) int {
	for i := 0; i < len(out); i++ {
		c := out[i]
		if c < 0x20 && c != '\n' || c == 0x7f || c == 0xc2 && i+1 < len(out) && out[i+1] >= 0x80 && out[i+1] <= 0x9f {
			return i
		}
	}
	return -1
}

// TestHostileAgentControlNames: a spool holding, under every control-
// character name, a stale checkout, an orphaned payload, a registry file
// without an entry, a stale temporary file and an unknown root directory;
// the real agent (logfmt and JSON logs) reports them: its log, /metrics,
// /api/v1/spools, /api/v1/spools/s and the console page hold no raw
// control byte, and the JSON stays valid (one document per log line).
func TestHostileAgentControlNames(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	if _, err := spool.Create(dir, []string{"in"}, &spool.Options{Durability: spool.DurabilityNone}); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	write := func(rel string) {
		p := filepath.Join(dir, rel)
		if err := os.WriteFile(p, []byte("x\x1b[2J\u009b"), 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(p, old, old)
	}
	for _, n := range controlNames() {
		write(filepath.Join(spool.RegistryDir, "co-"+n))
		write(filepath.Join(spool.DataDir, "co-"+n))
		write(filepath.Join("in", spool.CheckoutDir, "co-"+n))
		write(filepath.Join(spool.DataDir, "orphan-"+n))
		write(filepath.Join(spool.RegistryDir, "reg-"+n))
		write(filepath.Join(spool.TmpDir, "tmp-"+n))
		write(filepath.Join("in", "unreg-"+n))
		if err := os.Mkdir(filepath.Join(dir, "dir-"+n), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, format := range []string{"logfmt", "json"} {
		t.Run(format, func(t *testing.T) {
			a := newAgent(t, map[string]string{"s": dir}, "--log.format="+format, "--alert-after-cycles=0", statePath(t))
			a.startAndWait(t)
			testkit.WaitFor(t, 15*time.Second, "the agent to log the hostile names", func() bool {
				out := a.output()
				return strings.Contains(out, "orphan-c0-") && strings.Contains(out, "tmp-c0-")
			})
			// A few more cycles, so that the pages below show their aggregated state.
			cycles := func(m metrics) float64 { v, _ := m.value("spool_fsck_cycles_total", "spool", "s"); return v }
			seen := cycles(a.waitMetric(t, 10*time.Second, "a cycle", func(metrics) bool { return true }))
			a.waitMetric(t, 15*time.Second, "three more cycles", func(m metrics) bool { return cycles(m) >= seen+3 })
			bodies := map[string]string{}
			for _, path := range []string{"/metrics", "/api/v1/spools", "/api/v1/spools/s", "/"} {
				body, err := a.getClosed(path)
				if err != nil {
					t.Fatalf("GET %s: %v", path, err)
				}
				bodies[path] = body
			}
			out := a.output()
			if i := rawControlAt(out); i >= 0 {
				t.Errorf("the %s log holds a raw control byte %#x at %d: %q", format, out[i], i, out[max(0, i-100):min(len(out), i+100)])
			}
			if format == "json" {
				for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
					if strings.HasPrefix(line, "{") && !json.Valid([]byte(line)) {
						t.Errorf("log line is not JSON: %q", line)
					}
				}
			}
			for path, body := range bodies {
				if i := rawControlAt(body); i >= 0 {
					t.Errorf("GET %s holds a raw control byte %#x at %d: %q", path, body[i], i, body[max(0, i-100):min(len(body), i+100)])
				}
				if strings.HasPrefix(path, "/api/") && !json.Valid([]byte(body)) {
					t.Errorf("GET %s is not JSON: %.300s", path, body)
				}
			}
			t.Logf("%s: %d bytes of log, %d of /api/v1/spools/s", format, len(out), len(bodies["/api/v1/spools/s"]))
			if agentCrashed(out) {
				t.Fatalf("the agent crashed: %s", out)
			}
		})
	}
}

// Package browsertest drives the agent's console in a real browser:
// headless Chromium (Debian's chromium package) through chromedp, against
// the real spool-agent binary watching spools with problems.
package browsertest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"image/png"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/spool-agent/spool-agent/spool"
)

var screenshot = flag.String("screenshot", "", "also save the console's screenshot to this PNG file (the README's is ../../docs/console.png)")

// chromiumPath is Debian's chromium, which .ci/run installs.
const chromiumPath = "/usr/bin/chromium"

// deadline bounds every wait.
const deadline = 60 * time.Second

// scriptName is an entry name that is markup: the console must show it as
// text, and no browser may run it.
const scriptName = `<script>document.title='pwned'`

// buildAgent builds the agent as a user would (go build ./cmd/spool-agent
// at the repository's root) into dir.
func buildAgent(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "spool-agent")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/spool-agent")
	cmd.Dir = filepath.Join("..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/spool-agent: %v\n%s", err, out)
	}
	return bin
}

// makeSpools creates, under dir, the spool "mail" with waiting entries
// of many ages (one of them named scriptName, waiting past its queue's
// limit), a checked-out entry, an orphaned payload and a left-over
// temporary file, and the healthy spool "outbound".
func makeSpools(t *testing.T, dir string) (mail, outbound string) {
	t.Helper()
	now := time.Now()
	mk := func(name string, queues []string, entries map[string][]time.Duration) string {
		path := filepath.Join(dir, name)
		s, err := spool.Create(path, queues, &spool.Options{Durability: spool.DurabilityNone})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		n := 0
		// In queue order, so that the names (active-001 first) do not
		// depend on the map's iteration order.
		for _, q := range slices.Sorted(maps.Keys(entries)) {
			for _, a := range entries[q] {
				n++
				entry := fmt.Sprintf("%s-%03d", q, n)
				if a == 2*time.Hour {
					entry = scriptName
				}
				if _, err := s.EnqueueBytes(context.Background(), q, []byte("m"), []byte("d"), spool.EnqueueOptions{Name: entry}); err != nil {
					t.Fatal(err)
				}
				at := now.Add(-a)
				if err := os.Chtimes(filepath.Join(path, q, entry), at, at); err != nil {
					t.Fatal(err)
				}
			}
		}
		return path
	}
	m := time.Minute
	mail = mk("mail", []string{"active", "deferred", "hold"}, map[string][]time.Duration{
		"active":   {10 * time.Second, 30 * time.Second, 2 * m, 3 * m, 4 * m, 2 * time.Hour},
		"deferred": {6 * m, 8 * m, 15 * m, 25 * m, 50 * m, 90 * m, 200 * m, 400 * m, 1000 * m, 2000 * m, 3000 * m},
	})
	s, err := spool.Open(mail, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Checkout(context.Background(), "active", "active-001"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	hourAgo := now.Add(-time.Hour)
	for _, p := range []string{".data/orphan-42", ".tmp/left-over.tmp.AbCdEf"} {
		path := filepath.Join(mail, p)
		if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, hourAgo, hourAgo); err != nil {
			t.Fatal(err)
		}
	}
	outbound = mk("outbound", []string{"smtp"}, map[string][]time.Duration{"smtp": {time.Second, 20 * time.Second, 7 * m}})
	return mail, outbound
}

// agent is a running `spool-agent run`.
type agent struct {
	base   string // http://127.0.0.1:PORT
	mu     sync.Mutex
	stderr bytes.Buffer
}

func startAgent(t *testing.T, bin string, args ...string) *agent {
	t.Helper()
	a := &agent{}
	cmd := exec.Command(bin, append([]string{"run", "--web.listen-address", "127.0.0.1:0"}, args...)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SPOOL_AGENT_") && !strings.HasPrefix(kv, "OTEL_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	urls := make(chan string, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			line := sc.Text()
			a.mu.Lock()
			a.stderr.WriteString(line + "\n")
			a.mu.Unlock()
			if u, ok := strings.CutPrefix(line, "spool-agent: serving metrics on "); ok {
				select {
				case urls <- strings.TrimSuffix(u, "/metrics"):
				default:
				}
			}
		}
		cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			a.mu.Lock()
			t.Logf("agent stderr:\n%s", a.stderr.String())
			a.mu.Unlock()
		}
	})
	select {
	case a.base = <-urls:
	case <-done:
		t.Fatalf("the agent exited:\n%s", a.stderr.String())
	case <-time.After(deadline):
		t.Fatal("the agent did not say where it serves")
	}
	return a
}

func (a *agent) get(t *testing.T, path string) string {
	t.Helper()
	resp, err := http.Get(a.base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
	}
	return string(b)
}

// waitAlerting waits until the API shows the script-named entry's problem
// alerting.
func (a *agent) waitAlerting(t *testing.T) {
	t.Helper()
	end := time.Now().Add(deadline)
	for {
		var doc struct {
			Spools []struct {
				Problems []struct {
					Name     string `json:"name"`
					Alerting bool   `json:"alerting"`
				} `json:"problems"`
			} `json:"spools"`
		}
		body := a.get(t, "/api/v1/spools")
		if err := json.Unmarshal([]byte(body), &doc); err != nil {
			t.Fatal(err)
		}
		for _, s := range doc.Spools {
			for _, p := range s.Problems {
				if p.Name == scriptName && p.Alerting {
					return
				}
			}
		}
		if time.Now().After(end) {
			t.Fatalf("the problem of %q did not alert within %v:\n%s", scriptName, deadline, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestConsoleInBrowser loads the console in headless Chromium and checks
// what a person sees: the spools, the queue counts, the problems' file
// names, and an entry name that is markup shown as text, with no script
// on the page and nothing run. It saves a screenshot.
func TestConsoleInBrowser(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s: %v (.ci/run installs Debian's chromium package)", chromiumPath, err)
		}
		t.Skip("no " + chromiumPath + ": apt-get install chromium")
	}
	tmp := t.TempDir()
	bin := buildAgent(t, tmp)
	mail, outbound := makeSpools(t, tmp)
	a := startAgent(t, bin,
		"--spool", "mail="+mail, "--spool", "outbound="+outbound, "--spool", "archive="+filepath.Join(tmp, "archive"),
		"--check-every", "100ms", "--alert-after-cycles", "1", "--max-queue-age", "active=1h")
	a.waitAlerting(t)

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("no-first-run", true),
		chromedp.WindowSize(1000, 1400),
		chromedp.UserDataDir(filepath.Join(tmp, "chromium")),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses its sandbox to root, as CI runs
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, deadline)
	defer cancelTimeout()

	if err := chromedp.Do(ctx,
		chromedp.Navigate(a.base+"/"),
		chromedp.WaitVisible(chromedp.CSS("table.summary")),
	); err != nil {
		t.Fatal(err)
	}
	title := run(t, ctx, chromedp.Title())
	scripts := run(t, ctx, chromedp.Evaluate[int](`document.scripts.length`))
	summary := run(t, ctx, chromedp.Evaluate[string](`document.querySelector("table.summary").innerText`))
	// The mail spool's "active" queue row: name, waiting, checked out.
	queueRow := run(t, ctx, chromedp.Evaluate[string](`Array.from(document.querySelectorAll("section.spool"))
		.find(s => s.querySelector("h2 a").textContent === "mail").querySelector("table.queues tbody tr").innerText`))
	problems := run(t, ctx, chromedp.Evaluate[string](`Array.from(document.querySelectorAll("table.problems td.name")).map(td => td.textContent).join("\n")`))
	shot := run(t, ctx, chromedp.CaptureScreenshot())
	if title != "spool-agent" {
		t.Errorf("title %q: the entry's name ran as a script?", title)
	}
	if scripts != 0 {
		t.Errorf("%d script elements on the page", scripts)
	}
	for _, want := range []string{"mail\tup", "outbound\tup", "archive\tdown"} {
		if !strings.Contains(summary, want) {
			t.Errorf("no %q in the summary:\n%s", want, summary)
		}
	}
	// active: 5 waiting (6 enqueued, 1 checked out), 1 checked out.
	if f := strings.Split(queueRow, "\t"); len(f) < 3 || f[0] != "active" || f[1] != "5" || f[2] != "1" {
		t.Errorf("the active queue's row %q, want active, 5 waiting, 1 checked out", queueRow)
	}
	for _, want := range []string{"active/" + scriptName, ".data/orphan-42", ".tmp/left-over.tmp.AbCdEf"} {
		if !strings.Contains(problems, want) {
			t.Errorf("no problem file %q shown as text in:\n%s", want, problems)
		}
	}

	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if w := img.Bounds().Dx(); w != 1000 {
		t.Errorf("screenshot %d px wide, want 1000", w)
	}
	out := filepath.Join(tmp, "console.png")
	if *screenshot != "" {
		out = *screenshot
	}
	if err := os.WriteFile(out, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", out, len(shot))
}

func run[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

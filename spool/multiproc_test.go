package spool

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spool-agent/spool-agent/internal/fsys"
)

// child is a helper process: the test binary run again with helperEnv set.
type child struct {
	cmd    *exec.Cmd
	stdout *bufio.Reader
	done   chan struct{} // closed when the process has been waited for
	err    error         // Wait's result, once done is closed
}

// startChild starts the helper role with env (KEY=value strings). The
// helper's stderr goes to the test's stderr.
func startChild(t *testing.T, role string, env ...string) *child {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), append([]string{helperEnv + "=" + role}, env...)...)
	cmd.Stderr = os.Stderr
	// A pipe of our own rather than StdoutPipe, so that Wait does not close
	// it under a reader. Helpers print one line ("ready").
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	c := &child{cmd: cmd, stdout: bufio.NewReader(pr), done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		c.cmd.Process.Kill()
		<-c.done
		pr.Close()
	})
	return c
}

// ready waits until the child prints its "ready" line (it has opened the
// spool and, for consumers, started watching), or it exits.
func (c *child) ready(t *testing.T) bool {
	t.Helper()
	line := make(chan string, 1)
	go func() {
		s, _ := c.stdout.ReadString('\n')
		line <- s
	}()
	select {
	case s := <-line:
		return strings.TrimSpace(s) == "ready"
	case <-time.After(30 * time.Second):
		t.Fatal("helper did not get ready")
	}
	return false
}

// wait waits for the child to exit, at most d.
func (c *child) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case <-c.done:
		return c.err
	case <-time.After(d):
		t.Fatalf("helper %v did not exit within %v", c.cmd.Args, d)
	}
	return nil
}

// appendLog opens path for appending single-write lines.
func appendLog(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
}

// readLines returns the complete lines of the files matching pattern. A
// file's last line without its newline was not written whole: a SIGKILL
// during a write(2) that crosses a page of the file leaves a short write
// (the kernel checks for a fatal signal between pages), so that line is
// not counted as logged.
func readLines(t *testing.T, pattern string) []string {
	t.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		whole := string(b[:bytes.LastIndexByte(b, '\n')+1])
		for _, l := range strings.Split(whole, "\n") {
			if l != "" {
				lines = append(lines, l)
			}
		}
	}
	return lines
}

func init() {
	helpers["mp-producer"] = mpProducer
	helpers["mp-consumer"] = mpConsumer
}

// helperSpool opens the spool named by SPOOL_DIR with DurabilityNone
// (unless SPOOL_DURABILITY says otherwise) and fs.
func helperSpool(fs fsys.FS) (*Spool, error) {
	d := DurabilityNone
	if v := os.Getenv("SPOOL_DURABILITY"); v != "" {
		var err error
		if d, err = ParseDurability(v); err != nil {
			return nil, err
		}
	}
	return Open(os.Getenv("SPOOL_DIR"), &Options{Durability: d, fs: fs})
}

func helperFail(err error) int {
	fmt.Fprintln(os.Stderr, "helper:", err)
	return 1
}

// mpProducer enqueues SPOOL_COUNT entries into queue q with the default
// names; each entry's payload is its metadata. It logs each name after
// Enqueue returned.
func mpProducer() int {
	s, err := helperSpool(nil)
	if err != nil {
		return helperFail(err)
	}
	n, _ := strconv.Atoi(os.Getenv("SPOOL_COUNT"))
	f, err := appendLog(os.Getenv("SPOOL_LOG"))
	if err != nil {
		return helperFail(err)
	}
	w := bufio.NewWriter(f)
	fmt.Println("ready")
	for i := 0; i < n; i++ {
		m := []byte(fmt.Sprintf("%d-%d", os.Getpid(), i))
		name, err := s.EnqueueBytes(context.Background(), "q", m, m, EnqueueOptions{})
		if err != nil {
			return helperFail(err)
		}
		fmt.Fprintln(w, name)
	}
	if err := w.Flush(); err != nil {
		return helperFail(err)
	}
	return 0
}

// mpConsumer dequeues from queue q until SIGTERM, checks that each
// payload equals its metadata, removes the entry, and logs its name.
func mpConsumer() int {
	s, err := helperSpool(nil)
	if err != nil {
		return helperFail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	r, err := s.NewReader("q")
	if err != nil {
		return helperFail(err)
	}
	f, err := appendLog(os.Getenv("SPOOL_LOG"))
	if err != nil {
		return helperFail(err)
	}
	w := bufio.NewWriter(f)
	defer w.Flush()
	fmt.Println("ready")
	for {
		c, err := r.Dequeue(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return 0
			}
			return helperFail(err)
		}
		d, err := c.ReadData()
		if err != nil {
			return helperFail(err)
		}
		if string(d) != string(c.Metadata()) {
			return helperFail(fmt.Errorf("%s: payload %q, metadata %q", c.Name(), d, c.Metadata()))
		}
		if err := c.Remove(); err != nil {
			return helperFail(err)
		}
		fmt.Fprintln(w, c.Name())
	}
}

// TestMultiProcessExactlyOnce: 4 consumer processes drain one queue while
// 2 producer processes fill it with 10,000 entries. Every entry that a
// producer enqueued is processed exactly once, none is lost, and the
// spool is empty afterwards.
func TestMultiProcessExactlyOnce(t *testing.T) {
	const consumers, producers, perProducer = 4, 2, 5000
	dir := filepath.Join(t.TempDir(), "spool")
	logs := t.TempDir()
	s, err := Create(dir, []string{"q"}, &Options{Durability: DurabilityNone})
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"SPOOL_DIR=" + dir}
	var cons []*child
	for i := 0; i < consumers; i++ {
		c := startChild(t, "mp-consumer", append(env, fmt.Sprintf("SPOOL_LOG=%s/consumed-%d", logs, i))...)
		if !c.ready(t) {
			t.Fatal("consumer failed to start")
		}
		cons = append(cons, c)
	}
	start := time.Now()
	var prods []*child
	for i := 0; i < producers; i++ {
		prods = append(prods, startChild(t, "mp-producer", append(env,
			fmt.Sprintf("SPOOL_LOG=%s/produced-%d", logs, i), fmt.Sprint("SPOOL_COUNT=", perProducer))...))
	}
	for _, p := range prods {
		if err := p.wait(t, 60*time.Second); err != nil {
			t.Fatalf("producer: %v", err)
		}
	}
	// Wait for the consumers to drain the queue, then stop them.
	for deadline := time.Now().Add(60 * time.Second); ; {
		q, err1 := s.List("q")
		co, err2 := s.ListCheckedOut("q")
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if len(q) == 0 && len(co) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumers left %d entries waiting and %d checked out", len(q), len(co))
		}
		time.Sleep(10 * time.Millisecond)
	}
	elapsed := time.Since(start)
	for _, c := range cons {
		c.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, c := range cons {
		if err := c.wait(t, 30*time.Second); err != nil {
			t.Fatalf("consumer: %v", err)
		}
	}

	produced := readLines(t, logs+"/produced-*")
	if len(produced) != producers*perProducer {
		t.Fatalf("producers logged %d entries, want %d", len(produced), producers*perProducer)
	}
	seen := map[string]int{}
	for _, n := range readLines(t, logs+"/consumed-*") {
		seen[n]++
	}
	var lost, twice []string
	for _, n := range produced {
		switch seen[n] {
		case 0:
			lost = append(lost, n)
		case 1:
		default:
			twice = append(twice, n)
		}
		delete(seen, n)
	}
	if len(lost) > 0 || len(twice) > 0 || len(seen) > 0 {
		t.Fatalf("%d entries lost (%.5v), %d processed more than once (%.5v), %d processed but never produced",
			len(lost), lost, len(twice), twice, len(seen))
	}
	var per []string
	for i := 0; i < consumers; i++ {
		per = append(per, fmt.Sprint(len(readLines(t, fmt.Sprintf("%s/consumed-%d", logs, i)))))
	}
	t.Logf("%d entries through %d producers and %d consumers in %v (per consumer: %s)",
		len(produced), producers, consumers, elapsed.Round(time.Millisecond), strings.Join(per, ", "))
	for _, d := range []string{RegistryDir, DataDir, TmpDir, "q", "q/" + CheckoutDir} {
		ents, err := os.ReadDir(filepath.Join(dir, d))
		if err != nil {
			t.Fatal(err)
		}
		names := []string{}
		for _, e := range ents {
			if e.Name() != CheckoutDir {
				names = append(names, e.Name())
			}
		}
		if len(names) > 0 {
			t.Errorf("%s is not empty: %d files (%.3v)", d, len(names), slices.Sorted(slices.Values(names)))
		}
	}
}

// TestReadLinesDropsUnfinishedLine: the helpers' logs count complete lines
// only.
func TestReadLinesDropsUnfinishedLine(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{"log.1": "a 1\nb 2\n", "log.2": "c 3\nremoved d-par", "log.3": ""} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got := readLines(t, dir+"/log.*")
	slices.Sort(got)
	if want := []string{"a 1", "b 2", "c 3"}; !slices.Equal(got, want) {
		t.Errorf("readLines = %q, want %q", got, want)
	}
}

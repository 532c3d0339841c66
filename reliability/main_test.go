// Package reliability holds the cross-process tests: producers, consumers
// and the spool-agent binary run as separate processes, are killed at
// random, fed bad input and put under load, and the tests check that no
// acknowledged entry is lost or duplicated and that the agent keeps serving.
// The figures they log are collected in RELIABILITY.md; scripts/soak.sh runs
// the same tests longer.
package reliability

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	flagKills    = flag.Int("reliability.kills", 200, "crash test: number of SIGKILLs")
	flagLoadTime = flag.Duration("reliability.load", 20*time.Second, "load test: how long /metrics is under load")
	flagReport   = flag.String("reliability.report", "", "append each test's figures, one JSON object per line, to this file")
)

// bin holds the paths of the helper binaries built for the tests.
var bin struct {
	worker  string // reliability/internal/spoolworker
	ref     string // reliability/internal/refworker: the OCaml reference's system calls
	loadgen string // reliability/internal/loadgen
	agent   string // cmd/spool-agent
	rsswrap string // internal/testkit/rsswrap: a child's own peak RSS
}

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "reliability-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// Children that drop privileges (the bad-input tests run some as
	// nobody) must be able to run the binaries.
	os.Chmod(dir, 0o755)
	buildBinaries(dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildErrs holds why a helper binary could not be built, by path.
var buildErrs = map[*string]error{}

// buildBinaries builds the helpers (without -race: they are the system
// under test and the load, not the test) into dir. A test that needs a
// binary that failed to build fails through needBinary.
func buildBinaries(dir string) {
	bin.worker = filepath.Join(dir, "spoolworker")
	bin.ref = filepath.Join(dir, "refworker")
	bin.loadgen = filepath.Join(dir, "loadgen")
	bin.agent = filepath.Join(dir, "spool-agent")
	bin.rsswrap = filepath.Join(dir, "rsswrap")
	for _, b := range []struct {
		out *string
		pkg string
	}{
		{&bin.worker, "./internal/spoolworker"},
		{&bin.ref, "./internal/refworker"},
		{&bin.loadgen, "./internal/loadgen"},
		{&bin.rsswrap, "../internal/testkit/rsswrap"},
		{&bin.agent, "../cmd/spool-agent"},
	} {
		if b.out == &bin.agent {
			// A prebuilt agent (scripts/soak.sh builds it once).
			if p := os.Getenv("SPOOL_AGENT_BIN"); p != "" {
				bin.agent = p
				continue
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", *b.out, b.pkg)
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			buildErrs[b.out] = fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
		}
	}
}

// needBinary fails the test unless the binary at *path (a field of bin)
// was built.
func needBinary(t *testing.T, path *string) {
	t.Helper()
	if err := buildErrs[path]; err != nil {
		t.Fatal(err)
	}
}

// proc is a helper process that a test starts, kills and restarts.
type proc struct {
	name string
	args func(gen int) []string // the command line of the gen-th incarnation
	env  []string
	uid  int // run as this user, without privileges (0: as the test)

	mu       sync.Mutex
	cmd      *exec.Cmd
	gen      int
	out      *tailBuffer
	exited   chan struct{}
	exitErr  error
	killed   bool
	failures []string // unexpected exits: what the process said
}

// tailBuffer keeps the last 64 KiB written to it, and counts every byte.
type tailBuffer struct {
	mu    sync.Mutex
	b     []byte
	total int64 // bytes written in all
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.total += int64(len(p))
	t.b = append(t.b, p...)
	if len(t.b) > 64<<10 {
		t.b = t.b[len(t.b)-64<<10:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// start starts the next incarnation.
func (p *proc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gen++
	args := p.args(p.gen)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), p.env...)
	if p.uid != 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(p.uid), Gid: uint32(p.uid)}}
	}
	p.out = &tailBuffer{}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	p.cmd, p.killed, p.exitErr = cmd, false, nil
	exited := make(chan struct{})
	p.exited = exited
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.exitErr = err
		if !p.killed {
			p.failures = append(p.failures, fmt.Sprintf("%s (run %d) exited by itself: %v\n%s", p.name, p.gen, err, p.out))
		}
		p.mu.Unlock()
		close(exited)
	}()
	return nil
}

// running reports whether the current incarnation is alive.
func (p *proc) running() bool {
	p.mu.Lock()
	ch := p.exited
	p.mu.Unlock()
	if ch == nil {
		return false
	}
	select {
	case <-ch:
		return false
	default:
		return true
	}
}

// signal sends sig to the current incarnation and waits (up to 10s) for it to exit.
func (p *proc) signal(sig syscall.Signal) error {
	p.mu.Lock()
	cmd, ch := p.cmd, p.exited
	p.killed = true
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	cmd.Process.Signal(sig)
	select {
	case <-ch:
		return nil
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-ch
		return fmt.Errorf("%s did not exit within 10s of %v", p.name, sig)
	}
}

// pid returns the current incarnation's process id.
func (p *proc) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// output returns what the current incarnation printed.
func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.out == nil {
		return ""
	}
	return p.out.String()
}

// outputBytes returns how many bytes the current incarnation printed.
func (p *proc) outputBytes() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.out == nil {
		return 0
	}
	p.out.mu.Lock()
	defer p.out.mu.Unlock()
	return p.out.total
}

// unexpected returns the unexpected exits so far.
func (p *proc) unexpected() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.failures...)
}

// runCmd runs a command to completion (bounded by timeout) and returns its
// output and exit code.
func runCmd(t *testing.T, timeout time.Duration, stdin io.Reader, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = stdin
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%v: did not finish within %v", args, timeout)
	}
	code = 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("%v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return o.String(), e.String(), code
}

package testkit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// BuildAgent builds this module's ./cmd/spool-agent into dir and returns
// the binary's path. It works from any module that requires this one (a
// nested test module with a replace directive, as web/browsertest).
func BuildAgent(t testing.TB, dir string) string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "spool-agent")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/spool-agent")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/spool-agent: %v\n%s", err, out)
	}
	return bin
}

// modulePath is this module's path, which go list resolves to its
// directory whether it is the main module or a (replaced) dependency.
const modulePath = "github.com/spool-agent/spool-agent"

// moduleRoot is the directory of this module as the go command sees it
// from the working directory (a test runs in its package's directory).
func moduleRoot() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", modulePath).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, bytes.TrimSpace(ee.Stderr))
		}
		return "", fmt.Errorf("go list -m %s: %w", modulePath, err)
	}
	dir := string(bytes.TrimSpace(out))
	if dir == "" {
		return "", fmt.Errorf("go list -m %s: no directory (not in the module cache?)", modulePath)
	}
	return dir, nil
}

// FreeAddr returns a loopback address whose port was free a moment ago,
// for a process that cannot be handed a listener.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// AgentEnv is the environment for a spool-agent process of a test: the
// test's, without the SPOOL_AGENT_* and OTEL_* variables that could change
// what it does, nor those of the default state file's place
// (STATE_DIRECTORY, XDG_STATE_HOME, HOME): an agent of a test keeps no
// state file unless the test gives it --state.path (or sets one of them),
// so no test writes outside its directory or inherits another's state.
func AgentEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(name, "SPOOL_AGENT_"), strings.HasPrefix(name, "OTEL_"),
			name == "STATE_DIRECTORY", name == "XDG_STATE_HOME", name == "HOME":
			continue
		}
		env = append(env, kv)
	}
	return env
}

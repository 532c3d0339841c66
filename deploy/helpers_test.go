package deploy

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// lookTool and agentBinary are this module's counterparts of the root
// module's internal/testkit (Promtool, BuildAgent): the Go rules would let
// this module import it, but only by requiring the root module, whose
// dependencies would then set this module's versions; it runs the agent
// as a built program instead.

// lookTool returns the path of an external program a test needs. Outside
// CI a missing one skips the test with the package to install; under
// CI=true (.ci/run installs them) it fails it.
func lookTool(t *testing.T, name, install string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found; CI must install it (%s)", name, install)
		}
		t.Skipf("%s not installed (%s)", name, install)
	}
	return p
}

// builtAgent is the agent built once for the tests of this package.
type builtAgent struct {
	once sync.Once
	dir  string
	bin  string
	err  error
	out  []byte
}

var agent builtAgent

// agentBinary builds ./cmd/spool-agent once for the package's tests and
// returns its path.
func agentBinary(t *testing.T) string {
	t.Helper()
	agent.once.Do(func() {
		agent.dir, agent.err = os.MkdirTemp("", "spool-agent-deploy-test-")
		if agent.err != nil {
			return
		}
		agent.bin = filepath.Join(agent.dir, "spool-agent")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", agent.bin, "./cmd/spool-agent")
		cmd.Dir = repoRoot
		agent.out, agent.err = cmd.CombinedOutput()
	})
	if agent.err != nil {
		t.Fatalf("go build ./cmd/spool-agent: %v\n%s", agent.err, agent.out)
	}
	return agent.bin
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, dir := range []string{agent.dir, amd64Release.dist} {
		if dir != "" {
			os.RemoveAll(dir)
		}
	}
	os.Exit(code)
}

func metav1LabelSelector(s *metav1.LabelSelector) (labels.Selector, error) {
	return metav1.LabelSelectorAsSelector(s)
}

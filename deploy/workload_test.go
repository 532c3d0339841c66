package deploy

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// countFiles counts the regular files in dir (not directories).
func countFiles(t *testing.T, dir string) int {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if e.Type().IsRegular() {
			n++
		}
	}
	return n
}

var summaryRE = regexp.MustCompile(`workload: produced (\d+) moved (\d+) removed (\d+)`)

// runWorkload runs deploy/demo/workload.sh for ticks ticks and returns what
// it says it produced, moved and removed.
func runWorkload(t *testing.T, bin, spool string, ticks int) (produced, moved, removed int) {
	t.Helper()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, sh, "demo/workload.sh")
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SPOOL_AGENT_") && !strings.HasPrefix(kv, "OTEL_") && !strings.HasPrefix(kv, "DEMO_") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "SPOOL="+spool, "DEMO_TICKS="+strconv.Itoa(ticks), "DEMO_TICK=0", "SPOOL_AGENT="+bin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("workload.sh: %v\n%s", err, out)
	}
	m := summaryRE.FindSubmatch(out)
	if m == nil {
		t.Fatalf("workload.sh printed no summary:\n%s", out)
	}
	atoi := func(b []byte) int { n, _ := strconv.Atoi(string(b)); return n }
	return atoi(m[1]), atoi(m[2]), atoi(m[3])
}

// TestDemoWorkload runs the demo workload against the real CLI and checks
// the spool it leaves: every entry it reports is where it should be, plus
// the one checkout it leaves on purpose, and fsck finds nothing else wrong.
func TestDemoWorkload(t *testing.T) {
	bin := agentBinary(t)
	spool := filepath.Join(t.TempDir(), "spool")

	produced, moved, removed := runWorkload(t, bin, spool, 12)
	p2, m2, r2 := runWorkload(t, bin, spool, 6) // a restart reuses the spool
	produced, moved, removed = produced+p2, moved+m2, removed+r2
	t.Logf("produced %d, moved %d, removed %d", produced, moved, removed)
	if produced == 0 || moved == 0 || removed == 0 {
		t.Fatalf("produced %d, moved %d, removed %d: the workload should do all three", produced, moved, removed)
	}
	if !(removed <= moved && moved <= produced) {
		t.Fatalf("produced %d, moved %d, removed %d: impossible", produced, moved, removed)
	}
	for dir, want := range map[string]int{
		".registry":          1 + produced - removed,
		".data":              1 + produced - removed,
		"incoming":           produced - moved,
		"outgoing":           moved - removed,
		"dead-letter":        0,
		"incoming/.checkout": 1, // the crashed consumer's, left once
		"outgoing/.checkout": 0,
	} {
		if got := countFiles(t, filepath.Join(spool, dir)); got != want {
			t.Errorf("%s holds %d files, want %d", dir, got, want)
		}
	}
	if out, err := exec.Command(bin, "fsck", spool).CombinedOutput(); err != nil {
		t.Errorf("fsck of the demo spool: %v\n%s", err, out)
	}
}

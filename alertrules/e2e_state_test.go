package alertrules

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestEndToEndStateSurvivesRestart: with --state.path, the agent keeps its
// debouncing state across a clean restart and a crash, so a problem that is
// still there alerts from the new agent's first cycle (without the state it
// would need --alert-after-cycles more: the check below fails when the
// state file is removed before the restart), and Alertmanager sends no
// resolved for it; once fixed, it resolves.
func TestEndToEndStateSurvivesRestart(t *testing.T) {
	t.Parallel()
	statePath := filepath.Join(t.TempDir(), "state.json")
	s := startStack(t, "--state.path", statePath)
	orphaned := map[string]string{
		"alertname": "SpoolOrphanedFiles", "job": "spool-agent", "instance": s.agentAddr,
		"spool": e2eSpool, "kind": "orphaned", "dir": "data",
	}
	waitAlerts(t, s.hook, "firing", orphaned)
	if st, err := os.Stat(statePath); err != nil || st.Size() == 0 {
		t.Fatalf("the agent wrote no state to %s: %v", statePath, err)
	}
	if rel, err := filepath.Rel(s.spoolDir, statePath); err == nil && !strings.HasPrefix(rel, "..") {
		t.Fatalf("the state file %s is inside the spool", statePath)
	}

	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		all, _ := s.hook.snapshot()
		resolved := s.resolvedReceived(t)
		if err := s.agent.cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		<-s.agent.done
		s.restarts++
		s.agent = start(t, s.tmp, "spool-agent-state-"+strconv.Itoa(s.restarts), s.agentBin, s.agentArgs...)
		cycles, problems := firstCycleMetrics(t, s)
		if problems != 1 {
			t.Errorf("restart by %v: after %v cycle(s) the new agent exports spool_problems{orphaned,data} = %v, want 1 (its state restored)",
				sig, cycles, problems)
		}
		waitScrapedAfter(t, s.promAddr, `spool_problems{job="spool-agent",kind="orphaned",dir="data"}`, time.Now())
		s.checkNoResolution(t, resolved, sig)
		if r := s.resolvedSince(len(all)); len(r) > 0 {
			t.Errorf("restart by %v: Alertmanager sent resolved %+v", sig, r)
		}
	}

	if err := os.Remove(s.orphan); err != nil {
		t.Fatal(err)
	}
	waitAlerts(t, s.hook, "resolved", orphaned)
}

var (
	cyclesRE   = regexp.MustCompile(`(?m)^spool_fsck_cycles_total\{spool="` + e2eSpool + `"\} (\S+)$`)
	orphanedRE = regexp.MustCompile(`(?m)^spool_problems\{[^}]*kind="orphaned"[^}]*dir="data"[^}]*\} (\S+)$|^spool_problems\{[^}]*dir="data"[^}]*kind="orphaned"[^}]*\} (\S+)$`)
)

// firstCycleMetrics polls the new agent's /metrics until it has run a check
// of the spool, and returns the number of cycles and the orphaned problems
// in .data it exports then.
func firstCycleMetrics(t *testing.T, s *e2eStack) (cycles, problems float64) {
	t.Helper()
	deadline := time.Now().Add(e2eDeadline)
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := client.Get("http://" + s.agentAddr + "/metrics")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if m := cyclesRE.FindSubmatch(b); m != nil {
				if c, _ := strconv.ParseFloat(string(m[1]), 64); c >= 1 {
					if p := orphanedRE.FindSubmatch(b); p != nil {
						v := string(p[1]) + string(p[2])
						problems, _ = strconv.ParseFloat(v, 64)
					}
					return c, problems
				}
			}
		}
		if done, perr := s.agent.exited(); done {
			t.Fatalf("the restarted agent exited: %v", perr)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the restarted agent ran no check within %v (last error %v)", e2eDeadline, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

package otelexporter

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/spool-agent/spool-agent/internal/syncbuf"
	"github.com/spool-agent/spool-agent/internal/testkit"
	"github.com/spool-agent/spool-agent/spool"
)

// TestE2EAgentOTLP runs the real agent binary against in-process OTLP
// receivers (HTTP and gRPC): queue metrics arrive, and a planted orphan
// gives a Start log record and, once removed, an End record.
func TestE2EAgentOTLP(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the agent binary")
	}
	bin := testkit.BuildAgent(t, t.TempDir())
	for _, proto := range []string{ProtocolHTTPProtobuf, ProtocolGRPC} {
		t.Run(proto, func(t *testing.T) {
			var rcv *receiver
			var endpoint string
			if proto == ProtocolGRPC {
				rcv, endpoint = startGRPCReceiver(t)
			} else {
				rcv, endpoint = startHTTPReceiver(t)
			}
			dir := filepath.Join(t.TempDir(), "mail")
			sp, err := spool.Create(dir, []string{"outbox", "deferred"}, &spool.Options{Durability: spool.DurabilityNone})
			if err != nil {
				t.Fatal(err)
			}
			for range 2 {
				if _, err := sp.EnqueueBytes(context.Background(), "outbox", []byte("meta"), []byte("data"), spool.EnqueueOptions{}); err != nil {
					t.Fatal(err)
				}
			}

			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			listen := testkit.FreeAddr(t)
			cmd := exec.CommandContext(ctx, bin, "run",
				"--spool", "mail="+dir,
				"--web.listen-address", listen,
				"--check-every", "100ms",
				"--alert-after-cycles", "2")
			cmd.Env = append(os.Environ(),
				"OTEL_EXPORTER_OTLP_ENDPOINT="+endpoint,
				"OTEL_EXPORTER_OTLP_PROTOCOL="+proto,
				"OTEL_EXPORTER_OTLP_INSECURE=true",
				"OTEL_METRIC_EXPORT_INTERVAL=200",
				"OTEL_BLRP_SCHEDULE_DELAY=100",
				"OTEL_SERVICE_NAME=e2e-agent",
			)
			var output syncbuf.Buffer
			cmd.Stdout, cmd.Stderr = &output, &output
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			stopped := false
			defer func() {
				if !stopped {
					_ = cmd.Process.Kill()
					<-exited
				}
				if t.Failed() {
					t.Logf("agent output:\n%s", output.String())
				}
			}()

			testkit.WaitFor(t, 30*time.Second, "queue metrics over OTLP", func() bool {
				p, ok := rcv.findPoint("spool.queue.entries", map[string]string{AttrSpool: "mail", AttrQueue: "outbox", AttrEntryState: StateWaiting})
				return ok && p.value == 2
			})
			p, _ := rcv.findPoint("spool.queue.entries", map[string]string{AttrSpool: "mail", AttrQueue: "deferred", AttrEntryState: StateWaiting})
			if p.value != 0 || p.unit != "{entry}" || p.resource["service.name"] != "e2e-agent" {
				t.Errorf("deferred queue point %+v, want 0 {entry} from service e2e-agent", p)
			}
			if p, ok := rcv.findPoint("spool.up", map[string]string{AttrSpool: "mail"}); !ok || p.value != 1 {
				t.Errorf("spool.up %+v (found %v), want 1", p, ok)
			}

			orphan := filepath.Join(dir, ".data", "orphan")
			if err := os.WriteFile(orphan, []byte("lost"), 0o644); err != nil {
				t.Fatal(err)
			}
			want := map[string]string{AttrSpool: "mail", AttrProblemKind: "orphaned", AttrProblemDir: "data", AttrEntryName: "orphan"}
			start := map[string]string{AttrProblemEvent: "start"}
			for k, v := range want {
				start[k] = v
			}
			testkit.WaitFor(t, 30*time.Second, "a Start log record for the orphan", func() bool { _, ok := rcv.findRecord(start); return ok })
			rec, _ := rcv.findRecord(start)
			if rec.severityText != "WARN" || rec.eventName != EventNameStart || rec.attrs[AttrEntryMtime] == "" {
				t.Errorf("start record %+v", rec)
			}
			if p, ok := rcv.findPoint("spool.problems", map[string]string{AttrSpool: "mail", AttrProblemKind: "orphaned", AttrProblemDir: "data"}); ok && p.value != 1 {
				t.Errorf("spool.problems orphaned data = %v, want 1", p.value)
			}

			if proto == ProtocolHTTPProtobuf {
				promtoolCheck(t, "http://"+listen+"/metrics")
			}

			if err := os.Remove(orphan); err != nil {
				t.Fatal(err)
			}
			end := map[string]string{AttrProblemEvent: "end"}
			for k, v := range want {
				end[k] = v
			}
			testkit.WaitFor(t, 30*time.Second, "an End log record for the orphan", func() bool { _, ok := rcv.findRecord(end); return ok })
			if rec, _ := rcv.findRecord(end); rec.severityText != "INFO" || rec.eventName != EventNameEnd {
				t.Errorf("end record %+v", rec)
			}

			// SIGTERM shuts the agent down cleanly, flushing OTLP.
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-exited:
				stopped = true
				if err != nil {
					t.Errorf("agent exit after SIGTERM: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("agent did not exit within 30s of SIGTERM")
			}
			n := 0
			for _, r := range rcv.records() {
				if r.scope != ScopeName {
					n++
				}
			}
			if n == 0 {
				t.Error("none of the agent's own slog records arrived over OTLP")
			}
		})
	}
}

// promtoolCheck runs `promtool check metrics` on a real scrape of url (with
// a problem alerting); see testkit.CheckMetrics for a missing promtool.
func promtoolCheck(t *testing.T, url string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(body, []byte(`spool_problems{dir="data",kind="orphaned",queue="",spool="mail"} 1`)) {
		t.Errorf("scrape lacks the alerting orphan:\n%s", body)
	}
	testkit.CheckMetrics(t, body)
}

package monitor_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/spool-agent/spool-agent/monitor"
	"github.com/spool-agent/spool-agent/spool"
)

// newSpool creates a spool with one healthy entry and a left-over temporary
// file, both last touched an hour before now.
func newSpool(now time.Time) (string, func()) {
	tmp, err := os.MkdirTemp("", "example")
	if err != nil {
		log.Fatal(err)
	}
	dir := filepath.Join(tmp, "spool")
	s, err := spool.Create(dir, []string{"active", "frozen"}, &spool.Options{Durability: spool.DurabilityNone})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := s.EnqueueBytes(context.Background(), "active", []byte("meta"), []byte("payload"), spool.EnqueueOptions{Name: "msg1"}); err != nil {
		log.Fatal(err)
	}
	left := filepath.Join(dir, spool.TmpDir, "msg0")
	if err := os.WriteFile(left, nil, 0o644); err != nil {
		log.Fatal(err)
	}
	hourAgo := now.Add(-time.Hour)
	for _, p := range []string{left, filepath.Join(dir, "active", "msg1")} {
		if err := os.Chtimes(p, hourAgo, hourAgo); err != nil {
			log.Fatal(err)
		}
	}
	return dir, func() { os.RemoveAll(tmp) }
}

// Check is one stateless full check, as `spool-agent fsck` runs it.
func ExampleCheck() {
	now := time.Now()
	dir, cleanup := newSpool(now)
	defer cleanup()
	problems, err := monitor.Check(dir, monitor.DefaultLimits(), now)
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range problems {
		fmt.Println(p.Kind, p.Path())
	}
	// Output:
	// too_old .tmp/msg0
	// orphaned .tmp/msg0
}

// A monitor debounces problems: with the default AlertAfterCycles of 2, a
// problem starts alerting on the third cycle in a row that finds it.
func ExampleMonitor_Cycle() {
	now := time.Now()
	dir, cleanup := newSpool(now)
	defer cleanup()
	cfg := monitor.DefaultConfig()
	cfg.Limits.MaxQueueAge = map[string]time.Duration{"active": 30 * time.Minute}
	cfg.Now = func() time.Time { return now }
	m, err := monitor.New("mail", dir, cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	for cycle := 1; cycle <= 3; cycle++ {
		events, err := m.Cycle(context.Background())
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("cycle %d: %d events\n", cycle, len(events))
		for _, e := range events {
			fmt.Println(" ", e.Type, e.Problem.Kind, e.Problem.Path())
		}
	}
	q := m.Snapshot().Queues[0]
	fmt.Println(q.Queue, "waiting:", q.Entries)
	// Output:
	// cycle 1: 0 events
	// cycle 2: 0 events
	// cycle 3: 3 events
	//   start too_old .tmp/msg0
	//   start too_old active/msg1
	//   start orphaned .tmp/msg0
	// active waiting: 1
}

// Command floodprof measures the monitor's heap under a flood of
// unregistered files in one queue (issue 11): it creates the spool, runs a
// watching monitor through a few cycles, and writes a heap profile.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"

	"github.com/spool-agent/spool-agent/monitor"
	"github.com/spool-agent/spool-agent/spool"
	"golang.org/x/sys/unix"
)

func main() {
	dir := flag.String("dir", "", "spool (created)")
	n := flag.Int("n", 100000, "unregistered files")
	bound := flag.Int("max", 10000, "MaxUnregistered")
	prof := flag.String("heap", "", "heap profile output")
	flag.Parse()
	if _, err := spool.Create(*dir, []string{"in"}, &spool.Options{Durability: spool.DurabilityNone}); err != nil {
		log.Fatal(err)
	}
	cfg := monitor.DefaultConfig()
	cfg.MaxUnregistered = *bound
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	m, err := monitor.New("x", *dir, cfg)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	m.Cycle(ctx)
	for i := range *n {
		fd, err := unix.Open(filepath.Join(*dir, "in", "f"+strconv.Itoa(i)), unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
		if err != nil {
			log.Fatal(err)
		}
		unix.Close(fd)
	}
	var ms runtime.MemStats
	for i := range 6 {
		m.Cycle(ctx)
		runtime.ReadMemStats(&ms)
		s := m.Snapshot()
		fmt.Printf("cycle %d: heap in use %.1f MB, sys %.1f MB, problems %d, watching %v\n", i, float64(ms.HeapInuse)/(1<<20), float64(ms.Sys)/(1<<20), len(s.Problems), s.Watching)
	}
	runtime.GC()
	runtime.ReadMemStats(&ms)
	fmt.Printf("after GC: heap alloc %.1f MB\n", float64(ms.HeapAlloc)/(1<<20))
	if *prof != "" {
		f, _ := os.Create(*prof)
		pprof.WriteHeapProfile(f)
		f.Close()
	}
	m.Close()
}

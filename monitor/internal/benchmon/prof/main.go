package main

import (
	"fmt"
	"os"
	"runtime/pprof"
	"time"

	"github.com/spool-agent/spool-agent/monitor"
)

func main() {
	f, _ := os.Create("/tmp/cpu.prof")
	monitor.Check(os.Args[1], monitor.DefaultLimits(), time.Now())
	pprof.StartCPUProfile(f)
	for i := 0; i < 3; i++ {
		t := time.Now()
		ps, err := monitor.Check(os.Args[1], monitor.DefaultLimits(), time.Now())
		fmt.Println(len(ps), err, time.Since(t))
	}
	pprof.StopCPUProfile()
}

// Command spoolworker is the producer and consumer process of the
// reliability tests: the tests start many of them on one spool, SIGKILL them
// at random, and afterwards check the spool and their logs (see package
// workload for the formats).
//
//	spoolworker produce -spool DIR -queue Q -id PREFIX -log ACKS [-n N] [-size BYTES]
//	spoolworker consume -spool DIR -queue Q -to Q2 [-log FILE] [-beside-reference]
//	spoolworker remove  -spool DIR -queue Q -log FILE [-beside-reference]
//	spoolworker churn   -spool DIR -queue Q -id PREFIX -duration D [-rate OPS]  (prints {"ops":N,"seconds":S})
//	spoolworker hog-inotify                                            (prints {"instances":N}, then waits)
//
// -beside-reference says workers of the OCaml reference (refworker) share
// the spool (see workload.Options.BesideReference).
//
// hog-inotify creates inotify instances until the kernel refuses one (the
// per-user fs.inotify.max_user_instances limit), reports how many it got,
// and holds them until signalled: run as a dedicated user, it exhausts that
// user's inotify instances without touching anyone else's.
//
// Every mode stops on SIGTERM or SIGINT, or after -duration. The exit status
// is 3 when a payload did not match its metadata, 1 on any other error.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spool-agent/spool-agent/reliability/internal/workload"
	"github.com/spool-agent/spool-agent/spool"
	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: spoolworker produce|consume|remove|churn [flags]")
		os.Exit(2)
	}
	mode := os.Args[1]
	fl := flag.NewFlagSet(mode, flag.ExitOnError)
	dir := fl.String("spool", "", "spool directory")
	queue := fl.String("queue", "incoming", "queue to enqueue into or consume from")
	to := fl.String("to", "done", "consume: queue to save processed entries into")
	id := fl.String("id", "", "produce, churn: prefix of the entry ids (unique per process run)")
	logPath := fl.String("log", "", "log file (acks for produce)")
	n := fl.Int("n", 0, "produce: stop after n entries (0: until stopped)")
	size := fl.Int("size", 256, "payload size in bytes")
	durability := fl.String("durability", "full", "none, files or full")
	duration := fl.Duration("duration", 0, "stop after this long (0: until signalled)")
	rate := fl.Float64("rate", 0, "churn: target operations per second (0: as fast as possible)")
	var wo workload.Options
	fl.BoolVar(&wo.BesideReference, "beside-reference", false, "consume, remove: workers of the OCaml reference share the spool")
	fl.Parse(os.Args[2:])
	if err := run(mode, *dir, *queue, *to, *id, *logPath, *n, *size, *durability, *duration, *rate, wo); err != nil {
		fmt.Fprintf(os.Stderr, "spoolworker %s: %v\n", mode, err)
		if errors.Is(err, workload.ErrCorrupt) {
			os.Exit(3)
		}
		os.Exit(1)
	}
}

func run(mode, dir, queue, to, id, logPath string, n, size int, durability string, duration time.Duration, rate float64, wo workload.Options) error {
	if mode == "hog-inotify" {
		return hogInotify()
	}
	d, err := spool.ParseDurability(durability)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, duration)
		defer cancel()
	}
	s, err := spool.Open(dir, &spool.Options{Durability: d})
	if err != nil {
		return err
	}
	var log *workload.Log
	if logPath != "" {
		if log, err = workload.OpenLog(logPath); err != nil {
			return err
		}
		defer log.Close()
	}
	switch mode {
	case "produce":
		if id == "" || log == nil {
			return errors.New("produce needs -id and -log")
		}
		return workload.Produce(ctx, s, queue, id, n, size, 0, log, nil)
	case "consume":
		return workload.Consume(ctx, s, queue, to, wo, log, nil)
	case "remove":
		return workload.Remove(ctx, s, queue, wo, log, nil)
	case "churn":
		if id == "" {
			return errors.New("churn needs -id")
		}
		var ops workload.Counter
		start := time.Now()
		err := workload.Churn(ctx, s, queue, id, size, rate, &ops)
		el := time.Since(start)
		json.NewEncoder(os.Stdout).Encode(map[string]float64{
			"ops": float64(ops.Load()), "seconds": el.Seconds(), "ops_per_second": workload.Rate(ops.Load(), el),
		})
		return err
	}
	return fmt.Errorf("unknown mode %q", mode)
}

// hogInotify holds as many inotify instances as the kernel gives this user.
func hogInotify() error {
	var fds []int
	var last error
	for len(fds) < 1<<16 {
		fd, err := newInotifyInstance()
		if err != nil {
			last = err
			break
		}
		fds = append(fds, fd)
	}
	json.NewEncoder(os.Stdout).Encode(map[string]any{"instances": len(fds), "err": fmt.Sprint(last)})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	<-ctx.Done()
	for _, fd := range fds {
		unix.Close(fd)
	}
	return nil
}

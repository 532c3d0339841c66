package spool

import (
	"fmt"
	"os"
	"sync"
	"testing"
)

// helperEnv names the environment variable that turns a re-executed test
// binary into a helper process (a producer, a consumer, an unprivileged
// checker) instead of running tests. Helpers register in helpers from init
// functions.
const helperEnv = "SPOOL_TEST_HELPER"

// benchKeepEnv names the environment variable that keeps benchRoot when
// the test binary exits.
const benchKeepEnv = "SPOOL_BENCH_KEEP"

var helpers = map[string]func() int{}

func TestMain(m *testing.M) {
	if role := os.Getenv(helperEnv); role != "" {
		f := helpers[role]
		if f == nil {
			fmt.Fprintf(os.Stderr, "unknown %s role %q\n", helperEnv, role)
			os.Exit(2)
		}
		os.Exit(f())
	}
	code := m.Run()
	if benchSpools.dir != "" && os.Getenv(benchKeepEnv) == "" { // m.Run has returned: no benchmark runs
		os.RemoveAll(benchSpools.dir)
	}
	os.Exit(code)
}

// benchRoot holds the spools of every benchmark run until the test binary
// exits, instead of each being removed when its run ends (b.TempDir): on
// ext4 without a journal, inode allocation skips every inode freed in the
// last minute (five while its inode block is dirty), reading each one's
// inode block to find out (recently_deleted), so removing one run's spool
// made the next run's file creations several times dearer, for the
// library and its floor alike. With benchKeepEnv set the binary leaves
// them too, for the next binary of an A/B comparison (remove them after).
func benchRoot() (string, error) {
	benchSpools.once.Do(func() { benchSpools.dir, benchSpools.err = os.MkdirTemp("", "spool-bench-") })
	return benchSpools.dir, benchSpools.err
}

// benchSpools is benchRoot's directory, made by the first benchmark that
// asks for it (none: nothing to remove).
var benchSpools struct {
	once sync.Once
	dir  string
	err  error
}

package spool

import (
	"fmt"
	"os"
	"testing"
)

// helperEnv names the environment variable that turns a re-executed test
// binary into a helper process (a producer, a consumer, an unprivileged
// checker) instead of running tests. Helpers register in helpers from init
// functions.
const helperEnv = "SPOOL_TEST_HELPER"

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
	os.Exit(m.Run())
}

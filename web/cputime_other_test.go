//go:build !linux

package web

import "time"

// threadCPU is not measured outside Linux (see cputime_linux_test.go).
func threadCPU() time.Duration { return 0 }

//go:build !linux && !darwin

package reliability

import "golang.org/x/sys/unix"

// exchangePaths fails: this system cannot swap two paths in one step.
func exchangePaths(a, b string) error { return unix.ENOSYS }

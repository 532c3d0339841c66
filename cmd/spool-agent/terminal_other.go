//go:build !linux && !darwin && !dragonfly && !freebsd && !netbsd && !openbsd

package main

import "io"

// isTerminal reports false where the terminal ioctl is unknown: no
// progress line is ever drawn there.
func isTerminal(io.Writer) bool { return false }

// Package qshape holds the age buckets of Postfix's qshape, which
// `spool-agent shape` and the console's queue table both show: one place,
// so that the command and the console always agree.
package qshape

import (
	"strconv"
	"time"
)

// first and last are the upper bounds of the first and last bounded
// buckets; each bucket doubles the one before.
const (
	first = 5 * time.Minute
	last  = 1280 * time.Minute
)

// Bounds returns the buckets' upper bounds, doubling from 5 to 1280
// minutes; one more bucket (the last of Labels) takes older entries. The
// slice is the caller's.
func Bounds() []time.Duration {
	var b []time.Duration
	for d := first; d <= last; d *= 2 {
		b = append(b, d)
	}
	return b
}

// Labels returns the buckets' column labels: 5m ... 1280m, then 1280m+ for
// the older entries (one more than Bounds). The slice is the caller's.
func Labels() []string {
	var l []string
	for _, d := range Bounds() {
		l = append(l, strconv.Itoa(int(d/time.Minute))+"m")
	}
	return append(l, l[len(l)-1]+"+")
}

package monitor

import (
	"sort"
	"time"
)

// ageIndex is a queue's waiting entries' mtimes as published in a Snapshot:
// the blocks of the monitor's sorted set at publication time, which the
// monitor never changes afterwards (it copies a block before changing it).
type ageIndex struct {
	blocks []*block
	n      int
}

// AgeBuckets returns, for each bound, how many waiting entries of the queue
// are at most that old at now (cumulative, as a Prometheus histogram wants),
// and the sum of all their ages in seconds. Ages are now minus the file's
// mtime, at nanosecond precision; an mtime in the future counts as age 0.
// bounds must be sorted ascending. It costs one pass over the queue's
// entries and does not touch the disk.
func (q QueueStats) AgeBuckets(now time.Time, bounds []time.Duration) (cumulative []uint64, sumSeconds float64) {
	counts := make([]uint64, len(bounds)+1)
	nowNs := now.UnixNano()
	// Items are sorted oldest first, so ages decrease along the pass and the
	// bucket index only ever moves down.
	k := len(bounds)
	first := true
	var sumNs, carry int64
	for _, b := range q.ages.blocks {
		for _, it := range b.items {
			age := nowNs - it.ns
			if age < 0 {
				age = 0
			}
			if first {
				k = sort.Search(len(bounds), func(i int) bool { return int64(bounds[i]) >= age })
				first = false
			} else {
				for k > 0 && int64(bounds[k-1]) >= age {
					k--
				}
			}
			counts[k]++
			// Accumulate whole seconds and the nanosecond remainder apart so
			// that a million ages neither overflow nor lose precision.
			carry += age % 1e9
			sumNs += age / 1e9
			if carry >= 1e9 {
				sumNs += carry / 1e9
				carry %= 1e9
			}
		}
	}
	cumulative = make([]uint64, len(bounds))
	var c uint64
	for i := range bounds {
		c += counts[i]
		cumulative[i] = c
	}
	return cumulative, float64(sumNs) + float64(carry)/1e9
}

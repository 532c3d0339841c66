package monitor

import "time"

// ageIndex holds what AgeBuckets needs; the monitor's implementation owns it.
type ageIndex struct {
	// mtimes holds waiting entries' mtimes as unix seconds, sorted ascending.
	mtimes []int64
}

// AgeBuckets returns, for each bound, how many waiting entries of the queue
// are at most that old at now (cumulative, as a Prometheus histogram wants),
// and the sum of all their ages in seconds.
func (q QueueStats) AgeBuckets(now time.Time, bounds []time.Duration) (cumulative []uint64, sumSeconds float64) {
	cumulative = make([]uint64, len(bounds))
	n := now.Unix()
	for _, m := range q.ages.mtimes {
		age := n - m
		if age < 0 {
			age = 0
		}
		sumSeconds += float64(age)
		for i, b := range bounds {
			if float64(age) <= b.Seconds() {
				cumulative[i]++
			}
		}
	}
	return cumulative, sumSeconds
}

package index

import (
	"math"
	"sort"
	"time"
)

// Ages are a queue's waiting entries' mtimes as published: the blocks of
// the index's sorted set at publication time, which the index never
// changes afterwards (it copies a block before changing it). The zero
// value holds none.
type Ages struct {
	blocks []*block
	n      int
}

// Buckets returns, for each bound, how many waiting entries of the queue
// are at most that old at now (cumulative, as a Prometheus histogram wants),
// and the sum of all their ages in seconds. Ages are now minus the file's
// mtime, at nanosecond precision; an mtime in the future counts as age 0.
// bounds must be sorted ascending. It does not touch the disk, and costs a
// binary search per bound plus one step per block of 256 entries, not one
// per entry: the blocks are sorted by mtime and carry their mtimes' sum.
func (a Ages) Buckets(now time.Time, bounds []time.Duration) (cumulative []uint64, sumSeconds float64) {
	blocks := a.blocks
	// prefix[i] is the number of items in blocks[:i].
	prefix := make([]int, len(blocks)+1)
	for i, b := range blocks {
		prefix[i+1] = prefix[i] + len(b.items)
	}
	// before returns the number of items older than mtime (mtime < mtime) and
	// the block that holds the first item not older.
	before := func(mtime int64) (count, bi int) {
		bi = sort.Search(len(blocks), func(i int) bool {
			b := blocks[i]
			return b.items[len(b.items)-1].mtime >= mtime
		})
		if bi == len(blocks) {
			return prefix[bi], bi
		}
		items := blocks[bi].items
		return prefix[bi] + sort.Search(len(items), func(j int) bool { return items[j].mtime >= mtime }), bi
	}

	nowNs := now.UnixNano()
	n := prefix[len(blocks)]
	cumulative = make([]uint64, len(bounds))
	for i, b := range bounds {
		// At most b old means an mtime at or after now-b (saturated: a
		// bound beyond every age takes in all entries).
		oldest := nowNs - int64(b)
		switch {
		case b < 0:
			oldest = math.MaxInt64 // no age is negative: none
		case oldest > nowNs:
			oldest = math.MinInt64 // overflowed: all
		}
		older, _ := before(oldest)
		cumulative[i] = uint64(n - older)
	}

	// The sum of ages is past*now minus the sum of the past mtimes, where
	// past are the items not in the future (future ones count as age 0).
	past, bi := before(nowNs + 1)
	if nowNs == math.MaxInt64 {
		past, bi = n, len(blocks)
	}
	var mtimes nsSum
	for _, b := range blocks[:bi] {
		mtimes.sec += b.sum.sec
		mtimes.nsec += b.sum.nsec
	}
	if bi < len(blocks) {
		for _, it := range blocks[bi].items[:past-prefix[bi]] {
			mtimes.add(it.mtime)
		}
	}
	p := int64(past)
	sec := p*(nowNs/1e9) - mtimes.sec
	nsec := p*(nowNs%1e9) - mtimes.nsec
	sec, nsec = sec+nsec/1e9, nsec%1e9
	return cumulative, float64(sec) + float64(nsec)/1e9
}

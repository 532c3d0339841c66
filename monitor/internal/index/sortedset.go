package index

import "slices"

// item is one file of a queue or checkout directory in a sortedSet: its
// mtime in nanoseconds and the id of its entry in the index.
type item struct {
	mtime int64
	id    uint32
}

func itemLess(a, b item) bool {
	if a.mtime != b.mtime {
		return a.mtime < b.mtime
	}
	return a.id < b.id
}

func itemCmp(a, b item) int {
	switch {
	case itemLess(a, b):
		return -1
	case itemLess(b, a):
		return 1
	}
	return 0
}

// blockMax is the most items a block holds before it splits.
const blockMax = 256

// block is a sorted run of items. A block whose gen is older than its set's
// generation may be shared with a published Snapshot and is copied before
// it is changed.
type block struct {
	items []item
	gen   uint64
	// sum is the sum of the items' mtimes, which lets Buckets add up a
	// whole block's ages without visiting its items.
	sum nsSum
}

// nsSum is an exact sum of nanosecond times, kept as whole seconds and
// nanoseconds apart so that a million of them cannot overflow.
type nsSum struct{ sec, nsec int64 }

func (s *nsSum) add(mtime int64) { s.sec += mtime / 1e9; s.nsec += mtime % 1e9 }
func (s *nsSum) sub(mtime int64) { s.sec -= mtime / 1e9; s.nsec -= mtime % 1e9 }

// newBlock returns a block of items (which it keeps) with their sum.
func newBlock(items []item, gen uint64) *block {
	b := &block{items: items, gen: gen}
	for _, it := range items {
		b.sum.add(it.mtime)
	}
	return b
}

// sortedSet holds the items of one directory ordered by (mtime, id): the
// oldest entry is the first item, the too-old entries are a prefix, and a
// Snapshot can share the blocks (copy on write) so that publishing costs
// one pointer per block rather than one item per file.
type sortedSet struct {
	blocks []*block
	n      int
	gen    *uint64 // the index's publication generation
}

// first returns the oldest item.
func (s *sortedSet) first() (item, bool) {
	if s.n == 0 {
		return item{}, false
	}
	return s.blocks[0].items[0], true
}

// writable returns block i, copied first if a snapshot may share it.
func (s *sortedSet) writable(i int) *block {
	b := s.blocks[i]
	if b.gen < *s.gen {
		b = &block{items: slices.Clone(b.items), gen: *s.gen, sum: b.sum}
		s.blocks[i] = b
	}
	return b
}

// blockFor returns the index of the block where it belongs: the first block
// whose last item is not less than it, or the last block.
func (s *sortedSet) blockFor(it item) int {
	i, _ := slices.BinarySearchFunc(s.blocks, it, func(b *block, t item) int {
		return itemCmp(b.items[len(b.items)-1], t)
	})
	if i == len(s.blocks) {
		i--
	}
	return i
}

func (s *sortedSet) insert(it item) {
	s.n++
	if len(s.blocks) == 0 {
		s.blocks = append(s.blocks, newBlock([]item{it}, *s.gen))
		return
	}
	bi := s.blockFor(it)
	b := s.writable(bi)
	j, _ := slices.BinarySearchFunc(b.items, it, itemCmp)
	b.items = slices.Insert(b.items, j, it)
	b.sum.add(it.mtime)
	if len(b.items) > blockMax {
		half := len(b.items) / 2
		right := newBlock(slices.Clone(b.items[half:]), *s.gen)
		s.blocks[bi] = newBlock(slices.Clip(slices.Clone(b.items[:half])), *s.gen)
		s.blocks = slices.Insert(s.blocks, bi+1, right)
	}
}

// remove deletes it, reporting whether it was there.
func (s *sortedSet) remove(it item) bool {
	if len(s.blocks) == 0 {
		return false
	}
	bi := s.blockFor(it)
	j, found := slices.BinarySearchFunc(s.blocks[bi].items, it, itemCmp)
	if !found {
		return false
	}
	s.n--
	if len(s.blocks[bi].items) == 1 {
		s.blocks = slices.Delete(s.blocks, bi, bi+1)
		return true
	}
	b := s.writable(bi)
	b.items = slices.Delete(b.items, j, j+1)
	b.sum.sub(it.mtime)
	return true
}

// ascend calls f on items in order until f returns false.
func (s *sortedSet) ascend(f func(item) bool) {
	for _, b := range s.blocks {
		for _, it := range b.items {
			if !f(it) {
				return
			}
		}
	}
}

// build replaces the set's contents with items, which it sorts.
func (s *sortedSet) build(items []item) {
	slices.SortFunc(items, itemCmp)
	s.blocks = s.blocks[:0]
	s.n = len(items)
	for len(items) > 0 {
		k := min(len(items), blockMax)
		s.blocks = append(s.blocks, newBlock(slices.Clone(items[:k]), *s.gen))
		items = items[k:]
	}
}

// freeze returns the set's current blocks for a snapshot. The caller must
// advance the generation before the set changes again.
func (s *sortedSet) freeze() Ages {
	return Ages{blocks: slices.Clone(s.blocks), n: s.n}
}

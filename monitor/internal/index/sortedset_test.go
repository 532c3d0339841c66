package index

import (
	"math"
	"math/big"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestSortedSet checks the sorted set against a sorted slice under random
// inserts and removals, and that a frozen view never changes afterwards.
func TestSortedSet(t *testing.T) {
	var gen uint64 = 1
	s := sortedSet{gen: &gen}
	var model []item
	rng := rand.New(rand.NewPCG(1, 2))
	var views []Ages
	var viewModels [][]item
	for step := range 20000 {
		if len(model) > 0 && rng.IntN(3) == 0 {
			k := rng.IntN(len(model))
			if !s.remove(model[k]) {
				t.Fatalf("step %d: remove %v not found", step, model[k])
			}
			model = slices.Delete(model, k, k+1)
		} else {
			it := item{mtime: rng.Int64N(5000), id: uint32(step)}
			s.insert(it)
			k, _ := slices.BinarySearchFunc(model, it, itemCmp)
			model = slices.Insert(model, k, it)
		}
		if s.remove(item{mtime: -1}) {
			t.Fatal("removed an absent item")
		}
		if step%1000 == 0 {
			views = append(views, s.freeze())
			viewModels = append(viewModels, slices.Clone(model))
			gen++
		}
	}
	var got []item
	s.ascend(func(it item) bool { got = append(got, it); return true })
	if !slices.Equal(got, model) || s.n != len(model) {
		t.Fatalf("set has %d items, model %d; equal=%v", s.n, len(model), slices.Equal(got, model))
	}
	if first, ok := s.first(); !ok || first != model[0] {
		t.Errorf("first %v, want %v", first, model[0])
	}
	for i, v := range views {
		var items []item
		for _, b := range v.blocks {
			items = append(items, b.items...)
			if want := newBlock(b.items, 0).sum; b.sum != want {
				t.Errorf("view %d: block sum %+v, want %+v", i, b.sum, want)
			}
		}
		if !slices.Equal(items, viewModels[i]) || v.n != len(items) {
			t.Errorf("view %d changed after it was published", i)
		}
	}
	var b sortedSet
	b.gen = &gen
	b.build(slices.Clone(model))
	var built []item
	b.ascend(func(it item) bool { built = append(built, it); return true })
	if !slices.Equal(built, model) {
		t.Error("build differs")
	}
}

func TestAgeBuckets(t *testing.T) {
	now := time.Unix(10000, 0)
	ages := []time.Duration{0, 500 * time.Millisecond, time.Second, 59 * time.Second, 60 * time.Second, time.Hour, -time.Second}
	var gen uint64 = 1
	s := sortedSet{gen: &gen}
	for i, a := range ages {
		s.insert(item{mtime: now.Add(-a).UnixNano(), id: uint32(i)})
	}
	q := s.freeze()
	bounds := []time.Duration{time.Second, time.Minute, 10 * time.Minute}
	c, sum := q.Buckets(now, bounds)
	// at most 1s: 0, 0.5s, 1s, and the future one (age 0); at most 1m: +59s, 60s; the hour is beyond.
	if want := []uint64{4, 6, 6}; !slices.Equal(c, want) {
		t.Errorf("buckets %v, want %v", c, want)
	}
	if want := 0.5 + 1 + 59 + 60 + 3600.0; sum != want {
		t.Errorf("sum %v, want %v", sum, want)
	}
	if c, sum := (Ages{}).Buckets(now, bounds); !slices.Equal(c, []uint64{0, 0, 0}) || sum != 0 {
		t.Errorf("empty queue: %v %v", c, sum)
	}
}

// TestAgeBucketsRandom checks AgeBuckets against one pass over every item
// on random sets (ties, future and pre-1970 mtimes, sets changed by inserts
// and removals so that blocks split and shrink) and extreme bounds.
func TestAgeBucketsRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	bounds := []time.Duration{time.Duration(math.MinInt64), -time.Second, 0, time.Nanosecond, time.Second, time.Minute, 90 * time.Minute, 400 * 24 * time.Hour, time.Duration(math.MaxInt64)}
	for round := range 200 {
		var gen uint64 = 1
		s := sortedSet{gen: &gen}
		now := time.Unix(1_800_000_000, rng.Int64N(1e9))
		if round%10 == 0 {
			now = time.Unix(-5, 0) // before 1970
		}
		var model []item
		size := rng.IntN(3000)
		for i := range size {
			age := time.Duration(rng.Int64N(int64(3 * time.Hour)))
			if rng.IntN(20) == 0 {
				age = -age // in the future
			}
			if rng.IntN(10) == 0 && len(model) > 0 {
				age = now.Sub(time.Unix(0, model[rng.IntN(len(model))].mtime)) // a tie
			}
			it := item{mtime: now.Add(-age).UnixNano(), id: uint32(i)}
			s.insert(it)
			model = append(model, it)
			if rng.IntN(4) == 0 {
				k := rng.IntN(len(model))
				s.remove(model[k])
				model = slices.Delete(model, k, k+1)
			}
		}
		q := s.freeze()
		gotC, gotSum := q.Buckets(now, bounds)
		wantC := make([]uint64, len(bounds))
		var wantSum big.Rat
		for _, it := range model {
			age := max(now.UnixNano()-it.mtime, 0)
			wantSum.Add(&wantSum, big.NewRat(age, 1e9))
			for i, b := range bounds {
				if age <= int64(b) {
					wantC[i]++
				}
			}
		}
		want, _ := wantSum.Float64()
		if !slices.Equal(gotC, wantC) || math.Abs(gotSum-want) > 1e-6*max(1, want) {
			t.Fatalf("round %d (%d items): got %v sum %v, want %v sum %v", round, len(model), gotC, gotSum, wantC, want)
		}
	}
}

// BenchmarkAgeBuckets measures AgeBuckets on a queue of one million
// waiting entries with the exporter's bounds (minute, hour, day steps).
func BenchmarkAgeBuckets(b *testing.B) {
	var gen uint64 = 1
	s := sortedSet{gen: &gen}
	now := time.Now()
	items := make([]item, 1_000_000)
	for i := range items {
		items[i] = item{mtime: now.Add(-time.Duration(i) * 100 * time.Millisecond).UnixNano(), id: uint32(i)}
	}
	s.build(items)
	q := s.freeze()
	bounds := []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour,
		2 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour, 48 * time.Hour, 7 * 24 * time.Hour}
	b.ReportAllocs()
	for b.Loop() {
		q.Buckets(now, bounds)
	}
}

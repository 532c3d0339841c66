package spool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spool-agent/spool-agent/internal/fsys"
)

// The reference's tests (test/lib/test_multispool.ml and
// test/feature_subtree/feature_test_multispool.ml), in Go. The layout is
// compared after every step as `find spool | sort` prints it.

// part is the reference tests' data: {serial_number; customer}.
type part struct {
	SerialNumber int    `json:"serial_number"`
	Customer     string `json:"customer"`
}

func partBytes(sn int, customer string) []byte {
	b, _ := json.Marshal(part{sn, customer})
	return b
}

// TestReferenceSpoolCreationFails: "mkdir spool; touch spool/some_file; create spool".
func TestReferenceSpoolCreationFails(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	mkdir(t, dir)
	writeFile(t, filepath.Join(dir, "some_file"), "")
	_, err := Create(dir, []string{"queue1", "queue2", "queue3"}, nil)
	if !errors.Is(err, ErrNotSpool) || !strings.Contains(err.Error(), "not empty") || !strings.Contains(err.Error(), dir) {
		t.Fatalf("Create in a non-empty directory = %v", err)
	}
	if got, want := tree(t, dir), layout("some_file"); got != want {
		t.Errorf("layout:\n%s\nwant:\n%s", got, want)
	}
}

// TestReferenceFileBehavior follows "File Behavior" step by step.
func TestReferenceFileBehavior(t *testing.T) {
	queues := []string{"queue1", "queue2", "queue3"}
	s := newTestSpool(t, queues, &Options{Durability: DurabilityNone})
	ts := NewTyped[widget](s, JSONCodec[widget]{})
	bare := bareLayout(queues...)
	check := func(step string, paths ...string) {
		t.Helper()
		if got, want := tree(t, s.Dir()), layout(append(slices.Clone(bare), paths...)...); got != want {
			t.Fatalf("step %s: layout\n%s\nwant:\n%s", step, got, want)
		}
	}
	entry := func(q, name string) []string {
		return []string{".data/" + name, ".registry/" + name, q + "/" + name}
	}

	// a. create gives the bare layout.
	check("a")

	// b. enqueue into Queue1 with the prefix "q1_co_test_".
	name, err := ts.EnqueueBytes(context.Background(), "queue1", widget{Cog: 1}, partBytes(12345, "Acme Incorporated"), EnqueueOptions{Names: PrefixNames("q1_co_test_")})
	if err != nil || name != "q1_co_test_000000" {
		t.Fatalf("b: enqueue = %q, %v", name, err)
	}
	check("b", entry("queue1", name)...)

	// c. checkout moves the queue file into .checkout; data and registry stay.
	c, err := ts.Checkout(context.Background(), "queue1", name)
	if err != nil || c.Meta.Cog != 1 {
		t.Fatalf("c: checkout = %+v, %v", c, err)
	}
	check("c", ".data/"+name, ".registry/"+name, "queue1/.checkout/"+name)

	// d. the checked-out entries of each queue.
	for q, want := range map[string][]string{"queue1": {name}, "queue2": {}, "queue3": {}} {
		if got, err := s.ListCheckedOut(q); err != nil || !slices.Equal(got, want) {
			t.Errorf("d: ListCheckedOut(%s) = %v, %v; want %v", q, got, err, want)
		}
	}

	// e. remove returns the spool to the bare layout.
	if err := c.Remove(); err != nil {
		t.Fatal(err)
	}
	check("e")

	// f. six enqueues; a prefix used again gets the next attempt's name.
	six := []struct {
		queue, prefix, want string
		sn                  int
	}{
		{"queue1", "q1prefix1_", "q1prefix1_000000", 1000000},
		{"queue1", "q1prefix1_", "q1prefix1_000001", 1000001},
		{"queue1", "q1prefix2_", "q1prefix2_000000", 1000002},
		{"queue2", "q2prefix1_", "q2prefix1_000000", 2000001},
		{"queue2", "q2prefix2_", "q2prefix2_000000", 2000002},
		{"queue2", "q2prefix1_", "q2prefix1_000001", 4444444},
	}
	var all []string
	for k, e := range six {
		meta := widget{Sprocket: fmt.Sprintf("Hello, world %d! %s", k+1, e.want)}
		got, err := ts.EnqueueBytes(context.Background(), e.queue, meta, partBytes(e.sn, "Customer"), EnqueueOptions{Names: PrefixNames(e.prefix)})
		if err != nil || got != e.want {
			t.Fatalf("f: enqueue %d = %q, %v; want %q", k+1, got, err, e.want)
		}
		all = append(all, entry(e.queue, got)...)
	}
	check("f", all...)

	// g. lists are sorted bytewise.
	if got := mustList(t, s, "queue1"); !slices.Equal(got, []string{"q1prefix1_000000", "q1prefix1_000001", "q1prefix2_000000"}) {
		t.Errorf("g: queue1 = %v", got)
	}
	if got := mustList(t, s, "queue2"); !slices.Equal(got, []string{"q2prefix1_000000", "q2prefix1_000001", "q2prefix2_000000"}) {
		t.Errorf("g: queue2 = %v", got)
	}

	// h. checkout from Queue1 and save into Queue2.
	c, err = ts.Checkout(context.Background(), "queue1", "q1prefix1_000000")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Checkout.Save("queue2", nil); err != nil {
		t.Fatal(err)
	}
	moved := slices.DeleteFunc(slices.Clone(all), func(p string) bool { return p == "queue1/q1prefix1_000000" })
	moved = append(moved, "queue2/q1prefix1_000000")
	check("h", moved...)

	// i. iterate-available over Queue2: lexicographic order, each entry once
	// although each is saved back into Queue2.
	iterate := func(step string, want []string) {
		t.Helper()
		r, err := ts.NewReader("queue2")
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		var got []string
		err = r.IterAvailable(context.Background(), func(c *TypedCheckout[widget]) (TypedAction[widget], error) {
			d, err := c.ReadData()
			if err != nil {
				return TypedAction[widget]{}, err
			}
			var p part
			json.Unmarshal(d, &p)
			m := c.Meta.Sprocket
			if c.Meta.Cog != 0 {
				m = fmt.Sprintf("Cog %d", c.Meta.Cog)
			}
			got = append(got, fmt.Sprintf("%s | %d", m, p.SerialNumber))
			return TypedSaveTo("queue2", c.Meta), nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("step %s: iterate-available visited\n%s\nwant:\n%s", step, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		check(step, moved...)
	}
	iterate("i", []string{
		"Hello, world 1! q1prefix1_000000 | 1000000",
		"Hello, world 4! q2prefix1_000000 | 2000001",
		"Hello, world 6! q2prefix1_000001 | 4444444",
		"Hello, world 5! q2prefix2_000000 | 2000002",
	})

	// j. with-entry replaces the content; name and position are unchanged.
	err = ts.WithEntry(context.Background(), "queue2", "q2prefix1_000000", func(c *TypedCheckout[widget]) (TypedAction[widget], error) {
		if c.Meta.Sprocket != "Hello, world 4! q2prefix1_000000" {
			t.Errorf("j: with-entry sees %+v", c.Meta)
		}
		return TypedSaveTo("queue2", widget{Cog: 42}), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	iterate("j", []string{
		"Hello, world 1! q1prefix1_000000 | 1000000",
		"Cog 42 | 2000001",
		"Hello, world 6! q2prefix1_000001 | 4444444",
		"Hello, world 5! q2prefix2_000000 | 2000002",
	})
	if tmp, _ := os.ReadDir(filepath.Join(s.Dir(), TmpDir)); len(tmp) != 0 {
		t.Errorf(".tmp is not empty: %v", tmp)
	}
}

// TestIterAvailableSnapshot: iterate-available takes one snapshot; entries
// that arrive during the pass, and entries saved back, wait for the next.
func TestIterAvailableSnapshot(t *testing.T) {
	s := newTestSpool(t, []string{"q"}, &Options{Durability: DurabilityNone})
	for i := 0; i < 5; i++ {
		mustEnqueue(t, s, "q", fmt.Sprint(i), "", EnqueueOptions{Names: PrefixNames("b")})
	}
	r, err := s.NewReader("q")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var seen []string
	err = r.IterAvailable(context.Background(), func(c *Checkout) (Action, error) {
		seen = append(seen, c.Name())
		// An entry that sorts first and one that sorts last arrive.
		mustEnqueue(t, s, "q", "new", "", EnqueueOptions{Names: PrefixNames("a" + c.Name())})
		mustEnqueue(t, s, "q", "new", "", EnqueueOptions{Names: PrefixNames("c" + c.Name())})
		return SaveTo("q", []byte("again")), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"b000000", "b000001", "b000002", "b000003", "b000004"}; !slices.Equal(seen, want) {
		t.Errorf("visited %v, want %v", seen, want)
	}
	if n := len(mustList(t, s, "q")); n != 15 {
		t.Errorf("%d entries in q, want 15", n)
	}
	// A cancelled context stops the pass before the first entry.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.IterAvailable(ctx, func(*Checkout) (Action, error) {
		t.Error("visited an entry after cancel")
		return Action{}, nil
	}); !errors.Is(err, context.Canceled) {
		t.Errorf("IterAvailable with a cancelled context = %v", err)
	}
}

// consumeInOrder is the reference's dequeue_and_move: it dequeues n entries
// from queue1 and saves each into queue2, checking that entry i has metadata
// "Cog i". It reports out-of-order entries and stops early when ctx ends.
func consumeInOrder(ctx context.Context, r *Reader, n int) ([]string, error) {
	var problems []string
	for i := 0; i < n; i++ {
		c, err := r.Dequeue(ctx)
		if err != nil {
			return problems, err
		}
		if got := string(c.Metadata()); got != fmt.Sprint("Cog ", i) {
			problems = append(problems, fmt.Sprintf("OUT-OF-ORDER Widget: expected %d, got %s", i, got))
		}
		if err := c.Save("queue2", nil); err != nil {
			return problems, err
		}
	}
	return problems, nil
}

// TestReferenceDequeueInterrupt: the consumer expects 5 entries, 4 come,
// and cancelling its context stops the blocked Dequeue promptly.
func TestReferenceDequeueInterrupt(t *testing.T) {
	s := newTestSpool(t, []string{"queue1", "queue2"}, &Options{Durability: DurabilityNone})
	r, err := s.NewReader("queue1")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, stop := context.WithCancel(context.Background())
	type result struct {
		problems []string
		err      error
	}
	done := make(chan result, 1)
	go func() {
		p, err := consumeInOrder(ctx, r, 5)
		done <- result{p, err}
	}()
	for i := 0; i < 4; i++ {
		mustEnqueue(t, s, "queue1", fmt.Sprint("Cog ", i), "", EnqueueOptions{})
	}
	// Stop once the four are moved, so that Dequeue is waiting on inotify.
	for deadline := time.Now().Add(10 * time.Second); len(mustList(t, s, "queue2")) < 4; {
		if time.Now().After(deadline) {
			t.Fatal("the consumer did not move 4 entries")
		}
		time.Sleep(time.Millisecond)
	}
	stop()
	select {
	case res := <-done:
		if !errors.Is(res.err, context.Canceled) || len(res.problems) != 0 {
			t.Fatalf("consumer after stop: %v %v", res.problems, res.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Dequeue did not return after its context was cancelled")
	}
}

// TestReferenceQueueIterationAndOrdering: a consumer started before the
// producer dequeues n entries from one producer using the default name
// generator, in exactly the order they were enqueued, and moves them to
// queue2, where they list in order.
func TestReferenceQueueIterationAndOrdering(t *testing.T) {
	for _, n := range []int{10, 1000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			s := newTestSpool(t, []string{"queue1", "queue2"}, &Options{Durability: DurabilityNone})
			r, err := s.NewReader("queue1")
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			type result struct {
				problems []string
				err      error
			}
			done := make(chan result, 1)
			go func() {
				p, err := consumeInOrder(ctx, r, n)
				done <- result{p, err}
			}()
			var names []string
			for i := 0; i < n; i++ {
				names = append(names, mustEnqueue(t, s, "queue1", fmt.Sprint("Cog ", i), "", EnqueueOptions{}))
			}
			res := <-done
			if res.err != nil {
				t.Fatalf("[dequeue] %v", res.err)
			}
			for _, p := range res.problems {
				t.Error(p)
			}
			if !slices.IsSorted(names) {
				t.Error("the default generator's names do not sort in creation order")
			}
			if got := mustList(t, s, "queue2"); !slices.Equal(got, names) {
				t.Errorf("queue2 holds %d entries, not the %d enqueued", len(got), len(names))
			}
			if n == 10 {
				for i, name := range names {
					if m, _ := s.ReadMetadata("queue2", name); string(m) != fmt.Sprint("Cog ", i) {
						t.Errorf("queue2 entry %d is %q", i, m)
					}
				}
			}
		})
	}
}

// TestDequeueOrderAcrossAListing makes readdir miss an entry that arrives
// during a listing while it sees a newer one (which readdir(3) may do): the
// reader still dequeues the older entry first, because it takes from a
// snapshot only names that inotify announced before the listing.
func TestDequeueOrderAcrossAListing(t *testing.T) {
	for _, at := range []int{1, 2} { // the priming listing, the snapshot listing
		t.Run(fmt.Sprint("listing ", at), func(t *testing.T) {
			hfs := &hookFS{}
			s := newTestSpool(t, []string{"q"}, &Options{Durability: DurabilityNone, fs: hfs})
			plain, err := Open(s.Dir(), &Options{Durability: DurabilityNone})
			if err != nil {
				t.Fatal(err)
			}
			r, err := s.NewReader("q")
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			listings := 0
			hfs.hook = func(op, path string) error {
				if op != "readdir" || path != s.queueDir("q") {
					return nil
				}
				listings++
				if listings == at {
					mustEnqueue(t, plain, "q", "older", "", EnqueueOptions{Name: "x1"})
					mustEnqueue(t, plain, "q", "newer", "", EnqueueOptions{Name: "x2"})
					return errOverride
				}
				return nil
			}
			// The overriding ReadDir lists the queue without x1.
			hfs.readDir = func(path string) ([]fsys.DirEntry, error) {
				ents, err := readDirPath(path)
				return slices.DeleteFunc(ents, func(e fsys.DirEntry) bool { return e.Name == "x1" }), err
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for _, want := range []string{"x1", "x2"} {
				c, err := r.Dequeue(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if c.Name() != want {
					t.Errorf("dequeued %s, want %s", c.Name(), want)
				}
				c.Remove()
			}
		})
	}
}

// TestReaderIter: Iter processes entries as they come, saves or removes
// each as the callback says, releases an entry whose callback fails, and
// returns when its context ends.
func TestReaderIter(t *testing.T) {
	s := newTestSpool(t, []string{"q", "done"}, &Options{Durability: DurabilityNone})
	for i := 0; i < 3; i++ {
		mustEnqueue(t, s, "q", fmt.Sprint(i), "", EnqueueOptions{Names: PrefixNames("e")})
	}
	r, err := s.NewReader("q")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var seen []string
	boom := errors.New("boom")
	err = r.Iter(ctx, func(c *Checkout) (Action, error) {
		seen = append(seen, c.Name()+":"+string(c.Metadata()))
		switch len(seen) {
		case 1:
			return Remove(), nil
		case 2:
			return SaveTo("done", []byte("moved")), nil
		case 3:
			return Action{}, boom
		}
		cancel()
		return SaveTo("q", nil), nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Iter = %v, want the callback's error", err)
	}
	if got := mustList(t, s, "q"); !slices.Equal(got, []string{"e000002"}) {
		t.Errorf("q = %v: the failed entry should be back", got)
	}
	if m, _ := s.ReadMetadata("done", "e000001"); string(m) != "moved" {
		t.Errorf("done/e000001 = %q", m)
	}
	err = r.Iter(ctx, func(c *Checkout) (Action, error) {
		seen = append(seen, c.Name())
		cancel()
		return SaveTo("q", nil), nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Iter after cancel = %v", err)
	}
	if want := []string{"e000000:0", "e000001:1", "e000002:2", "e000002"}; !slices.Equal(seen, want) {
		t.Errorf("Iter saw %v, want %v", seen, want)
	}
}

// TestDequeueAvailable: it returns what is there, in order, one listing per
// snapshot, and nil when the queue is empty.
func TestDequeueAvailable(t *testing.T) {
	hfs := &hookFS{}
	s := newTestSpool(t, []string{"q"}, &Options{Durability: DurabilityNone, fs: hfs})
	r, err := s.NewReader("q")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if c, err := r.DequeueAvailable(); c != nil || err != nil {
		t.Fatalf("empty queue: %v, %v", c, err)
	}
	for i := 0; i < 50; i++ {
		mustEnqueue(t, s, "q", "", "", EnqueueOptions{Names: PrefixNames("e")})
	}
	listings := 0
	hfs.hook = func(op, path string) error {
		if op == "readdir" {
			listings++
		}
		return nil
	}
	var got []string
	for {
		c, err := r.DequeueAvailable()
		if err != nil {
			t.Fatal(err)
		}
		if c == nil {
			break
		}
		got = append(got, c.Name())
		c.Remove()
	}
	if len(got) != 50 || !slices.IsSorted(got) {
		t.Errorf("drained %d entries, sorted %v", len(got), slices.IsSorted(got))
	}
	if listings > 3 {
		t.Errorf("draining 50 entries listed the queue %d times", listings)
	}
}

// TestRecover: Recover returns exactly the checkouts older than the age
// (strictly) that no live holder locks, leaves a checkout whose name is also
// in the queue alone (reporting it), and touches what it returns.
func TestRecover(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s := newTestSpool(t, []string{"q", "r"}, &Options{Durability: DurabilityNone, Now: func() time.Time { return now }})
	crashed := func(q, name string, age time.Duration) {
		mustEnqueue(t, s, q, "m", "d", EnqueueOptions{Name: name})
		if err := os.Rename(s.queuePath(q, name), s.checkoutPath(q, name)); err != nil {
			t.Fatal(err)
		}
		mt := now.Add(-age)
		if err := os.Chtimes(s.checkoutPath(q, name), mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	crashed("q", "stale", 11*time.Minute)
	crashed("r", "stale-r", time.Hour)
	crashed("q", "fresh", 9*time.Minute)
	crashed("q", "exactly", 10*time.Minute)
	// A live holder whose checkout is old: its flock protects it.
	mustEnqueue(t, s, "q", "m", "d", EnqueueOptions{Name: "held"})
	held := mustCheckout(t, s, "q", "held")
	old := now.Add(-time.Hour)
	os.Chtimes(s.checkoutPath("q", "held"), old, old)
	// A duplicate: the name is in the queue and in its .checkout.
	crashed("q", "dup", time.Hour)
	writeFile(t, s.queuePath("q", "dup"), "copy")
	// Not an entry.
	mkdir(t, s.checkoutPath("q", "adir"))

	rs, err := s.Recover(context.Background(), 10*time.Minute, RecoverOptions{})
	if err == nil || !strings.Contains(err.Error(), "dup") {
		t.Errorf("Recover did not report the duplicate: %v", err)
	}
	var got []string
	for _, r := range rs {
		got = append(got, r.Queue+"/"+r.Name)
		if !r.ModTime.Before(now.Add(-10 * time.Minute)) {
			t.Errorf("%s recovered with mtime %v", r.Name, r.ModTime)
		}
	}
	slices.Sort(got)
	if want := []string{"q/stale", "r/stale-r"}; !slices.Equal(got, want) {
		t.Errorf("recovered %v, want %v", got, want)
	}
	if co, _ := s.ListCheckedOut("q"); !slices.Equal(co, []string{"dup", "exactly", "fresh", "held"}) {
		t.Errorf("q/.checkout = %v", co)
	}
	if st, err := os.Stat(s.queuePath("q", "stale")); err != nil || !st.ModTime().Equal(now) {
		t.Errorf("recovered entry not touched: %v %v", st, err)
	}
	if err := held.Remove(); err != nil {
		t.Errorf("the live holder lost its entry: %v", err)
	}
}

// TestThrottle: however many goroutines work on a spool, at most
// MaxConcurrentOps file-system calls run at once.
func TestThrottle(t *testing.T) {
	const limit = 3
	hfs := &hookFS{hook: func(op, path string) error {
		// Stay in the call a little, so that calls overlap.
		for start := time.Now(); time.Since(start) < 20*time.Microsecond; {
			runtime.Gosched()
		}
		return nil
	}}
	s := newTestSpool(t, []string{"q", "r"}, &Options{Durability: DurabilityNone, fs: hfs, MaxConcurrentOps: limit})
	hfs.maxInflight.Store(0)
	errc := make(chan error, 16)
	for g := 0; g < 16; g++ {
		go func() {
			r, err := s.NewReader("q")
			if err != nil {
				errc <- err
				return
			}
			defer r.Close()
			for i := 0; i < 4; i++ {
				name, err := s.EnqueueBytes(context.Background(), "q", []byte("m"), []byte("d"), EnqueueOptions{})
				if err != nil {
					errc <- err
					return
				}
				s.Stat("q", name)
				s.List("q")
				c, err := r.DequeueAvailable()
				if err != nil {
					errc <- err
					return
				}
				if c != nil {
					c.ReadData()
					c.Touch()
					if i%2 == 0 {
						err = c.Save("r", []byte("n"))
					} else {
						err = c.Remove()
					}
					if err != nil {
						errc <- err
						return
					}
				}
				s.Recover(context.Background(), time.Hour, RecoverOptions{})
			}
			errc <- nil
		}()
	}
	for g := 0; g < 16; g++ {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	if m := hfs.maxInflight.Load(); m > limit {
		t.Errorf("%d file-system calls ran at once, limit %d", m, limit)
	} else if m < limit {
		t.Errorf("at most %d calls ran at once: the test did not exercise the limit %d", m, limit)
	}
}

// TestCreateOpen: Create adds queues to an existing spool; Open discovers
// the queues (directories with a .checkout/, not hidden, not symlinks)
// and changes nothing.
func TestCreateOpen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	if _, err := Create(dir, []string{"q1"}, nil); err != nil {
		t.Fatal(err)
	}
	if got, want := tree(t, dir), layout(bareLayout("q1")...); got != want {
		t.Errorf("created:\n%s\nwant:\n%s", got, want)
	}
	s, err := Create(dir, []string{"q2", "q1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Queues(); !slices.Equal(got, []string{"q1", "q2"}) {
		t.Errorf("Queues = %v", got)
	}
	if got, want := tree(t, dir), layout(bareLayout("q1", "q2")...); got != want {
		t.Errorf("with a queue added:\n%s\nwant:\n%s", got, want)
	}
	mkdir(t, dir+"/notaqueue")
	mkdir(t, dir+"/.hidden")
	mkdir(t, dir+"/.hidden/.checkout")
	os.Symlink(dir+"/q1", dir+"/link")
	writeFile(t, dir+"/file", "")
	before := treeState(t, dir)
	o, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := o.Queues(); !slices.Equal(got, []string{"q1", "q2"}) {
		t.Errorf("Open discovered %v", got)
	}
	if after := treeState(t, dir); after != before {
		t.Error("Open changed the disk")
	}
	// A queue added by another process is found when used.
	if err := s.AddQueue("q3"); err != nil {
		t.Fatal(err)
	}
	if _, err := o.EnqueueBytes(context.Background(), "q3", nil, nil, EnqueueOptions{}); err != nil {
		t.Errorf("enqueue into a queue added elsewhere: %v", err)
	}
	if !o.HasQueue("q3") {
		t.Error("HasQueue(q3) after use")
	}
}

// TestTimeNames: the default generator's names are valid, unique, and sort
// in creation order even when the clock stands still or goes back.
func TestTimeNames(t *testing.T) {
	clocks := map[string]func() time.Time{
		"real":    nil,
		"stopped": func() time.Time { return time.Unix(1e9, 0) },
		"backwards": func() func() time.Time {
			n := int64(2e9)
			return func() time.Time { n -= 1e6; return time.Unix(0, n*1e3) }
		}(),
	}
	for name, now := range clocks {
		g := TimeNames{Now: now}
		prev := ""
		for i := 0; i < 10000; i++ {
			n, err := g.Next(i % 3)
			if err != nil || ValidateName(n) != nil {
				t.Fatalf("%s: %q %v", name, n, err)
			}
			if n <= prev {
				t.Fatalf("%s: %q after %q", name, n, prev)
			}
			prev = n
		}
	}
	if n, _ := (TimeNames{}).Next(0); !strings.Contains(n, fmt.Sprintf("-%08x-", os.Getpid())) {
		t.Errorf("%q does not carry the process id", n)
	}
}

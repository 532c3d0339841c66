package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// lockFile opens path and takes an exclusive flock on it, as another
// worker's checkout would; the returned func unlocks it.
func lockFile(t *testing.T, path string) func() {
	t.Helper()
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	return func() { once.Do(func() { unix.Close(fd) }) }
}

// TestCheckoutLockHandoff: a claim that finds the queue file locked by
// another worker waits while the file stays in the queue (the other worker
// is handing it back), gives up with ErrBusy after claimWait, and returns
// ErrNotFound as soon as the file leaves the queue (the other worker won).
func TestCheckoutLockHandoff(t *testing.T) {
	cases := []struct {
		name string
		// act runs once the claim is waiting for the lock.
		act  func(t *testing.T, s *Spool, name string, unlock func())
		want error
	}{
		{"handed back", func(t *testing.T, s *Spool, name string, unlock func()) {
			unlock()
		}, nil},
		{"held too long", func(t *testing.T, s *Spool, name string, unlock func()) {
			// Keep the lock until the claim gives up.
		}, ErrBusy},
		{"taken by the holder", func(t *testing.T, s *Spool, name string, unlock func()) {
			if err := os.Rename(s.queuePath("q", name), s.checkoutPath("q", name)); err != nil {
				t.Error(err)
			}
			unlock()
		}, ErrNotFound},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hfs := &hookFS{}
			s := newTestSpool(t, []string{"q"}, &Options{Durability: DurabilityNone, fs: hfs})
			name := mustEnqueue(t, s, "q", "meta", "data", EnqueueOptions{})
			unlock := lockFile(t, s.queuePath("q", name))
			defer unlock()
			// The claim is waiting once it stats the file after a flock.
			waiting := make(chan struct{})
			var once sync.Once
			flocked := false
			hfs.hook = func(op, path string) error {
				switch {
				case op == "flock":
					flocked = true
				case op == "lstat" && flocked && path == s.queuePath("q", name):
					once.Do(func() { close(waiting) })
				}
				return nil
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				<-waiting
				c.act(t, s, name, unlock)
			}()
			co, err := s.Checkout(context.Background(), "q", name)
			once.Do(func() { close(waiting) })
			<-done
			if c.want == nil {
				if err != nil {
					t.Fatalf("Checkout = %v, want success", err)
				}
				if string(co.Metadata()) != "meta" {
					t.Errorf("metadata %q", co.Metadata())
				}
				co.Release()
				return
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("Checkout = %v, want %v", err, c.want)
			}
		})
	}
}

// TestSaveKeepsLock: a Save that rewrote the metadata but could not move
// the entry leaves it checked out and still locked (Recover of any age
// leaves it alone), and Release then puts it back with the metadata read at
// checkout.
func TestSaveKeepsLock(t *testing.T) {
	s := newTestSpool(t, []string{"q1", "q2"}, &Options{Durability: DurabilityNone})
	name := mustEnqueue(t, s, "q1", "original", "data", EnqueueOptions{})
	c, err := s.Checkout(context.Background(), "q1", name)
	if err != nil {
		t.Fatal(err)
	}
	// A stray file of the same name in q2 makes the move fail.
	writeFile(t, s.queuePath("q2", name), "stray")
	if err := c.Save("q2", []byte("rewritten")); !errors.Is(err, ErrExists) {
		t.Fatalf("Save into an occupied name = %v, want ErrExists", err)
	}
	if b, _ := os.ReadFile(s.checkoutPath("q1", name)); string(b) != "rewritten" {
		t.Fatalf("checkout file holds %q after the failed save", b)
	}
	other, err := Open(s.Dir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if rs, err := other.Recover(context.Background(), -time.Hour, RecoverOptions{WorkersStopped: true}); err != nil || len(rs) != 0 {
		t.Fatalf("Recover took a held checkout: %v %v", rs, err)
	}
	os.Remove(s.queuePath("q2", name))
	if err := c.Release(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(s.queuePath("q1", name)); string(b) != "original" {
		t.Errorf("released entry holds %q, want the original metadata", b)
	}
	if got := mustList(t, s, "q1"); len(got) != 1 {
		t.Errorf("q1 = %v", got)
	}
}

// TestRecoverUnlocksBeforeFsync: a recovered entry can be checked out at
// once, while Recover is still fsyncing the directories.
func TestRecoverUnlocksBeforeFsync(t *testing.T) {
	reached, resume := make(chan struct{}), make(chan struct{})
	var once sync.Once
	hfs := &hookFS{}
	dir := filepath.Join(t.TempDir(), "spool")
	hfs.hook = func(op, path string) error {
		if op == "fsync" && path == dir+"/q" {
			once.Do(func() {
				close(reached)
				<-resume
			})
		}
		return nil
	}
	if _, err := Create(dir, []string{"q"}, &Options{Durability: DurabilityNone}); err != nil {
		t.Fatal(err)
	}
	plain, err := Open(dir, &Options{Durability: DurabilityNone})
	if err != nil {
		t.Fatal(err)
	}
	name := mustEnqueue(t, plain, "q", "meta", "", EnqueueOptions{})
	// A crashed worker's checkout: in .checkout, unlocked.
	if err := os.Rename(plain.queuePath("q", name), plain.checkoutPath("q", name)); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir, &Options{fs: hfs, Durability: DurabilityFull})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		rs, err := s.Recover(context.Background(), -time.Hour, RecoverOptions{WorkersStopped: true})
		if err == nil && len(rs) != 1 {
			err = fmt.Errorf("recovered %v", rs)
		}
		errc <- err
	}()
	<-reached
	c, err := plain.Checkout(context.Background(), "q", name)
	close(resume)
	if err != nil {
		t.Fatalf("Checkout during Recover's fsync = %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(); err != nil {
		t.Fatal(err)
	}
}

// TestRecoverReportsEntryOnSyncError: an entry moved back to its queue
// whose directories then fail to sync is returned beside the error, so the
// caller learns which entry it is about.
func TestRecoverReportsEntryOnSyncError(t *testing.T) {
	var armed atomic.Bool
	dir := filepath.Join(t.TempDir(), "spool")
	hfs := &hookFS{hook: func(op, path string) error {
		if armed.Load() && op == "fsync" && path == dir+"/q" {
			return unix.EIO
		}
		return nil
	}}
	s, err := Create(dir, []string{"q"}, &Options{Durability: DurabilityFull, fs: hfs})
	if err != nil {
		t.Fatal(err)
	}
	name := mustEnqueue(t, s, "q", "meta", "data", EnqueueOptions{})
	if err := os.Rename(s.queuePath("q", name), s.checkoutPath("q", name)); err != nil { // a crashed worker's checkout
		t.Fatal(err)
	}
	armed.Store(true)
	rs, err := s.Recover(context.Background(), -time.Hour, RecoverOptions{WorkersStopped: true})
	armed.Store(false)
	if !errors.Is(err, unix.EIO) {
		t.Fatalf("Recover = %v, want EIO", err)
	}
	if len(rs) != 1 || rs[0].Queue != "q" || rs[0].Name != name || rs[0].ModTime.IsZero() {
		t.Errorf("Recover returned %+v, want the entry %s of q", rs, name)
	}
	if _, err := os.Lstat(s.queuePath("q", name)); err != nil {
		t.Errorf("the entry is not in its queue: %v", err)
	}
}

// TestRemove: Remove is idempotent, removes an entry whose payload is
// missing, finishes a remove that failed half way when called again, and
// never destroys an entry that a worker holds.
func TestRemove(t *testing.T) {
	t.Run("twice", func(t *testing.T) {
		s := newTestSpool(t, []string{"q"}, &Options{Durability: DurabilityNone})
		name := mustEnqueue(t, s, "q", "m", "d", EnqueueOptions{})
		for i := 0; i < 2; i++ {
			if err := s.Remove("q", name); err != nil {
				t.Fatalf("Remove #%d = %v", i+1, err)
			}
		}
		if got, want := tree(t, s.Dir()), layout(bareLayout("q")...); got != want {
			t.Errorf("after Remove:\n%s\nwant:\n%s", got, want)
		}
		c := mustCheckout(t, s, "q", mustEnqueue(t, s, "q", "m", "d", EnqueueOptions{}))
		for i := 0; i < 2; i++ {
			if err := c.Remove(); err != nil {
				t.Fatalf("Checkout.Remove #%d = %v", i+1, err)
			}
		}
		if err := c.Save("q", nil); err == nil {
			t.Error("Save after Remove succeeded")
		}
		if got, want := tree(t, s.Dir()), layout(bareLayout("q")...); got != want {
			t.Errorf("after Checkout.Remove:\n%s\nwant:\n%s", got, want)
		}
	})
	t.Run("payload missing", func(t *testing.T) {
		s := newTestSpool(t, []string{"q"}, &Options{Durability: DurabilityNone})
		name := mustEnqueue(t, s, "q", "m", "d", EnqueueOptions{})
		os.Remove(s.dataPath(name))
		if err := s.Remove("q", name); err != nil {
			t.Fatal(err)
		}
		if got, want := tree(t, s.Dir()), layout(bareLayout("q")...); got != want {
			t.Errorf("after Remove:\n%s\nwant:\n%s", got, want)
		}
	})
	t.Run("half way", func(t *testing.T) {
		fail := true
		hfs := &hookFS{}
		s := newTestSpool(t, []string{"q"}, &Options{Durability: DurabilityNone, fs: hfs})
		name := mustEnqueue(t, s, "q", "m", "d", EnqueueOptions{})
		hfs.hook = func(op, path string) error {
			if op == "unlink" && path == s.dataPath(name) && fail {
				fail = false
				return unix.EIO
			}
			return nil
		}
		c := mustCheckout(t, s, "q", name)
		if err := c.Remove(); !errors.Is(err, unix.EIO) {
			t.Fatalf("Remove with a failing unlink = %v", err)
		}
		if err := c.Remove(); err != nil {
			t.Fatalf("Remove again = %v", err)
		}
		if got, want := tree(t, s.Dir()), layout(bareLayout("q")...); got != want {
			t.Errorf("after Remove:\n%s\nwant:\n%s", got, want)
		}
	})
	t.Run("checked out", func(t *testing.T) {
		s := newTestSpool(t, []string{"q"}, &Options{Durability: DurabilityNone})
		name := mustEnqueue(t, s, "q", "m", "d", EnqueueOptions{})
		c := mustCheckout(t, s, "q", name)
		before := treeState(t, s.Dir())
		if err := s.Remove("q", name); !errors.Is(err, ErrCheckedOut) {
			t.Fatalf("Remove of a checked-out entry = %v, want ErrCheckedOut", err)
		}
		if after := treeState(t, s.Dir()); after != before {
			t.Errorf("Remove of a checked-out entry changed the disk:\n%s\n%s", before, after)
		}
		if err := c.Remove(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("stat error is not absence", func(t *testing.T) {
		hfs := &hookFS{}
		s := newTestSpool(t, []string{"q"}, &Options{Durability: DurabilityNone, fs: hfs})
		name := mustEnqueue(t, s, "q", "m", "d", EnqueueOptions{})
		hfs.hook = func(op, path string) error {
			if op == "lstat" && path == s.queuePath("q", name) {
				return unix.EIO
			}
			return nil
		}
		if err := s.Remove("q", name); !errors.Is(err, unix.EIO) {
			t.Fatalf("Remove with a failing stat = %v, want EIO", err)
		}
		hfs.hook = nil
		if got := mustList(t, s, "q"); len(got) != 1 {
			t.Fatalf("entry gone after a failed Remove: %v", got)
		}
	})
	t.Run("a worker saves it back between the claim's looks", func(t *testing.T) {
		// A worker holds the entry when Remove's checkout opens it, and
		// saves it back after the claim found it in neither the queue nor
		// .checkout: the claim must look again and retry, not fail.
		hfs := &hookFS{}
		s := newTestSpool(t, []string{"q"}, &Options{Durability: DurabilityNone, fs: hfs})
		name := mustEnqueue(t, s, "q", "m", "d", EnqueueOptions{})
		q, co := s.queuePath("q", name), s.checkoutPath("q", name)
		var took, savedBack bool
		var lstats int
		hfs.hook = func(op, path string) error {
			switch {
			case op == "open" && path == q && !took:
				took = true
				return os.Rename(q, co) // the worker's checkout, just before ours
			case op == "lstat" && (path == q || path == co) && took && !savedBack:
				if lstats++; path == co {
					savedBack = true
					return os.Rename(co, q) // saved back, after the claim looked in the queue
				}
			}
			return nil
		}
		if err := s.Remove("q", name); err != nil {
			t.Fatalf("Remove = %v, want nil after the worker saved the entry back", err)
		}
		if !took || !savedBack || lstats != 2 {
			t.Fatalf("the race did not happen as staged: took %v, saved back %v, %d looks", took, savedBack, lstats)
		}
		if got, want := tree(t, s.Dir()), layout(bareLayout("q")...); got != want {
			t.Errorf("after Remove:\n%s\nwant:\n%s", got, want)
		}
	})
	t.Run("two workers move it between the claim's looks", func(t *testing.T) {
		// One worker holds the entry when Remove's checkout opens it and
		// saves it back once the claim has looked in the queue; another
		// takes it again before the claim looks in the queue once more.
		// The entry never stops existing: Remove must not call it gone.
		hfs := &hookFS{}
		s := newTestSpool(t, []string{"q"}, &Options{Durability: DurabilityNone, fs: hfs})
		name := mustEnqueue(t, s, "q", "m", "d", EnqueueOptions{})
		q, co := s.queuePath("q", name), s.checkoutPath("q", name)
		step := 0
		hfs.hook = func(op, path string) error {
			switch {
			case step == 0 && op == "open" && path == q:
				step++
				return os.Rename(q, co) // held by the first worker
			case step == 1 && op == "lstat" && path == co:
				step++
				return os.Rename(co, q) // saved back after the claim looked in the queue
			case step == 2 && op == "lstat" && path == q:
				step++
				return os.Rename(q, co) // taken by the second worker before the next look
			}
			return nil
		}
		if err := s.Remove("q", name); !errors.Is(err, ErrCheckedOut) {
			t.Fatalf("Remove = %v, want ErrCheckedOut (the second worker holds it)", err)
		}
		if step != 3 {
			t.Fatalf("the race did not happen as staged: step %d", step)
		}
		if _, err := os.Lstat(co); err != nil {
			t.Errorf("the held entry is gone: %v", err)
		}
	})
	t.Run("racing a worker that saves it back", func(t *testing.T) {
		s := newTestSpool(t, []string{"q"}, &Options{Durability: DurabilityNone})
		name := mustEnqueue(t, s, "q", "m", "d", EnqueueOptions{})
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				c, err := s.Checkout(context.Background(), "q", name)
				if errors.Is(err, ErrNotFound) {
					return // removed
				}
				if err != nil {
					continue
				}
				c.Save("q", []byte(fmt.Sprint("m", i)))
				time.Sleep(time.Duration(i%3) * 50 * time.Microsecond)
			}
		}()
		var err error
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
			if err = s.Remove("q", name); err == nil {
				break
			}
			if !errors.Is(err, ErrCheckedOut) && !errors.Is(err, ErrBusy) {
				t.Fatalf("Remove = %v", err)
			}
		}
		close(stop)
		wg.Wait()
		if err != nil {
			t.Fatalf("Remove never won against the worker: %v", err)
		}
		if got, want := tree(t, s.Dir()), layout(bareLayout("q")...); got != want {
			t.Errorf("Remove returned nil but:\n%s\nwant:\n%s", got, want)
		}
	})
}

func mustCheckout(t *testing.T, s *Spool, queue, name string) *Checkout {
	t.Helper()
	c, err := s.Checkout(context.Background(), queue, name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestFailedInternalCheckoutsAreReleased: Move, WriteMetadata, Remove and
// WithEntry check the entry out themselves; when they fail to finish, the
// entry is back in its queue with its original metadata, unlocked.
func TestFailedInternalCheckoutsAreReleased(t *testing.T) {
	cases := []struct {
		name string
		fail func(s *Spool, op, path string) bool
		run  func(s *Spool, name string) error
	}{
		{"Move", func(s *Spool, op, path string) bool {
			return op == "rename" && bytes.Contains([]byte(path), []byte("-> "+s.dir+"/q2/"))
		},
			func(s *Spool, name string) error { return s.Move("q1", name, "q2") }},
		{"WriteMetadata", func(s *Spool, op, path string) bool {
			return op == "write" && bytes.Contains([]byte(path), []byte("/.tmp/"))
		},
			func(s *Spool, name string) error { return s.WriteMetadata("q1", name, []byte("new")) }},
		{"Remove", func(s *Spool, op, path string) bool {
			return op == "unlink" && bytes.Contains([]byte(path), []byte("/.checkout/"))
		},
			func(s *Spool, name string) error { return s.Remove("q1", name) }},
		{"WithEntry save", func(s *Spool, op, path string) bool {
			return op == "rename" && bytes.Contains([]byte(path), []byte("-> "+s.dir+"/q2/"))
		},
			func(s *Spool, name string) error {
				return s.WithEntry(context.Background(), "q1", name, func(*Checkout) (Action, error) { return SaveTo("q2", []byte("new")), nil })
			}},
		{"WithEntry panic", func(s *Spool, op, path string) bool { return false },
			func(s *Spool, name string) (err error) {
				defer func() {
					if recover() != nil {
						err = errors.New("panicked")
					}
				}()
				return s.WithEntry(context.Background(), "q1", name, func(*Checkout) (Action, error) { panic("boom") })
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hfs := &hookFS{}
			s := newTestSpool(t, []string{"q1", "q2"}, &Options{Durability: DurabilityNone, fs: hfs})
			name := mustEnqueue(t, s, "q1", "original", "data", EnqueueOptions{})
			var failing sync.Mutex
			armed := true
			hfs.hook = func(op, path string) error {
				failing.Lock()
				defer failing.Unlock()
				if armed && c.fail(s, op, path) {
					armed = false
					return unix.EIO
				}
				return nil
			}
			if err := c.run(s, name); err == nil {
				t.Fatal("no error")
			}
			if b, err := os.ReadFile(s.queuePath("q1", name)); err != nil || string(b) != "original" {
				t.Fatalf("entry not back in q1 with its metadata: %q %v", b, err)
			}
			if co, _ := s.ListCheckedOut("q1"); len(co) != 0 {
				t.Fatalf("still checked out: %v", co)
			}
			co, err := s.Checkout(context.Background(), "q1", name)
			if err != nil {
				t.Fatalf("Checkout after the failure = %v", err)
			}
			co.Release()
		})
	}
}

// TestEnqueueCallerNames: a caller-supplied name that a live entry holds
// (waiting, checked out, or with a stray payload) is refused with ErrExists
// and nothing of what is there is touched; a name from Reserve is used.
func TestEnqueueCallerNames(t *testing.T) {
	s := newTestSpool(t, []string{"q", "r"}, &Options{Durability: DurabilityNone})
	waiting := mustEnqueue(t, s, "q", "w", "wd", EnqueueOptions{Name: "waiting"})
	held := mustEnqueue(t, s, "q", "h", "hd", EnqueueOptions{Name: "held"})
	c := mustCheckout(t, s, "q", held)
	defer c.Release()
	writeFile(t, s.dataPath("stray"), "stray payload")
	for _, name := range []string{waiting, held, "stray"} {
		for _, q := range []string{"q", "r"} {
			before := treeState(t, s.Dir())
			_, err := s.EnqueueBytes(context.Background(), q, []byte("intruder"), []byte("intruder"), EnqueueOptions{Name: name})
			if !errors.Is(err, ErrExists) {
				t.Errorf("Enqueue %s into %s = %v, want ErrExists", name, q, err)
			}
			if after := treeState(t, s.Dir()); after != before {
				t.Errorf("Enqueue %s into %s changed the disk:\n%s\n%s", name, q, before, after)
			}
			if b, _ := os.ReadFile(s.dataPath(name)); bytes.Contains(b, []byte("intruder")) {
				t.Errorf("Enqueue %s overwrote the payload", name)
			}
		}
	}
	reserved, err := s.Reserve(PrefixNames("res"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.EnqueueBytes(context.Background(), "r", []byte("m"), nil, EnqueueOptions{Name: reserved}); err != nil || got != reserved {
		t.Fatalf("Enqueue under a reserved name = %q, %v", got, err)
	}
}

// TestEnqueueCallerNameRace: goroutines enqueue under the same
// caller-supplied name at once; exactly one wins, and its entry is whole.
func TestEnqueueCallerNameRace(t *testing.T) {
	s := newTestSpool(t, []string{"q"}, &Options{Durability: DurabilityNone})
	for round := 0; round < 50; round++ {
		name := fmt.Sprint("same", round)
		var wg sync.WaitGroup
		wins := make(chan int, 8)
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := s.EnqueueBytes(context.Background(), "q", []byte(fmt.Sprint(g)), []byte(fmt.Sprint(g)), EnqueueOptions{Name: name})
				if err == nil {
					wins <- g
				} else if !errors.Is(err, ErrExists) {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		close(wins)
		var winners []int
		for g := range wins {
			winners = append(winners, g)
		}
		if len(winners) != 1 {
			t.Fatalf("round %d: %d winners", round, len(winners))
		}
		meta, err := os.ReadFile(s.queuePath("q", name))
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(s.dataPath(name))
		if err != nil || string(data) != string(meta) || string(meta) != fmt.Sprint(winners[0]) {
			t.Fatalf("round %d: winner %d left metadata %q and payload %q (%v)", round, winners[0], meta, data, err)
		}
		if _, err := os.Lstat(s.registryPath(name)); err != nil {
			t.Fatalf("round %d: the winner's registry file is gone: %v", round, err)
		}
	}
	if tmp, _ := os.ReadDir(filepath.Join(s.Dir(), TmpDir)); len(tmp) != 0 {
		t.Errorf(".tmp holds %d files", len(tmp))
	}
}

// TestNonRegularNamesInQueue: directories, symbolic links and FIFOs in a
// queue directory are not entries: List skips them, Checkout refuses them
// without blocking, and readers pass over them.
func TestNonRegularNamesInQueue(t *testing.T) {
	s := newTestSpool(t, []string{"q"}, &Options{Durability: DurabilityNone})
	mkdir(t, s.queuePath("q", "adir"))
	if err := os.Symlink("/etc/passwd", s.queuePath("q", "alink")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(s.queuePath("q", "afifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	name := mustEnqueue(t, s, "q", "m", "d", EnqueueOptions{Name: "real"})
	if got := mustList(t, s, "q"); len(got) != 1 || got[0] != name {
		t.Errorf("List = %v, want just %s", got, name)
	}
	for _, bad := range []string{"adir", "alink", "afifo"} {
		if _, err := s.Checkout(context.Background(), "q", bad); !errors.Is(err, errNotRegular) {
			t.Errorf("Checkout(%s) = %v, want not a regular file", bad, err)
		}
	}
	r, err := s.NewReader("q")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	r.cache = []string{"adir", "afifo", "alink", name}
	c, err := r.next()
	if err != nil || c == nil || c.Name() != name {
		t.Fatalf("reader over non-entries = %v, %v", c, err)
	}
	c.Remove()
}

// TestEnqueueFailureRemovesOnlyItsOwn: a failed enqueue removes the files
// it created and nothing else, whichever step failed. A create that fails
// with anything but EEXIST (EMFILE here) has created nothing, and the name
// may be another writer's whose enqueue is in flight (registry and payload
// written, not yet in a queue); a generated name's registry file is the
// call's own even when an orphan payload holds the name.
func TestEnqueueFailureRemovesOnlyItsOwn(t *testing.T) {
	// fail makes the call's op on the path ending in suffix fail with err,
	// after the other writer (if any) wrote its file at that path.
	fail := func(op, suffix string, theirs bool, err error) func(op, path string) error {
		return func(o, path string) error {
			if o == op && strings.HasSuffix(path, "/"+suffix) {
				if theirs {
					if werr := os.WriteFile(path, []byte("theirs"), 0o644); werr != nil {
						return werr
					}
				}
				return err
			}
			return nil
		}
	}
	tests := []struct {
		name    string
		foreign []string // files of another writer: there before the call, or written during it (hook)
		opts    EnqueueOptions
		hook    func(op, path string) error
		want    error
	}{
		{"payload create fails, the name in flight elsewhere", []string{RegistryDir + "/x", DataDir + "/x"},
			EnqueueOptions{Name: "x"}, fail("open", DataDir+"/x", true, unix.EMFILE), unix.EMFILE},
		{"metadata create fails, the name in flight elsewhere", []string{TmpDir + "/x"},
			EnqueueOptions{Name: "x"}, fail("open", TmpDir+"/x", true, unix.EMFILE), unix.EMFILE},
		{"payload write fails", nil,
			EnqueueOptions{Name: "x"}, fail("write", DataDir+"/x", false, unix.EIO), unix.EIO},
		{"metadata write fails", nil,
			EnqueueOptions{Name: "x"}, fail("write", TmpDir+"/x", false, unix.ENOSPC), unix.ENOSPC},
		{"caller's name, orphan payload", []string{DataDir + "/y"},
			EnqueueOptions{Name: "y"}, nil, ErrExists},
		{"generated name, orphan payload", []string{DataDir + "/y"},
			EnqueueOptions{Names: NameGeneratorFunc(func(int) (string, error) { return "y", nil })}, nil, ErrExists},
	}
	for _, durability := range []Durability{DurabilityNone, DurabilityFull} {
		for _, tt := range tests {
			t.Run(fmt.Sprint(durability, "/", tt.name), func(t *testing.T) {
				var armed atomic.Bool
				hfs := &hookFS{hook: func(op, path string) error {
					if tt.hook == nil || !armed.Load() {
						return nil
					}
					return tt.hook(op, path)
				}}
				s := newTestSpool(t, []string{"q"}, &Options{Durability: durability, fs: hfs})
				// The other writer's registry file is there before the
				// call; the rest of its files are written during the call
				// when the hook writes them.
				for _, f := range tt.foreign {
					if tt.hook == nil || strings.HasPrefix(f, RegistryDir+"/") {
						writeFile(t, filepath.Join(s.Dir(), f), "theirs")
					}
				}
				armed.Store(true)
				_, err := s.EnqueueBytes(context.Background(), "q", []byte("mine"), []byte("mine"), tt.opts)
				armed.Store(false)
				if !errors.Is(err, tt.want) {
					t.Fatalf("Enqueue = %v, want %v", err, tt.want)
				}
				want := layout(append(bareLayout("q"), tt.foreign...)...)
				for _, f := range tt.foreign {
					if b, err := os.ReadFile(filepath.Join(s.Dir(), f)); err != nil || string(b) != "theirs" {
						t.Errorf("%s of the other writer: %q, %v", f, b, err)
					}
				}
				if got := tree(t, s.Dir()); got != want {
					t.Errorf("after the failed enqueue:\n%s\nwant only the other writer's files:\n%s", got, want)
				}
			})
		}
	}
}

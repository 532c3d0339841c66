package spool

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSwappedDirectoriesStayInside: an attacker who can write inside the
// spool swaps one of its directories (a queue, a queue's .checkout, .data,
// .registry, .tmp) with a symbolic link to a victim directory outside the
// spool (or the spool root itself), in a tight renameat2(RENAME_EXCHANGE) loop, while Enqueue, Remove,
// Move, Checkout and Save, WriteData and Recover run. Every call works
// relative to the directories the spool opened, so operations go to the
// real directories or fail: the victim keeps its names, contents and
// mtimes, although it holds files named like the entries.
func TestSwappedDirectoriesStayInside(t *testing.T) {
	targets := []string{"q", "q/" + CheckoutDir, "r", DataDir, RegistryDir, TmpDir, "."}
	const rounds = 40
	for _, target := range targets {
		t.Run(target, func(t *testing.T) {
			victim := filepath.Join(t.TempDir(), "victim")
			if err := os.Mkdir(victim, 0o755); err != nil {
				t.Fatal(err)
			}
			for i := range 8 {
				writeFile(t, filepath.Join(victim, fmt.Sprintf("e%d", i)), "victim file")
			}
			writeFile(t, filepath.Join(victim, "tmp"), "victim file")
			s := newTestSpool(t, []string{"q", "r"}, &Options{Durability: DurabilityNone})
			defer s.Close()
			before := treeState(t, victim)

			real := filepath.Join(s.Dir(), target) // "." swaps the spool root itself
			link := filepath.Join(filepath.Dir(real), ".swap")
			if err := os.Symlink(victim, link); err != nil {
				t.Fatal(err)
			}
			var swaps atomic.Int64
			for round := range rounds {
				// Entries named like the victim's files, some of them
				// crashed checkouts for Recover, before the attack starts.
				var names []string
				for i := range 8 {
					name := fmt.Sprintf("e%d", i)
					if _, err := s.EnqueueBytes(context.Background(), "q", []byte("m"), []byte("d"), EnqueueOptions{Name: name}); err != nil {
						t.Fatalf("round %d: enqueue %s: %v", round, name, err)
					}
					names = append(names, name)
				}
				for _, name := range names[:2] {
					if err := os.Rename(s.queuePath("q", name), s.checkoutPath("q", name)); err != nil {
						t.Fatal(err)
					}
				}

				stop := make(chan struct{})
				var wg sync.WaitGroup
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						if unix.Renameat2(unix.AT_FDCWD, real, unix.AT_FDCWD, link, unix.RENAME_EXCHANGE) == nil {
							swaps.Add(1)
						}
					}
				}()
				s.Recover(context.Background(), 0, RecoverOptions{WorkersStopped: true})
				for _, name := range names[2:4] {
					s.Remove("q", name)
				}
				for _, name := range names[4:6] {
					s.Move("q", name, "r")
				}
				if c, err := s.Checkout(context.Background(), "q", names[6]); err == nil {
					c.WriteData(strings.NewReader("new payload"))
					c.Save("r", []byte("new metadata"))
				}
				s.EnqueueBytes(context.Background(), "q", []byte("m"), []byte("d"), EnqueueOptions{Name: "tmp"})
				s.EnqueueBytes(context.Background(), "r", []byte("m"), []byte("d"), EnqueueOptions{})
				s.Remove("r", names[4])
				s.Remove("q", "tmp")
				close(stop)
				wg.Wait()

				// Put the real directory back, then clean the spool for
				// the next round.
				var st unix.Stat_t
				if unix.Lstat(real, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
					if err := unix.Renameat2(unix.AT_FDCWD, real, unix.AT_FDCWD, link, unix.RENAME_EXCHANGE); err != nil {
						t.Fatal(err)
					}
				}
				if after := treeState(t, victim); after != before {
					t.Fatalf("round %d: the victim directory changed:\nbefore:\n%s\nafter:\n%s", round, before, after)
				}
				s.Recover(context.Background(), 0, RecoverOptions{WorkersStopped: true})
				for _, q := range []string{"q", "r"} {
					ns, err := s.List(q)
					if err != nil {
						t.Fatal(err)
					}
					for _, n := range ns {
						if err := s.Remove(q, n); err != nil {
							t.Fatalf("cleaning up %s/%s: %v", q, n, err)
						}
					}
				}
				for _, d := range []string{RegistryDir, DataDir, TmpDir} {
					ents, _ := os.ReadDir(filepath.Join(s.Dir(), d))
					for _, e := range ents {
						os.Remove(filepath.Join(s.Dir(), d, e.Name()))
					}
				}
			}
			if swaps.Load() == 0 {
				t.Fatal("the attacker never swapped the directory")
			}
			t.Logf("%d swaps over %d rounds", swaps.Load(), rounds)
		})
	}
}

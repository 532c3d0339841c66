package repair

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spool-agent/spool-agent/internal/fsys"
	"golang.org/x/sys/unix"

	"github.com/spool-agent/spool-agent/monitor"
	"github.com/spool-agent/spool-agent/spool"
)

// dyingFS lets the first budget changes to the disk through and then fails
// every call but Close: the spool is left as a process killed at that
// point leaves it (its cleanup fails too), and closing its descriptors
// drops its locks as the kernel does for a dead process.
type dyingFS struct {
	fsys.FS
	armed  bool // counting (Open of the spool is not)
	budget int
}

func (d *dyingFS) dead() bool { return d.armed && d.budget <= 0 }

func (d *dyingFS) spend() error {
	if !d.armed {
		return nil
	}
	if d.budget <= 0 {
		return unix.EIO
	}
	d.budget--
	return nil
}

func (d *dyingFS) Open(dirfd int, name string, flags int, perm uint32) (int, error) {
	if d.dead() || flags&unix.O_CREAT != 0 && d.spend() != nil {
		return -1, unix.EIO
	}
	return d.FS.Open(dirfd, name, flags, perm)
}

func (d *dyingFS) Write(fd int, p []byte) (int, error) {
	if err := d.spend(); err != nil {
		return 0, err
	}
	return d.FS.Write(fd, p)
}

func (d *dyingFS) Fsync(fd int) error {
	if d.dead() {
		return unix.EIO
	}
	return d.FS.Fsync(fd)
}

func (d *dyingFS) Rename(olddirfd int, oldname string, newdirfd int, newname string, noReplace bool) error {
	if err := d.spend(); err != nil {
		return err
	}
	return d.FS.Rename(olddirfd, oldname, newdirfd, newname, noReplace)
}

func (d *dyingFS) Unlink(dirfd int, name string) error {
	if err := d.spend(); err != nil {
		return err
	}
	return d.FS.Unlink(dirfd, name)
}

func (d *dyingFS) Touch(dirfd int, name string, t time.Time) error {
	if err := d.spend(); err != nil {
		return err
	}
	return d.FS.Touch(dirfd, name, t)
}

func (d *dyingFS) Fchmod(fd int, mode uint32) error {
	if err := d.spend(); err != nil {
		return err
	}
	return d.FS.Fchmod(fd, mode)
}

func (d *dyingFS) Mkdir(dirfd int, name string, perm uint32) error {
	if err := d.spend(); err != nil {
		return err
	}
	return d.FS.Mkdir(dirfd, name, perm)
}

func (d *dyingFS) Flock(fd int, how int) error {
	if d.dead() {
		return unix.EIO
	}
	return d.FS.Flock(fd, how)
}

// TestRepairKilledLibraryOperations kills each operation of this library at
// every step (every change it makes to the disk), repairs the spool, and
// checks that every acknowledged entry is there exactly once, that the
// entry of the killed operation is there at most once (exactly once unless
// the operation was a remove), never without its payload outside the
// quarantine queue, and that fsck is clean and a second plan empty.
func TestRepairKilledLibraryOperations(t *testing.T) {
	type op struct {
		name  string
		setup bool // enqueue k into incoming first
		run   func(s *spool.Spool) error
		mayGo bool // the operation may remove k
	}
	meta, data := []byte("meta of k"), []byte("payload of k")
	cases := []op{
		{name: "enqueue", run: func(s *spool.Spool) error {
			_, err := s.EnqueueBytes(context.Background(), "incoming", meta, data, spool.EnqueueOptions{Name: "k"})
			return err
		}, mayGo: true},
		{name: "remove", setup: true, mayGo: true, run: func(s *spool.Spool) error { return s.Remove("incoming", "k") }},
		{name: "move", setup: true, run: func(s *spool.Spool) error { return s.Move("incoming", "k", "done") }},
		{name: "save new metadata", setup: true, run: func(s *spool.Spool) error {
			return s.WithEntry(context.Background(), "incoming", "k", func(*spool.Checkout) (spool.Action, error) {
				return spool.SaveTo("done", []byte("new meta of k")), nil
			})
		}},
		{name: "write payload", setup: true, run: func(s *spool.Spool) error {
			return s.WithEntry(context.Background(), "incoming", "k", func(c *spool.Checkout) (spool.Action, error) {
				return spool.SaveTo("", nil), c.WriteData(bytes.NewReader([]byte("new payload of k")))
			})
		}},
	}
	for _, o := range cases {
		t.Run(o.name, func(t *testing.T) {
			t.Parallel()
			for budget := 0; ; budget++ {
				if budget > 60 {
					t.Fatal("the operation never succeeded")
				}
				f := newFixture(t)
				f.enqueue("done", "other")
				if o.setup {
					f.enqueue("incoming", "k")
					f.acked = f.acked[:len(f.acked)-1] // checked separately
				}
				fs := &dyingFS{FS: fsys.OS{}, budget: budget}
				var opts spool.Options
				fsys.SetOptions(&opts, fs)
				s, err := spool.Open(f.dir, &opts)
				if err != nil {
					t.Fatal(err)
				}
				fs.armed = true
				opErr := o.run(s)
				s.Close()
				// Everything is an hour old by the repair's clock.
				r := &Repairer{Limits: monitor.DefaultLimits(), Now: func() time.Time { return time.Now().Add(time.Hour) }}
				final, err := r.Repair(context.Background(), f.dir, nil)
				if err != nil {
					t.Fatalf("budget %d: %v", budget, err)
				}
				if len(final.Actions) > 0 || len(final.Left) > 0 {
					t.Errorf("budget %d (op: %v): after repair, planned %q, left %q", budget, opErr, ops(final), lefts(final))
				}
				f.checkAcked()
				where := copies(t, f.dir, "k")
				switch {
				case len(where) > 1:
					t.Errorf("budget %d: k in %v", budget, where)
				case len(where) == 0 && !o.mayGo:
					t.Errorf("budget %d (op: %v): k lost", budget, opErr)
				case len(where) == 0 && o.setup && opErr != nil && o.name != "remove":
					t.Errorf("budget %d: k lost", budget)
				case len(where) == 1 && o.name == "remove" && opErr == nil:
					t.Errorf("budget %d: k removed, but is in %s", budget, where[0])
				case len(where) == 1 && o.name == "enqueue" && opErr == nil && where[0] != "incoming":
					t.Errorf("budget %d: k enqueued, but is in %s", budget, where[0])
				case len(where) == 1:
					p, err := os.ReadFile(filepath.Join(f.dir, spool.DataDir, "k"))
					if err != nil {
						t.Errorf("budget %d: k in %s has no payload: %v", budget, where[0], err)
					} else if len(p) == 0 && where[0] != "quarantine" {
						t.Errorf("budget %d: k in %s with an empty payload", budget, where[0])
					}
				}
				checkClean(t, f.dir, monitor.DefaultLimits(), nil)
				if opErr == nil {
					t.Logf("%s: killed at each of %d steps, repaired every time", o.name, budget)
					return
				}
			}
		})
	}
}

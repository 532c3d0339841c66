// Command refworker is a stand-in for a worker of the OCaml reference library
// (Jane Street's multispool, ../shared/reference/multispool.ml) in the
// reliability tests: it performs the reference's system calls, in the
// reference's order, with its temp-file names and modes, and takes no lock.
// It uses plain os and unix calls, never this project's spool package, so
// that a test can run it beside workers of this library on one spool.
//
// The entry format and the logs are package workload's (metadata "id=<id>",
// a payload derived from the id, one write per log line), so a test reads
// refworker's logs and spoolworker's alike:
//
//	refworker create     -spool DIR -queues Q1,Q2
//	refworker produce    -spool DIR -queue Q -id PREFIX -log ACKS [-n N] [-size BYTES] [-name-prefix P]
//	refworker consume    -spool DIR -queue Q -to Q2 [-log FILE]
//	refworker remove     -spool DIR -queue Q -log FILE
//	refworker hold       -spool DIR -queue Q -n N -log FILE
//	refworker uncheckout -spool DIR -queues Q1,Q2
//	refworker fsck       -spool DIR -queues Q1,Q2 [-max-checked-out-age D] [-max-tmp-file-age D]
//
// create is the reference's create (load ~create_if_missing:()) of a new
// spool. produce logs "ack <id> <name>" once an enqueue returned; consume logs
// "moved <id> <name>" once a save into -to returned; remove logs
// "removing <id> <name>" before and "removed <id> <name>" after a remove.
// hold checks out N entries, logs "held <id> <name>" for each, and on
// SIGTERM removes them (logging as remove does). uncheckout is async_smtp's
// start-up recovery (uncheckout_all_entries): every checkout goes back to
// the queue it came from, whoever holds it. fsck prints, as one JSON array,
// the problems the reference's Monitor.run_once reports, named with package
// monitor's kinds and directory roles.
//
// Every mode stops on SIGTERM or SIGINT between two entries. The exit status
// is 3 when a payload did not match its metadata, 1 on any other error.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spool-agent/spool-agent/reliability/internal/workload"
)

// The reference's directory names (Shared in multispool.ml).
const (
	registry = ".registry"
	tmp      = ".tmp"
	checkout = ".checkout"
	data     = ".data"
)

// The reference's modes: Unix.mkdir's 0o777, Writer's 0o666, and
// Unix.openfile's default 0o644 for the registry file; the umask applies.
const (
	dirMode      = 0o777
	fileMode     = 0o666
	registryMode = 0o644
)

// pollEvery is how often an idle consumer relists its queue. The reference
// waits for any inotify event on the queue instead; a poll makes the same
// system calls on the spool (a readdir) and is simpler.
const pollEvery = 10 * time.Millisecond

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: refworker create|produce|consume|remove|hold|uncheckout|fsck [flags]")
		os.Exit(2)
	}
	mode := os.Args[1]
	fl := flag.NewFlagSet(mode, flag.ExitOnError)
	var c config
	fl.StringVar(&c.dir, "spool", "", "spool directory")
	fl.StringVar(&c.queue, "queue", "incoming", "queue to enqueue into or take entries from")
	fl.StringVar(&c.to, "to", "done", "consume: queue to save processed entries into")
	queues := fl.String("queues", "", "create, uncheckout, fsck: the spool's queues, comma-separated (the reference knows them statically)")
	fl.StringVar(&c.id, "id", "", "produce: prefix of the entry ids (unique per process run)")
	logPath := fl.String("log", "", "log file")
	fl.IntVar(&c.n, "n", 0, "produce: stop after n entries (0: until stopped); hold: entries to hold")
	fl.IntVar(&c.size, "size", 256, "payload size in bytes")
	fl.StringVar(&c.namePrefix, "name-prefix", "", "produce: prefix of the entry names (the reference accepts any, a leading '.' included)")
	fl.DurationVar(&c.maxCheckedOutAge, "max-checked-out-age", 10*time.Minute, "fsck: the reference's -max-checked-out-age")
	fl.DurationVar(&c.maxTmpFileAge, "max-tmp-file-age", 10*time.Minute, "fsck: the reference's -max-tmp-file-age")
	fl.Parse(os.Args[2:])
	if *queues != "" {
		c.queues = strings.Split(*queues, ",")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	err := func() error {
		if *logPath != "" {
			l, err := workload.OpenLog(*logPath)
			if err != nil {
				return err
			}
			defer l.Close()
			c.log = l
		}
		return run(ctx, mode, &c)
	}()
	if err != nil {
		fmt.Fprintf(os.Stderr, "refworker %s: %v\n", mode, err)
		if errors.Is(err, workload.ErrCorrupt) {
			os.Exit(3)
		}
		os.Exit(1)
	}
}

type config struct {
	dir, queue, to, id string
	namePrefix         string
	queues             []string
	n, size            int
	log                *workload.Log
	maxCheckedOutAge   time.Duration
	maxTmpFileAge      time.Duration
}

func run(ctx context.Context, mode string, c *config) error {
	if c.dir == "" {
		return errors.New("-spool is required")
	}
	sp := refSpool(c.dir)
	switch mode {
	case "create":
		return sp.create(c.queues)
	case "produce":
		if c.id == "" || c.log == nil {
			return errors.New("produce needs -id and -log")
		}
		return produce(ctx, sp, c)
	case "consume":
		return consume(ctx, sp, c.queue, func(co *checkedOut, id string) error {
			co.metadata = append(co.metadata, ";stage="+c.to...)
			if err := sp.save(co, c.to); err != nil {
				return fmt.Errorf("save %s: %w", id, err)
			}
			return c.log.Line("moved", id, co.name)
		})
	case "remove":
		if c.log == nil {
			return errors.New("remove needs -log")
		}
		return consume(ctx, sp, c.queue, func(co *checkedOut, id string) error {
			return removeLogged(sp, co, id, c.log)
		})
	case "hold":
		return hold(ctx, sp, c)
	case "uncheckout":
		return sp.uncheckoutAll(c.queues)
	case "fsck":
		problems, err := sp.fsck(c.queues, c.maxCheckedOutAge, c.maxTmpFileAge, time.Now())
		if err != nil {
			return err
		}
		return json.NewEncoder(os.Stdout).Encode(problems)
	}
	return fmt.Errorf("unknown mode %q", mode)
}

// produce enqueues entries with ids <prefix>-<seq> until stopped or c.n are
// acknowledged.
func produce(ctx context.Context, sp refSpool, c *config) error {
	gen := timeOrderNames{prefix: c.namePrefix, i: os.Getpid()}
	for i := 0; c.n <= 0 || i < c.n; i++ {
		if ctx.Err() != nil {
			return nil
		}
		id := fmt.Sprintf("%s-%d", c.id, i)
		name, err := sp.enqueue(c.queue, workload.Metadata(id), workload.Payload(id, c.size), gen)
		if err != nil {
			return fmt.Errorf("enqueue %s: %w", id, err)
		}
		if err := c.log.Line("ack", id, name); err != nil {
			return err
		}
	}
	return nil
}

// consume is the reference's Queue_reader.iter over queue: it takes a sorted
// snapshot of the queue, tries to check out each entry in turn (moving on
// when another worker won it), checks the payload against the id in the
// metadata, and hands the checkout to finish, which must save or remove it.
// It relists when the snapshot is used up, and polls an empty queue.
func consume(ctx context.Context, sp refSpool, queue string, finish func(*checkedOut, string) error) error {
	var cache []string
	for {
		if ctx.Err() != nil {
			return nil
		}
		if len(cache) == 0 {
			names, err := sp.list(queue)
			if err != nil {
				return err
			}
			if len(names) == 0 {
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(pollEvery):
				}
				continue
			}
			cache = names
		}
		name := cache[0]
		cache = cache[1:]
		co, err := sp.checkout(queue, name)
		if errors.Is(err, errNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		id, err := sp.verify(co)
		if err != nil {
			return err
		}
		if err := finish(co, id); err != nil {
			return err
		}
	}
}

// removeLogged removes co, logging the intent before and the
// acknowledgement after, as package workload's remover does.
func removeLogged(sp refSpool, co *checkedOut, id string, log *workload.Log) error {
	if err := log.Line("removing", id, co.name); err != nil {
		return err
	}
	if err := sp.remove(co); err != nil {
		return fmt.Errorf("remove %s: %w", id, err)
	}
	return log.Line("removed", id, co.name)
}

// hold checks out c.n entries of c.queue and keeps them, as async_smtp keeps
// a message checked out for a whole delivery attempt, until SIGTERM; then it
// removes them. A remove that fails means someone took a checkout it held.
func hold(ctx context.Context, sp refSpool, c *config) error {
	if c.n <= 0 || c.log == nil {
		return errors.New("hold needs -n and -log")
	}
	var held []*checkedOut
	var ids []string
	for len(held) < c.n {
		names, err := sp.list(c.queue)
		if err != nil {
			return err
		}
		for _, name := range names {
			if len(held) == c.n {
				break
			}
			co, err := sp.checkout(c.queue, name)
			if errors.Is(err, errNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			id, err := sp.verify(co)
			if err != nil {
				return err
			}
			held, ids = append(held, co), append(ids, id)
			if err := c.log.Line("held", id, name); err != nil {
				return err
			}
		}
		if len(held) < c.n {
			select {
			case <-ctx.Done():
				return fmt.Errorf("stopped holding %d of %d entries", len(held), c.n)
			case <-time.After(pollEvery):
			}
		}
	}
	<-ctx.Done()
	var errs []error
	for i, co := range held {
		errs = append(errs, removeLogged(sp, co, ids[i], c.log))
	}
	return errors.Join(errs...)
}

// create is the reference's create of a new spool (load_spool with
// create_if_missing): mkdir the spool directory if missing, refuse it unless
// empty, then mkdir .registry, .tmp and .data, then each queue and its
// .checkout, all with mode 0777 minus the umask.
func (sp refSpool) create(queues []string) error {
	if len(queues) == 0 {
		return errors.New("create needs -queues")
	}
	mkdir := func(path string) error {
		err := unix.Mkdir(path, dirMode)
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return &os.PathError{Op: "mkdir", Path: path, Err: err}
		}
		return nil
	}
	if err := mkdir(string(sp)); err != nil {
		return err
	}
	if names, err := readNames(string(sp)); err != nil || len(names) > 0 {
		return fmt.Errorf("dir is not empty while creating new spool: %s (%v)", sp, err)
	}
	for _, d := range []string{registry, tmp, data} {
		if err := mkdir(sp.path(d)); err != nil {
			return err
		}
	}
	for _, q := range queues {
		if err := mkdir(sp.path(q)); err != nil {
			return err
		}
		if err := mkdir(sp.path(q, checkout)); err != nil {
			return err
		}
	}
	return nil
}

// verify reads co's payload (the reference's Data_file.load) and checks it
// against the id in co's metadata.
func (sp refSpool) verify(co *checkedOut) (string, error) {
	id, ok := workload.ParseID(co.metadata)
	b, err := os.ReadFile(sp.dataPath(co.name))
	if !ok || err != nil || !workload.CheckPayload(id, b) {
		return "", fmt.Errorf("%w: %s (%q, %v)", workload.ErrCorrupt, co.name, co.metadata, err)
	}
	return id, nil
}

// refSpool is a spool directory as the reference sees it: a path.
type refSpool string

func (sp refSpool) path(parts ...string) string {
	return filepath.Join(append([]string{string(sp)}, parts...)...)
}
func (sp refSpool) registryPath(name string) string { return sp.path(registry, name) }
func (sp refSpool) dataPath(name string) string     { return sp.path(data, name) }
func (sp refSpool) tmpPath(name string) string      { return sp.path(tmp, name) }
func (sp refSpool) queuePath(q, name string) string { return sp.path(q, name) }
func (sp refSpool) checkoutPath(q, name string) string {
	return sp.path(q, checkout, name)
}

// errNotFound is the reference's `Not_found: an ENOENT anywhere in
// checkout's touch-touch-rename chain (another worker won the entry).
var errNotFound = errors.New("entry not found")

// timeOrderNames is the reference's For_testing.Lexicographic_time_order_name_generator:
// the UTC time to the millisecond, the attempt, and the generator's integer
// (here the process id, as async_smtp's names carry the process), after an
// optional prefix (the reference validates no name).
type timeOrderNames struct {
	prefix string
	i      int
}

func (g timeOrderNames) next(attempt int) string {
	now := time.Now().UTC().Format("2006-01-02_15-04-05.000")
	return fmt.Sprintf("%s%s_%06d__%d__", g.prefix, now, attempt, g.i)
}

// enqueue is the reference's enqueue with `Reserve: reserve a name in
// .registry (O_CREAT|O_EXCL, the next attempt on EEXIST), write the metadata
// atomically to .tmp/<name>, write the payload atomically to .data/<name>,
// then rename .tmp/<name> into the queue. On failure it unlinks all four
// paths, ignoring errors, as the reference's best-effort cleanup does.
func (sp refSpool) enqueue(queue string, metadata, payload []byte, gen timeOrderNames) (string, error) {
	var name string
	for attempt := 0; ; attempt++ {
		name = gen.next(attempt)
		fd, err := unix.Open(sp.registryPath(name), unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, registryMode)
		if errors.Is(err, unix.EEXIST) {
			continue
		}
		if err != nil {
			return "", &os.PathError{Op: "reserve", Path: sp.registryPath(name), Err: err}
		}
		if err := unix.Close(fd); err != nil {
			return "", err
		}
		break
	}
	tmpPath, metaPath, dataPath := sp.tmpPath(name), sp.queuePath(queue, name), sp.dataPath(name)
	err := atomicSave(tmpPath, tmpPath, metadata)
	if err == nil {
		err = atomicSave(dataPath, dataPath, payload)
	}
	if err == nil {
		err = rename(tmpPath, metaPath)
	}
	if err != nil {
		for _, p := range []string{tmpPath, metaPath, dataPath, sp.registryPath(name)} {
			unlink(p)
		}
		return "", err
	}
	return name, nil
}

// atomicSave is Async's Writer.save ~fsync:true with ?temp_file: a fresh
// file <tempBase>.tmp.XXXXXX (six random letters or digits) created with
// mode 0666, or the mode of the file already at path, minus the umask;
// written, fsynced and renamed over path. No directory is fsynced.
func atomicSave(path, tempBase string, contents []byte) error {
	mode := uint32(fileMode)
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err == nil {
		mode = uint32(st.Mode) & 0o7777
	}
	var fd int
	var temp string
	for {
		temp = tempBase + ".tmp." + randomSuffix()
		var err error
		fd, err = unix.Open(temp, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, mode)
		if errors.Is(err, unix.EEXIST) {
			continue
		}
		if err != nil {
			return &os.PathError{Op: "create", Path: temp, Err: err}
		}
		break
	}
	f := os.NewFile(uintptr(fd), temp)
	_, err := f.Write(contents)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = rename(temp, path)
	}
	if err != nil {
		unlink(temp)
	}
	return err
}

// randomSuffix returns mkstemp's six random characters.
func randomSuffix() string {
	const chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 6)
	for i := range b {
		b[i] = chars[rand.IntN(len(chars))]
	}
	return string(b)
}

// rename is Unix.rename: rename(2), which replaces what is at dst.
func rename(src, dst string) error {
	if err := unix.Rename(src, dst); err != nil {
		return &os.LinkError{Op: "rename", Old: src, New: dst, Err: err}
	}
	return nil
}

// unlink is Unix.unlink.
func unlink(path string) error {
	if err := unix.Unlink(path); err != nil {
		return &os.PathError{Op: "unlink", Path: path, Err: err}
	}
	return nil
}

// touch is the reference's Utils.touch: utimes to now (following a symlink,
// as utimes does).
func touch(path string) error {
	now := time.Now()
	return os.Chtimes(path, now, now)
}

// list is the reference's list: every name in the queue directory but
// .checkout, sorted bytewise.
func (sp refSpool) list(queue string) ([]string, error) {
	names, err := readNames(sp.path(queue))
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(names, func(n string) bool { return n == checkout }), nil
}

// readNames is Sys.ls_dir, sorted: every name but . and ..
func readNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	return names, nil
}

// checkedOut is the reference's Checked_out_entry.
type checkedOut struct {
	queue, name string // queue: the queue it was checked out from
	metadata    []byte
}

// checkout is the reference's checkout': With_touch.rename (touch the
// registry file, touch the queue file, rename it into .checkout), where an
// ENOENT at any step is errNotFound, then a read of the metadata.
func (sp refSpool) checkout(queue, name string) (*checkedOut, error) {
	src, dst := sp.queuePath(queue, name), sp.checkoutPath(queue, name)
	err := touch(sp.registryPath(name))
	if err == nil {
		err = touch(src)
	}
	if err == nil {
		err = rename(src, dst)
	}
	if errors.Is(err, os.ErrNotExist) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(dst)
	if err != nil {
		return nil, err
	}
	return &checkedOut{queue: queue, name: name, metadata: b}, nil
}

// save is Checked_out_entry.save: the metadata is written atomically over
// the checkout file (its temp file in .tmp), then With_touch.rename moves
// the entry into dst (a plain rename, which replaces whatever is there).
func (sp refSpool) save(co *checkedOut, dst string) error {
	src := sp.checkoutPath(co.queue, co.name)
	if err := atomicSave(src, sp.tmpPath(co.name), co.metadata); err != nil {
		return err
	}
	if err := touch(sp.registryPath(co.name)); err != nil {
		return err
	}
	if err := touch(src); err != nil {
		return err
	}
	return rename(src, sp.queuePath(dst, co.name))
}

// remove is Checked_out_entry.remove (With_touch.unlink): touch the registry
// file, then unlink the payload, the checkout file and the registry file,
// stopping at the first error.
func (sp refSpool) remove(co *checkedOut) error {
	for _, step := range []func() error{
		func() error { return touch(sp.registryPath(co.name)) },
		func() error { return unlink(sp.dataPath(co.name)) },
		func() error { return unlink(sp.checkoutPath(co.queue, co.name)) },
		func() error { return unlink(sp.registryPath(co.name)) },
	} {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

// uncheckoutAll is async_smtp's Message_spool.uncheckout_all_entries:
// list_checkouts_unsafe on every queue (list .checkout, load every
// metadata file; any error stops it), then save each entry back into the
// queue it was checked out from.
func (sp refSpool) uncheckoutAll(queues []string) error {
	if len(queues) == 0 {
		return errors.New("uncheckout needs -queues")
	}
	for _, q := range queues {
		names, err := readNames(sp.path(q, checkout))
		if err != nil {
			return err
		}
		var cos []*checkedOut
		for _, name := range names {
			b, err := os.ReadFile(sp.checkoutPath(q, name))
			if err != nil {
				return err
			}
			cos = append(cos, &checkedOut{queue: q, name: name, metadata: b})
		}
		for _, co := range cos {
			if err := sp.save(co, q); err != nil {
				return err
			}
		}
	}
	return nil
}

// problem is one of the reference Monitor's problems, with package monitor's
// names: Kind "too_old", "orphaned" or "duplicated"; Dir "registry", "tmp",
// "data", "queue" or "checkout"; Dirs the directories of a duplicated name.
type problem struct {
	Kind  string   `json:"kind"`
	Dir   string   `json:"dir"`
	Queue string   `json:"queue,omitempty"`
	Name  string   `json:"name"`
	Dirs  []string `json:"dirs,omitempty"` // "queue:Q" or "checkout:Q"
}

// fsck is the reference Monitor's fsck (run_once): list and stat every
// directory (an ENOENT between the two skips the file; any other error
// abandons the check), then report tmp files older than maxTmp, checkouts
// older than maxCheckedOut, unregistered files in .tmp, .data, the queues
// and their .checkout, registry files in no queue (orphaned) or in several
// (duplicated). Ages are strict: now - mtime > limit.
func (sp refSpool) fsck(queues []string, maxCheckedOut, maxTmp time.Duration, now time.Time) ([]problem, error) {
	if len(queues) == 0 {
		return nil, errors.New("fsck needs -queues")
	}
	type dir struct{ kind, queue, path string }
	dirs := []dir{{"registry", "", registry}, {"tmp", "", tmp}, {"data", "", data}}
	for _, q := range queues {
		dirs = append(dirs, dir{"queue", q, q}, dir{"checkout", q, filepath.Join(q, checkout)})
	}
	files := map[dir]map[string]time.Time{}
	for _, d := range dirs {
		names, err := readNames(sp.path(d.path))
		if err != nil {
			return nil, err
		}
		files[d] = map[string]time.Time{}
		for _, name := range names {
			if name == checkout {
				continue
			}
			var st unix.Stat_t
			err := unix.Stat(sp.path(d.path, name), &st)
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			if err != nil {
				return nil, &os.PathError{Op: "stat", Path: sp.path(d.path, name), Err: err}
			}
			files[d][name] = time.Unix(st.Mtim.Unix())
		}
	}
	reg := files[dirs[0]]
	var out []problem
	add := func(kind string, d dir, name string) {
		out = append(out, problem{Kind: kind, Dir: d.kind, Queue: d.queue, Name: name})
	}
	tooOld := func(d dir, age time.Duration) {
		for name, mt := range files[d] {
			if now.Sub(mt) > age {
				add("too_old", d, name)
			}
		}
	}
	orphaned := func(d dir) {
		for name := range files[d] {
			if _, ok := reg[name]; !ok {
				add("orphaned", d, name)
			}
		}
	}
	tooOld(dirs[1], maxTmp)
	orphaned(dirs[1])
	orphaned(dirs[2])
	for _, d := range dirs[3:] {
		if d.kind == "checkout" {
			tooOld(d, maxCheckedOut)
		}
		orphaned(d)
	}
	for name := range reg {
		var in []string
		for _, d := range dirs[3:] {
			if _, ok := files[d][name]; ok {
				in = append(in, d.kind+":"+d.queue)
			}
		}
		switch len(in) {
		case 0:
			add("orphaned", dirs[0], name)
		case 1:
		default:
			out = append(out, problem{Kind: "duplicated", Dir: "registry", Name: name, Dirs: in})
		}
	}
	slices.SortFunc(out, func(a, b problem) int {
		return strings.Compare(a.Kind+"\x00"+a.Dir+"\x00"+a.Queue+"\x00"+a.Name, b.Kind+"\x00"+b.Dir+"\x00"+b.Queue+"\x00"+b.Name)
	})
	if out == nil {
		out = []problem{}
	}
	return out, nil
}

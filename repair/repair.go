// Package repair turns the problems that monitor.Check reports into safe
// operations on a spool: policy over the checker's problems and the spool
// library's operations, so that neither spool nor monitor learns about the
// other.
//
// The rule is that an entry that may have been acknowledged is never
// deleted. An enqueue is acknowledged only once its metadata is renamed into
// a queue (in this library and in the OCaml reference alike), and an atomic
// write only once its temp file is renamed over the target; so a reservation
// whose name has no metadata in any queue is an enqueue to roll back (or a
// remove to finish), and a temp file of an atomic write never holds anything
// acknowledged. Whatever else is in doubt becomes a proper entry (registry
// file, metadata, payload) in a quarantine queue. Repair acts only on files
// older than the tmp limit, so it never races an operation in flight, and
// every step leaves a state that a later run carries on from, so it can be
// killed at any point.
package repair

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/spool-agent/spool-agent/monitor"
	"github.com/spool-agent/spool-agent/spool"
)

// DefaultQuarantineQueue is the queue that receives entries in doubt, as in
// async_smtp.
const DefaultQuarantineQueue = "quarantine"

// Op is what an Action does.
type Op string

// The operations, in the order a plan carries them out.
const (
	OpCreateQueue Op = "create-queue" // create the quarantine queue
	OpRegister    Op = "register"     // create .registry/NAME for an entry that has none
	OpDelete      Op = "delete"       // delete a leftover that holds nothing acknowledged
	OpRelease     Op = "release"      // delete a reservation whose name has no metadata anywhere
	OpAdopt       Op = "adopt"        // make a quarantine entry of leftover metadata or payload with no registry file
	OpSplit       Op = "split"        // move a duplicated copy into quarantine under a new name
	OpRecover     Op = "recover"      // return a stale checkout to its queue (recover's rules)
	OpQuarantine  Op = "quarantine"   // move an entry without payload into quarantine, with an empty payload
)

var opOrder = map[Op]int{OpCreateQueue: 0, OpRegister: 1, OpDelete: 2, OpRelease: 3, OpAdopt: 4, OpSplit: 5, OpRecover: 6, OpQuarantine: 7}

// Action is one step of a plan: Op applied to the file Dir.Path(Name)
// (relative to the spool), for a problem of kind Kind.
type Action struct {
	Op     Op
	Kind   monitor.Kind // the problem it repairs (empty for create-queue)
	Dir    monitor.Dir
	Name   string
	Reason string
}

// Path returns the action's path relative to the spool directory.
func (a Action) Path() string { return a.Dir.Path(a.Name) }

// Left is a problem that the plan does not repair, and why.
type Left struct {
	Problem monitor.Problem
	Reason  string
}

// Plan is what Repair would do to a spool: its actions in order, and the
// problems it leaves.
type Plan struct {
	Dir     string
	Time    time.Time
	Actions []Action
	Left    []Left
}

// Result is the outcome of one action carried out.
type Result struct {
	Action
	Detail string // what was done beyond the action itself (a new name)
	Err    error  // nil when done; wraps ErrChanged when skipped
}

// ErrChanged reports an action skipped because the spool changed since the
// plan (a worker took the entry, a file appeared or became young again):
// the next run plans afresh.
var ErrChanged = errors.New("changed since the plan")

// Repairer plans and carries out repairs. Its fields mean what they say.
type Repairer struct {
	// Limits are fsck's limits. MaxTmpFileAge is also the age below which
	// repair touches nothing (an operation may be in flight), and stale
	// checkouts are those older than MaxCheckedOutAge (and MaxTmpFileAge).
	Limits monitor.Limits
	// QuarantineQueue receives entries in doubt; "" means DefaultQuarantineQueue.
	QuarantineQueue string
	// WorkersStopped allows recovering checkouts younger than
	// spool.MinRecoverAge, as recover's --workers-stopped.
	WorkersStopped bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// MaxMetadataSize bounds the metadata that repair's checkouts read
	// (spool.Options.MaxMetadataSize); 0 means the library's default.
	MaxMetadataSize int64
}

func (r *Repairer) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Repairer) quarantine() string { return cmp.Or(r.QuarantineQueue, DefaultQuarantineQueue) }

// recoverAge is the age above which a checkout is recovered.
func (r *Repairer) recoverAge() time.Duration {
	age := max(r.Limits.MaxCheckedOutAge, r.Limits.MaxTmpFileAge)
	if !r.WorkersStopped && age < spool.MinRecoverAge {
		age = spool.MinRecoverAge
	}
	return age
}

// Plan checks the spool at dir with the Repairer's limits and returns what
// Apply would do. It changes nothing. An error means the spool could not be
// checked (fully): repair then plans nothing.
func (r *Repairer) Plan(ctx context.Context, dir string) (*Plan, error) {
	if err := spool.ValidateName(r.quarantine()); err != nil {
		return nil, fmt.Errorf("quarantine queue: %w", err)
	}
	now := r.now()
	problems, err := monitor.Check(dir, r.Limits, now)
	if err != nil {
		return nil, fmt.Errorf("check %s: %w", dir, err)
	}
	p := &Plan{Dir: dir, Time: now}
	if len(problems) == 0 {
		return p, nil
	}
	s, err := spool.Open(dir, &spool.Options{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	d, err := openDirs(dir, s.Queues())
	if err != nil {
		return nil, err
	}
	defer d.close()
	pl := planner{r: r, d: d, now: now, queues: s.Queues(), p: p}
	byName := map[string][]monitor.Problem{}
	var names []string
	var halfMade *monitor.Problem
	for _, pr := range problems {
		if pr.Dir.Kind == monitor.DirRoot && pr.Name == r.quarantine() && !s.HasQueue(pr.Name) {
			// Repair's own queue without its .checkout/: a repair killed
			// between AddQueue's two mkdirs. AddQueue completes it.
			if f, err := stat(d.root, pr.Name); err == nil && f.dir {
				halfMade = &pr
				continue
			}
		}
		if pr.Dir.Kind == monitor.DirRoot {
			p.Left = append(p.Left, Left{pr, "not part of the spool's layout: reported, never touched"})
			continue
		}
		if _, ok := byName[pr.Name]; !ok {
			names = append(names, pr.Name)
		}
		byName[pr.Name] = append(byName[pr.Name], pr)
	}
	slices.Sort(names)
	for _, n := range names {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		pl.name(n, byName[n])
	}
	slices.SortStableFunc(p.Actions, func(a, b Action) int { return cmp.Compare(opOrder[a.Op], opOrder[b.Op]) })
	switch {
	case halfMade != nil:
		p.Actions = slices.Insert(p.Actions, 0, Action{Op: OpCreateQueue, Kind: halfMade.Kind, Dir: monitor.Dir{Kind: monitor.DirRoot}, Name: r.quarantine(),
			Reason: "the quarantine queue has no .checkout/ (a repair was killed creating it): completed"})
	case pl.needQuarantine && !s.HasQueue(r.quarantine()):
		p.Actions = slices.Insert(p.Actions, 0, Action{Op: OpCreateQueue, Dir: monitor.Dir{Kind: monitor.DirRoot}, Name: r.quarantine(),
			Reason: "the quarantine queue is missing"})
	}
	slices.SortStableFunc(p.Left, func(a, b Left) int { return monitor.CompareProblems(a.Problem, b.Problem) })
	return p, nil
}

// planner plans one spool.
type planner struct {
	r              *Repairer
	d              *dirs
	now            time.Time
	queues         []string
	p              *Plan
	needQuarantine bool
}

// loc is one copy of an entry's metadata: waiting in a queue or checked out.
type loc struct {
	dir monitor.Dir
	f   file
}

// facts are what is on disk for one name.
type facts struct {
	reg, tmp, data file
	locs           []loc
}

func (pl *planner) facts(name string) (facts, error) {
	var f facts
	var err error
	if f.reg, err = stat(pl.d.reg, name); err != nil {
		return f, err
	}
	if f.tmp, err = stat(pl.d.tmp, name); err != nil {
		return f, err
	}
	if f.data, err = stat(pl.d.data, name); err != nil {
		return f, err
	}
	if name == spool.CheckoutDir {
		return f, nil
	}
	for _, q := range pl.queues {
		qd := pl.d.queues[q]
		for _, x := range []struct {
			fd   int
			kind monitor.DirKind
		}{{qd.q, monitor.DirQueue}, {qd.co, monitor.DirCheckout}} {
			fi, err := stat(x.fd, name)
			if err != nil {
				return f, err
			}
			if fi.exists {
				f.locs = append(f.locs, loc{monitor.Dir{Kind: x.kind, Queue: q}, fi})
			}
		}
	}
	return f, nil
}

// all returns every file of the name that exists.
func (f facts) all() []file {
	var out []file
	for _, x := range []file{f.reg, f.tmp, f.data} {
		if x.exists {
			out = append(out, x)
		}
	}
	for _, l := range f.locs {
		out = append(out, l.f)
	}
	return out
}

func (pl *planner) old(f file) bool { return pl.now.Sub(f.mtime) > pl.r.Limits.MaxTmpFileAge }

func (pl *planner) act(op Op, kind monitor.Kind, dir monitor.Dir, name, reason string) {
	pl.p.Actions = append(pl.p.Actions, Action{Op: op, Kind: kind, Dir: dir, Name: name, Reason: reason})
	if op == OpAdopt || op == OpSplit || op == OpQuarantine {
		pl.needQuarantine = true
	}
}

func (pl *planner) leave(pr monitor.Problem, reason string) {
	pl.p.Left = append(pl.p.Left, Left{pr, reason})
}

var (
	regDir  = monitor.Dir{Kind: monitor.DirRegistry}
	tmpDir  = monitor.Dir{Kind: monitor.DirTmp}
	dataDir = monitor.Dir{Kind: monitor.DirData}
)

// Reasons for what repair leaves.
const (
	whyYoung      = "younger than the tmp limit: an operation may be in flight"
	whyUnexpected = "not a regular file: reported, never touched"
	whyQueueAge   = "waiting longer than its queue's limit: for its consumers (or mv), not for repair"
)

// name plans the repair of every problem of one name.
func (pl *planner) name(name string, probs []monitor.Problem) {
	leaveAll := func(reason string) {
		for _, pr := range probs {
			pl.leave(pr, reason)
		}
	}
	f, err := pl.facts(name)
	if err != nil {
		leaveAll("could not stat: " + err.Error())
		return
	}
	for _, x := range f.all() {
		if !x.regular {
			leaveAll(whyUnexpected)
			return
		}
	}
	if len(f.locs) == 0 {
		pl.noEntry(name, f, probs)
		return
	}
	pl.entry(name, f, probs)
}

// noEntry plans a name with no metadata in any queue.
func (pl *planner) noEntry(name string, f facts, probs []monitor.Problem) {
	for _, x := range f.all() {
		if !pl.old(x) {
			for _, pr := range probs {
				pl.leave(pr, whyYoung)
			}
			return
		}
	}
	kind := probs[0].Kind
	switch {
	case f.reg.exists:
		if f.tmp.exists {
			pl.act(OpDelete, kind, tmpDir, name, "metadata staged by an enqueue that never reached a queue (never acknowledged: rolled back)")
		}
		if f.data.exists {
			pl.act(OpDelete, kind, dataDir, name, "payload of an enqueue that never reached a queue (never acknowledged: rolled back) or of an interrupted remove")
		}
		pl.act(OpRelease, kind, regDir, name, "reservation with no metadata in any queue: an enqueue that was never acknowledged, or an interrupted remove")
	case isTempName(name):
		why := "temp file of an atomic write that never completed (a write is acknowledged only once renamed)"
		if f.tmp.exists {
			pl.act(OpDelete, kind, tmpDir, name, why)
		}
		if f.data.exists {
			pl.act(OpDelete, kind, dataDir, name, why)
		}
	case name == spool.CheckoutDir:
		for _, pr := range probs {
			pl.leave(pr, "cannot be an entry's name: reported, never touched")
		}
		return
	default:
		d, what := dataDir, "payload"
		if f.tmp.exists {
			d, what = tmpDir, "metadata"
			if f.data.exists {
				what = "metadata and payload"
			}
		}
		pl.act(OpAdopt, kind, d, name, what+" with no registry file and no entry: in doubt, made an entry of the quarantine queue")
	}
}

// entry plans a name that has metadata in at least one queue or checkout
// directory.
func (pl *planner) entry(name string, f facts, probs []monitor.Problem) {
	q := pl.r.quarantine()
	registered := f.reg.exists
	youngLoc := slices.ContainsFunc(f.locs, func(l loc) bool { return !pl.old(l.f) })
	if !registered && !youngLoc {
		pl.act(OpRegister, monitor.KindOrphaned, regDir, name, "entry with no registry file: re-registered")
		registered = true
	}
	tmpDone := f.tmp.exists && pl.old(f.tmp)
	if tmpDone {
		pl.act(OpDelete, probs[0].Kind, tmpDir, name, "leftover copy of the metadata of an entry that exists")
	}

	// Duplicates: keep one copy (a checked-out one, which a worker may
	// hold, else the first outside the quarantine queue), move every other
	// waiting copy into quarantine under a new name with a copy of the payload.
	keep := 0
	if len(f.locs) > 1 {
		keep = -1
		for i, l := range f.locs {
			if l.dir.Kind == monitor.DirCheckout {
				keep = i
				break
			}
		}
		if keep < 0 {
			keep = max(0, slices.IndexFunc(f.locs, func(l loc) bool { return l.dir.Queue != q }))
		}
	}
	split := map[monitor.Dir]bool{}
	dupDone := true
	for i, l := range f.locs {
		if i == keep {
			continue
		}
		if l.dir.Kind == monitor.DirQueue && pl.old(l.f) && registered {
			pl.act(OpSplit, monitor.KindDuplicated, l.dir, name, "duplicated copy: moved into quarantine under a new name with a copy of the payload")
			split[l.dir] = true
		} else {
			dupDone = false
		}
	}

	// Stale checkouts follow recover's rules.
	recoverAge := pl.r.recoverAge()
	recovered := map[monitor.Dir]bool{}
	stale := func(l loc) bool { return pl.now.Sub(l.f.mtime) > recoverAge }
	for _, l := range f.locs {
		if l.dir.Kind != monitor.DirCheckout || !stale(l) {
			continue
		}
		tooOld := slices.ContainsFunc(probs, func(pr monitor.Problem) bool { return pr.Kind == monitor.KindTooOld && pr.Dir == l.dir })
		if tooOld || !f.data.exists && l == f.locs[keep] {
			pl.act(OpRecover, monitor.KindTooOld, l.dir, name, "stale checkout that no live worker of this library holds: returned to its queue")
			recovered[l.dir] = true
		}
	}

	// No payload: the kept copy moves into quarantine with an empty payload.
	quarantined := false
	if !f.data.exists && registered {
		k := f.locs[keep]
		switch {
		case k.dir.Kind == monitor.DirQueue && pl.old(k.f):
			why := "entry without payload: moved into quarantine with its metadata and an empty payload"
			if k.dir.Queue == q {
				why = "entry of the quarantine queue without payload: given an empty payload"
			}
			pl.act(OpQuarantine, monitor.KindMissingData, k.dir, name, why)
			quarantined = true
		case k.dir.Kind == monitor.DirCheckout && recovered[k.dir]:
			pl.act(OpQuarantine, monitor.KindMissingData, monitor.Dir{Kind: monitor.DirQueue, Queue: k.dir.Queue}, name,
				"entry without payload, once recovered: moved into quarantine with its metadata and an empty payload")
			quarantined = true
		}
	}

	for _, pr := range probs {
		switch {
		case pr.Kind == monitor.KindUnexpected:
			pl.leave(pr, whyUnexpected)
		case pr.Dir.Kind == monitor.DirTmp:
			if !tmpDone {
				pl.leave(pr, whyYoung)
			}
		case pr.Kind == monitor.KindOrphaned:
			if !registered {
				pl.leave(pr, whyYoung)
			}
		case pr.Kind == monitor.KindDuplicated:
			if !dupDone {
				pl.leave(pr, "a copy is checked out or young: repaired once it is back in a queue and older than the tmp limit")
			}
		case pr.Kind == monitor.KindMissingData:
			switch {
			case split[pr.Dir]:
			case pr.Dir == f.locs[keep].dir && quarantined:
			case pr.Dir.Kind == monitor.DirCheckout:
				pl.leave(pr, fmt.Sprintf("checked out (a worker's remove may be under way): repaired once the checkout is older than %v", recoverAge))
			case !registered:
				pl.leave(pr, "no registry file yet: "+whyYoung)
			default:
				pl.leave(pr, whyYoung)
			}
		case pr.Kind == monitor.KindTooOld && pr.Dir.Kind == monitor.DirCheckout:
			if !recovered[pr.Dir] {
				pl.leave(pr, pl.whyNotRecovered(recoverAge))
			}
		case pr.Kind == monitor.KindTooOld:
			pl.leave(pr, whyQueueAge)
		default:
			pl.leave(pr, "not repaired")
		}
	}
}

func (pl *planner) whyNotRecovered(age time.Duration) string {
	if !pl.r.WorkersStopped && age == spool.MinRecoverAge && max(pl.r.Limits.MaxCheckedOutAge, pl.r.Limits.MaxTmpFileAge) < age {
		return fmt.Sprintf("checked out for less than %v: a live worker of another implementation may hold it (--workers-stopped if every such worker is stopped)", age)
	}
	return fmt.Sprintf("checked out for less than %v (the checked-out and tmp limits)", age)
}

// isTempName reports whether name is an atomic writer's temp file name,
// "<name>.tmp.XXXXXX": six letters here, six letters or digits from the
// reference's mkstemp.
func isTempName(name string) bool {
	const suffix = len(".tmp.XXXXXX")
	if len(name) <= suffix || name[len(name)-suffix:len(name)-6] != ".tmp." {
		return false
	}
	for _, c := range []byte(name[len(name)-6:]) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// Apply carries p out on its spool, calling report after each action.
// Each action checks again, just before it acts, that what the plan saw
// still holds (skipping with ErrChanged otherwise). Apply's own error means
// it could not start (the spool could not be opened).
func (r *Repairer) Apply(ctx context.Context, p *Plan, report func(Result)) error {
	if len(p.Actions) == 0 {
		return nil
	}
	s, err := spool.Open(p.Dir, &spool.Options{Now: r.Now, MaxMetadataSize: r.MaxMetadataSize})
	if err != nil {
		return err
	}
	defer s.Close()
	d, err := openDirs(p.Dir, s.Queues())
	if err != nil {
		return err
	}
	defer d.close()
	x := &applier{r: r, s: s, d: d, planned: map[spool.Recovered]bool{}}
	for _, a := range p.Actions {
		if a.Op == OpRecover {
			x.planned[spool.Recovered{Queue: a.Dir.Queue, Name: a.Name}] = true
		}
	}
	for _, a := range p.Actions {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		res := Result{Action: a}
		res.Detail, res.Err = x.do(ctx, a)
		if report != nil {
			report(res)
		}
		if a.Op == OpRecover && len(x.extra) > 0 {
			for _, e := range x.extra {
				if report != nil {
					report(Result{Action: Action{Op: OpRecover, Kind: monitor.KindTooOld, Dir: monitor.Dir{Kind: monitor.DirCheckout, Queue: e.Queue}, Name: e.Name,
						Reason: "stale checkout that no live worker of this library holds: returned to its queue"}})
				}
			}
			x.extra = nil
		}
	}
	return nil
}

// Repair plans and applies, again while the last round made progress (an
// action of one round, such as recovering a checkout, can make another
// possible), and returns the plan of the spool as it is left: its Actions
// are what repair could not do, its Left what it does not repair.
func (r *Repairer) Repair(ctx context.Context, dir string, report func(Result)) (*Plan, error) {
	const maxRounds = 5
	for round := 0; ; round++ {
		p, err := r.Plan(ctx, dir)
		if err != nil || len(p.Actions) == 0 || round == maxRounds {
			return p, err
		}
		done := 0
		err = r.Apply(ctx, p, func(res Result) {
			if res.Err == nil {
				done++
			}
			if report != nil {
				report(res)
			}
		})
		if err != nil {
			return nil, err
		}
		if done == 0 {
			return r.Plan(ctx, dir)
		}
	}
}

type applier struct {
	r       *Repairer
	s       *spool.Spool
	d       *dirs
	recov   map[spool.Recovered]bool // Recover's result, once called
	planned map[spool.Recovered]bool // the plan's recover actions
	extra   []spool.Recovered        // recovered but not planned, to report
}

func changed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrChanged}, args...)...)
}

// old re-checks a file's age just before acting on it.
func (x *applier) old(f file) bool {
	return x.r.now().Sub(f.mtime) > x.r.Limits.MaxTmpFileAge
}

// locs returns the copies of name's metadata, as facts does.
func (x *applier) locs(name string) ([]loc, error) {
	pl := planner{d: x.d, queues: x.s.Queues()}
	for _, q := range pl.queues {
		x.d.addQueue(q)
	}
	f, err := pl.facts(name)
	return f.locs, err
}

// fresh stats name in dirfd and requires a regular file older than the tmp limit.
func (x *applier) fresh(dirfd int, what, name string) (file, error) {
	f, err := stat(dirfd, name)
	switch {
	case err != nil:
		return f, err
	case !f.exists:
		return f, nil
	case !f.regular:
		return f, changed("%s is not a regular file", what)
	case !x.old(f):
		return f, changed("%s is %s", what, whyYoung)
	}
	return f, nil
}

func (x *applier) quarantineDirs() (*queueDirs, error) {
	q := x.r.quarantine()
	if !x.s.HasQueue(q) {
		return nil, changed("no quarantine queue %s", q)
	}
	x.d.addQueue(q)
	qd := x.d.queues[q]
	if qd.q < 0 {
		return nil, fmt.Errorf("cannot open the quarantine queue %s", q)
	}
	return qd, nil
}

func (x *applier) do(ctx context.Context, a Action) (string, error) {
	name := a.Name
	switch a.Op {
	case OpCreateQueue:
		if err := x.s.AddQueue(name); err != nil {
			return "", err
		}
		x.d.addQueue(name)
		return "", nil

	case OpRegister:
		reg, err := stat(x.d.reg, name)
		if err != nil || reg.exists {
			return "", err // already registered: nothing to do
		}
		locs, err := x.locs(name)
		if err != nil {
			return "", err
		}
		if len(locs) == 0 {
			return "", changed("no entry %s any more", name)
		}
		for _, l := range locs {
			if !l.f.regular || !x.old(l.f) {
				return "", changed("%s is young or not a regular file", l.dir.Path(name))
			}
		}
		return "", ignoreExist(createEmpty(x.d.reg, name, 0o644))

	case OpDelete:
		fd := x.d.tmp
		if a.Dir.Kind == monitor.DirData {
			fd = x.d.data
			// A payload is deleted only while no metadata names it.
			locs, err := x.locs(name)
			if err != nil {
				return "", err
			}
			if len(locs) > 0 {
				return "", changed("an entry %s appeared", name)
			}
		}
		f, err := x.fresh(fd, a.Path(), name)
		if err != nil || !f.exists {
			return "", err
		}
		return "", unlink(fd, name)

	case OpRelease:
		reg, err := x.fresh(x.d.reg, a.Path(), name)
		if err != nil || !reg.exists {
			return "", err
		}
		locs, err := x.locs(name)
		if err != nil {
			return "", err
		}
		if len(locs) > 0 {
			return "", changed("an entry %s appeared", name)
		}
		for _, fd := range []int{x.d.tmp, x.d.data} {
			if f, err := stat(fd, name); err != nil || f.exists {
				return "", cmp.Or(err, changed("a file of %s appeared in .tmp or .data", name))
			}
		}
		return "", unlink(x.d.reg, name)

	case OpAdopt:
		return "", x.adopt(name)

	case OpSplit:
		return x.split(a.Dir.Queue, name)

	case OpRecover:
		if x.recov == nil {
			got, err := x.s.Recover(ctx, x.r.recoverAge(), spool.RecoverOptions{WorkersStopped: x.r.WorkersStopped})
			x.recov = map[spool.Recovered]bool{}
			for _, g := range got {
				k := spool.Recovered{Queue: g.Queue, Name: g.Name}
				x.recov[k] = true
				if !x.planned[k] {
					x.extra = append(x.extra, g)
				}
			}
			if err != nil && len(got) == 0 {
				x.extra = nil
				return "", err
			}
		}
		k := spool.Recovered{Queue: a.Dir.Queue, Name: name}
		if !x.recov[k] {
			return "", changed("not recovered: a live worker holds it, or it was finished or recovered meanwhile")
		}
		return "", nil

	case OpQuarantine:
		return "", x.quarantineEntry(ctx, a.Dir.Queue, name)
	}
	return "", fmt.Errorf("unknown action %q", a.Op)
}

func ignoreExist(err error) error {
	if isExist(err) {
		return nil
	}
	return err
}

// adopt makes a quarantine entry of name's leftover metadata (.tmp/NAME, or
// empty metadata) and payload (.data/NAME, or an empty one). The order
// (payload, metadata into the queue, registry file) leaves after each step
// a state that the next plan completes: orphaned leftovers again, then an
// unregistered queue entry with its payload, which is re-registered.
func (x *applier) adopt(name string) error {
	reg, err := stat(x.d.reg, name)
	if err != nil {
		return err
	}
	if reg.exists {
		return changed("%s was registered meanwhile", name)
	}
	locs, err := x.locs(name)
	if err != nil {
		return err
	}
	if len(locs) > 0 {
		return changed("an entry %s appeared", name)
	}
	tmp, err := x.fresh(x.d.tmp, spool.TmpDir+"/"+name, name)
	if err != nil {
		return err
	}
	data, err := x.fresh(x.d.data, spool.DataDir+"/"+name, name)
	if err != nil {
		return err
	}
	if !tmp.exists && !data.exists {
		return changed("%s has gone", name)
	}
	qd, err := x.quarantineDirs()
	if err != nil {
		return err
	}
	if !data.exists {
		if err := createEmpty(x.d.data, name, 0o666); err != nil {
			return fmt.Errorf("create an empty payload: %w", err)
		}
	}
	if tmp.exists {
		err = renameNew(x.d.tmp, name, qd.q, name)
	} else {
		err = createEmpty(qd.q, name, 0o666)
	}
	if err != nil {
		return fmt.Errorf("metadata into %s: %w", x.r.quarantine(), err)
	}
	return ignoreExist(createEmpty(x.d.reg, name, 0o644))
}

// split moves the waiting copy queue/name of a duplicated entry into the
// quarantine queue under a freshly reserved name, with a copy of the
// payload (or an empty one). Reservation and payload come first: killed
// before the move, they are a reservation with a payload and no metadata,
// which the next plan rolls back while the duplicate is still there.
func (x *applier) split(queue, name string) (string, error) {
	locs, err := x.locs(name)
	if err != nil {
		return "", err
	}
	var here *loc
	for i := range locs {
		if locs[i].dir == (monitor.Dir{Kind: monitor.DirQueue, Queue: queue}) {
			here = &locs[i]
		}
	}
	switch {
	case len(locs) < 2:
		return "", changed("%s is no longer duplicated", name)
	case here == nil:
		return "", changed("%s/%s has gone", queue, name)
	case !here.f.regular || !x.old(here.f):
		return "", changed("%s/%s is young or not a regular file", queue, name)
	}
	qd, err := x.quarantineDirs()
	if err != nil {
		return "", err
	}
	src := x.d.queues[queue]
	newName, err := x.s.Reserve(nil)
	if err != nil {
		return "", err
	}
	undo := func(err error) (string, error) {
		unlink(x.d.data, newName)
		unlink(x.d.reg, newName)
		return "", err
	}
	if err := copyNew(x.d.data, name, x.d.data, newName, 0o666); err != nil {
		return undo(fmt.Errorf("copy the payload: %w", err))
	}
	if err := claimRename(src.q, name, qd.q, newName); err != nil {
		if errors.Is(err, errBusy) || isNotExist(err) {
			err = changed("%s/%s: %v", queue, name, err)
		}
		return undo(err)
	}
	return "as " + x.r.quarantine() + "/" + newName, nil
}

// quarantineEntry moves the waiting entry queue/name, which has no payload,
// into the quarantine queue (a claim, as mv) and gives it an empty payload
// there (a checkout, as any worker). Killed between the two, the entry waits
// in quarantine without payload, which the next plan completes.
func (x *applier) quarantineEntry(ctx context.Context, queue, name string) error {
	q := x.r.quarantine()
	if queue != q {
		x.d.addQueue(queue)
		f, err := stat(x.d.queues[queue].q, name)
		switch {
		case err != nil:
			return err
		case f.exists && !f.regular:
			return changed("%s/%s is not a regular file", queue, name)
		case f.exists && !x.old(f) && !x.recov[spool.Recovered{Queue: queue, Name: name}]:
			// (Recover, just now, touched what it returned.)
			return changed("%s/%s is %s", queue, name, whyYoung)
		case !f.exists:
			return changed("%s/%s has gone", queue, name)
		}
		if data, err := stat(x.d.data, name); err != nil || data.exists {
			return cmp.Or(err, changed("%s has a payload now", name))
		}
		if !x.s.HasQueue(q) {
			return changed("no quarantine queue %s", q)
		}
		if err := x.s.Move(queue, name, q); err != nil {
			if errors.Is(err, spool.ErrCheckedOut) || errors.Is(err, spool.ErrBusy) || errors.Is(err, spool.ErrNotFound) {
				return changed("%v", err)
			}
			return err
		}
	}
	c, err := x.s.Checkout(ctx, q, name)
	if err != nil {
		if errors.Is(err, spool.ErrCheckedOut) || errors.Is(err, spool.ErrBusy) || errors.Is(err, spool.ErrNotFound) {
			return changed("%v", err)
		}
		return err
	}
	if data, err := stat(x.d.data, name); err != nil || data.exists {
		return errors.Join(err, c.Release())
	}
	if err := c.WriteData(bytes.NewReader(nil)); err != nil {
		return errors.Join(err, c.Release())
	}
	return c.Release()
}

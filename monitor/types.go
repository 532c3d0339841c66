package monitor

import (
	"log/slog"
	"time"

	"github.com/spool-agent/spool-agent/monitor/internal/index"
)

// Kind is the kind of a Problem. The first three are the reference's.
type Kind string

// Problem kinds.
const (
	KindTooOld      Kind = "too_old"
	KindOrphaned    Kind = "orphaned"
	KindDuplicated  Kind = "duplicated"
	KindMissingData Kind = "missing_data" // a queue or checkout entry with no .data file
	KindUnexpected  Kind = "unexpected"   // a directory or symlink where a file belongs, or an unknown directory at the root
	KindLimit       Kind = "limit"        // the spool holds more than a bound of Config allows the monitor to track (Dir says which)
)

// Kinds returns the kinds that exporters zero-fill, in a stable order:
// every Kind but KindLimit, which snapshots carry (in Problems, Alerting and
// EventsTotal) only once it occurs, and exporters export as they find it.
// The slice is the caller's.
func Kinds() []Kind {
	return []Kind{KindTooOld, KindOrphaned, KindDuplicated, KindMissingData, KindUnexpected}
}

// DirKind names a spool directory's role.
type DirKind string

// Directory roles.
const (
	DirRegistry DirKind = "registry"
	DirTmp      DirKind = "tmp"
	DirData     DirKind = "data"
	DirQueue    DirKind = "queue"
	DirCheckout DirKind = "checkout"
	DirRoot     DirKind = "root" // the spool directory itself (for unexpected entries)

	// The bounds of a limit problem (Config.MaxUnregistered, MaxQueues,
	// MaxWatches); its Name describes the bound.
	DirUnregistered DirKind = "unregistered" // files with no registry entry tracked
	DirQueues       DirKind = "queues"       // directories at the spool root
	DirWatches      DirKind = "watches"      // inotify watches
)

// DirKinds returns every DirKind, in a stable order (CompareDirs's). The
// slice is the caller's.
func DirKinds() []DirKind {
	return []DirKind{DirRegistry, DirTmp, DirData, DirQueue, DirCheckout, DirRoot, DirUnregistered, DirQueues, DirWatches}
}

// Dir is one directory of a spool: its role and, for queue and checkout
// directories, the queue.
type Dir struct {
	Kind  DirKind
	Queue string
}

// Problem is one inconsistency. Its identity, as in the reference, is
// (Kind, Dir, Name, ModTime, Dirs): touching a file makes a new problem.
type Problem struct {
	Kind    Kind
	Dir     Dir // for KindDuplicated: Dir{Kind: DirRegistry}
	Name    string
	ModTime time.Time
	Dirs    []Dir // KindDuplicated only: every directory that holds the name
}

// EventType says whether an Event starts or ends a problem's alert.
type EventType string

// Event types.
const (
	Start EventType = "start"
	End   EventType = "end"
)

// Event is a debounced change in the set of alerting problems.
type Event struct {
	Type    EventType
	Time    time.Time // the cycle's time; every event of a cycle has the same
	Problem Problem
}

// Limits are the age limits of the too_old checks. Ages are strict:
// a file is too old when now - mtime > limit, so a zero limit means any
// age (every file older than now), as in the reference and fsck. Start
// from DefaultLimits for the reference's defaults.
type Limits struct {
	MaxCheckedOutAge time.Duration            // DefaultLimits: 10m
	MaxTmpFileAge    time.Duration            // DefaultLimits: 10m
	MaxQueueAge      map[string]time.Duration // per queue; absent means no limit, zero any age
}

// Config configures a Monitor. Every field means what it says, zero
// included: start from DefaultConfig and change what differs. New refuses
// a zero CheckEvery or FullRescanEvery (a Config built from nothing)
// rather than guessing.
type Config struct {
	Limits           Limits        // zero ages mean any age
	CheckEvery       time.Duration // DefaultConfig: 15s; must be positive
	AlertAfterCycles int           // DefaultConfig: 2 (a problem alerts from its 3rd consecutive sighting); 0 alerts at the first
	FullRescanEvery  time.Duration // period of the full rescan in watch mode; DefaultConfig: 10m; must be positive
	DisableWatch     bool          // never use inotify: full scan every cycle

	// Bounds that keep the monitor's memory and inotify watches flat
	// whatever a spool holds (a flood of files or directories from a user
	// who can write in it). Past one the monitor reports a limit problem
	// and scans that spool in full every cycle rather than watching it;
	// each must be positive.
	MaxUnregistered int // names with no registry file tracked (in queues, checkouts, .data; .tmp files apart); DefaultConfig: 100,000
	MaxQueues       int // queues tracked, and other directories at the spool root; DefaultConfig: 1,000
	MaxWatches      int // inotify watches (4 + 2 per queue + 1 per root directory named like a queue); DefaultConfig: 4,096

	Now    func() time.Time // default time.Now
	Logger *slog.Logger     // default slog.Default()
	// Watcher chooses the change feed: "" the platform's fastest (raw
	// inotify on Linux, fsnotify elsewhere) unless the environment
	// variable SPOOL_AGENT_WATCHER says "inotify" or "fsnotify" (the test
	// suite forces the portable one that way); "inotify"; "fsnotify".
	Watcher string
	// After returns a channel that receives once d has passed; Run waits
	// on it between cycles. Default time.After; tests inject a fake clock.
	After func(d time.Duration) <-chan time.Time
}

// QueueStats are one queue's statistics.
type QueueStats struct {
	Queue            string
	Entries          int        // waiting entries: the queue's files that are not directories, symlinks or other non-regular files (those are unexpected problems), including any whose stat failed
	CheckedOut       int        // entries in .checkout, counted as Entries are
	OldestEntry      time.Time  // mtime of the oldest waiting entry; zero when none
	OldestCheckedOut time.Time  // mtime of the oldest checked-out entry; zero when none
	Arrivals         uint64     // entries seen arriving (through inotify) since the monitor started: files created in or moved into the queue, counted once per path per event batch (about 20 ms); none while not watching
	ages             index.Ages // for AgeBuckets
}

// Snapshot is one spool's state after a cycle (and, between cycles, after
// queue changes seen through inotify). It is immutable once published: do
// not modify it or its slices and maps. Time is when its statistics were
// taken (the cycle's time, or Config.Now at an event-driven update);
// Problems and Alerting are those of the last cycle.
type Snapshot struct {
	Name      string // the spool's name in the agent's configuration
	Dir       string
	Up        bool   // the last cycle could read the spool
	LastError string // the last cycle's error, "" if it succeeded
	Time      time.Time

	Queues          []QueueStats // sorted by queue
	RegistryEntries int
	TmpFiles        int
	DataBytes       int64
	// DataBytesPending: after a full scan the payloads' sizes are read
	// in the background, once the cycle's checks and queue statistics are
	// published; until then DataBytes counts only part of them and
	// exporters leave it out.
	DataBytesPending bool

	Problems []Problem // all problems found by the last cycle
	Alerting []Problem // problems alerting after debouncing
	// Tracked is the debouncing state: every problem counted, with its
	// count and whether it alerts, sorted by problem (what State carries
	// and a state file keeps).
	Tracked []TrackedProblem
	// EventsTotal counts events since the monitor started, by kind and type.
	EventsTotal map[Kind]map[EventType]uint64

	CycleDuration time.Duration
	LastSuccess   time.Time // zero before the first successful cycle
	Cycles        uint64
	FailedCycles  uint64
	FullScans     uint64
	Watching      bool // inotify is in use (false: full scan every cycle)
}

// AgeBuckets returns, for each bound, how many waiting entries of the queue
// are at most that old at now (cumulative, as a Prometheus histogram wants),
// and the sum of all their ages in seconds. Ages are now minus the file's
// mtime, at nanosecond precision; an mtime in the future counts as age 0.
// bounds must be sorted ascending. It does not touch the disk, and costs a
// binary search per bound plus one step per block of 256 entries, not one
// per entry.
func (q QueueStats) AgeBuckets(now time.Time, bounds []time.Duration) (cumulative []uint64, sumSeconds float64) {
	return q.ages.Buckets(now, bounds)
}

// Package monitor checks one spool for consistency (the reference
// multispool Monitor's fsck: files too old, orphaned, duplicated, plus
// missing data and unexpected files), debounces what it finds into Start and
// End events exactly as the reference daemon does, and keeps queue
// statistics. Each cycle's result is an immutable Snapshot that exporters
// read without touching the disk.
//
// # Checks
//
// One cycle finds these problems (Kind, and the Dir they are reported in):
//
//   - too_old: a .tmp file with now - mtime > MaxTmpFileAge; a checked-out
//     entry (<queue>/.checkout/<name>) with now - mtime > MaxCheckedOutAge;
//     an entry waiting in a queue that has a MaxQueueAge limit, beyond it.
//     Strictly greater, as in the reference.
//   - orphaned: a file in .tmp, .data, a queue or a checkout directory with
//     no .registry file of its name; a .registry file that no queue or
//     checkout directory holds (reported in the registry directory).
//   - duplicated: a registered name held by two or more queue or checkout
//     directories; Dirs lists them sorted by queue name, each queue before
//     its checkout directory. (The reference lists them in the order its
//     program declares its queues, which the spool on disk does not
//     record: the same directories, perhaps in another order.) Dir is the
//     registry.
//   - missing_data (new): a queue or checkout file with no .data file of its
//     name, whether or not it is registered (the reference does not check).
//   - unexpected (new): a directory, symlink or other non-regular file where
//     a file belongs (in .registry, .tmp, .data, a queue or a checkout
//     directory), reported in that directory; and, at the spool root, any
//     directory that is neither a queue (a directory holding .checkout/) nor
//     .registry, .tmp or .data (lost+found excepted), and any symlink.
//     Regular files and other special files at the root are ignored: the
//     reference ignores them and operators keep notes and lock files there.
//     Also a file with more than one link in a queue or checkout directory
//     (when a scan or an event stats it): the reference would touch the
//     file it shares its inode with.
//   - limit (new): the spool holds more than a bound of Config lets the
//     monitor track (Dir says which, Name describes the bound):
//     DirUnregistered, more names with no registry file than
//     MaxUnregistered (in .data and the queues and checkouts, or in .tmp);
//     DirQueues, more queues (or other directories at the root) than
//     MaxQueues; DirWatches, more inotify watches needed than MaxWatches.
//     See Bounds below.
//
// Names are read as the reference reads them: every name a directory holds
// but "." and "..", those starting with '.' and those up to the file
// system's 255 bytes included (the strict validation of the spool package
// applies to names it creates, not to names it finds). At the root,
// .registry, .tmp and .data are the spool's directories and a directory
// with a valid queue name holding .checkout is a queue. As in the
// reference, the name .checkout is skipped in every directory, and a
// misplaced directory or symlink still counts as a file for the other
// checks (so an unregistered directory in a queue is both orphaned and
// unexpected). A problem's ModTime is the mtime of the file concerned (of
// the registry file for orphaned registry files and duplicates); unexpected
// problems have a zero ModTime, since what is wrong is the type, which a
// touch does not change.
//
// A problem's identity is (Kind, Dir, Name, ModTime, Dirs), as in the
// reference: touching a file makes it a new problem (see Problem.Key).
// Problems are sorted by CompareProblems.
//
// An unreadable directory or file makes the cycle fail (it is counted and
// logged with the path) without hiding the problems found elsewhere; checks
// whose answer depends on the unreadable part are skipped rather than
// guessed: an unreadable .registry skips every orphaned check of the other
// directories, an unreadable queue or checkout directory skips the orphaned
// registry check, an unreadable .data skips missing_data.
//
// # Debouncing
//
// Exactly the reference's rule. Every problem found in a cycle has its count
// incremented (from 0 if it was not found in the previous cycle); a problem
// not found in a cycle is forgotten, count and all. The alerting set is the
// problems whose count is greater than AlertAfterCycles. A cycle emits an
// End event for each problem that left the alerting set, then a Start event
// for each that joined it, each group sorted, all stamped with the cycle's
// time (Config.Now at the cycle's start). So with AlertAfterCycles = n a
// problem starts alerting on its (n+1)th consecutive sighting: with the
// default 2 on the third cycle in a row that finds it (about 30 s at the
// default 15 s interval), with 0 on the first. It ends on the first cycle
// that does not find it. The reference's flag help ("alert after problem is
// seen INT times") is off by one; this is the rule it implements.
//
// A cycle that cannot read the spool at all leaves the debounce state as it
// was and emits nothing. A partial cycle, one that could not read part of
// the spool (a directory it could not list, a file it could not stat),
// fails (the error is counted and logged) but debounces what it did read;
// the problems that the unreadable part decides are neither counted nor
// forgotten: each keeps its count and its alerting state, whether or not
// the cycle found it, so nothing starts or ends because of a read error.
// That part is: every problem in an unlistable directory or about an
// unstattable file; every orphaned problem when .registry cannot be listed;
// every missing_data problem when .data cannot; orphaned and duplicated
// registry files when a queue or checkout directory cannot; everything
// when the error cannot be placed. (The reference abandons the whole
// cycle instead, so that an error there hides the spool's other changes.)
//
// # Scale
//
// The monitor keeps an index of the spool (package monitor/internal/index)
// fed by inotify (fsnotify off Linux, or with Config.Watcher), which it reads in
// batches (the first event of a burst, then 20 ms later all that queued up:
// two wake-ups per batch whatever the event rate): it watches .registry,
// .tmp, .data, the root, every queue directory and its .checkout, and per
// batch stats each file concerned once. Queue statistics follow the events:
// a change after a quiet spell is published in a fresh snapshot within
// about 20 ms, and a burst of changes gives at most one snapshot per 100 ms. A cycle then
// costs time in proportion to the problems and the entries in transit, not
// to the spool: the entries whose registry, data and queue files are not
// exactly one of each are kept apart, and each queue's entries are kept
// sorted by mtime, so that the too-old ones are a prefix and the oldest is
// the first.
//
// A cold full scan lists every directory and stats the queue, checkout and
// .tmp files for their mtimes and the .data files for their sizes (never the
// registry files), in inode order and in parallel; it builds the index at
// the first cycle, at once after an inotify overflow or a lost watch (a
// watched directory removed or moved) or a change of the spool's layout (a
// queue added), and after an error until the error clears. The periodic
// full rescan (every FullRescanEvery) of a spool whose index inotify has
// kept current is warm: it lists every directory again and reconciles the
// index in place, statting only the files it does not know and forgetting
// those the listing no longer shows, so it costs a listing of the spool,
// not a stat of every file. It repairs creations and removals whose events
// were lost unnoticed; it trusts the mtimes and sizes the index holds (they
// come from stats made after each file's last event). Where inotify cannot
// be used (DisableWatch, the inotify limits reached, a network or FUSE file
// system on which remote changes raise no events) every cycle is a cold
// full scan.
//
// # Bounds
//
// Whatever a spool holds, the monitor's memory and inotify watches stay
// within Config's bounds (a user who can write in a spool could otherwise
// exhaust the agent, or every inotify watch of its user): it tracks at
// most MaxUnregistered unregistered names (.tmp files apart, the same
// number), the first MaxQueues queues and other root directories by name,
// and watches a spool only if that takes at most MaxWatches watches. Past
// a bound it reports a limit problem (which debounces and alerts like any
// other), keeps what fits (so the problems and statistics it reports are
// a part of the spool's), and scans the spool in full every cycle rather
// than watching it; the first scan that finds the spool within its bounds
// again ends the problem, and the next one watches it again.
//
// Scans never leave the spool: they open its root once (following a
// symlink there, the operator's choice) and every directory below relative
// to that descriptor, refusing a symlink on the way (openat2 with
// RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_XDEV, or O_NOFOLLOW one
// component at a time where the kernel lacks it), so a spool directory
// swapped for a symlink fails to be read (a partial cycle) instead of
// listing another directory; the registry and data files a problem needs
// are statted the same way. Inotify watches are added with IN_DONT_FOLLOW
// and IN_ONLYDIR. The stats that follow an inotify event still go by path
// (without following the file's own symlink): a swap there can show the
// metadata of an outside file until the next full scan, never change it.
package monitor

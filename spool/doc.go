// Package spool reads and writes multispool spools: directory-backed sets of
// named queues, on-disk compatible with Jane Street's OCaml multispool.
//
// A spool directory holds:
//
//	.registry/<name>          empty file: the name's reservation, for the entry's whole life
//	.tmp/                     staging for metadata writes
//	.data/<name>              the entry's payload
//	<queue>/<name>            the entry's metadata: the entry waits in <queue>
//	<queue>/.checkout/<name>  the entry's metadata: a worker holds the entry
//
// Every state change that matters is a single rename, so it is atomic: an
// entry appears in a queue, is claimed by exactly one worker (rename into
// .checkout), and moves between queues. Durability (which fsyncs are issued)
// is chosen per spool, see [Durability].
//
// Beyond the reference this package validates the names it creates (and
// reads every name the reference can write, see [ValidateExistingName]),
// never overwrites a live entry (renames into queues use RENAME_NOREPLACE on
// Linux, RENAME_EXCL or link-then-unlink elsewhere),
// removes idempotently without touching entries that others hold, bounds
// reservation retries, concurrent file operations and the metadata it reads
// ([Options].MaxMetadataSize), fsyncs directories when asked to, and lets
// readers be closed. Like the reference it creates directories 0777, files
// 0666 and registry files 0644, minus the umask, and cannot check out an
// entry without its registry file. A checkout holds an flock on its file
// from before the file leaves the queue until it leaves .checkout, so
// [Spool.Recover] never steals an entry from a live worker of this package;
// workers of the OCaml reference take no lock, and beside them only the age
// protects (see [MinRecoverAge]). Readers share one watcher per spool
// (inotify on Linux, fsnotify elsewhere), dequeue one producer's entries in
// creation order, and fall back to polling where a directory cannot be
// watched. [Typed] adds typed metadata through a [Codec].
//
// Everything inside a spool is treated as hostile input. [Open] and
// [Create] open the spool root once and its directories relative to it
// (never through a symbolic link; on Linux never across a mount either:
// openat2 with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_XDEV), and every later
// create, rename, unlink, stat, touch, open and listing is made relative to
// those descriptors, so a directory swapped for a symbolic link cannot
// redirect an operation outside the spool; on Linux readers watch the
// directories through the descriptors too. Metadata reads are bounded, and files with
// other hard links are never touched. [Spool.Close] releases the
// descriptors.
package spool

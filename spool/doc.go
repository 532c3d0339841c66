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
// Beyond the reference this package validates names, never overwrites a live
// entry (renames into queues use RENAME_NOREPLACE), removes idempotently without
// touching entries that others hold, bounds reservation retries and concurrent
// file operations, fsyncs directories when asked to, and lets readers be
// closed. A checkout holds an flock on its file from before the file leaves
// the queue until it leaves .checkout, so [Spool.Recover] never steals an
// entry from a live worker of this package; workers of the OCaml reference
// take no lock, and beside them only the age protects (see [MinRecoverAge]). Readers share one inotify instance
// per spool, dequeue one producer's entries in creation order, and fall back
// to polling where inotify is unavailable. [Typed] adds typed metadata
// through a [Codec]. Every file-system call goes through the [FS] seam so
// that tests can inject faults.
package spool

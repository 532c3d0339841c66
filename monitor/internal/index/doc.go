// Package index is the monitor's storage engine: a picture of one spool
// (every name of its registry, data, tmp, queue and checkout directories)
// that a million entries fit in, kept current from a change feed so that a
// check cycle costs time in proportion to the problems, not to the spool.
//
//   - Scan builds an Index from scratch (the cold full scan: every
//     directory listed, in parallel, and the queue, .tmp and .data files
//     statted in inode order), within bounds that keep its memory flat
//     whatever a hostile spool holds (ScanOptions, Over).
//   - A Feed reports changes in batches (batched raw inotify on Linux,
//     fsnotify elsewhere or when forced, see NewFeed); Apply turns each
//     changed path into index changes, statting the file once.
//   - Rescan reconciles an Index that a feed kept current with a fresh
//     listing (the warm periodic rescan), statting only what it does not
//     know.
//   - The monitor reads the Index through EachSuspect, EachTmp, Older and
//     friends to find problems, and Publish to publish statistics.
//
// Entries are packed (32 bytes and the name), names read by a scan live in
// arenas, each queue's files are kept in a sorted set of blocks by mtime
// (the too-old ones are a prefix, the oldest is first), and published Ages
// share blocks with the set copy-on-write. Everything read from the spool
// is opened relative to the spool root's descriptor, never through a
// symlink (openat2 RESOLVE_BENEATH where the kernel has it).
package index

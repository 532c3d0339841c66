package spool

import "errors"

// Sentinel errors. Errors returned by this package wrap them (test with errors.Is)
// together with the path or name concerned.
var (
	// ErrInvalidName reports a queue or entry name that could escape the spool
	// or collide with the spool's own directories.
	ErrInvalidName = errors.New("invalid name")
	// ErrNotSpool reports a directory that is not a spool (and, when creating,
	// is not empty either).
	ErrNotSpool = errors.New("not a spool")
	// ErrUnknownQueue reports a queue that the spool does not have.
	ErrUnknownQueue = errors.New("unknown queue")
	// ErrNotFound reports an entry that is not (or no longer) where it was looked for.
	ErrNotFound = errors.New("entry not found")
	// ErrExists reports a name that is already in use by a live entry or a reservation.
	ErrExists = errors.New("entry already exists")
	// ErrCheckedOut reports an entry that another worker holds checked out.
	ErrCheckedOut = errors.New("entry is checked out")
	// ErrLost reports a checkout that is no longer held: recovery returned it
	// to its queue, or something removed it behind the holder's back.
	ErrLost = errors.New("checkout lost")
	// ErrReserveExhausted reports that the name generator produced only taken
	// names within the bounded number of attempts.
	ErrReserveExhausted = errors.New("no free name after bounded attempts")
	// ErrSpoolClosed reports use of a closed spool.
	ErrSpoolClosed = errors.New("spool closed")
	// ErrClosed reports use of a closed reader.
	ErrClosed = errors.New("reader closed")
	// ErrReadOnly reports a change requested of a spool opened with
	// Options.ReadOnly, or a spool directory that this process cannot write.
	ErrReadOnly = errors.New("spool is read-only")
	// ErrBusy reports an entry that stayed locked by another worker while a
	// claim waited for it: another worker is claiming it or handing it back.
	ErrBusy = errors.New("entry is busy")
	// ErrUnregistered reports an entry without its registry file: the
	// reference cannot check it out (its checkout touches the registry file
	// first), so neither does this package; it stays where it is, an orphan
	// for fsck.
	ErrUnregistered = errors.New("entry has no registry file")
	// ErrTooLarge reports a metadata file larger than
	// Options.MaxMetadataSize. The entry is left where it was.
	ErrTooLarge = errors.New("metadata too large")
	// ErrLinked reports a file with more than one hard link: touching it
	// would touch a file outside the spool, so the entry is left alone.
	ErrLinked = errors.New("file has more than one hard link")
	// ErrRecoverTooYoung reports a Recover asked to take checkouts younger
	// than MinRecoverAge without RecoverOptions.WorkersStopped.
	ErrRecoverTooYoung = errors.New("recover age below MinRecoverAge without RecoverOptions.WorkersStopped")
)

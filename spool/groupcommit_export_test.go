package spool

// GroupCommitTest configures a spool's group commit for the batch tests
// (groupcommit_faults_test.go).
type GroupCommitTest struct {
	// Syncfs: the spool's operations join syncfs rounds, even alone and
	// whatever a round costs (the FS must offer Syncfs); otherwise each
	// directory's fsyncs are shared, the files fsynced one by one.
	Syncfs bool
	// Slots bounds the barriers of one kind in flight (0: the default).
	Slots int
	// Joined is called with the number of operations waiting for the
	// next barrier each time one joins it.
	Joined func(waiters int)
}

// SetGroupCommit applies gc to s, before s's first operation.
func SetGroupCommit(s *Spool, gc GroupCommitTest) {
	c := &s.commit
	c.syncfsSound = func() bool { return gc.Syncfs }
	c.alwaysShare = gc.Syncfs
	c.slots = gc.Slots
	c.joined = gc.Joined
	c.init(s.fs)
}

// GroupCommitStats returns the barriers s ran and the operations served
// by a barrier another operation ran.
func GroupCommitStats(s *Spool) (rounds, shared uint64) { return s.commit.stats() }

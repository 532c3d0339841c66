package spool

// GroupCommitTest configures a spool's group commit for the batch tests
// (groupcommit_faults_test.go).
type GroupCommitTest struct {
	// Syncfs: the spool's operations join syncfs rounds, even alone and
	// whatever a round costs (the FS must offer Syncfs); otherwise each
	// directory's fsyncs are shared, the files fsynced one by one.
	Syncfs bool
	// Joined is called with the number of operations waiting for the
	// next barrier each time one joins it.
	Joined func(waiters int)
}

// SetGroupCommit applies gc to s. Call it before s's operations run
// concurrently; it overrides what the spool chose on first use.
func SetGroupCommit(s *Spool, gc GroupCommitTest) {
	c := &s.commit
	c.syncfsSound = func() bool { return gc.Syncfs }
	c.syncfsFS = func(int) bool { return gc.Syncfs }
	c.joined = gc.Joined
	c.init(s.fs, s.root.fd) // a no-op if an operation already committed
	c.alwaysShare = gc.Syncfs
	c.batch = nil
	if b, ok := s.fs.(batchFS); ok && gc.Syncfs {
		c.batch = b
	}
	c.fs.joined = gc.Joined
}

// GroupCommitStats returns the barriers s ran and the operations served
// by a barrier another operation ran.
func GroupCommitStats(s *Spool) (rounds, shared uint64) { return s.commit.stats() }

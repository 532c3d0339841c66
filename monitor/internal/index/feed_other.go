//go:build !linux

package index

// defaultFeed is the platform's fastest feed.
const defaultFeed = FeedFsnotify

func startInotify(FeedOptions) (Feed, error) { return nil, ErrNoFeed }

//go:build !linux

package index

// Watchable reports whether a change feed can be trusted on dir, and why
// not. Off Linux every file system is trusted: the periodic full rescan
// repairs what a feed misses.
func Watchable(dir string) (bool, string) { return true, "" }

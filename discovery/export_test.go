package discovery

import "maps"

// watchedCopy is what the watcher watches; read only once Run has settled.
func (w *Watcher) watchedCopy() map[string]role {
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.watched)
}

// reported reports whether the last change reported is the current state
// of patterns.
func (w *Watcher) reported(patterns ...string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last == fingerprint(patterns, "")
}

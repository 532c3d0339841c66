package discovery

import "maps"

// watchedCopy is what the watcher watches; read only once Run has settled.
func (w *Watcher) watchedCopy() map[string]role {
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.watched)
}

package spool

import "errors"

// fsnotifyHub is the portable watcher (not built yet: readers poll).
type fsnotifyHub struct{ s *Spool }

func (h *fsnotifyHub) subscribe(r *Reader) (bool, error) {
	h.s.warnPolling(r.dir, errors.New("no portable watcher yet"))
	return false, nil
}
func (h *fsnotifyHub) unsubscribe(*Reader)           {}
func (h *fsnotifyHub) catchUp(*Reader) (bool, error) { return false, nil }
func (h *fsnotifyHub) countWaiter(int)               {}
func (h *fsnotifyHub) taken(string, string) bool     { return false }
func (h *fsnotifyHub) markTaken(string, string)      {}

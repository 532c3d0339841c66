package index

import (
	"fmt"
	"time"

	"github.com/spool-agent/spool-agent/internal/fswatch"
)

// fsnotifyFeed is the portable feed, over internal/fswatch (fsnotify:
// kqueue on the BSDs and macOS, inotify on Linux where it can be forced
// for tests). fsnotify follows a symlink it is asked to watch; the scans
// refuse one, so a swapped directory still fails the next scan.
type fsnotifyFeed struct {
	w         *fswatch.Watcher
	batch     []Event
	readFault func() error // see FeedOptions
}

func newFsnotifyFeed(opt FeedOptions) (Feed, error) {
	w, err := fswatch.New()
	if err != nil {
		return nil, err
	}
	return &fsnotifyFeed{w: w, readFault: opt.ReadFault}, nil
}

func (f *fsnotifyFeed) Add(dir string) error { return f.w.Add(dir) }

func (f *fsnotifyFeed) Watches() int { return f.w.Len() }

func (f *fsnotifyFeed) Close() error { return f.w.Close() }

// Run delivers fswatch's batches, merged over gather after the first.
// Errors that do not stop the watcher (a file kqueue could not open) are
// not reported: the periodic rescan repairs what they hide.
func (f *fsnotifyFeed) Run(gather time.Duration, onBatch func([]Event), onError func(error)) {
	events := f.w.Events()
	for {
		b, ok := <-events
		if !ok {
			return
		}
		if f.readFault != nil {
			if err := f.readFault(); err != nil {
				onError(fmt.Errorf("reading fsnotify: %w", err))
				return
			}
		}
		var overflow, lost bool
		f.batch = f.add(f.batch[:0], b, &overflow, &lost)
		if gather > 0 {
			time.Sleep(gather)
		}
	drain:
		for len(f.batch) < maxBatch {
			select {
			case b, ok = <-events:
				if !ok {
					return
				}
				f.batch = f.add(f.batch, b, &overflow, &lost)
			default:
				break drain
			}
		}
		if len(f.batch) > 0 {
			onBatch(f.batch)
		}
		if overflow {
			onError(ErrOverflow)
		}
		if lost {
			onError(ErrWatchLost)
		}
	}
}

// add appends b's events to batch, noting lost events and watches.
func (f *fsnotifyFeed) add(batch []Event, b []fswatch.Event, overflow, lost *bool) []Event {
	for _, ev := range b {
		if ev.Op&fswatch.Rescan != 0 {
			*overflow = true
			continue
		}
		var o Op
		if ev.Op&fswatch.Create != 0 {
			o |= OpCreate
		}
		if ev.Op&fswatch.Write != 0 {
			o |= OpWrite
		}
		if ev.Op&fswatch.Remove != 0 {
			o |= OpRemove
		}
		if ev.Op&fswatch.Rename != 0 {
			o |= OpRename
		}
		if ev.Op&fswatch.Attrib != 0 {
			o |= OpChmod
		}
		if o == 0 {
			continue
		}
		path := ev.Dir
		if ev.Name == "" {
			if o&(OpRemove|OpRename) != 0 {
				*lost = true // the directory itself went: its watch with it
			}
		} else {
			path = ev.Dir + "/" + ev.Name
		}
		batch = append(batch, Event{Path: path, Op: o})
	}
	return batch
}

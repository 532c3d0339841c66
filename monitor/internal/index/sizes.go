package index

import (
	"cmp"
	"context"
	"slices"
	"sync"

	"github.com/spool-agent/spool-agent/spool"
	"golang.org/x/sys/unix"
)

// pendingSize is a data file whose size a scan left for FillSizes.
type pendingSize struct {
	name string // in the scan's arena, followed there by a NUL
	ino  uint64
	id   uint32 // its entry when the scan found it registered (noID: look the name up); an event may have freed or reused it since
}

// fillChunk is how many data files FillSizes stats between two takings of
// the index's lock: the index stays in use meanwhile.
const fillChunk = 4096

// SizesPending reports whether some data files' sizes are not known yet
// (a scan with SizesLater whose FillSizes has not completed).
func (ix *Index) SizesPending() bool { return ix.unsized > 0 }

// FillSizes stats the data files whose size a scan with SizesLater left
// unknown, in inode order, a chunk at a time outside mu, and records each
// chunk under mu, which is the lock the index's user holds while using it.
// current, called with mu held, reports whether ix is still the index in
// use: FillSizes stops when it is not. A size that an event or a rescan
// recorded meanwhile came from a later stat and is kept. A data file gone
// since the scan counts as empty until its event (or the next scan) says
// it is gone; one whose stat fails counts as empty and its error is kept
// for the next cycle, as for an event's stat.
func (ix *Index) FillSizes(ctx context.Context, mu sync.Locker, current func() bool) error {
	mu.Lock()
	pending := ix.pendingSizes
	ix.pendingSizes = nil
	mu.Unlock()
	if len(pending) == 0 {
		return nil
	}
	// In inode order, as the scan stats (sorted here, not in the scan,
	// whose time the cycle waits for).
	slices.SortFunc(pending, func(a, b pendingSize) int { return cmp.Compare(a.ino, b.ino) })
	path := ix.dir + "/" + spool.DataDir
	root, err := openRoot(ix.dir, nil)
	if err != nil {
		return err
	}
	defer unix.Close(root)
	fd, err := openBeneath(root, spool.DataDir, path, nil)
	if err != nil {
		return pathErr("open", path, err)
	}
	defer unix.Close(fd)
	type result struct {
		size int64
		err  error
	}
	results := make([]result, fillChunk)
	var st unix.Stat_t
	for start := 0; start < len(pending); start += fillChunk {
		if err := ctx.Err(); err != nil {
			return err
		}
		part := pending[start:min(start+fillChunk, len(pending))]
		for i, p := range part {
			results[i] = result{}
			switch err := fstatatZ(fd, p.name, &st); {
			case err == nil && isReg(uint32(st.Mode)):
				results[i].size = st.Size
			case err != nil && err != unix.ENOENT:
				results[i].err = pathErr("stat", path+"/"+p.name, err)
			}
		}
		mu.Lock()
		if !current() {
			mu.Unlock()
			return nil
		}
		for i, p := range part {
			next := p.id // where the scan found it (noID: past every entry)
			id, ok := ix.find(p.name, &next)
			if !ok || ix.ents[id].regData&dataPresent == 0 || ix.sizeKnown(id) {
				continue
			}
			if r := results[i]; r.err != nil {
				ix.statErrs[path+"/"+p.name] = r.err
			}
			ix.setDataSize(id, results[i].size)
			ix.dataBytes += results[i].size
		}
		mu.Unlock()
	}
	return nil
}

package syncbuf

import (
	"strings"
	"sync"
	"testing"
)

// TestConcurrent writes from many goroutines while reading (run with -race):
// every write is kept whole.
func TestConcurrent(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				b.Write([]byte("line\n"))
				_ = b.String()
			}
		})
	}
	wg.Wait()
	if got := b.String(); got != strings.Repeat("line\n", 800) {
		t.Errorf("%d bytes, want %d whole lines", len(got), 800)
	}
}

package syncio_test

import (
	"bytes"
	"strings"
	"sync"
	"testing"

	"github.com/pimguard/pimguard/internal/syncio"
)

// Concurrent writes are kept whole (run with -race).
func TestConcurrentWrites(t *testing.T) {
	var under bytes.Buffer
	w := &syncio.Writer{W: &under}
	var b syncio.Buffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				_, _ = w.Write([]byte("line\n"))
				_, _ = b.Write([]byte("line\n"))
				_ = b.String()
			}
		}()
	}
	wg.Wait()
	for name, s := range map[string]string{"Writer": under.String(), "Buffer": b.String()} {
		if n := strings.Count(s, "line\n"); n != 800 || len(s) != 800*5 {
			t.Errorf("%s: %d whole lines of %d bytes, want 800", name, n, len(s))
		}
	}
}

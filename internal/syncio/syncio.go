// Package syncio has the one concurrency-safe writer and buffer of the
// repository's programs and tests: a logger, background goroutines and a
// test all write to the same place (a process's stderr, a test's capture).
package syncio

import (
	"bytes"
	"io"
	"sync"
)

// Writer serialises writes to W, which need not be safe for concurrent use
// (a test's bytes.Buffer).
type Writer struct {
	mu sync.Mutex
	W  io.Writer
}

func (s *Writer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.W.Write(p)
}

// Buffer is a bytes.Buffer safe for concurrent use. The zero value is
// empty and ready.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

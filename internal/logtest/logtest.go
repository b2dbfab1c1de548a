// Package logtest records slog records for tests that count log lines
// ("one line per transition"): one recorder for every package.
package logtest

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
)

// Recorder is a slog.Handler that keeps "LEVEL message" of every record it
// handles, at every level. It is safe for concurrent use.
type Recorder struct {
	mu   sync.Mutex
	msgs []string
}

// Logger returns a logger writing to r.
func (r *Recorder) Logger() *slog.Logger { return slog.New(r) }

func (r *Recorder) Enabled(context.Context, slog.Level) bool { return true }

func (r *Recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, rec.Level.String()+" "+rec.Message)
	return nil
}

func (r *Recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *Recorder) WithGroup(string) slog.Handler      { return r }

// All returns the records so far, "LEVEL message" each.
func (r *Recorder) All() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.msgs)
}

// Count returns how many records contain substr.
func (r *Recorder) Count(substr string) int {
	n := 0
	for _, m := range r.All() {
		if strings.Contains(m, substr) {
			n++
		}
	}
	return n
}

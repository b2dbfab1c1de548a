package breaker_test

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"testing"

	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/graphcheck/breaker"
	"github.com/pimguard/pimguard/middleware"
)

// watchingSource is a Source that reads a fixed set of groups, like
// msgraph's Snapshot, and records which it was told about.
type watchingSource struct {
	mu      sync.Mutex
	watched []string
}

func (w *watchingSource) Lookup(context.Context, graphcheck.Principal) (*graphcheck.State, error) {
	return nil, graphcheck.ErrOutage
}

func (w *watchingSource) WatchGroups(ids ...string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.watched = append(w.watched, ids...)
}

// A Guard in front of the breaker still tells the wrapped Source which
// groups its GroupMember and GroupOwner requirements name.
func TestWatchGroupsPassesThrough(t *testing.T) {
	const g1, g2 = "6f7a8b9c-0d1e-4f2a-9b3c-4d5e6f7a8b9c", "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d"
	src := &watchingSource{}
	guard := middleware.MustNewGuard(middleware.GuardConfig{Source: breaker.New(src, breaker.Config{})})
	guard.Require(middleware.AnyOf(middleware.GroupMember(g1), middleware.GroupOwner(g2)))(http.NotFoundHandler())
	src.mu.Lock()
	defer src.mu.Unlock()
	slices.Sort(src.watched)
	if !slices.Equal(src.watched, []string{g1, g2}) {
		t.Fatalf("watched %v, want %v", src.watched, []string{g1, g2})
	}
}

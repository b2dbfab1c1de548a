package middleware

import (
	"context"

	"github.com/pimguard/pimguard/graphcheck"
)

type liveStateKey struct{}

// ContextWithLiveState returns a copy of ctx carrying s. [Guard.Require] and
// [Guard.Load] call it before calling the protected handler; tests of
// handlers may call it directly.
func ContextWithLiveState(ctx context.Context, s *graphcheck.State) context.Context {
	return context.WithValue(ctx, liveStateKey{}, s)
}

// LiveStateFromContext returns the principal's live PIM state that a
// [Guard] used to allow the request: what Graph reported at s.FetchedAt,
// possibly served from the cache or, with stale-if-error, after a failed
// refresh. It is absent when no Guard ran, or when the route's requirement
// needed no live state (only [AppRole] and [Scope]). The State is shared:
// treat it as read-only. Its assignments are not filtered by time; use
// its ActiveRoles and ActiveGroups methods to list what is active at an
// instant.
func LiveStateFromContext(ctx context.Context) (*graphcheck.State, bool) {
	s, ok := ctx.Value(liveStateKey{}).(*graphcheck.State)
	return s, ok && s != nil
}

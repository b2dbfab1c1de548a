package middleware

import (
	"context"
	"time"

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
// [ActiveRoles] and [ActiveGroups] to list what is active at an instant.
func LiveStateFromContext(ctx context.Context) (*graphcheck.State, bool) {
	s, ok := ctx.Value(liveStateKey{}).(*graphcheck.State)
	return s, ok && s != nil
}

// ActiveRoles returns the role assignments of s active at now (start <= now
// < end), in the State's order, each with its scope, end time and, for a
// role held through a role-assignable group, ViaGroupID. Pass the clock given
// to [GuardConfig.Now] (time.Now in production). A nil s has none.
func ActiveRoles(s *graphcheck.State, now time.Time) []graphcheck.RoleAssignment {
	if s == nil {
		return nil
	}
	var out []graphcheck.RoleAssignment
	for _, r := range s.Roles {
		if r.ActiveAt(now) {
			out = append(out, r)
		}
	}
	return out
}

// ActiveGroups returns the PIM-for-Groups assignments (member or owner) of s
// active at now, in the State's order. A nil s has none.
func ActiveGroups(s *graphcheck.State, now time.Time) []graphcheck.GroupMembership {
	if s == nil {
		return nil
	}
	var out []graphcheck.GroupMembership
	for _, g := range s.Groups {
		if g.ActiveAt(now) {
			out = append(out, g)
		}
	}
	return out
}

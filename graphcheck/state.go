package graphcheck

import (
	"slices"
	"strings"
	"time"
)

// TenantScope is the directoryScopeId of a tenant-wide role assignment.
const TenantScope = "/"

// Assignment types as Graph reports them (the documentation shows both
// "Assigned" and "assigned": compare with strings.EqualFold).
const (
	AssignmentAssigned  = "Assigned"  // permanent or time-bound assignment
	AssignmentActivated = "Activated" // PIM activation of an eligibility
)

// PIM-for-Groups access IDs.
const (
	AccessMember = "member"
	AccessOwner  = "owner"
)

// Window is a time window [Start, End). A zero Start means "since before
// anyone asked"; a zero End means permanent.
type Window struct {
	Start time.Time
	End   time.Time
}

// ActiveAt reports whether t falls inside the window: Start <= t < End. An
// assignment is no longer active at the very instant of its endDateTime.
func (w Window) ActiveAt(t time.Time) bool {
	return (w.Start.IsZero() || !t.Before(w.Start)) && (w.End.IsZero() || t.Before(w.End))
}

// RoleAssignment is one active directory-role assignment schedule instance
// (Graph's unifiedRoleAssignmentScheduleInstance), held directly or through
// a role-assignable group.
type RoleAssignment struct {
	// RoleDefinitionID is the role's ID; for built-in roles it equals the
	// template ID found in the wids claim. Lower case.
	RoleDefinitionID string
	// DirectoryScopeID is "/" (tenant-wide) or "/administrativeUnits/{id}".
	DirectoryScopeID string
	// AppScopeID is the application scope, usually empty.
	AppScopeID string
	// AssignmentType is "Assigned" or "Activated".
	AssignmentType string
	// ViaGroupID is the role-assignable group that holds the assignment, or
	// empty for an assignment to the principal itself.
	ViaGroupID string
	Window
}

// GroupMembership is one active PIM-for-Groups assignment instance
// (privilegedAccessGroupAssignmentScheduleInstance) of the principal.
type GroupMembership struct {
	// GroupID is the group's object ID. Lower case.
	GroupID string
	// AccessID is "member" or "owner".
	AccessID string
	// AssignmentType is "Assigned" or "Activated".
	AssignmentType string
	Window
}

// State is a principal's live PIM state as fetched from Graph at FetchedAt.
// It holds only assignments that were active then; whether each is still
// active is decided per request with the methods taking a time. A State is
// shared by concurrent requests: treat it as read-only.
type State struct {
	TenantID  string
	ObjectID  string
	Roles     []RoleAssignment
	Groups    []GroupMembership
	FetchedAt time.Time

	// Account is the principal's account when the lookup was asked for it
	// ([NeedAccount]); nil otherwise.
	Account *Account
	// Risk is the user's Identity Protection risk when the lookup was
	// asked for it ([NeedRisk]); nil otherwise, and for service principals.
	Risk *Risk

	// CheckedGroups are the groups whose live membership the lookup
	// checked: the IDs of [Principal.CheckGroups] (lower case, sorted);
	// nil when it checked none. MemberOf are those of them the principal
	// was a member of when Graph answered, directly or through nested
	// groups, permanently or through an active PIM-for-Groups membership
	// (lower case, sorted). Ask [State.MemberOfGroup] rather than read
	// them. Both are left out of JSON when empty, so that a State without
	// membership encodes as before (a shared tier's replicas on an older
	// version still read it).
	CheckedGroups []string `json:",omitempty"`
	MemberOf      []string `json:",omitempty"`
}

// NotAfter returns the earliest end among the State's assignments, or the
// zero time when all are permanent. Past that instant the State over-states
// what is active, so a cache must not serve it as fresh.
func (s *State) NotAfter() time.Time {
	var min time.Time
	consider := func(t time.Time) {
		if !t.IsZero() && (min.IsZero() || t.Before(min)) {
			min = t
		}
	}
	for _, r := range s.Roles {
		consider(r.End)
	}
	for _, g := range s.Groups {
		consider(g.End)
	}
	return min
}

// Empty reports whether the State holds no assignment at all.
func (s *State) Empty() bool { return len(s.Roles) == 0 && len(s.Groups) == 0 }

// MemberOfGroup reports whether the principal is a live (transitive)
// member of groupID at now, as far as the State can tell. known is false
// when it cannot: when the lookup did not check groupID (it is not in
// CheckedGroups: the caller asked for a group its Principal.CheckGroups
// lacked, which must fail the decision, never deny it as "not a member"),
// and, for a principal that was a member, from the end of the earliest of
// its PIM-for-Groups "member" assignments on: Graph's answer does not say
// which membership made it a member, and one that ended may have been
// that one. A State within its [State.NotAfter] never gets there, since
// NotAfter is at most that end; a stale one served past it does. A
// membership that started after FetchedAt is not seen until the next
// lookup, as for roles. A nil State knows nothing.
func (s *State) MemberOfGroup(now time.Time, groupID string) (member, known bool) {
	if s == nil || !containsID(s.CheckedGroups, groupID) {
		return false, false
	}
	if !containsID(s.MemberOf, groupID) {
		return false, true
	}
	for _, g := range s.Groups {
		if strings.EqualFold(g.AccessID, AccessMember) && !g.End.IsZero() && !now.Before(g.End) {
			return false, false
		}
	}
	return true, true
}

// CheckedAll reports whether the lookup that made s checked the membership
// of every group of g, as a lookup of a Principal whose CheckGroups is g
// does: a cache in front of a Source verifies it before it stores or
// serves a State for such a lookup. The empty set is always checked. It
// does not allocate.
func (s *State) CheckedAll(g GroupSet) bool {
	if g.Len() == 0 {
		return true
	}
	if s == nil {
		return false
	}
	for i := 0; i < len(g.list); i += guidLen + 1 {
		if !containsID(s.CheckedGroups, g.list[i:i+guidLen]) {
			return false
		}
	}
	return true
}

// containsID reports whether ids hold id, compared case-insensitively. It
// does not rely on their order: a State may come from a Source that did
// not sort them, or from JSON.
func containsID(ids []string, id string) bool {
	return slices.ContainsFunc(ids, func(x string) bool { return strings.EqualFold(x, id) })
}

// RoleActive returns the assignment that makes roleDefinitionID active at
// now in exactly the given directory scope, preferring the one that lasts
// longest. It compares IDs case-insensitively. A tenant-wide requirement is
// not met by an administrative-unit assignment, nor the reverse.
func (s *State) RoleActive(now time.Time, roleDefinitionID, scope string) (RoleAssignment, bool) {
	return longestActive(s.Roles, now, func(r *RoleAssignment) bool { return r.is(roleDefinitionID, scope) })
}

// GroupActive returns the PIM-for-Groups assignment that makes the principal
// an active member or owner (accessID) of groupID at now, preferring the one
// that lasts longest.
func (s *State) GroupActive(now time.Time, groupID, accessID string) (GroupMembership, bool) {
	return longestActive(s.Groups, now, func(g *GroupMembership) bool { return g.is(groupID, accessID) })
}

// LastEnd returns the latest End among the role's assignments in scope that
// have ended by now, for telling a client when a role stopped being active.
func (s *State) LastEnd(now time.Time, roleDefinitionID, scope string) (time.Time, bool) {
	return lastEnded(s.Roles, now, func(r *RoleAssignment) bool { return r.is(roleDefinitionID, scope) })
}

// GroupLastEnd is [State.LastEnd] for PIM-for-Groups assignments: the
// latest End among the principal's member or owner (accessID) assignments
// of groupID that have ended by now.
func (s *State) GroupLastEnd(now time.Time, groupID, accessID string) (time.Time, bool) {
	return lastEnded(s.Groups, now, func(g *GroupMembership) bool { return g.is(groupID, accessID) })
}

// ActiveRoles returns the role assignments active at now (start <= now <
// end), in the State's order, each with its scope, end time and, for a role
// held through a role-assignable group, ViaGroupID: what a handler shows a
// caller. Pass the clock the Guard decides with (time.Now in production). A
// nil State has none.
func (s *State) ActiveRoles(now time.Time) []RoleAssignment {
	if s == nil {
		return nil
	}
	return activeAt(s.Roles, now)
}

// ActiveGroups returns the PIM-for-Groups assignments (member or owner)
// active at now, in the State's order. A nil State has none.
func (s *State) ActiveGroups(now time.Time) []GroupMembership {
	if s == nil {
		return nil
	}
	return activeAt(s.Groups, now)
}

func (r *RoleAssignment) is(roleDefinitionID, scope string) bool {
	return strings.EqualFold(r.RoleDefinitionID, roleDefinitionID) && strings.EqualFold(r.DirectoryScopeID, scope)
}

func (g *GroupMembership) is(groupID, accessID string) bool {
	return strings.EqualFold(g.GroupID, groupID) && strings.EqualFold(g.AccessID, accessID)
}

// windowed is an assignment with a time window: RoleAssignment and
// GroupMembership, through the window method of their embedded Window.
type windowed interface {
	RoleAssignment | GroupMembership
	window() Window
}

// window returns w itself; embedded, it gives the generic helpers below the
// window of a RoleAssignment or a GroupMembership.
func (w Window) window() Window { return w }

// longestActive returns the item matching match that is active at now and
// lasts longest.
func longestActive[T windowed](items []T, now time.Time, match func(*T) bool) (T, bool) {
	var best T
	found := false
	for i := range items {
		a := &items[i]
		w := (*a).window()
		if !match(a) || !w.ActiveAt(now) {
			continue
		}
		if !found || lastsLonger(w, best.window()) {
			best, found = *a, true
		}
	}
	return best, found
}

// lastEnded returns the latest End among the items matching match that have
// ended by now.
func lastEnded[T windowed](items []T, now time.Time, match func(*T) bool) (time.Time, bool) {
	var last time.Time
	for i := range items {
		a := &items[i]
		if w := (*a).window(); match(a) && !w.End.IsZero() && !now.Before(w.End) && w.End.After(last) {
			last = w.End
		}
	}
	return last, !last.IsZero()
}

// activeAt returns the items active at now, in order.
func activeAt[T windowed](items []T, now time.Time) []T {
	var out []T
	for i := range items {
		if items[i].window().ActiveAt(now) {
			out = append(out, items[i])
		}
	}
	return out
}

func lastsLonger(a, b Window) bool {
	switch {
	case a.End.IsZero():
		return !b.End.IsZero()
	case b.End.IsZero():
		return false
	}
	return a.End.After(b.End)
}

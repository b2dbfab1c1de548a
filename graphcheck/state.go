package graphcheck

import (
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

// RoleActive returns the assignment that makes roleDefinitionID active at
// now in exactly the given directory scope, preferring the one that lasts
// longest. It compares IDs case-insensitively. A tenant-wide requirement is
// not met by an administrative-unit assignment, nor the reverse.
func (s *State) RoleActive(now time.Time, roleDefinitionID, scope string) (RoleAssignment, bool) {
	var best RoleAssignment
	found := false
	for _, r := range s.Roles {
		if !strings.EqualFold(r.RoleDefinitionID, roleDefinitionID) || !strings.EqualFold(r.DirectoryScopeID, scope) || !r.ActiveAt(now) {
			continue
		}
		if !found || lastsLonger(r.Window, best.Window) {
			best, found = r, true
		}
	}
	return best, found
}

// GroupActive returns the PIM-for-Groups assignment that makes the principal
// an active member or owner (accessID) of groupID at now, preferring the one
// that lasts longest.
func (s *State) GroupActive(now time.Time, groupID, accessID string) (GroupMembership, bool) {
	var best GroupMembership
	found := false
	for _, g := range s.Groups {
		if !strings.EqualFold(g.GroupID, groupID) || !strings.EqualFold(g.AccessID, accessID) || !g.ActiveAt(now) {
			continue
		}
		if !found || lastsLonger(g.Window, best.Window) {
			best, found = g, true
		}
	}
	return best, found
}

// LastEnd returns the latest End among the role's assignments in scope that
// have ended by now, for telling a client when a role stopped being active.
func (s *State) LastEnd(now time.Time, roleDefinitionID, scope string) (time.Time, bool) {
	var last time.Time
	for _, r := range s.Roles {
		if strings.EqualFold(r.RoleDefinitionID, roleDefinitionID) && strings.EqualFold(r.DirectoryScopeID, scope) &&
			!r.End.IsZero() && !now.Before(r.End) && r.End.After(last) {
			last = r.End
		}
	}
	return last, !last.IsZero()
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

package graphcheck

import (
	"strings"
	"time"
)

// GroupRef is a group the principal belongs to (transitively), as listed by
// Graph's transitiveMemberOf.
type GroupRef struct {
	ID                 string
	IsAssignableToRole bool
}

// Facts are the raw answers of one lookup, before the domain rules apply.
type Facts struct {
	Principal Principal
	// Own are the principal's own active role assignment instances.
	Own []RoleAssignment
	// Memberships are the principal's PIM-for-Groups instances, as Graph
	// reported them: active when Graph answered, possibly ended by
	// FetchedAt.
	Memberships []GroupMembership
	// Groups are the principal's current transitive group memberships.
	Groups []GroupRef
	// GroupRoles maps a role-assignable group ID (lower case) to the group's
	// active role assignment instances: a tenant-wide fact a Source may
	// fetch once per TTL and share between principals.
	GroupRoles map[string][]RoleAssignment
	// FetchedAt is when the lookup sent its first request to Graph (or
	// any instant before Graph answered): never later, so that an
	// assignment Graph reported as active is judged at a time when it
	// was.
	FetchedAt time.Time
	// Account and Risk, when the lookup was asked for them, pass to the
	// State unchanged.
	Account *Account
	Risk    *Risk
}

// Combine applies pimguard's rules to one lookup's facts and returns the
// State:
//
//   - the principal's own assignments count as they are;
//   - a role held by a role-assignable group the principal currently belongs
//     to counts too, marked with ViaGroupID, and ends no later than the
//     principal's PIM-for-Groups membership in that group when the
//     membership is time-bound (a membership with no PIM instance is
//     permanent, so the group's own window applies). The cap is taken from
//     every membership instance in f.Memberships, ended ones included: a
//     membership that ended before FetchedAt yields a role that ended with
//     it, never one without an end;
//   - assignments already over at FetchedAt are dropped.
//
// Eligibilities are not facts here: they never grant anything.
func Combine(f Facts) *State {
	s := &State{TenantID: f.Principal.TenantID, ObjectID: f.Principal.ObjectID, FetchedAt: f.FetchedAt, Account: f.Account, Risk: f.Risk}
	for _, r := range f.Own {
		r.RoleDefinitionID = strings.ToLower(r.RoleDefinitionID)
		if stillCounts(r.Window, f.FetchedAt) {
			s.Roles = append(s.Roles, r)
		}
	}
	for _, m := range f.Memberships {
		m.GroupID = strings.ToLower(m.GroupID)
		if stillCounts(m.Window, f.FetchedAt) {
			s.Groups = append(s.Groups, m)
		}
	}
	for _, g := range f.Groups {
		if !g.IsAssignableToRole {
			continue
		}
		gid := strings.ToLower(g.ID)
		// Every instance, not s.Groups: those already dropped the
		// memberships that ended by FetchedAt, and capping by what is left
		// would leave the role without an end.
		limit := membershipWindow(f.Memberships, gid)
		for _, r := range f.GroupRoles[gid] {
			r.RoleDefinitionID = strings.ToLower(r.RoleDefinitionID)
			r.ViaGroupID = gid
			r.Window = intersect(r.Window, limit)
			if stillCounts(r.Window, f.FetchedAt) {
				s.Roles = append(s.Roles, r)
			}
		}
	}
	return s
}

// membershipWindow returns the window of the principal's membership in gid
// (lower case): the longest PIM-for-Groups "member" instance, whether or
// not it has ended, or an unbounded window when PIM does not manage the
// membership (a plain member, or an owner who is also a plain member).
func membershipWindow(ms []GroupMembership, gid string) Window {
	var best Window
	found := false
	for _, m := range ms {
		if !strings.EqualFold(m.GroupID, gid) || !strings.EqualFold(m.AccessID, AccessMember) {
			continue
		}
		if !found || lastsLonger(m.Window, best) {
			best, found = m.Window, true
		}
	}
	return best
}

// intersect returns the overlap of two windows.
func intersect(a, b Window) Window {
	w := a
	if !b.Start.IsZero() && (w.Start.IsZero() || b.Start.After(w.Start)) {
		w.Start = b.Start
	}
	if !b.End.IsZero() && (w.End.IsZero() || b.End.Before(w.End)) {
		w.End = b.End
	}
	return w
}

// stillCounts keeps windows that have not ended by t. Windows that start in
// the future are kept: they become active without a new lookup.
func stillCounts(w Window, t time.Time) bool { return w.End.IsZero() || t.Before(w.End) }

package graphtest

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// A generated tenant: thousands of users with role assignments, scoped
// assignments, role-assignable groups and PIM-managed groups, seeded in
// one pass under one lock, for benchmarks, figures and soaks of sources
// that read the whole tenant.

// TenantSpec describes a tenant for [Server.Generate]. Every zero field
// takes the default named beside it, the size of the "internal portal"
// tenant of pimguard's figures; a negative count means none.
type TenantSpec struct {
	// Users is the number of users (10 000).
	Users int
	// ServicePrincipals is the number of service principals (20). Some hold
	// roles, some are members of role-assignable groups.
	ServicePrincipals int
	// RoleAssignments is the number of active directory-role assignment
	// instances (2 000): 70 % to users and service principals tenant-wide,
	// 20 % to users scoped to an administrative unit, 10 % to
	// role-assignable groups. Of those to principals, half are PIM
	// activations ending within 15 minutes to 8 hours, a quarter permanent
	// assignments and a quarter time-bound assignments ending within 30
	// days.
	RoleAssignments int
	// AdministrativeUnits is the number of administrative units (20), each
	// holding 50 users.
	AdministrativeUnits int
	// RoleAssignableGroups is the number of role-assignable groups (40),
	// each with 5 to 20 permanent members; PIM for Groups makes further
	// members of some (a share of GroupAssignments).
	RoleAssignableGroups int
	// PIMGroups is the number of plain (not role-assignable) groups whose
	// membership and ownership PIM for Groups manages (50).
	PIMGroups int
	// GroupAssignments is the number of active PIM for Groups instances
	// (500): 80 % member or owner access to the PIM groups, 20 % member
	// access to role-assignable groups, each an activation ending within
	// 15 minutes to 8 hours or an assignment ending within 30 days.
	GroupAssignments int
	// RoleEligibilities and GroupEligibilities are eligibilities that are
	// not active (500 and 200), for a soak to activate with
	// [Server.ActivateRole] and [Server.ActivateGroup].
	RoleEligibilities  int
	GroupEligibilities int
	// Seed makes the tenant reproducible: the same spec and seed give the
	// same tenant, IDs included. Zero is a seed like any other.
	Seed uint64
}

// GeneratedRole is a directory role of a generated tenant: a principal
// (user, service principal or role-assignable group), a role and a scope.
type GeneratedRole struct {
	PrincipalID, RoleDefinitionID, Scope string
	// Activated marks a PIM activation (which [Server.DeactivateRole]
	// ends); otherwise an "Assigned" instance. Unused for eligibilities.
	Activated bool
	// End is the instance's end, zero for a permanent one.
	End time.Time
}

// GeneratedAccess is a PIM for Groups access of a generated tenant.
type GeneratedAccess struct {
	GroupID, PrincipalID, AccessID string
	Activated                      bool
	End                            time.Time
}

// GeneratedTenant lists what [Server.Generate] created, IDs in lower case,
// each list in creation order.
type GeneratedTenant struct {
	Users, ServicePrincipals, AdministrativeUnits []string
	// RoleAssignableGroups and PIMGroups are the two kinds of groups.
	RoleAssignableGroups, PIMGroups []string
	// Roles are the role definition IDs the assignments use.
	Roles []string
	// ActiveRoles and ActiveGroups are the active instances; RoleEligible
	// and GroupEligible the eligibilities, none of them active.
	ActiveRoles   []GeneratedRole
	ActiveGroups  []GeneratedAccess
	RoleEligible  []GeneratedRole
	GroupEligible []GeneratedAccess
}

// generatedRoles are the role definitions a generated tenant uses:
// built-in roles, the template IDs found in wids.
var generatedRoles = []string{
	RoleGlobalAdministrator, RolePrivilegedRoleAdministrator, RoleSecurityAdministrator, RoleUserAdministrator,
	RoleGroupsAdministrator, RoleGlobalReader,
	"729827e3-9c14-49f7-bb1b-9608f156bbb8", // Helpdesk Administrator
	"c4e39bd9-1100-46d3-8c65-fb160da0071f", // Authentication Administrator
	"b0f54661-2d74-4c50-afa3-1ec803f12efe", // Billing Administrator
	"f023fd81-a637-4b56-95fd-791ac0226033", // Service Support Administrator
	"5d6b6bb7-de71-4623-b4af-96380a352509", // Security Reader
	"9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3", // Application Administrator
}

// generatedID returns the GUID of the i-th generated object of a kind: a
// fixed prefix per kind, so that IDs are readable in a failing test and
// never collide with hand-written ones (whose last group is small).
func generatedID(kind uint32, i int) string {
	return fmt.Sprintf("%08x-0000-4000-8000-%012x", kind, 0x900000000000+i)
}

// Prefixes of generated IDs by kind.
const (
	genUser  = 0x9e000001
	genSP    = 0x9e000002
	genAU    = 0x9e000003
	genRAG   = 0x9e000004
	genGroup = 0x9e000005
)

// count applies a TenantSpec default: def for zero, none for negative.
func count(n, def int) int {
	if n < 0 {
		return 0
	}
	return cmp.Or(n, def)
}

// Generate adds a tenant described by spec to s's directory in one pass,
// at the clock's now, and returns what it created. It is fast (the default
// tenant takes well under a second, even under -race) because it writes the
// directory directly, under one lock, instead of checking each object as
// the seeding methods do; the tenant still obeys their rules (no assignment
// of a role to a principal at a scope twice, no group inside a
// role-assignable group). The IDs are those of no hand-seeded object, so
// Generate can add to a seeded tenant, but it must be called at most once
// per Server (a second call wraps [ErrConflict]). A spec that asks for more
// distinct assignments than its principals, roles and groups allow wraps
// [ErrInvalid] after writing part of the tenant: discard that Server.
func (s *Server) Generate(spec TenantSpec) (*GeneratedTenant, error) {
	nUsers := count(spec.Users, 10_000)
	nSP := count(spec.ServicePrincipals, 20)
	nRoles := count(spec.RoleAssignments, 2_000)
	nAU := count(spec.AdministrativeUnits, 20)
	nRAG := count(spec.RoleAssignableGroups, 40)
	nPIM := count(spec.PIMGroups, 50)
	nGroupAssign := count(spec.GroupAssignments, 500)
	nRoleElig := count(spec.RoleEligibilities, 500)
	nGroupElig := count(spec.GroupEligibilities, 200)
	if nUsers == 0 && (nRoles+nGroupAssign+nRoleElig+nGroupElig > 0) {
		return nil, fmt.Errorf("%w: assignments need users", ErrInvalid)
	}
	if nRAG+nPIM == 0 && nGroupAssign+nGroupElig > 0 {
		return nil, fmt.Errorf("%w: PIM for Groups assignments need groups", ErrInvalid)
	}
	rng := rand.New(rand.NewPCG(spec.Seed, spec.Seed^0x9e3779b97f4a7c15))
	now := s.clock.Now()
	out := &GeneratedTenant{Roles: generatedRoles}

	d := &s.dir
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.objects[generatedID(genUser, 0)] != nil || d.objects[generatedID(genSP, 0)] != nil {
		return nil, fmt.Errorf("%w: the tenant was generated already", ErrConflict)
	}
	add := func(kind uint32, n int, mk func(id string, i int) *dirObject) []string {
		ids := make([]string, n)
		for i := range n {
			o := mk(generatedID(kind, i), i)
			d.insert(o, now)
			ids[i] = o.id
		}
		return ids
	}
	out.Users = add(genUser, nUsers, func(id string, i int) *dirObject {
		name := fmt.Sprintf("user%05d", i)
		return &dirObject{id: id, kind: kindUser, displayName: name, upn: name + "@generated.test", accountEnabled: true}
	})
	out.ServicePrincipals = add(genSP, nSP, func(id string, i int) *dirObject {
		return &dirObject{id: id, kind: kindServicePrincipal, displayName: fmt.Sprintf("app%03d", i), appID: d.pseudoGUID(), accountEnabled: true}
	})
	out.AdministrativeUnits = add(genAU, nAU, func(id string, i int) *dirObject {
		return &dirObject{id: id, kind: kindAdministrativeUnit, displayName: fmt.Sprintf("unit%02d", i), members: map[string]bool{}}
	})
	out.RoleAssignableGroups = add(genRAG, nRAG, func(id string, i int) *dirObject {
		return &dirObject{id: id, kind: kindGroup, displayName: fmt.Sprintf("admins%02d", i), roleAssignable: true, members: map[string]bool{}}
	})
	out.PIMGroups = add(genGroup, nPIM, func(id string, i int) *dirObject {
		return &dirObject{id: id, kind: kindGroup, displayName: fmt.Sprintf("team%02d", i), members: map[string]bool{}}
	})

	// Members: 50 users per unit, 5 to 20 users (and now and then a service
	// principal) per role-assignable group.
	for _, au := range out.AdministrativeUnits {
		for range 50 {
			d.objects[au].members[out.Users[rng.IntN(nUsers)]] = true
		}
	}
	for _, g := range out.RoleAssignableGroups {
		for range 5 + rng.IntN(16) {
			d.objects[g].members[out.Users[rng.IntN(nUsers)]] = true
		}
		if nSP > 0 && rng.IntN(4) == 0 {
			d.objects[g].members[out.ServicePrincipals[rng.IntN(nSP)]] = true
		}
	}

	// Role instances. taken holds every grant given, active or eligible,
	// so that none is given twice.
	taken := map[grant]bool{}
	full := false // a draw found no grant left to give: the spec asks too much
	draw := func(next func() grant) grant {
		for i := 0; i < 10_000 && !full; i++ {
			if g := next(); !taken[g] {
				taken[g] = true
				return g
			}
		}
		full = true
		return next()
	}
	pick := func(principals []string, scopes func() string) grant {
		return draw(func() grant {
			return roleGrant(principals[rng.IntN(len(principals))], generatedRoles[rng.IntN(len(generatedRoles))], scopes())
		})
	}
	tenantWide := func() string { return "/" }
	inUnit := func() string { return "/administrativeUnits/" + out.AdministrativeUnits[rng.IntN(nAU)] }
	principals := append(append([]string(nil), out.Users...), out.ServicePrincipals...)
	lasting := func(lo, hi time.Duration) time.Time {
		return now.Add(lo + time.Duration(rng.Int64N(int64(hi-lo)))).Truncate(time.Second)
	}
	nGroupRoles, nScoped := nRoles/10, nRoles/5
	if nRAG == 0 {
		nGroupRoles = 0
	}
	if nAU == 0 {
		nScoped = 0
	}
	for i := range nRoles {
		var g grant
		switch {
		case i < nGroupRoles:
			g = pick(out.RoleAssignableGroups, tenantWide)
		case i < nGroupRoles+nScoped:
			g = pick(out.Users, inUnit)
		default:
			g = pick(principals, tenantWide)
		}
		r := GeneratedRole{PrincipalID: g.principalID, RoleDefinitionID: g.roleDefinitionID, Scope: g.scope}
		typ, start := assigned, time.Time{}
		switch i % 4 {
		case 0, 1:
			typ, start, r.Activated, r.End = activated, now, true, lasting(15*time.Minute, 8*time.Hour)
		case 2:
			r.End = lasting(time.Hour, 30*24*time.Hour)
		}
		if i < nGroupRoles { // a group's roles are assignments, not activations
			typ, start, r.Activated = assigned, time.Time{}, false
		}
		d.roles.add(d, g, typ, start, r.End)
		out.ActiveRoles = append(out.ActiveRoles, r)
	}
	for range nRoleElig {
		scopes := tenantWide
		if nAU > 0 && rng.IntN(5) == 0 {
			scopes = inUnit
		}
		g := pick(out.Users, scopes)
		d.roles.add(d, g, eligible, now, time.Time{})
		out.RoleEligible = append(out.RoleEligible, GeneratedRole{PrincipalID: g.principalID, RoleDefinitionID: g.roleDefinitionID, Scope: g.scope})
	}

	// PIM for Groups instances.
	pickAccess := func() grant {
		return draw(func() grant {
			if nRAG > 0 && rng.IntN(5) == 0 || nPIM == 0 {
				return groupGrant(out.RoleAssignableGroups[rng.IntN(nRAG)], out.Users[rng.IntN(nUsers)], AccessMember)
			}
			access := AccessMember
			if rng.IntN(4) == 0 {
				access = AccessOwner
			}
			return groupGrant(out.PIMGroups[rng.IntN(nPIM)], out.Users[rng.IntN(nUsers)], access)
		})
	}
	for i := range nGroupAssign {
		g := pickAccess()
		a := GeneratedAccess{GroupID: g.groupID, PrincipalID: g.principalID, AccessID: g.accessID}
		typ, start := assigned, time.Time{}
		if i%2 == 0 {
			typ, start, a.Activated, a.End = activated, now, true, lasting(15*time.Minute, 8*time.Hour)
		} else {
			a.End = lasting(time.Hour, 30*24*time.Hour)
		}
		d.groups.add(d, g, typ, start, a.End)
		out.ActiveGroups = append(out.ActiveGroups, a)
	}
	for range nGroupElig {
		g := pickAccess()
		d.groups.add(d, g, eligible, now, time.Time{})
		out.GroupEligible = append(out.GroupEligible, GeneratedAccess{GroupID: g.groupID, PrincipalID: g.principalID, AccessID: g.accessID})
	}
	if full {
		return nil, fmt.Errorf("%w: the spec asks for more distinct assignments than its principals, roles and groups allow", ErrInvalid)
	}
	return out, nil
}

// String summarises the tenant, for logs.
func (t *GeneratedTenant) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d users, %d service principals, %d administrative units, %d role-assignable groups, %d PIM groups; ",
		len(t.Users), len(t.ServicePrincipals), len(t.AdministrativeUnits), len(t.RoleAssignableGroups), len(t.PIMGroups))
	fmt.Fprintf(&b, "%d active role instances, %d active PIM for Groups instances, %d + %d eligibilities",
		len(t.ActiveRoles), len(t.ActiveGroups), len(t.RoleEligible), len(t.GroupEligible))
	return b.String()
}

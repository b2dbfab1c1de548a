package graphcheck_test

import (
	"strings"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
)

func TestCombine(t *testing.T) {
	const plainGroup = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
	groupRoles := map[string][]graphcheck.RoleAssignment{
		groupA:     {{RoleDefinitionID: userAdm, DirectoryScopeID: "/", AssignmentType: "Assigned", Window: graphcheck.Window{End: at(4 * time.Hour)}}},
		plainGroup: {{RoleDefinitionID: helpdesk, DirectoryScopeID: "/"}},
	}
	tests := []struct {
		name    string
		facts   graphcheck.Facts
		role    string
		active  bool
		end     time.Time
		viaGrp  string
		checkAt time.Time
	}{
		{
			name:  "own activation",
			facts: graphcheck.Facts{Own: []graphcheck.RoleAssignment{{RoleDefinitionID: helpdesk, DirectoryScopeID: "/", Window: graphcheck.Window{End: at(time.Hour)}}}},
			role:  helpdesk, active: true, end: at(time.Hour), checkAt: t0,
		},
		{
			name:  "own assignment already over is dropped",
			facts: graphcheck.Facts{Own: []graphcheck.RoleAssignment{{RoleDefinitionID: helpdesk, DirectoryScopeID: "/", Window: graphcheck.Window{End: t0}}}},
			role:  helpdesk, active: false, checkAt: t0,
		},
		{
			name: "group role capped by the PIM membership",
			facts: graphcheck.Facts{
				Memberships: []graphcheck.GroupMembership{{GroupID: groupA, AccessID: "member", Window: graphcheck.Window{End: at(time.Hour)}}},
				Groups:      []graphcheck.GroupRef{{ID: groupA, IsAssignableToRole: true}},
				GroupRoles:  groupRoles,
			},
			role: userAdm, active: true, end: at(time.Hour), viaGrp: groupA, checkAt: t0,
		},
		{
			name: "group role ends with the membership",
			facts: graphcheck.Facts{
				Memberships: []graphcheck.GroupMembership{{GroupID: groupA, AccessID: "member", Window: graphcheck.Window{End: at(time.Hour)}}},
				Groups:      []graphcheck.GroupRef{{ID: groupA, IsAssignableToRole: true}},
				GroupRoles:  groupRoles,
			},
			role: userAdm, active: false, checkAt: at(time.Hour),
		},
		{
			name: "permanent plain membership keeps the group's own window",
			facts: graphcheck.Facts{
				Groups:     []graphcheck.GroupRef{{ID: groupA, IsAssignableToRole: true}},
				GroupRoles: groupRoles,
			},
			role: userAdm, active: true, end: at(4 * time.Hour), viaGrp: groupA, checkAt: t0,
		},
		{
			name: "owner instance does not cap a plain membership",
			facts: graphcheck.Facts{
				Memberships: []graphcheck.GroupMembership{{GroupID: groupA, AccessID: "owner", Window: graphcheck.Window{End: at(time.Minute)}}},
				Groups:      []graphcheck.GroupRef{{ID: groupA, IsAssignableToRole: true}},
				GroupRoles:  groupRoles,
			},
			role: userAdm, active: true, end: at(4 * time.Hour), viaGrp: groupA, checkAt: t0,
		},
		// The membership ended between Graph's answer and FetchedAt (a
		// throttled lookup waited on Retry-After meanwhile): the role it
		// grants ended with it. Before the cap was taken from every
		// instance, the ended membership was dropped first and the role
		// came back with the group's own window, or none at all.
		{
			name: "membership ended by FetchedAt: the group role ended with it",
			facts: graphcheck.Facts{
				Memberships: []graphcheck.GroupMembership{{GroupID: groupA, AccessID: "member", Window: graphcheck.Window{End: t0}}},
				Groups:      []graphcheck.GroupRef{{ID: groupA, IsAssignableToRole: true}},
				GroupRoles:  groupRoles,
			},
			role: userAdm, active: false, checkAt: t0,
		},
		{
			name: "membership ended before FetchedAt: a permanent group role does not become endless",
			facts: graphcheck.Facts{
				Memberships: []graphcheck.GroupMembership{{GroupID: strings.ToUpper(groupA), AccessID: "Member", Window: graphcheck.Window{End: at(-time.Second)}}},
				Groups:      []graphcheck.GroupRef{{ID: groupA, IsAssignableToRole: true}},
				GroupRoles:  map[string][]graphcheck.RoleAssignment{groupA: {{RoleDefinitionID: helpdesk, DirectoryScopeID: "/"}}},
			},
			role: helpdesk, active: false, checkAt: t0,
		},
		{
			name: "an ended and a live membership instance: the live one caps",
			facts: graphcheck.Facts{
				Memberships: []graphcheck.GroupMembership{
					{GroupID: groupA, AccessID: "member", Window: graphcheck.Window{End: at(-time.Minute)}},
					{GroupID: groupA, AccessID: "member", Window: graphcheck.Window{End: at(2 * time.Hour)}},
				},
				Groups:     []graphcheck.GroupRef{{ID: groupA, IsAssignableToRole: true}},
				GroupRoles: groupRoles,
			},
			role: userAdm, active: true, end: at(2 * time.Hour), viaGrp: groupA, checkAt: t0,
		},
		{
			name: "a group that is not role-assignable holds no roles",
			facts: graphcheck.Facts{
				Groups:     []graphcheck.GroupRef{{ID: plainGroup, IsAssignableToRole: false}},
				GroupRoles: groupRoles,
			},
			role: helpdesk, active: false, checkAt: t0,
		},
		{
			name: "not a member: the group's roles do not apply",
			facts: graphcheck.Facts{
				GroupRoles: groupRoles,
			},
			role: userAdm, active: false, checkAt: t0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.facts.FetchedAt = t0
			s := graphcheck.Combine(tt.facts)
			got, ok := s.RoleActive(tt.checkAt, tt.role, "/")
			if ok != tt.active {
				t.Fatalf("active = %v, want %v (state %+v)", ok, tt.active, s)
			}
			if ok && (!got.End.Equal(tt.end) || got.ViaGroupID != tt.viaGrp) {
				t.Errorf("got end %v via %q, want end %v via %q", got.End, got.ViaGroupID, tt.end, tt.viaGrp)
			}
			// A group-held role never ends later than every member
			// instance of its group, ended ones included.
			for _, r := range s.Roles {
				if r.ViaGroupID == "" {
					continue
				}
				var last time.Time
				bounded := false
				for _, m := range tt.facts.Memberships {
					if strings.EqualFold(m.GroupID, r.ViaGroupID) && strings.EqualFold(m.AccessID, graphcheck.AccessMember) {
						bounded = true
						if m.End.IsZero() {
							bounded = false
							break
						}
						if m.End.After(last) {
							last = m.End
						}
					}
				}
				if bounded && (r.End.IsZero() || r.End.After(last)) {
					t.Errorf("role %s via %s ends %v, after its membership (%v)", r.RoleDefinitionID, r.ViaGroupID, r.End, last)
				}
			}
		})
	}
}

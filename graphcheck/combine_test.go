package graphcheck_test

import (
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
		})
	}
}

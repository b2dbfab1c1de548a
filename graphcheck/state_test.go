package graphcheck_test

import (
	"strings"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
)

const (
	helpdesk = "729827e3-9c14-49f7-bb1b-9608f156bbb8"
	userAdm  = "fe930be7-5e62-47db-91af-98c3a49a38b1"
	auScope  = "/administrativeUnits/5d1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b"
	groupA   = "2b5ed229-4072-478d-9504-a047ebd4b07d"
)

var t0 = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func TestWindowActiveAt(t *testing.T) {
	tests := []struct {
		name string
		w    graphcheck.Window
		t    time.Time
		want bool
	}{
		{"permanent", graphcheck.Window{}, t0, true},
		{"before start", graphcheck.Window{Start: at(time.Minute)}, t0, false},
		{"at start", graphcheck.Window{Start: t0}, t0, true},
		{"just before end", graphcheck.Window{End: at(time.Minute)}, at(time.Minute - time.Nanosecond), true},
		{"at end", graphcheck.Window{End: at(time.Minute)}, at(time.Minute), false},
		{"after end", graphcheck.Window{End: at(time.Minute)}, at(time.Hour), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.w.ActiveAt(tt.t); got != tt.want {
				t.Errorf("ActiveAt = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestStateRoleActive(t *testing.T) {
	s := &graphcheck.State{Roles: []graphcheck.RoleAssignment{
		{RoleDefinitionID: helpdesk, DirectoryScopeID: "/", AssignmentType: "Activated", Window: graphcheck.Window{End: at(30 * time.Minute)}},
		{RoleDefinitionID: helpdesk, DirectoryScopeID: "/", AssignmentType: "Assigned", Window: graphcheck.Window{End: at(2 * time.Hour)}},
		{RoleDefinitionID: userAdm, DirectoryScopeID: auScope, AssignmentType: "Assigned"},
	}}
	tests := []struct {
		name    string
		now     time.Time
		role    string
		scope   string
		want    bool
		wantEnd time.Time
	}{
		{"longest of two active", t0, helpdesk, "/", true, at(2 * time.Hour)},
		{"upper-case ID", t0, "729827E3-9C14-49F7-BB1B-9608F156BBB8", "/", true, at(2 * time.Hour)},
		{"one ended, the other still counts", at(time.Hour), helpdesk, "/", true, at(2 * time.Hour)},
		{"all ended", at(2 * time.Hour), helpdesk, "/", false, time.Time{}},
		{"AU assignment is not tenant-wide", t0, userAdm, "/", false, time.Time{}},
		{"AU assignment in its AU", t0, userAdm, auScope, true, time.Time{}},
		{"tenant-wide assignment is not AU-scoped", t0, helpdesk, auScope, false, time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := s.RoleActive(tt.now, tt.role, tt.scope)
			if ok != tt.want || (ok && !got.End.Equal(tt.wantEnd)) {
				t.Errorf("RoleActive = %+v, %v; want active=%v end=%v", got, ok, tt.want, tt.wantEnd)
			}
		})
	}
	if end, ok := s.LastEnd(at(3*time.Hour), helpdesk, "/"); !ok || !end.Equal(at(2*time.Hour)) {
		t.Errorf("LastEnd = %v, %v; want %v", end, ok, at(2*time.Hour))
	}
	if _, ok := s.LastEnd(t0, helpdesk, "/"); ok {
		t.Error("LastEnd reported an end for roles still active")
	}
}

func TestStateGroupActiveAndNotAfter(t *testing.T) {
	s := &graphcheck.State{Groups: []graphcheck.GroupMembership{
		{GroupID: groupA, AccessID: "member", Window: graphcheck.Window{End: at(time.Hour)}},
		{GroupID: groupA, AccessID: "owner", Window: graphcheck.Window{End: at(10 * time.Minute)}},
	}, Roles: []graphcheck.RoleAssignment{{RoleDefinitionID: userAdm, DirectoryScopeID: "/"}}}
	if _, ok := s.GroupActive(at(30*time.Minute), groupA, graphcheck.AccessMember); !ok {
		t.Error("member not active at 30m")
	}
	if _, ok := s.GroupActive(at(30*time.Minute), groupA, graphcheck.AccessOwner); ok {
		t.Error("owner still active at 30m")
	}
	if got := s.NotAfter(); !got.Equal(at(10 * time.Minute)) {
		t.Errorf("NotAfter = %v, want the earliest end %v", got, at(10*time.Minute))
	}
	if (&graphcheck.State{Roles: []graphcheck.RoleAssignment{{}}}).NotAfter() != (time.Time{}) {
		t.Error("NotAfter of permanent assignments is not zero")
	}
	if !(&graphcheck.State{}).Empty() || s.Empty() {
		t.Error("Empty is wrong")
	}
}

func TestPrincipalValidate(t *testing.T) {
	good := graphcheck.Principal{TenantID: "8d3f0a52-6b1e-4c2a-9f4e-1a7b2c3d4e5f", ObjectID: "4d5e6f70-8192-4a3b-8c4d-5e6f70819203"}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, oid := range []string{"", "x", "4d5e6f70-8192-4a3b-8c4d-5e6f70819203' or 1 eq 1", "4d5e6f70x8192-4a3b-8c4d-5e6f70819203", "4d5e6f70-8192-4a3b-8c4d-5e6f7081920g"} {
		p := good
		p.ObjectID = oid
		if err := p.Validate(); err == nil {
			t.Errorf("Validate accepted object ID %q", oid)
		}
	}
	if good.Key() != good.TenantID+"/"+good.ObjectID {
		t.Errorf("Key = %q", good.Key())
	}
}

func TestStateActiveAndLastEnd(t *testing.T) {
	const groupB = "7d2c6b0a-1f3e-4a5b-9c8d-0e1f2a3b4c5d"
	s := &graphcheck.State{
		Roles: []graphcheck.RoleAssignment{
			{RoleDefinitionID: userAdm, DirectoryScopeID: "/", Window: graphcheck.Window{End: t0}},
			{RoleDefinitionID: helpdesk, DirectoryScopeID: "/", Window: graphcheck.Window{End: at(time.Second)}},
			{RoleDefinitionID: helpdesk, DirectoryScopeID: auScope, Window: graphcheck.Window{Start: at(time.Second)}},
		},
		Groups: []graphcheck.GroupMembership{
			{GroupID: groupA, AccessID: "member", Window: graphcheck.Window{Start: t0}},
			{GroupID: groupB, AccessID: "owner", Window: graphcheck.Window{End: at(-time.Minute)}},
			{GroupID: groupB, AccessID: "owner", Window: graphcheck.Window{End: at(-time.Second)}},
		},
	}
	roles, groups := s.ActiveRoles(t0), s.ActiveGroups(t0)
	if len(roles) != 1 || roles[0].RoleDefinitionID != helpdesk || len(groups) != 1 || groups[0].GroupID != groupA {
		t.Errorf("ActiveRoles %v, ActiveGroups %v", roles, groups)
	}
	var none *graphcheck.State
	if none.ActiveRoles(t0) != nil || none.ActiveGroups(t0) != nil {
		t.Error("a nil State has assignments")
	}
	if end, ok := s.GroupLastEnd(t0, strings.ToUpper(groupB), "OWNER"); !ok || !end.Equal(at(-time.Second)) {
		t.Errorf("GroupLastEnd = %v, %v; want %v", end, ok, at(-time.Second))
	}
	if _, ok := s.GroupLastEnd(t0, groupA, graphcheck.AccessMember); ok {
		t.Error("GroupLastEnd reported an end for a membership still active")
	}
	if _, ok := s.GroupLastEnd(t0, groupB, graphcheck.AccessMember); ok {
		t.Error("GroupLastEnd mixed owner and member")
	}
	if end, ok := s.LastEnd(t0, userAdm, "/"); !ok || !end.Equal(t0) {
		t.Errorf("LastEnd at the very end = %v, %v; want %v", end, ok, t0)
	}
}

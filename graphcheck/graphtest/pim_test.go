package graphtest_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck/graphtest"
)

func TestSeedingErrors(t *testing.T) {
	f := newFixture(t, graphtest.Options{})
	s := f.srv
	must(t, s.MakeEligible(alice, graphtest.RoleUserAdministrator, "/", time.Time{}))
	must(t, s.AssignRole(bob, graphtest.RoleGlobalReader, "/", time.Time{}, time.Time{}))
	unknown := "00000000-0000-4000-8000-00000000dead"
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"user id not a GUID", s.AddUser("alice", "x@contoso.test"), graphtest.ErrInvalid},
		{"duplicate user", s.AddUser(alice, "other@contoso.test"), graphtest.ErrConflict},
		{"duplicate upn", s.AddUser(unknown, "ALICE@contoso.test"), graphtest.ErrConflict},
		{"empty upn", s.AddUser("00000000-0000-4000-8000-0000000000ff", ""), graphtest.ErrInvalid},
		{"member of unknown group", s.AddGroupMember(unknown, alice), graphtest.ErrNotFound},
		{"unknown member", s.AddGroupMember(staff, unknown), graphtest.ErrNotFound},
		{"group into role-assignable group", s.AddGroupMember(admins, staff), graphtest.ErrConflict},
		{"membership cycle", s.AddGroupMember(staff, everyone), graphtest.ErrConflict},
		{"self membership", s.AddGroupMember(staff, staff), graphtest.ErrConflict},
		{"role for unknown principal", s.AssignRole(unknown, graphtest.RoleGlobalReader, "/", time.Time{}, time.Time{}), graphtest.ErrNotFound},
		{"role id not a GUID", s.AssignRole(alice, "Global Reader", "/", time.Time{}, time.Time{}), graphtest.ErrInvalid},
		{"bad scope", s.AssignRole(alice, graphtest.RoleGlobalReader, "/users", time.Time{}, time.Time{}), graphtest.ErrInvalid},
		{"role to plain group", s.AssignRole(staff, graphtest.RoleGlobalReader, "/", time.Time{}, time.Time{}), graphtest.ErrConflict},
		{"end before start", s.AssignRole(alice, graphtest.RoleGlobalReader, "/", t0.Add(time.Hour), t0), graphtest.ErrInvalid},
		{"duplicate assignment", s.AssignRole(bob, graphtest.RoleGlobalReader, "/", time.Time{}, time.Time{}), graphtest.ErrConflict},
		{"eligibility ending in the past", s.MakeEligible(alice, graphtest.RoleGlobalReader, "/", t0.Add(-time.Hour)), graphtest.ErrInvalid},
		{"duplicate eligibility", s.MakeEligible(alice, graphtest.RoleUserAdministrator, "/", time.Time{}), graphtest.ErrConflict},
		{"activate without eligibility", errOf(s.ActivateRole(alice, graphtest.RoleGlobalAdministrator, "/", time.Hour)), graphtest.ErrNotEligible},
		{"activate at another scope", errOf(s.ActivateRole(alice, graphtest.RoleUserAdministrator, "/administrativeUnits/"+au1, time.Hour)), graphtest.ErrNotEligible},
		{"activate for no time", errOf(s.ActivateRole(alice, graphtest.RoleUserAdministrator, "/", 0)), graphtest.ErrInvalid},
		{"deactivate nothing", s.DeactivateRole(alice, graphtest.RoleUserAdministrator, "/"), graphtest.ErrNotActive},
		{"remove nothing", s.RemoveRoleAssignment(alice, graphtest.RoleGlobalReader, "/"), graphtest.ErrNotActive},
		{"bad accessId", s.AssignGroup(staff, alice, "admin", time.Time{}, time.Time{}), graphtest.ErrInvalid},
		{"PIM group member into role-assignable group", s.AssignGroup(admins, staff, "member", time.Time{}, time.Time{}), graphtest.ErrConflict},
		{"activate group without eligibility", errOf(s.ActivateGroup(staff, alice, "member", time.Hour)), graphtest.ErrNotEligible},
		{"deactivate group nothing", s.DeactivateGroup(staff, alice, "member"), graphtest.ErrNotActive},
		{"disable unknown user", s.SetAccountEnabled(unknown, false), graphtest.ErrNotFound},
		{"revoke a service principal", s.RevokeSignInSessions(daemon), graphtest.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !errors.Is(tt.err, tt.want) {
				t.Fatalf("err = %v, want %v", tt.err, tt.want)
			}
		})
	}
}

func errOf(_ time.Time, err error) error { return err }

func TestRoleActivationLifecycle(t *testing.T) {
	f := newFixture(t, graphtest.Options{})
	s := f.srv
	eligEnd := t0.Add(3 * time.Hour)
	must(t, s.MakeEligible(alice, graphtest.RoleGlobalAdministrator, "/", eligEnd))

	active := func() []map[string]any { return f.getOK(assignmentsPath + byPrincipal(alice)).values(t) }

	if got := active(); len(got) != 0 {
		t.Fatalf("eligibility alone is active: %v", got)
	}

	end, err := s.ActivateRole(alice, graphtest.RoleGlobalAdministrator, "/", time.Hour)
	must(t, err)
	if !end.Equal(t0.Add(time.Hour)) {
		t.Fatalf("activation end %v", end)
	}
	if _, err := s.ActivateRole(alice, graphtest.RoleGlobalAdministrator, "/", time.Hour); !errors.Is(err, graphtest.ErrConflict) {
		t.Fatalf("second activation: %v", err)
	}
	got := active()
	if len(got) != 1 {
		t.Fatalf("after activation: %v", got)
	}
	a := got[0]
	for k, want := range map[string]any{
		"principalId": alice, "roleDefinitionId": graphtest.RoleGlobalAdministrator, "directoryScopeId": "/",
		"assignmentType": "Activated", "memberType": "Direct", "startDateTime": "2025-03-01T09:00:00Z",
		"endDateTime": "2025-03-01T10:00:00Z", "appScopeId": nil,
	} {
		if a[k] != want {
			t.Errorf("%s = %v, want %v", k, a[k], want)
		}
	}
	if a["id"] != a["roleAssignmentOriginId"] || a["roleAssignmentScheduleId"] == "" {
		t.Errorf("ids: %v", a)
	}
	f.clock.Advance(time.Hour - time.Second)
	if len(active()) != 1 {
		t.Fatal("activation ended early")
	}
	f.clock.Advance(time.Second) // endDateTime == now: expired
	if got := active(); len(got) != 0 {
		t.Fatalf("activation outlived its end: %v", got)
	}

	// Still eligible after an activation, as in PIM; a long activation is
	// capped at the eligibility's end.
	end, err = s.ActivateRole(alice, graphtest.RoleGlobalAdministrator, "/", 8*time.Hour)
	must(t, err)
	if !end.Equal(eligEnd) {
		t.Fatalf("capped end %v, want %v", end, eligEnd)
	}
	f.clock.Advance(30 * time.Minute)
	must(t, s.DeactivateRole(alice, graphtest.RoleGlobalAdministrator, "/"))
	if got := active(); len(got) != 0 {
		t.Fatalf("after deactivation: %v", got)
	}

	f.clock.Set(eligEnd)
	if _, err := s.ActivateRole(alice, graphtest.RoleGlobalAdministrator, "/", time.Hour); !errors.Is(err, graphtest.ErrNotEligible) {
		t.Fatalf("activation after eligibility ended: %v", err)
	}

	// RemoveEligibility ends the eligibility, not an activation made from it.
	must(t, s.MakeEligible(alice, graphtest.RoleGlobalReader, "/", time.Time{}))
	_, err = s.ActivateRole(alice, graphtest.RoleGlobalReader, "/", time.Hour)
	must(t, err)
	must(t, s.RemoveEligibility(strings.ToUpper(alice), graphtest.RoleGlobalReader, "/"))
	if got := ids(active(), "roleDefinitionId"); !equal(got, []string{graphtest.RoleGlobalReader}) {
		t.Fatalf("activation after RemoveEligibility: %v", got)
	}
	must(t, s.DeactivateRole(alice, graphtest.RoleGlobalReader, "/"))
	if _, err := s.ActivateRole(alice, graphtest.RoleGlobalReader, "/", time.Hour); !errors.Is(err, graphtest.ErrNotEligible) {
		t.Fatalf("activation after RemoveEligibility: %v", err)
	}
	if err := s.RemoveEligibility(alice, graphtest.RoleGlobalReader, "/"); !errors.Is(err, graphtest.ErrNotActive) {
		t.Fatalf("second RemoveEligibility: %v", err)
	}
}

func TestAssignmentsOnTheClock(t *testing.T) {
	f := newFixture(t, graphtest.Options{})
	s := f.srv
	auScope := "/administrativeUnits/" + au1
	must(t, s.AssignRole(bob, graphtest.RoleGlobalReader, "/", time.Time{}, time.Time{}))                         // permanent, start null
	must(t, s.AssignRole(bob, graphtest.RoleUserAdministrator, auScope, t0.Add(-time.Hour), t0.Add(2*time.Hour))) // time-bound
	must(t, s.AssignRole(bob, graphtest.RoleSecurityAdministrator, "/", t0.Add(time.Hour), time.Time{}))          // future
	must(t, s.AssignRole(bob, graphtest.RoleGroupsAdministrator, "/", t0.Add(-2*time.Hour), t0.Add(-time.Hour)))  // past
	must(t, s.AssignRole(carol, graphtest.RoleGlobalReader, "/", time.Time{}, time.Time{}))                       // someone else
	must(t, s.AssignRole(daemon, graphtest.RolePrivilegedRoleAdministrator, "/", time.Time{}, time.Time{}))       // a service principal
	must(t, s.AssignRole(admins, graphtest.RoleGlobalAdministrator, "/", time.Time{}, t0.Add(24*time.Hour)))      // a group
	roles := func(oid string) []string {
		return ids(f.getOK(assignmentsPath+byPrincipal(oid)).values(t), "roleDefinitionId")
	}
	tests := []struct {
		at   time.Time
		oid  string
		want []string
	}{
		{t0, bob, []string{graphtest.RoleGlobalReader, graphtest.RoleUserAdministrator}},
		{t0, daemon, []string{graphtest.RolePrivilegedRoleAdministrator}},
		{t0, admins, []string{graphtest.RoleGlobalAdministrator}},
		{t0.Add(time.Hour), bob, []string{graphtest.RoleGlobalReader, graphtest.RoleUserAdministrator, graphtest.RoleSecurityAdministrator}},
		{t0.Add(2 * time.Hour), bob, []string{graphtest.RoleGlobalReader, graphtest.RoleSecurityAdministrator}},
		{t0.Add(24 * time.Hour), admins, nil},
	}
	for _, tt := range tests {
		f.clock.Set(tt.at)
		if got := roles(tt.oid); !equal(got, tt.want) {
			t.Errorf("at %v, %s: roles %v, want %v", tt.at, tt.oid, got, tt.want)
		}
	}
	f.clock.Set(t0)
	items := f.getOK(assignmentsPath + byPrincipal(bob)).values(t)
	if items[0]["startDateTime"] != nil || items[0]["endDateTime"] != nil || items[0]["assignmentType"] != "Assigned" {
		t.Errorf("permanent: %v", items[0])
	}
	if items[1]["directoryScopeId"] != auScope || items[1]["endDateTime"] != "2025-03-01T11:00:00Z" {
		t.Errorf("time-bound AU-scoped: %v", items[1])
	}
	// principalId in (...) and roleDefinitionId filters.
	in := "?$filter=principalId%20in%20('" + bob + "','" + carol + "')%20and%20roleDefinitionId%20eq%20'" + graphtest.RoleGlobalReader + "'"
	if got := ids(f.getOK(assignmentsPath+in).values(t), "principalId"); !equal(got, []string{bob, carol}) {
		t.Errorf("in filter: %v", got)
	}
	// No filter: every active instance.
	if n := len(f.getOK(assignmentsPath).values(t)); n != 5 {
		t.Errorf("unfiltered: %d instances, want 5", n)
	}
	must(t, s.RemoveRoleAssignment(bob, graphtest.RoleGlobalReader, "/"))
	if got := roles(bob); !equal(got, []string{graphtest.RoleUserAdministrator}) {
		t.Errorf("after removal: %v", got)
	}
}

func TestGroupHeldRoles(t *testing.T) {
	for _, expand := range []bool{false, true} {
		t.Run(map[bool]string{false: "literal", true: "expanded"}[expand], func(t *testing.T) {
			f := newFixture(t, graphtest.Options{ExpandGroupRoleInstances: expand})
			s := f.srv
			must(t, s.AddGroupMember(admins, alice))
			must(t, s.AddGroupMember(staff, alice))
			must(t, s.AssignRole(admins, graphtest.RoleGlobalAdministrator, "/", time.Time{}, time.Time{}))
			must(t, s.MakeEligible(admins, graphtest.RoleUserAdministrator, "/", time.Time{}))

			if got := f.groupsOf("users", alice); !equal(got, []string{admins, staff, everyone}) {
				t.Fatalf("transitiveMemberOf: %v", got)
			}
			ra := f.getOK("/groups?$filter=isAssignableToRole%20eq%20true&$select=id").values(t)
			if len(ra) != 1 || ra[0]["id"] != admins || len(ra[0]) != 1 {
				t.Fatalf("role-assignable groups: %v", ra)
			}
			// The client's way: ask for the user and its role-assignable groups.
			in := "?$filter=principalId%20in%20('" + alice + "','" + admins + "')"
			got := f.getOK(assignmentsPath + in).values(t)
			want := 1
			if expand {
				want = 2
			}
			if len(got) != want || got[0]["principalId"] != admins || got[0]["memberType"] != "Direct" {
				t.Fatalf("instances: %v", got)
			}
			direct := f.getOK(assignmentsPath + byPrincipal(alice)).values(t)
			if !expand {
				if len(direct) != 0 {
					t.Fatalf("literal filter returned inherited instances: %v", direct)
				}
				return
			}
			if len(direct) != 1 || direct[0]["principalId"] != alice || direct[0]["memberType"] != "Group" ||
				direct[0]["roleAssignmentOriginId"] != got[0]["roleAssignmentOriginId"] || direct[0]["id"] == got[0]["id"] {
				t.Fatalf("expanded instance: %v (group's: %v)", direct, got[0])
			}
			must(t, s.RemoveGroupMember(admins, alice))
			if got := f.getOK(assignmentsPath + byPrincipal(alice)).values(t); len(got) != 0 {
				t.Fatalf("after leaving the group: %v", got)
			}
		})
	}
}

func TestPIMForGroups(t *testing.T) {
	f := newFixture(t, graphtest.Options{ExpandGroupRoleInstances: true})
	s := f.srv
	must(t, s.AssignRole(admins, graphtest.RoleGlobalAdministrator, "/", time.Time{}, time.Time{}))
	must(t, s.MakeGroupEligible(admins, alice, graphtest.AccessMember, time.Time{}))
	must(t, s.MakeGroupEligible(staff, alice, graphtest.AccessMember, t0.Add(90*time.Minute)))
	must(t, s.AssignGroup(staff, bob, graphtest.AccessOwner, time.Time{}, time.Time{}))
	must(t, s.AssignGroup(staff, carol, graphtest.AccessMember, t0.Add(-time.Hour), t0.Add(time.Hour)))

	if got := f.groupsOf("users", alice); len(got) != 0 {
		t.Fatalf("eligible member is a member: %v", got)
	}
	if got := f.groupsOf("users", bob); len(got) != 0 {
		t.Fatalf("owner is a member: %v", got)
	}
	if got := f.groupsOf("users", carol); !equal(got, []string{staff, everyone}) {
		t.Fatalf("assigned member: %v", got)
	}
	end, err := s.ActivateGroup(admins, alice, graphtest.AccessMember, 2*time.Hour)
	must(t, err)
	end2, err := s.ActivateGroup(staff, alice, graphtest.AccessMember, 2*time.Hour)
	must(t, err)
	if !end.Equal(t0.Add(2*time.Hour)) || !end2.Equal(t0.Add(90*time.Minute)) {
		t.Fatalf("activation ends %v %v", end, end2)
	}
	if got := f.groupsOf("users", alice); !equal(got, []string{admins, staff, everyone}) {
		t.Fatalf("after activation: %v", got)
	}
	inst := f.getOK(groupAssignPath + byPrincipal(alice)).values(t)
	if len(inst) != 2 || inst[0]["assignmentType"] != "Activated" || inst[0]["accessId"] != "member" ||
		inst[0]["groupId"] != admins || inst[0]["memberType"] != "Direct" || inst[0]["endDateTime"] != "2025-03-01T11:00:00Z" {
		t.Fatalf("PIM for Groups instances: %v", inst)
	}
	byGroup := f.getOK(groupAssignPath + "?$filter=groupId%20eq%20'" + staff + "'").values(t)
	if got := ids(byGroup, "principalId"); !equal(got, []string{bob, carol, alice}) {
		t.Fatalf("by group: %v", got)
	}
	// The group's role reaches alice while her membership lasts, and no longer.
	ra := f.getOK(assignmentsPath + byPrincipal(alice)).values(t)
	if len(ra) != 1 || ra[0]["memberType"] != "Group" || ra[0]["endDateTime"] != "2025-03-01T11:00:00Z" {
		t.Fatalf("inherited role: %v", ra)
	}

	f.clock.Advance(90 * time.Minute) // ends the staff activation and carol's assignment
	if got := f.groupsOf("users", alice); !equal(got, []string{admins}) {
		t.Fatalf("after staff activation expired: %v", got)
	}
	must(t, s.DeactivateGroup(admins, alice, graphtest.AccessMember))
	if got := f.groupsOf("users", alice); len(got) != 0 {
		t.Fatalf("after deactivation: %v", got)
	}
	if got := f.groupsOf("users", carol); len(got) != 0 {
		t.Fatalf("time-bound assignment outlived its end: %v", got)
	}
	must(t, s.RemoveGroupAssignment(strings.ToUpper(staff), bob, "OWNER"))
	if got := f.getOK(groupAssignPath + "?$filter=groupId%20eq%20'" + staff + "'").values(t); len(got) != 0 {
		t.Fatalf("after RemoveGroupAssignment: %v", got)
	}
	if err := s.RemoveGroupAssignment(staff, bob, graphtest.AccessOwner); !errors.Is(err, graphtest.ErrNotActive) {
		t.Fatalf("second RemoveGroupAssignment: %v", err)
	}
	// With neither groupId nor principalId, Graph refuses.
	for _, q := range []string{"", "?$filter=accessId%20eq%20'member'"} {
		if r := f.get(groupAssignPath + q); r.status != http.StatusBadRequest || r.errorCode() != "BadRequest" {
			t.Errorf("%q: %d %s", q, r.status, r.raw)
		}
	}
}

func TestDirectoryObjects(t *testing.T) {
	f := newFixture(t, graphtest.Options{})
	s := f.srv
	must(t, s.AddGroupMember(staff, daemon))
	sel := "?$select=id,accountEnabled,signInSessionsValidFromDateTime,lastPasswordChangeDateTime"
	u := f.getOK("/users/" + alice + sel).body
	if len(u) != 5 || u["id"] != alice || u["accountEnabled"] != true || u["signInSessionsValidFromDateTime"] != "2025-03-01T09:00:00Z" ||
		u["@odata.context"] != f.srv.GraphURL()+"/$metadata#users(id,accountEnabled,signInSessionsValidFromDateTime,lastPasswordChangeDateTime)/$entity" {
		t.Fatalf("user: %v", u)
	}
	f.clock.Advance(time.Hour)
	must(t, s.SetAccountEnabled(alice, false))
	must(t, s.ChangePassword(alice))
	must(t, s.RevokeSignInSessions(alice))
	u = f.getOK("/users/" + strings.ToUpper(alice) + sel).body
	if u["accountEnabled"] != false || u["signInSessionsValidFromDateTime"] != "2025-03-01T10:00:00Z" || u["lastPasswordChangeDateTime"] != "2025-03-01T10:00:00Z" {
		t.Fatalf("user after changes: %v", u)
	}
	// Without $select Graph returns the default set, which lacks accountEnabled.
	if u := f.getOK("/users/" + bob).body; u["accountEnabled"] != nil || u["userPrincipalName"] != "bob@contoso.test" {
		t.Fatalf("default properties: %v", u)
	}
	sp := f.getOK("/servicePrincipals/" + daemon).body
	if sp["@odata.context"] != f.srv.GraphURL()+"/$metadata#servicePrincipals/$entity" || sp["accountEnabled"] != true ||
		sp["displayName"] != "daemon" || sp["servicePrincipalType"] != "Application" {
		t.Fatalf("service principal: %v", sp)
	}
	if got := f.groupsOf("servicePrincipals", daemon); !equal(got, []string{staff, everyone}) {
		t.Fatalf("service principal groups: %v", got)
	}
	// The Go SDK casts with the namespace alias.
	alias := f.getOK("/servicePrincipals/" + daemon + "/transitiveMemberOf/graph.group?%24select=id")
	if got := ids(alias.values(t), "id"); !equal(got, []string{staff, everyone}) || !strings.HasSuffix(alias.body["@odata.context"].(string), "#groups(id)") {
		t.Fatalf("graph.group cast: %s", alias.raw)
	}
	tests := []struct{ path, code string }{
		{"/users/" + daemon + "/transitiveMemberOf/microsoft.graph.group", "Request_ResourceNotFound"},
		{"/servicePrincipals/" + alice + "/transitiveMemberOf/microsoft.graph.group", "Request_ResourceNotFound"},
		{"/users/00000000-0000-4000-8000-000000000000", "Request_ResourceNotFound"},
		{"/servicePrincipals/" + staff, "Request_ResourceNotFound"},
	}
	for _, tt := range tests {
		if r := f.get(tt.path); r.status != http.StatusNotFound || r.errorCode() != tt.code {
			t.Errorf("%s: %d %s", tt.path, r.status, r.raw)
		}
	}
}

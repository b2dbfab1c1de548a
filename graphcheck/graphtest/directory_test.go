package graphtest_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck/graphtest"
)

func TestDeleteUser(t *testing.T) {
	f := newFixture(t, graphtest.Options{})
	s := f.srv
	must(t, s.AddGroupMember(staff, alice))
	must(t, s.AddGroupMember(staff, bob))
	must(t, s.AssignRole(alice, graphtest.RoleGlobalReader, "/", time.Time{}, time.Time{}))
	must(t, s.AssignRole(bob, graphtest.RoleGlobalReader, "/", time.Time{}, time.Time{}))
	must(t, s.MakeEligible(alice, graphtest.RoleGlobalAdministrator, "/", time.Time{}))
	_, err := s.ActivateRole(alice, graphtest.RoleGlobalAdministrator, "/", time.Hour)
	must(t, err)
	must(t, s.AssignGroup(admins, alice, graphtest.AccessMember, time.Time{}, time.Time{}))
	must(t, s.MakeGroupEligible(admins, alice, graphtest.AccessOwner, time.Time{}))
	if got := f.groupsOf("users", alice); !equal(got, []string{admins, staff, everyone}) {
		t.Fatalf("before: %v", got)
	}

	must(t, s.DeleteUser(strings.ToUpper(alice)))

	for _, p := range []string{
		"/users/" + alice,
		"/users/" + alice + "?$select=id,accountEnabled",
		"/users/" + alice + "/transitiveMemberOf/microsoft.graph.group",
	} {
		if r := f.get(p); r.status != http.StatusNotFound || r.errorCode() != "Request_ResourceNotFound" {
			t.Errorf("%s: %d %s", p, r.status, r.raw)
		}
	}

	// Its PIM instances appear nowhere, whatever the filter.
	for _, p := range []string{
		assignmentsPath + byPrincipal(alice),
		groupAssignPath + byPrincipal(alice),
		groupAssignPath + "?$filter=groupId%20eq%20'" + admins + "'",
	} {
		if items := f.getOK(p).values(t); len(items) != 0 {
			t.Errorf("%s: %v", p, items)
		}
	}
	// Everyone else is untouched.
	if got := ids(f.getOK(assignmentsPath).values(t), "principalId"); !equal(got, []string{bob}) {
		t.Errorf("assignments: %v", got)
	}
	if got := f.groupsOf("users", bob); !equal(got, []string{staff, everyone}) {
		t.Errorf("bob's groups: %v", got)
	}
	if got := ids(f.getOK("/users?$select=id").values(t), "id"); !equal(got, []string{bob, carol}) {
		t.Errorf("users: %v", got)
	}

	// The seeding methods no longer know the ID.
	for name, err := range map[string]error{
		"delete again":         s.DeleteUser(alice),
		"add member":           s.AddGroupMember(staff, alice),
		"assign role":          s.AssignRole(alice, graphtest.RoleGlobalReader, "/", time.Time{}, time.Time{}),
		"disable":              s.SetAccountEnabled(alice, false),
		"delete a SP as user":  s.DeleteUser(daemon),
		"delete a group":       s.DeleteUser(staff),
		"delete a user as SP":  s.DeleteServicePrincipal(bob),
		"delete an unknown SP": s.DeleteServicePrincipal("00000000-0000-4000-8000-00000000dead"),
	} {
		if !errors.Is(err, graphtest.ErrNotFound) {
			t.Errorf("%s: %v, want ErrNotFound", name, err)
		}
	}

	// A user added again with the same ID starts afresh: memberships and
	// instances, eligibilities included, were removed, not hidden.
	must(t, s.AddUser(alice, "alice2@contoso.test"))
	if got := f.groupsOf("users", alice); len(got) != 0 {
		t.Errorf("re-added user's groups: %v", got)
	}
	for _, p := range []string{assignmentsPath + byPrincipal(alice), groupAssignPath + byPrincipal(alice)} {
		if items := f.getOK(p).values(t); len(items) != 0 {
			t.Errorf("re-added user's %s: %v", p, items)
		}
	}
	if _, err := s.ActivateRole(alice, graphtest.RoleGlobalAdministrator, "/", time.Hour); !errors.Is(err, graphtest.ErrNotEligible) {
		t.Errorf("re-added user's role eligibility: %v", err)
	}
	if _, err := s.ActivateGroup(admins, alice, graphtest.AccessOwner, time.Hour); !errors.Is(err, graphtest.ErrNotEligible) {
		t.Errorf("re-added user's group eligibility: %v", err)
	}
	if u := f.getOK("/users/" + alice).body; u["userPrincipalName"] != "alice2@contoso.test" {
		t.Errorf("re-added user: %v", u)
	}
}

func TestServicePrincipals(t *testing.T) {
	f := newFixture(t, graphtest.Options{})
	s := f.srv
	const worker = "f0f00000-0000-4000-8000-000000000005"
	must(t, s.AddServicePrincipal(worker, "worker"))
	must(t, s.AddGroupMember(staff, daemon))
	must(t, s.AssignRole(daemon, graphtest.RoleGlobalReader, "/", time.Time{}, time.Time{}))

	enabled := func(oid string) any {
		t.Helper()
		b := f.getOK("/servicePrincipals/" + oid + "?$select=accountEnabled").body
		if len(b) != 3 || b["id"] != oid {
			t.Fatalf("service principal: %v", b)
		}
		return b["accountEnabled"]
	}
	if enabled(daemon) != true {
		t.Fatal("a new service principal is disabled")
	}
	must(t, s.SetServicePrincipalEnabled(daemon, false))
	if enabled(daemon) != false || enabled(worker) != true {
		t.Fatal("SetServicePrincipalEnabled(false) did not stick")
	}
	must(t, s.SetServicePrincipalEnabled(daemon, true))
	if enabled(daemon) != true {
		t.Fatal("SetServicePrincipalEnabled(true) did not stick")
	}
	for name, err := range map[string]error{
		"unknown": s.SetServicePrincipalEnabled("00000000-0000-4000-8000-00000000dead", false),
		"a user":  s.SetServicePrincipalEnabled(alice, false),
	} {
		if !errors.Is(err, graphtest.ErrNotFound) {
			t.Errorf("%s: %v, want ErrNotFound", name, err)
		}
	}

	must(t, s.DeleteServicePrincipal(daemon))
	for _, p := range []string{
		"/servicePrincipals/" + daemon,
		"/servicePrincipals/" + daemon + "?$select=accountEnabled",
		"/servicePrincipals/" + daemon + "/transitiveMemberOf/microsoft.graph.group",
	} {
		if r := f.get(p); r.status != http.StatusNotFound || r.errorCode() != "Request_ResourceNotFound" {
			t.Errorf("%s: %d %s", p, r.status, r.raw)
		}
	}
	if items := f.getOK(assignmentsPath + byPrincipal(daemon)).values(t); len(items) != 0 {
		t.Errorf("assignments of a deleted service principal: %v", items)
	}
	if enabled(worker) != true {
		t.Error("deleting one service principal touched another")
	}
}

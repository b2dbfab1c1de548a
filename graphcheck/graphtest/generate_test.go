package graphtest_test

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/graphcheck/graphtest"
)

// listAll follows @odata.nextLink from path to the end and returns every
// item and the number of pages read.
func (f *fixture) listAll(path string) (items []map[string]any, pages int) {
	f.t.Helper()
	for next := path; next != ""; pages++ {
		r := f.getOK(next)
		items = append(items, r.values(f.t)...)
		next, _ = r.body["@odata.nextLink"].(string)
		if pages > 1000 {
			f.t.Fatalf("more than 1000 pages from %s", path)
		}
	}
	return items, pages
}

// The generated tenant is what its description says, and what the Graph
// half serves: the unfiltered listing of role instances, paged, holds
// exactly the active role instances; the listing of each PIM group's
// instances holds its active accesses; the same seed gives the same
// tenant.
func TestGenerate(t *testing.T) {
	f := newFixture(t, graphtest.Options{})
	start := time.Now()
	gen, err := f.srv.Generate(graphtest.TenantSpec{Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("generated in %v: %s", time.Since(start), gen)

	for _, c := range []struct {
		name      string
		got, want int
	}{
		{"users", len(gen.Users), 10_000},
		{"service principals", len(gen.ServicePrincipals), 20},
		{"administrative units", len(gen.AdministrativeUnits), 20},
		{"role-assignable groups", len(gen.RoleAssignableGroups), 40},
		{"PIM groups", len(gen.PIMGroups), 50},
		{"active role instances", len(gen.ActiveRoles), 2_000},
		{"active PIM for Groups instances", len(gen.ActiveGroups), 500},
		{"role eligibilities", len(gen.RoleEligible), 500},
		{"group eligibilities", len(gen.GroupEligible), 200},
	} {
		if c.got != c.want {
			t.Errorf("%s: %d, want %d", c.name, c.got, c.want)
		}
	}
	var scoped, viaGroup, activated int
	for _, r := range gen.ActiveRoles {
		switch {
		case r.Scope != "/":
			scoped++
		case slices.Contains(gen.RoleAssignableGroups, r.PrincipalID):
			viaGroup++
		}
		if r.Activated {
			activated++
		}
	}
	if scoped != 400 || viaGroup != 200 || activated == 0 {
		t.Errorf("%d scoped, %d held by groups, %d activated; want 400, 200 and some", scoped, viaGroup, activated)
	}

	// The unfiltered listing, 999 a page as a client asks, and 100 a page.
	for _, size := range []int{0, 100} {
		f.srv.SetGraphPageSize(size)
		items, pages := f.listAll(assignmentsPath + "?$select=principalId,roleDefinitionId,directoryScopeId,endDateTime&$top=999")
		wantPages := 3 // $top=999
		if size == 100 {
			wantPages = 20
		}
		if len(items) != len(gen.ActiveRoles) || pages != wantPages {
			t.Fatalf("page size %d: %d items in %d pages, want %d in %d", size, len(items), pages, len(gen.ActiveRoles), wantPages)
		}
		for i, it := range items {
			r := gen.ActiveRoles[i]
			if it["principalId"] != r.PrincipalID || it["roleDefinitionId"] != r.RoleDefinitionID || it["directoryScopeId"] != r.Scope {
				t.Fatalf("item %d: %v, want %+v", i, it, r)
			}
			if end, _ := it["endDateTime"].(string); (end == "") != r.End.IsZero() || end != "" && end != r.End.UTC().Format(time.RFC3339Nano) {
				t.Fatalf("item %d ends %q, want %v", i, end, r.End)
			}
		}
	}
	f.srv.SetGraphPageSize(0)

	perGroup := map[string]int{}
	for _, a := range gen.ActiveGroups {
		perGroup[a.GroupID]++
	}
	for _, gid := range append(slices.Clone(gen.PIMGroups[:5]), gen.RoleAssignableGroups[:5]...) {
		items, _ := f.listAll(groupAssignPath + "?$filter=" + url.QueryEscape("groupId eq '"+gid+"'"))
		if len(items) != perGroup[gid] {
			t.Errorf("group %s: %d instances, want %d", gid, len(items), perGroup[gid])
		}
	}

	again := graphtest.NewServer(graphtest.Options{Clock: graphtest.NewClock(t0)})
	defer again.Close()
	same, err := again.Generate(graphtest.TenantSpec{Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(same.ActiveRoles, gen.ActiveRoles) || !slices.Equal(same.ActiveGroups, gen.ActiveGroups) {
		t.Error("the same seed gave another tenant")
	}
	if _, err := f.srv.Generate(graphtest.TenantSpec{}); !errors.Is(err, graphtest.ErrConflict) {
		t.Errorf("second Generate: %v, want ErrConflict", err)
	}
}

// A generated tenant obeys the seeding methods' rules: a generated
// eligibility activates, and a role held by a role-assignable group
// reaches its members in the Source.
func TestGeneratedTenantWorksWithTheSeedingMethods(t *testing.T) {
	f := newFixture(t, graphtest.Options{})
	gen, err := f.srv.Generate(graphtest.TenantSpec{Users: 200, RoleAssignments: 100, GroupAssignments: 50, RoleEligibilities: 20, GroupEligibilities: 10, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	e := gen.RoleEligible[0]
	if _, err := f.srv.ActivateRole(e.PrincipalID, e.RoleDefinitionID, e.Scope, time.Hour); err != nil {
		t.Fatalf("activating a generated eligibility: %v", err)
	}
	ge := gen.GroupEligible[0]
	if _, err := f.srv.ActivateGroup(ge.GroupID, ge.PrincipalID, ge.AccessID, time.Hour); err != nil {
		t.Fatalf("activating a generated group eligibility: %v", err)
	}
	var held graphtest.GeneratedRole
	for _, r := range gen.ActiveRoles {
		if slices.Contains(gen.RoleAssignableGroups, r.PrincipalID) {
			held = r
			break
		}
	}
	members, _ := f.listAll("/groups/" + held.PrincipalID + "/members?$select=id")
	if len(members) == 0 {
		t.Fatalf("group %s has no members", held.PrincipalID)
	}
	oid, _ := members[0]["id"].(string)
	st, err := f.srv.Source().Lookup(context.Background(), graphcheck.Principal{TenantID: graphtest.TenantID, ObjectID: oid})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := st.RoleActive(t0, held.RoleDefinitionID, held.Scope); !ok {
		t.Errorf("member %s lacks the role %s its group %s holds: %+v", oid, held.RoleDefinitionID, held.PrincipalID, st.Roles)
	}
	if _, err := f.srv.Generate(graphtest.TenantSpec{Users: 1, RoleAssignments: 1000, AdministrativeUnits: -1, RoleAssignableGroups: -1, ServicePrincipals: -1, GroupAssignments: -1, RoleEligibilities: -1, GroupEligibilities: -1}); !errors.Is(err, graphtest.ErrConflict) {
		t.Errorf("Generate on a generated tenant: %v, want ErrConflict", err)
	}
	small := graphtest.NewServer(graphtest.Options{Clock: graphtest.NewClock(t0)})
	defer small.Close()
	if _, err := small.Generate(graphtest.TenantSpec{Users: 1, RoleAssignments: 1000, AdministrativeUnits: -1, RoleAssignableGroups: -1, ServicePrincipals: -1, GroupAssignments: -1, RoleEligibilities: -1, GroupEligibilities: -1}); !errors.Is(err, graphtest.ErrInvalid) {
		t.Errorf("1 000 roles for one user of 12 roles: %v, want ErrInvalid", err)
	}
}

// GET /groups/{id}/members lists the permanent members and those an active
// PIM for Groups member instance makes members, with their @odata.type,
// until the instance ends; an unknown group is a 404.
func TestGroupMembers(t *testing.T) {
	f := newFixture(t, graphtest.Options{})
	must(t, f.srv.AddGroupMember(admins, alice))
	must(t, f.srv.AddGroupMember(admins, daemon))
	must(t, f.srv.AssignGroup(admins, bob, graphtest.AccessMember, time.Time{}, t0.Add(time.Hour)))
	must(t, f.srv.AssignGroup(admins, carol, graphtest.AccessOwner, time.Time{}, t0.Add(time.Hour)))

	items := f.list("/groups/"+admins+"/members?$select=id", []string{alice, bob, daemon}, "directoryObjects(id)")
	if got := ids(items, "@odata.type"); !equal(got, []string{"#microsoft.graph.user", "#microsoft.graph.user", "#microsoft.graph.servicePrincipal"}) {
		t.Errorf("types %v", got)
	}
	f.clock.Advance(time.Hour)
	f.list("/groups/"+admins+"/members?$select=id", []string{alice, daemon}, "directoryObjects(id)")
	f.srv.SetGraphPageSize(1)
	if got, pages := f.listAll("/groups/" + admins + "/members?$select=id"); len(got) != 2 || pages != 2 {
		t.Errorf("paged: %v in %d pages", got, pages)
	}
	for _, id := range []string{"00000000-0000-4000-8000-0000000000ff", alice} {
		if r := f.get("/groups/" + id + "/members"); r.status != 404 || r.errorCode() != "Request_ResourceNotFound" {
			t.Errorf("members of %s: %d %s", id, r.status, r.raw)
		}
	}
}

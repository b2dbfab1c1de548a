package graphtest_test

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck/graphtest"
)

const (
	nested = "4e57ed00-0000-4000-8000-00000000000d" // plain, inside everyone
	pimGrp = "919a0000-0000-4000-8000-00000000000e" // plain, PIM for Groups
	au2    = "a0000000-0000-4000-8000-0000000000a2"
	noGrp  = "00000000-0000-4000-8000-0000000000ee" // in no directory
)

// checkGroups POSTs groupIds to {kind}/{oid}/checkMemberGroups.
func (f *fixture) checkGroups(kind, oid string, groupIDs ...string) reply {
	f.t.Helper()
	return f.do(http.MethodPost, "/"+kind+"/"+oid+"/checkMemberGroups", map[string]any{"groupIds": groupIDs})
}

// memberGroups returns the value of a successful checkMemberGroups.
func (f *fixture) memberGroups(kind, oid string, groupIDs ...string) []string {
	f.t.Helper()
	r := f.checkGroups(kind, oid, groupIDs...)
	if r.status != http.StatusOK {
		f.t.Fatalf("checkMemberGroups: %d %s", r.status, r.raw)
	}
	if want := f.srv.GraphURL() + "/$metadata#Collection(Edm.String)"; r.body["@odata.context"] != want {
		f.t.Errorf("@odata.context %v, want %s", r.body["@odata.context"], want)
	}
	vs, ok := r.body["value"].([]any)
	if !ok {
		f.t.Fatalf("no value array: %s", r.raw)
	}
	out := []string{}
	for _, v := range vs {
		out = append(out, v.(string))
	}
	return out
}

// TestCheckMemberGroups checks the transitive membership checkMemberGroups
// answers: permanent and nested memberships, PIM for Groups assignments
// and activations at the clock's now, eligibility and ownership, which are
// not membership, and service principals.
func TestCheckMemberGroups(t *testing.T) {
	f := newFixture(t, graphtest.Options{}) // staff is a member of everyone
	s := f.srv
	must(t, s.AddGroup(nested, "Nested", false))
	must(t, s.AddGroup(pimGrp, "PIM", false))
	must(t, s.AddGroupMember(staff, nested))
	must(t, s.AddGroupMember(nested, alice))                                                           // alice ∈ nested ∈ staff ∈ everyone
	must(t, s.AssignGroup(pimGrp, bob, graphtest.AccessMember, time.Time{}, t0.Add(time.Hour)))        // bob, for an hour
	must(t, s.AssignGroup(staff, bob, graphtest.AccessOwner, time.Time{}, time.Time{}))                // owner, not member
	must(t, s.MakeGroupEligible(admins, carol, graphtest.AccessMember, time.Time{}))                   // eligible only
	must(t, s.AssignGroup(everyone, pimGrp, graphtest.AccessMember, time.Time{}, t0.Add(2*time.Hour))) // pimGrp ∈ everyone, for two hours
	must(t, s.AddGroupMember(staff, daemon))
	must(t, s.AddGroupMember(pimGrp, carol)) // carol ∈ pimGrp, which PIM makes a member of everyone for two hours

	all := []string{admins, staff, everyone, nested, pimGrp, noGrp}
	tests := []struct {
		name    string
		advance time.Duration
		kind    string
		oid     string
		ask     []string
		want    []string
	}{
		{"nested permanent membership, in the order asked", 0, "users", alice, all, []string{staff, everyone, nested}},
		{"order asked is kept", 0, "users", alice, []string{nested, everyone, admins, staff}, []string{nested, everyone, staff}},
		{"IDs in upper case, repeated", 0, "users", alice, []string{strings.ToUpper(everyone), everyone}, []string{everyone}},
		{"PIM member, and through the PIM group's own PIM membership; owner is not member", 0, "users", bob, all, []string{everyone, pimGrp}},
		{"through a group PIM nests; eligible elsewhere", 0, "users", carol, all, []string{everyone, pimGrp}},
		{"service principal", 0, "servicePrincipals", daemon, all, []string{staff, everyone}},
		{"nothing asked", 0, "users", alice, []string{}, []string{}},
		{"bob's PIM membership has ended, and the nested one with it", time.Hour, "users", bob, all, []string{}},
		{"the group's PIM membership has ended", time.Hour, "users", carol, all, []string{pimGrp}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := f.with(t)
			f.clock.Advance(tt.advance)
			if got := f.memberGroups(tt.kind, tt.oid, tt.ask...); !slices.Equal(got, tt.want) {
				t.Errorf("checkMemberGroups(%v) = %v, want %v", tt.ask, got, tt.want)
			}
		})
	}

	// Activating an eligibility makes carol a member until it ends.
	if _, err := s.ActivateGroup(admins, carol, graphtest.AccessMember, 30*time.Minute); err != nil {
		t.Fatal(err)
	}
	if got := f.memberGroups("users", carol, admins); !slices.Equal(got, []string{admins}) {
		t.Errorf("after activation: %v", got)
	}
	f.clock.Advance(30 * time.Minute)
	if got := f.memberGroups("users", carol, admins, everyone); len(got) != 0 {
		t.Errorf("after the activation ended: %v", got)
	}
	must(t, s.RemoveGroupMember(nested, alice))
	if got := f.memberGroups("users", alice, all...); len(got) != 0 {
		t.Errorf("after removal: %v", got)
	}
}

func TestCheckMemberGroupsRefusals(t *testing.T) {
	f := newFixture(t, graphtest.Options{})
	twentyOne := make([]string, 21)
	for i := range twentyOne {
		twentyOne[i] = fmt.Sprintf("%08x-0000-4000-8000-000000000000", i)
	}
	tests := []struct {
		name   string
		method string
		path   string
		body   any
		status int
		code   string
	}{
		{"21 groups", http.MethodPost, "/users/" + alice + "/checkMemberGroups", map[string]any{"groupIds": twentyOne}, 400, "Request_BadRequest"},
		{"not a GUID", http.MethodPost, "/users/" + alice + "/checkMemberGroups", map[string]any{"groupIds": []string{staff, "staff"}}, 400, "Request_BadRequest"},
		{"not a string", http.MethodPost, "/users/" + alice + "/checkMemberGroups", map[string]any{"groupIds": []any{42}}, 400, "Request_BadRequest"},
		{"no groupIds", http.MethodPost, "/users/" + alice + "/checkMemberGroups", map[string]any{"groups": []string{staff}}, 400, "Request_BadRequest"},
		{"groupIds not an array", http.MethodPost, "/users/" + alice + "/checkMemberGroups", map[string]any{"groupIds": staff}, 400, "Request_BadRequest"},
		{"a JSON array", http.MethodPost, "/users/" + alice + "/checkMemberGroups", []string{staff}, 400, "Request_BadRequest"},
		{"no body", http.MethodPost, "/users/" + alice + "/checkMemberGroups", nil, 400, "Request_BadRequest"},
		{"GET", http.MethodGet, "/users/" + alice + "/checkMemberGroups", nil, 405, "Request_BadRequest"},
		{"unknown user", http.MethodPost, "/users/" + noGrp + "/checkMemberGroups", map[string]any{"groupIds": []string{staff}}, 404, "Request_ResourceNotFound"},
		{"a service principal as a user", http.MethodPost, "/users/" + daemon + "/checkMemberGroups", map[string]any{"groupIds": []string{staff}}, 404, "Request_ResourceNotFound"},
		{"a user as a service principal", http.MethodPost, "/servicePrincipals/" + alice + "/checkMemberGroups", map[string]any{"groupIds": []string{staff}}, 404, "Request_ResourceNotFound"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := f.with(t).do(tt.method, tt.path, tt.body)
			if r.status != tt.status || r.errorCode() != tt.code {
				t.Errorf("%d %s, want %d %s", r.status, r.raw, tt.status, tt.code)
			}
		})
	}
}

// TestCheckMemberGroupsInBatch checks the action as a $batch sub-request:
// answered like the direct call, its body read from the sub-request, and a
// body without its own Content-Type refused as Graph's JSON batching
// requires.
func TestCheckMemberGroupsInBatch(t *testing.T) {
	f := newFixture(t, graphtest.Options{})
	must(t, f.srv.AddGroupMember(staff, alice))
	json := map[string]string{"Content-Type": "application/json"}
	r, subs := f.batch(
		batchReq{ID: "1", Method: "POST", URL: "/users/" + alice + "/checkMemberGroups", Headers: json, Body: map[string]any{"groupIds": []string{admins, everyone, staff}}},
		batchReq{ID: "2", Method: "POST", URL: "users/" + bob + "/checkMemberGroups", Headers: map[string]string{"content-type": "application/json"}, Body: map[string]any{"groupIds": []string{staff}}},
		batchReq{ID: "3", Method: "POST", URL: "/users/" + alice + "/checkMemberGroups", Headers: json, Body: map[string]any{"groupIds": []string{"x"}}},
		batchReq{ID: "4", Method: "GET", URL: "/users/" + alice + "/transitiveMemberOf/microsoft.graph.group?$select=id"},
	)
	if r.status != http.StatusOK {
		t.Fatalf("batch: %d %s", r.status, r.raw)
	}
	for id, want := range map[string][]any{"1": {everyone, staff}, "2": {}} {
		if subStatus(subs[id]) != http.StatusOK || fmt.Sprint(subBody(subs[id])["value"]) != fmt.Sprint(want) {
			t.Errorf("sub-request %s: %v, want 200 with %v", id, subs[id], want)
		}
	}
	if subStatus(subs["3"]) != http.StatusBadRequest || subStatus(subs["4"]) != http.StatusOK {
		t.Errorf("sub-requests 3 and 4: %v %v", subs["3"], subs["4"])
	}
	if n := len(f.srv.Requests()); n != 5 {
		t.Errorf("%d requests recorded, want the $batch and its 4 sub-requests", n)
	}

	r, _ = f.batch(batchReq{ID: "1", Method: "POST", URL: "/users/" + alice + "/checkMemberGroups", Body: map[string]any{"groupIds": []string{staff}}})
	if r.status != http.StatusBadRequest || !strings.Contains(string(r.raw), "Content-Type") {
		t.Errorf("a body without a Content-Type: %d %s, want the batch refused", r.status, r.raw)
	}

	// A fault can target the action alone.
	remove := f.srv.InjectGraphFault(graphtest.GraphMatch{Path: "/users/" + alice + "/checkMemberGroups", Scope: graphtest.InsideBatch}, graphtest.DeniedFault())
	defer remove()
	_, subs = f.batch(
		batchReq{ID: "1", Method: "POST", URL: "/users/" + alice + "/checkMemberGroups", Headers: json, Body: map[string]any{"groupIds": []string{staff}}},
		batchReq{ID: "2", Method: "GET", URL: "/users/" + alice + "?$select=id"},
	)
	if subStatus(subs["1"]) != http.StatusForbidden || subStatus(subs["2"]) != http.StatusOK {
		t.Errorf("fault on the action: %v %v", subs["1"], subs["2"])
	}
}

func TestAdministrativeUnits(t *testing.T) {
	f := newFixture(t, graphtest.Options{})
	s := f.srv
	must(t, s.AddAdministrativeUnit(au1, "Seattle"))
	must(t, s.AddAdministrativeUnit(au2, "Paris"))
	must(t, s.AddAdministrativeUnitMember(au1, alice))
	must(t, s.AddAdministrativeUnitMember(au2, strings.ToUpper(alice)))
	must(t, s.AddAdministrativeUnitMember(au2, staff))
	must(t, s.AddGroupMember(staff, bob)) // bob is in a group in au2: not in au2

	for _, tt := range []struct {
		err  error
		what string
		do   func() error
	}{
		{graphtest.ErrConflict, "member twice", func() error { return s.AddAdministrativeUnitMember(au1, alice) }},
		{graphtest.ErrNotFound, "a service principal", func() error { return s.AddAdministrativeUnitMember(au1, daemon) }},
		{graphtest.ErrNotFound, "an unknown member", func() error { return s.AddAdministrativeUnitMember(au1, noGrp) }},
		{graphtest.ErrNotFound, "an unknown unit", func() error { return s.AddAdministrativeUnitMember(noGrp, alice) }},
		{graphtest.ErrNotFound, "a group as a unit", func() error { return s.AddAdministrativeUnitMember(staff, alice) }},
		{graphtest.ErrNotFound, "a unit as a group member", func() error { return s.AddGroupMember(staff, au1) }},
		{graphtest.ErrNotFound, "a unit holding a role", func() error {
			return s.AssignRole(au1, graphtest.RoleUserAdministrator, "/", time.Time{}, time.Time{})
		}},
		{graphtest.ErrNotFound, "a unit in PIM for Groups", func() error {
			return s.AssignGroup(staff, au1, graphtest.AccessMember, time.Time{}, time.Time{})
		}},
		{graphtest.ErrConflict, "a duplicate ID", func() error { return s.AddAdministrativeUnit(alice, "x") }},
		{graphtest.ErrInvalid, "not a GUID", func() error { return s.AddAdministrativeUnit("au", "x") }},
		{graphtest.ErrNotActive, "removing a non-member", func() error { return s.RemoveAdministrativeUnitMember(au1, bob) }},
	} {
		if err := tt.do(); !errors.Is(err, tt.err) {
			t.Errorf("%s: %v, want %v", tt.what, err, tt.err)
		}
	}

	units := "/memberOf/microsoft.graph.administrativeUnit"
	items := f.list("/users/"+alice+units, []string{au1, au2}, "administrativeUnits")
	if items[0]["displayName"] != "Seattle" {
		t.Errorf("unit: %v", items[0])
	}
	f.list("/users/"+alice+"/memberOf/graph.administrativeUnit?$select=id", []string{au1, au2}, "administrativeUnits(id)")
	f.list("/users/"+bob+units, nil, "administrativeUnits")
	f.list("/directory/administrativeUnits", []string{au1, au2}, "directory/administrativeUnits")
	// Direct groups, not transitive ones.
	f.list("/users/"+bob+"/memberOf/microsoft.graph.group", []string{staff}, "groups")
	for _, p := range []string{"/users/" + noGrp + units, "/users/" + daemon + units} {
		if r := f.get(p); r.status != http.StatusNotFound || r.errorCode() != "Request_ResourceNotFound" {
			t.Errorf("%s: %d %s", p, r.status, r.raw)
		}
	}
	for _, p := range []string{"/users/" + alice + "/memberOf/microsoft.graph.directoryRole", "/users/" + alice + "/memberOf"} {
		if r := f.get(p); r.status != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", p, r.status, r.raw)
		}
	}

	// In a $batch, as msgraph's User sends it.
	r, subs := f.batch(
		batchReq{ID: "1", Method: "GET", URL: "/users/" + alice + "?$select=id,displayName,userPrincipalName"},
		batchReq{ID: "2", Method: "GET", URL: "/users/" + alice + "/memberOf/graph.administrativeUnit?$select=id&$top=999"},
	)
	if r.status != http.StatusOK || subStatus(subs["1"]) != 200 || subStatus(subs["2"]) != 200 || len(subBody(subs["2"])["value"].([]any)) != 2 {
		t.Errorf("batch: %d %v", r.status, subs)
	}

	must(t, s.RemoveAdministrativeUnitMember(au1, alice))
	f.list("/users/"+alice+units, []string{au2}, "administrativeUnits")
	must(t, s.DeleteUser(alice))
	must(t, s.AddUser(alice, "alice@contoso.test"))
	f.list("/users/"+alice+units, nil, "administrativeUnits") // a new user with the same ID starts in none
}

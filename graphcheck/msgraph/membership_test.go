package msgraph_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/graphcheck/msgraph"
)

const (
	everyone = "e7e20000-0000-4000-8000-00000000000d" // plain, holds staff
	oncall   = "0ca11000-0000-4000-8000-00000000000e" // plain, PIM for Groups
	au2      = "a0000000-0000-4000-8000-0000000000a2"
)

func groupSet(t testing.TB, ids ...string) graphcheck.GroupSet {
	t.Helper()
	g, err := graphcheck.NewGroupSet(ids...)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// checking is p asking about groups.
func checking(p graphcheck.Principal, g graphcheck.GroupSet) graphcheck.Principal {
	p.CheckGroups = g
	return p
}

// seedMembership adds to the test directory: everyone ⊃ staff ⊃ alice
// (permanent, nested), bob a PIM for Groups member of oncall for an hour,
// carol only eligible for oncall, erin a permanent member of the
// role-assignable admins, daemon (a service principal) in staff.
func seedMembership(t *testing.T, srv *graphtest.Server) {
	t.Helper()
	must(t, srv.AddGroup(everyone, "Everyone", false))
	must(t, srv.AddGroup(oncall, "On call", false))
	must(t, srv.AddGroupMember(everyone, staff))
	must(t, srv.AddGroupMember(staff, alice))
	must(t, srv.AssignGroup(oncall, bob, graphtest.AccessMember, time.Time{}, at(time.Hour)))
	must(t, srv.MakeGroupEligible(oncall, carol, graphtest.AccessMember, time.Time{}))
	must(t, srv.AddGroupMember(admins, erin))
	must(t, srv.AddGroupMember(staff, daemon))
}

// TestLiveGroupMembership checks what a lookup with CheckGroups answers:
// transitive membership of plain groups (which PIM for Groups does not
// manage, so State.Groups never shows it), PIM-for-Groups membership at
// the tenant's clock, and nothing for an eligibility; all in the lookup's
// one $batch.
func TestLiveGroupMembership(t *testing.T) {
	e := newEnv(t, graphtest.Options{}, nil)
	seedMembership(t, e.srv)
	groups := groupSet(t, staff, everyone, oncall, admins, secops)
	tests := []struct {
		name  string
		p     graphcheck.Principal
		want  []string // MemberOf
		other string   // a group the principal is not a member of
	}{
		{"permanent and nested", user(alice), []string{staff, everyone}, oncall},
		{"PIM for Groups", user(bob), []string{oncall}, staff},
		{"eligible only", user(carol), nil, oncall},
		{"role-assignable group", user(erin), []string{admins}, secops},
		{"service principal", app(daemon), []string{staff, everyone}, admins},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.srv.ResetRequests()
			st := e.mustLookup(checking(tt.p, groups))
			want := slices.Sorted(slices.Values(tt.want))
			if !slices.Equal(st.MemberOf, want) || !slices.Equal(st.CheckedGroups, groups.IDs()) {
				t.Errorf("MemberOf %v, CheckedGroups %v; want %v, %v", st.MemberOf, st.CheckedGroups, want, groups.IDs())
			}
			for _, g := range tt.want {
				if m, known := st.MemberOfGroup(t0, strings.ToUpper(g)); !m || !known {
					t.Errorf("MemberOfGroup(%s) = %v, %v", g, m, known)
				}
			}
			if m, known := st.MemberOfGroup(t0, tt.other); m || !known {
				t.Errorf("MemberOfGroup(%s) = %v, %v; want a known non-member", tt.other, m, known)
			}
			if _, known := st.MemberOfGroup(t0, nobody); known {
				t.Error("a group not asked about is known")
			}
			kind := "/users/"
			if tt.p.ServicePrincipal {
				kind = "/servicePrincipals/"
			}
			if n := e.subRequests(kind + tt.p.ObjectID + "/checkMemberGroups"); n != 1 {
				t.Errorf("%d checkMemberGroups sub-requests, want 1", n)
			}
			// In the first $batch, with the PIM requests (a member of a
			// role-assignable group costs the group-roles fetch after it).
			first := e.batches()[0]
			if !slices.ContainsFunc(first, func(r graphtest.Request) bool {
				return r.Method == http.MethodPost && strings.HasSuffix(r.Path, "/checkMemberGroups")
			}) || len(first) != 4 {
				t.Errorf("first $batch: %+v, want the three PIM requests and checkMemberGroups", first)
			}
		})
	}

	// Bob's PIM membership ends: the State fetched before says so from
	// then on (unknown, since that may have been the membership), a new
	// lookup says he is no member.
	st := e.mustLookup(checking(user(bob), groups))
	if _, known := st.MemberOfGroup(at(time.Hour), oncall); known {
		t.Error("bob's membership known past the end of his PIM assignment")
	}
	if st.NotAfter() != at(time.Hour) {
		t.Errorf("NotAfter %v, want the PIM assignment's end", st.NotAfter())
	}
	e.clock.Advance(time.Hour)
	if st := e.mustLookup(checking(user(bob), groups)); len(st.MemberOf) != 0 {
		t.Errorf("after the end: MemberOf %v", st.MemberOf)
	}
	// Carol activates.
	if _, err := e.srv.ActivateGroup(oncall, carol, graphtest.AccessMember, time.Hour); err != nil {
		t.Fatal(err)
	}
	if st := e.mustLookup(checking(user(carol), groups)); !slices.Equal(st.MemberOf, []string{oncall}) {
		t.Errorf("after activation: MemberOf %v", st.MemberOf)
	}
	// Without CheckGroups, nothing is asked and nothing is claimed.
	e.srv.ResetRequests()
	if st := e.mustLookup(user(alice)); st.CheckedGroups != nil || st.MemberOf != nil {
		t.Errorf("without CheckGroups: %v, %v", st.CheckedGroups, st.MemberOf)
	}
	if n := e.subRequests("/users/" + alice + "/checkMemberGroups"); n != 0 {
		t.Errorf("%d checkMemberGroups sub-requests without CheckGroups", n)
	}
}

// manyGroups adds n plain groups and returns their IDs.
func manyGroups(t *testing.T, srv *graphtest.Server, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("9a0e%04x-0000-4000-8000-000000000000", i)
		must(t, srv.AddGroup(ids[i], fmt.Sprint("group ", i), false))
	}
	return ids
}

// TestCheckMemberGroupsCost checks that checking k groups costs
// ceil(k/20) sub-requests in the lookup's one $batch, whether the user
// belongs to none of the tenant's groups or to all of them: the cost
// follows the groups asked about, not the user's memberships.
func TestCheckMemberGroupsCost(t *testing.T) {
	e := newEnv(t, graphtest.Options{}, nil)
	ids := manyGroups(t, e.srv, graphcheck.MaxCheckGroups+50)
	for _, id := range ids {
		must(t, e.srv.AddGroupMember(id, alice)) // alice: every group; bob: none
	}
	for _, k := range []int{1, 20, 21, 45, graphcheck.MaxCheckGroups} {
		asked := groupSet(t, ids[50:50+k]...)
		for _, who := range []string{alice, bob} {
			t.Run(fmt.Sprintf("%d groups, %s", k, who[:4]), func(t *testing.T) {
				e.srv.ResetRequests()
				p := checking(user(who), asked)
				p.Need = graphcheck.NeedAccount | graphcheck.NeedRisk
				st := e.mustLookup(p)
				want := 0
				if who == alice {
					want = k
				}
				if len(st.MemberOf) != want || !slices.Equal(st.CheckedGroups, asked.IDs()) {
					t.Errorf("MemberOf has %d groups, want %d", len(st.MemberOf), want)
				}
				e.wantLookups("lookup", 1)
				if n, want := e.subRequests("/users/"+who+"/checkMemberGroups"), (k+19)/20; n != want {
					t.Errorf("%d checkMemberGroups sub-requests, want %d", n, want)
				}
			})
		}
	}
}

// TestCheckMemberGroupsFaults checks that a checkMemberGroups sub-request
// that fails fails the lookup, classified, and never yields a State that
// would read as "not a member" (or as a member).
func TestCheckMemberGroupsFaults(t *testing.T) {
	forged := `{"value":["` + everyone + `","` + secops + `"]}`
	tests := []struct {
		name   string
		p      graphcheck.Principal
		fault  graphtest.Fault
		want   error
		outage bool
		perm   string
	}{
		{name: "403 Authorization_RequestDenied", p: user(alice), fault: graphtest.DeniedFault(), want: graphcheck.ErrPermissionDenied, perm: msgraph.PermissionCheckMemberGroups},
		{name: "403, service principal", p: app(daemon), fault: graphtest.DeniedFault(), want: graphcheck.ErrPermissionDenied, perm: msgraph.PermissionServicePrincipalMemberOf},
		{name: "404 Request_ResourceNotFound", p: user(alice), fault: graphtest.Fault{Status: 404, Code: "Request_ResourceNotFound"}, want: graphcheck.ErrPrincipalNotFound},
		{name: "404 without Graph's code", p: user(alice), fault: graphtest.Fault{Status: 404, Body: `not found`}, want: graphcheck.ErrUnavailable},
		{name: "400", p: user(alice), fault: graphtest.Fault{Status: 400}, want: graphcheck.ErrUnavailable},
		{name: "500", p: user(alice), fault: graphtest.Fault{Status: 500}, want: graphcheck.ErrUnavailable, outage: true},
		{name: "503 persistent", p: user(alice), fault: graphtest.Fault{Status: 503}, want: graphcheck.ErrUnavailable, outage: true},
		{name: "429 persistent", p: user(alice), fault: graphtest.ThrottledFault("1"), want: graphcheck.ErrUnavailable, outage: true},
		{name: "dropped connection", p: user(alice), fault: graphtest.Fault{Kind: graphtest.FaultDropConnection}, want: graphcheck.ErrUnavailable, outage: true},
		{name: "malformed JSON", p: user(alice), fault: graphtest.MalformedJSONFault(), want: graphcheck.ErrUnavailable},
		{name: "value null", p: user(alice), fault: graphtest.Fault{Body: `{"value":null}`}, want: graphcheck.ErrUnavailable},
		{name: "no value", p: user(alice), fault: graphtest.Fault{Body: `{}`}, want: graphcheck.ErrUnavailable},
		{name: "value of objects", p: user(alice), fault: graphtest.Fault{Body: `{"value":[{"id":"` + staff + `"}]}`}, want: graphcheck.ErrUnavailable},
		{name: "a group not asked about", p: user(alice), fault: graphtest.Fault{Body: forged}, want: graphcheck.ErrUnavailable},
		{name: "a further page", p: user(alice), fault: graphtest.Fault{Body: `{"value":[],"@odata.nextLink":"` + "https://graph.microsoft.com/v1.0/x" + `"}`}, want: graphcheck.ErrUnavailable},
		{name: "a JSON array", p: user(alice), fault: graphtest.Fault{Body: `["` + staff + `"]`}, want: graphcheck.ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, graphtest.Options{}, nil)
			seedMembership(t, e.srv)
			kind := "/users/"
			if tt.p.ServicePrincipal {
				kind = "/servicePrincipals/"
			}
			e.srv.InjectGraphFault(graphtest.GraphMatch{Path: kind + tt.p.ObjectID + "/checkMemberGroups", Scope: graphtest.InsideBatch}, tt.fault)
			st, err := e.lookup(checking(tt.p, groupSet(t, staff, everyone, oncall)))
			if st != nil || !errors.Is(err, tt.want) {
				t.Fatalf("Lookup = %+v, %v; want error %v", st, err, tt.want)
			}
			if got := errors.Is(err, graphcheck.ErrOutage); got != tt.outage {
				t.Errorf("errors.Is(err, ErrOutage) = %v, want %v: %v", got, tt.outage, err)
			}
			var pe *graphcheck.PermissionError
			if got := errors.As(err, &pe); got != (tt.perm != "") || got && (pe.Permission != tt.perm || pe.Request != kind+"{id}/checkMemberGroups") {
				t.Errorf("error %v: want a PermissionError naming %q", err, tt.perm)
			}
		})
	}

	// Retried: the POST is sent again, with its body, and answers.
	e := newEnv(t, graphtest.Options{}, nil)
	seedMembership(t, e.srv)
	e.srv.InjectGraphFault(graphtest.GraphMatch{Path: "/users/" + alice + "/checkMemberGroups", Scope: graphtest.InsideBatch},
		graphtest.Fault{Status: http.StatusTooManyRequests, RetryAfter: "1", Times: 1})
	st := e.mustLookup(checking(user(alice), groupSet(t, staff, oncall)))
	if !slices.Equal(st.MemberOf, []string{staff}) {
		t.Errorf("after a retry: MemberOf %v", st.MemberOf)
	}
	if n := e.subRequests("/users/" + alice + "/checkMemberGroups"); n != 2 {
		t.Errorf("%d checkMemberGroups sub-requests, want 2 (one retry)", n)
	}
}

// TestLookupKeyBindsTheGroupsAsked checks, against the real Source, that
// the answer for one group set does not answer for another: the keys
// differ, and the State of one says nothing of the other's groups.
func TestLookupKeyBindsTheGroupsAsked(t *testing.T) {
	e := newEnv(t, graphtest.Options{}, nil)
	seedMembership(t, e.srv)
	a, b := checking(user(alice), groupSet(t, staff)), checking(user(alice), groupSet(t, oncall))
	if a.LookupKey() == b.LookupKey() {
		t.Fatal("two group sets share a LookupKey")
	}
	st := e.mustLookup(a)
	if !st.CheckedAll(a.CheckGroups) || st.CheckedAll(b.CheckGroups) {
		t.Error("CheckedAll does not tell the sets apart")
	}
	if _, known := st.MemberOfGroup(t0, oncall); known {
		t.Error("a State answered for a group its lookup did not ask about")
	}
}

func TestUser(t *testing.T) {
	e := newEnv(t, graphtest.Options{}, nil)
	must(t, e.srv.AddAdministrativeUnit(au1, "Seattle"))
	must(t, e.srv.AddAdministrativeUnit(au2, "Paris"))
	must(t, e.srv.AddAdministrativeUnitMember(au2, alice))
	must(t, e.srv.AddAdministrativeUnitMember(au1, strings.ToUpper(alice)))
	must(t, e.srv.AddAdministrativeUnitMember(au1, staff))
	must(t, e.srv.AddGroupMember(staff, bob)) // in a group in au1: not in au1

	ctx := context.Background()
	u, err := e.src.User(ctx, strings.ToUpper(graphtest.TenantID), strings.ToUpper(alice))
	if err != nil {
		t.Fatal(err)
	}
	want := &graphcheck.DirectoryUser{TenantID: graphtest.TenantID, ID: alice, DisplayName: "a11c", UserPrincipalName: "a11c@contoso.test",
		AdministrativeUnits: slices.Sorted(slices.Values([]string{au1, au2}))}
	if fmt.Sprint(u) != fmt.Sprint(want) {
		t.Errorf("User = %+v\nwant %+v", u, want)
	}
	e.wantLookups("User", 1)
	if u.InAdministrativeUnit(au1) != true || !slices.Contains(u.Scopes(), "/administrativeUnits/"+au2) {
		t.Errorf("InAdministrativeUnit, Scopes: %v", u.Scopes())
	}

	if u, err := e.src.User(ctx, graphtest.TenantID, bob); err != nil || len(u.AdministrativeUnits) != 0 {
		t.Errorf("bob: %+v, %v; want no unit", u, err)
	}

	// Units over several pages.
	e.srv.SetGraphPageSize(1)
	e.srv.ResetRequests()
	if u, err := e.src.User(ctx, graphtest.TenantID, alice); err != nil || len(u.AdministrativeUnits) != 2 {
		t.Errorf("paged: %+v, %v", u, err)
	}
	e.wantLookups("paged", 2)
	e.srv.SetGraphPageSize(0)

	for _, tc := range []struct {
		name, tenant, id string
		want             error
		sent             bool
	}{
		{"no such user", graphtest.TenantID, nobody, graphcheck.ErrPrincipalNotFound, true},
		{"a service principal", graphtest.TenantID, daemon, graphcheck.ErrPrincipalNotFound, true},
		{"a group", graphtest.TenantID, staff, graphcheck.ErrPrincipalNotFound, true},
		{"not a GUID", graphtest.TenantID, "alice@contoso.test", graphcheck.ErrInvalidPrincipal, false},
		{"a path", graphtest.TenantID, alice + "/memberOf", graphcheck.ErrInvalidPrincipal, false},
		{"tenant not a GUID", "contoso.test", alice, graphcheck.ErrInvalidPrincipal, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.srv.ResetRequests()
			u, err := e.src.User(ctx, tc.tenant, tc.id)
			if u != nil || !errors.Is(err, tc.want) {
				t.Errorf("User = %+v, %v; want %v", u, err, tc.want)
			}
			if sent := e.graphLookups() > 0; sent != tc.sent {
				t.Errorf("sent %v, want %v", sent, tc.sent)
			}
		})
	}
}

func TestUserFaults(t *testing.T) {
	units := graphtest.GraphMatch{Path: "/users/" + alice + "/memberOf/graph.administrativeUnit", Scope: graphtest.InsideBatch}
	self := graphtest.GraphMatch{Path: "/users/" + alice, Scope: graphtest.InsideBatch}
	tests := []struct {
		name   string
		match  graphtest.GraphMatch
		fault  graphtest.Fault
		want   error
		perm   string
		outage bool
		units  []string // when want is nil
	}{
		{name: "units denied", match: units, fault: graphtest.DeniedFault(), want: graphcheck.ErrPermissionDenied, perm: msgraph.PermissionAdministrativeUnit},
		{name: "user denied", match: self, fault: graphtest.DeniedFault(), want: graphcheck.ErrPermissionDenied, perm: msgraph.PermissionUser},
		{name: "units 404", match: units, fault: graphtest.Fault{Status: 404, Code: "Request_ResourceNotFound"}, want: graphcheck.ErrPrincipalNotFound},
		{name: "units 500", match: units, fault: graphtest.Fault{Status: 500}, want: graphcheck.ErrUnavailable, outage: true},
		{name: "$batch dropped", match: batchItself, fault: graphtest.Fault{Kind: graphtest.FaultDropConnection}, want: graphcheck.ErrUnavailable, outage: true},
		{name: "units malformed", match: units, fault: graphtest.MalformedJSONFault(), want: graphcheck.ErrUnavailable},
		{name: "unit without an id", match: units, fault: graphtest.Fault{Body: `{"value":[{"displayName":"x"}]}`}, want: graphcheck.ErrUnavailable},
		{name: "unit id not a GUID", match: units, fault: graphtest.Fault{Body: `{"value":[{"id":"../x"}]}`}, want: graphcheck.ErrUnavailable},
		{name: "another user", match: self, fault: graphtest.Fault{Body: `{"id":"` + bob + `","displayName":"b"}`}, want: graphcheck.ErrUnavailable},
		{name: "user without id", match: self, fault: graphtest.Fault{Body: `{"displayName":"a"}`}, want: graphcheck.ErrUnavailable},
		{name: "nextLink off host", match: units, fault: graphtest.NextLinkOffHostFault(), want: graphcheck.ErrUnavailable},
		{name: "objects of another type are skipped", match: units, fault: graphtest.Fault{Body: `{"value":[` +
			`{"@odata.type":"#microsoft.graph.group","id":"` + staff + `"},{"@odata.type":"#microsoft.graph.administrativeUnit","id":"` + strings.ToUpper(au2) + `"}]}`},
			units: []string{au2}},
		{name: "limited information: id only", match: units, fault: graphtest.Fault{Body: `{"value":[{"id":"` + au1 + `","displayName":null}]}`},
			units: []string{au1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, graphtest.Options{}, nil)
			must(t, e.srv.AddAdministrativeUnit(au1, "Seattle"))
			must(t, e.srv.AddAdministrativeUnitMember(au1, alice))
			e.srv.InjectGraphFault(tt.match, tt.fault)
			u, err := e.src.User(context.Background(), graphtest.TenantID, alice)
			if tt.want == nil {
				if err != nil || !slices.Equal(u.AdministrativeUnits, tt.units) {
					t.Fatalf("User = %+v, %v; want units %v", u, err, tt.units)
				}
				return
			}
			if u != nil || !errors.Is(err, tt.want) {
				t.Fatalf("User = %+v, %v; want %v", u, err, tt.want)
			}
			if got := errors.Is(err, graphcheck.ErrOutage); got != tt.outage {
				t.Errorf("errors.Is(err, ErrOutage) = %v, want %v", got, tt.outage)
			}
			var pe *graphcheck.PermissionError
			if got := errors.As(err, &pe); got != (tt.perm != "") || got && pe.Permission != tt.perm {
				t.Errorf("error %v: want a PermissionError naming %q", err, tt.perm)
			}
		})
	}
}

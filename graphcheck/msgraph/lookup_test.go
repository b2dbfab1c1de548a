package msgraph_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/graphcheck/msgraph"
)

const (
	ga       = graphtest.RoleGlobalAdministrator
	reader   = graphtest.RoleGlobalReader
	userAdm  = graphtest.RoleUserAdministrator
	secAdm   = graphtest.RoleSecurityAdministrator
	groupAdm = graphtest.RoleGroupsAdministrator
	auScope  = "/administrativeUnits/" + au1
)

func TestDirectRoles(t *testing.T) {
	e := newEnv(t, graphtest.Options{}, nil)
	must(t, e.srv.AssignRole(alice, reader, "/", time.Time{}, time.Time{}))
	must(t, e.srv.AssignRole(bob, userAdm, "/", at(-time.Hour), at(2*time.Hour)))
	must(t, e.srv.MakeEligible(carol, ga, "/", time.Time{}))
	if _, err := e.srv.ActivateRole(carol, ga, "/", time.Hour); err != nil {
		t.Fatal(err)
	}
	must(t, e.srv.AssignRole(dave, userAdm, auScope, time.Time{}, time.Time{}))
	must(t, e.srv.MakeEligible(erin, ga, "/", time.Time{})) // eligible, never activated
	must(t, e.srv.AssignRole(frank, reader, "/", at(-2*time.Hour), at(-time.Hour)))

	tests := []struct {
		name string
		oid  string
		want []graphcheck.RoleAssignment
	}{
		{"permanent", alice, []graphcheck.RoleAssignment{
			{RoleDefinitionID: reader, DirectoryScopeID: "/", AssignmentType: graphcheck.AssignmentAssigned}}},
		{"time-bound", bob, []graphcheck.RoleAssignment{
			{RoleDefinitionID: userAdm, DirectoryScopeID: "/", AssignmentType: graphcheck.AssignmentAssigned,
				Window: graphcheck.Window{Start: at(-time.Hour), End: at(2 * time.Hour)}}}},
		{"activated", carol, []graphcheck.RoleAssignment{
			{RoleDefinitionID: ga, DirectoryScopeID: "/", AssignmentType: graphcheck.AssignmentActivated,
				Window: graphcheck.Window{Start: t0, End: at(time.Hour)}}}},
		{"administrative unit", dave, []graphcheck.RoleAssignment{
			{RoleDefinitionID: userAdm, DirectoryScopeID: auScope, AssignmentType: graphcheck.AssignmentAssigned}}},
		{"eligible only", erin, nil},
		{"ended", frank, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := e.mustLookup(user(tt.oid))
			if !reflect.DeepEqual(st.Roles, tt.want) {
				t.Errorf("roles\n got %+v\nwant %+v", st.Roles, tt.want)
			}
			if st.TenantID != graphtest.TenantID || st.ObjectID != tt.oid || !st.FetchedAt.Equal(t0) {
				t.Errorf("state header = %s/%s at %v", st.TenantID, st.ObjectID, st.FetchedAt)
			}
		})
	}

	// Decisions on the States: the AU assignment is not tenant-wide, the
	// eligibility grants nothing, the activation ends on the clock.
	if _, ok := e.mustLookup(user(dave)).RoleActive(t0, userAdm, "/"); ok {
		t.Error("an administrative-unit assignment counted tenant-wide")
	}
	if st := e.mustLookup(user(erin)); !st.Empty() {
		t.Errorf("eligibility granted %+v", st)
	}
	st := e.mustLookup(user(carol))
	if _, ok := st.RoleActive(at(59*time.Minute), ga, "/"); !ok {
		t.Error("activated role not active before its end")
	}
	if _, ok := st.RoleActive(at(time.Hour), ga, "/"); ok {
		t.Error("activated role active at its end")
	}
	e.clock.Advance(time.Hour)
	if st := e.mustLookup(user(carol)); len(st.Roles) != 0 {
		t.Errorf("after expiry: %+v", st.Roles)
	}
}

func TestGroupRoles(t *testing.T) {
	e := newEnv(t, graphtest.Options{}, nil)
	must(t, e.srv.AssignRole(admins, ga, "/", time.Time{}, time.Time{}))
	must(t, e.srv.AssignRole(admins, secAdm, "/", time.Time{}, at(3*time.Hour)))
	must(t, e.srv.AssignRole(secops, groupAdm, auScope, time.Time{}, time.Time{}))
	must(t, e.srv.AddGroupMember(admins, alice))                                                   // permanent member
	must(t, e.srv.AssignGroup(admins, bob, graphtest.AccessMember, at(-time.Hour), at(time.Hour))) // time-bound PIM member
	must(t, e.srv.MakeGroupEligible(admins, carol, graphtest.AccessMember, time.Time{}))           // eligible only
	must(t, e.srv.MakeGroupEligible(admins, dave, graphtest.AccessMember, time.Time{}))
	if _, err := e.srv.ActivateGroup(admins, dave, graphtest.AccessMember, 30*time.Minute); err != nil {
		t.Fatal(err)
	}
	must(t, e.srv.AssignGroup(admins, erin, graphtest.AccessOwner, time.Time{}, time.Time{})) // owner, not member
	must(t, e.srv.AddGroupMember(secops, frank))
	must(t, e.srv.AssignRole(frank, reader, "/", time.Time{}, time.Time{}))

	via := func(role, scope, group string, end time.Time) graphcheck.RoleAssignment {
		return graphcheck.RoleAssignment{RoleDefinitionID: role, DirectoryScopeID: scope, AssignmentType: graphcheck.AssignmentAssigned,
			ViaGroupID: group, Window: graphcheck.Window{End: end}}
	}
	tests := []struct {
		name string
		oid  string
		want []graphcheck.RoleAssignment
	}{
		{"permanent member gets the group's windows", alice, []graphcheck.RoleAssignment{
			via(ga, "/", admins, time.Time{}), via(secAdm, "/", admins, at(3*time.Hour))}},
		{"time-bound PIM member is capped at the membership end", bob, []graphcheck.RoleAssignment{
			{RoleDefinitionID: ga, DirectoryScopeID: "/", AssignmentType: graphcheck.AssignmentAssigned, ViaGroupID: admins,
				Window: graphcheck.Window{Start: at(-time.Hour), End: at(time.Hour)}},
			{RoleDefinitionID: secAdm, DirectoryScopeID: "/", AssignmentType: graphcheck.AssignmentAssigned, ViaGroupID: admins,
				Window: graphcheck.Window{Start: at(-time.Hour), End: at(time.Hour)}}}},
		{"eligible member gets nothing", carol, nil},
		{"activated member is capped at the activation end", dave, []graphcheck.RoleAssignment{
			{RoleDefinitionID: ga, DirectoryScopeID: "/", AssignmentType: graphcheck.AssignmentAssigned, ViaGroupID: admins,
				Window: graphcheck.Window{Start: t0, End: at(30 * time.Minute)}},
			{RoleDefinitionID: secAdm, DirectoryScopeID: "/", AssignmentType: graphcheck.AssignmentAssigned, ViaGroupID: admins,
				Window: graphcheck.Window{Start: t0, End: at(30 * time.Minute)}}}},
		{"owner is not a member", erin, nil},
		{"own and group roles together", frank, []graphcheck.RoleAssignment{
			{RoleDefinitionID: reader, DirectoryScopeID: "/", AssignmentType: graphcheck.AssignmentAssigned},
			via(groupAdm, auScope, secops, time.Time{})}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := e.mustLookup(user(tt.oid))
			if !reflect.DeepEqual(st.Roles, tt.want) {
				t.Errorf("roles\n got %+v\nwant %+v", st.Roles, tt.want)
			}
		})
	}
	if _, ok := e.mustLookup(user(bob)).RoleActive(at(time.Hour), ga, "/"); ok {
		t.Error("group role outlived the PIM membership that grants it")
	}
}

// Graph may report, for a principalId filter, instances the principal holds
// through a group (memberType "Group"); they must not be counted twice nor
// escape the membership cap.
func TestGroupInstancesReportedForMember(t *testing.T) {
	e := newEnv(t, graphtest.Options{ExpandGroupRoleInstances: true}, nil)
	must(t, e.srv.AssignRole(admins, ga, "/", time.Time{}, time.Time{}))
	must(t, e.srv.AssignGroup(admins, bob, graphtest.AccessMember, time.Time{}, at(time.Hour)))
	st := e.mustLookup(user(bob))
	want := []graphcheck.RoleAssignment{{RoleDefinitionID: ga, DirectoryScopeID: "/", AssignmentType: graphcheck.AssignmentAssigned,
		ViaGroupID: admins, Window: graphcheck.Window{End: at(time.Hour)}}}
	if !reflect.DeepEqual(st.Roles, want) {
		t.Errorf("roles\n got %+v\nwant %+v", st.Roles, want)
	}
}

func TestPIMForGroups(t *testing.T) {
	e := newEnv(t, graphtest.Options{}, nil)
	must(t, e.srv.AssignGroup(staff, alice, graphtest.AccessMember, time.Time{}, time.Time{}))
	must(t, e.srv.AssignGroup(staff, alice, graphtest.AccessOwner, at(-time.Hour), at(4*time.Hour)))
	must(t, e.srv.MakeGroupEligible(staff, bob, graphtest.AccessOwner, time.Time{}))
	if _, err := e.srv.ActivateGroup(staff, bob, graphtest.AccessOwner, 2*time.Hour); err != nil {
		t.Fatal(err)
	}
	must(t, e.srv.MakeGroupEligible(staff, carol, graphtest.AccessMember, time.Time{}))

	tests := []struct {
		name string
		oid  string
		want []graphcheck.GroupMembership
	}{
		{"assigned member and time-bound owner", alice, []graphcheck.GroupMembership{
			{GroupID: staff, AccessID: graphcheck.AccessMember, AssignmentType: graphcheck.AssignmentAssigned},
			{GroupID: staff, AccessID: graphcheck.AccessOwner, AssignmentType: graphcheck.AssignmentAssigned,
				Window: graphcheck.Window{Start: at(-time.Hour), End: at(4 * time.Hour)}}}},
		{"activated owner", bob, []graphcheck.GroupMembership{
			{GroupID: staff, AccessID: graphcheck.AccessOwner, AssignmentType: graphcheck.AssignmentActivated,
				Window: graphcheck.Window{Start: t0, End: at(2 * time.Hour)}}}},
		{"eligible only", carol, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := e.mustLookup(user(tt.oid))
			if !reflect.DeepEqual(st.Groups, tt.want) {
				t.Errorf("groups\n got %+v\nwant %+v", st.Groups, tt.want)
			}
		})
	}
	st := e.mustLookup(user(bob))
	if _, ok := st.GroupActive(at(time.Hour), strings.ToUpper(staff), "OWNER"); !ok {
		t.Error("activated ownership not active")
	}
	if _, ok := st.GroupActive(at(time.Hour), staff, graphcheck.AccessMember); ok {
		t.Error("ownership counted as membership")
	}
}

func TestServicePrincipal(t *testing.T) {
	e := newEnv(t, graphtest.Options{}, nil)
	must(t, e.srv.AssignRole(daemon, reader, "/", time.Time{}, time.Time{}))
	must(t, e.srv.AssignRole(admins, ga, "/", time.Time{}, time.Time{}))
	must(t, e.srv.AddGroupMember(admins, daemon))

	st := e.mustLookup(app(daemon))
	want := []graphcheck.RoleAssignment{
		{RoleDefinitionID: reader, DirectoryScopeID: "/", AssignmentType: graphcheck.AssignmentAssigned},
		{RoleDefinitionID: ga, DirectoryScopeID: "/", AssignmentType: graphcheck.AssignmentAssigned, ViaGroupID: admins},
	}
	if !reflect.DeepEqual(st.Roles, want) {
		t.Errorf("roles\n got %+v\nwant %+v", st.Roles, want)
	}
	if n := e.subRequests("/servicePrincipals/" + daemon + "/transitiveMemberOf/"); n != 1 {
		t.Errorf("servicePrincipals transitiveMemberOf sub-requests = %d, want 1", n)
	}
	if n := e.subRequests("/users/"); n != 0 {
		t.Errorf("users sub-requests for a service principal = %d", n)
	}

	// Looked up as a user, the service principal is not found: the caller
	// must say which kind of principal it has.
	if _, err := e.lookup(user(daemon)); !errors.Is(err, graphcheck.ErrPrincipalNotFound) {
		t.Errorf("service principal looked up as a user: %v, want ErrPrincipalNotFound", err)
	}
}

func TestColdLookupIsOneRoundTrip(t *testing.T) {
	e := newEnv(t, graphtest.Options{}, nil)
	must(t, e.srv.AssignRole(alice, reader, "/", time.Time{}, time.Time{}))
	must(t, e.srv.AddGroupMember(staff, alice))
	must(t, e.srv.AssignGroup(staff, alice, graphtest.AccessOwner, time.Time{}, time.Time{}))

	e.mustLookup(user(alice))
	if n := e.roundTrips(); n != 1 {
		t.Fatalf("cold lookup took %d HTTP round trips, want 1", n)
	}
	b := e.batches()
	if len(b) != 1 || len(b[0]) != 3 {
		t.Fatalf("batches = %+v, want one of 3 sub-requests", b)
	}
	wantPaths := []string{
		"/v1.0/roleManagement/directory/roleAssignmentScheduleInstances",
		"/v1.0/identityGovernance/privilegedAccess/group/assignmentScheduleInstances",
		"/v1.0/users/" + alice + "/transitiveMemberOf/graph.group",
	}
	ids := map[string]bool{}
	for i, r := range b[0] {
		if r.Path != wantPaths[i] || r.Method != http.MethodGet {
			t.Errorf("sub-request %d = %s %s, want GET %s", i, r.Method, r.Path, wantPaths[i])
		}
		if !graphcheck.IsGUID(r.BatchID) || ids[r.BatchID] {
			t.Errorf("sub-request %d has id %q, want a fresh UUID", i, r.BatchID)
		}
		ids[r.BatchID] = true
	}
	q := query(t, b[0][0].Query)
	if got := q.Get("$filter"); got != "principalId eq '"+alice+"'" {
		t.Errorf("roles $filter = %q", got)
	}
	if got := q.Get("$select"); got != "roleDefinitionId,directoryScopeId,appScopeId,assignmentType,memberType,startDateTime,endDateTime" {
		t.Errorf("roles $select = %q", got)
	}
	if got := query(t, b[0][1].Query).Get("$select"); got != "groupId,accessId,assignmentType,startDateTime,endDateTime" {
		t.Errorf("PIM for Groups $select = %q", got)
	}
	if got := query(t, b[0][2].Query).Get("$select"); got != "id,isAssignableToRole" {
		t.Errorf("transitiveMemberOf $select = %q", got)
	}
	if n := e.subRequests("/groups"); n != 0 {
		t.Errorf("a principal in no role-assignable group fetched the tenant's groups (%d)", n)
	}
}

func TestGroupRolesFetchedOncePerTTL(t *testing.T) {
	e := newEnv(t, graphtest.Options{}, func(_ *stack, c *msgraph.Config) { c.GroupRolesTTL = time.Minute })
	must(t, e.srv.AssignRole(admins, ga, "/", time.Time{}, time.Time{}))
	for _, u := range []string{alice, bob, carol} {
		must(t, e.srv.AddGroupMember(admins, u))
	}

	steps := []struct {
		name    string
		advance time.Duration
		oid     string
		trips   int // HTTP round trips of this lookup
		groups  int // GET /groups sub-requests of this lookup
	}{
		{"cold tenant: lookup, group list, group roles", 0, alice, 3, 1},
		{"warm tenant: lookup only", 30 * time.Second, bob, 1, 0},
		{"TTL over: fetched again", 30 * time.Second, carol, 3, 1},
		{"unrelated principal never needs it", 0, dave, 1, 0},
	}
	for _, s := range steps {
		e.clock.Advance(s.advance)
		e.srv.ResetRequests()
		st := e.mustLookup(user(s.oid))
		if n := e.roundTrips(); n != s.trips {
			t.Errorf("%s: %d round trips, want %d", s.name, n, s.trips)
		}
		if n := e.subRequests("/groups"); n != s.groups {
			t.Errorf("%s: %d group list requests, want %d", s.name, n, s.groups)
		}
		if _, ok := st.RoleActive(e.clock.Now(), ga, "/"); ok != (s.oid != dave) {
			t.Errorf("%s: GA active = %v", s.name, ok)
		}
	}
}

func TestPaging(t *testing.T) {
	e := newEnv(t, graphtest.Options{GraphPageSize: 2}, nil)
	roles := []string{ga, reader, userAdm, secAdm, groupAdm}
	var groups []string
	for i, r := range roles {
		must(t, e.srv.AssignRole(alice, r, "/", time.Time{}, time.Time{}))
		g := fmt.Sprintf("9000000%d-0000-4000-8000-000000000000", i)
		must(t, e.srv.AddGroup(g, "g", false))
		must(t, e.srv.AssignGroup(g, alice, graphtest.AccessMember, time.Time{}, at(time.Duration(i+1)*time.Hour)))
		groups = append(groups, g)
	}

	st := e.mustLookup(user(alice))
	if len(st.Roles) != 5 || len(st.Groups) != 5 {
		t.Fatalf("got %d roles and %d memberships, want 5 and 5", len(st.Roles), len(st.Groups))
	}
	for i, g := range groups {
		if _, ok := st.GroupActive(t0, g, graphcheck.AccessMember); !ok {
			t.Errorf("membership %d missing", i)
		}
	}
	// Three collections of three pages each: the pages travel together.
	if n := e.roundTrips(); n != 3 {
		t.Errorf("%d round trips, want 3", n)
	}
	for i, b := range e.batches() {
		if len(b) != 3 {
			t.Errorf("batch %d has %d sub-requests, want 3", i, len(b))
		}
	}
}

// More than 20 role-assignable groups: their role instances are read in
// $batch chunks of at most 20.
func TestGroupRolesInChunks(t *testing.T) {
	e := newEnv(t, graphtest.Options{}, nil)
	var last string
	for i := range 25 {
		g := fmt.Sprintf("8000%04d-0000-4000-8000-000000000000", i)
		must(t, e.srv.AddGroup(g, "ra", true))
		must(t, e.srv.AssignRole(g, reader, "/", time.Time{}, time.Time{}))
		last = g
	}
	must(t, e.srv.AddGroupMember(last, alice))

	st := e.mustLookup(user(alice))
	if len(st.Roles) != 1 || st.Roles[0].ViaGroupID != last {
		t.Fatalf("roles = %+v", st.Roles)
	}
	b := e.batches()
	// lookup, group list, then 27 groups (25 + admins + secops) in 20 + 7.
	if len(b) != 4 || len(b[2]) != 20 || len(b[3]) != 7 {
		sizes := []int{}
		for _, x := range b {
			sizes = append(sizes, len(x))
		}
		t.Errorf("batch sizes = %v, want [3 1 20 7]", sizes)
	}
}

func TestInvalidPrincipalNeverReachesGraph(t *testing.T) {
	e := newEnv(t, graphtest.Options{}, nil)
	for _, p := range []graphcheck.Principal{
		{TenantID: graphtest.TenantID, ObjectID: alice + "' or principalId ne '"},
		{TenantID: graphtest.TenantID, ObjectID: "a11ce000-0000-4000-8000-00000000000'"},
		{TenantID: graphtest.TenantID, ObjectID: "../../me"},
		{TenantID: graphtest.TenantID, ObjectID: ""},
		{TenantID: "common", ObjectID: alice},
	} {
		if _, err := e.lookup(p); !errors.Is(err, graphcheck.ErrInvalidPrincipal) {
			t.Errorf("Lookup(%q): %v, want ErrInvalidPrincipal", p.ObjectID, err)
		}
	}
	if n := len(e.srv.Requests()); n != 0 {
		t.Errorf("%d requests reached Graph", n)
	}
	// An upper-case GUID is valid and is sent in lower case.
	must(t, e.srv.AssignRole(alice, reader, "/", time.Time{}, time.Time{}))
	if st := e.mustLookup(user(strings.ToUpper(alice))); len(st.Roles) != 1 {
		t.Errorf("upper-case oid: %+v", st.Roles)
	}
}

func TestBearerTokenReachesGraph(t *testing.T) {
	e := newEnv(t, graphtest.Options{RequireGraphAuth: true}, nil)
	must(t, e.srv.AssignRole(alice, reader, "/", time.Time{}, time.Time{}))
	e.mustLookup(user(alice))
	reqs := e.srv.Requests()
	if len(reqs) == 0 {
		t.Fatal("no requests")
	}
	for _, r := range reqs {
		if r.BearerToken != fakeToken {
			t.Errorf("%s %s carried token %q", r.Method, r.Path, r.BearerToken)
		}
	}
	for _, s := range e.cred.requested() {
		if !reflect.DeepEqual(s, []string{"https://graph.microsoft.com/.default"}) {
			t.Errorf("credential asked for scopes %v", s)
		}
	}

	// Without a token the fake tenant refuses, and that is no "no roles".
	anon := newEnv(t, graphtest.Options{RequireGraphAuth: true}, func(_ *stack, c *msgraph.Config) {
		c.Credential, c.InsecureNoCredential = nil, true
	})
	if _, err := anon.lookup(user(alice)); !errors.Is(err, graphcheck.ErrUnavailable) {
		t.Errorf("unauthenticated lookup: %v, want ErrUnavailable", err)
	}
}

type failingCredential struct{}

func (failingCredential) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{}, errors.New("failingCredential: AADSTS7000215: invalid client secret")
}

// A credential that cannot get a token is an outage, and nothing is sent.
func TestCredentialFailure(t *testing.T) {
	e := newEnv(t, graphtest.Options{}, func(_ *stack, c *msgraph.Config) { c.Credential = failingCredential{} })
	if _, err := e.lookup(user(alice)); !errors.Is(err, graphcheck.ErrUnavailable) || !strings.Contains(err.Error(), "AADSTS7000215") {
		t.Errorf("Lookup: %v, want ErrUnavailable with the credential's reason", err)
	}
	if n := len(e.srv.Requests()); n != 0 {
		t.Errorf("%d requests sent without a token", n)
	}
}

// rewriteTransport sends every request to the fake tenant, whatever host
// the Source thinks it talks to, and keeps the last request's headers.
type rewriteTransport struct {
	target string
	mu     sync.Mutex
	header http.Header
}

func (rt *rewriteTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rt.mu.Lock()
	rt.header = r.Header.Clone()
	rt.mu.Unlock()
	r = r.Clone(r.Context())
	r.URL.Scheme, r.URL.Host, r.Host = "http", rt.target, ""
	return http.DefaultTransport.RoundTrip(r)
}

func TestNationalClouds(t *testing.T) {
	for _, host := range []string{"graph.microsoft.com", "graph.microsoft.us", "dod-graph.microsoft.us", "microsoftgraph.chinacloudapi.cn"} {
		t.Run(host, func(t *testing.T) {
			rt := &rewriteTransport{}
			e := newEnv(t, graphtest.Options{RequireGraphAuth: true}, func(e *stack, c *msgraph.Config) {
				c.BaseURL = "https://" + host + "/v1.0"
				rt.target = strings.TrimPrefix(e.srv.URL, "http://")
				c.Transport = rt
			})
			must(t, e.srv.AssignRole(alice, reader, "/", time.Time{}, time.Time{}))
			if st := e.mustLookup(user(alice)); len(st.Roles) != 1 {
				t.Errorf("roles = %+v", st.Roles)
			}
			want := [][]string{{"https://" + host + "/.default"}}
			if got := e.cred.requested(); !reflect.DeepEqual(got, want) {
				t.Errorf("scopes = %v, want %v", got, want)
			}
			if r := e.srv.Requests()[0]; r.BearerToken != fakeToken {
				t.Errorf("token %q reached the tenant", r.BearerToken)
			}
			// The SDK's middleware still runs above a custom Transport.
			if v := rt.header.Get("SdkVersion"); !strings.Contains(v, "graph-go/") {
				t.Errorf("SdkVersion header %q: the SDK middleware is gone", v)
			}
		})
	}
}

func TestConcurrentLookups(t *testing.T) {
	e := newEnv(t, graphtest.Options{GraphPageSize: 2}, nil)
	must(t, e.srv.AssignRole(admins, ga, "/", time.Time{}, time.Time{}))
	must(t, e.srv.AssignRole(secops, secAdm, "/", time.Time{}, time.Time{}))
	members := map[string]bool{}
	for i, u := range []string{alice, bob, carol, dave, erin, frank} {
		must(t, e.srv.AssignRole(u, reader, "/", time.Time{}, time.Time{}))
		if i%2 == 0 {
			must(t, e.srv.AddGroupMember(admins, u))
			members[u] = true
		}
	}
	users := []string{alice, bob, carol, dave, erin, frank}
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			oid := users[i%len(users)]
			st, err := e.src.Lookup(context.Background(), user(oid))
			if err != nil {
				errs <- err
				return
			}
			_, isGA := st.RoleActive(t0, ga, "/")
			_, isReader := st.RoleActive(t0, reader, "/")
			if isGA != members[oid] || !isReader {
				errs <- fmt.Errorf("%s: GA %v, reader %v", oid, isGA, isReader)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := e.subRequests("/groups"); n != 1 {
		t.Errorf("the tenant's groups were listed %d times, want once", n)
	}
}

// gate holds the n-th HTTP request until released (or its context ends):
// before it is sent or, with answered set, once Graph has answered it, so
// that the Source has not read yet what Graph said.
type gate struct {
	n        int
	answered bool
	mu       sync.Mutex
	count    int
	held     chan struct{}
	released chan struct{}
}

func newGate(n int, answered bool) *gate {
	return &gate{n: n, answered: answered, held: make(chan struct{}), released: make(chan struct{})}
}

func (g *gate) RoundTrip(r *http.Request) (*http.Response, error) {
	g.mu.Lock()
	g.count++
	hold := g.count == g.n
	g.mu.Unlock()
	var (
		resp *http.Response
		err  error
	)
	if g.answered {
		resp, err = http.DefaultTransport.RoundTrip(r)
	}
	if hold {
		close(g.held)
		select {
		case <-g.released:
		case <-r.Context().Done():
			if resp != nil {
				resp.Body.Close()
			}
			return nil, r.Context().Err()
		}
	}
	if g.answered {
		return resp, err
	}
	return http.DefaultTransport.RoundTrip(r)
}

// The tenant-wide group-roles fetch is shared: the caller that started it
// giving up neither cancels it nor fails the callers waiting for it.
func TestSharedGroupRolesFetchOutlivesItsFirstCaller(t *testing.T) {
	g := newGate(2, false) // 2nd request: the group list
	e := newEnv(t, graphtest.Options{}, func(_ *stack, c *msgraph.Config) { c.Transport = g })
	must(t, e.srv.AssignRole(admins, ga, "/", time.Time{}, time.Time{}))
	must(t, e.srv.AddGroupMember(admins, alice))
	must(t, e.srv.AddGroupMember(admins, bob))

	ctxA, cancelA := context.WithCancel(context.Background())
	errA := make(chan error, 1)
	go func() {
		_, err := e.src.Lookup(ctxA, user(alice))
		errA <- err
	}()
	<-g.held
	type result struct {
		st  *graphcheck.State
		err error
	}
	resB := make(chan result, 1)
	go func() {
		st, err := e.src.Lookup(context.Background(), user(bob))
		resB <- result{st, err}
	}()
	for deadline := time.Now().Add(5 * time.Second); e.roundTrips() < 2 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond) // until Bob's own batch has been served
	}
	cancelA()
	if err := <-errA; !errors.Is(err, graphcheck.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Errorf("first caller: %v, want ErrUnavailable and Canceled", err)
	}
	close(g.released)
	r := <-resB
	if r.err != nil {
		t.Fatalf("second caller: %v", r.err)
	}
	if _, ok := r.st.RoleActive(t0, ga, "/"); !ok {
		t.Errorf("second caller's roles = %+v", r.st.Roles)
	}
	if n := e.subRequests("/groups"); n != 1 {
		t.Errorf("group list fetched %d times, want 1", n)
	}
}

// A PIM-for-Groups membership that ends while a throttled $batch waits on
// Retry-After ends the role it grants. Graph answered the membership
// (ending at T+2s) and the group list at T; the principal's own role
// instances were throttled and answered after a 5 s wait. The State must
// hold the group's role with the membership's end, and be judged at T, when
// the requests were sent: had FetchedAt been taken after the wait (T+5s),
// or the cap computed from the memberships still active then, the ended
// membership would have been dropped first and the role come back without
// an end, served for the whole cache TTL.
func TestGroupRoleEndsWithMembershipDuringRetry(t *testing.T) {
	e := newEnv(t, graphtest.Options{}, advancingSleep)
	must(t, e.srv.AssignRole(admins, ga, "/", time.Time{}, time.Time{}))
	must(t, e.srv.AssignGroup(admins, bob, graphtest.AccessMember, time.Time{}, at(2*time.Second)))
	e.srv.InjectGraphFault(graphtest.GraphMatch{Path: "/roleManagement/directory/roleAssignmentScheduleInstances", Scope: graphtest.InsideBatch},
		once(graphtest.ThrottledFault("5")))

	st := e.mustLookup(need(user(bob), graphcheck.NeedRisk))
	if got := e.sleep.slept(); len(got) != 1 || got[0] != 5*time.Second {
		t.Fatalf("waits %v, want the 5 s Retry-After", got)
	}
	if now := e.clock.Now(); !now.Equal(at(5 * time.Second)) {
		t.Fatalf("clock at %v after the lookup, want T+5s", now)
	}
	if !st.FetchedAt.Equal(t0) || !st.Risk.FetchedAt.Equal(t0) {
		t.Errorf("FetchedAt %v, risk FetchedAt %v; want %v, when the requests were sent", st.FetchedAt, st.Risk.FetchedAt, t0)
	}
	if na := st.NotAfter(); !na.Equal(at(2 * time.Second)) {
		t.Errorf("NotAfter = %v, want the membership's end %v (roles %+v)", na, at(2*time.Second), st.Roles)
	}
	for _, r := range st.Roles {
		if r.ViaGroupID == admins && (r.End.IsZero() || r.End.After(at(2*time.Second))) {
			t.Errorf("group role %+v outlives the membership that grants it", r)
		}
	}
	if _, ok := st.RoleActive(e.clock.Now(), ga, "/"); ok {
		t.Error("Global Administrator active through a membership that has ended")
	}
	if _, ok := st.RoleActive(at(time.Second), ga, "/"); !ok {
		t.Error("Global Administrator not active while the membership was")
	}
}

package graphtest_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck/graphtest"
)

// seedRoles gives alice n permanent roles with made-up definition IDs.
func seedRoles(t *testing.T, s *graphtest.Server, n int) []string {
	t.Helper()
	var roles []string
	for i := range n {
		r := fmt.Sprintf("00000000-0000-4000-8000-%012d", i+1)
		must(t, s.AssignRole(alice, r, "/", time.Time{}, time.Time{}))
		roles = append(roles, r)
	}
	return roles
}

// follow reads every page of path, returning the items and the pages' URLs.
func (f *fixture) follow(path string) (items []map[string]any, pages []string) {
	f.t.Helper()
	next := f.srv.GraphURL() + path
	for next != "" {
		if len(pages) > 20 {
			f.t.Fatal("more than 20 pages")
		}
		pages = append(pages, next)
		r := f.getOK(next)
		items = append(items, r.values(f.t)...)
		next, _ = r.body["@odata.nextLink"].(string)
	}
	return items, pages
}

func TestPaging(t *testing.T) {
	tests := []struct {
		name      string
		pageSize  int
		query     string
		wantPages int
	}{
		{"no page size", 0, "", 1},
		{"page size 3", 3, "", 3},
		{"page size 3 with select", 3, "&$select=roleDefinitionId", 3},
		{"$top 2", 0, "&$top=2", 4},
		{"$top smaller than page size", 3, "&$top=2", 4},
		{"$top larger than page size", 3, "&$top=5", 3},
		{"page size equals count", 7, "", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, graphtest.Options{GraphPageSize: tt.pageSize})
			roles := seedRoles(t, f.srv, 7)
			items, pages := f.follow(assignmentsPath + byPrincipal(alice) + tt.query)
			if got := ids(items, "roleDefinitionId"); !equal(got, roles) {
				t.Fatalf("items %v, want %v", got, roles)
			}
			if len(pages) != tt.wantPages {
				t.Fatalf("%d pages, want %d: %v", len(pages), tt.wantPages, pages)
			}
			for _, p := range pages[1:] {
				u, err := url.Parse(p)
				if err != nil || !strings.HasPrefix(p, f.srv.GraphURL()+assignmentsPath+"?") || u.Query().Get("$skiptoken") == "" ||
					u.Query().Get("$filter") != "principalId eq '"+alice+"'" {
					t.Errorf("nextLink %q", p)
				}
			}
		})
	}
	// The whole-tenant listings page like the per-principal ones: every role
	// instance, and a group's PIM for Groups instances.
	t.Run("unfiltered roles and PIM for Groups by groupId", func(t *testing.T) {
		f := newFixture(t, graphtest.Options{GraphPageSize: 2})
		s := f.srv
		holders := []string{alice, bob, carol, daemon, admins}
		for _, p := range holders {
			must(t, s.AssignRole(p, graphtest.RoleGlobalReader, "/", time.Time{}, time.Time{}))
		}
		for _, p := range holders[:4] {
			must(t, s.AssignGroup(staff, p, graphtest.AccessMember, time.Time{}, time.Time{}))
		}
		must(t, s.AssignGroup(everyone, alice, graphtest.AccessOwner, time.Time{}, time.Time{})) // another group's
		byGroup := "groupId eq '" + staff + "'"
		for _, tt := range []struct {
			path, filter string
			want         []string
			pages        int
		}{
			{assignmentsPath, "", holders, 3},
			{groupAssignPath + "?$filter=" + url.QueryEscape(byGroup), byGroup, holders[:4], 2},
		} {
			items, pages := f.follow(tt.path)
			if got := ids(items, "principalId"); !equal(got, tt.want) || len(pages) != tt.pages {
				t.Errorf("%s: %v over %d pages, want %v over %d", tt.path, got, len(pages), tt.want, tt.pages)
			}
			for _, p := range pages[1:] {
				if u, err := url.Parse(p); err != nil || u.Query().Get("$filter") != tt.filter || u.Query().Get("$skiptoken") == "" {
					t.Errorf("nextLink %q", p)
				}
			}
		}
	})
	t.Run("SetGraphPageSize and $count", func(t *testing.T) {
		f := newFixture(t, graphtest.Options{})
		seedRoles(t, f.srv, 4)
		f.srv.SetGraphPageSize(1)
		r := f.getOK(assignmentsPath + "?$count=true")
		if len(r.values(t)) != 1 || r.body["@odata.count"] != float64(4) || r.body["@odata.nextLink"] == nil {
			t.Fatalf("page: %s", r.raw)
		}
		if r := f.get(assignmentsPath + "?$skiptoken=bogus"); r.status != http.StatusBadRequest {
			t.Fatalf("bad skiptoken: %d", r.status)
		}
	})
}

func TestSelect(t *testing.T) {
	f := newFixture(t, graphtest.Options{})
	must(t, f.srv.AssignRole(alice, graphtest.RoleGlobalReader, "/", time.Time{}, time.Time{}))
	tests := []struct {
		path     string
		wantKeys []string
		context  string
	}{
		{assignmentsPath + byPrincipal(alice) + "&$select=roleDefinitionId,endDateTime", []string{"id", "roleDefinitionId", "endDateTime"},
			"roleManagement/directory/roleAssignmentScheduleInstances(roleDefinitionId,endDateTime)"},
		{assignmentsPath + "?$select=PRINCIPALID", []string{"id", "principalId"}, "roleManagement/directory/roleAssignmentScheduleInstances(principalId)"},
		{"/users/" + alice + "/transitiveMemberOf/microsoft.graph.group?$select=id,isAssignableToRole", nil, "groups(id,isAssignableToRole)"},
		{"/groups?$select=id", []string{"id"}, "groups(id)"},
	}
	for _, tt := range tests {
		r := f.getOK(tt.path)
		if ctx := f.srv.GraphURL() + "/$metadata#" + tt.context; r.body["@odata.context"] != ctx {
			t.Errorf("%s: context %v, want %s", tt.path, r.body["@odata.context"], ctx)
		}
		for _, it := range r.values(t) {
			if len(it) != len(tt.wantKeys) {
				t.Errorf("%s: item %v, want keys %v", tt.path, it, tt.wantKeys)
			}
			for _, k := range tt.wantKeys {
				if _, ok := it[k]; !ok {
					t.Errorf("%s: item %v lacks %s", tt.path, it, k)
				}
			}
		}
	}
	if r := f.get(assignmentsPath + "?$select=id,nonsense"); r.status != http.StatusBadRequest || !strings.Contains(string(r.raw), "nonsense") {
		t.Errorf("unknown property: %d %s", r.status, r.raw)
	}
}

func TestQueryValidation(t *testing.T) {
	f := newFixture(t, graphtest.Options{})
	q := func(filter string) string { return "?$filter=" + url.QueryEscape(filter) }
	tests := []struct {
		name, path string
		status     int
		code       string
	}{
		{"eq guid", assignmentsPath + q("principalId eq '"+alice+"'"), 200, ""},
		{"in list", assignmentsPath + q("principalId in ('"+alice+"', '"+bob+"')"), 200, ""},
		{"and", assignmentsPath + q("principalId eq '"+alice+"' and roleDefinitionId eq '"+graphtest.RoleGlobalReader+"'"), 200, ""},
		{"case-insensitive property", assignmentsPath + q("PrincipalID eq '"+alice+"'"), 200, ""},
		{"bool", "/groups" + q("isAssignableToRole eq true"), 200, ""},
		{"unquoted guid", assignmentsPath + q("principalId eq "+alice), 400, "BadRequest"},
		{"not a guid", assignmentsPath + q("principalId eq 'alice'"), 400, "BadRequest"},
		{"injection with or", assignmentsPath + q("principalId eq '"+alice+"' or 1 eq 1"), 400, "BadRequest"},
		{"injection through quotes", assignmentsPath + q("principalId eq '"+alice+"'' or principalId ne ''"), 400, "BadRequest"},
		{"unterminated", assignmentsPath + q("principalId eq '"+alice), 400, "BadRequest"},
		{"ne", assignmentsPath + q("principalId ne '"+alice+"'"), 400, "BadRequest"},
		{"unknown property", assignmentsPath + q("displayName eq '"+alice+"'"), 400, "BadRequest"},
		{"trailing and", assignmentsPath + q("principalId eq '"+alice+"' and"), 400, "BadRequest"},
		{"empty", assignmentsPath + q(""), 400, "BadRequest"},
		{"bool as string", "/groups" + q("isAssignableToRole eq 'true'"), 400, "Request_BadRequest"},
		{"directory guid", "/groups" + q("id eq 'x'"), 400, "Request_BadRequest"},
		{"pim groups bad value", groupAssignPath + q("groupId eq 'staff'"), 400, "BadRequest"},
		{"$top zero", assignmentsPath + "?$top=0", 400, "BadRequest"},
		{"$top too large for directory", "/groups?$top=1000", 400, "Request_BadRequest"},
		{"$orderby", assignmentsPath + "?$orderby=principalId", 400, "BadRequest"},
		{"repeated option", assignmentsPath + "?$top=1&$top=2", 400, "BadRequest"},
		{"pim groups without groupId or principalId", groupAssignPath + "?$top=1", 400, "BadRequest"},
		{"memberOf filter", "/users/" + alice + "/transitiveMemberOf/microsoft.graph.group" + q("id eq '"+staff+"'"), 400, "Request_BadRequest"},
		{"unknown segment", "/roleManagement/directory/nonsense", 400, "BadRequest"},
		{"unknown root", "/sites", 400, "BadRequest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := f.get(tt.path)
			if r.status != tt.status || (tt.code != "" && r.errorCode() != tt.code) {
				t.Fatalf("%s: %d %s; want %d %s", tt.path, r.status, r.raw, tt.status, tt.code)
			}
			if tt.status >= 400 {
				inner, _ := r.body["error"].(map[string]any)["innerError"].(map[string]any)
				if inner["request-id"] == nil || inner["date"] != "2025-03-01T09:00:00" || inner["client-request-id"] == nil {
					t.Fatalf("innerError: %s", r.raw)
				}
			}
		})
	}
	if r := f.do(http.MethodDelete, assignmentsPath, nil); r.status != http.StatusMethodNotAllowed {
		t.Errorf("DELETE: %d %s", r.status, r.raw)
	}
}

func TestAuthAndRecording(t *testing.T) {
	f := newFixture(t, graphtest.Options{RequireGraphAuth: true})
	r := f.get(assignmentsPath)
	if r.status != http.StatusUnauthorized || r.errorCode() != "InvalidAuthenticationToken" || r.header.Get("WWW-Authenticate") == "" {
		t.Fatalf("without token: %d %s", r.status, r.raw)
	}
	tok := f.srv.MustMint(graphtest.Token{ObjectID: alice, Audience: "https://graph.microsoft.com"})
	f.token = tok
	f.getOK(assignmentsPath + byPrincipal(alice))
	reqs := f.srv.Requests()
	if len(reqs) != 2 || reqs[0].BearerToken != "" || reqs[1].BearerToken != tok ||
		reqs[1].Path != "/v1.0"+assignmentsPath || reqs[1].Query != byPrincipal(alice)[1:] || !reqs[1].At.Equal(t0) {
		t.Fatalf("recorded: %+v", reqs)
	}
	f.srv.SetRequireGraphAuth(false)
	f.token = ""
	f.getOK(assignmentsPath)
	if n := f.srv.CountRequests("/v1.0/roleManagement/"); n != 3 {
		t.Fatalf("CountRequests = %d", n)
	}
	// The token half is untouched by Graph routing.
	resp, err := f.srv.Client().Get(f.srv.URL + "/" + graphtest.TenantID + "/v2.0/.well-known/openid-configuration")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("discovery: %v %v", resp, err)
	}
	resp.Body.Close()
	// The legacy fault API still applies to Graph paths.
	remove := f.srv.InjectFault(graphtest.PathPrefix("/v1.0/users/"), http.StatusServiceUnavailable)
	if r := f.get("/users/" + alice); r.status != http.StatusServiceUnavailable {
		t.Fatalf("InjectFault on Graph: %d", r.status)
	}
	remove()
	f.getOK("/users/" + alice)
}

// A path the Graph half does not serve answers as Graph answers a segment
// it does not know: 400 BadRequest naming the first such segment.
func TestRoutesNotServed(t *testing.T) {
	f := newFixture(t, graphtest.Options{})
	tests := []struct{ path, segment string }{
		{"/me", "me"},
		{"/directoryObjects/" + alice, "directoryObjects"},
		{"/roleManagement", "roleManagement"},
		{"/roleManagement/directory/roleAssignments", "roleAssignments"},
		{"/roleManagement/directory/roleEligibilityScheduleInstances", "roleEligibilityScheduleInstances"},
		{assignmentsPath + "/filterByCurrentUser(on='principal')", "filterByCurrentUser(on='principal')"},
		{"/identityGovernance/privilegedAccess/group/eligibilityScheduleInstances", "eligibilityScheduleInstances"},
		{"/servicePrincipals", "servicePrincipals"},
		{"/groups/" + staff, staff},
		{"/users/" + alice + "/memberOf", "memberOf"},
		{"/users/" + alice + "/transitiveMemberOf", "transitiveMemberOf"},
		{"/users/" + alice + "/transitiveMemberOf/microsoft.graph.directoryRole", "microsoft.graph.directoryRole"},
		{"/users/" + alice + "/transitiveMemberOf/graph.group/extra", "extra"},
		{"/users/" + alice + "/revokeSignInSessions", "revokeSignInSessions"},
	}
	for _, tt := range tests {
		r := f.get(tt.path)
		e, _ := r.body["error"].(map[string]any)
		msg, _ := e["message"].(string)
		if r.status != http.StatusBadRequest || r.errorCode() != "BadRequest" || msg != "Resource not found for the segment '"+tt.segment+"'." {
			t.Errorf("%s: %d %s, want 400 naming %q", tt.path, r.status, r.raw, tt.segment)
		}
	}
}

package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/middleware"
)

const (
	groupID     = "6a7b8c9d-0e1f-4a2b-8c3d-4e5f6a7b8c9d"
	otherGroup  = "1f2e3d4c-5b6a-4978-8a1b-2c3d4e5f6a7b"
	auID        = "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f"
	otherAU     = "8e9f0a1b-2c3d-4e5f-9a6b-7c8d9e0f1a2b"
	userAdmin   = middleware.RoleUserAdministrator
	globalAdmin = middleware.RoleGlobalAdministrator
	helpdesk    = middleware.RoleHelpdeskAdministrator
)

func TestGuardAllowsActiveRoleAndCachesState(t *testing.T) {
	g := newGuardFixture(t, nil)
	tok := g.mint(graphtest.Token{})
	g.dir.activateRole(userOID, userAdmin, "/", 8*time.Hour)

	rec := g.do(middleware.Role(userAdmin), tok)
	expect(t, rec, http.StatusOK, "")
	if got := rec.Body.String(); got != "role:"+userAdmin+"@//via=" {
		t.Errorf("handler saw active roles %q", got)
	}
	if rec := g.do(middleware.Role(userAdmin), tok); rec.Code != http.StatusOK {
		t.Fatalf("second request: %d %s", rec.Code, rec.Body)
	}
	if n := g.dir.calls.Load(); n != 1 {
		t.Errorf("%d source lookups for two requests, want 1", n)
	}
	if key, _ := g.dir.lastKey.Load().(string); key != graphtest.TenantID+"/"+userOID {
		t.Errorf("looked up %q", key)
	}
	if g.dir.lastSP.Load() {
		t.Error("user looked up as a service principal")
	}
}

func TestGuardDeniesDeactivatedRoleWithinTTL(t *testing.T) {
	g := newGuardFixture(t, func(c *middleware.GuardConfig) { c.CacheTTL = 30 * time.Second })
	tok := g.mint(graphtest.Token{Wids: []string{userAdmin}}) // the token keeps claiming the role
	g.dir.activateRole(userOID, userAdmin, "/", 8*time.Hour)
	expect(t, g.do(middleware.Role(userAdmin), tok), http.StatusOK, "")

	g.dir.deactivateRoles(userOID)
	g.clock.Advance(29 * time.Second)
	// Within the TTL the cached state still holds the role: the bounded
	// window CacheTTL documents.
	expect(t, g.do(middleware.Role(userAdmin), tok), http.StatusOK, "")
	g.clock.Advance(time.Second)
	rec := g.do(middleware.Role(userAdmin), tok)
	b := expect(t, rec, http.StatusForbidden, middleware.CodeRoleNotActive)
	if !slices.Equal(b.Required, []string{"role:" + userAdmin}) || b.Error != middleware.OAuthInsufficientScope {
		t.Errorf("body %+v", b)
	}
	want := `Bearer realm="pimguard", error="insufficient_scope", error_description="` + b.ErrorDescription + `"`
	if got := rec.Header().Get("WWW-Authenticate"); got != want {
		t.Errorf("WWW-Authenticate %q, want %q", got, want)
	}
	if n := g.dir.calls.Load(); n != 2 {
		t.Errorf("%d lookups, want 2 (one per TTL)", n)
	}
	if n := g.served.Load(); n != 2 {
		t.Errorf("handler served %d requests, want 2", n)
	}
}

func TestGuardDeniesAtEndDateTimeWhateverTheTTL(t *testing.T) {
	g := newGuardFixture(t, func(c *middleware.GuardConfig) { c.CacheTTL = time.Hour })
	tok := g.mint(graphtest.Token{})
	end := g.dir.activateRole(userOID, userAdmin, "/", 10*time.Minute)
	expect(t, g.do(middleware.Role(userAdmin), tok), http.StatusOK, "")

	g.clock.Set(end.Add(-time.Nanosecond))
	expect(t, g.do(middleware.Role(userAdmin), tok), http.StatusOK, "")
	if n := g.dir.calls.Load(); n != 1 {
		t.Fatalf("%d lookups before the end, want 1 (cached)", n)
	}
	g.clock.Set(end)
	expect(t, g.do(middleware.Role(userAdmin), tok), http.StatusForbidden, middleware.CodeRoleNotActive)
	if n := g.served.Load(); n != 2 {
		t.Errorf("handler served %d requests, want 2", n)
	}
}

// A lookup that answers just before the end, with the decision made just
// after it: the state holds the assignment, the decision at now does not
// count it, and the client is told when it ended.
func TestGuardDecidesAtNowNotAtFetchTime(t *testing.T) {
	g := newGuardFixture(t, func(c *middleware.GuardConfig) { c.CacheTTL = time.Hour })
	tok := g.mint(graphtest.Token{})
	end := g.dir.activateRole(userOID, userAdmin, "/", 10*time.Minute)
	g.clock.Set(end.Add(-time.Second))
	// Graph answers at end-1s; the clock reaches the end before the decision.
	g2 := newGuardFixtureWithSource(t, g, graphcheck.SourceFunc(func(ctx context.Context, p graphcheck.Principal) (*graphcheck.State, error) {
		s, err := g.dir.lookup(ctx, p)
		g.clock.Set(end)
		return s, err
	}))
	rec := g2.doWith(g2.guard.Require(middleware.Role(userAdmin)), tok)
	b := expect(t, rec, http.StatusForbidden, middleware.CodeRoleNotActive)
	if b.EndedAt != end.UTC().Format(time.RFC3339) {
		t.Errorf("ended_at %q, want %s", b.EndedAt, end.UTC().Format(time.RFC3339))
	}
	if rec := g2.doWith(g2.guard.Require(middleware.Role(globalAdmin)), tok); rec.Code != http.StatusForbidden || decodeBody(t, rec).EndedAt != "" {
		t.Errorf("a role never active: %d %s; want 403 without ended_at", rec.Code, rec.Body)
	}
}

// newGuardFixtureWithSource shares g's tenant, clock and Authenticator with
// a second Guard over src.
func newGuardFixtureWithSource(t *testing.T, g *guardFixture, src graphcheck.Source) *guardFixture {
	t.Helper()
	g2 := &guardFixture{fixture: g.fixture, dir: g.dir, glogs: g.glogs}
	g2.guard = middleware.MustNewGuard(middleware.GuardConfig{Source: src, Now: g.clock.Now, CacheTTL: time.Hour})
	return g2
}

func TestGuardClaimsPolicy(t *testing.T) {
	tests := []struct {
		name    string
		policy  middleware.ClaimsPolicy
		wids    []string
		groups  []string
		live    bool
		req     middleware.Requirement
		status  int
		code    string
		comment string
	}{
		{name: "live: activated after issue", policy: middleware.PolicyLive, live: true, req: middleware.Role(userAdmin), status: 200},
		{name: "live: wids without live role", policy: middleware.PolicyLive, wids: []string{userAdmin}, req: middleware.Role(userAdmin), status: 403, code: middleware.CodeRoleNotActive},
		{name: "token-and-live: activated after issue", policy: middleware.PolicyTokenAndLive, live: true, req: middleware.Role(userAdmin), status: 403, code: middleware.CodeRoleNotInToken},
		{name: "token-and-live: both agree", policy: middleware.PolicyTokenAndLive, live: true, wids: []string{strings.ToUpper(userAdmin)}, req: middleware.Role(userAdmin), status: 200},
		{name: "token-and-live: wids without live role", policy: middleware.PolicyTokenAndLive, wids: []string{userAdmin}, req: middleware.Role(userAdmin), status: 403, code: middleware.CodeRoleNotActive},
		{name: "live: group activated after issue", policy: middleware.PolicyLive, live: true, req: middleware.GroupMember(groupID), status: 200},
		{name: "token-and-live: group not in token", policy: middleware.PolicyTokenAndLive, live: true, req: middleware.GroupMember(groupID), status: 403, code: middleware.CodeGroupNotInToken},
		{name: "token-and-live: group in token", policy: middleware.PolicyTokenAndLive, live: true, groups: []string{groupID}, req: middleware.GroupMember(groupID), status: 200},
		{name: "token-and-live: group role not in wids", policy: middleware.PolicyTokenAndLive, live: true, groups: []string{groupID}, req: middleware.Role(helpdesk), status: 403, code: middleware.CodeRoleNotInToken},
		{name: "token-and-live: AU-scoped role has no claim", policy: middleware.PolicyTokenAndLive, live: true, req: middleware.RoleInScope(userAdmin, middleware.AdministrativeUnitScope(auID)), status: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGuardFixture(t, func(c *middleware.GuardConfig) { c.ClaimsPolicy = tt.policy })
			tok := g.mint(graphtest.Token{Wids: tt.wids, Groups: tt.groups})
			g.clock.Advance(5 * time.Minute) // the activation comes after the token
			if tt.live {
				g.dir.activateRole(userOID, userAdmin, "/", time.Hour)
				g.dir.activateRole(userOID, userAdmin, middleware.AdministrativeUnitScope(auID), time.Hour)
				g.dir.makeRoleAssignable(groupID, helpdesk)
				g.dir.activateGroup(userOID, groupID, graphcheck.AccessMember, time.Hour)
			}
			expect(t, g.do(tt.req, tok), tt.status, tt.code)
			if tt.status != 200 && g.served.Load() != 0 {
				t.Error("handler called on a denial")
			}
		})
	}
}

func TestGuardGroupDerivedRole(t *testing.T) {
	g := newGuardFixture(t, func(c *middleware.GuardConfig) { c.CacheTTL = time.Hour })
	tok := g.mint(graphtest.Token{})
	g.dir.makeRoleAssignable(groupID, helpdesk)
	end := g.dir.activateGroup(userOID, groupID, graphcheck.AccessMember, 20*time.Minute)

	rec := g.do(middleware.Role(helpdesk), tok)
	expect(t, rec, http.StatusOK, "")
	if !strings.Contains(rec.Body.String(), "via="+groupID) {
		t.Errorf("handler saw %q, want the role via the group", rec.Body)
	}
	expect(t, g.do(middleware.GroupMember(groupID), tok), http.StatusOK, "")
	expect(t, g.do(middleware.GroupOwner(groupID), tok), http.StatusForbidden, middleware.CodeGroupNotActive)
	expect(t, g.do(middleware.GroupMember(otherGroup), tok), http.StatusForbidden, middleware.CodeGroupNotActive)

	// The role held through the group ends with the membership, at the
	// exact instant, despite an hour of TTL.
	g.clock.Set(end.Add(-time.Nanosecond))
	expect(t, g.do(middleware.Role(helpdesk), tok), http.StatusOK, "")
	g.clock.Set(end)
	expect(t, g.do(middleware.Role(helpdesk), tok), http.StatusForbidden, middleware.CodeRoleNotActive)
	expect(t, g.do(middleware.GroupMember(groupID), tok), http.StatusForbidden, middleware.CodeGroupNotActive)
}

func TestGuardGroupDeactivatedWithinTTL(t *testing.T) {
	g := newGuardFixture(t, func(c *middleware.GuardConfig) { c.CacheTTL = 30 * time.Second })
	tok := g.mint(graphtest.Token{Groups: []string{groupID}})
	g.dir.makeRoleAssignable(groupID, helpdesk)
	g.dir.activateGroup(userOID, groupID, graphcheck.AccessMember, 8*time.Hour)
	g.dir.activateGroup(userOID, otherGroup, graphcheck.AccessOwner, 8*time.Hour)
	for _, req := range []middleware.Requirement{middleware.Role(helpdesk), middleware.GroupMember(groupID), middleware.GroupOwner(otherGroup)} {
		expect(t, g.do(req, tok), http.StatusOK, "")
	}
	g.dir.deactivateGroups(userOID)
	g.clock.Advance(30 * time.Second)
	expect(t, g.do(middleware.Role(helpdesk), tok), http.StatusForbidden, middleware.CodeRoleNotActive)
	expect(t, g.do(middleware.GroupMember(groupID), tok), http.StatusForbidden, middleware.CodeGroupNotActive)
	expect(t, g.do(middleware.GroupOwner(otherGroup), tok), http.StatusForbidden, middleware.CodeGroupNotActive)
}

func TestGuardAdministrativeUnitScope(t *testing.T) {
	g := newGuardFixture(t, nil)
	tok := g.mint(graphtest.Token{Wids: []string{userAdmin}})
	g.dir.activateRole(userOID, userAdmin, middleware.AdministrativeUnitScope(auID), time.Hour)
	tests := []struct {
		req    middleware.Requirement
		status int
	}{
		{middleware.Role(userAdmin), 403},
		{middleware.RoleInScope(userAdmin, "/"), 403},
		{middleware.RoleInScope(userAdmin, middleware.AdministrativeUnitScope(auID)), 200},
		{middleware.RoleInScope(userAdmin, "/AdministrativeUnits/"+strings.ToUpper(auID)), 200},
		{middleware.RoleInScope(userAdmin, middleware.AdministrativeUnitScope(otherAU)), 403},
		{middleware.AnyOf(middleware.Role(userAdmin), middleware.RoleInScope(userAdmin, middleware.AdministrativeUnitScope(auID))), 200},
	}
	for _, tt := range tests {
		t.Run(tt.req.String(), func(t *testing.T) {
			rec := g.do(tt.req, tok)
			code := ""
			if tt.status == 403 {
				code = middleware.CodeRoleNotActive
			}
			b := expect(t, rec, tt.status, code)
			if tt.status == 403 && !slices.Equal(b.Required, []string{tt.req.String()}) {
				t.Errorf("required %q, want [%s]", b.Required, tt.req)
			}
		})
	}
}

func TestGuardComposition(t *testing.T) {
	g := newGuardFixture(t, nil)
	tok := g.mint(graphtest.Token{Scopes: []string{"access_as_user", "Users.Manage"}})
	g.dir.activateRole(userOID, helpdesk, "/", time.Hour)
	ga, hd, gm := middleware.Role(globalAdmin), middleware.Role(helpdesk), middleware.GroupMember(groupID)
	tests := []struct {
		name     string
		req      middleware.Requirement
		status   int
		code     string
		required []string
	}{
		{"any: second holds", middleware.AnyOf(ga, hd), 200, "", nil},
		{"any: none holds", middleware.AnyOf(gm, ga), 403, middleware.CodeGroupNotActive, []string{"group-member:" + groupID, "role:" + globalAdmin}},
		{"all: one missing", middleware.AllOf(hd, ga), 403, middleware.CodeRoleNotActive, []string{"role:" + globalAdmin}},
		{"all: all missing", middleware.AllOf(ga, gm), 403, middleware.CodeRoleNotActive, []string{"role:" + globalAdmin, "group-member:" + groupID}},
		{"all: role and scope", middleware.AllOf(hd, middleware.Scope("Users.Manage")), 200, "", nil},
		{"all: role and missing app role", middleware.AllOf(hd, middleware.AppRole("Directory.Admin")), 403, middleware.CodeAppRoleMissing, []string{"app-role:Directory.Admin"}},
		{"missing scope", middleware.Scope("Users.Delete"), 403, middleware.CodeScopeMissing, []string{"scope:Users.Delete"}},
		{"nested", middleware.AllOf(middleware.AnyOf(ga, hd), middleware.AnyOf(middleware.Scope("x"), middleware.Scope("access_as_user"))), 200, "", nil},
		{"nested fails inside any", middleware.AllOf(hd, middleware.AnyOf(ga, gm)), 403, middleware.CodeRoleNotActive, []string{"role:" + globalAdmin, "group-member:" + groupID}},
		{"same missing role twice", middleware.AllOf(ga, middleware.AnyOf(ga, gm)), 403, middleware.CodeRoleNotActive, []string{"role:" + globalAdmin, "group-member:" + groupID}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := g.served.Load()
			b := expect(t, g.do(tt.req, tok), tt.status, tt.code)
			if !slices.Equal(b.Required, tt.required) {
				t.Errorf("required %q, want %q", b.Required, tt.required)
			}
			if served := g.served.Load() - before; (served == 1) != (tt.status == 200) {
				t.Errorf("handler served %d times", served)
			}
		})
	}
}

func TestGuardClaimsOnlyRequirementSkipsLookup(t *testing.T) {
	g := newGuardFixture(t, nil)
	app := g.mint(graphtest.Token{ObjectID: appOID, App: true, Roles: []string{"Helpdesk.ReadWrite"}})
	expect(t, g.do(middleware.AppRole("Helpdesk.ReadWrite"), app), http.StatusOK, "")
	expect(t, g.do(middleware.Scope("access_as_user"), app), http.StatusForbidden, middleware.CodeScopeMissing)
	if n := g.dir.calls.Load(); n != 0 {
		t.Errorf("%d lookups for claims-only requirements, want 0", n)
	}
	if rec := g.do(middleware.Role(helpdesk), app); rec.Code != http.StatusForbidden {
		t.Fatalf("status %d", rec.Code)
	}
	if !g.dir.lastSP.Load() {
		t.Error("app-only token not looked up as a service principal")
	}
}

func TestGuardSourceFailures(t *testing.T) {
	tests := []struct {
		name  string
		err   error
		panic bool
		level string
		perm  string
	}{
		{name: "unavailable", err: fmt.Errorf("%w: 503 from Graph", graphcheck.ErrUnavailable), level: "WARN"},
		{name: "throttled", err: fmt.Errorf("%w: 429 TooManyRequests", graphcheck.ErrUnavailable), level: "WARN"},
		{name: "permission", err: &graphcheck.PermissionError{Permission: "RoleAssignmentSchedule.Read.Directory", Request: "/roleManagement/directory/roleAssignmentScheduleInstances", Code: "Authorization_RequestDenied", Err: graphcheck.ErrPermissionDenied}, level: "ERROR", perm: "RoleAssignmentSchedule.Read.Directory"},
		{name: "licence", err: &graphcheck.PermissionError{Permission: "Microsoft Entra ID P2", Request: "/roleManagement/directory/roleAssignmentScheduleInstances", Code: "AadPremiumLicenseRequired", Err: graphcheck.ErrLicenseRequired}, level: "ERROR", perm: "Microsoft Entra ID P2"},
		{name: "bare permission sentinel", err: graphcheck.ErrPermissionDenied, level: "ERROR"},
		{name: "unknown error", err: errors.New("something else"), level: "WARN"},
		{name: "deadline", err: context.DeadlineExceeded, level: "WARN"},
		{name: "source panics", panic: true, level: "WARN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGuardFixture(t, nil)
			tok := g.mint(graphtest.Token{Wids: []string{userAdmin}})
			g.dir.activateRole(userOID, userAdmin, "/", time.Hour)
			g.dir.fail(tt.err)
			if tt.panic {
				g.dir.edit(func(d *fakeDirectory) { d.onLookup = func(graphcheck.Principal) { panic("boom") } })
			}
			for range 2 { // errors are not cached: each request asks again
				rec := g.do(middleware.Role(userAdmin), tok)
				b := expect(t, rec, http.StatusServiceUnavailable, middleware.CodePIMUnavailable)
				if ra := rec.Header().Get("Retry-After"); ra != "5" {
					t.Errorf("Retry-After %q, want 5", ra)
				}
				if b.Error != "" || len(b.Required) != 0 {
					t.Errorf("body %s", rec.Body)
				}
			}
			if g.served.Load() != 0 {
				t.Fatal("the protected handler was called")
			}
			if n := g.dir.calls.Load(); n != 2 {
				t.Errorf("%d lookups, want 2", n)
			}
			rec := g.lastRecord()
			if rec["level"] != tt.level || rec["outcome"] != "error" || rec["code"] != middleware.CodePIMUnavailable {
				t.Errorf("record %v", rec)
			}
			if tt.perm != "" && rec["permission"] != tt.perm {
				t.Errorf("record names permission %v, want %q", rec["permission"], tt.perm)
			}
		})
	}
}

func TestGuardBrokenSourceAnswers(t *testing.T) {
	tests := []struct {
		name string
		src  graphcheck.SourceFunc
	}{
		{"nil state", func(context.Context, graphcheck.Principal) (*graphcheck.State, error) { return nil, nil }},
		{"someone else's state", func(_ context.Context, p graphcheck.Principal) (*graphcheck.State, error) {
			return &graphcheck.State{TenantID: p.TenantID, ObjectID: appOID, Roles: []graphcheck.RoleAssignment{{RoleDefinitionID: userAdmin, DirectoryScopeID: "/"}}}, nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGuardFixture(t, func(c *middleware.GuardConfig) { c.Source = tt.src })
			expect(t, g.do(middleware.Role(userAdmin), g.mint(graphtest.Token{})), http.StatusServiceUnavailable, middleware.CodePIMUnavailable)
			if g.served.Load() != 0 {
				t.Fatal("the protected handler was called")
			}
		})
	}
}

func TestGuardPrincipalNotFound(t *testing.T) {
	g := newGuardFixture(t, func(c *middleware.GuardConfig) { c.NegativeTTL = 5 * time.Second })
	tok := g.mint(graphtest.Token{})
	g.dir.fail(fmt.Errorf("%w: 404 Request_ResourceNotFound", graphcheck.ErrPrincipalNotFound))
	for range 2 {
		rec := g.do(middleware.Role(userAdmin), tok)
		expect(t, rec, http.StatusUnauthorized, middleware.CodePrincipalNotFound)
		if ch := rec.Header().Get("WWW-Authenticate"); !strings.Contains(ch, `error="invalid_token"`) {
			t.Errorf("WWW-Authenticate %q", ch)
		}
	}
	if n := g.dir.calls.Load(); n != 1 {
		t.Errorf("%d lookups, want 1: not-found is remembered for NegativeTTL", n)
	}
	g.clock.Advance(5 * time.Second)
	g.do(middleware.Role(userAdmin), tok)
	if n := g.dir.calls.Load(); n != 2 {
		t.Errorf("%d lookups after NegativeTTL, want 2", n)
	}
	if g.served.Load() != 0 {
		t.Fatal("the protected handler was called")
	}
	if rec := g.lastRecord(); rec["outcome"] != "deny" || rec["level"] != "INFO" {
		t.Errorf("record %v", rec)
	}
}

func TestGuardInvalidPrincipalIDs(t *testing.T) {
	g := newGuardFixture(t, nil)
	tok := g.mint(graphtest.Token{ObjectID: "not-a-guid"})
	expect(t, g.do(middleware.Role(userAdmin), tok), http.StatusUnauthorized, middleware.CodePrincipalNotFound)
	if n := g.dir.calls.Load(); n != 0 {
		t.Errorf("%d lookups with an invalid oid, want 0", n)
	}
}

func TestGuardStaleIfError(t *testing.T) {
	g := newGuardFixture(t, func(c *middleware.GuardConfig) {
		c.CacheTTL = 30 * time.Second
		c.MaxStale = 10 * time.Minute
	})
	tok := g.mint(graphtest.Token{})
	end := g.dir.activateRole(userOID, userAdmin, "/", 3*time.Minute)
	g.dir.activateRole(userOID, helpdesk, "/", 0) // permanent
	start := g.clock.Now()
	expect(t, g.do(middleware.Role(userAdmin), tok), http.StatusOK, "")

	g.dir.fail(fmt.Errorf("%w: 503", graphcheck.ErrUnavailable))
	g.clock.Advance(31 * time.Second)
	expect(t, g.do(middleware.Role(userAdmin), tok), http.StatusOK, "")
	if rec := g.lastRecord(); rec["state"] != "stale" || rec["outcome"] != "allow" || rec["refresh_error"] == nil {
		t.Errorf("record %v", rec)
	}

	// The stale state still holds the assignment, but never past its end.
	g.clock.Set(end)
	b := expect(t, g.do(middleware.Role(userAdmin), tok), http.StatusForbidden, middleware.CodeRoleNotActive)
	if b.EndedAt != end.UTC().Format(time.RFC3339) {
		t.Errorf("ended_at %q, want %s", b.EndedAt, end.UTC().Format(time.RFC3339))
	}
	expect(t, g.do(middleware.Role(helpdesk), tok), http.StatusOK, "")

	// The entry stopped being fresh at start+TTL; MaxStale counts from there.
	g.clock.Set(start.Add(30*time.Second + 10*time.Minute - time.Nanosecond))
	expect(t, g.do(middleware.Role(helpdesk), tok), http.StatusOK, "")
	g.clock.Set(start.Add(30*time.Second + 10*time.Minute))
	expect(t, g.do(middleware.Role(helpdesk), tok), http.StatusServiceUnavailable, middleware.CodePIMUnavailable)
}

func TestGuardFailsClosedWithoutMaxStale(t *testing.T) {
	g := newGuardFixture(t, func(c *middleware.GuardConfig) { c.CacheTTL = 30 * time.Second })
	tok := g.mint(graphtest.Token{})
	g.dir.activateRole(userOID, userAdmin, "/", 0)
	expect(t, g.do(middleware.Role(userAdmin), tok), http.StatusOK, "")
	g.dir.fail(graphcheck.ErrUnavailable)
	g.clock.Advance(30 * time.Second)
	expect(t, g.do(middleware.Role(userAdmin), tok), http.StatusServiceUnavailable, middleware.CodePIMUnavailable)
	if n := g.served.Load(); n != 1 {
		t.Errorf("handler served %d requests, want 1", n)
	}
}

// TestGuardCoalescesColdLookups sends 1000 concurrent requests for one
// principal with an empty cache. synctest.Wait returns once every request is
// blocked waiting for the single lookup, which is then released.
func TestGuardCoalescesColdLookups(t *testing.T) {
	g := newGuardFixture(t, func(c *middleware.GuardConfig) {
		c.Logger = slog.New(slog.DiscardHandler) // 1000 decision records are not the point here
	})
	tok := g.mint(graphtest.Token{})
	if _, err := g.auth.Verify(context.Background(), tok); err != nil { // warm the token cache
		t.Fatal(err)
	}
	g.dir.activateRole(userOID, userAdmin, "/", time.Hour)
	h := g.auth.Handler(g.guard.Require(middleware.Role(userAdmin))(g.protected()))

	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		g.dir.edit(func(d *fakeDirectory) { d.onLookup = func(graphcheck.Principal) { <-release } })
		const n = 1000
		codes := make([]int, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				r := httptest.NewRequest(http.MethodGet, "/admin", nil)
				r.Header.Set("Authorization", "Bearer "+tok)
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, r)
				codes[i] = rec.Code
			})
		}
		synctest.Wait() // all n requests are parked on the one lookup
		if c := g.dir.calls.Load(); c != 1 {
			t.Errorf("%d lookups started while %d requests wait, want 1", c, n)
		}
		close(release)
		wg.Wait()
		for i, c := range codes {
			if c != http.StatusOK {
				t.Fatalf("request %d: status %d", i, c)
			}
		}
	})
	if c := g.dir.calls.Load(); c != 1 {
		t.Errorf("%d lookups for 1000 cold requests, want 1", c)
	}
	if s := g.served.Load(); s != 1000 {
		t.Errorf("handler served %d, want 1000", s)
	}
}

func TestGuardDecisionRecord(t *testing.T) {
	g := newGuardFixture(t, nil)
	tok := g.mint(graphtest.Token{Username: "jane@contoso.example", Wids: []string{userAdmin}})
	g.dir.activateRole(userOID, userAdmin, "/", time.Hour)

	expect(t, g.do(middleware.Role(userAdmin), tok), http.StatusOK, "")
	expect(t, g.do(middleware.Role(userAdmin), tok), http.StatusOK, "")
	expect(t, g.do(middleware.AllOf(middleware.Role(userAdmin), middleware.Role(globalAdmin)), tok), http.StatusForbidden, middleware.CodeRoleNotActive)

	recs := g.logRecords()
	if len(recs) != 3 {
		t.Fatalf("%d records for 3 decisions, want 3:\n%s", len(recs), g.glogs)
	}
	want := []map[string]any{
		{"level": "DEBUG", "outcome": "allow", "state": "graph", "code": "", "requirement": "role:" + userAdmin},
		{"level": "DEBUG", "outcome": "allow", "state": "cache", "code": "", "requirement": "role:" + userAdmin},
		{"level": "INFO", "outcome": "deny", "state": "cache", "code": middleware.CodeRoleNotActive, "requirement": "all(role:" + userAdmin + ", role:" + globalAdmin + ")"},
	}
	for i, rec := range recs {
		if rec["msg"] != "pimguard: authorization decision" || rec["tenant"] != graphtest.TenantID || rec["oid"] != userOID {
			t.Errorf("record %d: %v", i, rec)
		}
		if _, ok := rec["latency"].(float64); !ok {
			t.Errorf("record %d has no latency: %v", i, rec)
		}
		for k, v := range want[i] {
			if rec[k] != v {
				t.Errorf("record %d: %s = %v, want %v", i, k, rec[k], v)
			}
		}
	}
	_, sig, _ := strings.Cut(tok[strings.Index(tok, ".")+1:], ".")
	if logs := g.glogs.String(); strings.Contains(logs, tok) || strings.Contains(logs, sig) || strings.Contains(logs, "Bearer") {
		t.Error("the token reached the decision log")
	}
}

func slogLevel(l int) slog.Leveler { return slog.Level(l) }

func TestGuardLogLevels(t *testing.T) {
	g := newGuardFixture(t, func(c *middleware.GuardConfig) {
		c.AllowLogLevel = slogLevel(4)   // Warn
		c.DenialLogLevel = slogLevel(-4) // Debug
	})
	tok := g.mint(graphtest.Token{})
	g.dir.activateRole(userOID, userAdmin, "/", time.Hour)
	g.do(middleware.Role(userAdmin), tok)
	g.do(middleware.Role(globalAdmin), tok)
	recs := g.logRecords()
	if len(recs) != 2 || recs[0]["level"] != "WARN" || recs[1]["level"] != "DEBUG" {
		t.Errorf("records %v", recs)
	}
}

func TestGuardPurge(t *testing.T) {
	g := newGuardFixture(t, nil)
	tok := g.mint(graphtest.Token{})
	g.dir.activateRole(userOID, userAdmin, "/", time.Hour)
	expect(t, g.do(middleware.Role(userAdmin), tok), http.StatusOK, "")

	g.dir.deactivateRoles(userOID)
	expect(t, g.do(middleware.Role(userAdmin), tok), http.StatusOK, "") // cached
	g.guard.Purge(strings.ToUpper(graphtest.TenantID), strings.ToUpper(userOID))
	expect(t, g.do(middleware.Role(userAdmin), tok), http.StatusForbidden, middleware.CodeRoleNotActive)
	if n := g.dir.calls.Load(); n != 2 {
		t.Errorf("%d lookups, want 2", n)
	}

	g.dir.activateRole(userOID, userAdmin, "/", time.Hour)
	g.guard.PurgeAll()
	expect(t, g.do(middleware.Role(userAdmin), tok), http.StatusOK, "")
	if n := g.dir.calls.Load(); n != 3 {
		t.Errorf("%d lookups, want 3", n)
	}
}

// TestGuardPurgeBothKinds caches a user token's state and an app-only
// token's state for the same object ID (two entries: the state cache is
// keyed by kind), and checks that Purge drops both, also while the lookup
// of either kind is in flight: its answer, read before the purge, is not
// stored.
func TestGuardPurgeBothKinds(t *testing.T) {
	g := newGuardFixture(t, nil)
	g.dir.activateRole(userOID, userAdmin, "/", time.Hour)
	user := g.mint(graphtest.Token{ObjectID: userOID})
	app := g.mint(graphtest.Token{ObjectID: userOID, App: true, Roles: []string{"Helpdesk.Act"}})
	both := func(want int64) {
		t.Helper()
		for _, tok := range []string{user, app} {
			expect(t, g.do(middleware.Role(userAdmin), tok), http.StatusOK, "")
		}
		if n := g.dir.calls.Load(); n != want {
			t.Fatalf("%d lookups, want %d", n, want)
		}
	}
	both(2) // one entry per kind
	both(2) // both cached
	g.guard.Purge(graphtest.TenantID, userOID)
	both(4)

	for _, tc := range []struct {
		name string
		tok  string
	}{{"user lookup in flight", user}, {"app-only lookup in flight", app}} {
		t.Run(tc.name, func(t *testing.T) {
			started, release := make(chan struct{}), make(chan struct{})
			var once sync.Once
			g.dir.edit(func(d *fakeDirectory) {
				d.onLookup = func(graphcheck.Principal) { once.Do(func() { close(started); <-release }) }
			})
			g.guard.PurgeAll()
			code := make(chan int)
			go func() {
				r := httptest.NewRequest(http.MethodGet, "/admin", nil)
				r.Header.Set("Authorization", "Bearer "+tc.tok)
				rec := httptest.NewRecorder()
				g.auth.Handler(g.guard.Require(middleware.Role(userAdmin))(g.protected())).ServeHTTP(rec, r)
				code <- rec.Code
			}()
			<-started
			g.guard.Purge(graphtest.TenantID, userOID)
			close(release)
			if c := <-code; c != http.StatusOK {
				t.Fatalf("in-flight request: status %d", c)
			}
			before := g.dir.calls.Load()
			expect(t, g.do(middleware.Role(userAdmin), tc.tok), http.StatusOK, "")
			if n := g.dir.calls.Load(); n != before+1 {
				t.Errorf("%d lookups after the purge, want %d: the answer read before it was stored", n, before+1)
			}
			g.dir.edit(func(d *fakeDirectory) { d.onLookup = nil })
		})
	}
}

func TestGuardWithoutAuthenticatorIsRefused(t *testing.T) {
	g := newGuardFixture(t, nil)
	g.dir.activateRole(userOID, userAdmin, "/", time.Hour)
	for _, mw := range []func(http.Handler) http.Handler{g.guard.Require(middleware.Role(userAdmin)), g.guard.Require(middleware.Scope("x")), g.guard.Load} {
		r := httptest.NewRequest(http.MethodGet, "/admin", nil)
		r.Header.Set("Authorization", "Bearer "+g.mint(graphtest.Token{}))
		rec := httptest.NewRecorder()
		mw(g.protected()).ServeHTTP(rec, r)
		expect(t, rec, http.StatusInternalServerError, middleware.CodeInternal)
	}
	if g.served.Load() != 0 || g.dir.calls.Load() != 0 {
		t.Fatal("served or looked up without a principal")
	}
	if rec := g.lastRecord(); rec["level"] != "ERROR" || rec["outcome"] != "error" {
		t.Errorf("record %v", rec)
	}
}

func TestGuardLoad(t *testing.T) {
	g := newGuardFixture(t, nil)
	tok := g.mint(graphtest.Token{})
	g.dir.activateRole(userOID, userAdmin, "/", time.Hour)
	g.dir.activateGroup(userOID, groupID, graphcheck.AccessOwner, time.Hour)
	rec := g.doWith(g.guard.Load, tok)
	expect(t, rec, http.StatusOK, "")
	if want := "role:" + userAdmin + "@//via=\ngroup-owner:" + groupID; rec.Body.String() != want {
		t.Errorf("body %q, want %q", rec.Body, want)
	}
	g.guard.PurgeAll()
	g.dir.fail(graphcheck.ErrUnavailable)
	expect(t, g.doWith(g.guard.Load, tok), http.StatusServiceUnavailable, middleware.CodePIMUnavailable)
	if g.served.Load() != 1 {
		t.Error("Load served without a state")
	}
}

func TestNewGuardRejectsBadConfig(t *testing.T) {
	src := graphcheck.SourceFunc(func(context.Context, graphcheck.Principal) (*graphcheck.State, error) { return nil, nil })
	tests := []struct {
		name string
		cfg  middleware.GuardConfig
	}{
		{"no source", middleware.GuardConfig{}},
		{"negative TTL", middleware.GuardConfig{Source: src, CacheTTL: -1}},
		{"negative MaxStale", middleware.GuardConfig{Source: src, MaxStale: -1}},
		{"negative size", middleware.GuardConfig{Source: src, CacheSize: -1}},
		{"unknown policy", middleware.GuardConfig{Source: src, ClaimsPolicy: 7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := middleware.NewGuard(tt.cfg); err == nil {
				t.Fatal("NewGuard accepted it")
			}
		})
	}
	if _, err := middleware.NewGuard(middleware.GuardConfig{Source: src}); err != nil {
		t.Fatalf("minimal config: %v", err)
	}
}

func TestRequireRefusesInvalidRequirements(t *testing.T) {
	g := newGuardFixture(t, nil)
	tests := []middleware.Requirement{
		{},
		middleware.Role("Global Administrator"),
		middleware.RoleInScope(userAdmin, ""),
		middleware.RoleInScope(userAdmin, "/administrativeUnits/"),
		middleware.RoleInScope(userAdmin, "/administrativeUnits/not-a-guid"),
		middleware.GroupMember(""),
		middleware.GroupOwner("group"),
		middleware.AppRole(""),
		middleware.Scope("two words"),
		middleware.AnyOf(),
		middleware.AllOf(middleware.Role(userAdmin), middleware.Role("x")),
	}
	for _, req := range tests {
		t.Run(req.String(), func(t *testing.T) {
			if req.Validate() == nil {
				t.Fatal("Validate accepted it")
			}
			defer func() {
				if recover() == nil {
					t.Error("Require did not panic")
				}
			}()
			g.guard.Require(req)
		})
	}
}

func TestRequirementString(t *testing.T) {
	tests := []struct {
		req  middleware.Requirement
		want string
	}{
		{middleware.Role(strings.ToUpper(userAdmin)), "role:" + userAdmin},
		{middleware.RoleInScope(userAdmin, "/administrativeUnits/"+strings.ToUpper(auID)), "role:" + userAdmin + "@/administrativeUnits/" + auID},
		{middleware.GroupMember(groupID), "group-member:" + groupID},
		{middleware.GroupOwner(groupID), "group-owner:" + groupID},
		{middleware.AppRole("Tasks.Admin"), "app-role:Tasks.Admin"},
		{middleware.Scope("access_as_user"), "scope:access_as_user"},
		{middleware.AnyOf(middleware.Role(globalAdmin), middleware.AllOf(middleware.Role(helpdesk), middleware.GroupMember(groupID))),
			"any(role:" + globalAdmin + ", all(role:" + helpdesk + ", group-member:" + groupID + "))"},
		{middleware.Requirement{}, "invalid"},
	}
	for _, tt := range tests {
		if got := tt.req.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}

func TestClaimsPolicyText(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want middleware.ClaimsPolicy
		err  bool
	}{
		{"live", middleware.PolicyLive, false},
		{"", middleware.PolicyLive, false},
		{" Token-And-Live ", middleware.PolicyTokenAndLive, false},
		{"token_and_live", 0, true},
		{"tokenandlive", 0, true},
	} {
		got := middleware.ClaimsPolicy(7) // replaced on success, kept on error
		err := got.UnmarshalText([]byte(tc.in))
		switch {
		case tc.err && (err == nil || got != 7 || !strings.Contains(err.Error(), `live or token-and-live`)):
			t.Errorf("UnmarshalText(%q) = %v, %v; want an error listing the names, policy unchanged", tc.in, got, err)
		case !tc.err && (err != nil || got != tc.want):
			t.Errorf("UnmarshalText(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, p := range []middleware.ClaimsPolicy{middleware.PolicyLive, middleware.PolicyTokenAndLive} {
		text, err := p.MarshalText()
		var back middleware.ClaimsPolicy = 7
		if err != nil || string(text) != p.String() || back.UnmarshalText(text) != nil || back != p {
			t.Errorf("%v: MarshalText = %q, %v; does not read back", p, text, err)
		}
	}
	if _, err := middleware.ClaimsPolicy(2).MarshalText(); err == nil {
		t.Error("MarshalText of an unknown policy succeeded")
	}
}

func TestLiveStateContext(t *testing.T) {
	s := &graphcheck.State{}
	ctx := middleware.ContextWithLiveState(context.Background(), s)
	if got, ok := middleware.LiveStateFromContext(ctx); !ok || got != s {
		t.Error("LiveStateFromContext lost the state")
	}
	if _, ok := middleware.LiveStateFromContext(context.Background()); ok {
		t.Error("state in an empty context")
	}
}

func TestRejectionForGuardErrors(t *testing.T) {
	tests := []struct {
		err    error
		status int
		code   string
	}{
		{middleware.ErrRoleNotActive, 403, middleware.CodeRoleNotActive},
		{middleware.ErrGroupNotActive, 403, middleware.CodeGroupNotActive},
		{middleware.ErrRoleNotInToken, 403, middleware.CodeRoleNotInToken},
		{middleware.ErrGroupNotInToken, 403, middleware.CodeGroupNotInToken},
		{middleware.ErrAppRoleMissing, 403, middleware.CodeAppRoleMissing},
		{middleware.ErrScopeMissing, 403, middleware.CodeScopeMissing},
		{fmt.Errorf("%w: %w", middleware.ErrPIMUnavailable, graphcheck.ErrUnavailable), 503, middleware.CodePIMUnavailable},
		{fmt.Errorf("%w: %w", middleware.ErrPrincipalNotFound, graphcheck.ErrPrincipalNotFound), 401, middleware.CodePrincipalNotFound},
		{middleware.ErrNoPrincipal, 500, middleware.CodeInternal},
	}
	for _, tt := range tests {
		rej := middleware.RejectionFor(tt.err, "")
		if rej.Status != tt.status || rej.Code != tt.code {
			t.Errorf("%v: %d %s, want %d %s", tt.err, rej.Status, rej.Code, tt.status, tt.code)
		}
	}
}

func TestWriteRejectionOptionalMembers(t *testing.T) {
	ended := time.Date(2026, 11, 25, 10, 32, 0, 0, time.FixedZone("CET", 3600))
	rec := httptest.NewRecorder()
	middleware.WriteRejection(rec, httptest.NewRequest(http.MethodGet, "/", nil), &middleware.Rejection{
		Status: 403, OAuthError: middleware.OAuthInsufficientScope, Code: middleware.CodeRoleNotActive,
		Description: "d", Required: []string{"role:" + userAdmin}, EndedAt: ended,
	})
	want := `{"error":"insufficient_scope","error_description":"d","code":"role_not_active","required":["role:` + userAdmin + `"],"ended_at":"2026-11-25T09:32:00Z"}`
	if got := strings.TrimSpace(rec.Body.String()); got != want {
		t.Errorf("body\n%s\nwant\n%s", got, want)
	}
	rec = httptest.NewRecorder()
	middleware.WriteRejection(rec, httptest.NewRequest(http.MethodGet, "/", nil), &middleware.Rejection{Status: 401, Code: "token_missing", Description: "d"})
	if got := strings.TrimSpace(rec.Body.String()); got != `{"error_description":"d","code":"token_missing"}` {
		t.Errorf("authentication body changed: %s", got)
	}
}

package main

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/middleware"
)

// TestRealModeAccountChecksAndPurge turns every account check on with
// PIMGUARD_ACCOUNT_CHECKS and drives each through the binary: a change in
// the tenant is honoured from the cache until POST /admin/purge/{oid} by a
// live Privileged Role Administrator drops it.
func TestRealModeAccountChecksAndPurge(t *testing.T) {
	bin := buildExample(t)
	const admin = "c0000000-0000-4000-8000-000000000001" // User Administrator + Privileged Role Administrator
	// One user per check, each a User Administrator, so that one check's
	// change cannot decide another's.
	users := map[string]string{
		"disabled": "c0000000-0000-4000-8000-000000000002", "sessions revoked": "c0000000-0000-4000-8000-000000000003",
		"password changed": "c0000000-0000-4000-8000-000000000004", "at risk": "c0000000-0000-4000-8000-000000000005",
		"deleted": "c0000000-0000-4000-8000-000000000006",
	}
	// The users exist since ten minutes ago (Entra sets a new user's
	// signInSessionsValidFromDateTime to its creation), so that a token
	// issued a minute ago is a legitimate one.
	clock := graphtest.NewLiveClock()
	clock.Set(time.Now().Add(-10 * time.Minute))
	tenant := graphtest.NewServer(graphtest.Options{Clock: clock})
	defer tenant.Close()
	must(t, tenant.AddUser(admin, "admin@contoso.example"))
	must(t, tenant.AssignRole(admin, middleware.RoleUserAdministrator, "/", time.Time{}, time.Time{}))
	for _, id := range users {
		must(t, tenant.AddUser(id, id[len(id)-4:]+"@contoso.example"))
		must(t, tenant.AssignRole(id, middleware.RoleUserAdministrator, "/", time.Time{}, time.Time{}))
	}
	must(t, tenant.AssignRole(admin, middleware.RolePrivilegedRoleAdministrator, "/", time.Time{}, time.Time{}))
	clock.Set(time.Now())
	base, stop := startRealMode(t, bin, tenant, "PIMGUARD_ACCOUNT_CHECKS=enabled,sessions,password,risk")
	defer stop()

	adminTok := tenant.MustMint(graphtest.Token{ObjectID: admin})
	code := func(method, path, tok string) (int, string) {
		t.Helper()
		resp, body := call(t, method, base+path, tok)
		var b struct {
			Code string `json:"code"`
		}
		_ = json.Unmarshal(body, &b)
		return resp.StatusCode, b.Code
	}
	purge := func(oid, tok string) (int, string) { return code("POST", "/admin/purge/"+oid, tok) }

	someone := users["disabled"]
	tok := tenant.MustMint(graphtest.Token{ObjectID: someone})
	if st, c := code("DELETE", "/api/users/"+admin, tok); st != 200 { // a target in the tenant; real mode deletes nothing
		t.Fatalf("before any change: %d %s", st, c)
	}
	if st, c := purge(someone, tok); st != 403 || c != "role_not_active" {
		t.Errorf("purge by a non-Privileged Role Administrator: %d %s", st, c)
	}
	if st, c := purge("not-a-guid", adminTok); st != 400 {
		t.Errorf("purge of a malformed ID: %d %s", st, c)
	}

	for _, tc := range []struct {
		name   string
		change func(oid string) error
		undo   func(oid string) error
		want   string
	}{
		{"disabled", func(oid string) error { return tenant.SetAccountEnabled(oid, false) },
			func(oid string) error { return tenant.SetAccountEnabled(oid, true) }, middleware.CodeAccountDisabled},
		{"sessions revoked", tenant.RevokeSignInSessions, nil, middleware.CodeSessionRevoked},
		{"password changed", tenant.ChangePassword, nil, middleware.CodeSessionRevoked},
		{"at risk", func(oid string) error { return tenant.SetUserRisk(oid, "high", "atRisk") },
			func(oid string) error { return tenant.SetUserRisk(oid, "high", "remediated") }, middleware.CodeUserAtRisk},
	} {
		t.Run(tc.name, func(t *testing.T) {
			oid := users[tc.name]
			// Issued a minute ago (iat has whole seconds): the token
			// predates the change without the test waiting.
			tok := tenant.MustMint(graphtest.Token{ObjectID: oid, IssuedAt: time.Now().Add(-time.Minute)})
			if st, c := code("GET", "/api/me", tok); st != 200 {
				t.Fatalf("before: %d %s", st, c)
			}
			must(t, tc.change(oid))
			if st, _ := code("GET", "/api/me", tok); st != 200 {
				t.Errorf("the change was seen before the cache TTL or a purge: %d", st)
			}
			if st, c := purge(oid, adminTok); st != 200 {
				t.Fatalf("purge: %d %s", st, c)
			}
			st, c := code("GET", "/api/me", tok)
			if st != 401 || c != tc.want {
				t.Errorf("after the purge: %d %s, want 401 %s", st, c, tc.want)
			}
			if tc.undo != nil {
				must(t, tc.undo(oid))
			}
			purge(oid, adminTok)
			if st, c := code("GET", "/api/me", tenant.MustMint(graphtest.Token{ObjectID: oid})); st != 200 {
				t.Errorf("a new token after undoing: %d %s", st, c)
			}
		})
	}

	t.Run("deleted", func(t *testing.T) {
		oid := users["deleted"]
		tok := tenant.MustMint(graphtest.Token{ObjectID: oid})
		if st, c := code("GET", "/api/me", tok); st != 200 {
			t.Fatalf("before: %d %s", st, c)
		}
		must(t, tenant.DeleteUser(oid))
		purge(oid, adminTok)
		if st, c := code("GET", "/api/me", tok); st != 401 || c != middleware.CodeAccountDeleted {
			t.Errorf("deleted: %d %s", st, c)
		}
	})
}

// TestPreflightStopsStart: in real mode the example checks its Graph
// permissions before serving — the Guard's, then those of the helpdesk
// actions' user lookups (msgraph's Source.User) — and a missing one stops
// it with a message naming what to grant.
func TestPreflightStopsStart(t *testing.T) {
	bin := buildExample(t)
	const guardPreflight, userPreflight = "example: startup: middleware: preflight:", "example: startup: preflight of the helpdesk's user lookups:"
	for _, tc := range []struct {
		name, prefix string
		fault        graphtest.Fault
		checks, want string
		failure      string // how the start-up failure begins
	}{
		{"PIM licence", "/roleManagement/", graphtest.LicenseRequiredFault(), "", "Microsoft Entra ID P2", guardPreflight},
		{"group members", "/groups", graphtest.DeniedFault(), "", "GroupMember.Read.All", guardPreflight},
		{"users for account checks", "/users", graphtest.DeniedFault(), "enabled", "User.Read.All", guardPreflight},
		{"risky users", "/identityProtection/", graphtest.DeniedFault(), "risk", "IdentityRiskyUser.Read.All", guardPreflight},
		{"users for the helpdesk actions", "/users", graphtest.DeniedFault(), "", "User.Read.All", userPreflight},
		{"administrative units for the helpdesk actions", "/directory/administrativeUnits", graphtest.DeniedFault(), "", "AdministrativeUnit.Read.All", userPreflight},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tenant := graphtest.NewServer(graphtest.Options{Clock: graphtest.NewLiveClock()})
			defer tenant.Close()
			tenant.InjectGraphFault(graphtest.MatchPath(tc.prefix), tc.fault)
			cmd := exec.Command(bin)
			cmd.Env = cleanEnv(
				"PIMGUARD_TENANT_ID="+graphtest.TenantID,
				"PIMGUARD_AUDIENCES="+graphtest.APIClientID,
				"PIMGUARD_AUTHORITY="+tenant.URL,
				"PIMGUARD_GRAPH_URL="+tenant.GraphURL(),
				"PIMGUARD_GRAPH_AUTH=none",
				"PIMGUARD_ADDR=127.0.0.1:0",
				"PIMGUARD_ACCOUNT_CHECKS="+tc.checks,
			)
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), tc.failure) || !strings.Contains(string(out), tc.want) {
				t.Fatalf("err %v, output %q; want a start-up failure naming %s", err, out, tc.want)
			}
			if strings.Contains(string(out), "example: listening") {
				t.Error("the example listened before the preflight failed")
			}
		})
	}
}

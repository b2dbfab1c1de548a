package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/middleware"
)

// exampleBinary builds the example once per test run. It is built with the
// race detector when the tests are, so that the Graph SDK compiled for the
// tests is reused instead of compiled a second time.
var exampleBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "pimguard-example-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "example")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

func buildExample(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the example binary")
	}
	bin, err := exampleBinary()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// TestWalkthroughOnly runs `example -walkthrough-only` as a user would: the
// demo story must behave as it says and exit 0.
func TestWalkthroughOnly(t *testing.T) {
	bin := buildExample(t)
	cmd := exec.Command(bin, "-walkthrough-only")
	cmd.Env = cleanEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("walkthrough failed: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "every step behaved as described") {
		t.Fatalf("walkthrough output:\n%s", out)
	}
	t.Logf("walkthrough:\n%s", out)
}

// cleanEnv is the test's environment without PIMGUARD_ variables, so that
// a developer's own settings cannot change the outcome.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PIMGUARD_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

func TestInvalidConfigurationStopsAtStart(t *testing.T) {
	bin := buildExample(t)
	tests := []struct {
		env  []string
		want string
	}{
		{[]string{"PIMGUARD_TENANT_ID=" + graphtest.TenantID}, "PIMGUARD_AUDIENCES"},
		{[]string{"PIMGUARD_CACHE_TTL=soon"}, "PIMGUARD_CACHE_TTL"},
		{[]string{"PIMGUARD_TENANT_ID=" + graphtest.TenantID, "PIMGUARD_AUDIENCES=api://x", "PIMGUARD_GRAPH_AUTH=none"}, "PIMGUARD_GRAPH_AUTH"},
		{[]string{"PIMGUARD_REDIS_URL=redis://127.0.0.1:6379/0"}, "PIMGUARD_SHARED_KEY: required"},
		{[]string{"PIMGUARD_SHARED_KEY=" + testSharedKey}, "PIMGUARD_SHARED_KEY is set but PIMGUARD_REDIS_URL is not"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			cmd := exec.Command(bin)
			cmd.Env = cleanEnv(tt.env...)
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), tt.want) {
				t.Fatalf("err %v, output %q; want a failure naming %s", err, out, tt.want)
			}
		})
	}
}

// TestRealModeEndToEnd runs the binary in real mode against a fake tenant on
// loopback, configured only through the documented variables, and checks
// every route's success and failure statuses. The helpdesk actions look
// their target up in the tenant through msgraph's Source.User and change
// nothing there; DELETE requires the authentication context c1
// (PIMGUARD_DELETE_AUTH_CONTEXT).
func TestRealModeEndToEnd(t *testing.T) {
	bin := buildExample(t)
	const (
		helpdeskUser  = "b0000000-0000-4000-8000-000000000001"
		userAdmin     = "b0000000-0000-4000-8000-000000000002" // also Privileged Role Administrator
		nobody        = "b0000000-0000-4000-8000-000000000003"
		auditor       = "b0000000-0000-4000-8000-000000000004"
		auditors      = "b0000000-0000-4000-8000-0000000000a0"
		flaky         = "b0000000-0000-4000-8000-000000000005"
		berliner      = "b0000000-0000-4000-8000-000000000006" // a member of the Berlin unit
		outsider      = "b0000000-0000-4000-8000-000000000007" // a member of no unit
		unitHelpdesk  = "b0000000-0000-4000-8000-000000000008" // Helpdesk Administrator of the Berlin unit
		unitUserAdmin = "b0000000-0000-4000-8000-000000000009" // User Administrator of the Berlin unit (activated)
		unitEnding    = "b0000000-0000-4000-8000-00000000000a" // Helpdesk Administrator of the Berlin unit, deactivated below
		recovered     = "b0000000-0000-4000-8000-00000000000b" // looked up first after a Graph outage
		berlin        = "b0000000-0000-4000-8000-0000000000b0" // an administrative unit
		ghost         = "b0000000-0000-4000-8000-0000000000ff" // no such user
		unasked       = "b0000000-0000-4000-8000-0000000000fe" // no such user, asked about by a caller without a role
	)
	tenant := graphtest.NewServer(graphtest.Options{Clock: graphtest.NewLiveClock()})
	defer tenant.Close()
	for _, id := range []string{helpdeskUser, userAdmin, nobody, auditor, flaky, berliner, outsider, unitHelpdesk, unitUserAdmin, unitEnding, recovered} {
		must(t, tenant.AddUser(id, id[len(id)-4:]+"@contoso.example"))
	}
	must(t, tenant.AddGroup(auditors, "Auditors", false))
	must(t, tenant.MakeEligible(helpdeskUser, middleware.RoleHelpdeskAdministrator, "/", time.Time{}))
	_, err := tenant.ActivateRole(helpdeskUser, middleware.RoleHelpdeskAdministrator, "/", time.Hour)
	must(t, err)
	must(t, tenant.AssignRole(userAdmin, middleware.RoleUserAdministrator, "/", time.Time{}, time.Time{}))
	must(t, tenant.AssignRole(userAdmin, middleware.RolePrivilegedRoleAdministrator, "/", time.Time{}, time.Time{}))
	must(t, tenant.AssignGroup(auditors, auditor, graphtest.AccessMember, time.Time{}, time.Now().Add(time.Hour)))
	must(t, tenant.AssignRole(flaky, middleware.RoleUserAdministrator, "/", time.Time{}, time.Time{}))
	must(t, tenant.AddAdministrativeUnit(berlin, "Berlin"))
	must(t, tenant.AddAdministrativeUnitMember(berlin, berliner))
	berlinScope := middleware.AdministrativeUnitScope(berlin)
	must(t, tenant.AssignRole(unitHelpdesk, middleware.RoleHelpdeskAdministrator, berlinScope, time.Time{}, time.Time{}))
	must(t, tenant.MakeEligible(unitUserAdmin, middleware.RoleUserAdministrator, berlinScope, time.Time{}))
	_, err = tenant.ActivateRole(unitUserAdmin, middleware.RoleUserAdministrator, berlinScope, time.Hour)
	must(t, err)
	must(t, tenant.MakeEligible(unitEnding, middleware.RoleHelpdeskAdministrator, berlinScope, time.Time{}))
	_, err = tenant.ActivateRole(unitEnding, middleware.RoleHelpdeskAdministrator, berlinScope, time.Hour)
	must(t, err)

	base, stop := startRealMode(t, bin, tenant, "PIMGUARD_AUDITORS_GROUP="+auditors, "PIMGUARD_DELETE_AUTH_CONTEXT=c1")

	tok := func(oid string, acrs ...string) string {
		tk := graphtest.Token{ObjectID: oid}
		if len(acrs) > 0 {
			tk.Claims = map[string]any{"acrs": acrs}
		}
		return tenant.MustMint(tk)
	}
	reset := func(id string) string { return "/api/users/" + id + "/reset-password" }
	// The claims challenge of an unmet c1, as Entra's MSAL clients read it.
	c1Challenge := `claims="` + base64.StdEncoding.EncodeToString([]byte(`{"access_token":{"acrs":{"essential":true,"value":"c1"}}}`)) + `"`
	tests := []struct {
		name, method, path, token string
		status                    int
		code, challenge           string
	}{
		{"health", "GET", "/healthz", "", 200, "", ""},
		{"ready", "GET", "/readyz", "", 200, "", ""},
		{"me without a token", "GET", "/api/me", "", 401, "token_missing", `Bearer realm="pimguard"`},
		{"me with a malformed token", "GET", "/api/me", "not-a-jwt", 401, "token_malformed", `error="invalid_token"`},
		{"me with a v1 token", "GET", "/api/me", tenant.MustMint(graphtest.Token{ObjectID: helpdeskUser, Version: 1}), 200, "", ""},
		{"me", "GET", "/api/me", tok(helpdeskUser), 200, "", ""},
		{"reset by an active Helpdesk Administrator", "POST", reset(berliner), tok(helpdeskUser), 200, "", ""},
		{"reset by a User Administrator", "POST", reset(outsider), tok(userAdmin), 200, "", ""},
		{"reset in the unit by the unit's Helpdesk Administrator", "POST", reset(berliner), tok(unitHelpdesk), 200, "", ""},
		{"reset in the unit by the unit's activated User Administrator", "POST", reset(berliner), tok(unitUserAdmin), 200, "", ""},
		{"reset outside the unit by the unit's Helpdesk Administrator", "POST", reset(outsider), tok(unitHelpdesk), 403, "role_not_active", `error="insufficient_scope"`},
		{"reset outside the unit by the unit's User Administrator", "POST", reset(outsider), tok(unitUserAdmin), 403, "role_not_active", `error="insufficient_scope"`},
		{"reset of an unknown user", "POST", reset(ghost), tok(helpdeskUser), 404, "user_not_found", ""},
		{"reset of an unknown user by a unit's Helpdesk Administrator", "POST", reset(ghost), tok(unitHelpdesk), 404, "user_not_found", ""},
		{"reset of an ID that is not a GUID", "POST", reset("alex"), tok(helpdeskUser), 404, "user_not_found", ""},
		{"reset by someone without a role", "POST", reset(berliner), tok(nobody), 403, "role_not_active", `error="insufficient_scope"`},
		{"reset of an unknown user by someone without a role", "POST", reset(unasked), tok(nobody), 403, "role_not_active", `error="insufficient_scope"`},
		{"reset without a token", "POST", reset(berliner), "", 401, "token_missing", `Bearer realm="pimguard"`},
		{"delete by a Helpdesk Administrator", "DELETE", "/api/users/" + outsider, tok(helpdeskUser, "c1"), 403, "role_not_active", `error="insufficient_scope"`},
		{"delete by a User Administrator without the step-up", "DELETE", "/api/users/" + outsider, tok(userAdmin), 401, "insufficient_claims", c1Challenge},
		{"delete by a User Administrator with another context", "DELETE", "/api/users/" + outsider, tok(userAdmin, "c2"), 401, "insufficient_claims", `error="insufficient_claims"`},
		{"delete by a User Administrator with the step-up", "DELETE", "/api/users/" + outsider, tok(userAdmin, "c2", "c1"), 200, "", ""},
		{"delete by the unit's User Administrator", "DELETE", "/api/users/" + berliner, tok(unitUserAdmin, "c1"), 403, "role_not_active", `error="insufficient_scope"`},
		{"delete of an unknown user", "DELETE", "/api/users/" + ghost, tok(userAdmin, "c1"), 404, "user_not_found", ""},
		{"audit by an active auditor", "GET", "/api/audit", tok(auditor), 200, "", ""},
		{"audit by a non-member", "GET", "/api/audit", tok(nobody), 403, "group_not_active", `error="insufficient_scope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := call(t, tt.method, base+tt.path, tt.token)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tt.status, body)
			}
			var b struct {
				Code string `json:"code"`
			}
			_ = json.Unmarshal(body, &b)
			if b.Code != tt.code {
				t.Errorf("code %q, want %q", b.Code, tt.code)
			}
			if h := resp.Header.Get("WWW-Authenticate"); !strings.Contains(h, tt.challenge) || (tt.challenge == "" && h != "") {
				t.Errorf("WWW-Authenticate %q, want it to contain %q", h, tt.challenge)
			}
		})
	}

	t.Run("a step-up challenge names insufficient_claims", func(t *testing.T) {
		resp, body := call(t, "DELETE", base+"/api/users/"+outsider, tok(userAdmin))
		h := resp.Header.Get("WWW-Authenticate")
		if resp.StatusCode != 401 || !strings.HasPrefix(h, "Bearer ") || !strings.Contains(h, `error="insufficient_claims"`) || !strings.Contains(h, c1Challenge) {
			t.Fatalf("%d, WWW-Authenticate %q; body %s", resp.StatusCode, h, body)
		}
	})

	t.Run("reset in real mode changes nothing and says what it would have done", func(t *testing.T) {
		resp, body := call(t, "POST", base+reset(berliner), tok(unitHelpdesk))
		var got struct {
			UserID              string   `json:"userId"`
			UserPrincipalName   string   `json:"userPrincipalName"`
			AdministrativeUnits []string `json:"administrativeUnits"`
			Performed           *bool    `json:"performed"`
			WouldHave           string   `json:"wouldHave"`
			TemporaryPassword   string   `json:"temporaryPassword"`
		}
		must(t, json.Unmarshal(body, &got))
		if resp.StatusCode != 200 || got.UserID != berliner || got.UserPrincipalName != berliner[len(berliner)-4:]+"@contoso.example" ||
			len(got.AdministrativeUnits) != 1 || got.AdministrativeUnits[0] != berlin ||
			got.Performed == nil || *got.Performed || got.WouldHave == "" || got.TemporaryPassword != "" {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		// Graph was asked about the target: GET /users/{id} and its units.
		if n := tenant.CountRequests("/v1.0/users/" + berliner + "/memberOf/"); n == 0 {
			t.Error("no Graph request for the target's administrative units")
		}
	})

	t.Run("a caller without a role learns nothing about the target and costs no Graph request", func(t *testing.T) {
		for _, r := range tenant.Requests() {
			if strings.Contains(r.Path, unasked) {
				t.Fatalf("Graph was asked %s for a caller without a role", r.Path)
			}
		}
	})

	t.Run("reset denied once the unit-scoped role ends", func(t *testing.T) {
		if resp, body := call(t, "POST", base+reset(berliner), tok(unitEnding)); resp.StatusCode != 200 {
			t.Fatalf("while active: %d %s", resp.StatusCode, body)
		}
		must(t, tenant.DeactivateRole(unitEnding, middleware.RoleHelpdeskAdministrator, berlinScope))
		// The purge stands for the cache TTL, which the test does not wait.
		if resp, body := call(t, "POST", base+"/admin/purge/"+unitEnding, tok(userAdmin)); resp.StatusCode != 200 {
			t.Fatalf("purge: %d %s", resp.StatusCode, body)
		}
		resp, body := call(t, "POST", base+reset(berliner), tok(unitEnding))
		var b struct {
			Code string `json:"code"`
		}
		_ = json.Unmarshal(body, &b)
		if resp.StatusCode != 403 || b.Code != middleware.CodeRoleNotActive {
			t.Fatalf("after the role ended: %d %s, want 403 %s", resp.StatusCode, body, middleware.CodeRoleNotActive)
		}
	})

	t.Run("me reports live state", func(t *testing.T) {
		_, body := call(t, "GET", base+"/api/me", tok(helpdeskUser))
		var me struct {
			TenantID string `json:"tenantId"`
			ObjectID string `json:"objectId"`
			Roles    []struct {
				RoleDefinitionID string  `json:"roleDefinitionId"`
				DirectoryScopeID string  `json:"directoryScopeId"`
				AssignmentType   string  `json:"assignmentType"`
				EndDateTime      *string `json:"endDateTime"`
			} `json:"roles"`
			Groups []json.RawMessage `json:"groups"`
		}
		must(t, json.Unmarshal(body, &me))
		if me.TenantID != graphtest.TenantID || me.ObjectID != helpdeskUser || len(me.Roles) != 1 || me.Groups == nil {
			t.Fatalf("me = %s", body)
		}
		r := me.Roles[0]
		if r.RoleDefinitionID != middleware.RoleHelpdeskAdministrator || r.DirectoryScopeID != "/" ||
			!strings.EqualFold(r.AssignmentType, "Activated") || r.EndDateTime == nil {
			t.Errorf("role = %+v", r)
		}
		if _, err := time.Parse(time.RFC3339, *r.EndDateTime); err != nil {
			t.Errorf("endDateTime %q is not RFC 3339", *r.EndDateTime)
		}
	})

	t.Run("the target's lookup failing", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			fault  graphtest.Fault
			status int
			code   string
		}{
			{"Graph unavailable", graphtest.Fault{Status: http.StatusInternalServerError}, 503, "directory_unavailable"},
			{"AdministrativeUnit.Read.All missing", graphtest.DeniedFault(), 500, "internal_error"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				remove := tenant.InjectGraphFault(graphtest.MatchPath("/users/"+berliner+"/memberOf"), tc.fault)
				defer remove()
				resp, body := call(t, "POST", base+reset(berliner), tok(helpdeskUser))
				var b struct {
					Code string `json:"code"`
				}
				_ = json.Unmarshal(body, &b)
				if resp.StatusCode != tc.status || b.Code != tc.code || (tc.status == 503) != (resp.Header.Get("Retry-After") != "") {
					t.Fatalf("%d %s, Retry-After %q; want %d %s", resp.StatusCode, body, resp.Header.Get("Retry-After"), tc.status, tc.code)
				}
			})
		}
	})

	t.Run("Graph down gives 503 pim_unavailable", func(t *testing.T) {
		remove := tenant.InjectGraphFault(graphtest.MatchPath("/"), graphtest.Fault{Status: http.StatusInternalServerError})
		defer remove()
		resp, body := call(t, "DELETE", base+"/api/users/kim", tok(flaky, "c1"))
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "pim_unavailable") {
			t.Fatalf("status %d, Retry-After %q, body %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
	})

	t.Run("a Graph outage opens the breaker, /readyz says so, and both recover", func(t *testing.T) {
		remove := tenant.InjectGraphFault(graphtest.MatchPath("/"), graphtest.Fault{Status: http.StatusInternalServerError})
		defer remove()
		// Principals not cached yet, each costing one lookup, until the
		// breaker opens (5 outage failures from 2 principals by default).
		fresh := func(i int) string { return fmt.Sprintf("b0000000-0000-4000-8000-%012x", 0x1000+i) }
		breakerItem := "breaker/" + graphtest.TenantID
		opened := 0
		for i := range 20 {
			resp, body := call(t, "GET", base+"/api/me", tok(fresh(i)))
			if resp.StatusCode != 503 || !strings.Contains(string(body), "pim_unavailable") {
				t.Fatalf("lookup %d during the outage: %d %s", i, resp.StatusCode, body)
			}
			if st, rep := readyz(t, base); st == 503 && slices.Contains(rep.NotReady, breakerItem) {
				opened = i + 1
				break
			}
		}
		if opened == 0 {
			t.Fatal("/readyz never reported the breaker open after 20 failed lookups")
		}
		t.Logf("the breaker opened after %d failed lookups", opened)
		if _, rep := readyz(t, base); !slices.Equal(rep.NotReady, []string{breakerItem}) {
			t.Errorf("not_ready %q, want only %s", rep.NotReady, breakerItem)
		}

		// Open: a lookup fails fast, without asking Graph.
		fast := fresh(100)
		resp, body := call(t, "GET", base+"/api/me", tok(fast))
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "pim_unavailable") {
			t.Fatalf("while open: %d, Retry-After %q, %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
		for _, r := range tenant.Requests() {
			if strings.Contains(r.Path, fast) || strings.Contains(r.Query, fast) {
				t.Fatalf("the open breaker let a lookup reach Graph: %s", r.Path)
			}
		}

		// Graph is back: after the cool-down (10 s) the replica is ready
		// again, and the next lookup probes Graph and closes the breaker.
		remove()
		waitReady(t, base)
		deadline := time.Now().Add(60 * time.Second)
		for {
			resp, body := call(t, "GET", base+"/api/me", tok(recovered))
			if resp.StatusCode == 200 {
				break
			}
			if resp.StatusCode != 503 || time.Now().After(deadline) {
				t.Fatalf("after Graph returned: %d %s", resp.StatusCode, body)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if st, rep := readyz(t, base); st != 200 || rep.Ready != true {
			t.Errorf("/readyz after recovery: %d %+v", st, rep)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		resp, body := call(t, "GET", base+"/metrics", "")
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
			t.Fatalf("GET /metrics: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		text := string(body)
		// Each want is a metric name and labels that one sample line has
		// (the exporter adds otel_scope_* labels in between).
		for _, want := range [][]string{
			{"pimguard_decisions_total{", `code=""`, `outcome="allow"`},
			{"pimguard_decisions_total{", `code="role_not_active"`, `outcome="deny"`},
			{"pimguard_decisions_total{", `code="group_not_active"`, `outcome="deny"`},
			{"pimguard_decisions_total{", `code="insufficient_claims"`, `outcome="deny"`},
			{"pimguard_decisions_total{", `code="pim_unavailable"`, `outcome="error"`},
			{"pimguard_cache_hits_total{"},
			{"pimguard_cache_misses_total{"},
			{"pimguard_cache_size{"},
			{"pimguard_graph_request_duration_seconds_count{"},
			{"pimguard_graph_errors_total{", `class="unavailable"`},
			{"pimguard_breaker_transitions_total{"},
			{"pimguard_breaker_rejected_total{"},
			{"pimguard_auth_rejections_total{", `code="token_missing"`},
			{"pimguard_auth_key_fetches_total{"},
			{"pimguard_auth_token_cache_hits_total{"},
			{"go_goroutines "},
		} {
			found := false
			for _, line := range strings.Split(text, "\n") {
				ok := strings.HasPrefix(line, want[0])
				for _, label := range want[1:] {
					ok = ok && strings.Contains(line, label)
				}
				found = found || ok
			}
			if !found {
				t.Errorf("/metrics has no sample %q", want)
			}
		}
		if strings.Contains(text, graphtest.TenantID) || strings.Contains(text, helpdeskUser) {
			t.Error("/metrics names a tenant or principal")
		}
	})

	stop()
}

// TestRealModeStartsWhileEntraIsUnreachable: in real mode the example
// starts while the tenant's discovery documents cannot be fetched, answers
// 503 token_keys_unavailable with Retry-After and reports not ready on
// /readyz (the liveness probe stays 200), and serves once Entra answers.
func TestRealModeStartsWhileEntraIsUnreachable(t *testing.T) {
	bin := buildExample(t)
	const admin = "b2000000-0000-4000-8000-000000000001"
	tenant := graphtest.NewServer(graphtest.Options{Clock: graphtest.NewLiveClock()})
	defer tenant.Close()
	must(t, tenant.AddUser(admin, "admin@contoso.example"))
	must(t, tenant.AssignRole(admin, middleware.RoleUserAdministrator, "/", time.Time{}, time.Time{}))
	discovery := "/" + graphtest.TenantID + "/"
	remove := tenant.InjectFault(graphtest.PathPrefix(discovery), http.StatusServiceUnavailable)
	defer remove()

	base, stop := startRealModeListening(t, bin, tenant)
	defer stop()
	tok := tenant.MustMint(graphtest.Token{ObjectID: admin})

	// At least one discovery attempt has failed before the checks.
	deadline := time.Now().Add(30 * time.Second)
	for tenant.CountRequests(discovery) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no discovery attempt within 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	keysItem := "keys/" + graphtest.TenantID
	if st, rep := readyz(t, base); st != 503 || !slices.Contains(rep.NotReady, keysItem) {
		t.Errorf("/readyz while Entra is down: %d, not_ready %q; want 503 naming %s", st, rep.NotReady, keysItem)
	}
	if resp, body := call(t, "GET", base+"/healthz", ""); resp.StatusCode != 200 {
		t.Errorf("/healthz while Entra is down: %d %s", resp.StatusCode, body)
	}
	resp, body := call(t, "GET", base+"/api/me", tok)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), `"code":"token_keys_unavailable"`) {
		t.Errorf("a request while Entra is down: %d, Retry-After %q, %s; want 503 token_keys_unavailable with Retry-After",
			resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}

	remove()
	waitReady(t, base)
	if resp, body := call(t, "GET", base+"/api/me", tok); resp.StatusCode != 200 {
		t.Errorf("once Entra answers: %d %s", resp.StatusCode, body)
	}
}

// readyReport is the body of GET /readyz.
type readyReport struct {
	Ready    bool     `json:"ready"`
	NotReady []string `json:"not_ready"`
	Checks   []struct {
		Name     string `json:"name"`
		Ready    bool   `json:"ready"`
		Degraded bool   `json:"degraded"`
		Detail   string `json:"detail"`
	} `json:"checks"`
}

// readyz returns the status and body of GET /readyz.
func readyz(t *testing.T, base string) (int, readyReport) {
	t.Helper()
	resp, body := call(t, "GET", base+"/readyz", "")
	var rep readyReport
	if err := json.Unmarshal(body, &rep); err != nil {
		t.Fatalf("/readyz: %d %q: %v", resp.StatusCode, body, err)
	}
	if rep.Ready != (resp.StatusCode == 200) {
		t.Errorf("/readyz: status %d with ready %v", resp.StatusCode, rep.Ready)
	}
	return resp.StatusCode, rep
}

// waitReady polls GET /readyz until it answers 200, for at most a minute.
func waitReady(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		st, rep := readyz(t, base)
		if st == 200 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d after a minute: %+v", st, rep)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startRealMode starts the example binary in real mode against tenant,
// configured through the documented variables (plus extra), waits until it
// is ready (GET /readyz: the signing keys are fetched in the background)
// and returns its base URL and a function that stops it with SIGTERM and
// checks that it exits cleanly.
func startRealMode(t *testing.T, bin string, tenant *graphtest.Server, extra ...string) (base string, stop func()) {
	t.Helper()
	base, stop = startRealModeListening(t, bin, tenant, extra...)
	waitReady(t, base)
	return base, stop
}

// startRealModeListening is startRealMode without waiting for readiness:
// it returns as soon as the example listens.
func startRealModeListening(t *testing.T, bin string, tenant *graphtest.Server, extra ...string) (base string, stop func()) {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = cleanEnv(append([]string{
		"PIMGUARD_TENANT_ID=" + graphtest.TenantID,
		"PIMGUARD_AUDIENCES=" + graphtest.APIClientID + "," + graphtest.APIAppIDURI,
		"PIMGUARD_AUTHORITY=" + tenant.URL,
		"PIMGUARD_GRAPH_URL=" + tenant.GraphURL(),
		"PIMGUARD_GRAPH_AUTH=none",
		"PIMGUARD_ADDR=127.0.0.1:0",
	}, extra...)...)
	stderr, err := cmd.StderrPipe()
	must(t, err)
	must(t, cmd.Start())
	exited := make(chan error, 1)
	addrCh := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var rec struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "example: listening" {
				addrCh <- rec.Addr
			}
		}
		exited <- cmd.Wait()
	}()
	select {
	case a := <-addrCh:
		base = "http://" + a
	case err := <-exited:
		t.Fatalf("example exited before listening: %v", err)
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("example did not start listening within 60s")
	}
	return base, func() {
		t.Helper()
		must(t, cmd.Process.Signal(syscall.SIGTERM))
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("exit after SIGTERM: %v", err)
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Error("example did not stop within 30s of SIGTERM")
		}
	}
}

// startDemoReplicas runs n instances of the example app in-process, in demo
// mode, on one fake tenant: the replicas of one deployment behind a load
// balancer. They are configured through kv as run reads the environment
// and log to logs. It returns the fake tenant and the replicas' base URLs;
// everything stops when t ends.
func startDemoReplicas(t *testing.T, n int, kv map[string]string, logs io.Writer) (*demoTenant, []string) {
	t.Helper()
	cfg, err := loadConfig(env(kv))
	must(t, err)
	if !cfg.Demo() {
		t.Fatalf("%v does not configure demo mode", kv)
	}
	demo, err := startDemoTenant(cfg)
	must(t, err)
	t.Cleanup(demo.Close)
	var bases []string
	for i := range n {
		logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})).With("replica", i)
		a, err := newApp(context.Background(), demo.appConfig(cfg), logger)
		must(t, err)
		srv := httptest.NewServer(a.routes())
		t.Cleanup(func() {
			srv.Close()
			must(t, a.Close())
		})
		bases = append(bases, srv.URL)
	}
	return demo, bases
}

func call(t *testing.T, method, url, token string) (*http.Response, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	must(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	must(t, err)
	return resp, body
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestDemoHelpdesk runs the demo app in-process (startDemoReplicas), with
// PIMGUARD_DELETE_AUTH_CONTEXT=c1, on the fake tenant's clock: Lee, an
// eligible Helpdesk Administrator of the Berlin administrative unit,
// resets the passwords of its members and no one else's, until the
// activation ends; a target the in-memory directory does not hold is 404
// for a caller holding the role and 403 for one who does not; Bob deletes
// once he has stepped up.
func TestDemoHelpdesk(t *testing.T) {
	demo, bases := startDemoReplicas(t, 1, map[string]string{"PIMGUARD_DELETE_AUTH_CONTEXT": "c1"}, io.Discard)
	base := bases[0]
	type answer struct {
		Code     string   `json:"code"`
		Required []string `json:"required"`
	}
	do := func(method, path, tok string) (*http.Response, answer) {
		t.Helper()
		resp, body := call(t, method, base+path, tok)
		var a answer
		_ = json.Unmarshal(body, &a)
		return resp, a
	}
	if st, rep := readyz(t, base); st != 200 {
		t.Fatalf("/readyz: %d %+v", st, rep)
	}

	lee, jane := demo.token("lee"), demo.token("jane")
	resp, a := do("POST", "/api/users/alex/reset-password", lee)
	if resp.StatusCode != 403 || a.Code != middleware.CodeRoleNotActive {
		t.Fatalf("Lee, eligible only: %d %+v", resp.StatusCode, a)
	}
	resp, _ = do("POST", "/demo/lee/activate", "")
	if resp.StatusCode != 200 {
		t.Fatalf("activating Lee: %d", resp.StatusCode)
	}
	// Past the negative TTL of the "no roles" answer cached above.
	demo.clock.Advance(demo.cfg.NegativeTTL)
	end := demo.clock.Now().Add(time.Hour - demo.cfg.NegativeTTL)

	tests := []struct {
		name, path, tok string
		status          int
		code            string
	}{
		{"Lee resets a member of Berlin", "/api/users/alex/reset-password", lee, 200, ""},
		{"Lee resets another member of Berlin", "/api/users/kim/reset-password", lee, 200, ""},
		{"Lee resets a user outside Berlin", "/api/users/sam/reset-password", lee, 403, middleware.CodeRoleNotActive},
		{"Lee resets an unknown user", "/api/users/zoe/reset-password", lee, 404, codeUserNotFound},
		{"Jane, no role active, resets an unknown user", "/api/users/zoe/reset-password", jane, 403, middleware.CodeRoleNotActive},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, a := do("POST", tt.path, tt.tok)
			if resp.StatusCode != tt.status || a.Code != tt.code {
				t.Fatalf("%d %+v, want %d %q", resp.StatusCode, a, tt.status, tt.code)
			}
			if tt.status == 403 && len(a.Required) == 0 {
				t.Error("the denial names no requirement")
			}
		})
	}

	t.Run("a caller without a role is refused before the directory is asked", func(t *testing.T) {
		resp, a := do("POST", "/api/users/kim/reset-password", jane)
		if resp.StatusCode != 403 {
			t.Fatalf("%d %+v", resp.StatusCode, a)
		}
		// Refused with the tenant-wide requirement: a denial after the
		// lookup would name Kim's unit among the alternatives.
		for _, r := range a.Required {
			if strings.Contains(r, berlinID) {
				t.Errorf("required %q names the target's unit: the directory was asked for a caller without a role", a.Required)
			}
		}
	})

	t.Run("denied once Lee's activation ends", func(t *testing.T) {
		demo.clock.Set(end.Add(-time.Second))
		if resp, a := do("POST", "/api/users/alex/reset-password", lee); resp.StatusCode != 200 {
			t.Fatalf("a second before the end: %d %+v", resp.StatusCode, a)
		}
		demo.clock.Set(end)
		resp, a := do("POST", "/api/users/alex/reset-password", lee)
		if resp.StatusCode != 403 || a.Code != middleware.CodeRoleNotActive {
			t.Fatalf("at the end: %d %+v, want 403 %s", resp.StatusCode, a, middleware.CodeRoleNotActive)
		}
	})

	t.Run("Bob deletes once he has stepped up", func(t *testing.T) {
		resp, a := do("DELETE", "/api/users/sam", demo.token("bob"))
		if h := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != 401 || a.Code != middleware.CodeInsufficientClaims ||
			!strings.Contains(h, `error="insufficient_claims"`) || !strings.Contains(h, `claims="`) {
			t.Fatalf("without the step-up: %d %+v, WWW-Authenticate %q", resp.StatusCode, a, resp.Header.Get("WWW-Authenticate"))
		}
		resp, body := call(t, "POST", base+"/demo/bob/step-up", "")
		var tok struct {
			AccessToken string `json:"access_token"`
		}
		if resp.StatusCode != 200 || json.Unmarshal(body, &tok) != nil || tok.AccessToken == "" {
			t.Fatalf("POST /demo/bob/step-up: %d %s", resp.StatusCode, body)
		}
		if resp, a := do("DELETE", "/api/users/sam", tok.AccessToken); resp.StatusCode != 200 {
			t.Fatalf("stepped up: %d %+v", resp.StatusCode, a)
		}
		if resp, a := do("DELETE", "/api/users/sam", tok.AccessToken); resp.StatusCode != 404 || a.Code != codeUserNotFound {
			t.Errorf("deleted twice: %d %+v, want 404 %s", resp.StatusCode, a, codeUserNotFound)
		}
		if resp, a := do("POST", "/api/users/sam/reset-password", tok.AccessToken); resp.StatusCode != 404 || a.Code != codeUserNotFound {
			t.Errorf("reset of the deleted user: %d %+v, want 404 %s", resp.StatusCode, a, codeUserNotFound)
		}
	})
}

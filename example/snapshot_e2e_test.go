package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/internal/redistest"
	"github.com/pimguard/pimguard/middleware"
)

// TestRealModeSnapshot runs the binary with PIMGUARD_SOURCE_MODE=snapshot:
// after one sweep, callers' roles and PIM-for-Groups memberships cost no
// Graph request per principal, /readyz reports the snapshot, and a purge
// makes that one principal be read per principal.
func TestRealModeSnapshot(t *testing.T) {
	bin := buildExample(t)
	const (
		admin    = "c1000000-0000-4000-8000-000000000001" // Privileged Role Administrator
		auditor  = "c1000000-0000-4000-8000-000000000002" // member of auditors through PIM for Groups
		auditors = "c1000000-0000-4000-8000-0000000000a0"
	)
	clock := graphtest.NewLiveClock()
	tenant := graphtest.NewServer(graphtest.Options{Clock: clock})
	defer tenant.Close()
	must(t, tenant.AddUser(admin, "admin@contoso.example"))
	must(t, tenant.AssignRole(admin, middleware.RolePrivilegedRoleAdministrator, "/", time.Time{}, time.Time{}))
	must(t, tenant.AddUser(auditor, "auditor@contoso.example"))
	must(t, tenant.AddGroup(auditors, "Auditors", false))
	must(t, tenant.AssignGroup(auditors, auditor, graphtest.AccessMember, time.Time{}, clock.Now().Add(time.Hour)))
	var helpdesk []string
	for i := range 20 {
		oid := fmt.Sprintf("c1000000-0000-4000-8000-%012x", 0x100+i)
		must(t, tenant.AddUser(oid, fmt.Sprintf("helpdesk%02d@contoso.example", i)))
		must(t, tenant.AssignRole(oid, middleware.RoleHelpdeskAdministrator, "/", time.Time{}, time.Time{}))
		helpdesk = append(helpdesk, oid)
	}
	// A long TTL, so that no sweep falls inside the test however slow the
	// machine: the sweep runs every 5 minutes.
	base, stop := startRealMode(t, bin, tenant, "PIMGUARD_SOURCE_MODE=snapshot", "PIMGUARD_AUDITORS_GROUP="+auditors, "PIMGUARD_CACHE_TTL=10m")
	defer stop()

	me := func(oid string) []string {
		t.Helper()
		resp, body := call(t, "GET", base+"/api/me", tenant.MustMint(graphtest.Token{ObjectID: oid}))
		var out struct {
			Roles []struct {
				RoleDefinitionID string `json:"roleDefinitionId"`
			} `json:"roles"`
		}
		if resp.StatusCode != 200 || json.Unmarshal(body, &out) != nil {
			t.Fatalf("GET /api/me as %s: %d %s", oid, resp.StatusCode, body)
		}
		var roles []string
		for _, r := range out.Roles {
			roles = append(roles, r.RoleDefinitionID)
		}
		return roles
	}
	perPrincipal := func() []string { // queries that name a principal: per-principal lookups
		var out []string
		for _, r := range tenant.Requests() {
			if strings.Contains(r.Query, "$filter=principalId") {
				out = append(out, r.Path+"?"+r.Query)
			}
		}
		return out
	}

	if roles := me(helpdesk[0]); !slices.Equal(roles, []string{middleware.RoleHelpdeskAdministrator}) {
		t.Fatalf("first caller's roles: %v", roles)
	}
	tenant.ResetRequests()
	for _, oid := range helpdesk[1:] {
		if roles := me(oid); !slices.Equal(roles, []string{middleware.RoleHelpdeskAdministrator}) {
			t.Errorf("%s's roles: %v", oid, roles)
		}
	}
	if resp, body := call(t, "GET", base+"/api/audit", tenant.MustMint(graphtest.Token{ObjectID: auditor})); resp.StatusCode != 200 {
		t.Errorf("auditor: %d %s", resp.StatusCode, body)
	}
	if resp, body := call(t, "GET", base+"/api/audit", tenant.MustMint(graphtest.Token{ObjectID: helpdesk[1]})); resp.StatusCode != 403 {
		t.Errorf("not an auditor: %d %s", resp.StatusCode, body)
	}
	if n := len(tenant.Requests()); n != 0 {
		t.Errorf("%d Graph requests for 21 callers after the sweep, want 0: %v", n, tenant.Requests())
	}
	_, rep := readyz(t, base)
	found := false
	for _, c := range rep.Checks {
		if c.Name == "snapshot/"+graphtest.TenantID {
			found = c.Ready
		}
	}
	if !found {
		t.Errorf("/readyz: %+v; want a ready snapshot/%s", rep, graphtest.TenantID)
	}

	// A role removed early is seen at once after a purge of that
	// principal, which is read per principal.
	must(t, tenant.RemoveRoleAssignment(helpdesk[5], middleware.RoleHelpdeskAdministrator, "/"))
	if resp, body := call(t, "POST", base+"/admin/purge/"+helpdesk[5], tenant.MustMint(graphtest.Token{ObjectID: admin})); resp.StatusCode != 200 {
		t.Fatalf("purge: %d %s", resp.StatusCode, body)
	}
	tenant.ResetRequests()
	if roles := me(helpdesk[5]); len(roles) != 0 {
		t.Errorf("after the purge: %v, want no role", roles)
	}
	if got := perPrincipal(); len(got) == 0 || !strings.Contains(strings.Join(got, " "), helpdesk[5]) {
		t.Errorf("after the purge: per-principal requests %v; want a lookup of %s", got, helpdesk[5])
	}
}

// TestFleetModeSnapshot runs two in-process replicas of the demo in
// snapshot mode on one Redis: the first request sweeps the tenant once
// for the fleet, and the other replica answers from that snapshot, read
// from Redis, with no Graph request of its own.
func TestFleetModeSnapshot(t *testing.T) {
	rs := redistest.Start(t)
	demo, bases := startDemoReplicas(t, 2, map[string]string{
		"PIMGUARD_REDIS_URL":   rs.URL(),
		"PIMGUARD_SHARED_KEY":  testSharedKey,
		"PIMGUARD_CACHE_TTL":   "1h",
		"PIMGUARD_SOURCE_MODE": "snapshot",
	}, io.Discard)
	tenant := demo.tenant
	const first, second = "d1000000-0000-4000-8000-000000000001", "d1000000-0000-4000-8000-000000000002"
	for _, id := range []string{first, second} {
		must(t, tenant.AddUser(id, id[len(id)-4:]+"@contoso.example"))
		must(t, tenant.AssignRole(id, middleware.RoleUserAdministrator, "/", time.Time{}, time.Time{}))
	}
	sweeps := func() int {
		n := 0
		for _, r := range tenant.Requests() {
			if r.BatchID != "" && strings.HasSuffix(r.Path, "/roleAssignmentScheduleInstances") && !strings.Contains(r.Query, "$filter=principalId") {
				n++
			}
		}
		return n
	}
	tenant.ResetRequests()
	for i, base := range bases {
		resp, body := call(t, "GET", base+"/api/me", tenant.MustMint(graphtest.Token{ObjectID: []string{first, second}[i]}))
		if resp.StatusCode != 200 || !strings.Contains(string(body), middleware.RoleUserAdministrator) {
			t.Fatalf("replica %d: %d %s", i, resp.StatusCode, body)
		}
	}
	if n := sweeps(); n != 1 {
		t.Errorf("two replicas, two callers: %d sweeps, want 1 for the fleet", n)
	}
	for _, r := range tenant.Requests() {
		if strings.Contains(r.Query, "$filter=principalId") {
			t.Errorf("a per-principal request in snapshot mode: %s?%s", r.Path, r.Query)
		}
	}
}

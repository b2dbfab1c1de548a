package middleware_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/middleware"
)

// MemberOf is met by live transitive membership, PIM-managed or not, read
// from the fake tenant's directory (its direct Source: no HTTP, no SDK).
func TestMemberOf(t *testing.T) {
	const (
		jane    = "4d5e6f70-8192-4a3b-8c4d-5e6f70819203"
		outer   = "aaaaaaaa-0000-4000-8000-000000000001" // the group the route requires
		inner   = "aaaaaaaa-0000-4000-8000-000000000002" // nested in outer
		pimOnly = "aaaaaaaa-0000-4000-8000-000000000003" // nested in outer, PIM for Groups
		other   = "aaaaaaaa-0000-4000-8000-000000000004" // not required anywhere
	)
	clock := graphtest.NewClock(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
	tenant := graphtest.NewServer(graphtest.Options{Clock: clock})
	t.Cleanup(tenant.Close)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(tenant.AddUser(jane, "jane@contoso.test"))
	for _, g := range []string{outer, inner, pimOnly, other} {
		must(tenant.AddGroup(g, g[len(g)-1:], false))
	}
	must(tenant.AddGroupMember(outer, inner))
	must(tenant.AddGroupMember(outer, pimOnly))

	auth, err := middleware.NewAuthenticator(context.Background(), middleware.AuthenticatorConfig{
		Tenants: []string{graphtest.TenantID}, Audiences: []string{graphtest.APIClientID},
		Authority: tenant.URL, Now: clock.Now,
	})
	must(err)
	guard := middleware.MustNewGuard(middleware.GuardConfig{Source: tenant.Source(), Now: clock.Now})
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {})
	api := auth.Handler(guard.Require(middleware.MemberOf(outer))(ok))
	token := tenant.MustMint(graphtest.Token{ObjectID: jane})
	call := func(h http.Handler) (int, string) {
		req := httptest.NewRequest(http.MethodGet, "/audit", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	step := func(name string, wantStatus int, wantCode string) {
		t.Helper()
		guard.Purge(graphtest.TenantID, jane) // each step reads the directory afresh
		status, body := call(api)
		if status != wantStatus || !strings.Contains(body, wantCode) {
			t.Fatalf("%s: %d %s; want %d %s", name, status, body, wantStatus, wantCode)
		}
	}

	step("not a member", http.StatusForbidden, "group_not_active")
	must(tenant.AddGroupMember(inner, jane))
	step("permanent member of a nested group", http.StatusOK, "")
	must(tenant.RemoveGroupMember(inner, jane))
	step("removed", http.StatusForbidden, "group_not_active")
	end, err := tenant.ActivateGroup(pimOnly, jane, graphcheck.AccessMember, time.Hour)
	if err != nil { // not eligible yet: make her eligible first
		must(tenant.MakeGroupEligible(pimOnly, jane, graphcheck.AccessMember, time.Time{}))
		end, err = tenant.ActivateGroup(pimOnly, jane, graphcheck.AccessMember, time.Hour)
		must(err)
	}
	step("active PIM-for-Groups member of a nested group", http.StatusOK, "")
	clock.Set(end)
	step("PIM membership ended", http.StatusForbidden, "group_not_active")

	// Check with a group no route names and MemberOfGroups does not list:
	// refused as a wiring error (500), never decided without asking Graph.
	checked := auth.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		guard.WriteRejection(w, r, guard.Check(r, middleware.MemberOf(other)))
	}))
	if status, body := call(checked); status != http.StatusInternalServerError {
		t.Fatalf("Check(MemberOf(unknown group)) = %d %s, want 500", status, body)
	}
	g2 := middleware.MustNewGuard(middleware.GuardConfig{Source: tenant.Source(), Now: clock.Now, MemberOfGroups: []string{other}})
	must(tenant.AddGroupMember(other, jane))
	checked2 := auth.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rej := g2.Check(r, middleware.MemberOf(other)); rej != nil {
			g2.WriteRejection(w, r, rej)
		}
	}))
	if status, body := call(checked2); status != http.StatusOK {
		t.Fatalf("Check(MemberOf(listed group)) = %d %s, want 200", status, body)
	}
}

func TestMemberOfConfig(t *testing.T) {
	src := graphcheck.SourceFunc(func(context.Context, graphcheck.Principal) (*graphcheck.State, error) { return nil, nil })
	if _, err := middleware.NewGuard(middleware.GuardConfig{Source: src, MemberOfGroups: []string{"not-a-guid"}}); err == nil {
		t.Fatal("NewGuard accepted a MemberOfGroups entry that is not a GUID")
	}
	if err := middleware.MemberOf("nope").Validate(); err == nil {
		t.Fatal("MemberOf accepted a group ID that is not a GUID")
	}
	if got := middleware.MemberOf("AAAAAAAA-0000-4000-8000-000000000001").String(); got != "member-of:aaaaaaaa-0000-4000-8000-000000000001" {
		t.Fatalf("String = %q", got)
	}
}

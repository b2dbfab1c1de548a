package forwardauth_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/pimguard/pimguard/forwardauth"
	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/middleware"
)

// A forward-auth server for nginx, Traefik or Caddy in front of a helpdesk
// tool: resetting a password takes Helpdesk Administrator active now in
// PIM, /healthz is public, and everything else is refused. The proxy asks
// /auth about each request, describing it in headers.
func ExampleServer() {
	clock := graphtest.NewClock(time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC))
	tenant := graphtest.NewServer(graphtest.Options{Clock: clock})
	defer tenant.Close()
	const jane = "0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e"
	_ = tenant.AddUser(jane, "jane@contoso.example")
	_ = tenant.MakeEligible(jane, middleware.RoleHelpdeskAdministrator, "/", time.Time{})
	_, _ = tenant.ActivateRole(jane, middleware.RoleHelpdeskAdministrator, "/", time.Hour)

	auth, err := middleware.NewAuthenticator(context.Background(), middleware.AuthenticatorConfig{
		Tenants: []string{graphtest.TenantID}, Audiences: []string{graphtest.APIClientID},
		Authority: tenant.URL, Now: clock.Now, ErrorWriter: forwardauth.WriteRejection,
	})
	if err != nil {
		panic(err)
	}
	defer auth.Close()
	guard := middleware.MustNewGuard(middleware.GuardConfig{Source: tenant.Source(), Now: clock.Now,
		ErrorWriter: forwardauth.WriteRejection})
	server, err := forwardauth.New(forwardauth.Config{
		Rules: []forwardauth.Rule{
			{Name: "reset-password", Patterns: []string{"POST /api/users/{id}/reset-password"},
				Require: middleware.Role(middleware.RoleHelpdeskAdministrator)},
			{Name: "health", Patterns: []string{"GET /healthz"}, Access: forwardauth.AccessPublic},
		},
		Authenticator: auth, Guard: guard, Now: clock.Now,
	})
	if err != nil {
		panic(err)
	}

	ask := func(method, uri, token string) {
		r := httptest.NewRequest(http.MethodGet, "/auth", nil)
		r.Header.Set("X-Original-Method", method)
		r.Header.Set("X-Original-URI", uri)
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		w := httptest.NewRecorder()
		server.ServeHTTP(w, r)
		fmt.Printf("%s %s → %d rule=%q roles=%q error=%q\n", method, uri, w.Code,
			w.Header().Get("X-Pimguard-Rule"), w.Header().Get("X-Pimguard-Roles"), w.Header().Get("X-Pimguard-Error"))
	}
	token := tenant.MustMint(graphtest.Token{ObjectID: jane})
	ask("POST", "/api/users/42/reset-password", token)
	ask("POST", "/api/users/42/reset-password", "")
	ask("GET", "/healthz", "")
	ask("DELETE", "/api/users/42", token)
	clock.Advance(time.Hour)
	ask("POST", "/api/users/42/reset-password", tenant.MustMint(graphtest.Token{ObjectID: jane}))
	// Output:
	// POST /api/users/42/reset-password → 200 rule="reset-password" roles="729827e3-9c14-49f7-bb1b-9608f156bbb8" error=""
	// POST /api/users/42/reset-password → 401 rule="" roles="" error="token_missing"
	// GET /healthz → 200 rule="health" roles="" error=""
	// DELETE /api/users/42 → 403 rule="" roles="" error="no_rule"
	// POST /api/users/42/reset-password → 403 rule="" roles="" error="role_not_active"
}

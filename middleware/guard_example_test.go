package middleware_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/middleware"
)

const janeOID = "4d5e6f70-8192-4a3b-8c4d-5e6f70819203"

// send serves one request and prints the status, the challenge of a
// rejection and the body.
func send(h http.Handler, method, path, token string) {
	req := httptest.NewRequest(method, path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	fmt.Println(rec.Code, strings.TrimSpace(rec.Body.String()))
	if ch := rec.Header().Get("WWW-Authenticate"); ch != "" {
		fmt.Println("  WWW-Authenticate:", ch)
	}
	if ra := rec.Header().Get("Retry-After"); ra != "" {
		fmt.Println("  Retry-After:", ra)
	}
}

// On chi, Require goes on a route with With, after the Authenticator. Jane
// activated User Administrator in PIM after her token was issued: the live
// state lets her in at once, and shuts her out the instant the activation
// ends, with the same, still valid token. The fake source and the settable
// clock stand in for Microsoft Graph (graphcheck/msgraph) and time.Now.
func ExampleGuard_Require_chi() {
	clock := graphtest.NewClock(time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC))
	tenant := graphtest.NewServer(graphtest.Options{Clock: clock})
	defer tenant.Close()
	auth, err := middleware.NewAuthenticator(context.Background(), middleware.AuthenticatorConfig{
		Tenants: []string{graphtest.TenantID}, Audiences: []string{graphtest.APIClientID},
		Authority: tenant.URL, Now: clock.Now,
	})
	if err != nil {
		panic(err)
	}
	token := tenant.MustMint(graphtest.Token{ObjectID: janeOID}) // no wids: issued before the activation

	activationEnd := clock.Now().Add(30 * time.Minute)
	source := graphcheck.SourceFunc(func(_ context.Context, p graphcheck.Principal) (*graphcheck.State, error) {
		s := &graphcheck.State{TenantID: p.TenantID, ObjectID: p.ObjectID, FetchedAt: clock.Now()}
		if p.ObjectID == janeOID && clock.Now().Before(activationEnd) {
			s.Roles = []graphcheck.RoleAssignment{{
				RoleDefinitionID: middleware.RoleUserAdministrator, DirectoryScopeID: graphcheck.TenantScope,
				AssignmentType: graphcheck.AssignmentActivated, Window: graphcheck.Window{End: activationEnd},
			}}
		}
		return s, nil
	})
	guard := middleware.MustNewGuard(middleware.GuardConfig{Source: source, Now: clock.Now, CacheTTL: time.Hour})

	r := chi.NewRouter()
	r.Use(auth.Handler)
	r.With(guard.Require(middleware.Role(middleware.RoleUserAdministrator))).
		Post("/api/users/{id}/reset-password", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "password of %s reset", chi.URLParam(r, "id"))
		})

	send(r, http.MethodPost, "/api/users/42/reset-password", token)
	clock.Set(activationEnd)
	send(r, http.MethodPost, "/api/users/42/reset-password", token)
	// Output:
	// 200 password of 42 reset
	// 403 {"error":"insufficient_scope","error_description":"A required privileged role is not active; activate it in Privileged Identity Management and retry.","code":"role_not_active","required":["role:fe930be7-5e62-47db-91af-98c3a49a38b1"]}
	//   WWW-Authenticate: Bearer realm="pimguard", error="insufficient_scope", error_description="A required privileged role is not active; activate it in Privileged Identity Management and retry."
}

// With plain net/http, wrap each handler: the Authenticator outside, the
// Guard inside. AnyOf accepts either an active Global Administrator role or
// an active PIM-for-Groups membership of a break-glass group; Load gives
// /api/me the live state without requiring anything. When the live state
// cannot be fetched, the Guard answers 503 and never calls the handler.
func ExampleGuard_Require() {
	clock := graphtest.NewClock(time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC))
	tenant := graphtest.NewServer(graphtest.Options{Clock: clock})
	defer tenant.Close()
	auth, err := middleware.NewAuthenticator(context.Background(), middleware.AuthenticatorConfig{
		Tenants: []string{graphtest.TenantID}, Audiences: []string{graphtest.APIClientID},
		Authority: tenant.URL, Now: clock.Now,
	})
	if err != nil {
		panic(err)
	}
	token := tenant.MustMint(graphtest.Token{ObjectID: janeOID})

	var graphDown atomic.Bool
	source := graphcheck.SourceFunc(func(_ context.Context, p graphcheck.Principal) (*graphcheck.State, error) {
		if graphDown.Load() {
			return nil, fmt.Errorf("%w: 503 from Graph", graphcheck.ErrUnavailable)
		}
		return &graphcheck.State{TenantID: p.TenantID, ObjectID: p.ObjectID, FetchedAt: clock.Now(),
			Roles: []graphcheck.RoleAssignment{{
				RoleDefinitionID: middleware.RoleHelpdeskAdministrator, DirectoryScopeID: graphcheck.TenantScope,
				Window: graphcheck.Window{End: clock.Now().Add(time.Hour)},
			}},
		}, nil
	})
	guard := middleware.MustNewGuard(middleware.GuardConfig{Source: source, Now: clock.Now})

	const breakGlass = "6a7b8c9d-0e1f-4a2b-8c3d-4e5f6a7b8c9d"
	requireAdmin := guard.Require(middleware.AnyOf(
		middleware.Role(middleware.RoleGlobalAdministrator),
		middleware.GroupMember(breakGlass),
	))
	mux := http.NewServeMux()
	mux.Handle("DELETE /api/tenants/{id}", auth.Handler(requireAdmin(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "deleted")
	}))))
	mux.Handle("GET /api/me", auth.Handler(guard.Load(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		state, _ := middleware.LiveStateFromContext(r.Context())
		for _, a := range state.ActiveRoles(clock.Now()) {
			fmt.Fprintf(w, "%s until %s", a.RoleDefinitionID, a.End.Format(time.Kitchen))
		}
	}))))

	send(mux, http.MethodDelete, "/api/tenants/7", token)
	send(mux, http.MethodGet, "/api/me", token)
	graphDown.Store(true)
	guard.PurgeAll()
	send(mux, http.MethodGet, "/api/me", token)
	// Output:
	// 403 {"error":"insufficient_scope","error_description":"A required privileged role is not active; activate it in Privileged Identity Management and retry.","code":"role_not_active","required":["role:62e90394-69f5-4237-9190-012177145e10","group-member:6a7b8c9d-0e1f-4a2b-8c3d-4e5f6a7b8c9d"]}
	//   WWW-Authenticate: Bearer realm="pimguard", error="insufficient_scope", error_description="A required privileged role is not active; activate it in Privileged Identity Management and retry."
	// 200 729827e3-9c14-49f7-bb1b-9608f156bbb8 until 11:00AM
	// 503 {"error_description":"Privileged role state cannot be checked right now; try again shortly.","code":"pim_unavailable"}
	//   Retry-After: 5
}

package middleware_test

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/middleware"
)

// A helpdesk API's rule known only inside the handler: resetting a user's
// password takes Helpdesk or User Administrator tenant-wide, or Helpdesk
// Administrator scoped to an administrative unit that holds the target
// user. The handler reads the target from the URL, its units from the
// directory (a map here; Graph's GET /users/{id}/memberOf/
// microsoft.graph.administrativeUnit in a real service), builds the
// requirement and asks Guard.Check, which decides on the live PIM state
// like Require and records the decision. Jane holds Helpdesk
// Administrator in the Paris unit for an hour.
func ExampleGuard_Check() {
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

	const parisUnit, lyonUnit = "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f", "8e9f0a1b-2c3d-4e5f-9a6b-7c8d9e0f1a2b"
	unitsOf := map[string][]string{"alice": {parisUnit}, "bob": {lyonUnit}}
	end := clock.Now().Add(time.Hour)
	source := graphcheck.SourceFunc(func(_ context.Context, p graphcheck.Principal) (*graphcheck.State, error) {
		return &graphcheck.State{TenantID: p.TenantID, ObjectID: p.ObjectID, FetchedAt: clock.Now(),
			Roles: []graphcheck.RoleAssignment{{
				RoleDefinitionID: middleware.RoleHelpdeskAdministrator,
				DirectoryScopeID: middleware.AdministrativeUnitScope(parisUnit),
				AssignmentType:   graphcheck.AssignmentActivated, Window: graphcheck.Window{End: end},
			}},
		}, nil
	})
	guard := middleware.MustNewGuard(middleware.GuardConfig{Source: source, Now: clock.Now, CacheTTL: time.Hour})

	mux := http.NewServeMux()
	mux.Handle("POST /api/users/{id}/reset-password", auth.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		target := r.PathValue("id")
		alternatives := []middleware.Requirement{
			middleware.Role(middleware.RoleHelpdeskAdministrator),
			middleware.Role(middleware.RoleUserAdministrator),
		}
		for _, unit := range unitsOf[target] {
			alternatives = append(alternatives,
				middleware.RoleInScope(middleware.RoleHelpdeskAdministrator, middleware.AdministrativeUnitScope(unit)))
		}
		if rej := guard.Check(r, middleware.AnyOf(alternatives...)); rej != nil {
			guard.WriteRejection(w, r, rej)
			return
		}
		fmt.Fprintf(w, "password of %s reset", target)
	})))

	send(mux, http.MethodPost, "/api/users/alice/reset-password", token)
	send(mux, http.MethodPost, "/api/users/bob/reset-password", token)
	clock.Set(end)
	send(mux, http.MethodPost, "/api/users/alice/reset-password", token)
	// Output:
	// 200 password of alice reset
	// 403 {"error":"insufficient_scope","error_description":"A required privileged role is not active; activate it in Privileged Identity Management and retry.","code":"role_not_active","required":["role:729827e3-9c14-49f7-bb1b-9608f156bbb8","role:fe930be7-5e62-47db-91af-98c3a49a38b1","role:729827e3-9c14-49f7-bb1b-9608f156bbb8@/administrativeUnits/8e9f0a1b-2c3d-4e5f-9a6b-7c8d9e0f1a2b"]}
	//   WWW-Authenticate: Bearer realm="pimguard", error="insufficient_scope", error_description="A required privileged role is not active; activate it in Privileged Identity Management and retry."
	// 403 {"error":"insufficient_scope","error_description":"A required privileged role is not active; activate it in Privileged Identity Management and retry.","code":"role_not_active","required":["role:729827e3-9c14-49f7-bb1b-9608f156bbb8","role:fe930be7-5e62-47db-91af-98c3a49a38b1","role:729827e3-9c14-49f7-bb1b-9608f156bbb8@/administrativeUnits/3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f"],"ended_at":"2026-11-25T11:00:00Z"}
	//   WWW-Authenticate: Bearer realm="pimguard", error="insufficient_scope", error_description="A required privileged role is not active; activate it in Privileged Identity Management and retry."
}

package graphtest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/middleware"
)

// A service is tested end to end without Microsoft Graph or its SDK: the
// fake tenant's Source stands in for graphcheck/msgraph, and one clock
// drives the tenant, the Authenticator and the Guard. Jane is eligible for
// User Administrator: denied. She activates it in PIM: allowed once the
// Guard's negative cache (NegativeTTL) has expired. The activation ends:
// denied again, with the same, still valid token.
func ExampleServer_Source() {
	clock := graphtest.NewClock(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
	tenant := graphtest.NewServer(graphtest.Options{Clock: clock})
	defer tenant.Close()

	const jane = "4d5e6f70-8192-4a3b-8c4d-5e6f70819203"
	if err := tenant.AddUser(jane, "jane@contoso.test"); err != nil {
		panic(err)
	}
	if err := tenant.MakeEligible(jane, graphtest.RoleUserAdministrator, "/", time.Time{}); err != nil {
		panic(err)
	}

	auth, err := middleware.NewAuthenticator(context.Background(), middleware.AuthenticatorConfig{
		Tenants: []string{graphtest.TenantID}, Audiences: []string{graphtest.APIClientID},
		Authority: tenant.URL, Now: clock.Now,
	})
	if err != nil {
		panic(err)
	}
	guard := middleware.MustNewGuard(middleware.GuardConfig{Source: tenant.Source(), Now: clock.Now})
	api := auth.Handler(guard.Require(middleware.Role(middleware.RoleUserAdministrator))(
		http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "password reset") })))

	token := tenant.MustMint(graphtest.Token{ObjectID: jane})
	call := func() {
		req := httptest.NewRequest(http.MethodPost, "/api/users/42/reset-password", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, req)
		outcome := rec.Body.String()
		var rejection struct{ Code string }
		if json.Unmarshal(rec.Body.Bytes(), &rejection) == nil {
			outcome = rejection.Code
		}
		fmt.Println(clock.Now().Format(time.TimeOnly), rec.Code, outcome)
	}

	call() // eligible is not active
	end, err := tenant.ActivateRole(jane, graphtest.RoleUserAdministrator, "/", time.Hour)
	if err != nil {
		panic(err)
	}
	call() // the empty state is still cached
	clock.Advance(middleware.DefaultNegativeStateTTL)
	call()
	clock.Set(end)
	call()
	// Output:
	// 09:00:00 403 role_not_active
	// 09:00:00 403 role_not_active
	// 09:00:05 200 password reset
	// 10:00:00 403 role_not_active
}

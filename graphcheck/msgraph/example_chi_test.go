package msgraph_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/graphcheck/msgraph"
	"github.com/pimguard/pimguard/middleware"
)

// Testing your own chi API end to end against a fake tenant: graphtest
// stands in for Entra (tokens) and Microsoft Graph (PIM state), read by the
// real Graph SDK client of msgraph. Alice is eligible for User
// Administrator; her request is refused until she activates the role in
// PIM, and then allowed with the same token once the Guard's negative cache
// (NegativeTTL) has run out. One fake clock drives the tenant, the Source,
// the Authenticator and the Guard, so the test never sleeps.
func Example_chi() {
	clock := graphtest.NewClock(time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC))
	tenant := graphtest.NewServer(graphtest.Options{Clock: clock})
	defer tenant.Close()

	const alice = "a11ce000-0000-4000-8000-000000000001"
	for _, err := range []error{
		tenant.AddUser(alice, "alice@contoso.test"),
		tenant.MakeEligible(alice, graphtest.RoleUserAdministrator, "/", time.Time{}),
	} {
		if err != nil {
			panic(err)
		}
	}

	quiet := slog.New(slog.DiscardHandler)
	source, err := msgraph.New(msgraph.Config{
		BaseURL:              tenant.GraphURL(),
		InsecureNoCredential: true, // loopback only
		Now:                  clock.Now,
		Sleep:                func(ctx context.Context, _ time.Duration) error { return ctx.Err() },
	})
	if err != nil {
		panic(err)
	}
	auth, err := middleware.NewAuthenticator(context.Background(), middleware.AuthenticatorConfig{
		Tenants:   []string{graphtest.TenantID},
		Audiences: []string{graphtest.APIClientID},
		Authority: tenant.URL,
		Now:       clock.Now,
		Logger:    quiet,
	})
	if err != nil {
		panic(err)
	}
	const negativeTTL = 5 * time.Second
	guard := middleware.MustNewGuard(middleware.GuardConfig{
		Source:      source,
		NegativeTTL: negativeTTL,
		Now:         clock.Now,
		Logger:      quiet,
	})

	// The API under test.
	r := chi.NewRouter()
	r.Use(auth.Handler)
	r.With(guard.Require(middleware.Role(middleware.RoleUserAdministrator))).
		Post("/api/users/{id}/reset-password", func(w http.ResponseWriter, r *http.Request) {
			state, _ := middleware.LiveStateFromContext(r.Context())
			for _, a := range state.ActiveRoles(clock.Now()) {
				fmt.Fprintf(w, "password of %s reset; %s active until %s", chi.URLParam(r, "id"), a.RoleDefinitionID, a.End.Format(time.Kitchen))
			}
		})

	token := tenant.MustMint(graphtest.Token{ObjectID: alice})
	call := func(step string) {
		req := httptest.NewRequest(http.MethodPost, "/api/users/42/reset-password", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			var body struct {
				Code     string   `json:"code"`
				Required []string `json:"required"`
			}
			_ = json.Unmarshal(rec.Body.Bytes(), &body)
			fmt.Printf("%s: %d %s %v\n", step, rec.Code, body.Code, body.Required)
			return
		}
		fmt.Printf("%s: %d %s\n", step, rec.Code, rec.Body)
	}

	call("eligible only")
	if _, err := tenant.ActivateRole(alice, graphtest.RoleUserAdministrator, "/", time.Hour); err != nil {
		panic(err)
	}
	call("just activated")
	clock.Advance(negativeTTL)
	call("after NegativeTTL")
	// Output:
	// eligible only: 403 role_not_active [role:fe930be7-5e62-47db-91af-98c3a49a38b1]
	// just activated: 403 role_not_active [role:fe930be7-5e62-47db-91af-98c3a49a38b1]
	// after NegativeTTL: 200 password of 42 reset; fe930be7-5e62-47db-91af-98c3a49a38b1 active until 10:00AM
}

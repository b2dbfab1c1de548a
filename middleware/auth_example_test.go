package middleware_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/middleware"
)

// Step-up: DELETE requires the Conditional Access authentication context
// c1 (say, "phishing-resistant MFA within the last 10 minutes"). A token
// without it gets 401 with the claims challenge; the client asks Entra for
// a new token with the decoded claims (MSAL: WithClaims) and retries.
func ExampleAuthContext() {
	tenant := graphtest.NewServer(graphtest.Options{})
	defer tenant.Close()
	auth, err := middleware.NewAuthenticator(context.Background(), middleware.AuthenticatorConfig{
		Tenants: []string{graphtest.TenantID}, Audiences: []string{graphtest.APIClientID}, Authority: tenant.URL,
	})
	if err != nil {
		panic(err)
	}
	// AuthContext is decided from the token: this Source is never asked.
	guard := middleware.MustNewGuard(middleware.GuardConfig{Source: graphcheck.SourceFunc(
		func(context.Context, graphcheck.Principal) (*graphcheck.State, error) {
			return nil, graphcheck.ErrUnavailable
		})})
	h := auth.Handler(guard.Require(middleware.AuthContext("c1"))(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "deleted")
	})))

	for _, acrs := range [][]string{nil, {"c1"}} {
		tok := tenant.MustMint(graphtest.Token{ObjectID: "4d5e6f70-8192-4a3b-8c4d-5e6f70819203", Claims: map[string]any{"acrs": acrs}})
		req := httptest.NewRequest(http.MethodDelete, "/api/users/42", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		fmt.Println(rec.Code, strings.TrimSpace(rec.Body.String()))
		if challenge := rec.Header().Get("WWW-Authenticate"); challenge != "" {
			claims := challenge[strings.Index(challenge, `claims="`)+len(`claims="`) : len(challenge)-1]
			decoded, _ := base64.StdEncoding.DecodeString(claims)
			fmt.Println("claims to request:", string(decoded))
		}
	}
	// Output:
	// 401 {"error":"insufficient_claims","error_description":"The access token does not satisfy a required authentication context; obtain a new token with the claims of the challenge and retry.","code":"insufficient_claims","required":["auth-context:c1"],"claims":"eyJhY2Nlc3NfdG9rZW4iOnsiYWNycyI6eyJlc3NlbnRpYWwiOnRydWUsInZhbHVlIjoiYzEifX19"}
	// claims to request: {"access_token":{"acrs":{"essential":true,"value":"c1"}}}
	// 200 deleted
}

// A handler reads claims the Principal does not copy, from the token the
// Authenticator verified.
func ExampleClaimAs() {
	tenant := graphtest.NewServer(graphtest.Options{})
	defer tenant.Close()
	auth, err := middleware.NewAuthenticator(context.Background(), middleware.AuthenticatorConfig{
		Tenants: []string{graphtest.TenantID}, Audiences: []string{graphtest.APIClientID}, Authority: tenant.URL,
	})
	if err != nil {
		panic(err)
	}
	h := auth.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := middleware.PrincipalFromContext(r.Context())
		amr, err := middleware.ClaimAs[[]string](p, "amr")
		if err != nil {
			http.Error(w, "no amr", http.StatusForbidden)
			return
		}
		raw, _ := p.Claim("xms_cc")
		fmt.Fprintf(w, "amr=%v xms_cc=%s", amr, raw)
	}))
	tok := tenant.MustMint(graphtest.Token{ObjectID: "4d5e6f70-8192-4a3b-8c4d-5e6f70819203",
		Claims: map[string]any{"amr": []string{"pwd", "mfa"}, "xms_cc": []string{"cp1"}}})
	req := httptest.NewRequest(http.MethodGet, "/api/me", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	fmt.Println(rec.Body.String())
	// Output: amr=[pwd mfa] xms_cc=["cp1"]
}

// With DiscoverInBackground the Authenticator starts even while Entra is
// unreachable, and Health says when its keys are there.
func ExampleAuthenticator_Health() {
	tenant := graphtest.NewServer(graphtest.Options{})
	defer tenant.Close()
	down := tenant.InjectFault(graphtest.PathPrefix("/"), http.StatusServiceUnavailable)
	auth, err := middleware.NewAuthenticator(context.Background(), middleware.AuthenticatorConfig{
		Tenants: []string{graphtest.TenantID}, Audiences: []string{graphtest.APIClientID}, Authority: tenant.URL,
		DiscoverInBackground: true, DiscoveryRetryMin: 10 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	defer auth.Close()
	for !strings.Contains(auth.Health()[0].Detail, "HTTP 503") {
		time.Sleep(time.Millisecond)
	}
	c := auth.Health()[0]
	fmt.Println(c.Name, "ready:", c.Ready)

	down() // Entra answers again
	for !auth.Health()[0].Ready {
		time.Sleep(time.Millisecond)
	}
	c = auth.Health()[0]
	fmt.Println(c.Name, "ready:", c.Ready)
	// Output:
	// keys/8d3f0a52-6b1e-4c2a-9f4e-1a7b2c3d4e5f ready: false
	// keys/8d3f0a52-6b1e-4c2a-9f4e-1a7b2c3d4e5f ready: true
}

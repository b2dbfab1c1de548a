package middleware_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/middleware"
)

// The Authenticator wraps any http.Handler. Here a fake Entra tenant
// (graphtest) stands in for login.microsoftonline.com; in production leave
// Authority empty.
func ExampleAuthenticator_Handler() {
	tenant := graphtest.NewServer(graphtest.Options{})
	defer tenant.Close()

	auth, err := middleware.NewAuthenticator(context.Background(), middleware.AuthenticatorConfig{
		Tenants:   []string{graphtest.TenantID},
		Audiences: []string{graphtest.APIClientID, graphtest.APIAppIDURI},
		Authority: tenant.URL,
	})
	if err != nil {
		panic(err)
	}

	mux := http.NewServeMux()
	mux.Handle("GET /api/me", auth.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := middleware.PrincipalFromContext(r.Context())
		fmt.Fprintf(w, "hello %s", p.Username)
	})))

	token := tenant.MustMint(graphtest.Token{ObjectID: "4d5e6f70-8192-4a3b-8c4d-5e6f70819203", Username: "jane@contoso.example"})
	for _, authz := range []string{"Bearer " + token, "", "Bearer not-a-jwt"} {
		req := httptest.NewRequest(http.MethodGet, "/api/me", nil)
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		fmt.Println(rec.Code, rec.Header().Get("WWW-Authenticate"), strings.TrimSpace(rec.Body.String()))
	}
	// Output:
	// 200  hello jane@contoso.example
	// 401 Bearer realm="pimguard" {"error_description":"A bearer access token is required.","code":"token_missing"}
	// 401 Bearer realm="pimguard", error="invalid_token", error_description="The access token is malformed." {"error":"invalid_token","error_description":"The access token is malformed.","code":"token_malformed"}
}

// On chi, use Handler with Use for a whole router or With for one route.
func ExampleAuthenticator_Handler_chi() {
	tenant := graphtest.NewServer(graphtest.Options{})
	defer tenant.Close()
	auth, err := middleware.NewAuthenticator(context.Background(), middleware.AuthenticatorConfig{
		Tenants:   []string{graphtest.TenantID},
		Audiences: []string{graphtest.APIClientID},
		Authority: tenant.URL,
	})
	if err != nil {
		panic(err)
	}

	r := chi.NewRouter()
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	r.Group(func(r chi.Router) {
		r.Use(auth.Handler)
		r.Get("/api/me", func(w http.ResponseWriter, r *http.Request) {
			p, _ := middleware.PrincipalFromContext(r.Context())
			fmt.Fprintf(w, "app-only=%v roles=%v", p.AppOnly, p.AppRoles)
		})
	})

	srv := httptest.NewServer(r)
	defer srv.Close()
	token := tenant.MustMint(graphtest.Token{ObjectID: "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d", App: true, Roles: []string{"Helpdesk.ReadWrite"}})
	for _, path := range []string{"/healthz", "/api/me"} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			panic(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(resp.StatusCode, string(body))
	}
	// Output:
	// 200 ok
	// 200 app-only=true roles=[Helpdesk.ReadWrite]
}

package middleware_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/middleware"
)

// c1Challenge is the claims parameter of Microsoft's documented challenge
// for the authentication context c1 ("Claims challenges, claims requests
// and client capabilities", learn.microsoft.com/entra/identity-platform/claims-challenge):
// the base64 of {"access_token":{"acrs":{"essential":true,"value":"c1"}}}.
const c1Challenge = "eyJhY2Nlc3NfdG9rZW4iOnsiYWNycyI6eyJlc3NlbnRpYWwiOnRydWUsInZhbHVlIjoiYzEifX19"

// stepUpBody is a rejection body with the claims member.
type stepUpBody struct {
	Error    string   `json:"error"`
	Code     string   `json:"code"`
	Required []string `json:"required"`
	Claims   string   `json:"claims"`
}

func TestAuthContextStepUp(t *testing.T) {
	g := newGuardFixture(t, nil)
	g.dir.activateRole(userOID, userAdmin, "/", 8*time.Hour)
	withACRS := func(acrs ...string) string {
		return g.mint(graphtest.Token{Claims: map[string]any{"acrs": acrs}})
	}
	tests := []struct {
		name     string
		req      middleware.Requirement
		token    string
		status   int
		code     string
		claims   string // base64 claims of the challenge, for 401 insufficient_claims
		required []string
	}{
		{name: "context satisfied", req: middleware.AuthContext("c1"), token: withACRS("c1"), status: http.StatusOK},
		{name: "one of several satisfied", req: middleware.AuthContext("c25"), token: withACRS("c1", "c25"), status: http.StatusOK},
		{name: "no acrs", req: middleware.AuthContext("c1"), token: g.mint(graphtest.Token{}), status: http.StatusUnauthorized,
			code: middleware.CodeInsufficientClaims, claims: c1Challenge, required: []string{"auth-context:c1"}},
		{name: "another context", req: middleware.AuthContext("c1"), token: withACRS("c2"), status: http.StatusUnauthorized,
			code: middleware.CodeInsufficientClaims, claims: c1Challenge, required: []string{"auth-context:c1"}},
		{name: "acrs is case-sensitive", req: middleware.AuthContext("c1"), token: withACRS("C1"), status: http.StatusUnauthorized,
			code: middleware.CodeInsufficientClaims, claims: c1Challenge, required: []string{"auth-context:c1"}},
		{name: "app-only token", req: middleware.AuthContext("c1"), token: g.mint(graphtest.Token{ObjectID: appOID, App: true, Roles: []string{"x"}}),
			status: http.StatusUnauthorized, code: middleware.CodeInsufficientClaims, claims: c1Challenge, required: []string{"auth-context:c1"}},
		{name: "step-up first, then the role", req: middleware.AllOf(middleware.AuthContext("c1"), middleware.Role(globalAdmin)),
			token: g.mint(graphtest.Token{}), status: http.StatusUnauthorized, code: middleware.CodeInsufficientClaims, claims: c1Challenge,
			required: []string{"auth-context:c1", "role:" + globalAdmin}},
		{name: "role first, then the step-up", req: middleware.AllOf(middleware.Role(globalAdmin), middleware.AuthContext("c1")),
			token: g.mint(graphtest.Token{}), status: http.StatusForbidden, code: middleware.CodeRoleNotActive,
			required: []string{"role:" + globalAdmin, "auth-context:c1"}},
		{name: "step-up and an active role", req: middleware.AllOf(middleware.AuthContext("c1"), middleware.Role(userAdmin)),
			token: withACRS("c1"), status: http.StatusOK},
		{name: "stepped up, role missing", req: middleware.AllOf(middleware.AuthContext("c1"), middleware.Role(globalAdmin)),
			token: withACRS("c1"), status: http.StatusForbidden, code: middleware.CodeRoleNotActive, required: []string{"role:" + globalAdmin}},
		{name: "any of a step-up or an app role", req: middleware.AnyOf(middleware.AuthContext("c99"), middleware.AppRole("Break.Glass")),
			token: g.mint(graphtest.Token{Roles: []string{"Break.Glass"}}), status: http.StatusOK},
		{name: "challenge names its context", req: middleware.AuthContext("c42"), token: withACRS("c1"), status: http.StatusUnauthorized,
			code: middleware.CodeInsufficientClaims, claims: base64.StdEncoding.EncodeToString([]byte(`{"access_token":{"acrs":{"essential":true,"value":"c42"}}}`)),
			required: []string{"auth-context:c42"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := g.do(tt.req, tt.token)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d; body %s", rec.Code, tt.status, rec.Body)
			}
			if tt.status == http.StatusOK {
				return
			}
			var b stepUpBody
			if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
				t.Fatal(err)
			}
			if b.Code != tt.code || b.Claims != tt.claims || !slices.Equal(b.Required, tt.required) {
				t.Errorf("body %+v; want code %s, claims %q, required %v", b, tt.code, tt.claims, tt.required)
			}
			challenge := rec.Header().Get("WWW-Authenticate")
			if tt.claims == "" {
				if strings.Contains(challenge, "claims=") {
					t.Errorf("WWW-Authenticate %q has a claims parameter", challenge)
				}
				return
			}
			want := `Bearer realm="pimguard", error="insufficient_claims", error_description="` +
				"The access token does not satisfy a required authentication context; obtain a new token with the claims of the challenge and retry." +
				`", claims="` + tt.claims + `"`
			if challenge != want || b.Error != middleware.OAuthInsufficientClaims {
				t.Errorf("WWW-Authenticate %q, error %q;\nwant %q", challenge, b.Error, want)
			}
		})
	}
	// AuthContext alone is decided from the token: no Source lookup for it.
	before := g.dir.calls.Load()
	g.do(middleware.AuthContext("c1"), g.mint(graphtest.Token{ObjectID: otherOID}))
	if n := g.dir.calls.Load() - before; n != 0 {
		t.Errorf("AuthContext made %d Source lookups, want 0", n)
	}
}

// TestClaimsChallengeIsMicrosofts: the challenge for c1 carries the very
// claims value of Microsoft's documentation, which decodes to the claims
// request MSAL passes on.
func TestClaimsChallengeIsMicrosofts(t *testing.T) {
	rej := middleware.RejectionFor(rejectionOf(t, middleware.AuthContext("c1")), "api")
	if rej.Status != http.StatusUnauthorized || rej.Code != middleware.CodeInsufficientClaims ||
		rej.Claims != `{"access_token":{"acrs":{"essential":true,"value":"c1"}}}` {
		t.Fatalf("rejection %+v", rej)
	}
	rec := httptest.NewRecorder()
	middleware.WriteRejection(rec, httptest.NewRequest(http.MethodGet, "/", nil), rej)
	if h := rec.Header().Get("WWW-Authenticate"); !strings.HasPrefix(h, `Bearer realm="api", error="insufficient_claims", `) ||
		!strings.HasSuffix(h, `, claims="`+c1Challenge+`"`) {
		t.Errorf("WWW-Authenticate %q", h)
	}
	var req map[string]map[string]map[string]any
	raw, err := base64.StdEncoding.DecodeString(c1Challenge)
	if err != nil || json.Unmarshal(raw, &req) != nil || req["access_token"]["acrs"]["value"] != "c1" || req["access_token"]["acrs"]["essential"] != true {
		t.Errorf("the claims parameter decodes to %s (%v)", raw, err)
	}
}

// rejectionOf is the error a Guard reports for r unmet by a token without
// acrs: wrapped as the Guard wraps its first failure.
func rejectionOf(t *testing.T, r middleware.Requirement) error {
	t.Helper()
	g := newGuardFixture(t, nil)
	var got *middleware.Rejection
	g2 := middleware.MustNewGuard(middleware.GuardConfig{Source: g.dir.source(), Now: g.clock.Now,
		ErrorWriter: func(w http.ResponseWriter, _ *http.Request, rej *middleware.Rejection) {
			got = rej
			w.WriteHeader(rej.Status)
		}})
	g.doWith(g2.Require(r), g.mint(graphtest.Token{}))
	if got == nil || !errors.Is(got.Err, middleware.ErrInsufficientClaims) {
		t.Fatalf("rejection %+v; want one wrapping ErrInsufficientClaims", got)
	}
	return got.Err
}

func TestAuthContextValidation(t *testing.T) {
	for _, id := range []string{"c1", "c9", "c10", "c42", "c99"} {
		r := middleware.AuthContext(id)
		if err := r.Validate(); err != nil {
			t.Errorf("AuthContext(%q): %v", id, err)
		}
		if got := r.String(); got != "auth-context:"+id {
			t.Errorf("AuthContext(%q).String() = %q", id, got)
		}
	}
	for _, id := range []string{"", "c", "c0", "c00", "c01", "c100", "C1", "x1", "c1 ", " c1", "c1a", "c-1", "c\u0661"} {
		if err := middleware.AuthContext(id).Validate(); err == nil {
			t.Errorf("AuthContext(%q) is valid", id)
		}
		if err := middleware.AllOf(middleware.Role(userAdmin), middleware.AuthContext(id)).Validate(); err == nil {
			t.Errorf("AllOf(…, AuthContext(%q)) is valid", id)
		}
	}
}

// TestCheckAuthContext: a handler deciding with Guard.Check gets the same
// claims challenge as Require.
func TestCheckAuthContext(t *testing.T) {
	g := newGuardFixture(t, nil)
	for _, tt := range []struct {
		name  string
		acrs  []string
		claim bool
	}{{"stepped up", []string{"c1"}, false}, {"not stepped up", nil, true}} {
		t.Run(tt.name, func(t *testing.T) {
			var rej *middleware.Rejection
			h := g.auth.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if rej = g.guard.Check(r, middleware.AuthContext("c1")); rej != nil {
					g.guard.WriteRejection(w, r, rej)
				}
			}))
			req := httptest.NewRequest(http.MethodDelete, "/api/users/42", nil)
			req.Header.Set("Authorization", "Bearer "+g.mint(graphtest.Token{Claims: map[string]any{"acrs": tt.acrs}}))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if !tt.claim {
				if rej != nil || rec.Code != http.StatusOK {
					t.Fatalf("Check = %+v, status %d", rej, rec.Code)
				}
				return
			}
			if rej == nil || rej.Code != middleware.CodeInsufficientClaims || rec.Code != http.StatusUnauthorized ||
				!strings.HasSuffix(rec.Header().Get("WWW-Authenticate"), `claims="`+c1Challenge+`"`) {
				t.Fatalf("Check = %+v; status %d, WWW-Authenticate %q", rej, rec.Code, rec.Header().Get("WWW-Authenticate"))
			}
		})
	}
}

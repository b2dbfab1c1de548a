package middleware_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/middleware"
)

const (
	userOID     = "4d5e6f70-8192-4a3b-8c4d-5e6f70819203"
	appOID      = "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d"
	otherTenant = "0b1c2d3e-4f50-4617-8829-3a4b5c6d7e8f"
)

// fixture is a fake tenant plus an Authenticator configured for it.
type fixture struct {
	t      *testing.T
	tenant *graphtest.Server
	clock  *graphtest.Clock
	auth   *middleware.Authenticator
	logs   *bytes.Buffer
}

func newFixture(t *testing.T, edit func(*middleware.AuthenticatorConfig)) *fixture {
	t.Helper()
	clock := graphtest.NewClock(time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC))
	tenant := graphtest.NewServer(graphtest.Options{Clock: clock, Tenants: []string{graphtest.TenantID, otherTenant}})
	t.Cleanup(tenant.Close)
	logs := &bytes.Buffer{}
	cfg := middleware.AuthenticatorConfig{
		Tenants:   []string{graphtest.TenantID},
		Audiences: []string{graphtest.APIClientID, graphtest.APIAppIDURI},
		Authority: tenant.URL,
		Now:       clock.Now,
		Logger:    slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if edit != nil {
		edit(&cfg)
	}
	auth, err := middleware.NewAuthenticator(context.Background(), cfg)
	if err != nil {
		t.Fatalf("NewAuthenticator: %v", err)
	}
	return &fixture{t: t, tenant: tenant, clock: clock, auth: auth, logs: logs}
}

// echo is the protected handler: it answers 200 with the principal's oid.
var echo = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	p, ok := middleware.PrincipalFromContext(r.Context())
	if !ok {
		http.Error(w, "no principal", http.StatusInternalServerError)
		return
	}
	_ = json.NewEncoder(w).Encode(p)
})

func (f *fixture) do(header ...string) *httptest.ResponseRecorder {
	f.t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/api/me", nil)
	for _, h := range header {
		req.Header.Add("Authorization", h)
	}
	rec := httptest.NewRecorder()
	f.auth.Handler(echo).ServeHTTP(rec, req)
	return rec
}

func (f *fixture) mint(tok graphtest.Token) string {
	f.t.Helper()
	if tok.ObjectID == "" {
		tok.ObjectID = userOID
	}
	return f.tenant.MustMint(tok)
}

// signWith signs payload with an arbitrary key and, when kid is not empty,
// that key ID (see signHeaders in hostile_test.go for other headers).
func signWith(t *testing.T, alg jose.SignatureAlgorithm, key any, kid string, payload []byte) string {
	t.Helper()
	header := map[string]any{}
	if kid != "" {
		header["kid"] = kid
	}
	return signHeaders(t, alg, key, header, false, payload)
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func claimsJSON(t *testing.T, f *fixture, tok graphtest.Token) []byte {
	t.Helper()
	if tok.ObjectID == "" {
		tok.ObjectID = userOID
	}
	c, err := f.tenant.Claims(tok)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type errBody struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
	Code             string `json:"code"`
}

func TestAuthenticatorAccepts(t *testing.T) {
	f := newFixture(t, nil)
	now := f.clock.Now()
	tests := []struct {
		name    string
		tok     graphtest.Token
		appOnly bool
		user    string
	}{
		{name: "v2 user", tok: graphtest.Token{Version: 2, Username: "jane@contoso.example", Wids: []string{"729827e3-9c14-49f7-bb1b-9608f156bbb8"}}, user: "jane@contoso.example"},
		{name: "v1 user", tok: graphtest.Token{Version: 1, Username: "jane@contoso.example"}, user: "jane@contoso.example"},
		{name: "v2 app-only", tok: graphtest.Token{Version: 2, ObjectID: appOID, App: true, Roles: []string{"Directory.Admin"}}, appOnly: true},
		{name: "v1 app-only", tok: graphtest.Token{Version: 1, ObjectID: appOID, App: true, Roles: []string{"Directory.Admin"}}, appOnly: true},
		{name: "aud as array with one accepted member", tok: graphtest.Token{Claims: map[string]any{"aud": []string{"api://other", graphtest.APIClientID}}}},
		{name: "upper-case tid and oid", tok: graphtest.Token{ObjectID: strings.ToUpper(userOID), Claims: map[string]any{"tid": strings.ToUpper(graphtest.TenantID)}}},
		{name: "expired just inside the skew", tok: graphtest.Token{IssuedAt: now.Add(-time.Hour - time.Minute), Lifetime: time.Hour}},
		{name: "nbf just inside the skew", tok: graphtest.Token{Claims: map[string]any{"nbf": now.Add(time.Minute).Unix()}}},
		{name: "iat just inside the skew", tok: graphtest.Token{IssuedAt: now.Add(119 * time.Second)}},
		{name: "Bearer scheme in another case", tok: graphtest.Token{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			scheme := "Bearer "
			if strings.Contains(tt.name, "another case") {
				scheme = "bEaReR   "
			}
			rec := f.do(scheme + f.mint(tt.tok))
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d, body %s", rec.Code, rec.Body)
			}
			var p middleware.Principal
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
				t.Fatal(err)
			}
			wantOID := userOID
			if tt.appOnly {
				wantOID = appOID
			}
			if p.ObjectID != wantOID || p.TenantID != graphtest.TenantID {
				t.Errorf("principal %s/%s, want %s/%s", p.TenantID, p.ObjectID, graphtest.TenantID, wantOID)
			}
			if p.AppOnly != tt.appOnly {
				t.Errorf("AppOnly = %v, want %v", p.AppOnly, tt.appOnly)
			}
			if p.AppID != graphtest.ClientAppID {
				t.Errorf("AppID = %q, want %q", p.AppID, graphtest.ClientAppID)
			}
			if p.Username != tt.user {
				t.Errorf("Username = %q, want %q", p.Username, tt.user)
			}
		})
	}
}

func TestAuthenticatorRejects(t *testing.T) {
	f := newFixture(t, nil)
	now := f.clock.Now()
	kid, signingKey := f.tenant.SigningKey()
	strangerKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	good := claimsJSON(t, f, graphtest.Token{})
	pubDER, err := x509.MarshalPKIXPublicKey(&signingKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	valid := f.mint(graphtest.Token{})
	parts := strings.Split(valid, ".")

	tests := []struct {
		name   string
		header []string
		status int
		code   string
	}{
		{"no Authorization header", nil, 401, middleware.CodeTokenMissing},
		{"Basic scheme", []string{"Basic dXNlcjpwYXNz"}, 401, middleware.CodeTokenMissing},
		{"scheme glued to token", []string{"Bearer" + valid}, 401, middleware.CodeTokenMissing},
		{"two Authorization headers", []string{"Bearer " + valid, "Bearer " + valid}, 400, middleware.CodeRequestMalformed},
		{"empty token", []string{"Bearer "}, 401, middleware.CodeTokenMalformed},
		{"scheme only", []string{"Bearer"}, 401, middleware.CodeTokenMalformed},
		{"token over the size cap", []string{"Bearer " + strings.Repeat("a", middleware.DefaultMaxTokenBytes+1)}, 401, middleware.CodeTokenMalformed},
		{"characters outside b64token", []string{"Bearer " + parts[0] + ".{}." + parts[2]}, 401, middleware.CodeTokenMalformed},
		{"not a JWT", []string{"Bearer abc.def"}, 401, middleware.CodeTokenMalformed},
		{"JWE (five parts)", []string{"Bearer " + parts[0] + ".a.b.c.d"}, 401, middleware.CodeTokenMalformed},
		{"alg none", []string{"Bearer " + b64(`{"alg":"none","typ":"JWT","kid":"`+kid+`"}`) + "." + b64(string(good)) + "."}, 401, middleware.CodeTokenMalformed},
		{"HS256 keyed with the RSA public key", []string{"Bearer " + signWith(t, jose.HS256, pubDER, kid, good)}, 401, middleware.CodeTokenBadSignature},
		{"signed by a key not in the JWKS", []string{"Bearer " + signWith(t, jose.RS256, strangerKey, kid, good)}, 401, middleware.CodeTokenBadSignature},
		{"unknown kid", []string{"Bearer " + signWith(t, jose.RS256, strangerKey, "no-such-key", good)}, 401, middleware.CodeTokenBadSignature},
		{"no kid", []string{"Bearer " + signWith(t, jose.RS256, signingKey, "", good)}, 401, middleware.CodeTokenMalformed},
		{"payload swapped after signing", []string{"Bearer " + parts[0] + "." + b64(strings.Replace(string(good), userOID, appOID, 1)) + "." + parts[2]}, 401, middleware.CodeTokenBadSignature},
		{"expired beyond the skew", []string{"Bearer " + f.mint(graphtest.Token{IssuedAt: now.Add(-time.Hour - 3*time.Minute), Lifetime: time.Hour})}, 401, middleware.CodeTokenExpired},
		{"nbf beyond the skew", []string{"Bearer " + f.mint(graphtest.Token{Claims: map[string]any{"nbf": now.Add(3 * time.Minute).Unix()}})}, 401, middleware.CodeTokenNotYetValid},
		{"iat beyond the skew", []string{"Bearer " + f.mint(graphtest.Token{IssuedAt: now.Add(3 * time.Minute)})}, 401, middleware.CodeTokenNotYetValid},
		{"exp as a string", []string{"Bearer " + f.mint(graphtest.Token{Claims: map[string]any{"exp": "soon"}})}, 401, middleware.CodeTokenMalformed},
		{"no exp", []string{"Bearer " + f.mint(graphtest.Token{Claims: map[string]any{"exp": nil}})}, 401, middleware.CodeTokenMissingClaim},
		{"no iat", []string{"Bearer " + f.mint(graphtest.Token{Claims: map[string]any{"iat": nil}})}, 401, middleware.CodeTokenMissingClaim},
		{"wrong audience", []string{"Bearer " + f.mint(graphtest.Token{Audience: "api://someone-else"})}, 401, middleware.CodeTokenWrongAudience},
		{"aud array without an accepted member", []string{"Bearer " + f.mint(graphtest.Token{Claims: map[string]any{"aud": []string{"api://a", "api://b"}}})}, 401, middleware.CodeTokenWrongAudience},
		{"Microsoft Graph audience (GUID)", []string{"Bearer " + f.mint(graphtest.Token{Audience: "00000003-0000-0000-c000-000000000000"})}, 401, middleware.CodeTokenWrongAudience},
		{"Microsoft Graph audience (URL) next to ours", []string{"Bearer " + f.mint(graphtest.Token{Claims: map[string]any{"aud": []string{graphtest.APIClientID, "https://graph.microsoft.com"}}})}, 401, middleware.CodeTokenWrongAudience},
		{"unknown issuer", []string{"Bearer " + f.mint(graphtest.Token{Claims: map[string]any{"iss": "https://evil.example/" + graphtest.TenantID + "/v2.0"}})}, 401, middleware.CodeTokenWrongIssuer},
		{"v2 issuer of another tenant", []string{"Bearer " + f.mint(graphtest.Token{TenantID: otherTenant})}, 401, middleware.CodeTokenTenantNotAllowed},
		{"v1 issuer of another tenant", []string{"Bearer " + f.mint(graphtest.Token{TenantID: otherTenant, Version: 1})}, 401, middleware.CodeTokenTenantNotAllowed},
		{"tid disagrees with iss", []string{"Bearer " + f.mint(graphtest.Token{Claims: map[string]any{"tid": otherTenant}})}, 401, middleware.CodeTokenWrongIssuer},
		{"no oid", []string{"Bearer " + f.mint(graphtest.Token{Claims: map[string]any{"oid": nil}})}, 401, middleware.CodeTokenMissingClaim},
		{"no tid", []string{"Bearer " + f.mint(graphtest.Token{Claims: map[string]any{"tid": nil}})}, 401, middleware.CodeTokenMissingClaim},
		{"ID token (no scp, no roles)", []string{"Bearer " + f.mint(graphtest.Token{Scopes: []string{}, Claims: map[string]any{"nonce": "n-0S6_WzA2Mj"}})}, 401, middleware.CodeTokenNotAccessToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := f.do(tt.header...)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d; body %s", rec.Code, tt.status, rec.Body)
			}
			var body errBody
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q: %v", rec.Body, err)
			}
			if body.Code != tt.code {
				t.Errorf("code %q, want %q (%s)", body.Code, tt.code, body.ErrorDescription)
			}
			if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type %q", ct)
			}
			challenge := rec.Header().Get("WWW-Authenticate")
			switch {
			case tt.code == middleware.CodeTokenMissing:
				if challenge != `Bearer realm="pimguard"` || body.Error != "" {
					t.Errorf("missing token: WWW-Authenticate %q, error %q; want a bare challenge", challenge, body.Error)
				}
			case tt.status == 400:
				if !strings.Contains(challenge, `error="invalid_request"`) || body.Error != "invalid_request" {
					t.Errorf("WWW-Authenticate %q, error %q", challenge, body.Error)
				}
			default:
				want := fmt.Sprintf(`Bearer realm="pimguard", error="invalid_token", error_description=%q`, body.ErrorDescription)
				if challenge != want || body.Error != "invalid_token" {
					t.Errorf("WWW-Authenticate %q, want %q (error %q)", challenge, want, body.Error)
				}
			}
			for _, h := range tt.header {
				if tok := strings.TrimPrefix(h, "Bearer "); len(tok) > 20 && (strings.Contains(rec.Body.String(), tok) || strings.Contains(f.logs.String(), tok)) {
					t.Errorf("token echoed in the body or the logs")
				}
			}
		})
	}
}

func TestQueryAndCookieTokensAreIgnored(t *testing.T) {
	f := newFixture(t, nil)
	tok := f.mint(graphtest.Token{})
	req := httptest.NewRequest(http.MethodPost, "/api/me?access_token="+tok, strings.NewReader("access_token="+tok))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: "access_token", Value: tok})
	rec := httptest.NewRecorder()
	f.auth.Handler(echo).ServeHTTP(rec, req)
	if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Body.String(), middleware.CodeTokenMissing) {
		t.Fatalf("status %d body %s; want 401 token_missing", rec.Code, rec.Body)
	}
}

// TestInsecureAcceptTokensWithoutScopeOrRoles: the switch lets a token
// without scp and roles through, and nothing else: the token must still be an
// access token of the user or the app-only kind. Since a user token is known
// by its scp, only app-only tokens without roles gain from it; a sign-in
// without consent (no scp, sub not oid) and ID tokens stay refused.
func TestInsecureAcceptTokensWithoutScopeOrRoles(t *testing.T) {
	strict := newFixture(t, nil)
	lax := newFixture(t, func(c *middleware.AuthenticatorConfig) { c.InsecureAcceptTokensWithoutScopeOrRoles = true })
	tests := []struct {
		name    string
		tok     graphtest.Token
		lax     bool // accepted with the switch set (never without)
		appOnly bool
	}{
		{"app-only token without roles (idtyp app)", graphtest.Token{ObjectID: appOID, App: true}, true, true},
		{"app-only token without roles or idtyp (sub equals oid)", graphtest.Token{ObjectID: appOID, App: true, Claims: map[string]any{"idtyp": nil}}, true, true},
		{"v1 app-only token without roles", graphtest.Token{ObjectID: appOID, App: true, Version: 1}, true, true},
		{"user sign-in without scp (sub not oid)", graphtest.Token{Scopes: []string{}}, false, false},
		{"idtyp user without scp", graphtest.Token{Scopes: []string{}, Claims: map[string]any{"idtyp": "user"}}, false, false},
		{"unknown idtyp without scp", graphtest.Token{ObjectID: appOID, App: true, Claims: map[string]any{"idtyp": "device"}}, false, false},
		{"v2 ID token (no azp)", graphtest.Token{Scopes: []string{}, Claims: map[string]any{"azp": nil, "azpacr": nil}}, false, false},
		{"v1 ID token (no appid)", graphtest.Token{Version: 1, Scopes: []string{}, Audience: graphtest.APIClientID, Claims: map[string]any{"appid": nil, "appidacr": nil}}, false, false},
		{"ID token with a nonce", graphtest.Token{Scopes: []string{}, Claims: map[string]any{"nonce": "n-0S6_WzA2Mj"}}, false, false},
		{"app-only shape with a nonce", graphtest.Token{ObjectID: appOID, App: true, Claims: map[string]any{"nonce": "n-0S6_WzA2Mj"}}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if rec := strict.do("Bearer " + strict.mint(tt.tok)); rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Body.String(), middleware.CodeTokenNotAccessToken) {
				t.Errorf("without the switch: status %d, body %s; want 401 %s", rec.Code, rec.Body, middleware.CodeTokenNotAccessToken)
			}
			rec := lax.do("Bearer " + lax.mint(tt.tok))
			if !tt.lax {
				if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Body.String(), middleware.CodeTokenNotAccessToken) {
					t.Errorf("with the switch: status %d, body %s; want 401 %s", rec.Code, rec.Body, middleware.CodeTokenNotAccessToken)
				}
				return
			}
			var p middleware.Principal
			if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &p) != nil {
				t.Fatalf("with the switch: status %d, body %s; want 200", rec.Code, rec.Body)
			}
			if p.AppOnly != tt.appOnly {
				t.Errorf("AppOnly = %v, want %v", p.AppOnly, tt.appOnly)
			}
		})
	}
}

func TestKeyOfWrongTypeIsRejected(t *testing.T) {
	// ES256 is allowed here, but the kid names the tenant's RSA key: the
	// signature cannot verify with a key of another type.
	f := newFixture(t, func(c *middleware.AuthenticatorConfig) { c.Algorithms = []string{"RS256", "ES256"} })
	kid, _ := f.tenant.SigningKey()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rec := f.do("Bearer " + signWith(t, jose.ES256, ec, kid, claimsJSON(t, f, graphtest.Token{})))
	if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Body.String(), middleware.CodeTokenBadSignature) {
		t.Fatalf("status %d body %s; want 401 token_bad_signature", rec.Code, rec.Body)
	}
}

func TestCachedTokenExpires(t *testing.T) {
	f := newFixture(t, nil)
	tok := f.mint(graphtest.Token{Lifetime: time.Hour})
	if rec := f.do("Bearer " + tok); rec.Code != http.StatusOK {
		t.Fatalf("fresh token: %d %s", rec.Code, rec.Body)
	}
	f.clock.Advance(time.Hour + middleware.DefaultClockSkew)
	if rec := f.do("Bearer " + tok); rec.Code != http.StatusOK {
		t.Fatalf("at exp+skew: %d %s", rec.Code, rec.Body)
	}
	f.clock.Advance(time.Second)
	rec := f.do("Bearer " + tok)
	if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Body.String(), middleware.CodeTokenExpired) {
		t.Fatalf("past exp+skew: %d %s; want 401 token_expired", rec.Code, rec.Body)
	}
}

func TestNegativeClockSkewMeansNone(t *testing.T) {
	f := newFixture(t, func(c *middleware.AuthenticatorConfig) { c.ClockSkew = -1 })
	tok := f.mint(graphtest.Token{Lifetime: time.Hour})
	f.clock.Advance(time.Hour + time.Second)
	if rec := f.do("Bearer " + tok); rec.Code != http.StatusUnauthorized {
		t.Fatalf("one second past exp with no skew: %d %s", rec.Code, rec.Body)
	}
}

func jwksFetches(s *graphtest.Server) int {
	n := 0
	for _, r := range s.Requests() {
		if strings.HasSuffix(r.Path, "/keys") {
			n++
		}
	}
	return n
}

func TestKeyRotation(t *testing.T) {
	f := newFixture(t, nil)
	oldTok := f.mint(graphtest.Token{})
	if rec := f.do("Bearer " + oldTok); rec.Code != http.StatusOK {
		t.Fatalf("old key: %d %s", rec.Code, rec.Body)
	}
	oldKid, _ := f.tenant.SigningKey()
	if _, err := f.tenant.RotateSigningKey(); err != nil {
		t.Fatal(err)
	}
	before := jwksFetches(f.tenant)
	newTok := f.mint(graphtest.Token{})
	if rec := f.do("Bearer " + newTok); rec.Code != http.StatusOK {
		t.Fatalf("token signed by the rotated-in key: %d %s", rec.Code, rec.Body)
	}
	if got := jwksFetches(f.tenant) - before; got != 1 {
		t.Errorf("rotation cost %d JWKS fetches, want 1", got)
	}

	// Entra withdraws the old key. A cached token signed by it keeps working
	// only until the key set is refreshed (JWKSMaxAge), then it is refused.
	if !f.tenant.RetireKey(oldKid) {
		t.Fatal("RetireKey failed")
	}
	if rec := f.do("Bearer " + oldTok); rec.Code != http.StatusOK {
		t.Fatalf("cached token before the key set is refreshed: %d %s", rec.Code, rec.Body)
	}
	f.clock.Advance(middleware.DefaultJWKSMaxAge + time.Second)
	// The request that finds the key set aged is still answered from it; the
	// refresh it starts runs in the background (stale-while-revalidate).
	if rec := f.do("Bearer " + oldTok); rec.Code != http.StatusOK {
		t.Fatalf("cached token while the aged key set is refreshed: %d %s", rec.Code, rec.Body)
	}
	f.auth.AwaitKeySetRefreshes()
	rec := f.do("Bearer " + oldTok)
	if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Body.String(), middleware.CodeTokenBadSignature) {
		t.Fatalf("token of a withdrawn key: %d %s; want 401 token_bad_signature", rec.Code, rec.Body)
	}
	if rec := f.do("Bearer " + newTok); rec.Code != http.StatusOK {
		t.Fatalf("token of the current key after refresh: %d %s", rec.Code, rec.Body)
	}
}

func TestKidSprayIsBounded(t *testing.T) {
	f := newFixture(t, nil)
	stranger, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	payload := claimsJSON(t, f, graphtest.Token{})
	spray := func(n int) {
		for i := range n {
			rec := f.do("Bearer " + signWith(t, jose.RS256, stranger, fmt.Sprintf("random-kid-%d", i), payload))
			if rec.Code != http.StatusUnauthorized {
				t.Fatalf("random kid %d: %d %s", i, rec.Code, rec.Body)
			}
		}
	}
	before := jwksFetches(f.tenant)
	spray(200)
	if got := jwksFetches(f.tenant) - before; got != 1 {
		t.Errorf("200 random kids within one cooldown caused %d JWKS fetches, want 1", got)
	}
	f.clock.Advance(middleware.DefaultJWKSRefreshCooldown)
	spray(200)
	if got := jwksFetches(f.tenant) - before; got != 2 {
		t.Errorf("after one cooldown: %d JWKS fetches in all, want 2", got)
	}
	// A genuine rotation inside the cooldown is picked up once the cooldown ends.
	if _, err := f.tenant.RotateSigningKey(); err != nil {
		t.Fatal(err)
	}
	tok := f.mint(graphtest.Token{})
	if rec := f.do("Bearer " + tok); rec.Code != http.StatusUnauthorized {
		t.Fatalf("new key inside the cooldown: %d, want 401 until the cooldown ends", rec.Code)
	}
	f.clock.Advance(middleware.DefaultJWKSRefreshCooldown)
	if rec := f.do("Bearer " + tok); rec.Code != http.StatusOK {
		t.Fatalf("new key after the cooldown: %d %s", rec.Code, rec.Body)
	}
}

func TestKeySetUnavailable(t *testing.T) {
	f := newFixture(t, nil)
	remove := f.tenant.InjectFault(func(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, "/keys") }, http.StatusServiceUnavailable)
	if _, err := f.tenant.RotateSigningKey(); err != nil {
		t.Fatal(err)
	}
	tok := f.mint(graphtest.Token{})
	rec := f.do("Bearer " + tok)
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" ||
		!strings.Contains(rec.Body.String(), middleware.CodeKeysUnavailable) {
		t.Fatalf("unknown kid while the JWKS is down: %d %q %s", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
	}
	remove()
	f.clock.Advance(middleware.DefaultJWKSRefreshCooldown)
	if rec := f.do("Bearer " + tok); rec.Code != http.StatusOK {
		t.Fatalf("after the JWKS recovers: %d %s", rec.Code, rec.Body)
	}
}

func TestCustomErrorWriter(t *testing.T) {
	var got *middleware.Rejection
	f := newFixture(t, func(c *middleware.AuthenticatorConfig) {
		c.Realm = "helpdesk"
		c.ErrorWriter = func(w http.ResponseWriter, r *http.Request, rej *middleware.Rejection) {
			got = rej
			middleware.WriteRejection(w, r, rej)
		}
	})
	rec := f.do("Bearer " + f.mint(graphtest.Token{Audience: "api://nope"}))
	if got == nil || got.Code != middleware.CodeTokenWrongAudience || !errors.Is(got.Err, middleware.ErrTokenWrongAudience) {
		t.Fatalf("rejection %+v", got)
	}
	if h := rec.Header().Get("WWW-Authenticate"); !strings.HasPrefix(h, `Bearer realm="helpdesk", error="invalid_token"`) {
		t.Errorf("WWW-Authenticate %q", h)
	}
}

func TestVerifyErrorsWrapSentinels(t *testing.T) {
	f := newFixture(t, nil)
	_, err := f.auth.Verify(context.Background(), f.mint(graphtest.Token{Audience: "api://nope"}))
	if !errors.Is(err, middleware.ErrTokenWrongAudience) {
		t.Fatalf("err = %v, want ErrTokenWrongAudience", err)
	}
	if !strings.HasPrefix(err.Error(), "middleware: ") {
		t.Errorf("error %q lacks the package prefix", err)
	}
}

func TestNewAuthenticatorRejectsBadConfig(t *testing.T) {
	tenant := graphtest.NewServer(graphtest.Options{})
	defer tenant.Close()
	base := func() middleware.AuthenticatorConfig {
		return middleware.AuthenticatorConfig{Tenants: []string{graphtest.TenantID}, Audiences: []string{graphtest.APIClientID}, Authority: tenant.URL}
	}
	tests := []struct {
		name string
		edit func(*middleware.AuthenticatorConfig)
		want string
	}{
		{"no tenants", func(c *middleware.AuthenticatorConfig) { c.Tenants = nil }, "Tenants is empty"},
		{"tenant not a GUID", func(c *middleware.AuthenticatorConfig) { c.Tenants = []string{"common"} }, "not a tenant ID"},
		{"no audiences", func(c *middleware.AuthenticatorConfig) { c.Audiences = nil }, "Audiences is empty"},
		{"Graph audience", func(c *middleware.AuthenticatorConfig) { c.Audiences = []string{"https://graph.microsoft.com"} }, "Microsoft Graph"},
		{"symmetric algorithm", func(c *middleware.AuthenticatorConfig) { c.Algorithms = []string{"HS256"} }, "not an asymmetric"},
		{"alg none", func(c *middleware.AuthenticatorConfig) { c.Algorithms = []string{"none"} }, "not an asymmetric"},
		{"plain http authority off loopback", func(c *middleware.AuthenticatorConfig) { c.Authority = "http://login.example.com" }, "plain http"},
		{"tenant unknown to the authority", func(c *middleware.AuthenticatorConfig) { c.Tenants = []string{otherTenant} }, "HTTP 400"},
		{"negative MaxTokenBytes", func(c *middleware.AuthenticatorConfig) { c.MaxTokenBytes = -1 }, "MaxTokenBytes is negative"},
		{"negative JWKSMaxAge", func(c *middleware.AuthenticatorConfig) { c.JWKSMaxAge = -time.Second }, "JWKSMaxAge is negative"},
		{"negative JWKSRefreshCooldown", func(c *middleware.AuthenticatorConfig) { c.JWKSRefreshCooldown = -time.Second }, "JWKSRefreshCooldown is negative"},
		{"negative HTTPTimeout", func(c *middleware.AuthenticatorConfig) { c.HTTPTimeout = -time.Second }, "HTTPTimeout is negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base()
			tt.edit(&cfg)
			_, err := middleware.NewAuthenticator(context.Background(), cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestRejectionsAreLoggedWithoutTokens(t *testing.T) {
	f := newFixture(t, nil)
	tok := f.mint(graphtest.Token{Audience: "api://nope"})
	f.do("Bearer " + tok)
	var rec map[string]any
	line, _, _ := strings.Cut(f.logs.String(), "\n")
	if err := json.Unmarshal([]byte(line), &rec); err != nil {
		t.Fatalf("log %q: %v", f.logs, err)
	}
	if rec["code"] != middleware.CodeTokenWrongAudience || rec["level"] != "INFO" {
		t.Errorf("log record %v", rec)
	}
	for _, part := range strings.Split(tok, ".") {
		if strings.Contains(f.logs.String(), part) {
			t.Fatalf("a token segment appears in the logs: %s", f.logs)
		}
	}
}

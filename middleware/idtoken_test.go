package middleware_test

import (
	"encoding/json"
	"log/slog"
	"maps"
	"net/http"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/middleware"
)

// This file holds the regression tests of issue 12, item 1: an Entra ID token
// passed as an access token, and a token of neither access-token shape was
// taken for an app-only one, which skipped the user-only account checks.

// idToken describes the ID token Entra gives a client for the fixture's user
// next to its access token when client and API share one app registration:
// aud is that registration's client ID (graphtest.APIClientID, which the
// fixture accepts), roles holds the user's app roles, and there is no scp and
// no azp (v2) or appid (v1). It has no nonce (Entra adds one only when the
// sign-in request carried one): the azp/appid rule alone must refuse it.
// claims are applied on top.
func idToken(version int, claims map[string]any) graphtest.Token {
	c := map[string]any{"azp": nil, "azpacr": nil, "appid": nil, "appidacr": nil}
	maps.Copy(c, claims)
	return graphtest.Token{
		Version: version, Scopes: []string{}, Roles: []string{"Helpdesk.Admin"},
		Name: "Jane Doe", Username: "jane@contoso.example", Audience: graphtest.APIClientID, Claims: c,
	}
}

// TestAccessTokenShape: only the two kinds of Entra access token pass the
// Authenticator — a user (delegated) token and an app-only token, each in its
// v1 and v2 format — and each is classified as what it is; an ID token and a
// token of neither shape are refused with token_not_access_token.
func TestAccessTokenShape(t *testing.T) {
	f := newFixture(t, nil)
	roles := []string{"Helpdesk.Admin"}
	const (
		user = iota
		app
		refused
		malformed
	)
	tests := []struct {
		name string
		tok  graphtest.Token
		want int
	}{
		{"v2 user token", graphtest.Token{}, user},
		{"v1 user token", graphtest.Token{Version: 1}, user},
		{"v2 user token with idtyp user", graphtest.Token{Claims: map[string]any{"idtyp": "user"}}, user},
		{"v2 user token with roles as well", graphtest.Token{Roles: roles}, user},
		{"v2 token with azp and appid", graphtest.Token{Claims: map[string]any{"appid": graphtest.ClientAppID}}, user},
		{"v2 app-only token (idtyp app)", graphtest.Token{ObjectID: appOID, App: true, Roles: roles}, app},
		{"v1 app-only token (idtyp app)", graphtest.Token{ObjectID: appOID, App: true, Roles: roles, Version: 1}, app},
		// idtyp is an optional claim: without it, Entra's app-only shape is
		// no scp and sub equal to oid (graphtest mints app tokens so).
		{"v2 app-only token without idtyp", graphtest.Token{ObjectID: appOID, App: true, Roles: roles, Claims: map[string]any{"idtyp": nil}}, app},
		{"v1 app-only token without idtyp", graphtest.Token{ObjectID: appOID, App: true, Roles: roles, Version: 1, Claims: map[string]any{"idtyp": nil}}, app},

		{"v2 ID token with roles, aud the client ID", idToken(2, nil), refused},
		{"v1 ID token with roles, aud the client ID", idToken(1, nil), refused},
		{"v2 ID token with roles and a nonce", idToken(2, map[string]any{"nonce": "n-0S6_WzA2Mj"}), refused},
		{"v2 ID token forged with azp", idToken(2, map[string]any{"azp": graphtest.ClientAppID}), refused},
		{"user access token with a nonce", graphtest.Token{Claims: map[string]any{"nonce": "n-0S6_WzA2Mj"}}, refused},
		{"user access token with an empty nonce", graphtest.Token{Claims: map[string]any{"nonce": ""}}, refused},
		{"user access token with a null nonce", graphtest.Token{Claims: map[string]any{"nonce": json.RawMessage("null")}}, refused},
		{"user access token with NONCE (encoding/json folds case)", graphtest.Token{Claims: map[string]any{"NONCE": "n-0S6_WzA2Mj"}}, refused},
		{"user access token with at_hash", graphtest.Token{Claims: map[string]any{"at_hash": "77QmUPtjPfzWtF2AnpK9RQ"}}, refused},
		{"user access token with c_hash", graphtest.Token{Claims: map[string]any{"c_hash": "LDktKdoQak3Pk0cnXxCltA"}}, refused},
		{"app-only token with a nonce", graphtest.Token{ObjectID: appOID, App: true, Roles: roles, Claims: map[string]any{"nonce": "n"}}, refused},
		{"v2 token with appid instead of azp", graphtest.Token{Claims: map[string]any{"azp": nil, "appid": graphtest.ClientAppID}}, refused},
		{"v1 token with azp instead of appid", graphtest.Token{Version: 1, Claims: map[string]any{"appid": nil, "azp": graphtest.ClientAppID}}, refused},
		{"v2 token with an empty azp", graphtest.Token{Claims: map[string]any{"azp": ""}}, refused},
		{"v2 app-only token without azp", graphtest.Token{ObjectID: appOID, App: true, Roles: roles, Claims: map[string]any{"azp": nil}}, refused},
		{"ver absent", graphtest.Token{Claims: map[string]any{"ver": nil}}, refused},
		{"ver 3.0", graphtest.Token{Claims: map[string]any{"ver": "3.0"}}, refused},
		{"ver 2 (no minor)", graphtest.Token{Claims: map[string]any{"ver": "2"}}, refused},
		{"idtyp app with scp", graphtest.Token{Claims: map[string]any{"idtyp": "app"}}, refused},
		{"idtyp user without scp", graphtest.Token{Scopes: []string{}, Roles: roles, Claims: map[string]any{"idtyp": "user"}}, refused},
		{"no idtyp, no scp, sub not oid", graphtest.Token{Scopes: []string{}, Roles: roles}, refused},
		{"no idtyp, no scp, no sub", graphtest.Token{ObjectID: appOID, App: true, Roles: roles, Claims: map[string]any{"idtyp": nil, "sub": nil}}, refused},
		{"no idtyp, no scp, sub oid in another case", graphtest.Token{ObjectID: appOID, App: true, Roles: roles, Subject: "9A8B7C6D-5E4F-4A3B-9C2D-1E0F9A8B7C6D", Claims: map[string]any{"idtyp": nil}}, refused},
		{"unknown idtyp", graphtest.Token{ObjectID: appOID, App: true, Roles: roles, Claims: map[string]any{"idtyp": "device"}}, refused},
		{"idtyp App in another case", graphtest.Token{ObjectID: appOID, App: true, Roles: roles, Claims: map[string]any{"idtyp": "App"}}, refused},
		{"idtyp empty", graphtest.Token{ObjectID: appOID, App: true, Roles: roles, Claims: map[string]any{"idtyp": ""}}, refused},
		{"idtyp null", graphtest.Token{ObjectID: appOID, App: true, Roles: roles, Claims: map[string]any{"idtyp": json.RawMessage("null")}}, malformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := f.do("Bearer " + f.mint(tt.tok))
			switch tt.want {
			case refused, malformed:
				code := middleware.CodeTokenNotAccessToken
				if tt.want == malformed {
					code = middleware.CodeTokenMalformed
				}
				var body errBody
				if err := json.Unmarshal(rec.Body.Bytes(), &body); rec.Code != http.StatusUnauthorized || err != nil || body.Code != code {
					t.Fatalf("status %d, body %s; want 401 %s", rec.Code, rec.Body, code)
				}
				return
			}
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d, body %s; want 200", rec.Code, rec.Body)
			}
			var p middleware.Principal
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
				t.Fatal(err)
			}
			if p.AppOnly != (tt.want == app) {
				t.Errorf("AppOnly = %v, want %v", p.AppOnly, tt.want == app)
			}
			if p.AppID != graphtest.ClientAppID {
				t.Errorf("AppID = %q, want %q", p.AppID, graphtest.ClientAppID)
			}
		})
	}
}

// TestIDTokenCannotSkipAccountChecks is the attack of issue 12 end to end: a
// user whose sessions were revoked, whose password changed or who is at high
// risk is refused with the access token, and must not get through by
// presenting the ID token their client holds (or a token of neither shape),
// which the Authenticator used to classify as app-only — and the Guard skips
// the sessions, password and risk checks for app-only principals.
func TestIDTokenCannotSkipAccountChecks(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	issued := t0.Add(10 * time.Second)
	roles := []string{"Helpdesk.Admin"}
	accounts := []struct {
		name    string
		checks  middleware.AccountChecks
		account graphcheck.Account
		risk    *graphcheck.Risk
		code    string // the access token's answer
	}{
		{"sessions revoked", middleware.CheckSessionsRevoked, graphcheck.Account{Enabled: true, SessionsValidFrom: issued.Add(time.Minute)}, nil, middleware.CodeSessionRevoked},
		{"password changed", middleware.CheckPasswordChanged, graphcheck.Account{Enabled: true, PasswordChanged: issued.Add(time.Minute)}, nil, middleware.CodeSessionRevoked},
		{"high risk", middleware.CheckUserRisk, graphcheck.Account{Enabled: true}, &graphcheck.Risk{Level: "high", State: "atRisk", Recorded: true}, middleware.CodeUserAtRisk},
	}
	tokens := []struct {
		name    string
		tok     graphtest.Token
		control bool // the access token: refused by the account check
	}{
		{"the user's access token", graphtest.Token{}, true},
		{"v2 ID token", idToken(2, nil), false},
		{"v1 ID token", idToken(1, nil), false},
		{"v2 ID token with a nonce", idToken(2, map[string]any{"nonce": "n-0S6_WzA2Mj"}), false},
		{"roles, no scp, no idtyp, sub not oid", graphtest.Token{Scopes: []string{}, Roles: roles}, false},
		{"idtyp app next to scp", graphtest.Token{Claims: map[string]any{"idtyp": "app"}}, false},
	}
	for _, acc := range accounts {
		for _, tk := range tokens {
			t.Run(acc.name+"/"+tk.name, func(t *testing.T) {
				g := newGuardFixture(t, nil)
				src := newAccountSource(g.dir)
				g.guard = middleware.MustNewGuard(middleware.GuardConfig{Source: src, Now: g.clock.Now, AccountChecks: acc.checks,
					Logger: slog.New(slog.DiscardHandler)})
				g.dir.activateRole(userOID, userAdmin, "/", time.Hour)
				src.set(func(a *accountSource) {
					a.accounts[userOID] = acc.account
					if acc.risk != nil {
						a.risks[userOID] = *acc.risk
					}
				})
				g.clock.Set(issued)
				tok := g.mint(tk.tok)
				g.clock.Advance(time.Minute)
				rec := g.do(middleware.Role(userAdmin), tok)
				if g.served.Load() != 0 {
					t.Fatalf("the handler was called (status %d)", rec.Code)
				}
				if tk.control {
					expect(t, rec, http.StatusUnauthorized, acc.code)
					return
				}
				expect(t, rec, http.StatusUnauthorized, middleware.CodeTokenNotAccessToken)
				if n := g.dir.calls.Load(); n != 0 {
					t.Errorf("%d lookups for a token the Authenticator refuses, want 0", n)
				}
			})
		}
	}
}

package middleware_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/middleware"
)

// TestHeaderKeysAreRefusedBeforeKeyLookup: a token whose header names or
// embeds a key of its own (jku, x5u, jwk, x5c), or asks for processing rules
// (crit, b64), is refused as token_bad_signature from its header alone —
// also when its kid is unknown, so that it cannot cost a JWKS fetch. Before
// the header was checked ahead of the key lookup, each of these with an
// unknown kid refetched the key set (once per cooldown).
func TestHeaderKeysAreRefusedBeforeKeyLookup(t *testing.T) {
	f := newFixture(t, nil)
	stranger, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	cert := base64.StdEncoding.EncodeToString(selfSignedCert(t, stranger))
	payload := claimsJSON(t, f, graphtest.Token{})
	tests := []struct {
		name   string
		header map[string]any
		embed  bool
	}{
		{"jku", map[string]any{"jku": "https://evil.example/jwks.json"}, false},
		{"x5u", map[string]any{"x5u": "https://evil.example/cert.pem"}, false},
		{"jwk", nil, true},
		{"x5c", map[string]any{"x5c": []string{cert}}, false},
		{"crit", map[string]any{"crit": []string{"urn:evil"}, "urn:evil": true}, false},
		{"b64", map[string]any{"b64": true}, false},
	}
	before := jwksFetches(f.tenant)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			header := map[string]any{"kid": "kid-of-the-attacker-" + tt.name}
			for k, v := range tt.header {
				header[k] = v
			}
			rec := f.do("Bearer " + signHeaders(t, jose.RS256, stranger, header, tt.embed, payload))
			if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Body.String(), middleware.CodeTokenBadSignature) {
				t.Fatalf("status %d, body %s; want 401 %s", rec.Code, rec.Body, middleware.CodeTokenBadSignature)
			}
		})
	}
	if n := jwksFetches(f.tenant) - before; n != 0 {
		t.Errorf("tokens refused for their headers cost %d JWKS fetches, want 0", n)
	}
}

// TestDistributedClaimSources keeps go-oidc's check of distributed claims
// (OpenID Connect Core §5.6.2), which Entra uses for the groups overage:
// every name in _claim_names must point at a source in _claim_sources.
func TestDistributedClaimSources(t *testing.T) {
	f := newFixture(t, nil)
	sources := map[string]any{"src1": map[string]any{"endpoint": "https://graph.microsoft.com/v1.0/users/" + userOID + "/getMemberObjects"}}
	tests := []struct {
		name   string
		claims map[string]any
		code   string // "" for accepted
	}{
		{"groups overage", map[string]any{"_claim_names": map[string]any{"groups": "src1"}, "_claim_sources": sources}, ""},
		{"undefined source", map[string]any{"_claim_names": map[string]any{"groups": "src2"}, "_claim_sources": sources}, middleware.CodeTokenMalformed},
		{"empty source", map[string]any{"_claim_names": map[string]any{"groups": ""}, "_claim_sources": map[string]any{"": sources["src1"]}}, middleware.CodeTokenMalformed},
		{"names without sources", map[string]any{"_claim_names": map[string]any{"groups": "src1"}}, middleware.CodeTokenMalformed},
		{"names not an object", map[string]any{"_claim_names": "groups"}, middleware.CodeTokenMalformed},
		{"source not an object", map[string]any{"_claim_names": map[string]any{"groups": "src1"}, "_claim_sources": map[string]any{"src1": "x"}}, middleware.CodeTokenMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := f.do("Bearer " + f.mint(graphtest.Token{Claims: tt.claims}))
			switch {
			case tt.code == "" && rec.Code != http.StatusOK:
				t.Fatalf("status %d, body %s; want 200", rec.Code, rec.Body)
			case tt.code != "" && (rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Body.String(), tt.code)):
				t.Fatalf("status %d, body %s; want 401 %s", rec.Code, rec.Body, tt.code)
			}
		})
	}
}

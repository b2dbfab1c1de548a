package middleware_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/internal/syncio"
	"github.com/pimguard/pimguard/middleware"
)

// This file is the hostile-input corpus of issue 6: tokens and requests an
// attacker can send, each of which must end in 400 or 401 — never 2xx, never
// 5xx, never the protected handler — with nothing of the token in any log
// record, response body or response header. Reproduce with
//
//	go test -race -run 'Hostile|KidSpray' -v ./middleware/

// hostileCase is one attacker request. Authorization values go in header, in
// order; anything else that carries a secret (query, body, cookie, a token
// nested in another) goes in secrets so that the leak scan looks for it.
type hostileCase struct {
	name    string
	group   string
	method  string            // default GET
	target  string            // default /api/admin
	body    string            // request body, if any
	header  []string          // Authorization header values
	extra   map[string]string // other request headers
	status  int
	code    string
	secrets []string
}

func (c *hostileCase) request() *http.Request {
	method, target := c.method, c.target
	if method == "" {
		method = http.MethodGet
	}
	if target == "" {
		target = "/api/admin"
	}
	var body *strings.Reader
	if c.body != "" {
		body = strings.NewReader(c.body)
	}
	var req *http.Request
	if body != nil {
		req = httptest.NewRequest(method, target, body)
	} else {
		req = httptest.NewRequest(method, target, nil)
	}
	for _, h := range c.header {
		req.Header.Add("Authorization", h)
	}
	for k, v := range c.extra {
		req.Header.Add(k, v)
	}
	return req
}

// grantAll is a live source whose state activates Global Administrator
// tenant-wide, permanently, for anyone: behind it only authentication stands
// between an attacker and the handler.
var grantAll = graphcheck.SourceFunc(func(ctx context.Context, p graphcheck.Principal) (*graphcheck.State, error) {
	return &graphcheck.State{Roles: []graphcheck.RoleAssignment{{
		RoleDefinitionID: globalAdmin, DirectoryScopeID: graphcheck.TenantScope, AssignmentType: graphcheck.AssignmentAssigned,
	}}}, nil
})

// hostileChain is Authenticator.Handler → Guard.Require(Global Administrator)
// → next, with the Guard logging at Debug into glogs.
func hostileChain(t *testing.T, f *fixture, glogs *syncio.Buffer, next http.Handler) http.Handler {
	t.Helper()
	guard, err := middleware.NewGuard(middleware.GuardConfig{
		Source: grantAll,
		Now:    f.clock.Now,
		Logger: slog.New(slog.NewJSONHandler(glogs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	return f.auth.Handler(guard.Require(middleware.Role(globalAdmin))(next))
}

// signHeaders signs payload with key, putting the given fields in the
// protected header (typ JWT is added). embed adds the public key as "jwk".
func signHeaders(t *testing.T, alg jose.SignatureAlgorithm, key any, header map[string]any, embed bool, payload []byte) string {
	t.Helper()
	opts := (&jose.SignerOptions{EmbedJWK: embed}).WithType("JWT")
	for k, v := range header {
		opts = opts.WithHeader(jose.HeaderKey(k), v)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// tweakLastChar changes the last character of a base64url segment to another
// one with the same high bits: a different string that decodes to the same
// bytes (non-canonical base64, RFC 4648 §3.5). The segment's length must not
// be a multiple of 4.
func tweakLastChar(t *testing.T, seg string) string {
	t.Helper()
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	dataBits := map[int]int{2: 4, 3: 2}[len(seg)%4] // unused low bits of the last char
	if dataBits == 0 {
		t.Fatalf("segment of length %d has no padding bits", len(seg))
	}
	last := strings.IndexByte(alphabet, seg[len(seg)-1])
	mask := 1<<dataBits - 1
	alt := alphabet[(last&^mask)|((last&mask)^1)]
	out := seg[:len(seg)-1] + string(alt)
	want, _ := base64.RawURLEncoding.DecodeString(seg)
	got, err := base64.RawURLEncoding.DecodeString(out)
	if err != nil || !bytes.Equal(got, want) || out == seg {
		t.Fatalf("tweakLastChar: %q → %q does not decode to the same bytes (%v)", seg, out, err)
	}
	return out
}

func selfSignedCert(t *testing.T, key *rsa.PrivateKey) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "evil.example"},
		NotBefore: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// hostileCorpus builds the corpus against f's tenant. The fixture's clock must
// not move while the corpus runs.
func hostileCorpus(t *testing.T, f *fixture) []hostileCase {
	t.Helper()
	now := f.clock.Now()
	skew := middleware.DefaultClockSkew
	kid, signingKey := f.tenant.SigningKey()
	stranger, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&signingKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	strangerJWK, err := json.Marshal(jose.JSONWebKey{Key: &stranger.PublicKey, KeyID: "evil", Use: "sig", Algorithm: "RS256"})
	if err != nil {
		t.Fatal(err)
	}
	var strangerJWKMap map[string]any
	if err := json.Unmarshal(strangerJWK, &strangerJWKMap); err != nil {
		t.Fatal(err)
	}

	good := claimsJSON(t, f, graphtest.Token{})
	goodStr := string(good)
	// edit returns the claims JSON with one exact replacement, failing if the
	// text to replace is not there.
	edit := func(old, repl string) []byte {
		t.Helper()
		if !strings.Contains(goodStr, old) {
			t.Fatalf("claims %s lack %s", goodStr, old)
		}
		return []byte(strings.Replace(goodStr, old, repl, 1))
	}
	sign := func(header map[string]any, payload []byte) string {
		t.Helper()
		tok, err := f.tenant.Sign(header, payload)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	// valid is a token the tenant minted, with at least one '-' or '_' so
	// that its standard-alphabet variant differs from it.
	var valid string
	for i := 0; ; i++ {
		valid = f.mint(graphtest.Token{})
		if strings.ContainsAny(valid, "-_") {
			break
		}
		if i == 20 {
			t.Fatal("no minted token holds '-' or '_'")
		}
	}
	other := f.mint(graphtest.Token{Username: "mallory@contoso.example"})
	parts := strings.Split(valid, ".")
	otherParts := strings.Split(other, ".")
	jwe := func() string {
		enc, err := jose.NewEncrypter(jose.A256GCM, jose.Recipient{Algorithm: jose.RSA_OAEP_256, Key: &signingKey.PublicKey, KeyID: kid},
			(&jose.EncrypterOptions{}).WithType("JWT"))
		if err != nil {
			t.Fatal(err)
		}
		obj, err := enc.Encrypt(good)
		if err != nil {
			t.Fatal(err)
		}
		s, err := obj.CompactSerialize()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}()
	padded := func(seg string) string {
		for len(seg)%4 != 0 {
			seg += "="
		}
		return seg
	}
	std := strings.NewReplacer("-", "+", "_", "/").Replace(valid)
	bearer := func(tok string) []string { return []string{"Bearer " + tok} }
	nonUTF8 := func(claim, value string) []byte {
		return edit(fmt.Sprintf("%q:%q", claim, value), fmt.Sprintf("%q:\"%s\xff\xfe\"", claim, value))
	}
	huge := strings.Repeat("A", 20000)
	underCap := func(n int) string { // garbage of exactly n b64token characters shaped like a JWT
		third := (n - 2) / 3
		return strings.Repeat("e", third) + "." + strings.Repeat("y", third) + "." + strings.Repeat("J", n-2-2*third)
	}
	const (
		s400, s401 = http.StatusBadRequest, http.StatusUnauthorized
		missing    = middleware.CodeTokenMissing
		reqBad     = middleware.CodeRequestMalformed
		malformed  = middleware.CodeTokenMalformed
		badSig     = middleware.CodeTokenBadSignature
		expired    = middleware.CodeTokenExpired
		notYet     = middleware.CodeTokenNotYetValid
		wrongAud   = middleware.CodeTokenWrongAudience
		wrongIss   = middleware.CodeTokenWrongIssuer
		tenantNo   = middleware.CodeTokenTenantNotAllowed
		notAccess  = middleware.CodeTokenNotAccessToken
		noClaim    = middleware.CodeTokenMissingClaim
		notFound   = middleware.CodePrincipalNotFound
	)
	return []hostileCase{
		// Algorithm attacks.
		{name: "alg none", group: "algorithm", header: bearer(b64(`{"alg":"none","typ":"JWT","kid":"`+kid+`"}`) + "." + parts[1] + "."), status: s401, code: malformed},
		{name: "alg NONE upper case", group: "algorithm", header: bearer(b64(`{"alg":"NONE","typ":"JWT","kid":"`+kid+`"}`) + "." + parts[1] + "."), status: s401, code: malformed},
		{name: "alg none with a spliced valid signature", group: "algorithm", header: bearer(b64(`{"alg":"none","typ":"JWT","kid":"`+kid+`"}`) + "." + parts[1] + "." + parts[2]), status: s401, code: badSig},
		{name: "HS256 keyed with the RSA public key (DER)", group: "algorithm", header: bearer(signWith(t, jose.HS256, pubDER, kid, good)), status: s401, code: badSig},
		{name: "HS256 keyed with the RSA public key (PEM)", group: "algorithm", header: bearer(signWith(t, jose.HS256, pubPEM, kid, good)), status: s401, code: badSig},
		{name: "ES256 (not allowed) with the real kid", group: "algorithm", header: bearer(signWith(t, jose.ES256, ec, kid, good)), status: s401, code: badSig},
		{name: "PS256 by the real key (not allowed)", group: "algorithm", header: bearer(signWith(t, jose.PS256, signingKey, kid, good)), status: s401, code: badSig},
		{name: "RS256 with the real kid, signature stripped", group: "algorithm", header: bearer(parts[0] + "." + parts[1] + "."), status: s401, code: malformed},
		{name: "signature of another valid token spliced on", group: "algorithm", header: bearer(parts[0] + "." + parts[1] + "." + otherParts[2]), status: s401, code: badSig},
		{name: "payload of another valid token under this signature", group: "algorithm", header: bearer(parts[0] + "." + otherParts[1] + "." + parts[2]), status: s401, code: badSig},
		{name: "crit header with an unknown extension", group: "algorithm", header: bearer(sign(map[string]any{"crit": []string{"urn:evil:bypass"}, "urn:evil:bypass": true}, good)), status: s401, code: badSig},

		// Key selection.
		{name: "kid of an unknown key", group: "kid", header: bearer(signWith(t, jose.RS256, stranger, "no-such-key", good)), status: s401, code: badSig},
		{name: "kid is a path", group: "kid", header: bearer(sign(map[string]any{"kid": "../../etc/passwd"}, good)), status: s401, code: badSig},
		{name: "kid is a URL", group: "kid", header: bearer(sign(map[string]any{"kid": "https://evil.example/jwks.json"}, good)), status: s401, code: badSig},
		{name: "kid empty", group: "kid", header: bearer(sign(map[string]any{"kid": ""}, good)), status: s401, code: malformed},
		{name: "kid absent", group: "kid", header: bearer(signWith(t, jose.RS256, signingKey, "", good)), status: s401, code: malformed},
		{name: "kid a number", group: "kid", header: bearer(sign(map[string]any{"kid": 1}, good)), status: s401, code: malformed},
		{name: "valid signature by a key not in the JWKS (real kid)", group: "kid", header: bearer(signWith(t, jose.RS256, stranger, kid, good)), status: s401, code: badSig},
		{name: "jwk header embedding the attacker key", group: "kid", header: bearer(signHeaders(t, jose.RS256, stranger, map[string]any{"kid": kid}, true, good)), status: s401, code: badSig},
		{name: "jwk header with the attacker key, no kid", group: "kid", header: bearer(signHeaders(t, jose.RS256, stranger, map[string]any{"jwk": strangerJWKMap}, false, good)), status: s401, code: malformed},
		{name: "jku header pointing at the attacker's JWKS", group: "kid", header: bearer(signHeaders(t, jose.RS256, stranger, map[string]any{"kid": "evil", "jku": "https://evil.example/jwks.json"}, false, good)), status: s401, code: badSig},
		{name: "x5u header pointing at the attacker's certificate", group: "kid", header: bearer(signHeaders(t, jose.RS256, stranger, map[string]any{"kid": kid, "x5u": "https://evil.example/cert.pem"}, false, good)), status: s401, code: badSig},
		{name: "x5c header with the attacker's certificate", group: "kid", header: bearer(signHeaders(t, jose.RS256, stranger, map[string]any{"kid": kid, "x5c": []string{base64.StdEncoding.EncodeToString(selfSignedCert(t, stranger))}}, false, good)), status: s401, code: badSig},

		// Time, each just outside the skew (just inside: TestHostileSkewBoundaryInside).
		{name: "expired 1 s beyond the skew", group: "time", header: bearer(f.mint(graphtest.Token{IssuedAt: now.Add(-time.Hour - skew - time.Second), Lifetime: time.Hour})), status: s401, code: expired},
		{name: "expired 1 ms beyond the skew (fractional exp)", group: "time", header: bearer(f.mint(graphtest.Token{Claims: map[string]any{"exp": float64(now.Add(-skew).UnixMilli()-1) / 1000}})), status: s401, code: expired},
		{name: "nbf 1 s beyond the skew", group: "time", header: bearer(f.mint(graphtest.Token{Claims: map[string]any{"nbf": now.Add(skew + time.Second).Unix()}})), status: s401, code: notYet},
		{name: "nbf 1 ms beyond the skew (fractional nbf)", group: "time", header: bearer(f.mint(graphtest.Token{Claims: map[string]any{"nbf": float64(now.Add(skew).UnixMilli()+1) / 1000}})), status: s401, code: notYet},
		{name: "iat 1 s beyond the skew", group: "time", header: bearer(f.mint(graphtest.Token{IssuedAt: now.Add(skew + time.Second), Claims: map[string]any{"nbf": now.Unix()}})), status: s401, code: notYet},
		{name: "iat ten years ahead", group: "time", header: bearer(f.mint(graphtest.Token{IssuedAt: now.AddDate(10, 0, 0), Claims: map[string]any{"nbf": now.Unix()}})), status: s401, code: notYet},
		{name: "exp beyond any date (1e12)", group: "time", header: bearer(f.mint(graphtest.Token{Claims: map[string]any{"exp": 1e12}})), status: s401, code: malformed},
		{name: "exp negative", group: "time", header: bearer(f.mint(graphtest.Token{Claims: map[string]any{"exp": -1}})), status: s401, code: malformed},
		{name: "exp null", group: "time", header: bearer(sign(nil, edit(`"exp":`, `"exp":null,"x-exp":`))), status: s401, code: malformed},

		// Issuer and tenant.
		{name: "wrong iss", group: "issuer", header: bearer(f.mint(graphtest.Token{Claims: map[string]any{"iss": "https://evil.example/" + graphtest.TenantID + "/v2.0"}})), status: s401, code: wrongIss},
		{name: "iss absent", group: "issuer", header: bearer(f.mint(graphtest.Token{Claims: map[string]any{"iss": nil}})), status: s401, code: wrongIss},
		{name: "v2 issuer of another tenant", group: "issuer", header: bearer(f.mint(graphtest.Token{TenantID: otherTenant})), status: s401, code: tenantNo},
		{name: "v1 issuer of another tenant", group: "issuer", header: bearer(f.mint(graphtest.Token{TenantID: otherTenant, Version: 1})), status: s401, code: tenantNo},
		{name: "tid disagrees with iss", group: "issuer", header: bearer(f.mint(graphtest.Token{Claims: map[string]any{"tid": otherTenant}})), status: s401, code: wrongIss},
		{name: "our tid under another tenant's iss", group: "issuer", header: bearer(f.mint(graphtest.Token{TenantID: otherTenant, Claims: map[string]any{"tid": graphtest.TenantID}})), status: s401, code: tenantNo},
		{name: "iss in upper case", group: "issuer", header: bearer(f.mint(graphtest.Token{Claims: map[string]any{"iss": strings.ToUpper(f.tenant.Issuer(graphtest.TenantID, 2))}})), status: s401, code: tenantNo},

		// Audience.
		{name: "wrong aud", group: "audience", header: bearer(f.mint(graphtest.Token{Audience: "api://someone-else"})), status: s401, code: wrongAud},
		{name: "aud array with a wrong member only", group: "audience", header: bearer(f.mint(graphtest.Token{Claims: map[string]any{"aud": []string{"api://someone-else"}}})), status: s401, code: wrongAud},
		{name: "aud empty array", group: "audience", header: bearer(f.mint(graphtest.Token{Claims: map[string]any{"aud": []string{}}})), status: s401, code: wrongAud},
		{name: "aud an object", group: "audience", header: bearer(f.mint(graphtest.Token{Claims: map[string]any{"aud": map[string]string{"value": graphtest.APIClientID}}})), status: s401, code: malformed},
		{name: "aud Microsoft Graph (GUID)", group: "audience", header: bearer(f.mint(graphtest.Token{Audience: "00000003-0000-0000-c000-000000000000"})), status: s401, code: wrongAud},
		{name: "aud Microsoft Graph (URL) next to ours", group: "audience", header: bearer(f.mint(graphtest.Token{Claims: map[string]any{"aud": []string{graphtest.APIClientID, "https://graph.microsoft.com"}}})), status: s401, code: wrongAud},
		{name: "aud our client ID in upper case", group: "audience", header: bearer(f.mint(graphtest.Token{Audience: strings.ToUpper(graphtest.APIClientID)})), status: s401, code: wrongAud},

		// Token type and required claims.
		{name: "ID token (no scp, no roles, nonce)", group: "claims", header: bearer(f.mint(graphtest.Token{Scopes: []string{}, Claims: map[string]any{"nonce": "n-0S6_WzA2Mj"}})), status: s401, code: notAccess},
		{name: "oid absent", group: "claims", header: bearer(f.mint(graphtest.Token{Claims: map[string]any{"oid": nil}})), status: s401, code: noClaim},
		{name: "tid absent", group: "claims", header: bearer(f.mint(graphtest.Token{Claims: map[string]any{"tid": nil}})), status: s401, code: noClaim},
		{name: "oid is an OData path (not a GUID)", group: "claims", header: bearer(f.mint(graphtest.Token{ObjectID: "../../users?$filter=x"})), status: s401, code: notFound},
		{name: "scp an array", group: "claims", header: bearer(f.mint(graphtest.Token{Claims: map[string]any{"scp": []string{"access_as_user"}}})), status: s401, code: malformed},

		// ID tokens and tokens of neither access-token shape (issue 12):
		// each is signed by the tenant's real key, names the fixture's user
		// and carries roles or scp, and the Guard's source grants everything,
		// so only the token-kind rules stand between it and the handler.
		{name: "v2 ID token with roles, aud the client ID", group: "id tokens", header: bearer(f.mint(idToken(2, nil))), status: s401, code: notAccess},
		{name: "v1 ID token with roles, aud the client ID", group: "id tokens", header: bearer(f.mint(idToken(1, nil))), status: s401, code: notAccess},
		{name: "v2 ID token with roles and a nonce", group: "id tokens", header: bearer(f.mint(idToken(2, map[string]any{"nonce": "n-0S6_WzA2Mj"}))), status: s401, code: notAccess},
		{name: "v2 ID token with roles, forged azp", group: "id tokens", header: bearer(f.mint(idToken(2, map[string]any{"azp": graphtest.ClientAppID}))), status: s401, code: notAccess},
		{name: "user access token with a nonce", group: "id tokens", header: bearer(f.mint(graphtest.Token{Claims: map[string]any{"nonce": "n-0S6_WzA2Mj"}})), status: s401, code: notAccess},
		{name: "user access token with at_hash", group: "id tokens", header: bearer(f.mint(graphtest.Token{Claims: map[string]any{"at_hash": "77QmUPtjPfzWtF2AnpK9RQ"}})), status: s401, code: notAccess},
		{name: "user access token with c_hash", group: "id tokens", header: bearer(f.mint(graphtest.Token{Claims: map[string]any{"c_hash": "LDktKdoQak3Pk0cnXxCltA"}})), status: s401, code: notAccess},
		{name: "user access token with NONCE in upper case", group: "id tokens", header: bearer(f.mint(graphtest.Token{Claims: map[string]any{"NONCE": "n-0S6_WzA2Mj"}})), status: s401, code: notAccess},
		{name: "v2 token with appid instead of azp", group: "id tokens", header: bearer(f.mint(graphtest.Token{Claims: map[string]any{"azp": nil, "appid": graphtest.ClientAppID}})), status: s401, code: notAccess},
		{name: "v1 token with azp instead of appid", group: "id tokens", header: bearer(f.mint(graphtest.Token{Version: 1, Claims: map[string]any{"appid": nil, "azp": graphtest.ClientAppID}})), status: s401, code: notAccess},
		{name: "ver absent", group: "id tokens", header: bearer(f.mint(graphtest.Token{Claims: map[string]any{"ver": nil}})), status: s401, code: notAccess},
		{name: "ver 3.0", group: "id tokens", header: bearer(f.mint(graphtest.Token{Claims: map[string]any{"ver": "3.0"}})), status: s401, code: notAccess},
		{name: "idtyp app next to scp", group: "id tokens", header: bearer(f.mint(graphtest.Token{Claims: map[string]any{"idtyp": "app"}})), status: s401, code: notAccess},
		{name: "idtyp user without scp, with roles", group: "id tokens", header: bearer(f.mint(graphtest.Token{Scopes: []string{}, Roles: []string{"Helpdesk.Admin"}, Claims: map[string]any{"idtyp": "user"}})), status: s401, code: notAccess},
		{name: "roles, no scp, no idtyp, sub not oid", group: "id tokens", header: bearer(f.mint(graphtest.Token{Scopes: []string{}, Roles: []string{"Helpdesk.Admin"}})), status: s401, code: notAccess},
		{name: "unknown idtyp with roles", group: "id tokens", header: bearer(f.mint(graphtest.Token{Scopes: []string{}, Roles: []string{"Helpdesk.Admin"}, Claims: map[string]any{"idtyp": "device"}})), status: s401, code: notAccess},

		// Structure.
		{name: "JWE (five parts) for our key", group: "structure", header: bearer(jwe), status: s401, code: malformed},
		{name: "nested JWT (cty JWT, payload a valid token)", group: "structure", header: bearer(sign(map[string]any{"cty": "JWT"}, []byte(other))), status: s401, code: malformed, secrets: []string{other}},
		{name: "nested JWT as a JSON string", group: "structure", header: bearer(sign(map[string]any{"cty": "JWT"}, []byte(`"`+other+`"`))), status: s401, code: malformed, secrets: []string{other}},
		{name: "two segments", group: "structure", header: bearer(parts[0] + "." + parts[1]), status: s401, code: malformed},
		{name: "four segments", group: "structure", header: bearer(valid + "." + parts[2]), status: s401, code: malformed},
		{name: "empty segments", group: "structure", header: bearer(".."), status: s401, code: malformed},
		{name: "payload JSON null", group: "structure", header: bearer(sign(nil, []byte("null"))), status: s401, code: malformed},
		{name: "payload a JSON array", group: "structure", header: bearer(sign(nil, []byte("["+goodStr+"]"))), status: s401, code: malformed},
		{name: "payload with trailing garbage", group: "structure", header: bearer(sign(nil, []byte(goodStr+"x"))), status: s401, code: malformed},
		{name: "payload with a BOM", group: "structure", header: bearer(sign(nil, []byte("\ufeff"+goodStr))), status: s401, code: malformed},

		// Duplicate claims: the token is signed by the tenant's real key, so
		// only the duplicate stands between it and the handler.
		{name: "two aud, the last one ours", group: "duplicates", header: bearer(sign(nil, edit(`"aud":`, `"aud":"api://someone-else","aud":`))), status: s401, code: malformed},
		{name: "two aud, the first one ours", group: "duplicates", header: bearer(sign(nil, edit(`"azp":`, `"aud":"api://someone-else","azp":`))), status: s401, code: malformed},
		{name: "two tid, the last one ours", group: "duplicates", header: bearer(sign(nil, edit(`"tid":`, `"tid":"`+otherTenant+`","tid":`))), status: s401, code: malformed},
		{name: "two tid, the first one ours", group: "duplicates", header: bearer(sign(nil, edit(`"uti":`, `"tid":"`+otherTenant+`","uti":`))), status: s401, code: malformed},
		// encoding/json matches member names by Unicode simple case folding
		// (bytes.EqualFold), so these are duplicates to it too, read last-wins.
		{name: "oid and OID, another object's last", group: "duplicates", header: bearer(sign(nil, edit(`"oid":"`+userOID+`"`, `"oid":"`+userOID+`","OID":"`+appOID+`"`))), status: s401, code: malformed},
		{name: "tid and TID, another tenant's last", group: "duplicates", header: bearer(sign(nil, edit(`"tid":"`+graphtest.TenantID+`"`, `"tid":"`+graphtest.TenantID+`","TID":"`+otherTenant+`"`))), status: s401, code: malformed},
		{name: "aud and AUD, someone else's last", group: "duplicates", header: bearer(sign(nil, edit(`"aud":"`+graphtest.APIClientID+`"`, `"aud":"`+graphtest.APIClientID+`","AUD":"api://someone-else"`))), status: s401, code: malformed},
		{name: "scp and \u017fcp (U+017F long s), the last another scope", group: "duplicates", header: bearer(sign(nil, edit(`"scp":"access_as_user"`, "\"scp\":\"access_as_user\",\"\u017fcp\":\"Directory.AccessAsUser.All\""))), status: s401, code: malformed},
		{name: "sub and \u017fub (U+017F long s), the last equal to oid", group: "duplicates", header: bearer(sign(nil, edit(`"sub":`, "\"sub\":\""+userOID+"\",\"\u017fub\":"))), status: s401, code: malformed},
		{name: "kid and \u212aid (U+212A Kelvin sign) in the header", group: "duplicates", header: bearer(sign(map[string]any{"\u212aid": "no-such-key"}, good)), status: s401, code: malformed},
		{name: "kid and KID in the header", group: "duplicates", header: bearer(sign(map[string]any{"KID": "no-such-key"}, good)), status: s401, code: malformed},

		// Bytes that are not text.
		{name: "non-UTF-8 bytes in oid", group: "bytes", header: bearer(sign(nil, nonUTF8("oid", userOID))), status: s401, code: notFound},
		{name: "non-UTF-8 bytes in tid", group: "bytes", header: bearer(sign(nil, nonUTF8("tid", graphtest.TenantID))), status: s401, code: wrongIss},
		{name: "non-UTF-8 bytes in aud", group: "bytes", header: bearer(sign(nil, nonUTF8("aud", graphtest.APIClientID))), status: s401, code: wrongAud},
		{name: "escaped NUL in tid", group: "bytes", header: bearer(f.mint(graphtest.Token{Claims: map[string]any{"tid": graphtest.TenantID + "\x00"}})), status: s401, code: wrongIss},
		{name: "escaped NUL in oid", group: "bytes", header: bearer(f.mint(graphtest.Token{ObjectID: userOID + "\x00"})), status: s401, code: notFound},
		{name: "raw NUL byte inside a claim", group: "bytes", header: bearer(sign(nil, edit(`"ver":"2.0"`, "\"ver\":\"2.0\x00\""))), status: s401, code: malformed},
		{name: "NUL byte in the header value", group: "bytes", header: []string{"Bearer " + parts[0] + "\x00." + parts[1] + "." + parts[2]}, status: s401, code: malformed},
		{name: "valid token followed by NUL", group: "bytes", header: []string{"Bearer " + valid + "\x00"}, status: s401, code: malformed},
		{name: "non-UTF-8 bytes in the header value", group: "bytes", header: []string{"Bearer \xff\xfe" + valid}, status: s401, code: malformed},
		{name: "valid token followed by a space and junk", group: "bytes", header: []string{"Bearer " + valid + " x"}, status: s401, code: malformed},

		// Size.
		{name: "huge header value (1 MiB)", group: "size", header: []string{"Bearer " + strings.Repeat("a", 1<<20)}, status: s401, code: malformed},
		{name: "huge JOSE header (over the cap)", group: "size", header: bearer(sign(map[string]any{"x-pad": huge}, good)), status: s401, code: malformed},
		{name: "huge payload (over the cap)", group: "size", header: bearer(f.mint(graphtest.Token{Claims: map[string]any{"x-pad": huge}})), status: s401, code: malformed},
		{name: "garbage one byte under the cap", group: "size", header: bearer(underCap(middleware.DefaultMaxTokenBytes - 1)), status: s401, code: malformed},
		{name: "garbage exactly at the cap", group: "size", header: bearer(underCap(middleware.DefaultMaxTokenBytes)), status: s401, code: malformed},
		{name: "aud 5 000 arrays deep", group: "size", header: bearer(f.mint(graphtest.Token{Claims: map[string]any{"aud": json.RawMessage(strings.Repeat("[", 5000) + strings.Repeat("]", 5000))}})), status: s401, code: malformed},

		// Base64 variants of a valid token.
		{name: "standard alphabet (+/)", group: "base64", header: bearer(std), status: s401, code: malformed},
		{name: "'=' padding on each segment that needs it", group: "base64", header: bearer(padded(parts[0]) + "." + padded(parts[1]) + "." + padded(parts[2])), status: s401, code: malformed},
		{name: "'=' padding on the signature", group: "base64", header: bearer(parts[0] + "." + parts[1] + "." + padded(parts[2])), status: s401, code: malformed},
		{name: "signature with non-canonical trailing bits", group: "base64", header: bearer(parts[0] + "." + parts[1] + "." + tweakLastChar(t, parts[2])), status: s401, code: malformed, secrets: []string{valid}},
		{name: "base64 of the whole token", group: "base64", header: bearer(base64.RawURLEncoding.EncodeToString([]byte(valid))), status: s401, code: malformed, secrets: []string{valid}},

		// Where the token is, and how it is announced.
		{name: "two Authorization headers", group: "request", header: []string{"Bearer " + valid, "Bearer " + valid}, status: s400, code: reqBad},
		{name: "Basic then Bearer", group: "request", header: []string{"Basic dXNlcjpwYXNz", "Bearer " + valid}, status: s400, code: reqBad},
		{name: "two tokens in one header", group: "request", header: []string{"Bearer " + valid + ", Bearer " + other}, status: s401, code: malformed},
		{name: "Basic scheme", group: "request", header: []string{"Basic dXNlcjpwYXNz"}, status: s401, code: missing},
		{name: "Basic scheme carrying a valid token", group: "request", header: []string{"Basic " + valid}, status: s401, code: missing},
		{name: "scheme glued to the token", group: "request", header: []string{"Bearer" + valid}, status: s401, code: missing},
		{name: "tab after the scheme", group: "request", header: []string{"Bearer\t" + valid}, status: s401, code: missing},
		{name: "scheme repeated", group: "request", header: []string{"Bearer Bearer " + valid}, status: s401, code: malformed},
		{name: "token only in the query string", group: "request", target: "/api/admin?access_token=" + url.QueryEscape(valid), status: s401, code: missing, secrets: []string{valid}},
		{name: "POST with a form body, no token", group: "request", method: http.MethodPost, body: "access_token=" + valid,
			extra: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, status: s401, code: missing, secrets: []string{valid}},
		{name: "POST with a JSON body, no token", group: "request", method: http.MethodPost, body: `{"role":"Global Administrator"}`,
			extra: map[string]string{"Content-Type": "application/json"}, status: s401, code: missing},
		{name: "token in a cookie", group: "request", extra: map[string]string{"Cookie": "access_token=" + valid}, status: s401, code: missing, secrets: []string{valid}},
		{name: "token in X-Authorization", group: "request", extra: map[string]string{"X-Authorization": "Bearer " + valid}, status: s401, code: missing, secrets: []string{valid}},
		{name: "token in Proxy-Authorization", group: "request", extra: map[string]string{"Proxy-Authorization": "Bearer " + valid}, status: s401, code: missing, secrets: []string{valid}},
	}
}

// hostileOutcome is what one case produced.
type hostileOutcome struct {
	rec     *httptest.ResponseRecorder
	reached bool
}

// runHostile sends every case through Authenticator → Guard → a handler that
// must not run, checking each answer; it returns the outcomes by case.
func runHostile(t *testing.T, f *fixture, glogs *syncio.Buffer, corpus []hostileCase) (tried, allowed int, out map[string]hostileOutcome) {
	t.Helper()
	out = map[string]hostileOutcome{}
	var reached atomic.Bool
	h := hostileChain(t, f, glogs, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Store(true)
		w.WriteHeader(http.StatusOK)
	}))
	seen := map[string]bool{}
	for _, tc := range corpus {
		if seen[tc.name] {
			t.Fatalf("duplicate case name %q", tc.name)
		}
		seen[tc.name] = true
		t.Run(tc.group+"/"+tc.name, func(t *testing.T) {
			reached.Store(false)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, tc.request())
			tried++
			out[tc.name] = hostileOutcome{rec: rec, reached: reached.Load()}
			if reached.Load() || rec.Code < 400 {
				allowed++
				t.Fatalf("ALLOWED: the handler ran (status %d)", rec.Code)
			}
			if rec.Code != http.StatusBadRequest && rec.Code != http.StatusUnauthorized {
				t.Errorf("status %d, want 400 or 401; body %s", rec.Code, rec.Body)
			}
			if rec.Code != tc.status {
				t.Errorf("status %d, want %d", rec.Code, tc.status)
			}
			if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type %q", ct)
			}
			dec := json.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
			dec.DisallowUnknownFields()
			var body errBody
			if err := dec.Decode(&body); err != nil || dec.More() {
				t.Fatalf("body %q is not one JSON error object: %v", rec.Body, err)
			}
			if body.Code == "" {
				t.Fatalf("body %q has no code", rec.Body)
			}
			if body.Code != tc.code {
				t.Errorf("code %q, want %q", body.Code, tc.code)
			}
			if rec.Header().Get("WWW-Authenticate") == "" {
				t.Errorf("no WWW-Authenticate challenge")
			}
		})
	}
	return tried, allowed, out
}

// TestHostileCorpus sends every hostile case through an Authenticator and a
// Guard whose live source grants everything: each must be refused with 400
// or 401 and a well-formed JSON error, and the handler must never run. Both
// log at Debug into captured buffers; the last subtest searches those logs,
// every response body and every response header for each token, each
// Authorization value, and each of their dot-separated segments of 20
// characters or more.
func TestHostileCorpus(t *testing.T) {
	f := newFixture(t, nil)
	glogs := &syncio.Buffer{}
	corpus := hostileCorpus(t, f)
	groups := map[string]int{}
	for _, tc := range corpus {
		groups[tc.group]++
	}
	tried, allowed, out := runHostile(t, f, glogs, corpus)
	t.Logf("hostile corpus: %d cases tried, %d allowed (by group: %v)", tried, allowed, groups)
	if tried < 30 || tried != len(corpus) {
		t.Errorf("tried %d of %d cases, want all and at least 30", tried, len(corpus))
	}
	if allowed != 0 {
		t.Errorf("hostile corpus: %d of %d cases reached the handler, want 0", allowed, tried)
	}
	t.Run("no token in logs, bodies or headers", func(t *testing.T) {
		logs := f.logs.String() + glogs.String()
		if !strings.Contains(logs, "pimguard: request rejected") || !strings.Contains(logs, middleware.CodeTokenMissing) {
			t.Fatalf("the Debug log capture looks empty: %.300s", logs)
		}
		searched := 0
		for _, tc := range corpus {
			var resp strings.Builder
			if o, ok := out[tc.name]; ok {
				resp.Write(o.rec.Body.Bytes())
				for k, vs := range o.rec.Header() {
					resp.WriteString(k + ": " + strings.Join(vs, ", ") + "\n")
				}
			}
			for _, needle := range tc.needles() {
				searched++
				if strings.Contains(logs, needle) {
					t.Errorf("%s: %.40q… appears in the logs", tc.name, needle)
				}
				if strings.Contains(resp.String(), needle) {
					t.Errorf("%s: %.40q… appears in the response", tc.name, needle)
				}
			}
		}
		t.Logf("searched %d KiB of logs and %d responses for %d token strings and segments", len(logs)>>10, len(out), searched)
	})
}

// needles are the strings of c that must never be logged or echoed: its
// Authorization values, the credentials in them, its other secrets, and
// their dot-separated segments, when 20 characters or longer.
func (c *hostileCase) needles() []string {
	var raw []string
	for _, h := range c.header {
		raw = append(raw, h)
		if _, cred, ok := strings.Cut(h, " "); ok {
			raw = append(raw, strings.TrimLeft(cred, " "))
		}
	}
	raw = append(raw, c.secrets...)
	var n []string
	for _, s := range raw {
		if len(s) >= 20 {
			n = append(n, s)
		}
		for _, seg := range strings.Split(s, ".") {
			if len(seg) >= 20 && seg != s {
				n = append(n, seg)
			}
		}
	}
	return n
}

// TestHostileSkewBoundaryInside is the other half of the corpus's time cases:
// tokens just inside the clock skew are accepted through the same chain, and
// so is a plain valid token (the control that shows the Guard grants).
func TestHostileSkewBoundaryInside(t *testing.T) {
	f := newFixture(t, nil)
	now := f.clock.Now()
	skew := middleware.DefaultClockSkew
	var served atomic.Int64
	h := hostileChain(t, f, &syncio.Buffer{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	tests := []struct {
		name string
		tok  graphtest.Token
	}{
		{"control: a valid token", graphtest.Token{}},
		{"exp exactly skew ago", graphtest.Token{IssuedAt: now.Add(-time.Hour - skew), Lifetime: time.Hour}},
		{"exp 1 s inside the skew", graphtest.Token{IssuedAt: now.Add(-time.Hour - skew + time.Second), Lifetime: time.Hour}},
		{"nbf exactly skew ahead", graphtest.Token{Claims: map[string]any{"nbf": now.Add(skew).Unix()}}},
		{"nbf 1 ms inside the skew (fractional)", graphtest.Token{Claims: map[string]any{"nbf": float64(now.Add(skew).UnixMilli()-1) / 1000}}},
		{"iat exactly skew ahead", graphtest.Token{IssuedAt: now.Add(skew), Claims: map[string]any{"nbf": now.Unix()}}},
		{"iat 1 s inside the skew", graphtest.Token{IssuedAt: now.Add(skew - time.Second), Claims: map[string]any{"nbf": now.Unix()}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := served.Load()
			req := httptest.NewRequest(http.MethodGet, "/api/admin", nil)
			req.Header.Set("Authorization", "Bearer "+f.mint(tt.tok))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK || served.Load() != before+1 {
				t.Fatalf("status %d, body %s; want the handler to serve it", rec.Code, rec.Body)
			}
		})
	}
}

// TestVerifyAcceptsOnlyTheTokenAsIssued calls Verify directly (the path of
// callers that get tokens from elsewhere than an Authorization header) with
// re-encodings of a valid token. Each decodes to the same signed bytes but is
// not the string the tenant issued; a verifier that accepts them gives one
// token unboundedly many spellings (distinct cache keys, distinct hashes for
// any deny list keyed on the token).
func TestVerifyAcceptsOnlyTheTokenAsIssued(t *testing.T) {
	f := newFixture(t, nil)
	valid := f.mint(graphtest.Token{})
	parts := strings.Split(valid, ".")
	if _, err := f.auth.Verify(context.Background(), valid); err != nil {
		t.Fatalf("the token as issued: %v", err)
	}
	jsonJWS := func(flat bool) string {
		sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
		if flat {
			return fmt.Sprintf(`{"protected":%q,"payload":%q,"signature":%q}`, parts[0], parts[1], base64.RawURLEncoding.EncodeToString(sig))
		}
		return fmt.Sprintf(`{"payload":%q,"signatures":[{"protected":%q,"signature":%q}]}`, parts[1], parts[0], parts[2])
	}
	tests := []struct{ name, raw string }{
		{"signature with non-canonical trailing bits", parts[0] + "." + parts[1] + "." + tweakLastChar(t, parts[2])},
		{"newline inside the payload", parts[0] + "." + parts[1][:10] + "\n" + parts[1][10:] + "." + parts[2]},
		{"spaces around the dots", parts[0] + " . " + parts[1] + " . " + parts[2]},
		{"leading and trailing whitespace", " \t" + valid + "\r\n"},
		{"JWS JSON serialization (flattened)", jsonJWS(true)},
		{"JWS JSON serialization (general)", jsonJWS(false)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.raw == valid {
				t.Fatal("variant equals the token")
			}
			p, err := f.auth.Verify(context.Background(), tt.raw)
			if err == nil {
				t.Errorf("Verify accepted a re-encoding of the token (principal %s/%s)", p.TenantID, p.ObjectID)
			}
		})
	}
}

// kidSprayTokens signs n copies of payload with stranger, each under a
// different kid drawn from a fixed seed: random hex, paths, URLs, long ones.
func kidSprayTokens(t *testing.T, stranger *rsa.PrivateKey, payload []byte, seed uint64, n int) []string {
	t.Helper()
	rng := mrand.New(mrand.NewPCG(seed, 0x9e3779b97f4a7c15))
	toks := make([]string, n)
	for i := range toks {
		var kid string
		switch i % 4 {
		case 0:
			kid = fmt.Sprintf("%016x%08x", rng.Uint64(), rng.Uint32())
		case 1:
			kid = fmt.Sprintf("../../keys/%d", rng.Uint32())
		case 2:
			kid = fmt.Sprintf("https://evil.example/%d/jwks.json", rng.Uint32())
		default:
			kid = strings.Repeat(fmt.Sprintf("%x", rng.Uint32()), 1+rng.IntN(64))
		}
		toks[i] = signWith(t, jose.RS256, stranger, kid, payload)
	}
	return toks
}

// TestKidSprayConcurrentIsBounded is TestKidSprayIsBounded from 8 goroutines
// at once: 800 tokens with random kids inside one cooldown cost at most one
// JWKS fetch, and 200 more after the cooldown at most one more, whether the
// JWKS answers or is down.
func TestKidSprayConcurrentIsBounded(t *testing.T) {
	const workers, perWorker, perWorkerAfter = 8, 100, 25
	// The stranger's key size is irrelevant (its kid is never found, so its
	// signature is never checked); 1024 bits keeps 2 000 signatures cheap
	// under -race.
	stranger, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	// v1 claims: their issuer (https://sts.windows.net/{tenant}/) does not
	// name the fake tenant's port, so one set of tokens serves every fixture.
	payload := claimsJSON(t, newFixture(t, nil), graphtest.Token{Version: 1})
	phase1 := kidSprayTokens(t, stranger, payload, 1, workers*perWorker)
	phase2 := kidSprayTokens(t, stranger, payload, 2, workers*perWorkerAfter)
	tests := []struct {
		name     string
		jwksDown bool
		codes    map[int]string // accepted answers: status → code
	}{
		{"JWKS up", false, map[int]string{401: middleware.CodeTokenBadSignature}},
		// The failed fetch answers 503; within its cooldown the next ones
		// are not retried and the unknown kid is refused outright.
		{"JWKS down", true, map[int]string{401: middleware.CodeTokenBadSignature, 503: middleware.CodeKeysUnavailable}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			if tt.jwksDown {
				defer f.tenant.InjectFault(func(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, "/keys") }, http.StatusServiceUnavailable)()
			}
			h := f.auth.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				t.Error("a token with a random kid reached the handler")
			}))
			spray := func(toks []string) {
				per := len(toks) / workers
				var wg sync.WaitGroup
				for w := range workers {
					wg.Go(func() {
						for _, tok := range toks[w*per : (w+1)*per] {
							req := httptest.NewRequest(http.MethodGet, "/api/admin", nil)
							req.Header.Set("Authorization", "Bearer "+tok)
							rec := httptest.NewRecorder()
							h.ServeHTTP(rec, req)
							if code, ok := tt.codes[rec.Code]; !ok || !strings.Contains(rec.Body.String(), `"code":"`+code+`"`) {
								t.Errorf("random kid: %d %s; want one of %v", rec.Code, rec.Body, tt.codes)
								return
							}
						}
					})
				}
				wg.Wait()
			}
			before := jwksFetches(f.tenant)
			spray(phase1)
			first := jwksFetches(f.tenant) - before
			f.clock.Advance(middleware.DefaultJWKSRefreshCooldown + time.Second)
			spray(phase2)
			second := jwksFetches(f.tenant) - before - first
			t.Logf("%d + %d requests with random kids from %d goroutines: %d JWKS fetch(es) in the first cooldown, %d in the next",
				workers*perWorker, workers*perWorkerAfter, workers, first, second)
			if first > 1 {
				t.Errorf("%d random kids within one cooldown caused %d JWKS fetches, want at most 1", workers*perWorker, first)
			}
			if second > 1 {
				t.Errorf("%d random kids in the next cooldown caused %d JWKS fetches, want at most 1", workers*perWorkerAfter, second)
			}
		})
	}
}

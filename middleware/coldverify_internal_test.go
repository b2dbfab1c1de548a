package middleware

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/pimguard/pimguard/graphcheck/graphtest"
)

// checkUniqueKeys refuses a document that is not a JSON object, or whose
// object has a repeated top-level member: the members iteration with nothing
// read (TestCheckUniqueKeysFolds, TestMembersValidatesLikeEncodingJSON).
func checkUniqueKeys(obj []byte) error {
	m := members{obj: obj}
	for m.next() {
	}
	return m.err
}

// signedJWS signs a small payload with go-jose's signer, an implementation
// independent of verifySignature, and splits the token with splitCompact.
func signedJWS(t *testing.T, alg jose.SignatureAlgorithm, key any) compactJWS {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, nil)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := s.Sign([]byte(`{"iss":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	jws, err := splitCompact(raw)
	if err != nil {
		t.Fatal(err)
	}
	return jws
}

// TestMembersValidatesLikeEncodingJSON: the one-pass scan accepts exactly
// the documents json.Valid accepts, value by value and at the depth limit.
func TestMembersValidatesLikeEncodingJSON(t *testing.T) {
	values := []string{
		`0`, `-0`, `01`, `-01`, `1.`, `.5`, `1.5`, `1e`, `1e+`, `1E5`, `1e-05`, `-`, `+1`, `1.5e-3`, `00`, `0x10`, `1_0`,
		`Infinity`, `NaN`, `true`, `tru`, `truex`, `false`, `fals`, `null`, `nul`, `nulll`, `True`, `undefined`,
		`""`, `"a"`, `"\u00e9"`, `"\u12"`, `"\u12G4"`, `"\x41"`, `"\/"`, `"\'"`, "\"a\tb\"", "\"a\x7fb\"", "\"a\x00\"",
		"\"\xff\xfe\"", `"\"`, `"\\"`, `"abc`, `"\uD800"`, `"\\\""`,
		`[]`, `[ ]`, `[1,]`, `[,1]`, `[1 2]`, `[[],[[]]]`, `[1,"a",{"b":[null]}]`, `[`, `]`, `[}`,
		`{}`, `{ }`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{1:2}`, `{"a":1 "b":2}`, `{"a":{"b":{"c":[]}}}`, `{"a":1]`, `{"a" : 1 , "b" : [ ] }`,
		" \t\r\n1", "1 \t\r\n", "\f1", "\u00a01",
	}
	for _, v := range values {
		for _, doc := range []string{`{"v":` + v + `}`, v} {
			got := checkUniqueKeys([]byte(doc))
			valid := json.Valid([]byte(doc))
			isObject := strings.HasPrefix(strings.TrimLeft(doc, " \t\r\n"), "{")
			if want := valid && isObject; (got == nil) != want {
				t.Errorf("%q: members says %v; json.Valid %v, an object %v", doc, got, valid, isObject)
			}
		}
	}
	for _, depth := range []int{maxJSONDepth - 2, maxJSONDepth - 1, maxJSONDepth} {
		for _, open := range []string{"[", `{"a":`} {
			closing := map[string]string{"[": "]", `{"a":`: "}"}[open]
			doc := `{"v":` + strings.Repeat(open, depth) + strings.Repeat(closing, depth) + `}`
			got := checkUniqueKeys([]byte(doc))
			if want := json.Valid([]byte(doc)); (got == nil) != want {
				t.Errorf("%d levels of %s inside the object: members says %v, json.Valid %v", depth, open, got, want)
			}
		}
	}
}

// TestDecodeHeader: the JOSE header is refused, and classified, as go-jose
// and go-oidc refused it, and the parameters that would bring a key or a
// processing rule of their own are refused outright.
func TestDecodeHeader(t *testing.T) {
	rs256 := []jose.SignatureAlgorithm{jose.RS256}
	tests := []struct {
		name   string
		header string
		algs   []jose.SignatureAlgorithm
		want   error // nil: accepted
		kid    string
	}{
		{"Entra's header", `{"typ":"JWT","alg":"RS256","x5t":"nOo3ZDrODXEK1jKWhXslHR_KXEg","kid":"nOo3ZDrODXEK1jKWhXslHR_KXEg"}`, rs256, nil, "nOo3ZDrODXEK1jKWhXslHR_KXEg"},
		{"escapes", `{"alg":"RS\u0032\u0035\u0036","kid":"k\u0031"}`, rs256, nil, "k1"},
		{"a string nonce (Graph's tokens have one)", `{"alg":"RS256","kid":"k1","nonce":"abc"}`, rs256, nil, "k1"},
		{"ES256 when allowed", `{"alg":"ES256","kid":"k1"}`, []jose.SignatureAlgorithm{jose.RS256, jose.ES256}, nil, "k1"},
		{"alg none", `{"alg":"none","kid":"k1"}`, rs256, ErrTokenBadSignature, ""},
		{"alg HS256", `{"alg":"HS256","kid":"k1"}`, rs256, ErrTokenBadSignature, ""},
		{"alg ES256 not allowed", `{"alg":"ES256","kid":"k1"}`, rs256, ErrTokenBadSignature, ""},
		{"alg in lower case", `{"alg":"rs256","kid":"k1"}`, rs256, ErrTokenBadSignature, ""},
		{"ALG is not alg", `{"ALG":"RS256","kid":"k1"}`, rs256, ErrTokenBadSignature, ""},
		{"alg a number", `{"alg":256,"kid":"k1"}`, rs256, ErrTokenBadSignature, ""},
		{"alg null", `{"alg":null,"kid":"k1"}`, rs256, ErrTokenBadSignature, ""},
		{"no alg", `{"kid":"k1"}`, rs256, ErrTokenBadSignature, ""},
		{"alg refused before a bad kid", `{"alg":"HS256","kid":7}`, rs256, ErrTokenBadSignature, ""},
		{"no kid", `{"alg":"RS256"}`, rs256, ErrTokenMalformed, ""},
		{"kid empty", `{"alg":"RS256","kid":""}`, rs256, ErrTokenMalformed, ""},
		{"kid null", `{"alg":"RS256","kid":null}`, rs256, ErrTokenMalformed, ""},
		{"kid a number", `{"alg":"RS256","kid":7}`, rs256, ErrTokenMalformed, ""},
		{"nonce a number", `{"alg":"RS256","kid":"k1","nonce":5}`, rs256, ErrTokenMalformed, ""},
		{"crit", `{"alg":"RS256","kid":"k1","crit":["exp"],"exp":1}`, rs256, ErrTokenBadSignature, ""},
		{"b64", `{"alg":"RS256","kid":"k1","b64":false}`, rs256, ErrTokenBadSignature, ""},
		{"jku", `{"alg":"RS256","kid":"k1","jku":"https://evil.example/keys"}`, rs256, ErrTokenBadSignature, ""},
		{"jwk", `{"alg":"RS256","kid":"k1","jwk":{"kty":"oct","k":"c2VjcmV0"}}`, rs256, ErrTokenBadSignature, ""},
		{"x5u", `{"alg":"RS256","kid":"k1","x5u":"https://evil.example/cert"}`, rs256, ErrTokenBadSignature, ""},
		{"x5c", `{"alg":"RS256","kid":"k1","x5c":["MIIB"]}`, rs256, ErrTokenBadSignature, ""},
		{"jwk without kid", `{"alg":"RS256","jwk":{}}`, rs256, ErrTokenMalformed, ""},
		{"two kids", `{"alg":"RS256","kid":"a","kid":"b"}`, rs256, ErrTokenMalformed, ""},
		{"kid and KID", `{"alg":"RS256","kid":"a","KID":"b"}`, rs256, ErrTokenMalformed, ""},
		{"kid and Kelvin-sign kid, escaped", `{"alg":"RS256","kid":"a","\u212aid":"b"}`, rs256, ErrTokenMalformed, ""},
		{"two algs", `{"alg":"none","alg":"RS256","kid":"a"}`, rs256, ErrTokenMalformed, ""},
		{"an array", `[{"alg":"RS256","kid":"a"}]`, rs256, ErrTokenMalformed, ""},
		{"null", `null`, rs256, ErrTokenMalformed, ""},
		{"trailing data", `{"alg":"RS256","kid":"a"}x`, rs256, ErrTokenMalformed, ""},
		{"trailing comma", `{"alg":"RS256","kid":"a",}`, rs256, ErrTokenMalformed, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := decodeHeader([]byte(tt.header), tt.algs)
			if tt.want == nil {
				if err != nil || h.kid != tt.kid {
					t.Fatalf("decodeHeader = %+v, %v; want kid %q", h, err, tt.kid)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("decodeHeader = %+v, %v; want %v", h, err, tt.want)
			}
		})
	}
}

// TestVerifySignature checks each algorithm against signatures made by
// go-jose's signer, an independent implementation, and the refusals: another
// key type, another curve, another hash, a resized signature, a PSS salt of
// another length than the hash, algorithms outside the list.
func TestVerifySignature(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ec := map[string]*ecdsa.PrivateKey{}
	for name, curve := range map[string]elliptic.Curve{"P-256": elliptic.P256(), "P-384": elliptic.P384(), "P-521": elliptic.P521()} {
		if ec[name], err = ecdsa.GenerateKey(curve, rand.Reader); err != nil {
			t.Fatal(err)
		}
	}
	edPub, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sign := func(alg jose.SignatureAlgorithm, key any) compactJWS { return signedJWS(t, alg, key) }
	good := []struct {
		alg      jose.SignatureAlgorithm
		priv     any
		pub      any
		wrongPub any // a key of another type or curve
	}{
		{jose.RS256, rsaKey, &rsaKey.PublicKey, &ec["P-256"].PublicKey},
		{jose.RS384, rsaKey, &rsaKey.PublicKey, edPub},
		{jose.RS512, rsaKey, &rsaKey.PublicKey, &ec["P-521"].PublicKey},
		{jose.PS256, rsaKey, &rsaKey.PublicKey, &ec["P-256"].PublicKey},
		{jose.PS384, rsaKey, &rsaKey.PublicKey, edPub},
		{jose.PS512, rsaKey, &rsaKey.PublicKey, &ec["P-521"].PublicKey},
		{jose.ES256, ec["P-256"], &ec["P-256"].PublicKey, &ec["P-384"].PublicKey},
		{jose.ES384, ec["P-384"], &ec["P-384"].PublicKey, &ec["P-521"].PublicKey},
		{jose.ES512, ec["P-521"], &ec["P-521"].PublicKey, &ec["P-256"].PublicKey},
		{jose.EdDSA, edPriv, edPub, &rsaKey.PublicKey},
	}
	for _, tt := range good {
		t.Run(string(tt.alg), func(t *testing.T) {
			jws := sign(tt.alg, tt.priv)
			in, alg := []byte(jws.signingInput), string(tt.alg)
			if err := verifySignature(alg, tt.pub, in, jws.signature); err != nil {
				t.Fatalf("a valid signature: %v", err)
			}
			tampered := append([]byte{}, in...)
			tampered[len(tampered)-1] ^= 1
			if verifySignature(alg, tt.pub, tampered, jws.signature) == nil {
				t.Error("verified over other bytes")
			}
			if verifySignature(alg, tt.wrongPub, in, jws.signature) == nil {
				t.Errorf("verified with a %T", tt.wrongPub)
			}
			for _, sig := range [][]byte{jws.signature[:len(jws.signature)-1], append(append([]byte{}, jws.signature...), 0)} {
				if verifySignature(alg, tt.pub, in, sig) == nil {
					t.Errorf("verified a %d-byte signature", len(sig))
				}
			}
		})
	}
	rs := sign(jose.RS256, rsaKey)
	in := []byte(rs.signingInput)
	digest := sha256.Sum256(in)
	maxSalt, err := rsa.SignPSS(rand.Reader, rsaKey, crypto.SHA256, digest[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto})
	if err != nil {
		t.Fatal(err)
	}
	refused := []struct {
		name string
		alg  string
		key  any
		sig  []byte
	}{
		{"RS256 signature read as PS256", "PS256", &rsaKey.PublicKey, rs.signature},
		{"RS256 signature read as RS384", "RS384", &rsaKey.PublicKey, rs.signature},
		{"PS256 with the longest salt (RFC 7518 wants the hash's length)", "PS256", &rsaKey.PublicKey, maxSalt},
		{"HS256 keyed with bytes", "HS256", []byte("secret"), rs.signature},
		{"none", "none", &rsaKey.PublicKey, nil},
		{"no algorithm", "", &rsaKey.PublicKey, rs.signature},
		{"RS256 in lower case", "rs256", &rsaKey.PublicKey, rs.signature},
		{"a nil RSA key", "RS256", (*rsa.PublicKey)(nil), rs.signature},
		{"a nil EC key", "ES256", (*ecdsa.PublicKey)(nil), rs.signature},
		{"a short Ed25519 key", "EdDSA", edPub[:31], make([]byte, ed25519.SignatureSize)},
		{"a JSONWebKey, not its key", "RS256", jose.JSONWebKey{Key: &rsaKey.PublicKey}, rs.signature},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			if err := verifySignature(tt.alg, tt.key, in, tt.sig); err == nil {
				t.Fatal("verified")
			}
		})
	}
}

// TestFirstSightAllocations: a token the Authenticator has not seen costs a
// bounded number of allocations, the RSA verification's own included. Before
// the token was parsed once, with the signature checked by the standard
// library on what the parser split, it cost about 550 (go-oidc's Verify and
// go-jose's ParseSigned parsing it again, the claims decoded twice, the
// duplicate check through json.Decoder.Token).
func TestFirstSightAllocations(t *testing.T) {
	tenant, a := newInternalAuthenticator(t)
	a.cache = nil // every Verify is a first sight
	tok := tenant.MustMint(graphtest.Token{
		ObjectID: "4d5e6f70-8192-4a3b-8c4d-5e6f70819203", Username: "jane@contoso.example", Name: "Jane Doe",
		Wids: []string{"729827e3-9c14-49f7-bb1b-9608f156bbb8", "b79fbf4d-3ef9-4689-8143-76b194e85509"},
	})
	if _, err := a.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	const budget = 60
	n := testing.AllocsPerRun(20, func() { _, _ = a.Verify(context.Background(), tok) })
	t.Logf("a first-seen token costs %v allocations", n)
	if n > budget {
		t.Errorf("a first-seen token costs %v allocations, want at most %d", n, budget)
	}
}

// TestKeySetVerifyChecksTheKey: the key the kid names must be published for
// signatures and for the token's algorithm: an RSA key marked for
// encryption, or for RS512, does not verify an RS256 token it signed.
func TestKeySetVerifyChecksTheKey(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	jws := signedJWS(t, jose.RS256, key)
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		use, alg string
		ok       bool
	}{
		{"use sig, alg RS256", "sig", "RS256", true},
		{"neither use nor alg", "", "", true},
		{"use enc", "enc", "", false},
		{"alg RS512", "sig", "RS512", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ks := &keySet{now: func() time.Time { return now }, maxAge: time.Hour}
			ks.snap.Store(&keySnapshot{fetched: now, keys: map[string]jose.JSONWebKey{
				"k1": {Key: &key.PublicKey, KeyID: "k1", Use: tt.use, Algorithm: tt.alg},
			}})
			err := ks.verify(context.Background(), jwsHeader{alg: "RS256", kid: "k1"}, jws.signingInput, jws.signature)
			if tt.ok != (err == nil) || err != nil && !errors.Is(err, ErrTokenBadSignature) {
				t.Fatalf("verify = %v; want accepted: %v, else ErrTokenBadSignature", err, tt.ok)
			}
		})
	}
}

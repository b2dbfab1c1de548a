package middleware_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/middleware"
)

// signedPayload signs a hand-written claims payload with the tenant's
// current key, so that member spelling, order and whitespace are exactly
// those given.
func signedPayload(t *testing.T, f *fixture, payload string) string {
	t.Helper()
	tok, err := f.tenant.Sign(nil, []byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// basePayload is a valid v2 user token's claims without the closing brace,
// spelled by hand, for claims to be appended.
func basePayload(t *testing.T, f *fixture) string {
	t.Helper()
	b := claimsJSON(t, f, graphtest.Token{})
	return strings.TrimSuffix(strings.TrimSpace(string(b)), "}")
}

func TestPrincipalClaim(t *testing.T) {
	f := newFixture(t, nil)
	base := basePayload(t, f)
	tests := []struct {
		name    string
		payload string // appended to base
		claim   string
		want    string // raw JSON; "" when absent
	}{
		{"array", `,"amr":["pwd","mfa"]}`, "amr", `["pwd","mfa"]`},
		{"acrs", `,"acrs":["c1","c25"]}`, "acrs", `["c1","c25"]`},
		{"string", `,"xms_cc":"cp1"}`, "xms_cc", `"cp1"`},
		{"object", `,"xms_st":{"sub":"x","n":[1,{"a":null}]}}`, "xms_st", `{"sub":"x","n":[1,{"a":null}]}`},
		{"number", `,"xms_tdbr":12.5e1}`, "xms_tdbr", `12.5e1`},
		{"null", `,"xms_pl":null}`, "xms_pl", `null`},
		{"whitespace around", " ,\n \"amr\" :\t[ \"pwd\" ] \n}", "amr", `[ "pwd" ]`},
		{"a claim the Principal copies", `}`, "ver", `"2.0"`},
		{"absent", `}`, "amr", ""},
		{"name asked in upper case", `,"amr":["pwd"]}`, "AMR", `["pwd"]`},
		{"name sent in upper case", `,"AMR":["pwd"]}`, "amr", `["pwd"]`},
		{"name sent escaped", `,"\u0061mr":["pwd"]}`, "amr", `["pwd"]`},
		{"Kelvin sign folds to k", `,"xms_\u212Aey":"v"}`, "xms_key", `"v"`},
		{"a prefix is not the name", `,"amrx":["pwd"]}`, "amr", ""},
		{"a value holding the name", `,"x":"amr","y":{"amr":1}}`, "amr", ""},
		{"last member", `,"a":1,"amr":[]}`, "amr", `[]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := signedPayload(t, f, base+tt.payload)
			for _, sight := range []string{"first sight", "from the cache"} {
				p, err := f.auth.Verify(context.Background(), tok)
				if err != nil {
					t.Fatalf("%s: %v", sight, err)
				}
				raw, ok := p.Claim(tt.claim)
				if ok != (tt.want != "") || string(raw) != tt.want {
					t.Fatalf("%s: Claim(%q) = %q, %v; want %q", sight, tt.claim, raw, ok, tt.want)
				}
			}
		})
	}
}

// TestClaimRulesHold: the token-level rules the decoder enforces hold for
// the claims Claim exposes: two members whose names fold alike are
// refused, whichever Claim would have returned.
func TestClaimRulesHold(t *testing.T) {
	f := newFixture(t, nil)
	base := basePayload(t, f)
	for _, extra := range []string{`,"amr":["pwd"],"amr":["mfa"]}`, `,"amr":["pwd"],"AMR":["mfa"]}`, `,"xms_key":1,"xms_\u212Aey":2}`} {
		if p, err := f.auth.Verify(context.Background(), signedPayload(t, f, base+extra)); !errors.Is(err, middleware.ErrTokenMalformed) {
			t.Errorf("%s: Verify = %v, %v; want ErrTokenMalformed (duplicate member)", extra, p, err)
		}
	}
}

func TestClaimAs(t *testing.T) {
	f := newFixture(t, nil)
	tok := f.mint(graphtest.Token{Claims: map[string]any{"amr": []string{"pwd", "mfa"}, "xms_cc": []string{"cp1"}, "xms_ssm": "1", "acrs": []string{"c1"}}})
	p, err := f.auth.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	amr, err := middleware.ClaimAs[[]string](p, "amr")
	if err != nil || strings.Join(amr, ",") != "pwd,mfa" {
		t.Errorf("ClaimAs[[]string](amr) = %v, %v", amr, err)
	}
	if ssm, err := middleware.ClaimAs[string](p, "xms_ssm"); err != nil || ssm != "1" {
		t.Errorf("ClaimAs[string](xms_ssm) = %q, %v", ssm, err)
	}
	if _, err := middleware.ClaimAs[string](p, "xms_nope"); !errors.Is(err, middleware.ErrClaimNotFound) {
		t.Errorf("absent claim: %v, want ErrClaimNotFound", err)
	}
	if n, err := middleware.ClaimAs[int](p, "amr"); err == nil || errors.Is(err, middleware.ErrClaimNotFound) || n != 0 || strings.Contains(err.Error(), "pwd") {
		t.Errorf("claim of another type: %v, %v; want a decoding error naming the claim, not its value", n, err)
	}
	if raw, err := middleware.ClaimAs[json.RawMessage](p, "xms_cc"); err != nil || string(raw) != `["cp1"]` {
		t.Errorf("ClaimAs[json.RawMessage](xms_cc) = %s, %v", raw, err)
	}
	if got := p.AuthContexts; len(got) != 1 || got[0] != "c1" {
		t.Errorf("AuthContexts = %v", got)
	}

	// A Principal that no Authenticator built has no claims.
	for _, q := range []*middleware.Principal{{ObjectID: userOID}, nil} {
		if raw, ok := q.Claim("amr"); ok || raw != nil {
			t.Errorf("%v: Claim = %q, %v", q, raw, ok)
		}
		if _, err := middleware.ClaimAs[string](q, "amr"); !errors.Is(err, middleware.ErrClaimNotFound) {
			t.Errorf("%v: ClaimAs: %v", q, err)
		}
	}
}

// TestClaimAllocatesNothing: reading a claim by its lower-case name
// allocates nothing: no second parse.
func TestClaimAllocatesNothing(t *testing.T) {
	f := newFixture(t, nil)
	p, err := f.auth.Verify(context.Background(), f.mint(graphtest.Token{Claims: map[string]any{"amr": []string{"pwd", "mfa"}}}))
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() {
		if _, ok := p.Claim("amr"); !ok {
			t.Fatal("amr absent")
		}
	}); n != 0 {
		t.Errorf("Claim allocates %v times, want 0", n)
	}
}

// TestAcrsMustBeStrings: acrs is read like roles and wids: an array of
// strings, anything else refuses the token (a requirement must never be
// decided on a claim the decoder could not read).
func TestAcrsMustBeStrings(t *testing.T) {
	f := newFixture(t, nil)
	base := basePayload(t, f)
	for _, acrs := range []string{`"c1"`, `[1]`, `{"c1":true}`} {
		if _, err := f.auth.Verify(context.Background(), signedPayload(t, f, base+`,"acrs":`+acrs+`}`)); !errors.Is(err, middleware.ErrTokenMalformed) {
			t.Errorf("acrs %s: %v; want ErrTokenMalformed", acrs, err)
		}
	}
	p, err := f.auth.Verify(context.Background(), signedPayload(t, f, base+`,"ACRS":["c2"]}`))
	if err != nil || len(p.AuthContexts) != 1 || p.AuthContexts[0] != "c2" {
		t.Errorf("ACRS: %v, %v", p, err)
	}
}

// BenchmarkPrincipalClaim reads one claim of a typical token (the last of
// its members, the worst case) through Claim and ClaimAs.
//
//	go test -run XXX -bench PrincipalClaim -benchmem ./middleware/
func BenchmarkPrincipalClaim(b *testing.B) {
	e := newBenchEnv(b, 0)
	defer e.tenant.Close()
	p, err := e.auth.Verify(context.Background(), e.tenant.MustMint(graphtest.Token{
		ObjectID: userOID, Username: "jane@contoso.example", Name: "Jane Doe",
		Claims: map[string]any{"xms_tdbr": "EU", "amr": []string{"pwd", "mfa"}},
	}))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("Claim", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := p.Claim("xms_tdbr"); !ok {
				b.Fatal("absent")
			}
		}
	})
	b.Run("ClaimAs-strings", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := middleware.ClaimAs[[]string](p, "amr"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

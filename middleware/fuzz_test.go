package middleware_test

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/middleware"
)

// Fuzz targets for bearer extraction and token verification. Seed corpora
// live in testdata/fuzz/<FuzzName>/; plain `go test` runs them. Fuzz one
// target at a time:
//
//	go test -run XXX -fuzz '^FuzzBearerToken$' -fuzztime 10s ./middleware/
//	go test -run XXX -fuzz '^FuzzVerify$' -fuzztime 10s ./middleware/
//	go test -run XXX -fuzz '^FuzzClaimsDecoding$' -fuzztime 10s ./middleware/

// isB64Token reports whether s is an RFC 6750 b64token.
func isB64Token(s string) bool {
	i := 0
	for i < len(s) && (s[i] >= 'a' && s[i] <= 'z' || s[i] >= 'A' && s[i] <= 'Z' || s[i] >= '0' && s[i] <= '9' || strings.IndexByte("-._~+/", s[i]) >= 0) {
		i++
	}
	return i > 0 && strings.Trim(s[i:], "=") == ""
}

// FuzzBearerToken: for any Authorization header values and cap, BearerToken
// never panics, fails with one of its three sentinels, and when it returns a
// token, the token is non-empty, within the cap, a b64token, and the tail of
// the single header, after "Bearer" (any case) and spaces.
func FuzzBearerToken(f *testing.F) {
	f.Add("Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln", "", uint8(1), uint16(0))
	f.Add("bEaReR    abc~+/==", "", uint8(1), uint16(0))
	f.Add("Bearer abc", "Bearer abc", uint8(2), uint16(0))
	f.Add("Basic dXNlcjpwYXNz", "", uint8(1), uint16(0))
	f.Add("Bearer "+strings.Repeat("a", 40), "", uint8(1), uint16(39))
	f.Fuzz(func(t *testing.T, v1, v2 string, n uint8, maxBytes uint16) {
		var values []string
		switch n % 3 {
		case 1:
			values = []string{v1}
		case 2:
			values = []string{v1, v2}
		}
		limit := int(maxBytes)
		if limit == 0 {
			limit = middleware.DefaultMaxTokenBytes
		}
		r := &http.Request{Header: http.Header{}}
		if values != nil {
			r.Header["Authorization"] = values
		}
		tok, err := middleware.BearerToken(r, limit)
		if err != nil {
			if tok != "" {
				t.Errorf("token %q returned with error %v", tok, err)
			}
			switch {
			case len(values) == 0 && !errors.Is(err, middleware.ErrTokenMissing):
				t.Errorf("no header: err %v, want ErrTokenMissing", err)
			case len(values) == 2 && !errors.Is(err, middleware.ErrRequestMalformed):
				t.Errorf("two headers: err %v, want ErrRequestMalformed", err)
			case !errors.Is(err, middleware.ErrTokenMissing) && !errors.Is(err, middleware.ErrRequestMalformed) && !errors.Is(err, middleware.ErrTokenMalformed):
				t.Errorf("err %v wraps none of the bearer sentinels", err)
			}
			if s := middleware.RejectionFor(err, "").Status; s != http.StatusBadRequest && s != http.StatusUnauthorized {
				t.Errorf("err %v answers %d", err, s)
			}
			return
		}
		if len(values) != 1 {
			t.Fatalf("token %q extracted from %d headers", tok, len(values))
		}
		h := values[0]
		switch {
		case tok == "":
			t.Error("empty token without an error")
		case len(tok) > limit:
			t.Errorf("token of %d bytes over the %d-byte cap", len(tok), limit)
		case !strings.Contains(h, tok) || !strings.HasSuffix(h, tok):
			t.Errorf("token %q is not the tail of header %q", tok, h)
		case !isB64Token(tok):
			t.Errorf("token %q is not a b64token", tok)
		case len(h) < 7 || !strings.EqualFold(h[:6], "bearer") || strings.Trim(h[6:len(h)-len(tok)], " ") != "" || h[6] != ' ':
			t.Errorf("token %q from a header %q that is not Bearer, spaces, token", tok, h)
		}
	})
}

// fuzzTarget is a fake tenant and an Authenticator for it, built with a
// testing.TB (newFixture wants a *testing.T): the setup of FuzzVerify.
type fuzzTarget struct {
	tenant *graphtest.Server
	auth   *middleware.Authenticator
	minted []string
	issued map[string]bool
}

func newFuzzTarget(tb testing.TB) *fuzzTarget {
	tb.Helper()
	clock := graphtest.NewClock(time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC))
	tenant := graphtest.NewServer(graphtest.Options{Clock: clock, Tenants: []string{graphtest.TenantID, otherTenant}})
	tb.Cleanup(tenant.Close)
	auth, err := middleware.NewAuthenticator(context.Background(), middleware.AuthenticatorConfig{
		Tenants:   []string{graphtest.TenantID},
		Audiences: []string{graphtest.APIClientID, graphtest.APIAppIDURI},
		Authority: tenant.URL,
		Now:       clock.Now,
		Logger:    slog.New(slog.DiscardHandler),
	})
	if err != nil {
		tb.Fatalf("NewAuthenticator: %v", err)
	}
	ft := &fuzzTarget{tenant: tenant, auth: auth, issued: map[string]bool{}}
	for _, tok := range []graphtest.Token{
		{ObjectID: userOID, Username: "jane@contoso.example", Wids: []string{globalAdmin}},
		{ObjectID: userOID, Version: 1, Username: "jane@contoso.example"},
		{ObjectID: appOID, App: true, Roles: []string{"Directory.Admin"}},
		{ObjectID: userOID, Claims: map[string]any{"aud": []string{"api://other", graphtest.APIClientID}}},
		{ObjectID: userOID, Groups: []string{groupID, otherGroup}, Name: "Jane Doe"},
	} {
		raw, err := tenant.Mint(tok)
		if err != nil {
			tb.Fatal(err)
		}
		ft.minted = append(ft.minted, raw)
		ft.issued[raw] = true
	}
	return ft
}

// check verifies raw and fails t if Verify accepts a string the tenant did
// not issue, or answers anything but a principal or a classified error.
func (ft *fuzzTarget) check(t *testing.T, raw string) {
	p, err := ft.auth.Verify(context.Background(), raw)
	if (p == nil) == (err == nil) {
		t.Fatalf("Verify returned principal %v and error %v", p, err)
	}
	if err != nil {
		rej := middleware.RejectionFor(err, "")
		if rej.Code == middleware.CodeInternal || rej.Status >= 500 && rej.Code != middleware.CodeKeysUnavailable {
			t.Fatalf("unclassified rejection %d %s: %v", rej.Status, rej.Code, err)
		}
		return
	}
	if !ft.issued[raw] {
		t.Fatalf("Verify accepted %q, which the tenant never issued (principal %s/%s)", raw, p.TenantID, p.ObjectID)
	}
}

// FuzzVerify: Verify never panics, and returns a principal only for a token
// byte-identical to one the fake tenant minted. Each input is checked twice:
// raw as it is, and spliced into one of the minted tokens (raw replaces cut
// bytes at offset at, counted from the end when at ≥ 0x8000), so that the
// fuzzer explores edits of tokens that verify. The splice is what makes valid tokens reachable at all: the tokens
// added with f.Add are minted by the coordinating process, whose fake tenant
// and keys are not those of the worker processes.
func FuzzVerify(f *testing.F) {
	ft := newFuzzTarget(f)
	fuzzing := flag.Lookup("test.fuzz").Value.String() != ""
	for i, tok := range ft.minted {
		// The empty splice is the worker's own minted token, unchanged.
		f.Add("", uint16(0), uint16(0), uint8(i))
		if !fuzzing {
			// The token itself as raw input. Only when running the seeds:
			// under -fuzz, seeds run in worker processes, where these
			// tokens are foreign, and 1 KiB inputs make the minimization of
			// every new interesting input eat the fuzzing time.
			f.Add(tok, uint16(0), uint16(len(tok)), uint8(i))
		}
	}
	f.Fuzz(func(t *testing.T, raw string, at, cut uint16, which uint8) {
		ft.check(t, raw)
		base := ft.minted[int(which)%len(ft.minted)]
		i := int(at) % (len(base) + 1)
		if at >= 0x8000 {
			i = len(base) - int(at-0x8000)%(len(base)+1)
		}
		j := min(len(base), i+int(cut))
		ft.check(t, base[:i]+raw+base[j:])
	})
}

package middleware

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck/graphtest"
)

// TestWarmVerifySkipsVerification checks that a second presentation of a
// token is answered from the cache: same *Principal, no new decoding, and
// the cache holds one entry per distinct token.
func TestWarmVerifySkipsVerification(t *testing.T) {
	tenant, a := newInternalAuthenticator(t)
	tok := tenant.MustMint(graphtest.Token{ObjectID: "4d5e6f70-8192-4a3b-8c4d-5e6f70819203"})
	p1, err := a.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := a.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if p1 != p2 {
		t.Error("second Verify re-verified the token instead of using the cache")
	}
	if n := a.cache.len(); n != 1 {
		t.Errorf("cache holds %d entries, want 1", n)
	}
	allocs := testing.AllocsPerRun(100, func() { _, _ = a.Verify(context.Background(), tok) })
	if allocs > 0 {
		t.Errorf("warm Verify allocates %.0f times, want 0", allocs)
	}
}

// newInternalAuthenticator is a fake tenant and an Authenticator for it.
func newInternalAuthenticator(t *testing.T) (*graphtest.Server, *Authenticator) {
	t.Helper()
	clock := graphtest.NewClock(time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC))
	tenant := graphtest.NewServer(graphtest.Options{Clock: clock})
	t.Cleanup(tenant.Close)
	a, err := NewAuthenticator(context.Background(), AuthenticatorConfig{
		Tenants: []string{graphtest.TenantID}, Audiences: []string{graphtest.APIClientID}, Authority: tenant.URL, Now: clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return tenant, a
}

func TestTokenCacheDisabled(t *testing.T) {
	c, err := newTokenCache(-1)
	if err != nil || c != nil {
		t.Fatalf("newTokenCache(-1) = %v, %v; want nil, nil", c, err)
	}
	k := tokenKey("x")
	c.add(k, &tokenEntry{})
	if _, ok := c.get(k, time.Time{}); ok {
		t.Error("disabled cache returned an entry")
	}
}

// TestAuthenticatorPurge checks that Purge drops exactly the purged
// principal's verified tokens, whatever the case of the IDs it is given.
func TestAuthenticatorPurge(t *testing.T) {
	tenant, a := newInternalAuthenticator(t)
	const purged, kept = "4d5e6f70-8192-4a3b-8c4d-5e6f70819203", "5e6f7081-92a3-4b4c-9d5e-6f7081920314"
	toks := []string{
		tenant.MustMint(graphtest.Token{ObjectID: purged}),
		tenant.MustMint(graphtest.Token{ObjectID: purged, Scopes: []string{"other"}}),
		tenant.MustMint(graphtest.Token{ObjectID: kept}),
	}
	first := make([]*Principal, len(toks))
	var err error
	for i, tok := range toks {
		if first[i], err = a.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
	a.Purge(strings.ToUpper(graphtest.TenantID), strings.ToUpper(purged))
	if n := a.cache.len(); n != 1 {
		t.Errorf("cache holds %d tokens after the purge, want 1", n)
	}
	for i, tok := range toks {
		p, err := a.Verify(context.Background(), tok)
		if err != nil {
			t.Fatal(err)
		}
		if again := p != first[i]; again != (i < 2) {
			t.Errorf("token %d: verified afresh = %v", i, again)
		}
	}
	Purgers{a, a}.Purge(graphtest.TenantID, kept) // twice: idempotent
	if n := a.cache.len(); n != 2 {
		t.Errorf("cache holds %d tokens, want 2", n)
	}
	Purgers{a}.PurgeAll()
	if n := a.cache.len(); n != 0 {
		t.Errorf("cache holds %d tokens after PurgeAll, want 0", n)
	}
	if p, err := a.Verify(context.Background(), toks[2]); err != nil || p == first[2] {
		t.Errorf("after PurgeAll the token was not verified afresh (err %v)", err)
	}
}

// TestTokenCacheExpiry checks that a cached token is a miss once its
// notAfter has passed, so that Verify re-verifies (and rejects) it.
func TestTokenCacheExpiry(t *testing.T) {
	c, err := newTokenCache(0)
	if err != nil {
		t.Fatal(err)
	}
	notAfter := time.Date(2026, 11, 25, 11, 0, 0, 0, time.UTC)
	k := tokenKey("x")
	c.add(k, &tokenEntry{principal: &Principal{}, notAfter: notAfter})
	for _, tt := range []struct {
		name string
		now  time.Time
		hit  bool
	}{
		{"before notAfter", notAfter.Add(-time.Second), true},
		{"at notAfter", notAfter, true},
		{"after notAfter", notAfter.Add(time.Second), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, ok := c.get(k, tt.now); ok != tt.hit {
				t.Errorf("get = %v, want %v", ok, tt.hit)
			}
			if _, ok := c.expired(k, tt.now); ok == tt.hit {
				t.Errorf("expired = %v, want %v", ok, !tt.hit)
			}
		})
	}
}

// TestExpiredCachedTokenIsNotVerifiedAgain checks that a token verified
// once and presented again after it expired is refused from the cache, not
// by a second signature verification (≈ 30 allocations and an RSA check).
func TestExpiredCachedTokenIsNotVerifiedAgain(t *testing.T) {
	clock := graphtest.NewClock(time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC))
	tenant := graphtest.NewServer(graphtest.Options{Clock: clock})
	t.Cleanup(tenant.Close)
	a, err := NewAuthenticator(context.Background(), AuthenticatorConfig{
		Tenants: []string{graphtest.TenantID}, Audiences: []string{graphtest.APIClientID}, Authority: tenant.URL, Now: clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	tok := tenant.MustMint(graphtest.Token{ObjectID: "4d5e6f70-8192-4a3b-8c4d-5e6f70819203"})
	if _, err := a.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	clock.Advance(graphtest.DefaultTokenLifetime + DefaultClockSkew + time.Second)
	allocs := testing.AllocsPerRun(20, func() {
		if _, err := a.Verify(context.Background(), tok); !errors.Is(err, ErrTokenExpired) {
			t.Fatalf("Verify after expiry: %v, want ErrTokenExpired", err)
		}
	})
	if allocs > 10 {
		t.Errorf("refusing an expired cached token took %.0f allocations: it was verified again", allocs)
	}
}

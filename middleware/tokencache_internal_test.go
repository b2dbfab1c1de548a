package middleware

import (
	"context"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck/graphtest"
)

// TestWarmVerifySkipsVerification checks that a second presentation of a
// token is answered from the cache: same *Principal, no new decoding, and
// the cache holds one entry per distinct token.
func TestWarmVerifySkipsVerification(t *testing.T) {
	clock := graphtest.NewClock(time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC))
	tenant := graphtest.NewServer(graphtest.Options{Clock: clock})
	defer tenant.Close()
	a, err := NewAuthenticator(context.Background(), AuthenticatorConfig{
		Tenants: []string{graphtest.TenantID}, Audiences: []string{graphtest.APIClientID}, Authority: tenant.URL, Now: clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
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

func TestTokenCacheDisabled(t *testing.T) {
	c, err := newTokenCache(-1)
	if err != nil || c != nil {
		t.Fatalf("newTokenCache(-1) = %v, %v; want nil, nil", c, err)
	}
	k := tokenKey("x")
	c.add(k, &tokenEntry{})
	if _, ok := c.get(k); ok {
		t.Error("disabled cache returned an entry")
	}
}

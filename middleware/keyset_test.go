package middleware

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck/graphtest"
)

// AwaitKeySetRefreshes waits until the background key-set refreshes started
// so far have finished. It exists only in tests (it is declared in a _test.go
// file), for external tests such as TestKeyRotation; call it while no request
// is in flight.
func (a *Authenticator) AwaitKeySetRefreshes() {
	for _, ks := range a.allKeySets() {
		ks.background.Wait()
	}
}

// cachedToken mints a token, verifies it so that the verified-token cache
// holds it, and returns it with its principal and the key set backing it.
func cachedToken(t *testing.T, tenant *graphtest.Server, a *Authenticator) (string, *Principal, *keySet) {
	t.Helper()
	tok := tenant.MustMint(graphtest.Token{ObjectID: "4d5e6f70-8192-4a3b-8c4d-5e6f70819203"})
	p, err := a.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	e, ok := a.cache.get(tokenKey(tok), a.cfg.Now())
	if !ok {
		t.Fatal("the verified token is not cached")
	}
	return tok, p, e.keys
}

// unknownKidToken is a token of tenant, validly signed, whose kid no key set
// publishes.
func unknownKidToken(t *testing.T, tenant *graphtest.Server) string {
	t.Helper()
	claims, err := tenant.Claims(graphtest.Token{ObjectID: "4d5e6f70-8192-4a3b-8c4d-5e6f70819203"})
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tenant.Sign(map[string]any{"kid": "kid-no-jwks-publishes"}, payload)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// logTo makes ks log to a buffer, read only once its background refreshes
// have finished.
func logTo(ks *keySet) *bytes.Buffer {
	buf := &bytes.Buffer{}
	ks.logger = slog.New(slog.NewJSONHandler(buf, nil))
	return buf
}

// hangingJWKS is a JWKS endpoint that answers nothing until the test ends.
type hangingJWKS struct {
	entered  chan struct{} // one value per request the handler received
	requests atomic.Int64  // requests the handler received
	returned atomic.Int64  // fetches that came back to the client, by answer or timeout
}

// hangKeys points ks at a hanging JWKS endpoint, through a client that
// records when a fetch comes back. At cleanup it releases the handler and
// waits for ks's background refreshes, so no goroutine outlives the test.
func hangKeys(t *testing.T, ks *keySet, timeout time.Duration) *hangingJWKS {
	t.Helper()
	h := &hangingJWKS{entered: make(chan struct{}, 100)}
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.requests.Add(1)
		h.entered <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		http.Error(w, "released", http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(ks.background.Wait)
	t.Cleanup(func() { close(release) })
	ks.url, ks.timeout = srv.URL+"/discovery/v2.0/keys", timeout
	ks.client = &http.Client{Timeout: timeout, Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		defer h.returned.Add(1)
		return srv.Client().Transport.RoundTrip(r)
	})}
	return h
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestKeySetAgedRefreshDoesNotBlockCachedTokens is the stale-while-revalidate
// regression test: with an aged key set and a JWKS endpoint that hangs, a
// cached token is answered while the fetch is still hanging (before the
// change it waited for the fetch, up to HTTPTimeout), a stream of such
// requests starts one fetch, and a token with an unknown kid still fails
// closed.
func TestKeySetAgedRefreshDoesNotBlockCachedTokens(t *testing.T) {
	tenant, a := newInternalAuthenticator(t)
	tok, want, ks := cachedToken(t, tenant, a)
	logs := logTo(ks)
	jwks := hangKeys(t, ks, 5*time.Second)
	tenant.Clock().Advance(DefaultJWKSMaxAge + time.Second)

	p, err := a.Verify(context.Background(), tok)
	if err != nil || p != want {
		t.Fatalf("cached token on an aged key set: %v, %v; want the cached principal", p, err)
	}
	select {
	case <-jwks.entered: // the background refresh is hanging now
	case <-time.After(time.Minute): // a deadlock guard, not a measurement
		t.Fatal("no JWKS fetch started for the aged key set")
	}
	if n := jwks.returned.Load(); n != 0 {
		t.Fatalf("the cached token was answered only after the JWKS fetch came back (%d)", n)
	}
	for range 50 {
		if p, err := a.Verify(context.Background(), tok); err != nil || p != want {
			t.Fatalf("cached token during the hanging refresh: %v, %v", p, err)
		}
	}
	if n := jwks.returned.Load(); n != 0 {
		t.Fatalf("a cached token waited for the JWKS fetch (%d came back)", n)
	}

	// An unknown kid waits for the fetch in flight (it does not start one of
	// its own) and fails closed when its request gives up.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := a.Verify(ctx, unknownKidToken(t, tenant)); !errors.Is(err, ErrKeysUnavailable) {
		t.Fatalf("unknown kid while the JWKS hangs: %v; want ErrKeysUnavailable", err)
	}
	if n := jwks.requests.Load(); n != 1 {
		t.Errorf("%d JWKS fetches during one hanging refresh, want 1", n)
	}
	if logs.Len() != 0 {
		t.Errorf("logged before the refresh ended: %s", logs)
	}
}

// TestKeySetAgedRefreshOncePerCooldown checks that a stream of concurrent
// requests on an aged key set whose endpoint fails costs one JWKS fetch and
// one Warn record per cooldown, keeps the previous keys, and stops fetching
// once a refresh succeeds.
func TestKeySetAgedRefreshOncePerCooldown(t *testing.T) {
	tenant, a := newInternalAuthenticator(t)
	tok, want, ks := cachedToken(t, tenant, a)
	logs := logTo(ks)
	u, err := url.Parse(ks.url)
	if err != nil {
		t.Fatal(err)
	}
	fetches := func() int { return tenant.CountRequests(u.Path) }
	remove := tenant.InjectFault(graphtest.PathPrefix(u.Path), http.StatusServiceUnavailable)
	stream := func() {
		t.Helper()
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for range 25 {
					if p, err := a.Verify(context.Background(), tok); err != nil || p != want {
						t.Errorf("cached token on an aged key set: %v, %v", p, err)
						return
					}
				}
			})
		}
		wg.Wait()
		a.AwaitKeySetRefreshes()
	}
	start := fetches()
	tenant.Clock().Advance(DefaultJWKSMaxAge + time.Second)
	steps := []struct {
		name    string
		advance time.Duration
		fix     bool
		fetches int // in all since the key set aged
		warns   int // in all
	}{
		{"aged, endpoint failing", 0, false, 1, 1},
		{"same cooldown", DefaultJWKSRefreshCooldown - time.Second, false, 1, 1},
		{"next cooldown", time.Second, false, 2, 2},
		{"endpoint back, next cooldown", DefaultJWKSRefreshCooldown, true, 3, 2},
		{"fresh set, past the cooldown", DefaultJWKSRefreshCooldown, false, 3, 2},
	}
	for _, st := range steps {
		tenant.Clock().Advance(st.advance)
		if st.fix {
			remove()
		}
		stream()
		if got := fetches() - start; got != st.fetches {
			t.Errorf("%s: %d JWKS fetches in all, want %d", st.name, got, st.fetches)
		}
		if got := strings.Count(logs.String(), `"level":"WARN","msg":"pimguard: JWKS refresh failed`); got != st.warns {
			t.Errorf("%s: %d Warn records in all, want %d:\n%s", st.name, got, st.warns, logs)
		}
	}
	if strings.Contains(logs.String(), tok[strings.LastIndexByte(tok, '.')+1:]) {
		t.Error("a log record holds the token")
	}
}

// TestKeySetAgedRefreshWithoutTokenCache checks that an aged key set is
// refreshed on the verification path too: with the verified-token cache off,
// a token signed by a withdrawn key is refused once the background refresh
// has installed the new set. Before the change only cache hits refreshed an
// aged set, so without the cache a withdrawn key verified until an unknown
// kid happened to trigger a fetch.
func TestKeySetAgedRefreshWithoutTokenCache(t *testing.T) {
	tenant, a := newInternalAuthenticator(t)
	a.cache = nil
	oldKid, _ := tenant.SigningKey()
	oldTok := tenant.MustMint(graphtest.Token{ObjectID: "4d5e6f70-8192-4a3b-8c4d-5e6f70819203"})
	if _, err := tenant.RotateSigningKey(); err != nil {
		t.Fatal(err)
	}
	if !tenant.RetireKey(oldKid) {
		t.Fatal("RetireKey failed")
	}
	tenant.Clock().Advance(DefaultJWKSMaxAge + time.Second)
	if _, err := a.Verify(context.Background(), oldTok); err != nil {
		t.Fatalf("withdrawn key before the aged set is refreshed: %v", err)
	}
	a.AwaitKeySetRefreshes()
	if _, err := a.Verify(context.Background(), oldTok); !errors.Is(err, ErrTokenBadSignature) {
		t.Fatalf("withdrawn key after the refresh: %v; want ErrTokenBadSignature", err)
	}
}

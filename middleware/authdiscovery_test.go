package middleware_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/middleware"
)

// backgroundFixture is a fake tenant (two tenants: graphtest.TenantID and
// otherTenant) whose login endpoints may be failed, and the configuration
// of an Authenticator that discovers them in the background, retrying every
// millisecond or so.
type backgroundFixture struct {
	t      *testing.T
	tenant *graphtest.Server
	clock  *graphtest.Clock
	cfg    middleware.AuthenticatorConfig
}

func newBackgroundFixture(t *testing.T, tenants ...string) *backgroundFixture {
	t.Helper()
	clock := graphtest.NewClock(time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC))
	tenant := graphtest.NewServer(graphtest.Options{Clock: clock, Tenants: []string{graphtest.TenantID, otherTenant}})
	t.Cleanup(tenant.Close)
	if len(tenants) == 0 {
		tenants = []string{graphtest.TenantID}
	}
	return &backgroundFixture{t: t, tenant: tenant, clock: clock, cfg: middleware.AuthenticatorConfig{
		Tenants: tenants, Audiences: []string{graphtest.APIClientID, graphtest.APIAppIDURI},
		Authority: tenant.URL, Now: clock.Now, Logger: slog.New(slog.DiscardHandler),
		DiscoverInBackground: true, DiscoveryRetryMin: time.Millisecond, DiscoveryRetryMax: 5 * time.Millisecond,
	}}
}

// start builds the Authenticator and closes it at the end of the test.
func (b *backgroundFixture) start(ctx context.Context) *middleware.Authenticator {
	b.t.Helper()
	a, err := middleware.NewAuthenticator(ctx, b.cfg)
	if err != nil {
		b.t.Fatalf("NewAuthenticator: %v", err)
	}
	b.t.Cleanup(func() { _ = a.Close() })
	return a
}

// failLogin fails every discovery and key-set request of tenant ("" for
// all) with status until the returned function is called.
func (b *backgroundFixture) failLogin(tenant string, status int) (remove func()) {
	return b.tenant.InjectFault(func(r *http.Request) bool {
		p := r.URL.Path
		return (strings.HasSuffix(p, "/openid-configuration") || strings.HasSuffix(p, "/keys")) && strings.Contains(p, tenant)
	}, status)
}

func (b *backgroundFixture) request(a *middleware.Authenticator, token string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, "/api/me", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	a.Handler(echo).ServeHTTP(rec, req)
	return rec
}

// awaitHealth polls Health until ok accepts it. It is not a timing
// assertion: the retries run every few milliseconds, and the 10 s bound
// only keeps a broken build from hanging.
func awaitHealth(t *testing.T, a *middleware.Authenticator, ok func([]graphcheck.HealthCheck) bool) []graphcheck.HealthCheck {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		h := a.Health()
		if ok(h) {
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("health never reached the expected state: %+v", h)
		}
		time.Sleep(time.Millisecond)
	}
}

func allReady(h []graphcheck.HealthCheck) bool {
	for _, c := range h {
		if !c.Ready {
			return false
		}
	}
	return len(h) > 0
}

// TestStartWhileEntraIsUnreachable: with DiscoverInBackground the
// Authenticator comes up while discovery fails, answers 503
// token_keys_unavailable with Retry-After and reports itself not ready
// (naming the failure's class), and serves tokens once Entra answers,
// without a restart. The strict start, the default, still fails.
func TestStartWhileEntraIsUnreachable(t *testing.T) {
	b := newBackgroundFixture(t)
	remove := b.failLogin("", http.StatusServiceUnavailable)

	strict := b.cfg
	strict.DiscoverInBackground = false
	if a, err := middleware.NewAuthenticator(context.Background(), strict); err == nil || a != nil {
		t.Fatalf("strict NewAuthenticator while Entra is down = %v, %v; want an error", a, err)
	}

	a := b.start(context.Background())
	tok := b.tenant.MustMint(graphtest.Token{ObjectID: userOID})
	h := awaitHealth(t, a, func(h []graphcheck.HealthCheck) bool {
		return len(h) == 1 && strings.Contains(h[0].Detail, "HTTP 503")
	})
	if c := h[0]; c.Name != "keys/"+graphtest.TenantID || c.Ready || !c.Since.Equal(b.clock.Now()) {
		t.Errorf("health while discovery fails: %+v; want keys/<tenant>, not ready, since the start", c)
	}
	rec := b.request(a, tok)
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" || decodeBody(t, rec).Code != middleware.CodeKeysUnavailable {
		t.Fatalf("token before the keys exist: %d Retry-After %q %s; want 503 %s with Retry-After",
			rec.Code, rec.Header().Get("Retry-After"), rec.Body, middleware.CodeKeysUnavailable)
	}

	remove()
	h = awaitHealth(t, a, allReady)
	if c := h[0]; !strings.Contains(c.Detail, "1 signing key in 2 key sets") || c.Degraded || !c.Since.Equal(b.clock.Now()) {
		t.Errorf("health once discovered: %+v", c)
	}
	if rec := b.request(a, tok); rec.Code != http.StatusOK {
		t.Fatalf("token once the keys exist: %d %s", rec.Code, rec.Body)
	}
}

// TestBackgroundDiscoveryPerTenant: a tenant whose discovery fails does not
// hold back another: the discovered tenant's tokens verify, the other's get
// 503 (not 401: its issuer is not known yet), and a token of a tenant that
// is not configured is still refused with 401.
func TestBackgroundDiscoveryPerTenant(t *testing.T) {
	b := newBackgroundFixture(t, graphtest.TenantID, otherTenant)
	b.failLogin(otherTenant, http.StatusBadGateway)
	a := b.start(context.Background())
	h := awaitHealth(t, a, func(h []graphcheck.HealthCheck) bool { return h[0].Ready && strings.Contains(h[1].Detail, "HTTP 502") })
	if h[0].Name != "keys/"+graphtest.TenantID || h[1].Name != "keys/"+otherTenant || h[1].Ready {
		t.Fatalf("health: %+v", h)
	}
	tests := []struct {
		name   string
		token  graphtest.Token
		status int
		code   string
	}{
		{"discovered tenant", graphtest.Token{ObjectID: userOID}, http.StatusOK, ""},
		{"tenant not discovered yet", graphtest.Token{ObjectID: userOID, TenantID: otherTenant}, http.StatusServiceUnavailable, middleware.CodeKeysUnavailable},
		{"v1 token, tenant not discovered yet", graphtest.Token{ObjectID: userOID, TenantID: otherTenant, Version: 1}, http.StatusServiceUnavailable, middleware.CodeKeysUnavailable},
		{"issuer of no configured tenant", graphtest.Token{ObjectID: userOID, Claims: map[string]any{"iss": "https://sts.windows.net/" + strings.Repeat("1", 8) + "-1111-4111-8111-111111111111/"}}, http.StatusUnauthorized, middleware.CodeTokenTenantNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := b.request(a, b.tenant.MustMint(tt.token))
			if rec.Code != tt.status || tt.code != "" && decodeBody(t, rec).Code != tt.code {
				t.Fatalf("%d %s; want %d %s", rec.Code, rec.Body, tt.status, tt.code)
			}
		})
	}
}

// TestBackgroundDiscoveryOutlivesItsContext: the context given to
// NewAuthenticator bounds nothing after it returns, so a start-up deadline
// cannot stop the retries and leave the replica without keys for good.
func TestBackgroundDiscoveryOutlivesItsContext(t *testing.T) {
	b := newBackgroundFixture(t)
	remove := b.failLogin("", http.StatusServiceUnavailable)
	ctx, cancel := context.WithCancel(context.Background())
	a := b.start(ctx)
	cancel()
	awaitHealth(t, a, func(h []graphcheck.HealthCheck) bool { return strings.Contains(h[0].Detail, "failed attempts") })
	remove()
	awaitHealth(t, a, allReady)
}

// TestCloseStopsBackgroundDiscovery: Close returns while a discovery fetch
// hangs (it cancels it), leaves no goroutine of the Authenticator behind,
// and Health then says discovery stopped. Before Close existed, the
// goroutine would have retried forever.
func TestCloseStopsBackgroundDiscovery(t *testing.T) {
	entered, release := make(chan struct{}, 1), make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case entered <- struct{}{}:
		default:
		}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(hang.Close)
	t.Cleanup(func() { close(release) })
	b := newBackgroundFixture(t)
	b.cfg.Authority = hang.URL
	b.cfg.HTTPTimeout = time.Hour // only Close ends the fetch
	a, err := middleware.NewAuthenticator(context.Background(), b.cfg)
	if err != nil {
		t.Fatal(err)
	}
	<-entered
	closed := make(chan error, 1)
	go func() { closed <- a.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(10 * time.Second): // a bound for a broken build, not a timing assertion
		t.Fatal("Close did not return while a discovery fetch hangs")
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if stacks := authenticatorGoroutines(); stacks != "" {
		t.Fatalf("goroutines of the Authenticator after Close:\n%s", stacks)
	}
	if h := a.Health(); h[0].Ready || !strings.Contains(h[0].Detail, "stopped") {
		t.Errorf("health after Close: %+v", h)
	}
}

// TestCloseStopsRetriesNoLeak starts and closes Authenticators whose
// discovery keeps failing, and checks that none of their goroutines is
// left.
func TestCloseStopsRetriesNoLeak(t *testing.T) {
	b := newBackgroundFixture(t)
	b.failLogin("", http.StatusServiceUnavailable)
	for range 20 {
		a, err := middleware.NewAuthenticator(context.Background(), b.cfg)
		if err != nil {
			t.Fatal(err)
		}
		awaitHealth(t, a, func(h []graphcheck.HealthCheck) bool { return strings.Contains(h[0].Detail, "failed attempts") })
		_ = a.Close()
	}
	if stacks := authenticatorGoroutines(); stacks != "" {
		t.Fatalf("goroutines of closed Authenticators:\n%s", stacks)
	}
}

// authenticatorGoroutines returns the stacks of running background
// discoveries, "" when there is none. Close waits for its own, and no test
// of this package leaves one running, so none may be left after it.
func authenticatorGoroutines() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "middleware.(*Authenticator).discoverInBackground") {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}

func TestDiscoveryRetryConfig(t *testing.T) {
	tests := []struct {
		name     string
		min, max time.Duration
		ok       bool
	}{
		{"defaults", 0, 0, true},
		{"min above the default max", 2 * time.Minute, 0, true},
		{"negative min", -time.Second, 0, false},
		{"negative max", 0, -time.Second, false},
		{"max below min", time.Minute, time.Second, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := middleware.AuthenticatorConfig{
				Tenants: []string{graphtest.TenantID}, Audiences: []string{graphtest.APIClientID},
				DiscoverInBackground: true, DiscoveryRetryMin: tt.min, DiscoveryRetryMax: tt.max,
				Authority: "http://127.0.0.1:1", Logger: slog.New(slog.DiscardHandler),
			}
			a, err := middleware.NewAuthenticator(context.Background(), cfg)
			if a != nil {
				_ = a.Close()
			}
			if (err == nil) != tt.ok {
				t.Fatalf("NewAuthenticator error %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

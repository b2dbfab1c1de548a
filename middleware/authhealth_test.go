package middleware_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/middleware"
)

// TestAuthenticatorHealth follows one tenant's key sets through a strict
// start, ageing, a failed refresh (ready but degraded, with the failure's
// class) and a successful one, and checks that Health makes no request.
func TestAuthenticatorHealth(t *testing.T) {
	f := newFixture(t, nil)
	start := f.clock.Now()
	tok := f.mint(graphtest.Token{})
	if rec := f.do("Bearer " + tok); rec.Code != http.StatusOK {
		t.Fatalf("warm-up: %d %s", rec.Code, rec.Body)
	}
	jwks := func(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, "/keys") }

	steps := []struct {
		name     string
		do       func()
		degraded bool
		since    time.Time
		detail   []string
	}{
		{name: "fetched at start", since: start,
			detail: []string{"1 signing key in 2 key sets, last fetched 0s ago (the oldest 0s ago)"}},
		{name: "ten minutes later", do: func() { f.clock.Advance(10 * time.Minute) }, since: start,
			detail: []string{"last fetched 10m0s ago (the oldest 10m0s ago)"}},
		{name: "aged, refresh fails", since: start, degraded: true,
			detail: []string{"the last refresh failed (HTTP 503)", "keep verifying"},
			do: func() {
				remove := f.tenant.InjectFault(jwks, http.StatusServiceUnavailable)
				defer remove()
				f.clock.Advance(middleware.DefaultJWKSMaxAge)
				if rec := f.do("Bearer " + tok); rec.Code != http.StatusOK {
					t.Fatalf("cached token on an aged set: %d %s", rec.Code, rec.Body)
				}
				f.auth.AwaitKeySetRefreshes()
			}},
		// The v2 key set, which the token needs, is refreshed; the v1 set,
		// unused, keeps its age.
		{name: "refreshed", degraded: false,
			detail: []string{"last fetched 0s ago (the oldest 1h10m30s ago)"},
			do: func() {
				f.clock.Advance(middleware.DefaultJWKSRefreshCooldown)
				if rec := f.do("Bearer " + tok); rec.Code != http.StatusOK {
					t.Fatalf("cached token on an aged set: %d %s", rec.Code, rec.Body)
				}
				f.auth.AwaitKeySetRefreshes()
			}},
	}
	for _, s := range steps {
		if s.do != nil {
			s.do()
		}
		before := len(f.tenant.Requests())
		h := f.auth.Health()
		if n := len(f.tenant.Requests()) - before; n != 0 {
			t.Errorf("%s: Health made %d requests", s.name, n)
		}
		if len(h) != 1 {
			t.Fatalf("%s: %d items, want 1: %+v", s.name, len(h), h)
		}
		c := h[0]
		since := s.since
		if since.IsZero() {
			since = f.clock.Now()
		}
		if c.Name != "keys/"+graphtest.TenantID || !c.Ready || c.Degraded != s.degraded || !c.Since.Equal(since) {
			t.Errorf("%s: %+v; want ready, degraded %v, since %v", s.name, c, s.degraded, since)
		}
		for _, d := range s.detail {
			if !strings.Contains(c.Detail, d) {
				t.Errorf("%s: detail %q lacks %q", s.name, c.Detail, d)
			}
		}
		if strings.Contains(c.Detail, "eyJ") || strings.Contains(c.Detail, "http") {
			t.Errorf("%s: detail %q holds a token or a URL", s.name, c.Detail)
		}
	}
}

var _ graphcheck.HealthReporter = (*middleware.Authenticator)(nil)

// TestFetchFailureClasses: Health names what failed in fixed words, one
// class per way a fetch fails.
func TestFetchFailureClasses(t *testing.T) {
	tests := []struct {
		name  string
		setup func(b *backgroundFixture)
		class string
	}{
		{"HTTP status", func(b *backgroundFixture) { b.failLogin("", http.StatusTooManyRequests) }, "HTTP 429"},
		{"refused connection", func(b *backgroundFixture) { b.cfg.Authority = "http://127.0.0.1:1" }, "unreachable"},
		{"timeout", func(b *backgroundFixture) {
			b.cfg.HTTPTimeout = time.Millisecond
			b.cfg.HTTPClient = &http.Client{Transport: roundTripperFunc(func(r *http.Request) (*http.Response, error) {
				<-r.Context().Done()
				return nil, r.Context().Err()
			})}
		}, "timed out"},
		{"not JSON", func(b *backgroundFixture) {
			b.cfg.HTTPClient = &http.Client{Transport: roundTripperFunc(func(r *http.Request) (*http.Response, error) {
				return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody, Header: http.Header{}, Request: r}, nil
			})}
		}, "invalid document"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBackgroundFixture(t)
			tt.setup(b)
			a := b.start(t.Context())
			awaitHealth(t, a, func(h []graphcheck.HealthCheck) bool {
				return !h[0].Ready && strings.Contains(h[0].Detail, "the last "+tt.class+" at")
			})
		})
	}
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestReadyHandlerWithAuthenticator: the readiness endpoint is 503 naming
// the tenant's keys while background discovery fails, 200 once they are
// fetched.
func TestReadyHandlerWithAuthenticator(t *testing.T) {
	b := newBackgroundFixture(t)
	remove := b.failLogin("", http.StatusServiceUnavailable)
	a := b.start(t.Context())
	ready := middleware.ReadyHandler(a)
	get := func() (int, string) {
		rec := httptest.NewRecorder()
		ready.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := get(); code != http.StatusServiceUnavailable || !strings.Contains(body, `"not_ready":["keys/`+graphtest.TenantID+`"]`) {
		t.Fatalf("readyz while Entra is down: %d %s", code, body)
	}
	remove()
	awaitHealth(t, a, allReady)
	if code, body := get(); code != http.StatusOK {
		t.Fatalf("readyz once discovered: %d %s", code, body)
	}
}

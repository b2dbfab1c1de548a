package middleware_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/internal/metrictest"
	"github.com/pimguard/pimguard/middleware"
)

func sdkProvider(t testing.TB) (*sdkmetric.MeterProvider, *sdkmetric.ManualReader) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = provider.Shutdown(context.Background()) })
	return provider, reader
}

func TestAuthenticatorMetrics(t *testing.T) {
	provider, reader := sdkProvider(t)
	f := newFixture(t, func(c *middleware.AuthenticatorConfig) { c.MeterProvider = provider })
	tok, other := f.mint(graphtest.Token{}), f.mint(graphtest.Token{ObjectID: otherOID})
	expired := f.mint(graphtest.Token{IssuedAt: f.clock.Now().Add(-3 * time.Hour)})
	jwks := func(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, "/keys") }

	steps := []struct {
		name   string
		before func()
		header string
		status int
	}{
		{name: "first sight: miss", header: "Bearer " + tok, status: http.StatusOK},
		{name: "hit", header: "Bearer " + tok, status: http.StatusOK},
		{name: "hit again", header: "Bearer " + tok, status: http.StatusOK},
		{name: "another token: miss", header: "Bearer " + other, status: http.StatusOK},
		{name: "no token", header: "", status: http.StatusUnauthorized},
		{name: "malformed", header: "Bearer abc", status: http.StatusUnauthorized},
		{name: "expired: miss", header: "Bearer " + expired, status: http.StatusUnauthorized},
		{name: "unknown kid while the JWKS is down: miss", status: http.StatusServiceUnavailable,
			before: func() {
				f.tenant.InjectFault(jwks, http.StatusServiceUnavailable)
				if _, err := f.tenant.RotateSigningKey(); err != nil {
					t.Fatal(err)
				}
			}},
	}
	for _, s := range steps {
		if s.before != nil {
			s.before()
		}
		h := s.header
		if h == "" && s.status == http.StatusServiceUnavailable {
			h = "Bearer " + f.mint(graphtest.Token{})
		}
		var rec *httptest.ResponseRecorder
		if h == "" {
			rec = f.do()
		} else {
			rec = f.do(h)
		}
		if rec.Code != s.status {
			t.Fatalf("%s: status %d, want %d; body %s", s.name, rec.Code, s.status, rec.Body)
		}
	}

	want := map[string]collected{
		"pimguard.auth.rejections": {Kind: "counter", Unit: "{request}", Points: map[string]int64{
			"code=token_missing":          1,
			"code=token_malformed":        1,
			"code=token_expired":          1,
			"code=token_keys_unavailable": 1,
		}},
		// Two discovery documents and two key sets (v2 and v1) at start,
		// then one key-set fetch for the unknown kid, refused with 503.
		"pimguard.auth.key_fetches": {Kind: "counter", Unit: "{fetch}", Points: map[string]int64{
			"document=discovery,outcome=success": 2,
			"document=jwks,outcome=success":      2,
			"document=jwks,outcome=http_error":   1,
		}},
		"pimguard.auth.token_cache.hits":   {Kind: "counter", Unit: "{request}", Points: map[string]int64{"": 2}},
		"pimguard.auth.token_cache.misses": {Kind: "counter", Unit: "{request}", Points: map[string]int64{"": 4}},
		"pimguard.auth.token_cache.size":   {Kind: "gauge", Unit: "{token}", Points: map[string]int64{"": 2}},
	}
	metrictest.Expect(t, reader, want)
}

// TestAuthenticatorMetricsExpiredHit: a token refused as expired from the
// cache, without a second verification, counts as a hit.
func TestAuthenticatorMetricsExpiredHit(t *testing.T) {
	provider, reader := sdkProvider(t)
	f := newFixture(t, func(c *middleware.AuthenticatorConfig) { c.MeterProvider = provider })
	tok := f.mint(graphtest.Token{Lifetime: time.Hour})
	if rec := f.do("Bearer " + tok); rec.Code != http.StatusOK {
		t.Fatal(rec.Code)
	}
	f.clock.Advance(2 * time.Hour)
	if rec := f.do("Bearer " + tok); rec.Code != http.StatusUnauthorized {
		t.Fatal(rec.Code)
	}
	got := collect(t, reader)
	if h, m := got["pimguard.auth.token_cache.hits"].Total(), got["pimguard.auth.token_cache.misses"].Total(); h != 1 || m != 1 {
		t.Errorf("hits %d, misses %d; want 1 and 1", h, m)
	}
}

// TestBackgroundDiscoveryMetrics: failed background fetches are counted by
// outcome.
func TestBackgroundDiscoveryMetrics(t *testing.T) {
	provider, reader := sdkProvider(t)
	b := newBackgroundFixture(t)
	b.cfg.MeterProvider = provider
	remove := b.failLogin("", http.StatusServiceUnavailable)
	a := b.start(context.Background())
	awaitHealth(t, a, func(h []graphcheck.HealthCheck) bool { return strings.Contains(h[0].Detail, "failed attempts") })
	remove()
	awaitHealth(t, a, allReady)
	pts := collect(t, reader)["pimguard.auth.key_fetches"].Points
	if pts["document=discovery,outcome=http_error"] < 1 || pts["document=discovery,outcome=success"] != 2 || pts["document=jwks,outcome=success"] != 2 {
		t.Errorf("pimguard.auth.key_fetches = %v", pts)
	}
}

func TestNewAuthenticatorMeterErrors(t *testing.T) {
	for _, fail := range []string{"pimguard.auth.rejections", "pimguard.auth.key_fetches", "pimguard.auth.token_cache.hits",
		"pimguard.auth.token_cache.misses", "pimguard.auth.token_cache.size", "callback"} {
		t.Run(fail, func(t *testing.T) {
			a, err := middleware.NewAuthenticator(context.Background(), middleware.AuthenticatorConfig{
				Tenants: []string{graphtest.TenantID}, Audiences: []string{graphtest.APIClientID},
				DiscoverInBackground: true, Authority: "http://127.0.0.1:1",
				MeterProvider: meterProvider{m: failingMeter{fail: fail}},
			})
			if a != nil || !errors.Is(err, errMeter) || !strings.Contains(err.Error(), "AuthenticatorConfig.MeterProvider") {
				t.Fatalf("NewAuthenticator = %v, %v; want an error naming AuthenticatorConfig.MeterProvider wrapping %v", a, err, errMeter)
			}
			if fail != "callback" && !strings.Contains(err.Error(), fail) {
				t.Errorf("error %q does not name %s", err, fail)
			}
		})
	}
	if stacks := authenticatorGoroutines(); stacks != "" {
		t.Fatalf("a refused configuration left a background discovery running:\n%s", stacks)
	}
}

func TestAuthenticatorCallbackUnregisteredWhenCollected(t *testing.T) {
	provider, reader := sdkProvider(t)
	spy := spyMeter{Meter: provider.Meter("test"), unregistered: make(chan struct{})}
	tenant := graphtest.NewServer(graphtest.Options{})
	t.Cleanup(tenant.Close)
	wantUnregisteredWhenCollected(t, reader, spy, "pimguard.auth.token_cache.size", "Authenticator", func() any {
		a, err := middleware.NewAuthenticator(context.Background(), middleware.AuthenticatorConfig{
			Tenants: []string{graphtest.TenantID}, Audiences: []string{graphtest.APIClientID}, Authority: tenant.URL,
			MeterProvider: meterProvider{m: spy}, Logger: slog.New(slog.DiscardHandler),
		})
		if err != nil {
			t.Fatal(err)
		}
		return a
	})
}

// TestAuthenticatorWarmPathAllocations: the metrics add no allocation to a
// warm request: with the OpenTelemetry SDK installed, a request whose token
// is cached costs what it costs with the no-op provider, 2 allocations
// (the request copy that carries the Principal), as before the metrics.
func TestAuthenticatorWarmPathAllocations(t *testing.T) {
	const want = 2
	sdk, _ := sdkProvider(t)
	for _, tt := range []struct {
		name     string
		provider metric.MeterProvider
	}{{"no-op provider", noop.NewMeterProvider()}, {"OpenTelemetry SDK", sdk}} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, func(c *middleware.AuthenticatorConfig) {
				c.MeterProvider = tt.provider
				c.Logger = slog.New(slog.DiscardHandler)
			})
			h := f.auth.Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
			req := httptest.NewRequest(http.MethodGet, "/api/me", nil)
			req.Header.Set("Authorization", "Bearer "+f.mint(graphtest.Token{}))
			w := &discardWriter{h: http.Header{}}
			h.ServeHTTP(w, req) // verify once: the token is cached
			if n := testing.AllocsPerRun(200, func() { h.ServeHTTP(w, req) }); n > want {
				t.Errorf("a warm request allocates %v times, want at most %d", n, want)
			}
		})
	}
}

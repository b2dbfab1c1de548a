package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
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

const otherOID = "7b8c9d0e-1f2a-4b3c-9d4e-5f6a7b8c9d0e"

// collected and collect are metrictest's.
type collected = metrictest.Instrument

func collect(t *testing.T, r sdkmetric.Reader) map[string]collected { return metrictest.Collect(t, r) }

func TestGuardMetrics(t *testing.T) {
	provider, reader := sdkProvider(t)
	g := newGuardFixture(t, func(c *middleware.GuardConfig) {
		c.MeterProvider = provider
		c.CacheSize = 1 // one shard: a second principal evicts the first
		c.CacheTTL = 30 * time.Second
		c.MaxStale = time.Minute
	})
	user, other := g.mint(graphtest.Token{}), g.mint(graphtest.Token{ObjectID: otherOID})
	role := middleware.Role(userAdmin)
	g.dir.activateRole(userOID, userAdmin, "/", 8*time.Hour)

	steps := []struct {
		name   string
		before func()
		req    middleware.Requirement
		token  string
		status int
		code   string
	}{
		{name: "miss, loaded, allowed", req: role, token: user, status: http.StatusOK},
		{name: "hit, allowed", req: role, token: user, status: http.StatusOK},
		{name: "hit again, allowed", req: role, token: user, status: http.StatusOK},
		{name: "hit, role not active", req: middleware.Role(globalAdmin), token: user, status: http.StatusForbidden, code: middleware.CodeRoleNotActive},
		{name: "expired, refresh fails, stale allowed", req: role, token: user, status: http.StatusOK,
			before: func() {
				g.clock.Advance(31 * time.Second)
				g.dir.fail(fmt.Errorf("%w: test outage", graphcheck.ErrUnavailable))
			}},
		{name: "uncached, lookup fails", req: role, token: other, status: http.StatusServiceUnavailable, code: middleware.CodePIMUnavailable},
		{name: "uncached, loaded, evicts the first", req: role, token: other, status: http.StatusOK,
			before: func() {
				g.dir.fail(nil)
				g.dir.activateRole(otherOID, userAdmin, "/", 8*time.Hour)
			}},
	}
	for _, s := range steps {
		if s.before != nil {
			s.before()
		}
		rec := g.do(s.req, s.token)
		if rec.Code != s.status {
			t.Fatalf("%s: status %d, want %d; body %s", s.name, rec.Code, s.status, rec.Body)
		}
		if s.code != "" {
			if b := decodeBody(t, rec); b.Code != s.code {
				t.Fatalf("%s: code %q, want %q", s.name, b.Code, s.code)
			}
		}
	}

	want := map[string]collected{
		"pimguard.decisions": {Kind: "counter", Unit: "{decision}", Points: map[string]int64{
			"code=,outcome=allow":                5,
			"code=role_not_active,outcome=deny":  1,
			"code=pim_unavailable,outcome=error": 1,
		}},
		"pimguard.cache.hits":         {Kind: "counter", Unit: "{request}", Points: map[string]int64{"": 3}},
		"pimguard.cache.misses":       {Kind: "counter", Unit: "{request}", Points: map[string]int64{"": 4}},
		"pimguard.cache.loads":        {Kind: "counter", Unit: "{lookup}", Points: map[string]int64{"": 4}},
		"pimguard.cache.load_errors":  {Kind: "counter", Unit: "{lookup}", Points: map[string]int64{"": 2}},
		"pimguard.cache.stale_served": {Kind: "counter", Unit: "{request}", Points: map[string]int64{"": 1}},
		"pimguard.cache.evictions":    {Kind: "counter", Unit: "{entry}", Points: map[string]int64{"": 1}},
		"pimguard.cache.shared_hits":  {Kind: "counter", Unit: "{lookup}", Points: map[string]int64{"": 0}},
		"pimguard.cache.size":         {Kind: "gauge", Unit: "{entry}", Points: map[string]int64{"": 1}},
	}
	metrictest.Expect(t, reader, want)
}

// failingMeter refuses to create the instrument named fail, or to register
// a callback when fail is "callback".
type failingMeter struct {
	noop.Meter
	fail string
}

var errMeter = errors.New("test: meter refuses")

func (m failingMeter) Int64Counter(name string, opts ...metric.Int64CounterOption) (metric.Int64Counter, error) {
	if name == m.fail {
		return nil, errMeter
	}
	return m.Meter.Int64Counter(name, opts...)
}

func (m failingMeter) Int64ObservableCounter(name string, opts ...metric.Int64ObservableCounterOption) (metric.Int64ObservableCounter, error) {
	if name == m.fail {
		return nil, errMeter
	}
	return m.Meter.Int64ObservableCounter(name, opts...)
}

func (m failingMeter) Int64ObservableGauge(name string, opts ...metric.Int64ObservableGaugeOption) (metric.Int64ObservableGauge, error) {
	if name == m.fail {
		return nil, errMeter
	}
	return m.Meter.Int64ObservableGauge(name, opts...)
}

func (m failingMeter) RegisterCallback(f metric.Callback, insts ...metric.Observable) (metric.Registration, error) {
	if m.fail == "callback" {
		return nil, errMeter
	}
	return m.Meter.RegisterCallback(f, insts...)
}

// meterProvider hands out one Meter.
type meterProvider struct {
	noop.MeterProvider
	m metric.Meter
}

func (p meterProvider) Meter(string, ...metric.MeterOption) metric.Meter { return p.m }

func TestNewGuardMeterErrors(t *testing.T) {
	src := graphcheck.SourceFunc(func(context.Context, graphcheck.Principal) (*graphcheck.State, error) { return nil, nil })
	for _, fail := range []string{"pimguard.decisions", "pimguard.cache.hits", "pimguard.cache.evictions", "pimguard.cache.size", "callback"} {
		t.Run(fail, func(t *testing.T) {
			g, err := middleware.NewGuard(middleware.GuardConfig{Source: src, MeterProvider: meterProvider{m: failingMeter{fail: fail}}})
			if g != nil || !errors.Is(err, errMeter) || !strings.Contains(err.Error(), "GuardConfig.MeterProvider") {
				t.Fatalf("NewGuard = %v, %v; want an error naming GuardConfig.MeterProvider wrapping %v", g, err, errMeter)
			}
			if fail != "callback" && !strings.Contains(err.Error(), fail) {
				t.Errorf("error %q does not name %s", err, fail)
			}
		})
	}
}

// spyMeter reports the Unregister of the registrations it hands out.
type spyMeter struct {
	metric.Meter
	unregistered chan struct{}
}

func (m spyMeter) RegisterCallback(f metric.Callback, insts ...metric.Observable) (metric.Registration, error) {
	r, err := m.Meter.RegisterCallback(f, insts...)
	return spyRegistration{r, m.unregistered}, err
}

type spyRegistration struct {
	metric.Registration
	unregistered chan struct{}
}

func (r spyRegistration) Unregister() error {
	close(r.unregistered)
	return r.Registration.Unregister()
}

func TestGuardCallbackUnregisteredWhenCollected(t *testing.T) {
	provider, reader := sdkProvider(t)
	spy := spyMeter{Meter: provider.Meter("test"), unregistered: make(chan struct{})}
	src := graphcheck.SourceFunc(func(context.Context, graphcheck.Principal) (*graphcheck.State, error) { return nil, nil })
	wantUnregisteredWhenCollected(t, reader, spy, "pimguard.cache.size", "Guard", func() any {
		return middleware.MustNewGuard(middleware.GuardConfig{Source: src, MeterProvider: meterProvider{m: spy}, Logger: slog.New(slog.DiscardHandler)})
	})
}

// wantUnregisteredWhenCollected builds a component (a Guard, an
// Authenticator) reporting to spy, checks that gauge is observed while it
// lives, lets it become unreachable, and waits (bounded) for its callback
// to be unregistered and gauge to be observed no more.
func wantUnregisteredWhenCollected(t *testing.T, reader sdkmetric.Reader, spy spyMeter, gauge, what string, build func() any) {
	t.Helper()
	func() {
		c := build()
		if _, ok := collect(t, reader)[gauge]; !ok {
			t.Fatalf("%s not observed while the %s lives", gauge, what)
		}
		runtime.KeepAlive(c)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		select {
		case <-spy.unregistered:
			if pts := collect(t, reader)[gauge].Points; len(pts) != 0 {
				t.Errorf("%s still observed after the %s was collected: %v", gauge, what, pts)
			}
			return
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cache callback of an unreachable %s was not unregistered", what)
		}
	}
}

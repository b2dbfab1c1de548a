package middleware_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/middleware"
)

// guardBenchSetup adds, to benchSetup's handlers, the Authenticator followed
// by Guard.Require(Role(Helpdesk Administrator)) over a fake source in which
// the role is active for 8 hours, warmed so that the state is cached. mp is
// the Guard's MeterProvider (nil: the global one, a no-op here).
func guardBenchSetup(b *testing.B, mp metric.MeterProvider) (env *benchEnv, guarded, guardOnly http.Handler, authedReq *http.Request) {
	b.Helper()
	env = newBenchEnv(b, 0)
	b.Cleanup(env.tenant.Close)
	clock := env.tenant.Clock()
	end := clock.Now().Add(8 * time.Hour)
	src := graphcheck.SourceFunc(func(_ context.Context, p graphcheck.Principal) (*graphcheck.State, error) {
		return &graphcheck.State{TenantID: p.TenantID, ObjectID: p.ObjectID, FetchedAt: clock.Now(),
			Roles: []graphcheck.RoleAssignment{
				{RoleDefinitionID: middleware.RoleUserAdministrator, DirectoryScopeID: "/", Window: graphcheck.Window{End: end}},
				{RoleDefinitionID: middleware.RoleHelpdeskAdministrator, DirectoryScopeID: "/", Window: graphcheck.Window{End: end}},
			},
		}, nil
	})
	guard := middleware.MustNewGuard(middleware.GuardConfig{Source: src, Now: clock.Now, Logger: slog.New(slog.DiscardHandler), MeterProvider: mp})
	guardOnly = guard.Require(middleware.Role(middleware.RoleHelpdeskAdministrator))(okHandler)
	guarded = env.auth.Handler(guardOnly)
	rec := httptest.NewRecorder()
	guarded.ServeHTTP(rec, env.req)
	if rec.Code != http.StatusOK {
		b.Fatalf("warm-up: status %d %s", rec.Code, rec.Body)
	}
	// The request as the Authenticator hands it on, for timing the Guard alone.
	env.auth.Handler(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { authedReq = r })).ServeHTTP(rec, env.req)
	return env, guarded, guardOnly, authedReq
}

// BenchmarkGuard measures one warm request (token verified and live state
// cached) through each handler: bare, go-oidc only, pimguard's Authenticator,
// Authenticator + Guard.Require(Role(...)), and the Guard alone on a request
// that already carries the principal; the last two again with an
// OpenTelemetry SDK MeterProvider recording the Guard's metrics (the others
// use the global no-op provider).
func BenchmarkGuard(b *testing.B) {
	env, guarded, guardOnly, authedReq := guardBenchSetup(b, nil)
	b.Run("bare", func(b *testing.B) { serveLoop(b, env.bare, env.req) })
	b.Run("go-oidc-verify", func(b *testing.B) { serveLoop(b, env.goOIDC, env.req) })
	b.Run("pimguard-auth", func(b *testing.B) { serveLoop(b, env.pimguard, env.req) })
	b.Run("pimguard-auth+role", func(b *testing.B) { serveLoop(b, guarded, env.req) })
	b.Run("guard-only", func(b *testing.B) { serveLoop(b, guardOnly, authedReq) })

	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	b.Cleanup(func() { _ = provider.Shutdown(context.Background()) })
	env, guarded, guardOnly, authedReq = guardBenchSetup(b, provider)
	b.Run("pimguard-auth+role+otel-sdk", func(b *testing.B) { serveLoop(b, guarded, env.req) })
	b.Run("guard-only+otel-sdk", func(b *testing.B) { serveLoop(b, guardOnly, authedReq) })
}

// BenchmarkGuardParallel runs warm Authenticator + Guard requests from every
// P for the same principal: the hottest cache key. Compare ns/op with
// -cpu 1,2,4.
func BenchmarkGuardParallel(b *testing.B) {
	env, guarded, _, _ := guardBenchSetup(b, nil)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		w := &discardWriter{h: http.Header{}}
		r := env.req.Clone(context.Background())
		for pb.Next() {
			guarded.ServeHTTP(w, r)
		}
	})
}

// BenchmarkGuardOverhead reports what Guard.Require adds to a warm request
// over the Authenticator alone (ns, allocations, bytes), and the whole
// Authenticator + Guard time as a fraction of a go-oidc-only middleware.
func BenchmarkGuardOverhead(b *testing.B) {
	env, guarded, _, _ := guardBenchSetup(b, nil)
	for b.Loop() {
		ma, mg, mo := timeHandler(env.pimguard, env.req), timeHandler(guarded, env.req), timeHandler(env.goOIDC, env.req)
		b.ReportMetric(mg.NS-ma.NS, "guard-added-ns/op")
		b.ReportMetric(mg.Allocs-ma.Allocs, "guard-added-allocs/op")
		b.ReportMetric(mg.Bytes-ma.Bytes, "guard-added-B/op")
		b.ReportMetric(mg.NS/mo.NS, "x-go-oidc")
	}
}

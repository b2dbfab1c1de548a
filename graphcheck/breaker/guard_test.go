package breaker_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/graphcheck/breaker"
	"github.com/pimguard/pimguard/internal/syncio"
	"github.com/pimguard/pimguard/middleware"
)

const roleID = "62e90394-69f5-4237-9190-012177145e10" // Global Administrator

// activeRole answers every lookup with the role active for an hour.
func activeRole(context.Context, graphcheck.Principal) error { return nil }

// roleSource wraps f so that its states hold the role.
type roleSource struct{ *fakeGraph }

func (r roleSource) Lookup(ctx context.Context, p graphcheck.Principal) (*graphcheck.State, error) {
	s, err := r.fakeGraph.Lookup(ctx, p)
	if s != nil {
		s.Roles = []graphcheck.RoleAssignment{{RoleDefinitionID: roleID, DirectoryScopeID: "/",
			AssignmentType: graphcheck.AssignmentActivated, Window: graphcheck.Window{End: time.Now().Add(time.Hour)}}}
	}
	return s, err
}

// lastRecord is the last JSON record written to l.
func lastRecord(t *testing.T, l *syncio.Buffer) map[string]any {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(l.String()), "\n")
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// guarded serves one request as principal i of tenantA through h.
func guarded(h http.Handler, i int) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, "/admin", nil)
	r = r.WithContext(middleware.ContextWithPrincipal(r.Context(), &middleware.Principal{TenantID: tenantA, ObjectID: oid(i)}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec
}

// Through a Guard: the breaker opens during an outage, an uncached
// principal then gets 503 at once with the rest of the cool-down as
// Retry-After, a cached principal's expired state still serves
// (MaxStale), readiness names the breaker, and the first request after
// the cool-down probes and closes it.
func TestBreakerThroughGuard(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeGraph(activeRole)
		src := breaker.New(roleSource{f}, breaker.Config{Logger: quiet(), Timeout: time.Minute})
		logs := &syncio.Buffer{}
		guard := middleware.MustNewGuard(middleware.GuardConfig{Source: src, CacheTTL: 30 * time.Second, MaxStale: 10 * time.Minute,
			Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
		h := guard.Require(middleware.Role(roleID))(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
		ready := middleware.ReadyHandler(guard)

		if rec := guarded(h, 0); rec.Code != http.StatusOK {
			t.Fatalf("warm-up: %d %s", rec.Code, rec.Body)
		}
		f.set(always(errOutage))
		time.Sleep(31 * time.Second) // principal 0's state expired; MaxStale keeps it
		for i := 1; i <= 5; i++ {
			if rec := guarded(h, i); rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "5" {
				t.Fatalf("principal %d during the outage: %d, Retry-After %q", i, rec.Code, rec.Header().Get("Retry-After"))
			}
		}
		calls := f.callsFor(tenantA)

		time.Sleep(15 * time.Second)
		if rec := guarded(h, 0); rec.Code != http.StatusOK {
			t.Fatalf("the cached principal while open: %d %s", rec.Code, rec.Body)
		}
		if rec := lastRecord(t, logs); rec["state"] != "stale" || !strings.Contains(rec["refresh_error"].(string), "breaker") {
			t.Errorf("record %v, want the stale state and the breaker's error", rec)
		}
		rec := guarded(h, 9)
		if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "45" || !strings.Contains(rec.Body.String(), `"pim_unavailable"`) {
			t.Fatalf("an uncached principal while open: %d, Retry-After %q, %s; want 503 pim_unavailable, 45", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
		}
		if n := f.callsFor(tenantA); n != calls {
			t.Errorf("%d Source calls while open, want 0", n-calls)
		}

		rr := httptest.NewRecorder()
		ready.ServeHTTP(rr, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		if rr.Code != http.StatusServiceUnavailable || !strings.Contains(rr.Body.String(), `"not_ready":["breaker/`+tenantA+`"]`) {
			t.Errorf("readiness while open: %d %s", rr.Code, rr.Body)
		}

		f.set(activeRole) // Graph is back
		time.Sleep(45*time.Second + time.Millisecond)
		if rec := guarded(h, 9); rec.Code != http.StatusOK {
			t.Fatalf("the probe after the cool-down: %d %s", rec.Code, rec.Body)
		}
		if rec := guarded(h, 8); rec.Code != http.StatusOK {
			t.Fatalf("after the probe: %d %s", rec.Code, rec.Body)
		}
		rr = httptest.NewRecorder()
		ready.ServeHTTP(rr, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		if rr.Code != http.StatusOK {
			t.Errorf("readiness after recovery: %d %s", rr.Code, rr.Body)
		}
	})
}

// Guard.Preflight through a breaker around a Source without Preflight is
// ErrPreflightUnsupported, as without the breaker.
func TestGuardPreflightThroughBreaker(t *testing.T) {
	guard := middleware.MustNewGuard(middleware.GuardConfig{Source: breaker.New(newFakeGraph(activeRole), breaker.Config{Logger: quiet()})})
	if err := guard.Preflight(context.Background()); !errors.Is(err, middleware.ErrPreflightUnsupported) {
		t.Fatalf("Preflight: %v", err)
	}
	inner := &reportingGraph{fakeGraph: newFakeGraph(activeRole)}
	guard = middleware.MustNewGuard(middleware.GuardConfig{Source: breaker.New(inner, breaker.Config{Logger: quiet()})})
	if err := guard.Preflight(context.Background()); !errors.Is(err, graphcheck.ErrPermissionDenied) || errors.Is(err, middleware.ErrPreflightUnsupported) {
		t.Fatalf("Preflight: %v", err)
	}
}

package middleware_test

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pimguard/pimguard/cache"
	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/middleware"
)

// reporting is a Source that also reports its health.
type reporting struct {
	graphcheck.Source
	items []graphcheck.HealthCheck
}

func (r reporting) Health() []graphcheck.HealthCheck { return r.items }

// reportingShared is a shared tier that shares nothing (every Fetch fills)
// and reports its health, as redisstore's Store does.
type reportingShared struct{ item graphcheck.HealthCheck }

func (reportingShared) Fetch(ctx context.Context, _ string, fill func(context.Context) (cache.SharedEntry, error)) (cache.SharedEntry, bool, error) {
	e, err := fill(ctx)
	return e, err == nil, err
}
func (reportingShared) Invalidate(context.Context, ...string) error { return nil }
func (reportingShared) InvalidateAll(context.Context) error         { return nil }
func (reportingShared) Subscribe(func([]string)) func()             { return func() {} }
func (s reportingShared) Health() []graphcheck.HealthCheck {
	return []graphcheck.HealthCheck{s.item}
}

// health returns the reporter's items by name.
func healthByName(hr graphcheck.HealthReporter) map[string]graphcheck.HealthCheck {
	m := map[string]graphcheck.HealthCheck{}
	for _, c := range hr.Health() {
		m[c.Name] = c
	}
	return m
}

// The Guard's report: its Source's and shared tier's first, then the last
// lookup outcome per tenant, recorded by lookups only.
func TestGuardHealth(t *testing.T) {
	breakerItem := graphcheck.HealthCheck{Name: "breaker/" + graphtest.TenantID, Ready: false, Detail: "open"}
	sharedItem := graphcheck.HealthCheck{Name: "shared", Ready: true, Degraded: true, Detail: "local-only"}
	var g *guardFixture
	g = newGuardFixture(t, func(c *middleware.GuardConfig) {
		c.Source = reporting{Source: c.Source, items: []graphcheck.HealthCheck{breakerItem}}
		c.Shared = reportingShared{item: sharedItem}
		c.CacheTTL = time.Minute
	})
	tok := g.mint(graphtest.Token{})
	if got := g.guard.Health(); !slices.Equal(got, []graphcheck.HealthCheck{breakerItem, sharedItem}) {
		t.Fatalf("before any lookup: %+v", got)
	}
	graphName := "graph/" + graphtest.TenantID

	g.dir.activateRole(userOID, helpdesk, "/", time.Hour)
	answered := g.clock.Now()
	expect(t, g.do(middleware.Role(helpdesk), tok), http.StatusOK, "")
	got := g.guard.Health()
	if len(got) != 3 || got[0] != breakerItem || got[1] != sharedItem {
		t.Fatalf("items %+v", got)
	}
	if c := got[2]; c.Name != graphName || !c.Ready || c.Degraded || !c.Since.Equal(answered) ||
		!strings.Contains(c.Detail, answered.UTC().Format(time.RFC3339)) {
		t.Fatalf("after an answered lookup: %+v", c)
	}

	// A request served from the cache records nothing.
	g.clock.Advance(30 * time.Second)
	expect(t, g.do(middleware.Role(helpdesk), tok), http.StatusOK, "")
	if c := healthByName(g.guard)[graphName]; !strings.Contains(c.Detail, answered.UTC().Format(time.RFC3339)) {
		t.Fatalf("a cache hit changed the report: %+v", c)
	}

	steps := []struct {
		name     string
		err      error
		degraded bool
		detail   string
	}{
		{"outage", fmt.Errorf("%w: %w: dial tcp: connection refused", graphcheck.ErrUnavailable, graphcheck.ErrOutage), true, "the last 1 Source lookups failed (Graph outage)"},
		{"garbage", fmt.Errorf("%w: unexpected JSON for eyJhbGciOiJSUzI1NiJ9.e30.sig", graphcheck.ErrUnavailable), true, "the last 2 Source lookups failed (Graph unavailable or an unexpected answer)"},
		{"permission", &graphcheck.PermissionError{Permission: "RoleAssignmentSchedule.Read.Directory", Err: graphcheck.ErrPermissionDenied}, true, "(Graph permission missing: RoleAssignmentSchedule.Read.Directory)"},
		{"answered again", nil, false, "the Source answered the last lookup"},
	}
	failedAt := time.Time{}
	for _, s := range steps {
		g.clock.Advance(time.Minute) // the state expires: the next request looks up
		g.dir.fail(s.err)
		if failedAt.IsZero() {
			failedAt = g.clock.Now()
		}
		g.do(middleware.Role(helpdesk), tok)
		c := healthByName(g.guard)[graphName]
		if !c.Ready || c.Degraded != s.degraded || !strings.Contains(c.Detail, s.detail) {
			t.Errorf("%s: %+v, want degraded=%v and %q", s.name, c, s.degraded, s.detail)
		}
		if strings.Contains(c.Detail, "eyJ") || strings.Contains(c.Detail, "connection refused") {
			t.Errorf("%s: the detail quotes the error: %q", s.name, c.Detail)
		}
		// Since is when lookups started failing, or answering again.
		if want := map[bool]time.Time{true: failedAt, false: g.clock.Now()}[s.degraded]; !c.Since.Equal(want) {
			t.Errorf("%s: since %v, want %v", s.name, c.Since, want)
		}
	}
}

func TestReadyHandler(t *testing.T) {
	since := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	ready := graphcheck.HealthCheck{Name: "keys/t1", Ready: true, Since: since, Detail: "fetched"}
	degraded := graphcheck.HealthCheck{Name: "shared", Ready: true, Degraded: true, Detail: "Redis unreachable: local-only"}
	open := graphcheck.HealthCheck{Name: "breaker/t1", Detail: "open"}
	leaky := graphcheck.HealthCheck{Name: "leaky", Ready: true, Detail: "token eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJvaWQiOiJ4In0.c2ln was refused"}
	rep := func(items ...graphcheck.HealthCheck) graphcheck.HealthReporter {
		return reporting{items: items}
	}
	tests := []struct {
		name      string
		reporters []graphcheck.HealthReporter
		method    string
		status    int
		notReady  []string
		checks    int
	}{
		{name: "no reporter", status: http.StatusOK},
		{name: "all ready", reporters: []graphcheck.HealthReporter{rep(ready), rep(ready)}, status: http.StatusOK, checks: 2},
		{name: "degraded is ready", reporters: []graphcheck.HealthReporter{rep(ready, degraded)}, status: http.StatusOK, checks: 2},
		{name: "one not ready", reporters: []graphcheck.HealthReporter{rep(ready), rep(degraded, open)}, status: http.StatusServiceUnavailable, notReady: []string{"breaker/t1"}, checks: 3},
		{name: "HEAD", reporters: []graphcheck.HealthReporter{rep(open)}, method: http.MethodHead, status: http.StatusServiceUnavailable},
		{name: "POST", reporters: []graphcheck.HealthReporter{rep(ready)}, method: http.MethodPost, status: http.StatusMethodNotAllowed},
		{name: "a token in a detail", reporters: []graphcheck.HealthReporter{rep(leaky)}, status: http.StatusOK, checks: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			middleware.ReadyHandler(tt.reporters...).ServeHTTP(rec, httptest.NewRequest(cmp.Or(tt.method, http.MethodGet), "/readyz", nil))
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d; body %s", rec.Code, tt.status, rec.Body)
			}
			if tt.method != "" {
				return
			}
			if h := rec.Header(); h.Get("Content-Type") != "application/json; charset=utf-8" || h.Get("Cache-Control") != "no-store" {
				t.Errorf("headers %v", h)
			}
			if strings.Contains(rec.Body.String(), "eyJ") {
				t.Errorf("body quotes a token: %s", rec.Body)
			}
			var body struct {
				Ready    bool                     `json:"ready"`
				NotReady []string                 `json:"not_ready"`
				Checks   []graphcheck.HealthCheck `json:"checks"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %s: %v", rec.Body, err)
			}
			if body.Ready != (tt.status == http.StatusOK) || !slices.Equal(body.NotReady, tt.notReady) || len(body.Checks) != tt.checks || body.Checks == nil {
				t.Errorf("body %s", rec.Body)
			}
		})
	}

	t.Run("body", func(t *testing.T) {
		rec := httptest.NewRecorder()
		middleware.ReadyHandler(rep(ready), rep(open)).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		want := `{"ready":false,"not_ready":["breaker/t1"],"checks":[{"name":"keys/t1","ready":true,"detail":"fetched","since":"2026-11-25T10:00:00Z"},{"name":"breaker/t1","ready":false,"detail":"open"}]}`
		if got := strings.TrimSpace(rec.Body.String()); got != want {
			t.Errorf("body\n%s\nwant\n%s", got, want)
		}
	})

	t.Run("nil reporter", func(t *testing.T) {
		defer func() {
			if recover() == nil {
				t.Error("ReadyHandler(nil) did not panic")
			}
		}()
		middleware.ReadyHandler(rep(ready), nil)
	})
}

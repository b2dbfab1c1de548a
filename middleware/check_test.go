package middleware_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/middleware"
)

// checkHandler decides req inside the handler with Guard.Check and writes
// the rejection with Guard.WriteRejection, or answers 200 "done".
func checkHandler(g *middleware.Guard, req middleware.Requirement) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rej := g.Check(r, req); rej != nil {
			g.WriteRejection(w, r, rej)
			return
		}
		_, _ = w.Write([]byte("done"))
	})
}

// TestGuardCheck decides each case twice, with Require in front of the
// handler and with Check inside it: the answer (status, headers, body) and
// the decision record must be the same, and each decision is recorded and
// counted exactly once.
func TestGuardCheck(t *testing.T) {
	scopedHelpdesk := middleware.RoleInScope(helpdesk, middleware.AdministrativeUnitScope(auID))
	inUnit := middleware.AnyOf(middleware.Role(helpdesk), middleware.Role(userAdmin), scopedHelpdesk)
	outOfUnit := middleware.AnyOf(middleware.Role(helpdesk), middleware.Role(userAdmin),
		middleware.RoleInScope(helpdesk, middleware.AdministrativeUnitScope(otherAU)))
	outage := fmt.Errorf("%w: %w: 503 from Graph", graphcheck.ErrUnavailable, graphcheck.ErrOutage)

	tests := []struct {
		name        string
		req         middleware.Requirement
		setup       func(g *guardFixture)
		noPrincipal bool
		status      int
		code        string
		outcome     string
		retryAfter  string
	}{
		{name: "allowed: scoped role in the target's unit", req: inUnit, status: http.StatusOK, outcome: "allow",
			setup: func(g *guardFixture) {
				g.dir.activateRole(userOID, helpdesk, middleware.AdministrativeUnitScope(auID), time.Hour)
			}},
		{name: "denied: scoped role in another unit", req: outOfUnit, status: http.StatusForbidden, code: middleware.CodeRoleNotActive, outcome: "deny",
			setup: func(g *guardFixture) {
				g.dir.activateRole(userOID, helpdesk, middleware.AdministrativeUnitScope(auID), time.Hour)
			}},
		{name: "denied: scoped role ended", req: inUnit, status: http.StatusForbidden, code: middleware.CodeRoleNotActive, outcome: "deny",
			setup: func(g *guardFixture) {
				g.dir.activateRole(userOID, helpdesk, middleware.AdministrativeUnitScope(auID), time.Minute)
				g.clock.Advance(time.Minute)
			}},
		{name: "source fails: 503", req: inUnit, status: http.StatusServiceUnavailable, code: middleware.CodePIMUnavailable, outcome: "error", retryAfter: "5",
			setup: func(g *guardFixture) { g.dir.fail(outage) }},
		{name: "no principal: 500", req: inUnit, noPrincipal: true, status: http.StatusInternalServerError, code: middleware.CodeInternal, outcome: "error"},
		{name: "token-only requirement", req: middleware.Scope("Directory.Write"), status: http.StatusForbidden, code: middleware.CodeScopeMissing, outcome: "deny"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var answers [2]*httptest.ResponseRecorder
			var records [2]map[string]any
			for i, how := range []string{"require", "check"} {
				provider, reader := sdkProvider(t)
				g := newGuardFixture(t, func(c *middleware.GuardConfig) {
					c.MeterProvider = provider
				})
				if tt.setup != nil {
					tt.setup(g)
				}
				var h http.Handler
				if how == "require" {
					h = g.guard.Require(tt.req)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("done")) }))
				} else {
					h = checkHandler(g.guard, tt.req)
				}
				if !tt.noPrincipal {
					h = g.auth.Handler(h)
				}
				r := httptest.NewRequest(http.MethodPost, "/api/users/42/reset-password", nil)
				r.Header.Set("Authorization", "Bearer "+g.mint(graphtest.Token{}))
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, r)
				expect(t, rec, tt.status, tt.code)
				if got := rec.Header().Get("Retry-After"); got != tt.retryAfter {
					t.Errorf("%s: Retry-After %q, want %q", how, got, tt.retryAfter)
				}
				recs := g.logRecords()
				if len(recs) != 1 {
					t.Fatalf("%s: %d decision records, want 1:\n%s", how, len(recs), g.glogs)
				}
				if recs[0]["outcome"] != tt.outcome {
					t.Errorf("%s: record outcome %v, want %s", how, recs[0]["outcome"], tt.outcome)
				}
				if n := collect(t, reader)["pimguard.decisions"].Total(); n != 1 {
					t.Errorf("%s: pimguard.decisions counted %d, want 1", how, n)
				}
				answers[i], records[i] = rec, recs[0]
			}
			if a, b := answers[0], answers[1]; a.Body.String() != b.Body.String() ||
				a.Header().Get("WWW-Authenticate") != b.Header().Get("WWW-Authenticate") {
				t.Errorf("Require and Check answer differently:\n%d %s %q\n%d %s %q", a.Code, a.Body, a.Header(), b.Code, b.Body, b.Header())
			}
			for _, k := range []string{"level", "msg", "requirement", "outcome", "state", "code", "status", "required", "tenant", "oid"} {
				if fmt.Sprint(records[0][k]) != fmt.Sprint(records[1][k]) {
					t.Errorf("record %q: Require %v, Check %v", k, records[0][k], records[1][k])
				}
			}
		})
	}
}

// A requirement built per request that is invalid is refused with 500,
// recorded at Error, never a panic and never a decision.
func TestGuardCheckInvalidRequirement(t *testing.T) {
	provider, reader := sdkProvider(t)
	g := newGuardFixture(t, func(c *middleware.GuardConfig) {
		c.MeterProvider = provider
	})
	var targetUnits []string // the target user is in no administrative unit
	alternatives := []middleware.Requirement{}
	for _, au := range targetUnits {
		alternatives = append(alternatives, middleware.RoleInScope(helpdesk, middleware.AdministrativeUnitScope(au)))
	}
	for _, req := range []middleware.Requirement{middleware.AnyOf(alternatives...), middleware.Role("helpdesk"), {}} {
		r := httptest.NewRequest(http.MethodPost, "/api/users/42/reset-password", nil)
		r.Header.Set("Authorization", "Bearer "+g.mint(graphtest.Token{}))
		rec := httptest.NewRecorder()
		g.auth.Handler(checkHandler(g.guard, req)).ServeHTTP(rec, r)
		expect(t, rec, http.StatusInternalServerError, middleware.CodeInternal)
		if rec := g.lastRecord(); rec["level"] != "ERROR" || rec["outcome"] != "error" || rec["oid"] != userOID {
			t.Errorf("record %v", rec)
		}
	}
	if n := g.dir.calls.Load(); n != 0 {
		t.Errorf("%d lookups for invalid requirements, want 0", n)
	}
	if n := collect(t, reader)["pimguard.decisions"].Total(); n != 3 {
		t.Errorf("pimguard.decisions counted %d, want 3", n)
	}
}

// Several Checks in one request share the cached state: one lookup, one
// record each.
func TestGuardCheckTwiceOneLookup(t *testing.T) {
	g := newGuardFixture(t, nil)
	g.dir.activateRole(userOID, helpdesk, "/", time.Hour)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rej := g.guard.Check(r, middleware.Role(helpdesk)); rej != nil {
			t.Errorf("first Check: %v", rej.Err)
		}
		if rej := g.guard.Check(r, middleware.Role(globalAdmin)); rej == nil || rej.Code != middleware.CodeRoleNotActive {
			t.Errorf("second Check: %+v", rej)
		}
	})
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Authorization", "Bearer "+g.mint(graphtest.Token{}))
	g.auth.Handler(h).ServeHTTP(httptest.NewRecorder(), r)
	if n := g.dir.calls.Load(); n != 1 {
		t.Errorf("%d lookups, want 1", n)
	}
	if n := len(g.logRecords()); n != 2 {
		t.Errorf("%d records, want 2", n)
	}
}

// WriteRejection uses the Guard's ErrorWriter, and a nil rejection writes
// nothing.
func TestGuardWriteRejection(t *testing.T) {
	var wrote *middleware.Rejection
	g := newGuardFixture(t, func(c *middleware.GuardConfig) {
		c.ErrorWriter = func(w http.ResponseWriter, _ *http.Request, rej *middleware.Rejection) {
			wrote = rej
			w.WriteHeader(418)
		}
	})
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	rec := httptest.NewRecorder()
	g.guard.WriteRejection(rec, r, nil)
	if rec.Code != http.StatusOK || rec.Body.Len() != 0 || wrote != nil || len(rec.Header()) != 0 {
		t.Fatalf("nil rejection wrote %d %q %v", rec.Code, rec.Body, rec.Header())
	}
	rej := g.guard.Check(r.WithContext(context.Background()), middleware.Role(helpdesk))
	g.guard.WriteRejection(rec, r, rej)
	if rec.Code != 418 || wrote != rej || rej.Code != middleware.CodeInternal {
		t.Fatalf("status %d, wrote %+v", rec.Code, wrote)
	}
}

package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/middleware"
)

// TestRejectionForOuterSentinelWins: when an error wraps several sentinels,
// the outermost (the left one of a "%w: %w") decides what the client is
// told, whatever order the sentinels were declared in. The rows marked
// "was" were classified by the inner sentinel when RejectionFor scanned a
// table in order.
func TestRejectionForOuterSentinelWins(t *testing.T) {
	type outcome struct {
		status     int
		oauth      string
		code       string
		retryAfter time.Duration
	}
	tests := []struct {
		name string
		err  error
		want outcome
	}{
		{"pim unavailable over account disabled", fmt.Errorf("%w: %w", middleware.ErrPIMUnavailable, middleware.ErrAccountDisabled),
			outcome{503, "", middleware.CodePIMUnavailable, 5 * time.Second}},
		{"pim unavailable over role not active (was role_not_active)", fmt.Errorf("%w: %w", middleware.ErrPIMUnavailable, middleware.ErrRoleNotActive),
			outcome{503, "", middleware.CodePIMUnavailable, 5 * time.Second}},
		{"account deleted over token expired (was token_expired)", fmt.Errorf("%w: %w", middleware.ErrAccountDeleted, middleware.ErrTokenExpired),
			outcome{401, middleware.OAuthInvalidToken, middleware.CodeAccountDeleted, 0}},
		{"outer of a nested double wrap (was token_missing)", fmt.Errorf("guard: %w", fmt.Errorf("%w: %w", middleware.ErrUserAtRisk, middleware.ErrTokenMissing)),
			outcome{401, middleware.OAuthInvalidToken, middleware.CodeUserAtRisk, 0}},
		{"first of errors.Join (was token_malformed)", errors.Join(middleware.ErrSessionRevoked, middleware.ErrTokenMalformed),
			outcome{401, middleware.OAuthInvalidToken, middleware.CodeSessionRevoked, 0}},
		{"a foreign error before the sentinel", fmt.Errorf("%w: %w", graphcheck.ErrUnavailable, middleware.ErrKeysUnavailable),
			outcome{503, "", middleware.CodeKeysUnavailable, 5 * time.Second}},
		{"no sentinel", fmt.Errorf("%w: %w", graphcheck.ErrUnavailable, middleware.ErrNoPrincipal),
			outcome{500, "", middleware.CodeInternal, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rej := middleware.RejectionFor(tt.err, "api")
			if got := (outcome{rej.Status, rej.OAuthError, rej.Code, rej.RetryAfter}); got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if rej.Err != tt.err || rej.Realm != "api" || rej.Description == "" {
				t.Errorf("Err %v, Realm %q, Description %q", rej.Err, rej.Realm, rej.Description)
			}
		})
	}
}

// BenchmarkRejectionFor classifies errors found first and last in the
// rejection table as it was before the table became the sentinels
// themselves, a Guard denial as Guard wraps it, a double wrap, and an
// unknown error (500). Each allocates the one *Rejection it returns.
func BenchmarkRejectionFor(b *testing.B) {
	for _, bc := range []struct {
		name string
		err  error
	}{
		{"token_missing", middleware.ErrTokenMissing},
		{"user_at_risk", fmt.Errorf("%w: riskLevel high, riskState atRisk", middleware.ErrUserAtRisk)},
		{"role_not_active", fmt.Errorf("%w: role:%s@/", middleware.ErrRoleNotActive, globalAdmin)},
		{"pim_unavailable", fmt.Errorf("%w: %w", middleware.ErrPIMUnavailable, graphcheck.ErrUnavailable)},
		{"internal_error", errors.New("a bug")},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if middleware.RejectionFor(bc.err, "") == nil {
					b.Fatal("nil rejection")
				}
			}
		})
	}
}

// BenchmarkGuardDeny measures a warm denial (token verified, live state
// cached, the required role not active): the Guard alone on a request that
// already carries the principal, and Authenticator + Guard. Compare with
// BenchmarkGuard's allowed requests.
func BenchmarkGuardDeny(b *testing.B) {
	env := newBenchEnv(b, 0)
	b.Cleanup(env.tenant.Close)
	clock := env.tenant.Clock()
	end := clock.Now().Add(8 * time.Hour)
	src := graphcheck.SourceFunc(func(_ context.Context, p graphcheck.Principal) (*graphcheck.State, error) {
		return &graphcheck.State{TenantID: p.TenantID, ObjectID: p.ObjectID, FetchedAt: clock.Now(),
			Roles: []graphcheck.RoleAssignment{{RoleDefinitionID: userAdmin, DirectoryScopeID: "/", Window: graphcheck.Window{End: end}}},
		}, nil
	})
	guard := middleware.MustNewGuard(middleware.GuardConfig{Source: src, Now: clock.Now, Logger: slog.New(slog.DiscardHandler)})
	guardOnly := guard.Require(middleware.Role(globalAdmin))(okHandler)
	guarded := env.auth.Handler(guardOnly)
	rec := httptest.NewRecorder()
	guarded.ServeHTTP(rec, env.req)
	if rec.Code != http.StatusForbidden {
		b.Fatalf("warm-up: status %d %s", rec.Code, rec.Body)
	}
	var authedReq *http.Request
	env.auth.Handler(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { authedReq = r })).ServeHTTP(rec, env.req)
	b.Run("pimguard-auth+role", func(b *testing.B) { serveLoop(b, guarded, env.req) })
	b.Run("guard-only", func(b *testing.B) { serveLoop(b, guardOnly, authedReq) })
}

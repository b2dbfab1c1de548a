package forwardauth_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/pimguard/pimguard/forwardauth"
	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/middleware"
)

const (
	janeOID  = "0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e" // Helpdesk Administrator, eligible and activated
	bobOID   = "5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b" // no role
	auditors = "6f7a8b9c-0d1e-4f2a-9b3c-4d5e6f7a8b9c"
	helpdesk = middleware.RoleHelpdeskAdministrator
)

// stack is a fake tenant, an Authenticator and a Guard on its clock, and
// the Server under test.
type stack struct {
	tenant *graphtest.Server
	clock  *graphtest.Clock
	server *forwardauth.Server
	guard  *middleware.Guard
	// outage makes every lookup fail as a Graph outage.
	outage atomic.Bool
	// metrics reads what the Server recorded.
	metrics *sdkmetric.ManualReader
}

// testRules are the rules of the example configuration.
func testRules() []forwardauth.Rule {
	return []forwardauth.Rule{
		{Name: "reset-password", Patterns: []string{"POST /api/users/{id}/reset-password"},
			Require: middleware.AnyOf(middleware.Role(helpdesk), middleware.Role(middleware.RoleUserAdministrator))},
		{Patterns: []string{"GET /api/audit"}, Require: middleware.GroupMember(auditors)},
		{Name: "me", Patterns: []string{"GET /api/me"}, Access: forwardauth.AccessAuthenticated},
		{Name: "health", Patterns: []string{"GET /healthz", "GET /static/"}, Access: forwardauth.AccessPublic},
	}
}

func newStack(t *testing.T, rules []forwardauth.Rule) *stack {
	t.Helper()
	s := &stack{clock: graphtest.NewClock(time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC))}
	s.tenant = graphtest.NewServer(graphtest.Options{Clock: s.clock})
	t.Cleanup(s.tenant.Close)
	for _, oid := range []string{janeOID, bobOID} {
		must(t, s.tenant.AddUser(oid, oid[:4]+"@contoso.example"))
	}
	must(t, s.tenant.MakeEligible(janeOID, helpdesk, "/", time.Time{}))
	_, err := s.tenant.ActivateRole(janeOID, helpdesk, "/", time.Hour)
	must(t, err)

	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	auth, err := middleware.NewAuthenticator(context.Background(), middleware.AuthenticatorConfig{
		Tenants: []string{graphtest.TenantID}, Audiences: []string{graphtest.APIClientID},
		Authority: s.tenant.URL, Now: s.clock.Now, Logger: discard, ErrorWriter: forwardauth.WriteRejection,
	})
	must(t, err)
	t.Cleanup(func() { _ = auth.Close() })
	src := s.tenant.Source()
	guard, err := middleware.NewGuard(middleware.GuardConfig{
		Source: graphcheck.SourceFunc(func(ctx context.Context, p graphcheck.Principal) (*graphcheck.State, error) {
			if s.outage.Load() {
				return nil, graphcheck.ErrOutage
			}
			return src.Lookup(ctx, p)
		}),
		CacheTTL: 30 * time.Second, Now: s.clock.Now, Logger: discard, ErrorWriter: forwardauth.WriteRejection,
	})
	must(t, err)
	s.guard = guard
	s.metrics = sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(s.metrics))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	s.server, err = forwardauth.New(forwardauth.Config{Rules: rules, Authenticator: auth, Guard: guard,
		Logger: discard, Now: s.clock.Now, MeterProvider: mp})
	must(t, err)
	return s
}

func (s *stack) token(oid string) string {
	return "Bearer " + s.tenant.MustMint(graphtest.Token{ObjectID: oid})
}

// do serves req with h and returns the recorded response.
func do(h http.Handler, req *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

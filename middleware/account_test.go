package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/middleware"
)

// accountSource wraps a fakeDirectory and adds the account and risk facts a
// lookup asks for, the way a Graph source would; it records each lookup's
// Need.
type accountSource struct {
	dir *fakeDirectory

	mu       sync.Mutex
	accounts map[string]graphcheck.Account // by object ID; missing: enabled, nothing revoked
	risks    map[string]graphcheck.Risk    // by object ID; missing: no record
	omit     bool                          // answer without the facts asked for
	needs    []graphcheck.Need
}

func newAccountSource(dir *fakeDirectory) *accountSource {
	return &accountSource{dir: dir, accounts: map[string]graphcheck.Account{}, risks: map[string]graphcheck.Risk{}}
}

func (a *accountSource) Lookup(ctx context.Context, p graphcheck.Principal) (*graphcheck.State, error) {
	s, err := a.dir.lookup(ctx, p)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.needs = append(a.needs, p.Need)
	if a.omit {
		return s, nil
	}
	if p.Need.Has(graphcheck.NeedAccount) {
		acc, ok := a.accounts[p.ObjectID]
		if !ok {
			acc = graphcheck.Account{Enabled: true}
		}
		s.Account = &acc
	}
	if p.Need.Has(graphcheck.NeedRisk) && !p.ServicePrincipal {
		r, ok := a.risks[p.ObjectID]
		if !ok {
			r = graphcheck.Risk{Level: graphcheck.RiskLevelNone, State: graphcheck.RiskStateNone}
		}
		s.Risk = &r
	}
	return s, nil
}

func (a *accountSource) set(f func(a *accountSource)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f(a)
}

func (a *accountSource) lastNeed() graphcheck.Need {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.needs) == 0 {
		return 0
	}
	return a.needs[len(a.needs)-1]
}

// newAccountGuardFixture is a guardFixture whose Guard makes the checks
// over an accountSource on the fixture's directory, logging nothing.
func newAccountGuardFixture(t *testing.T, checks middleware.AccountChecks) (*guardFixture, *accountSource) {
	t.Helper()
	g := newGuardFixture(t, nil)
	src := newAccountSource(g.dir)
	g.guard = middleware.MustNewGuard(middleware.GuardConfig{Source: src, Now: g.clock.Now, AccountChecks: checks,
		Logger: slog.New(slog.DiscardHandler)})
	return g, src
}

func TestAccountChecks(t *testing.T) {
	all := middleware.CheckAccountEnabled | middleware.CheckSessionsRevoked | middleware.CheckPasswordChanged | middleware.CheckUserRisk
	// t0 is the fixture clock's start; tokens are issued at t0+10s.
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	issued := t0.Add(10 * time.Second)
	for _, tc := range []struct {
		name    string
		checks  middleware.AccountChecks
		app     bool
		account *graphcheck.Account
		risk    *graphcheck.Risk
		status  int
		code    string
	}{
		{name: "no checks ignore a disabled account", checks: 0, account: &graphcheck.Account{Enabled: false}, status: http.StatusOK},
		{name: "enabled account", checks: all, status: http.StatusOK},
		{name: "disabled account", checks: middleware.CheckAccountEnabled, account: &graphcheck.Account{}, status: http.StatusUnauthorized, code: middleware.CodeAccountDisabled},
		{name: "sessions revoked after the token", checks: middleware.CheckSessionsRevoked,
			account: &graphcheck.Account{Enabled: true, SessionsValidFrom: issued.Add(time.Second)}, status: http.StatusUnauthorized, code: middleware.CodeSessionRevoked},
		{name: "sessions revoked in the token's second", checks: middleware.CheckSessionsRevoked,
			account: &graphcheck.Account{Enabled: true, SessionsValidFrom: issued.Add(900 * time.Millisecond)}, status: http.StatusOK},
		{name: "sessions revoked before the token", checks: middleware.CheckSessionsRevoked,
			account: &graphcheck.Account{Enabled: true, SessionsValidFrom: issued.Add(-time.Second)}, status: http.StatusOK},
		{name: "sessions check ignores a disabled account", checks: middleware.CheckSessionsRevoked,
			account: &graphcheck.Account{Enabled: false}, status: http.StatusOK},
		{name: "password changed after the token", checks: middleware.CheckPasswordChanged,
			account: &graphcheck.Account{Enabled: true, PasswordChanged: issued.Add(time.Minute)}, status: http.StatusUnauthorized, code: middleware.CodeSessionRevoked},
		{name: "password check off ignores a password change", checks: middleware.CheckSessionsRevoked,
			account: &graphcheck.Account{Enabled: true, PasswordChanged: issued.Add(time.Minute)}, status: http.StatusOK},
		{name: "password changed before the token", checks: middleware.CheckPasswordChanged,
			account: &graphcheck.Account{Enabled: true, PasswordChanged: issued.Add(-time.Hour)}, status: http.StatusOK},
		{name: "high risk", checks: middleware.CheckUserRisk, risk: &graphcheck.Risk{Level: "high", State: "atRisk", Recorded: true},
			status: http.StatusUnauthorized, code: middleware.CodeUserAtRisk},
		{name: "confirmed compromised", checks: middleware.CheckUserRisk, risk: &graphcheck.Risk{Level: "High", State: "ConfirmedCompromised", Recorded: true},
			status: http.StatusUnauthorized, code: middleware.CodeUserAtRisk},
		{name: "high risk dismissed", checks: middleware.CheckUserRisk, risk: &graphcheck.Risk{Level: "high", State: "dismissed", Recorded: true}, status: http.StatusOK},
		{name: "medium risk", checks: middleware.CheckUserRisk, risk: &graphcheck.Risk{Level: "medium", State: "atRisk", Recorded: true}, status: http.StatusOK},
		{name: "risk check off", checks: all &^ middleware.CheckUserRisk, risk: &graphcheck.Risk{Level: "high", State: "atRisk", Recorded: true}, status: http.StatusOK},
		{name: "service principal disabled", checks: all, app: true, account: &graphcheck.Account{}, status: http.StatusUnauthorized, code: middleware.CodeAccountDisabled},
		{name: "service principal skips the user-only checks", checks: all, app: true,
			account: &graphcheck.Account{Enabled: true, SessionsValidFrom: issued.Add(time.Hour), PasswordChanged: issued.Add(time.Hour)},
			risk:    &graphcheck.Risk{Level: "high", State: "atRisk", Recorded: true}, status: http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, src := newAccountGuardFixture(t, tc.checks)
			oid := userOID
			if tc.app {
				oid = appOID
			}
			g.dir.activateRole(oid, userAdmin, "/", time.Hour)
			src.set(func(a *accountSource) {
				if tc.account != nil {
					a.accounts[oid] = *tc.account
				}
				if tc.risk != nil {
					a.risks[oid] = *tc.risk
				}
			})
			g.clock.Set(issued)
			tok := g.mint(graphtest.Token{ObjectID: oid, App: tc.app, Roles: appRoles(tc.app)})
			g.clock.Advance(time.Minute)
			rec := g.do(middleware.Role(userAdmin), tok)
			expect(t, rec, tc.status, tc.code)
			if tc.status == http.StatusUnauthorized {
				if ch := rec.Header().Get("WWW-Authenticate"); !strings.Contains(ch, `error="invalid_token"`) {
					t.Errorf("WWW-Authenticate %q", ch)
				}
				if g.served.Load() != 0 {
					t.Error("the handler was called")
				}
			}
			want := tc.checks
			if tc.app {
				want &= middleware.CheckAccountEnabled
			}
			var wantNeed graphcheck.Need
			if want&(middleware.CheckAccountEnabled|middleware.CheckSessionsRevoked|middleware.CheckPasswordChanged) != 0 {
				wantNeed |= graphcheck.NeedAccount
			}
			if want&middleware.CheckUserRisk != 0 {
				wantNeed |= graphcheck.NeedRisk
			}
			if got := src.lastNeed(); got != wantNeed {
				t.Errorf("the source was asked for %b, want %b", got, wantNeed)
			}
		})
	}
}

func appRoles(app bool) []string {
	if app {
		return []string{"Helpdesk.Act"}
	}
	return nil
}

func TestAccountChecksDeletedAccount(t *testing.T) {
	for _, tc := range []struct {
		checks middleware.AccountChecks
		code   string
	}{
		{0, middleware.CodePrincipalNotFound},
		{middleware.CheckSessionsRevoked, middleware.CodePrincipalNotFound},
		{middleware.CheckAccountEnabled, middleware.CodeAccountDeleted},
	} {
		t.Run(tc.checks.String(), func(t *testing.T) {
			g := newGuardFixture(t, func(c *middleware.GuardConfig) { c.AccountChecks = tc.checks })
			g.dir.fail(fmt.Errorf("%w: GET /users/{id} answered 404 Request_ResourceNotFound", graphcheck.ErrPrincipalNotFound))
			rec := g.do(middleware.Role(userAdmin), g.mint(graphtest.Token{}))
			expect(t, rec, http.StatusUnauthorized, tc.code)
		})
	}
}

// With a check on, a requirement decided from the token alone still looks
// the account up, and a source that leaves the account out fails closed.
func TestAccountChecksNeedTheLiveState(t *testing.T) {
	g, src := newAccountGuardFixture(t, middleware.CheckAccountEnabled)
	tok := g.mint(graphtest.Token{})
	expect(t, g.do(middleware.Scope("access_as_user"), tok), http.StatusOK, "")
	if n := g.dir.calls.Load(); n != 1 {
		t.Fatalf("%d lookups for a scope-only route with account checks, want 1", n)
	}
	src.set(func(a *accountSource) { a.accounts[userOID] = graphcheck.Account{Enabled: false} })
	g.guard.Purge(graphtest.TenantID, userOID)
	expect(t, g.do(middleware.Scope("access_as_user"), tok), http.StatusUnauthorized, middleware.CodeAccountDisabled)

	for _, checks := range []middleware.AccountChecks{middleware.CheckAccountEnabled, middleware.CheckUserRisk} {
		src.set(func(a *accountSource) { a.omit = true })
		g.guard = middleware.MustNewGuard(middleware.GuardConfig{Source: src, Now: g.clock.Now, AccountChecks: checks, Logger: slog.New(slog.DiscardHandler)})
		expect(t, g.do(middleware.Scope("access_as_user"), tok), http.StatusServiceUnavailable, middleware.CodePIMUnavailable)
	}
}

// TestAccountChecksStateKeyedByKind sends an app-only request and then a
// user request for the same object ID through one Guard whose Source
// honours Need: the app-only lookup asks for no user-only fact, so its state
// has no account or risk. The user request must get a lookup of its own and
// be decided on the user's facts; a Source that leaves them out fails closed.
// (Keyed by tenant/object alone, the user request was served the app-only
// state: the sessions check dereferenced its nil account, and the risk
// check passed on its nil risk.)
func TestAccountChecksStateKeyedByKind(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	issued := t0.Add(10 * time.Second)
	both := graphcheck.NeedAccount | graphcheck.NeedRisk
	for _, tc := range []struct {
		name    string
		checks  middleware.AccountChecks
		account graphcheck.Account
		risk    graphcheck.Risk
		omit    bool            // the Source answers without the facts asked for
		need    graphcheck.Need // what the user lookup asks for
		status  int
		code    string
	}{
		{name: "sessions revoked", checks: middleware.CheckSessionsRevoked | middleware.CheckUserRisk,
			account: graphcheck.Account{Enabled: true, SessionsValidFrom: issued.Add(time.Second)}, need: both,
			status: http.StatusUnauthorized, code: middleware.CodeSessionRevoked},
		{name: "password changed", checks: middleware.CheckPasswordChanged,
			account: graphcheck.Account{Enabled: true, PasswordChanged: issued.Add(time.Second)}, need: graphcheck.NeedAccount,
			status: http.StatusUnauthorized, code: middleware.CodeSessionRevoked},
		{name: "high risk", checks: middleware.CheckAccountEnabled | middleware.CheckUserRisk,
			account: graphcheck.Account{Enabled: true}, risk: graphcheck.Risk{Level: "high", State: "atRisk", Recorded: true}, need: both,
			status: http.StatusUnauthorized, code: middleware.CodeUserAtRisk},
		{name: "source omits the facts", checks: middleware.CheckSessionsRevoked | middleware.CheckUserRisk, omit: true, need: both,
			status: http.StatusServiceUnavailable, code: middleware.CodePIMUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, src := newAccountGuardFixture(t, tc.checks)
			g.dir.activateRole(userOID, userAdmin, "/", time.Hour)
			src.set(func(a *accountSource) {
				a.accounts[userOID], a.risks[userOID], a.omit = tc.account, tc.risk, tc.omit
			})
			g.clock.Set(issued)
			app := g.mint(graphtest.Token{ObjectID: userOID, App: true, Roles: appRoles(true)})
			user := g.mint(graphtest.Token{ObjectID: userOID})
			g.clock.Advance(time.Minute)

			expect(t, g.do(middleware.Role(userAdmin), app), http.StatusOK, "")
			expect(t, g.do(middleware.Role(userAdmin), user), tc.status, tc.code)
			if n := g.dir.calls.Load(); n != 2 {
				t.Errorf("%d lookups for an app-only and a user request, want 2", n)
			}
			if g.dir.lastSP.Load() {
				t.Error("the user request's lookup was for a service principal")
			}
			if got := src.lastNeed(); got != tc.need {
				t.Errorf("the user lookup asked for %b, want %b", got, tc.need)
			}
		})
	}
}

func TestAccountChecksText(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want middleware.AccountChecks
		str  string
		err  bool
	}{
		{"", 0, "", false},
		{" , ", 0, "", false},
		{"enabled", middleware.CheckAccountEnabled, "enabled", false},
		{"risk, Sessions ,PASSWORD,enabled", middleware.CheckAccountEnabled | middleware.CheckSessionsRevoked | middleware.CheckPasswordChanged | middleware.CheckUserRisk,
			"enabled,sessions,password,risk", false},
		{"enabled,enabled", middleware.CheckAccountEnabled, "enabled", false},
		{"disabled", 0, "", true},
		{"enabled;risk", 0, "", true},
	} {
		got := middleware.CheckUserRisk // UnmarshalText must replace it, or keep it on error
		err := got.UnmarshalText([]byte(tc.in))
		if tc.err {
			tc.want = middleware.CheckUserRisk
		}
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("UnmarshalText(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.err)
			continue
		}
		if err == nil {
			text, merr := got.MarshalText()
			var back middleware.AccountChecks
			if merr != nil || back.UnmarshalText(text) != nil || back != got {
				t.Errorf("MarshalText(%v) = %q, %v: does not read back", got, text, merr)
			}
		}
		if err != nil && !strings.Contains(err.Error(), "enabled, sessions, password, risk") {
			t.Errorf("error %q does not list the names", err)
		}
		if !tc.err && got.String() != tc.str {
			t.Errorf("String() = %q, want %q", got.String(), tc.str)
		}
	}
	if _, err := middleware.NewGuard(middleware.GuardConfig{Source: graphcheck.SourceFunc(nil), AccountChecks: 1 << 7}); err == nil {
		t.Error("NewGuard accepted an unknown account check")
	}
}

// preflighter is a Source with a Preflight that records what it was asked.
type preflighter struct {
	graphcheck.SourceFunc
	mu   sync.Mutex
	need []graphcheck.Need
	err  error
}

func (p *preflighter) Preflight(_ context.Context, need graphcheck.Need) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.need = append(p.need, need)
	return p.err
}

func TestGuardPreflight(t *testing.T) {
	g := middleware.MustNewGuard(middleware.GuardConfig{Source: graphcheck.SourceFunc(func(context.Context, graphcheck.Principal) (*graphcheck.State, error) {
		return nil, errors.New("unused")
	})})
	if err := g.Preflight(context.Background()); !errors.Is(err, middleware.ErrPreflightUnsupported) {
		t.Errorf("Preflight with a SourceFunc: %v, want ErrPreflightUnsupported", err)
	}
	for _, tc := range []struct {
		checks middleware.AccountChecks
		need   graphcheck.Need
	}{
		{0, 0},
		{middleware.CheckAccountEnabled, graphcheck.NeedAccount},
		{middleware.CheckPasswordChanged, graphcheck.NeedAccount},
		{middleware.CheckUserRisk, graphcheck.NeedRisk},
		{middleware.CheckSessionsRevoked | middleware.CheckUserRisk, graphcheck.NeedAccount | graphcheck.NeedRisk},
	} {
		pf := &preflighter{}
		g := middleware.MustNewGuard(middleware.GuardConfig{Source: pf, AccountChecks: tc.checks})
		if err := g.Preflight(context.Background()); err != nil {
			t.Fatal(err)
		}
		if len(pf.need) != 1 || pf.need[0] != tc.need {
			t.Errorf("checks %v: Preflight asked for %v, want [%b]", tc.checks, pf.need, tc.need)
		}
	}
	denied := &graphcheck.PermissionError{Permission: "User.Read.All", Request: "/users", Code: "Authorization_RequestDenied", Err: graphcheck.ErrPermissionDenied}
	pf := &preflighter{err: denied}
	err := middleware.MustNewGuard(middleware.GuardConfig{Source: pf}).Preflight(context.Background())
	var pe *graphcheck.PermissionError
	if !errors.As(err, &pe) || pe.Permission != "User.Read.All" || !strings.Contains(err.Error(), "grant User.Read.All") {
		t.Errorf("Preflight error %v does not carry the permission", err)
	}
}

// purgingSource records the purges a Guard passes on.
type purgingSource struct {
	graphcheck.SourceFunc
	mu     sync.Mutex
	purged []string
}

func (p *purgingSource) Purge(tenantID, objectID string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.purged = append(p.purged, tenantID+"/"+objectID)
}

func (p *purgingSource) PurgeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.purged = append(p.purged, "*")
}

func TestGuardPurgePurgesTheSource(t *testing.T) {
	src := &purgingSource{}
	g := middleware.MustNewGuard(middleware.GuardConfig{Source: src})
	g.Purge(strings.ToUpper(graphtest.TenantID), strings.ToUpper(userOID))
	g.PurgeAll()
	middleware.Purgers{g}.Purge(graphtest.TenantID, appOID)
	want := []string{graphtest.TenantID + "/" + userOID, "*", graphtest.TenantID + "/" + appOID}
	if strings.Join(src.purged, " ") != strings.Join(want, " ") {
		t.Errorf("source purges %q, want %q", src.purged, want)
	}
}

package msgraph_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/graphcheck/msgraph"
)

func need(p graphcheck.Principal, n graphcheck.Need) graphcheck.Principal { p.Need = n; return p }

// advancingSleep makes the Source's waits move the fake clock, as real
// waits move real time, so that the riskyUsers limiter (on Config.Now)
// sees them pass.
func advancingSleep(e *stack, cfg *msgraph.Config) {
	cfg.Sleep = func(ctx context.Context, d time.Duration) error {
		if err := e.sleep.Sleep(ctx, d); err != nil {
			return err
		}
		e.clock.Advance(d)
		return nil
	}
}

func TestAccountInTheSameBatch(t *testing.T) {
	e := newEnv(t, graphtest.Options{}, nil)
	st := e.mustLookup(need(user(alice), graphcheck.NeedAccount))
	// graphtest sets both times when it creates a user, as Entra does.
	if st.Account == nil || !st.Account.Enabled || !st.Account.SessionsValidFrom.Equal(t0) || !st.Account.PasswordChanged.Equal(t0) {
		t.Fatalf("account %+v", st.Account)
	}
	if n := e.roundTrips(); n != 1 {
		t.Errorf("%d round trips, want 1: the account travels in the PIM $batch", n)
	}
	b := e.batches()
	if len(b) != 1 || len(b[0]) != 4 {
		t.Fatalf("batches %v", b)
	}
	acc := b[0][3]
	if acc.Path != "/v1.0/users/"+alice || query(t, acc.Query).Get("$select") != "id,accountEnabled,signInSessionsValidFromDateTime,lastPasswordChangeDateTime" {
		t.Errorf("account request %s?%s", acc.Path, acc.Query)
	}

	e.clock.Advance(time.Minute)
	must(t, e.srv.SetAccountEnabled(alice, false))
	must(t, e.srv.RevokeSignInSessions(alice))
	e.clock.Advance(time.Minute)
	must(t, e.srv.ChangePassword(alice))
	st = e.mustLookup(need(user(alice), graphcheck.NeedAccount))
	if st.Account.Enabled || !st.Account.SessionsValidFrom.Equal(at(time.Minute)) || !st.Account.PasswordChanged.Equal(at(2*time.Minute)) {
		t.Errorf("account %+v", st.Account)
	}

	// Without NeedAccount nothing is asked.
	e.srv.ResetRequests()
	if st := e.mustLookup(user(bob)); st.Account != nil || len(e.batches()[0]) != 3 {
		t.Errorf("a lookup without NeedAccount read the account: %+v", st.Account)
	}
}

func TestAccountOfADeletedUser(t *testing.T) {
	e := newEnv(t, graphtest.Options{}, nil)
	must(t, e.srv.DeleteUser(carol))
	for _, n := range []graphcheck.Need{0, graphcheck.NeedAccount, graphcheck.NeedAccount | graphcheck.NeedRisk} {
		if _, err := e.lookup(need(user(carol), n)); !errors.Is(err, graphcheck.ErrPrincipalNotFound) {
			t.Errorf("need %b: %v, want ErrPrincipalNotFound", n, err)
		}
	}
}

func TestAccountOfAServicePrincipal(t *testing.T) {
	e := newEnv(t, graphtest.Options{}, nil)
	st := e.mustLookup(need(app(daemon), graphcheck.NeedAccount|graphcheck.NeedRisk))
	if st.Account == nil || !st.Account.Enabled || st.Risk != nil {
		t.Fatalf("account %+v, risk %+v", st.Account, st.Risk)
	}
	if e.subRequests("/servicePrincipals/"+daemon) != 2 || e.subRequests("/identityProtection/") != 0 {
		t.Errorf("requests %v", e.srv.Requests())
	}
	must(t, e.srv.SetServicePrincipalEnabled(daemon, false))
	if st := e.mustLookup(need(app(daemon), graphcheck.NeedAccount)); st.Account.Enabled {
		t.Error("a disabled service principal reads as enabled")
	}
	must(t, e.srv.DeleteServicePrincipal(daemon))
	if _, err := e.lookup(need(app(daemon), graphcheck.NeedAccount)); !errors.Is(err, graphcheck.ErrPrincipalNotFound) {
		t.Errorf("deleted service principal: %v", err)
	}
}

func TestRisk(t *testing.T) {
	e := newEnv(t, graphtest.Options{}, func(e *stack, c *msgraph.Config) { c.RiskTTL = 5 * time.Minute })
	risky := need(user(alice), graphcheck.NeedRisk)

	st := e.mustLookup(risky)
	if st.Risk == nil || st.Risk.Recorded || st.Risk.AtRisk() || st.Risk.Level != "none" || !st.Risk.FetchedAt.Equal(t0) {
		t.Fatalf("no record: risk %+v", st.Risk)
	}
	if n := e.roundTrips(); n != 1 {
		t.Errorf("%d round trips, want 1", n)
	}

	// Cached for RiskTTL: the next lookups do not ask, and miss a change.
	must(t, e.srv.SetUserRisk(alice, "high", "atRisk"))
	e.srv.ResetRequests()
	e.clock.Advance(5*time.Minute - time.Second)
	if st := e.mustLookup(risky); st.Risk.AtRisk() || e.subRequests("/identityProtection/") != 0 || !st.Risk.FetchedAt.Equal(t0) {
		t.Errorf("within RiskTTL: risk %+v, %d risk requests", st.Risk, e.subRequests("/identityProtection/"))
	}
	e.clock.Advance(time.Second)
	st = e.mustLookup(risky)
	if !st.Risk.AtRisk() || !st.Risk.Recorded || e.subRequests("/identityProtection/riskyUsers/"+alice) != 1 {
		t.Errorf("after RiskTTL: risk %+v", st.Risk)
	}
	r := e.srv.Requests()
	if last := r[len(r)-1]; query(t, last.Query).Get("$select") != "id,riskLevel,riskState" {
		t.Errorf("risk request %s?%s", last.Path, last.Query)
	}

	// Remediated: seen at once after a Purge (upper-case IDs are fine).
	must(t, e.srv.SetUserRisk(alice, "high", "remediated"))
	e.src.Purge(strings.ToUpper(graphtest.TenantID), strings.ToUpper(alice))
	if st := e.mustLookup(risky); st.Risk.AtRisk() || st.Risk.State != "remediated" {
		t.Errorf("remediated: %+v", st.Risk)
	}
	must(t, e.srv.SetUserRisk(alice, "high", "atRisk"))
	e.src.PurgeAll()
	if st := e.mustLookup(risky); !st.Risk.AtRisk() {
		t.Errorf("after PurgeAll: %+v", st.Risk)
	}

	// "hidden": Identity Protection does not cover the user.
	must(t, e.srv.SetUserRisk(bob, "hidden", "none"))
	_, err := e.lookup(need(user(bob), graphcheck.NeedRisk))
	var pe *graphcheck.PermissionError
	if !errors.As(err, &pe) || !errors.Is(err, graphcheck.ErrLicenseRequired) || pe.Permission != msgraph.LicenceRisk {
		t.Errorf("hidden risk: %v", err)
	}
}

// The limiter keeps the Source under Identity Protection's budget: cold
// lookups of several users in one second wait their turn (on the fake
// clock) instead of drawing 429s.
func TestRiskRateLimiter(t *testing.T) {
	e := newEnv(t, graphtest.Options{RiskyUsersPerSecond: 1}, func(e *stack, c *msgraph.Config) {
		c.RiskRequestsPerSecond, c.RiskBurst = 1, 1
		advancingSleep(e, c)
	})
	for _, oid := range []string{alice, bob, carol, dave} {
		if st := e.mustLookup(need(user(oid), graphcheck.NeedRisk)); st.Risk == nil {
			t.Fatalf("%s: no risk", oid)
		}
	}
	if got := e.sleep.slept(); len(got) != 3 || got[0] != time.Second || got[1] != time.Second || got[2] != time.Second {
		t.Errorf("waits %v, want three of 1s", got)
	}
	if n := e.subRequests("/identityProtection/"); n != 4 {
		t.Errorf("%d risk requests, want 4 (none throttled and resent)", n)
	}

	// A wait that does not fit before the deadline fails at once and sends
	// nothing.
	e.srv.ResetRequests()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err := e.src.Lookup(ctx, need(user(erin), graphcheck.NeedRisk))
	if !errors.Is(err, graphcheck.ErrUnavailable) || !strings.Contains(err.Error(), "rate limit") {
		t.Errorf("over the limit: %v", err)
	}
	if n := len(e.srv.Requests()); n != 0 {
		t.Errorf("%d requests sent for a lookup the limiter refused", n)
	}
	// The refused turn was given back: the next second has room.
	e.clock.Advance(time.Second)
	if st := e.mustLookup(need(user(erin), graphcheck.NeedRisk)); st.Risk == nil {
		t.Error("no risk after the limiter refilled")
	}
}

// Another application spent the tenant's budget: Identity Protection
// answers 429 without Retry-After, and the Source retries after its own
// backoff.
func TestRiskThrottledWithoutRetryAfter(t *testing.T) {
	e := newEnv(t, graphtest.Options{RiskyUsersPerSecond: 1}, func(e *stack, c *msgraph.Config) {
		c.RetryDelay = 1500 * time.Millisecond
		advancingSleep(e, c)
	})
	other, err := http.Get(e.srv.GraphURL() + "/identityProtection/riskyUsers?$top=1")
	if err != nil {
		t.Fatal(err)
	}
	other.Body.Close()
	st := e.mustLookup(need(user(alice), graphcheck.NeedRisk))
	if st.Risk == nil || st.Risk.AtRisk() {
		t.Fatalf("risk %+v", st.Risk)
	}
	if got := e.sleep.slept(); len(got) != 1 || got[0] != 1500*time.Millisecond {
		t.Errorf("waits %v, want the 1.5s RetryDelay", got)
	}
	if n := e.subRequests("/identityProtection/"); n != 2 {
		t.Errorf("%d risk sub-requests, want 2", n)
	}
	if n := e.subRequests("/roleManagement/"); n != 1 {
		t.Errorf("%d role sub-requests, want 1: only the throttled one is resent", n)
	}
}

func TestAccountAndRiskRefusals(t *testing.T) {
	for _, tc := range []struct {
		name  string
		match func() graphtest.GraphMatch
		fault graphtest.Fault
		need  graphcheck.Need
		perm  string
		class error
	}{
		{"user account denied", func() graphtest.GraphMatch { return graphtest.GraphMatch{Path: "/users/" + alice} },
			graphtest.DeniedFault(), graphcheck.NeedAccount, msgraph.PermissionUser, graphcheck.ErrPermissionDenied},
		{"risk denied", func() graphtest.GraphMatch { return graphtest.MatchPath("/identityProtection/") },
			graphtest.DeniedFault(), graphcheck.NeedRisk, msgraph.PermissionRiskyUser, graphcheck.ErrPermissionDenied},
		{"risk licence", func() graphtest.GraphMatch { return graphtest.MatchPath("/identityProtection/") },
			graphtest.LicenseRequiredFault(), graphcheck.NeedRisk, msgraph.LicenceRisk, graphcheck.ErrLicenseRequired},
		{"account without accountEnabled", func() graphtest.GraphMatch { return graphtest.GraphMatch{Path: "/users/" + alice} },
			graphtest.Fault{Body: `{"id":"` + alice + `"}`}, graphcheck.NeedAccount, "", graphcheck.ErrUnavailable},
		{"account of another object", func() graphtest.GraphMatch { return graphtest.GraphMatch{Path: "/users/" + alice} },
			graphtest.Fault{Body: `{"id":"` + bob + `","accountEnabled":true}`}, graphcheck.NeedAccount, "", graphcheck.ErrUnavailable},
		{"risk without riskLevel", func() graphtest.GraphMatch { return graphtest.MatchPath("/identityProtection/") },
			graphtest.Fault{Body: `{"id":"` + alice + `","riskState":"atRisk"}`}, graphcheck.NeedRisk, "", graphcheck.ErrUnavailable},
		{"risk unavailable", func() graphtest.GraphMatch { return graphtest.MatchPath("/identityProtection/") },
			graphtest.Fault{Status: 500}, graphcheck.NeedRisk, "", graphcheck.ErrUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, graphtest.Options{}, nil)
			e.srv.InjectGraphFault(tc.match(), tc.fault)
			st, err := e.lookup(need(user(alice), tc.need))
			if st != nil || !errors.Is(err, tc.class) {
				t.Fatalf("Lookup: %v, %v; want %v", st, err, tc.class)
			}
			var pe *graphcheck.PermissionError
			if tc.perm != "" && (!errors.As(err, &pe) || pe.Permission != tc.perm) {
				t.Errorf("error %v does not name %s", err, tc.perm)
			}
		})
	}
}

func TestPreflight(t *testing.T) {
	all := graphcheck.NeedAccount | graphcheck.NeedRisk
	for _, tc := range []struct {
		name   string
		need   graphcheck.Need
		faults map[string]graphtest.Fault // path prefix → fault
		want   []string                   // permissions or licences named, in order
		trips  int
	}{
		{name: "PIM only, all granted", need: 0, trips: 3},
		{name: "everything granted", need: all, trips: 5},
		{name: "role schedules denied", need: 0, faults: map[string]graphtest.Fault{"/roleManagement/": graphtest.DeniedFault()},
			want: []string{msgraph.PermissionRoleAssignmentSchedule}},
		{name: "no PIM licence", need: 0, faults: map[string]graphtest.Fault{"/roleManagement/": graphtest.LicenseRequiredFault()},
			want: []string{msgraph.LicencePIM}},
		{name: "PIM for Groups not granted", need: 0, faults: map[string]graphtest.Fault{"/identityGovernance/": graphtest.ScopeNotGrantedFault()},
			want: []string{msgraph.PermissionGroupAssignmentSchedule}},
		{name: "groups denied", need: 0, faults: map[string]graphtest.Fault{"/groups": graphtest.DeniedFault()},
			want: []string{msgraph.PermissionGroupMember}},
		{name: "users denied", need: all, faults: map[string]graphtest.Fault{"/users": graphtest.DeniedFault()},
			want: []string{msgraph.PermissionUser}},
		{name: "users without accountEnabled", need: all, faults: map[string]graphtest.Fault{"/users": {Body: `{"value":[{"id":"` + alice + `"}]}`}},
			want: []string{msgraph.PermissionUser}},
		{name: "users not probed without account checks", need: graphcheck.NeedRisk, faults: map[string]graphtest.Fault{"/users": graphtest.DeniedFault()}, trips: 4},
		{name: "risky users denied", need: all, faults: map[string]graphtest.Fault{"/identityProtection/": graphtest.DeniedFault()},
			want: []string{msgraph.PermissionRiskyUser}},
		{name: "no P2 for risky users", need: all, faults: map[string]graphtest.Fault{"/identityProtection/": graphtest.LicenseRequiredFault()},
			want: []string{msgraph.LicenceRisk}},
		{name: "group membership: /users and /groups probed", need: graphcheck.NeedGroupMembership, trips: 4},
		{name: "group membership, users denied", need: graphcheck.NeedGroupMembership, faults: map[string]graphtest.Fault{"/users": graphtest.DeniedFault()},
			want: []string{msgraph.PermissionUser}},
		{name: "administrative units: /users and units probed", need: graphcheck.NeedAdministrativeUnits, trips: 5},
		{name: "administrative units denied", need: graphcheck.NeedAdministrativeUnits, faults: map[string]graphtest.Fault{"/directory/administrativeUnits": graphtest.DeniedFault()},
			want: []string{msgraph.PermissionAdministrativeUnit}},
		{name: "users probed once for every need", need: all | graphcheck.NeedGroupMembership | graphcheck.NeedAdministrativeUnits, trips: 6},
		{name: "several missing", need: all, faults: map[string]graphtest.Fault{
			"/groups": graphtest.DeniedFault(), "/users": graphtest.DeniedFault(), "/identityProtection/": graphtest.DeniedFault()},
			want: []string{msgraph.PermissionGroupMember, msgraph.PermissionUser, msgraph.PermissionRiskyUser}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, graphtest.Options{}, nil)
			for prefix, f := range tc.faults {
				e.srv.InjectGraphFault(graphtest.MatchPath(prefix), f)
			}
			err := e.src.Preflight(context.Background(), tc.need)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Preflight: %v", err)
				}
				if n := e.roundTrips(); n != tc.trips {
					t.Errorf("%d round trips, want %d", n, tc.trips)
				}
				return
			}
			if err == nil {
				t.Fatal("Preflight passed")
			}
			var got []string
			for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
				var pe *graphcheck.PermissionError
				if !errors.As(e, &pe) {
					t.Fatalf("error %v is not a PermissionError", e)
				}
				got = append(got, pe.Permission)
				if !strings.Contains(e.Error(), "grant "+pe.Permission) {
					t.Errorf("error text %q does not say what to grant", e)
				}
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("Preflight named %q, want %q", got, tc.want)
			}
		})
	}
}

// The user record must carry both dates the account checks compare, since
// the $select asked for them: a member absent from the answer makes it
// unreadable (ErrUnavailable), never "never revoked". An explicit null is
// Graph's "no value" (both properties are nullable, and neither is set for
// every user: no revocation, no recorded password change) and reads as the
// zero time, which the checks have nothing to compare with.
func TestAccountDatesNullOrAbsent(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		want error // nil: read, with zero dates
	}{
		{"both null", `{"id":"` + alice + `","accountEnabled":true,"signInSessionsValidFromDateTime":null,"lastPasswordChangeDateTime":null}`, nil},
		{"signInSessionsValidFromDateTime absent", `{"id":"` + alice + `","accountEnabled":true,"lastPasswordChangeDateTime":null}`, graphcheck.ErrUnavailable},
		{"lastPasswordChangeDateTime absent", `{"id":"` + alice + `","accountEnabled":true,"signInSessionsValidFromDateTime":null}`, graphcheck.ErrUnavailable},
		{"both absent", `{"id":"` + alice + `","accountEnabled":true}`, graphcheck.ErrUnavailable},
		{"signInSessionsValidFromDateTime in year 1", `{"id":"` + alice + `","accountEnabled":true,"signInSessionsValidFromDateTime":"0001-01-01T00:00:00Z","lastPasswordChangeDateTime":null}`, graphcheck.ErrUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, graphtest.Options{}, nil)
			e.srv.InjectGraphFault(graphtest.GraphMatch{Path: "/users/" + alice, Scope: graphtest.InsideBatch}, graphtest.Fault{Body: tc.body})
			st, err := e.lookup(need(user(alice), graphcheck.NeedAccount))
			if tc.want != nil {
				if st != nil || !errors.Is(err, tc.want) {
					t.Fatalf("Lookup: %+v, %v; want %v", st, err, tc.want)
				}
				return
			}
			if err != nil || st.Account == nil || !st.Account.Enabled || !st.Account.SessionsValidFrom.IsZero() || !st.Account.PasswordChanged.IsZero() {
				t.Fatalf("Lookup: %+v, %v; want an enabled account with zero dates", st, err)
			}
		})
	}
	// A service principal has neither property and is not asked for them.
	e := newEnv(t, graphtest.Options{}, nil)
	e.srv.InjectGraphFault(graphtest.GraphMatch{Path: "/servicePrincipals/" + daemon, Scope: graphtest.InsideBatch},
		graphtest.Fault{Body: `{"id":"` + daemon + `","accountEnabled":true}`})
	if st, err := e.lookup(need(app(daemon), graphcheck.NeedAccount)); err != nil || !st.Account.Enabled {
		t.Errorf("service principal: %+v, %v", st, err)
	}
}

// Only Graph's not-found error for the riskyUser means "no record, no
// risk". Any other 404 (no error envelope, another code, a proxy's HTML
// page) is an answer that cannot be read.
func TestRiskNotFoundOnlyFromGraphsNotFoundError(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault graphtest.Fault
		want  error // nil: no risk
	}{
		{"Request_ResourceNotFound", graphtest.Fault{Status: http.StatusNotFound, Code: "Request_ResourceNotFound"}, nil},
		{"itemNotFound", graphtest.Fault{Status: http.StatusNotFound, Code: "itemNotFound"}, nil},
		{"another code", graphtest.Fault{Status: http.StatusNotFound, Code: "UnknownError"}, graphcheck.ErrUnavailable},
		{"an empty object", graphtest.Fault{Status: http.StatusNotFound, Body: `{}`}, graphcheck.ErrUnavailable},
		{"an error without a code", graphtest.Fault{Status: http.StatusNotFound, Body: `{"error":{"message":"not found"}}`}, graphcheck.ErrUnavailable},
		{"no body", graphtest.Fault{Status: http.StatusNotFound, Body: `null`}, graphcheck.ErrUnavailable},
		{"an HTML page", graphtest.Fault{Status: http.StatusNotFound, Body: `<html><body><h1>404 Not Found</h1></body></html>`}, graphcheck.ErrUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, graphtest.Options{}, nil)
			must(t, e.srv.SetUserRisk(alice, "high", "atRisk")) // the record exists; the fault hides it
			e.srv.InjectGraphFault(graphtest.GraphMatch{PathPrefix: "/identityProtection/", Scope: graphtest.InsideBatch}, tc.fault)
			st, err := e.lookup(need(user(alice), graphcheck.NeedRisk))
			if tc.want != nil {
				if st != nil || !errors.Is(err, tc.want) {
					t.Fatalf("Lookup: %+v, %v; want %v", st, err, tc.want)
				}
				return
			}
			if err != nil || st.Risk == nil || st.Risk.Recorded || st.Risk.AtRisk() {
				t.Fatalf("Lookup: %+v, %v; want no risk record", st, err)
			}
		})
	}
}

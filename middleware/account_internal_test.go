package middleware

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
)

// TestAccountChecksFailClosedOnMissingFacts calls AccountChecks.check
// directly with states that lack the account or the risk, as a Source that
// ignores Need, or a cache entry fetched for the other kind, would give it:
// every check that needs the missing fact must answer 503 pim_unavailable,
// never panic and never pass; a check that does not need it decides as
// usual.
func TestAccountChecksFailClosedOnMissingFacts(t *testing.T) {
	issued := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	all := CheckAccountEnabled | CheckSessionsRevoked | CheckPasswordChanged | CheckUserRisk
	account := &graphcheck.Account{Enabled: true}
	noRisk := &graphcheck.Risk{Level: graphcheck.RiskLevelNone, State: graphcheck.RiskStateNone}
	for _, tc := range []struct {
		checks      AccountChecks
		app         bool
		nilState    bool
		account     *graphcheck.Account
		risk        *graphcheck.Risk
		unavailable bool // want an error wrapping ErrPIMUnavailable; otherwise nil
	}{
		{checks: CheckAccountEnabled, risk: noRisk, unavailable: true},
		{checks: CheckAccountEnabled, app: true, unavailable: true},
		{checks: CheckSessionsRevoked, risk: noRisk, unavailable: true},
		{checks: CheckSessionsRevoked, app: true},
		{checks: CheckPasswordChanged, risk: noRisk, unavailable: true},
		{checks: CheckPasswordChanged, app: true},
		{checks: CheckUserRisk, account: account, unavailable: true},
		{checks: CheckUserRisk, unavailable: true},
		{checks: CheckUserRisk, risk: noRisk},
		{checks: CheckUserRisk, app: true},
		{checks: all, account: account, unavailable: true},
		{checks: all, risk: noRisk, unavailable: true},
		{checks: all, unavailable: true},
		{checks: all, account: account, risk: noRisk},
		{checks: all, app: true, account: account},
		{checks: all, app: true, risk: noRisk, unavailable: true},
		{checks: CheckSessionsRevoked | CheckUserRisk, nilState: true, unavailable: true},
		{checks: CheckAccountEnabled, app: true, nilState: true, unavailable: true},
		{checks: 0, nilState: true},
	} {
		name := fmt.Sprintf("%v/app=%v/state=%v/account=%v/risk=%v", tc.checks, tc.app, !tc.nilState, tc.account != nil, tc.risk != nil)
		t.Run(name, func(t *testing.T) {
			p := &Principal{AppOnly: tc.app, IssuedAt: issued}
			var s *graphcheck.State
			if !tc.nilState {
				s = &graphcheck.State{Account: tc.account, Risk: tc.risk}
			}
			err := checkNoPanic(t, tc.checks, p, s)
			if !tc.unavailable {
				if err != nil {
					t.Fatalf("check: %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrPIMUnavailable) {
				t.Fatalf("check: %v, want an error wrapping ErrPIMUnavailable", err)
			}
			if rej := RejectionFor(err, DefaultRealm); rej.Status != http.StatusServiceUnavailable || rej.Code != CodePIMUnavailable {
				t.Errorf("answered %d %s, want 503 %s", rej.Status, rej.Code, CodePIMUnavailable)
			}
		})
	}
}

// checkNoPanic calls c.check, failing the test if it panics.
func checkNoPanic(t *testing.T, c AccountChecks, p *Principal, s *graphcheck.State) (err error) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("check panicked: %v", r)
		}
	}()
	return c.check(p, s)
}

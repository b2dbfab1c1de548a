package graphcheck

import (
	"testing"
	"time"
)

func TestRiskAtRisk(t *testing.T) {
	for _, tc := range []struct {
		level, state string
		want         bool
	}{
		{"high", "atRisk", true},
		{"High", "AtRisk", true},
		{"high", "confirmedCompromised", true},
		{"high", "dismissed", false},
		{"high", "remediated", false},
		{"high", "confirmedSafe", false},
		{"medium", "atRisk", false},
		{"low", "confirmedCompromised", false},
		{"none", "none", false},
		{"hidden", "atRisk", false},
	} {
		r := &Risk{Level: tc.level, State: tc.state, Recorded: true}
		if got := r.AtRisk(); got != tc.want {
			t.Errorf("Risk{%s, %s}.AtRisk() = %v, want %v", tc.level, tc.state, got, tc.want)
		}
	}
	var none *Risk
	if none.AtRisk() {
		t.Error("a nil Risk is at risk")
	}
}

func TestNeedHas(t *testing.T) {
	both := NeedAccount | NeedRisk
	for _, tc := range []struct {
		n, m Need
		want bool
	}{
		{0, 0, true}, {NeedAccount, NeedAccount, true}, {NeedAccount, NeedRisk, false},
		{both, NeedRisk, true}, {NeedRisk, both, false}, {0, NeedAccount, false},
	} {
		if got := tc.n.Has(tc.m); got != tc.want {
			t.Errorf("%b.Has(%b) = %v, want %v", tc.n, tc.m, got, tc.want)
		}
	}
}

func TestCombineKeepsAccountAndRisk(t *testing.T) {
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	acc := &Account{Enabled: true, SessionsValidFrom: now.Add(-time.Hour)}
	risk := &Risk{Level: RiskLevelNone, State: RiskStateNone, FetchedAt: now.Add(-time.Minute)}
	s := Combine(Facts{Principal: Principal{TenantID: "t", ObjectID: "o"}, FetchedAt: now, Account: acc, Risk: risk})
	if s.Account != acc || s.Risk != risk {
		t.Errorf("Combine dropped the account or risk: %+v %+v", s.Account, s.Risk)
	}
	if !s.Empty() {
		t.Error("account facts made the state non-empty")
	}
	if s := Combine(Facts{FetchedAt: now}); s.Account != nil || s.Risk != nil {
		t.Error("Combine invented account facts")
	}
}

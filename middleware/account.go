package middleware

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
)

// AccountChecks selects the checks, besides its requirement, that a [Guard]
// makes on every request against the principal's live account, in the
// spirit of Continuous Access Evaluation: Microsoft's own services drop a
// token within minutes when its account is disabled or deleted, its
// sessions are revoked, its password changes or Identity Protection flags
// the user, but a custom API hears none of those events and honours the
// token until it expires. The zero value makes no check. Combine the
// constants with |.
//
// Each check reads Graph through the Guard's Source (graphcheck/msgraph
// folds the account into the same $batch as the PIM requests), is cached
// like the PIM state, and fails closed: when the account cannot be read,
// the request gets 503 pim_unavailable.
type AccountChecks uint8

const (
	// CheckAccountEnabled denies principals whose account is disabled
	// (account_disabled) or deleted (account_deleted), users and service
	// principals alike. Graph permission: User.Read.All (Application.Read.All
	// for service principals).
	CheckAccountEnabled AccountChecks = 1 << iota
	// CheckSessionsRevoked denies tokens issued before the user's
	// signInSessionsValidFromDateTime (session_revoked): their sign-in
	// session was revoked. Users only. Graph permission: User.Read.All.
	CheckSessionsRevoked
	// CheckPasswordChanged denies tokens issued before the user's
	// lastPasswordChangeDateTime (session_revoked). Users only. Graph
	// permission: User.Read.All.
	CheckPasswordChanged
	// CheckUserRisk denies users whom Identity Protection holds at high
	// risk, riskState atRisk or confirmedCompromised (user_at_risk). A user
	// with no riskyUser record has no risk. Users only. Graph permission:
	// IdentityRiskyUser.Read.All, and a Microsoft Entra ID P2 licence.
	CheckUserRisk

	checksEnd
)

// accountCheckNames are the names of [AccountChecks.UnmarshalText] and
// [AccountChecks.String], in bit order.
var accountCheckNames = []string{"enabled", "sessions", "password", "risk"}

// String returns the checks as a comma-separated list of the names
// [AccountChecks.UnmarshalText] reads, e.g. "enabled,sessions"; "" for
// none.
func (c AccountChecks) String() string {
	var names []string
	for i, n := range accountCheckNames {
		if c&(1<<i) != 0 {
			names = append(names, n)
		}
	}
	if rest := c &^ (checksEnd - 1); rest != 0 {
		names = append(names, fmt.Sprintf("AccountChecks(%#x)", uint8(rest)))
	}
	return strings.Join(names, ",")
}

// MarshalText implements [encoding.TextMarshaler]: the names of
// [AccountChecks.String]. Unknown bits are an error, so that what is
// written can be read back.
func (c AccountChecks) MarshalText() ([]byte, error) {
	if c >= checksEnd {
		return nil, fmt.Errorf("middleware: unknown account checks %#x", uint8(c))
	}
	return []byte(c.String()), nil
}

// UnmarshalText implements [encoding.TextUnmarshaler], so that environment
// variables, flags (flag.TextVar) and configuration files read the checks
// one way. It reads a comma-separated list of check names: enabled
// ([CheckAccountEnabled]), sessions ([CheckSessionsRevoked]), password
// ([CheckPasswordChanged]) and risk ([CheckUserRisk]). Names are
// case-insensitive and may be surrounded by spaces; an empty text is no
// check. An unknown name is an error naming it, and leaves c unchanged.
func (c *AccountChecks) UnmarshalText(text []byte) error {
	var v AccountChecks
	for part := range strings.SplitSeq(string(text), ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		i := slices.IndexFunc(accountCheckNames, func(n string) bool { return strings.EqualFold(part, n) })
		if i < 0 {
			return fmt.Errorf("middleware: unknown account check %q (want %s)", part, strings.Join(accountCheckNames, ", "))
		}
		v |= 1 << i
	}
	*c = v
	return nil
}

// need returns the facts the checks need for a user or, with app, a
// service principal, which has only an account to check.
func (c AccountChecks) need(app bool) graphcheck.Need {
	var n graphcheck.Need
	if c&CheckAccountEnabled != 0 || (!app && c&(CheckSessionsRevoked|CheckPasswordChanged) != 0) {
		n |= graphcheck.NeedAccount
	}
	if !app && c&CheckUserRisk != 0 {
		n |= graphcheck.NeedRisk
	}
	return n
}

// check applies the checks to the principal of a verified token and its
// live state. Timestamps are compared at whole seconds, the precision of
// iat: a token issued in the same second as a revocation still counts as
// issued after it, so that a sign-in right after the revocation works.
//
// A state without a fact a check on needs (the lookup was not asked for it,
// or the Source left it out) fails closed with ErrPIMUnavailable (503): an
// absent account is not an enabled one, an absent risk is not "no risk".
// The Guard's loader already refuses such states; this does not rely on it.
func (c AccountChecks) check(p *Principal, s *graphcheck.State) error {
	if c == 0 {
		return nil
	}
	need := c.need(p.AppOnly)
	switch {
	case s == nil:
		return fmt.Errorf("%w: no live state for the account checks %v", ErrPIMUnavailable, c)
	case need.Has(graphcheck.NeedAccount) && s.Account == nil:
		return fmt.Errorf("%w: the live state holds no account, which the account checks %v need", ErrPIMUnavailable, c)
	case need.Has(graphcheck.NeedRisk) && s.Risk == nil:
		return fmt.Errorf("%w: the live state holds no risk, which the risk check needs", ErrPIMUnavailable)
	}
	a := s.Account
	if c&CheckAccountEnabled != 0 && !a.Enabled {
		return fmt.Errorf("%w: accountEnabled is false", ErrAccountDisabled)
	}
	if p.AppOnly {
		return nil
	}
	issued := p.IssuedAt.Truncate(time.Second)
	if c&CheckSessionsRevoked != 0 && issued.Before(a.SessionsValidFrom.Truncate(time.Second)) {
		return fmt.Errorf("%w: token issued at %s, before signInSessionsValidFromDateTime %s", ErrSessionRevoked,
			p.IssuedAt.UTC().Format(time.RFC3339), a.SessionsValidFrom.UTC().Format(time.RFC3339))
	}
	if c&CheckPasswordChanged != 0 && issued.Before(a.PasswordChanged.Truncate(time.Second)) {
		return fmt.Errorf("%w: token issued at %s, before lastPasswordChangeDateTime %s", ErrSessionRevoked,
			p.IssuedAt.UTC().Format(time.RFC3339), a.PasswordChanged.UTC().Format(time.RFC3339))
	}
	if c&CheckUserRisk != 0 && s.Risk.AtRisk() {
		return fmt.Errorf("%w: riskLevel %s, riskState %s", ErrUserAtRisk, s.Risk.Level, s.Risk.State)
	}
	return nil
}

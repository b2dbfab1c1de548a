package graphcheck

import (
	"strings"
	"time"
)

// Need says which facts besides PIM state a lookup must fetch. The zero
// value asks for PIM state only. A [Source] that is asked for a fact it
// cannot fetch must fail the lookup rather than leave the fact out, except
// for facts that do not exist for the principal's kind (see each constant).
type Need uint8

const (
	// NeedAccount asks for the principal's [Account]: accountEnabled for
	// users and service principals, and for users also
	// signInSessionsValidFromDateTime and lastPasswordChangeDateTime.
	NeedAccount Need = 1 << iota
	// NeedRisk asks for the user's Identity Protection [Risk]. Service
	// principals have none: a Source leaves [State.Risk] nil for them.
	NeedRisk
)

// Has reports whether n includes every fact of m.
func (n Need) Has(m Need) bool { return n&m == m }

// Account is a principal's directory account, as Graph reported it when the
// State was fetched. It is what Continuous Access Evaluation would react to
// for Microsoft's own services: a disabled account, revoked sessions, a
// changed password.
type Account struct {
	// Enabled is accountEnabled. A disabled account cannot sign in, but
	// the tokens it already holds stay valid until they expire.
	Enabled bool
	// SessionsValidFrom is signInSessionsValidFromDateTime: tokens issued
	// before it belong to sign-in sessions that were revoked (POST
	// /users/{id}/revokeSignInSessions, or an administrator's password
	// reset). Zero when Graph reports null — Graph's "no value", a nullable
	// property that no revocation has set — so that the sessions check has
	// nothing to compare and passes; and always for service principals. A
	// Source must fail the lookup ([ErrUnavailable]) when a user record it
	// asked for the property lacks it altogether, rather than report zero.
	SessionsValidFrom time.Time
	// PasswordChanged is lastPasswordChangeDateTime. Zero when Graph
	// reports null (no password change or creation recorded, e.g. a user
	// without a password in this tenant), so that the password check
	// passes, and always for service principals; a user record that lacks
	// the property fails the lookup as for SessionsValidFrom.
	PasswordChanged time.Time
}

// Identity Protection values of riskyUser that decide [Risk.AtRisk]. Graph
// spells them in camel case; compare with strings.EqualFold.
const (
	RiskLevelHigh                 = "high"
	RiskLevelHidden               = "hidden" // the user is not covered by Identity Protection (licence)
	RiskLevelNone                 = "none"
	RiskStateAtRisk               = "atRisk"
	RiskStateConfirmedCompromised = "confirmedCompromised"
	RiskStateNone                 = "none"
)

// Risk is a user's Identity Protection risk (Graph's riskyUser).
type Risk struct {
	// Level is riskLevel: low, medium, high, hidden or none.
	Level string
	// State is riskState: none, confirmedSafe, remediated, dismissed,
	// atRisk or confirmedCompromised.
	State string
	// Recorded reports whether Identity Protection has a riskyUser record
	// for the user at all. A user never flagged has none, which means no
	// risk: Level and State are then "none".
	Recorded bool
	// FetchedAt is when the lookup that read it sent its request to Graph
	// (never later than Graph's answer). Risk is rate-limited and may be
	// cached longer than PIM state, so it can be older than
	// [State.FetchedAt].
	FetchedAt time.Time
}

// AtRisk reports whether Identity Protection holds the user at high risk
// that nobody has remediated or dismissed: riskLevel high and riskState
// atRisk or confirmedCompromised. A nil Risk is not at risk.
func (r *Risk) AtRisk() bool {
	if r == nil || !strings.EqualFold(r.Level, RiskLevelHigh) {
		return false
	}
	return strings.EqualFold(r.State, RiskStateAtRisk) || strings.EqualFold(r.State, RiskStateConfirmedCompromised)
}

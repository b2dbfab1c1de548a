package middleware

import (
	"fmt"
	"log/slog"
	"net/http"
)

// Check decides req for the request r now, inside a handler, for rules
// known only once the handler has read the URL or the directory (e.g.
// "Helpdesk Administrator tenant-wide, or scoped to an administrative unit
// that holds the target user"). It returns nil when req is met, and
// otherwise the [Rejection] to answer with: write it with
// [Guard.WriteRejection], and do not perform the operation.
//
// A Check is the decision [Guard.Require] makes, on the same path: the
// [Principal] that [Authenticator.Handler] put in r's context, the live
// state from the Guard's cache (or one coalesced Source lookup), the
// [GuardConfig.AccountChecks] and [GuardConfig.ClaimsPolicy], one decision
// record and one count in pimguard.decisions per call. Its refusals are
// those of Require: 403 when req is not met (401 insufficient_claims for
// an unmet [AuthContext]), 401 principal_not_found or an
// account check's code, 503 pim_unavailable with Retry-After when the live
// state cannot be fetched, and 500 internal_error when r carries no
// Principal (no Authenticator in front) or req is invalid
// ([Requirement.Validate], or a [MemberOf] group outside
// [GuardConfig.MemberOfGroups] and the Guard's routes, which its lookups do
// not ask about): Require panics on an invalid requirement when
// routes are built, but a requirement built per request can only be
// refused, never guessed at.
//
// Check does not change r: the live state it used is not put in the
// context (a [Guard.Load] in front of the handler does that). Calling
// Check several times for one request makes as many decisions, each
// recorded, and at most one Source lookup (the cache holds the state). It
// is safe for concurrent use.
func (g *Guard) Check(r *http.Request, req Requirement) *Rejection {
	err := req.Validate()
	if err == nil {
		if id := g.unknownGroup(&req); id != "" {
			// Every lookup asks Graph about a fixed set of groups; one outside
			// it cannot be decided (list it in GuardConfig.MemberOfGroups).
			err = fmt.Errorf("%w: MemberOf(%s) names a group outside GuardConfig.MemberOfGroups and the Guard's routes", errInvalidRequirement, id)
		}
	}
	ru := g.newRule(req)
	var d decision
	if err != nil {
		d = decision{rule: ru, source: stateNone, outcome: "error", level: slog.LevelError, rej: g.rejection(err)}
		d.p, _ = PrincipalFromContext(r.Context())
		g.record(r, &d)
		return d.rej
	}
	g.decide(r, ru, &d)
	return d.rej
}

// WriteRejection writes rej, as returned by [Guard.Check], with the
// Guard's [GuardConfig.ErrorWriter] (default the package's
// [WriteRejection]): the status, WWW-Authenticate or Retry-After, and the
// standard JSON body. It writes nothing for a nil rej.
func (g *Guard) WriteRejection(w http.ResponseWriter, r *http.Request, rej *Rejection) {
	if rej != nil {
		g.cfg.ErrorWriter(w, r, rej)
	}
}

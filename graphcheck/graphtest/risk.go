package graphtest

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// riskLevels and riskStates are the values of Graph's riskLevel and
// riskState enumerations (without unknownFutureValue).
var (
	riskLevels = []string{"low", "medium", "high", "hidden", "none"}
	riskStates = []string{"none", "confirmedSafe", "remediated", "dismissed", "atRisk", "confirmedCompromised"}
)

// riskRecord is the Identity Protection riskyUser record of one user.
type riskRecord struct {
	id                   string
	level, state, detail string
	updated              time.Time
	// displayName and upn are the user's when the record was last set; they
	// are reported once the user is deleted.
	displayName, upn string
}

// riskDetail is a plausible riskDetail for a level and state: what
// Identity Protection reports after the admin or user action that usually
// leads there.
func riskDetail(level, state string) string {
	if level == "hidden" {
		return "hidden"
	}
	switch state {
	case "confirmedCompromised":
		return "adminConfirmedUserCompromised"
	case "dismissed":
		return "adminDismissedAllRiskForUser"
	case "remediated":
		return "userPerformedSecuredPasswordChange"
	case "confirmedSafe":
		return "adminConfirmedSigninSafe"
	}
	return "none"
}

// SetUserRisk creates or updates the Identity Protection riskyUser record of
// user oid, which GET /identityProtection/riskyUsers/{id} serves. riskLevel
// is one of low, medium, high, hidden, none and riskState one of none,
// confirmedSafe, remediated, dismissed, atRisk, confirmedCompromised,
// spelled exactly so; anything else wraps [ErrInvalid], and an ID that is
// not a user wraps [ErrNotFound]. riskLastUpdatedDateTime becomes the
// clock's now; riskDetail follows from the arguments (hidden for level
// hidden, adminConfirmedUserCompromised for confirmedCompromised,
// adminDismissedAllRiskForUser for dismissed,
// userPerformedSecuredPasswordChange for remediated,
// adminConfirmedSigninSafe for confirmedSafe, else none); isProcessing is
// always false. The pair is not checked for consistency (Identity Protection
// would not report level high with state dismissed; the emulator does if
// told to). The record outlives [Server.DeleteUser], reported with
// isDeleted true and the user's last names, and is reported as live again
// if a user with the same ID is added. Risk changes nothing else: sessions,
// tokens and roles are untouched. Risky service principals, risk detections
// and the history of a record are not modelled.
func (s *Server) SetUserRisk(oid, riskLevel, riskState string) error {
	if !slices.Contains(riskLevels, riskLevel) {
		return fmt.Errorf("%w: riskLevel %q is not one of %s", ErrInvalid, riskLevel, strings.Join(riskLevels, ", "))
	}
	if !slices.Contains(riskStates, riskState) {
		return fmt.Errorf("%w: riskState %q is not one of %s", ErrInvalid, riskState, strings.Join(riskStates, ", "))
	}
	now := s.clock.Now()
	return s.updateObject(oid, kindUser, func(d *directory, u *dirObject) error {
		r := d.risky[u.id]
		if r == nil {
			r = &riskRecord{id: u.id}
			d.risky[u.id] = r
			d.riskyOrder = append(d.riskyOrder, u.id)
		}
		r.level, r.state, r.detail, r.updated = riskLevel, riskState, riskDetail(riskLevel, riskState), now
		r.displayName, r.upn = u.displayName, u.upn
		return nil
	})
}

// ClearUserRisk removes the riskyUser record of oid, so that
// GET /identityProtection/riskyUsers/{id} answers 404 as for a user Identity
// Protection never flagged. That is not what POST .../riskyUsers/dismiss
// does (it keeps the record with riskLevel none and riskState dismissed:
// call SetUserRisk(oid, "none", "dismissed") for that). It also removes the
// record of a deleted user. Clearing a user without a record does nothing;
// an ID that is neither a user nor has a record wraps [ErrNotFound].
func (s *Server) ClearUserRisk(oid string) error {
	id := strings.ToLower(oid)
	d := &s.dir
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.risky[id] == nil {
		_, err := d.need(id, kindUser)
		return err
	}
	delete(d.risky, id)
	d.riskyOrder = slices.DeleteFunc(d.riskyOrder, func(x string) bool { return x == id })
	return nil
}

// SetRiskyUsersPerSecond changes [Options.RiskyUsersPerSecond] for later
// requests; requests already counted in the current second still count.
func (s *Server) SetRiskyUsersPerSecond(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.riskyPerSecond = n
}

var riskyUserEndpoint = endpoint{
	context:  "identityProtection/riskyUsers",
	typeName: "microsoft.graph.riskyUser",
	props: []string{"id", "isDeleted", "isProcessing", "riskLevel", "riskState", "riskDetail",
		"riskLastUpdatedDateTime", "userDisplayName", "userPrincipalName"},
}

// riskyUserEntity renders r in the order of Microsoft's samples. Callers
// hold d.mu.
func (d *directory) riskyUserEntity(r *riskRecord) entity {
	name, upn, deleted := r.displayName, r.upn, true
	if u := d.objects[r.id]; u != nil && u.kind == kindUser {
		name, upn, deleted = u.displayName, u.upn, false
	}
	return entity{
		{"id", r.id},
		{"isDeleted", deleted},
		{"isProcessing", false},
		{"riskLevel", r.level},
		{"riskState", r.state},
		{"riskDetail", r.detail},
		{"riskLastUpdatedDateTime", jsonTime(r.updated)},
		{"userDisplayName", name},
		{"userPrincipalName", upn},
	}
}

var riskyUserListEndpoint = withFilters(riskyUserEndpoint, map[string]filterKind{"id": filterGUID})

// riskyQuery counts a request to the riskyUsers endpoints in the clock's
// current second and parses its query for ep; it returns the 429 to answer
// beyond [Options.RiskyUsersPerSecond], or the 400 for a bad query.
func (s *Server) riskyQuery(req *graphRequest, ep *endpoint) (odataQuery, graphResponse, bool) {
	window := s.clock.Now().Truncate(time.Second)
	s.mu.Lock()
	if !window.Equal(s.riskyWindow) {
		s.riskyWindow, s.riskyCount = window, 0
	}
	s.riskyCount++
	limit, n := s.riskyPerSecond, s.riskyCount
	s.mu.Unlock()
	if limit > 0 && n > limit {
		// Identity Protection may leave Retry-After out; so does the emulator.
		return odataQuery{}, s.throttled(req, "TooManyRequests", "Please retry again later."), false
	}
	return s.parseQuery(req, ep)
}

// getRiskyUser serves GET /identityProtection/riskyUsers/{id}.
func (s *Server) getRiskyUser(req *graphRequest, id string) graphResponse {
	q, resp, ok := s.riskyQuery(req, &riskyUserEndpoint)
	if !ok {
		return resp
	}
	d := &s.dir
	d.mu.Lock()
	var e entity
	r := d.risky[strings.ToLower(id)]
	if r != nil {
		e = d.riskyUserEntity(r)
	}
	d.mu.Unlock()
	if r == nil {
		return s.resourceNotFound(req, id)
	}
	return s.single(req, &riskyUserEndpoint, q, e)
}

// listRiskyUsers serves GET /identityProtection/riskyUsers: the records in
// the order they were created, filterable on id.
func (s *Server) listRiskyUsers(req *graphRequest) graphResponse {
	q, resp, ok := s.riskyQuery(req, &riskyUserListEndpoint)
	if !ok {
		return resp
	}
	d := &s.dir
	d.mu.Lock()
	items := make([]entity, 0, len(d.riskyOrder))
	for _, id := range d.riskyOrder {
		items = append(items, d.riskyUserEntity(d.risky[id]))
	}
	d.mu.Unlock()
	return s.collection(req, &riskyUserListEndpoint, q, items)
}

package graphtest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
)

// Source is a [graphcheck.Source] that reads a [Server]'s directory
// directly, at the server's [Clock]: no HTTP, no Graph client, no SDK. It
// answers what graphcheck/msgraph's Source answers for the same tenant
// through the Graph half, so that a service can be tested end to end
// ("eligible → 403, activate in PIM → 200, activation ends → 403") with
// the seeding methods alone. Get one with [Server.Source].
//
// A Lookup validates the principal ([graphcheck.ErrInvalidPrincipal] for an
// ID that is not a GUID), then reads, at the clock's now (which becomes
// [graphcheck.State.FetchedAt]), what msgraph's $batch reads: the
// principal's directory-role and PIM for Groups assignment instances in
// force, its transitive groups and the roles its role-assignable groups
// hold; which groups of [graphcheck.Principal.CheckGroups] it belongs to
// ([graphcheck.State.MemberOf], as checkMemberGroups answers); and, when
// [graphcheck.Principal.Need] asks, its account and, for a user, its
// Identity Protection risk (none without a riskyUser record; a riskLevel
// of hidden fails with [graphcheck.ErrLicenseRequired]).
// [graphcheck.Combine] joins them, as in msgraph. A user or service
// principal that does not exist, or is of the other kind, wraps
// [graphcheck.ErrPrincipalNotFound]. Like the Graph half, it serves one
// directory whatever the principal's tenant.
//
// It keeps no cache, so there is nothing to purge and it does not
// implement [graphcheck.Purger]: every Lookup sees the directory as it is,
// including group-held roles and risk that msgraph may serve from its
// caches for up to GroupRolesTTL and RiskTTL. It sends no request, so
// [Server.Requests] does not record its reads, [Options.RequireGraphAuth]
// does not apply and [Options.RiskyUsersPerSecond] neither counts nor
// throttles them.
//
// # Faults
//
// Injected faults apply as they would to msgraph's requests: each Lookup
// (and [Source.Preflight]) consults [Server.InjectFault] and
// [Server.InjectGraphFault] once for every request msgraph would send for
// it on a cold cache — the outer POST /$batch of each round, then each
// sub-request (GET /roleManagement/directory/roleAssignmentScheduleInstances,
// /identityGovernance/privilegedAccess/group/assignmentScheduleInstances,
// /users/{id}/transitiveMemberOf/graph.group or its /servicePrincipals
// twin, /users/{id} or /servicePrincipals/{id}, POST
// .../checkMemberGroups per 20 groups checked, then
// /identityProtection/riskyUsers/{id}; and, when the principal belongs to a
// role-assignable group, GET /groups and one role instances request per
// role-assignable group) — in that order, using up a fault's
// [Fault.Times] as those requests would. A fault that matches turns into
// the error msgraph classifies it as: 404 Request_ResourceNotFound on the
// principal's own paths wraps [graphcheck.ErrPrincipalNotFound] (on the
// riskyUser path it means no risk); 403 AadPremiumLicenseRequired a
// [*graphcheck.PermissionError] wrapping [graphcheck.ErrLicenseRequired];
// any other 403 one wrapping [graphcheck.ErrPermissionDenied], naming the
// permission msgraph names; 429, 5xx, [FaultDropConnection] and
// [FaultHang] (which waits until ctx is done, 10 seconds pass or the server
// closes) wrap [graphcheck.ErrUnavailable] and [graphcheck.ErrOutage] (a
// hang that the caller cancels wraps ErrUnavailable alone);
// anything else, including every fault with a Body and a
// [FaultNextLink] or [FaultNextLinkLoop] on a collection, wraps
// [graphcheck.ErrUnavailable] alone. (The nextLink faults change neither a
// single object nor a 404, as in the Graph half; a nextLink to the
// server's own host, which msgraph would follow, fails the Lookup only if
// nothing else in its $batch does, as a loop fails msgraph on the next
// page.) Unlike msgraph it never retries or waits: a 429, 503 or 504 that
// msgraph would retry through (a fault with a small Times) fails the
// Lookup here.
//
// It is also a [graphcheck.UserDirectory] ([Source.User]) and a
// [graphcheck.Preflighter] ([Source.Preflight]), as msgraph's Source is.
// A Source is safe for concurrent use.
type Source struct {
	srv *Server
}

var (
	_ graphcheck.Source        = (*Source)(nil)
	_ graphcheck.Preflighter   = (*Source)(nil)
	_ graphcheck.UserDirectory = (*Source)(nil)
)

// Source returns a [graphcheck.Source] over s's directory, on s's clock
// (see [Source]). Hand it to a Guard (middleware.GuardConfig.Source) and
// s.Clock().Now to the Guard's and the Authenticator's Now: the tenant's
// schedules, the tokens' lifetimes and the Guard's cache then move
// together when the test moves the clock.
func (s *Server) Source() *Source { return &Source{srv: s} }

// sourceTimeout bounds a Lookup or Preflight besides its ctx, as
// graphcheck/msgraph's default Timeout does; only [FaultHang] waits.
const sourceTimeout = 10 * time.Second

// Lookup returns p's State as the directory holds it at the server clock's
// now (see [Source]). Errors wrap the graphcheck sentinels; no failure
// yields a State.
func (src *Source) Lookup(ctx context.Context, p graphcheck.Principal) (*graphcheck.State, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, sourceTimeout)
	defer cancel()
	if ctx.Err() != nil {
		return nil, srcGaveUp(ctx, &srcEndpoint{path: "/$batch"})
	}
	s := src.srv
	now := s.clock.Now()
	d := s.srcRead(p, now)

	// Round one: what msgraph sends in its first $batch, in its order.
	kind, ep, accEP := "users", srcUserGroups, srcUser
	if p.ServicePrincipal {
		kind, ep, accEP = "servicePrincipals", srcSPGroups, srcSP
	}
	round := []srcProbe{
		{ep: srcRoles, path: srcRoles.path},
		{ep: srcGroupPIM, path: srcGroupPIM.path},
		{ep: ep, path: "/" + kind + "/" + d.oid + "/transitiveMemberOf/graph.group", missing: srcMissing(d.missing, d.oid)},
	}
	if p.Need.Has(graphcheck.NeedAccount) {
		round = append(round, srcProbe{ep: accEP, path: "/" + kind + "/" + d.oid, missing: srcMissing(d.missing, d.oid)})
	}
	checkEP := srcUserCheck
	if p.ServicePrincipal {
		checkEP = srcSPCheck
	}
	for range slices.Chunk(d.checked, srcMaxCheckMemberGroups) {
		round = append(round, srcProbe{ep: checkEP, path: "/" + kind + "/" + d.oid + "/checkMemberGroups", missing: srcMissing(d.missing, d.oid)})
	}
	wantRisk := p.Need.Has(graphcheck.NeedRisk) && !p.ServicePrincipal
	if wantRisk {
		round = append(round, srcProbe{ep: srcRisk, path: "/identityProtection/riskyUsers/" + d.oid, err: d.riskErr})
	}
	absent, err := src.rounds(ctx, round)
	if err != nil {
		return nil, err
	}
	f := d.facts
	if wantRisk {
		f.Risk = d.risk
		if f.Risk == nil || absent[len(round)-1] { // no riskyUser record: no risk
			f.Risk = &graphcheck.Risk{Level: graphcheck.RiskLevelNone, State: graphcheck.RiskStateNone}
		}
		f.Risk.FetchedAt = now
	}

	// Round two, only for a member of a role-assignable group: the
	// tenant's role-assignable groups, then each one's roles.
	if d.inAssignable {
		if _, err := src.round(ctx, []srcProbe{{ep: srcGroups, path: srcGroups.path}}); err != nil {
			return nil, err
		}
		probes := make([]srcProbe, len(d.assignable))
		for i := range probes {
			probes[i] = srcProbe{ep: srcRoles, path: srcRoles.path}
		}
		if _, err := src.rounds(ctx, probes); err != nil {
			return nil, err
		}
	}
	st := graphcheck.Combine(f)
	if len(d.checked) > 0 {
		st.CheckedGroups, st.MemberOf = d.checked, d.memberOf
	}
	return st, nil
}

// Preflight checks, as graphcheck/msgraph's Preflight does, that the
// lookups asking for need may read what they will. The emulator models no
// permissions or licences, so it succeeds unless an injected fault refuses
// one of the requests msgraph's Preflight would send (GET
// roleAssignmentScheduleInstances, PIM for Groups assignmentScheduleInstances
// and /groups; /users for [graphcheck.NeedAccount],
// [graphcheck.NeedGroupMembership] or [graphcheck.NeedAdministrativeUnits];
// /identityProtection/riskyUsers for [graphcheck.NeedRisk];
// /directory/administrativeUnits for NeedAdministrativeUnits; each in a
// $batch of its own); it returns every failure, joined, classified as a
// Lookup classifies them.
func (src *Source) Preflight(ctx context.Context, need graphcheck.Need) error {
	ctx, cancel := context.WithTimeout(ctx, sourceTimeout)
	defer cancel()
	eps := []*srcEndpoint{srcRoles, srcGroupPIM, srcGroups}
	if need&(graphcheck.NeedAccount|graphcheck.NeedGroupMembership|graphcheck.NeedAdministrativeUnits) != 0 {
		eps = append(eps, srcUsers)
	}
	if need.Has(graphcheck.NeedRisk) {
		eps = append(eps, srcRiskyUsers)
	}
	if need.Has(graphcheck.NeedAdministrativeUnits) {
		eps = append(eps, srcUnits)
	}
	var errs []error
	for _, ep := range eps {
		if _, err := src.round(ctx, []srcProbe{{ep: ep, path: ep.path}}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// User returns the user userID as the directory holds it at the server
// clock's now, as graphcheck/msgraph's Source.User reads it from the Graph
// half: display name, userPrincipalName and the administrative units it
// is a direct member of (lower case, sorted; nil for none). An ID that is
// not a GUID wraps [graphcheck.ErrInvalidPrincipal]; an ID that is no user
// (none, or a service principal's or a group's) wraps
// [graphcheck.ErrPrincipalNotFound]. Like a Lookup it consults the
// injected faults, for the two requests msgraph sends (GET /users/{id} and
// GET /users/{id}/memberOf/graph.administrativeUnit, in one $batch), and
// serves one directory whatever the tenant.
func (src *Source) User(ctx context.Context, tenantID, userID string) (*graphcheck.DirectoryUser, error) {
	if err := (graphcheck.Principal{TenantID: tenantID, ObjectID: userID}).Validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, sourceTimeout)
	defer cancel()
	if ctx.Err() != nil {
		return nil, srcGaveUp(ctx, &srcEndpoint{path: "/$batch"})
	}
	u := &graphcheck.DirectoryUser{TenantID: strings.ToLower(tenantID), ID: strings.ToLower(userID)}
	d := &src.srv.dir
	d.mu.Lock()
	o, err := d.need(u.ID, kindUser)
	if err == nil {
		u.DisplayName, u.UserPrincipalName = o.displayName, o.upn
		u.AdministrativeUnits = d.adminUnitsOf(o.id)
	}
	d.mu.Unlock()
	missing := err != nil
	if _, err := src.round(ctx, []srcProbe{
		{ep: srcUser, path: "/users/" + u.ID, missing: srcMissing(missing, u.ID)},
		{ep: srcUserUnits, path: "/users/" + u.ID + "/memberOf/graph.administrativeUnit", missing: srcMissing(missing, u.ID)},
	}); err != nil {
		return nil, err
	}
	slices.Sort(u.AdministrativeUnits)
	return u, nil
}

// srcDirectory is what one Lookup reads from the directory, under its lock,
// at one instant.
type srcDirectory struct {
	oid     string
	missing bool // no such user (or service principal)
	facts   graphcheck.Facts
	// risk is the user's risk when it has a readable riskyUser record,
	// nil without one; riskErr is set instead for riskLevel hidden.
	risk    *graphcheck.Risk
	riskErr error
	// inAssignable reports whether the principal belongs to a
	// role-assignable group; assignable lists the tenant's.
	inAssignable bool
	assignable   []string
	// checked are the groups of Principal.CheckGroups (lower case,
	// sorted), memberOf those of them the principal belongs to (nil for
	// none), as checkMemberGroups answers.
	checked, memberOf []string
}

// srcRead reads p's facts at now: its assignment instances in force
// (as the schedule instance endpoints serve them, without the memberType
// "Group" instances that msgraph leaves out), its transitive groups (as
// transitiveMemberOf serves them), every role-assignable group's role
// instances, and its account and risk record.
func (s *Server) srcRead(p graphcheck.Principal, now time.Time) srcDirectory {
	d := &s.dir
	out := srcDirectory{oid: strings.ToLower(p.ObjectID), checked: p.CheckGroups.IDs()}
	out.facts = graphcheck.Facts{Principal: p, FetchedAt: now}
	d.mu.Lock()
	defer d.mu.Unlock()
	kind := kindUser
	if p.ServicePrincipal {
		kind = kindServicePrincipal
	}
	o, err := d.need(out.oid, kind)
	out.missing = err != nil
	for _, x := range d.roles.active {
		if x.principalID == out.oid && x.activeAt(now) {
			out.facts.Own = append(out.facts.Own, srcRole(x))
		}
	}
	for _, x := range d.groups.active {
		if x.principalID == out.oid && x.activeAt(now) {
			out.facts.Memberships = append(out.facts.Memberships, graphcheck.GroupMembership{
				GroupID: x.groupID, AccessID: x.accessID, AssignmentType: x.assignmentType,
				Window: srcWindow(x),
			})
		}
	}
	if out.missing {
		return out
	}
	in := d.transitiveGroups(o.id, now)
	for _, gid := range inOrder(d, in) {
		ra := d.objects[gid].roleAssignable
		out.facts.Groups = append(out.facts.Groups, graphcheck.GroupRef{ID: gid, IsAssignableToRole: ra})
		out.inAssignable = out.inAssignable || ra
	}
	for _, gid := range out.checked {
		if in[gid] {
			out.memberOf = append(out.memberOf, gid)
		}
	}
	if out.inAssignable {
		out.facts.GroupRoles = map[string][]graphcheck.RoleAssignment{}
		for _, gid := range d.groupOrder {
			if g := d.objects[gid]; !g.roleAssignable {
				continue
			}
			out.assignable = append(out.assignable, gid)
			for _, x := range d.roles.active {
				if x.principalID == gid && x.activeAt(now) {
					out.facts.GroupRoles[gid] = append(out.facts.GroupRoles[gid], srcRole(x))
				}
			}
		}
	}
	if p.Need.Has(graphcheck.NeedAccount) {
		a := &graphcheck.Account{Enabled: o.accountEnabled}
		if kind == kindUser {
			a.SessionsValidFrom, a.PasswordChanged = o.sessionsValidFrom.UTC(), o.lastPasswordChange.UTC()
		}
		out.facts.Account = a
	}
	if p.Need.Has(graphcheck.NeedRisk) && kind == kindUser {
		switch r := d.risky[out.oid]; {
		case r == nil:
		case r.level == "hidden":
			out.riskErr = &graphcheck.PermissionError{Permission: srcLicenceRisk, Request: srcRisk.path,
				Code: "riskLevel hidden", Err: graphcheck.ErrLicenseRequired}
		default:
			out.risk = &graphcheck.Risk{Level: r.level, State: r.state, Recorded: true}
		}
	}
	return out
}

// srcRole is a role instance as msgraph decodes it: times in UTC (as they
// travel in JSON), appScopeId null.
func srcRole(x *schedule) graphcheck.RoleAssignment {
	return graphcheck.RoleAssignment{
		RoleDefinitionID: x.roleDefinitionID, DirectoryScopeID: x.scope,
		AssignmentType: x.assignmentType, Window: srcWindow(x),
	}
}

func srcWindow(x *schedule) graphcheck.Window {
	return graphcheck.Window{Start: x.start.UTC(), End: x.end.UTC()}
}

// srcEndpoint is a request graphcheck/msgraph sends, with what its errors
// name; the permissions and licences are those msgraph's errors.go names
// (graphtest cannot import it: it would pull in the Graph SDK).
type srcEndpoint struct {
	method     string // "" means GET
	path       string // template below the version, as msgraph names it
	permission string
	licence    string // for 403 AadPremiumLicenseRequired; "" means srcLicencePIM
	principal  bool   // a 404 Request_ResourceNotFound is the principal's absence
	absentOK   bool   // a 404 not-found answer means "no record" (riskyUsers/{id})
	single     bool   // one object, not a collection
}

const (
	srcLicencePIM  = "a Microsoft Entra ID P2 or Microsoft Entra ID Governance licence"
	srcLicenceRisk = "a Microsoft Entra ID P2 licence (Identity Protection)"
)

var (
	srcRoles      = &srcEndpoint{path: "/roleManagement/directory/roleAssignmentScheduleInstances", permission: "RoleAssignmentSchedule.Read.Directory"}
	srcGroupPIM   = &srcEndpoint{path: "/identityGovernance/privilegedAccess/group/assignmentScheduleInstances", permission: "PrivilegedAssignmentSchedule.Read.AzureADGroup"}
	srcGroups     = &srcEndpoint{path: "/groups", permission: "GroupMember.Read.All"}
	srcUserGroups = &srcEndpoint{path: "/users/{id}/transitiveMemberOf/graph.group", permission: "GroupMember.Read.All", principal: true}
	srcSPGroups   = &srcEndpoint{path: "/servicePrincipals/{id}/transitiveMemberOf/graph.group", permission: "Application.Read.All", principal: true}
	srcUser       = &srcEndpoint{path: "/users/{id}", permission: "User.Read.All", principal: true, single: true}
	srcSP         = &srcEndpoint{path: "/servicePrincipals/{id}", permission: "Application.Read.All", principal: true, single: true}
	srcRisk       = &srcEndpoint{path: "/identityProtection/riskyUsers/{id}", permission: "IdentityRiskyUser.Read.All", licence: srcLicenceRisk, absentOK: true, single: true}
	srcUsers      = &srcEndpoint{path: "/users", permission: "User.Read.All"}
	srcRiskyUsers = &srcEndpoint{path: "/identityProtection/riskyUsers", permission: "IdentityRiskyUser.Read.All", licence: srcLicenceRisk}
	srcUserCheck  = &srcEndpoint{method: http.MethodPost, path: "/users/{id}/checkMemberGroups", permission: "GroupMember.Read.All and User.Read.All", principal: true, single: true}
	srcSPCheck    = &srcEndpoint{method: http.MethodPost, path: "/servicePrincipals/{id}/checkMemberGroups", permission: "Application.Read.All", principal: true, single: true}
	srcUserUnits  = &srcEndpoint{path: "/users/{id}/memberOf/graph.administrativeUnit", permission: "AdministrativeUnit.Read.All", principal: true}
	srcUnits      = &srcEndpoint{path: "/directory/administrativeUnits", permission: "AdministrativeUnit.Read.All"}
)

// srcMaxCheckMemberGroups is how many groups msgraph asks about in one
// checkMemberGroups sub-request.
const srcMaxCheckMemberGroups = 20

// srcProbe is one sub-request of a round: the endpoint, the path it would
// be sent to (faults match it) and what the directory answers when no
// fault does.
type srcProbe struct {
	ep   *srcEndpoint
	path string
	// missing, when set, is the message of the 404
	// Request_ResourceNotFound the directory answers (see srcMissing).
	missing string
	err     error // the answer does not decode (a hidden risk)
}

// srcMissing is what a probe's missing holds for the object id: the
// message of the Graph half's 404 when absent, else "".
func srcMissing(absent bool, id string) string {
	if !absent {
		return ""
	}
	return fmt.Sprintf("Resource '%s' does not exist or one of its queried reference-property objects are not present.", id)
}

// srcOutcome is how one request of a round went.
type srcOutcome struct {
	err error
	// rank orders the failures of a round as msgraph meets them: the
	// first of rank srcNow in request order, else of srcRetry, else of
	// srcNextRound.
	rank   int
	absent bool // a 404 meaning "no record"
	abort  bool // the whole $batch failed (dropped, hung)
	// onPage marks a fault that changes a collection's @odata.nextLink
	// and nothing else: a single object or an error answer is unchanged.
	onPage bool
}

// Ranks of a round's failures (srcOutcome.rank).
const (
	srcNow       = iota // ends msgraph's round where it is read
	srcRetry            // 429, 503, 504: msgraph retries them once the round is read
	srcNextRound        // a same-host nextLink msgraph follows, to fail on the next page
)

// round plays one $batch of msgraph's: the faults of the outer POST, then
// of each sub-request in order, then the directory's own answers. As in
// msgraph, the first failure that would not be retried wins, then the
// first that would, then a nextLink msgraph would follow only to fail on
// the next page; a dropped or hung sub-request fails the batch at once,
// leaving the faults of later sub-requests unused. It returns, by probe,
// whether the answer was a not-found meaning "no record".
func (src *Source) round(ctx context.Context, probes []srcProbe) (absent []bool, err error) {
	s := src.srv
	batch := &srcEndpoint{path: "/$batch", permission: srcBatchPermissions(probes), single: true}
	if status, ok := s.srcLoginFault(http.MethodPost, s.GraphURL()+"/$batch"); ok {
		return nil, srcClassify(batch, status, "", "").err
	}
	if f := s.takeGraphFault(&graphRequest{method: http.MethodPost, path: "/$batch"}); f != nil {
		if o := src.faultOutcome(ctx, batch, f); o.err != nil && !o.onPage {
			return nil, o.err
		}
	}
	out := make([]srcOutcome, len(probes))
	for i, p := range probes {
		req := &graphRequest{method: cmp.Or(p.ep.method, http.MethodGet), path: p.path, batchID: strconv.Itoa(i + 1)}
		if f := s.takeGraphFault(req); f != nil {
			o := src.faultOutcome(ctx, p.ep, f)
			if o.abort {
				return nil, o.err
			}
			if !o.onPage || !p.ep.single && p.missing == "" {
				out[i] = o
				continue
			}
		}
		switch {
		case p.missing != "":
			out[i] = srcClassify(p.ep, http.StatusNotFound, "Request_ResourceNotFound", p.missing)
		case p.err != nil:
			out[i] = srcOutcome{err: p.err}
		}
	}
	for rank := srcNow; rank <= srcNextRound; rank++ {
		for _, o := range out {
			if o.err != nil && o.rank == rank {
				return nil, o.err
			}
		}
	}
	absent = make([]bool, len(probes))
	for i, o := range out {
		absent[i] = o.absent
	}
	return absent, nil
}

// rounds plays probes as msgraph's fetch sends them, in $batches of up to
// [MaxBatchRequests], stopping at the first that fails.
func (src *Source) rounds(ctx context.Context, probes []srcProbe) ([]bool, error) {
	var absent []bool
	for chunk := range slices.Chunk(probes, MaxBatchRequests) {
		a, err := src.round(ctx, chunk)
		if err != nil {
			return nil, err
		}
		absent = append(absent, a...)
	}
	return absent, nil
}

// srcBatchPermissions is what a 403 on the $batch itself names: every
// sub-request's permission, once.
func srcBatchPermissions(probes []srcProbe) string {
	var perms []string
	for _, p := range probes {
		if !slices.Contains(perms, p.ep.permission) {
			perms = append(perms, p.ep.permission)
		}
	}
	return strings.Join(perms, ", ")
}

// srcLoginFault returns the status of the first [Server.InjectFault] fault
// matching a request with this method and URL, as serve would answer it.
func (s *Server) srcLoginFault(method, url string) (int, bool) {
	r, err := http.NewRequest(method, url, nil)
	if err != nil {
		return 0, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.faults {
		if f.match(r) {
			return f.status, true
		}
	}
	return 0, false
}

// faultOutcome is what msgraph makes of fault f answering a request to ep.
func (src *Source) faultOutcome(ctx context.Context, ep *srcEndpoint, f *Fault) srcOutcome {
	switch f.Kind {
	// A dropped or hung sub-request takes its $batch with it: msgraph sees
	// the POST fail.
	case FaultDropConnection:
		return srcOutcome{err: srcOutage("POST /$batch: the connection was dropped (injected fault on %s)", ep.request()), abort: true}
	case FaultHang:
		select {
		case <-ctx.Done():
			return srcOutcome{err: srcGaveUp(ctx, &srcEndpoint{path: "/$batch"}), abort: true}
		case <-src.srv.closing:
			return srcOutcome{err: srcOutage("POST /$batch: the server closed while it hung (injected fault on %s)", ep.request()), abort: true}
		}
	case FaultNextLinkLoop:
		return srcOutcome{err: fmt.Errorf("%w: %s: @odata.nextLink loops back to a page already read (injected fault)",
			graphcheck.ErrUnavailable, ep.request()), rank: srcNextRound, onPage: true}
	case FaultNextLink:
		o := srcOutcome{err: fmt.Errorf("%w: %s: @odata.nextLink %.80q is not followed (injected fault)",
			graphcheck.ErrUnavailable, ep.request(), f.NextLink), onPage: true}
		if u, err := url.Parse(f.NextLink); err == nil && u.IsAbs() && strings.EqualFold(u.Host, strings.TrimPrefix(src.srv.URL, "http://")) {
			o.rank = srcNextRound // followed: what the next page holds is not modelled
		}
		return o
	}
	status := f.Status
	if status == 0 {
		status = http.StatusInternalServerError
		if f.Body != "" {
			status = http.StatusOK
		}
	}
	if f.Body != "" || status < 300 {
		return srcOutcome{err: fmt.Errorf("%w: %s: unreadable answer (injected fault, status %d)", graphcheck.ErrUnavailable, ep.request(), status)}
	}
	code, msg := f.Code, f.Message
	if code == "" {
		code = defaultErrorCode(status)
	}
	if msg == "" {
		msg = "graphtest: injected fault" // as faultResponse sends it
	}
	return srcClassify(ep, status, code, msg)
}

// srcClassify is msgraph's classifyStatus for the direct Source: the
// graphcheck sentinel of a failed answer, plus ErrOutage for the answers
// that say Graph is down (429, 5xx).
func srcClassify(ep *srcEndpoint, status int, code, message string) srcOutcome {
	detail := fmt.Sprintf("%s answered %d", ep.request(), status)
	if code != "" {
		detail += " " + code
	}
	if message != "" {
		detail += ": " + message
	}
	switch {
	case status == http.StatusNotFound && ep.principal && strings.EqualFold(code, "Request_ResourceNotFound"):
		return srcOutcome{err: fmt.Errorf("%w: %s", graphcheck.ErrPrincipalNotFound, detail)}
	case status == http.StatusNotFound && ep.absentOK &&
		(strings.EqualFold(code, "Request_ResourceNotFound") || strings.EqualFold(code, "itemNotFound")):
		return srcOutcome{absent: true}
	case status == http.StatusForbidden && strings.EqualFold(code, "AadPremiumLicenseRequired"):
		licence := ep.licence
		if licence == "" {
			licence = srcLicencePIM
		}
		return srcOutcome{err: &graphcheck.PermissionError{Permission: licence, Request: ep.path, Code: code, Err: graphcheck.ErrLicenseRequired}}
	case status == http.StatusForbidden:
		if strings.Contains(strings.ToLower(code+" "+message), "permissionscopenotgranted") {
			code = "PermissionScopeNotGranted"
		}
		return srcOutcome{err: &graphcheck.PermissionError{Permission: ep.permission, Request: ep.path, Code: code, Err: graphcheck.ErrPermissionDenied}}
	case status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable || status == http.StatusGatewayTimeout:
		return srcOutcome{err: srcOutage("%s", detail), rank: srcRetry}
	case status >= 500:
		return srcOutcome{err: srcOutage("%s", detail)}
	}
	return srcOutcome{err: fmt.Errorf("%w: %s", graphcheck.ErrUnavailable, detail)}
}

// srcGaveUp is the error of a request that ctx ended, as msgraph
// classifies it: a deadline is Graph not answering in time (an outage); a
// cancellation is the caller giving up, which says nothing about Graph.
func srcGaveUp(ctx context.Context, ep *srcEndpoint) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return srcOutage("%s: Graph did not answer in time: %w", ep.request(), ctx.Err())
	}
	return fmt.Errorf("%w: %s: %w", graphcheck.ErrUnavailable, ep.request(), ctx.Err())
}

// srcOutage returns an error wrapping [graphcheck.ErrUnavailable] and
// [graphcheck.ErrOutage].
func srcOutage(format string, args ...any) error {
	return fmt.Errorf("%w: %w: "+format, append([]any{graphcheck.ErrUnavailable, graphcheck.ErrOutage}, args...)...)
}

// request names the request in error texts, e.g. "GET /groups".
func (ep *srcEndpoint) request() string {
	if ep.path == "/$batch" {
		return "POST /$batch"
	}
	return cmp.Or(ep.method, http.MethodGet) + " " + ep.path
}

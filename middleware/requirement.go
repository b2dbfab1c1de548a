package middleware

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
)

// Requirement is what a route demands of its caller: an active directory
// role ([Role], [RoleInScope]), an active PIM-for-Groups membership or
// ownership ([GroupMember], [GroupOwner]), an app role, scope or
// Conditional Access authentication context carried by the token
// ([AppRole], [Scope], [AuthContext]), or a combination of them ([AllOf],
// [AnyOf]). [Guard.Require] enforces it.
//
// A Requirement is an immutable value, safe to share and to reuse on many
// routes. The constructors never fail: an invalid argument (an ID that is not
// a GUID, an empty AnyOf) is recorded and reported by [Requirement.Validate],
// and [Guard.Require] panics on it when the route is built, never on a
// request. The zero Requirement is invalid.
type Requirement struct {
	kind  reqKind
	id    string // role definition ID, group ID, app role or scope name, auth context ID
	scope string // directory scope of a role; access ID of a group
	subs  []Requirement
	err   error
	// unmet is what an unmet AuthContext reports, built once: the
	// sentinel with the claims challenge the client must answer.
	unmet *authContextError
}

type reqKind uint8

const (
	kindInvalid reqKind = iota
	kindRole
	kindGroup
	kindAppRole
	kindScope
	kindAll
	kindAny
	kindLoad        // Guard.Load: fetch the live state, require nothing
	kindAuthContext // AuthContext: an acrs value in the token
	kindMemberOf    // MemberOf: live transitive membership, PIM-managed or not
)

// errInvalidRequirement is wrapped by every error of [Requirement.Validate].
var errInvalidRequirement = errors.New("middleware: invalid requirement")

// Role requires the directory role roleDefinitionID (a GUID: for built-in
// roles the template ID, e.g. [RoleUserAdministrator]) to be active now,
// tenant-wide (directory scope "/"). An assignment scoped to an
// administrative unit does not satisfy it; use [RoleInScope] for that. A role
// held through a role-assignable group counts, within the group membership's
// own time window (see graphcheck.Combine).
func Role(roleDefinitionID string) Requirement {
	return RoleInScope(roleDefinitionID, graphcheck.TenantScope)
}

// RoleInScope requires the directory role roleDefinitionID to be active now
// in exactly the directory scope directoryScopeID: "/" (tenant-wide, as
// [Role]), "/administrativeUnits/{id}" (see [AdministrativeUnitScope]) or
// "/{objectID}". Scopes are compared exactly: a tenant-wide assignment does
// not satisfy an administrative-unit requirement, nor the reverse; write
// AnyOf(Role(id), RoleInScope(id, scope)) to accept either.
func RoleInScope(roleDefinitionID, directoryScopeID string) Requirement {
	r := Requirement{kind: kindRole, id: strings.ToLower(roleDefinitionID)}
	if !graphcheck.IsGUID(roleDefinitionID) {
		r.err = fmt.Errorf("%w: role definition ID %.60q is not a GUID", errInvalidRequirement, roleDefinitionID)
	}
	scope, err := normalizeScope(directoryScopeID)
	if err != nil && r.err == nil {
		r.err = err
	}
	r.scope = scope
	return r
}

// AdministrativeUnitScope returns the directory scope ID of the
// administrative unit auID, "/administrativeUnits/{auID}", for [RoleInScope].
func AdministrativeUnitScope(auID string) string {
	return "/administrativeUnits/" + auID
}

const auPrefix = "/administrativeUnits/"

func normalizeScope(s string) (string, error) {
	switch {
	case s == graphcheck.TenantScope:
		return s, nil
	case len(s) > len(auPrefix) && strings.EqualFold(s[:len(auPrefix)], auPrefix) && graphcheck.IsGUID(s[len(auPrefix):]):
		return auPrefix + strings.ToLower(s[len(auPrefix):]), nil
	case len(s) > 1 && s[0] == '/' && graphcheck.IsGUID(s[1:]):
		return strings.ToLower(s), nil
	}
	return s, fmt.Errorf(`%w: directory scope %.80q is not "/", "/administrativeUnits/{GUID}" or "/{GUID}"`, errInvalidRequirement, s)
}

// GroupMember requires an active PIM-for-Groups "member" assignment to the
// group groupID (a GUID) now. A plain, non-PIM membership is not in the live
// state and does not satisfy it.
func GroupMember(groupID string) Requirement { return group(groupID, graphcheck.AccessMember) }

// GroupOwner requires an active PIM-for-Groups "owner" assignment to the
// group groupID (a GUID) now.
func GroupOwner(groupID string) Requirement { return group(groupID, graphcheck.AccessOwner) }

// MemberOf requires live, transitive membership of the group groupID (a
// GUID) now, PIM-managed or not: a permanent member, a member through a
// nested group and an active PIM-for-Groups member all meet it. Unlike the
// token's groups claim it is never stale and has no overage limit; unlike
// [GroupMember] it does not need the group to be managed by PIM.
//
// The Guard asks Graph's checkMemberGroups for exactly the groups its
// MemberOf requirements name (collected by [Guard.Require], plus
// [GuardConfig.MemberOfGroups] for requirements built later, e.g. for
// [Guard.Check]), in the same $batch as the PIM state: one sub-request per
// 20 groups, however many groups the user belongs to (Graph permission
// GroupMember.Read.All). Membership has no end time in Graph, so it is
// seen within the cache TTL, or at once after [Guard.Purge].
func MemberOf(groupID string) Requirement {
	r := Requirement{kind: kindMemberOf, id: strings.ToLower(groupID)}
	if !graphcheck.IsGUID(groupID) {
		r.err = fmt.Errorf("%w: group ID %.60q is not a GUID", errInvalidRequirement, groupID)
	}
	return r
}

// groupIDs appends to ids the groups of r's leaves of kind k: kindMemberOf
// (the groups a Guard's lookups check) or kindGroup (GroupMember and
// GroupOwner, the groups a graphcheck.GroupWatcher reads).
func (r *Requirement) groupIDs(k reqKind, ids []string) []string {
	switch r.kind {
	case k:
		ids = append(ids, r.id)
	case kindAll, kindAny:
		for i := range r.subs {
			ids = r.subs[i].groupIDs(k, ids)
		}
	}
	return ids
}

func group(id, access string) Requirement {
	r := Requirement{kind: kindGroup, id: strings.ToLower(id), scope: access}
	if !graphcheck.IsGUID(id) {
		r.err = fmt.Errorf("%w: group ID %.60q is not a GUID", errInvalidRequirement, id)
	}
	return r
}

// AppRole requires the token's roles claim to contain name (compared
// exactly). It is checked from the token alone, without live state: app roles
// are not managed by PIM, so the token is as current as anything.
func AppRole(name string) Requirement { return claim(kindAppRole, "app role", name) }

// Scope requires the token's scp claim to contain name (compared exactly),
// e.g. "access_as_user". It is checked from the token alone. App-only tokens
// carry no scopes and never satisfy it.
func Scope(name string) Requirement { return claim(kindScope, "scope", name) }

func claim(kind reqKind, what, name string) Requirement {
	r := Requirement{kind: kind, id: name}
	if name == "" || strings.ContainsFunc(name, func(c rune) bool { return c <= ' ' || c == 0x7f }) {
		r.err = fmt.Errorf("%w: %s %.60q is empty or contains spaces", errInvalidRequirement, what, name)
	}
	return r
}

// AuthContext requires the token's acrs claim to list the Conditional
// Access authentication context id, "c1" to "c99" (the IDs Entra allows):
// a step-up, such as a fresh phishing-resistant MFA, that a Conditional
// Access policy targeting that context demands before Entra issues such a
// token. It is decided from the token alone, without live state: acrs
// says what the sign-in behind this token satisfied. App-only tokens carry
// no acrs and never satisfy it.
//
// When it is not met, the Guard answers 401 with the claims challenge
// MSAL understands, code insufficient_claims ([ErrInsufficientClaims]):
//
//	WWW-Authenticate: Bearer realm="pimguard", error="insufficient_claims", error_description="…", claims="eyJhY2Nlc3NfdG9rZW4iOnsiYWNycyI6eyJlc3NlbnRpYWwiOnRydWUsInZhbHVlIjoiYzEifX19"
//
// claims is the standard base64 of {"access_token":{"acrs":{"essential":true,"value":"c1"}}};
// the client passes the decoded JSON to its token request (MSAL's
// WithClaims / claims parameter) and retries with the new token. When
// several requirements are unmet, the first in the requirement's order
// decides the answer: put AuthContext first in an [AllOf] to ask for the
// step-up before, say, a PIM activation.
//
// An id outside c1–c99 makes the requirement invalid ([Requirement.Validate]).
func AuthContext(id string) Requirement {
	r := Requirement{kind: kindAuthContext, id: id}
	if !isAuthContextID(id) {
		r.err = fmt.Errorf("%w: authentication context %.20q is not one of c1 to c99", errInvalidRequirement, id)
		return r
	}
	r.unmet = &authContextError{id: id}
	return r
}

// isAuthContextID reports whether id is "c1" to "c99", without leading
// zeros: the authentication context IDs Entra defines.
func isAuthContextID(id string) bool {
	switch {
	case len(id) < 2 || len(id) > 3 || id[0] != 'c' || id[1] < '1' || id[1] > '9':
		return false
	case len(id) == 3:
		return '0' <= id[2] && id[2] <= '9'
	}
	return true
}

// authContextError is the denial of an unmet [AuthContext]: it wraps
// [ErrInsufficientClaims], and [RejectionFor] reads from it the claims
// request the client must make.
type authContextError struct{ id string }

func (e *authContextError) Error() string {
	return ErrInsufficientClaims.Error() + ": authentication context " + e.id
}

func (e *authContextError) Unwrap() error { return ErrInsufficientClaims }

// claimsRequest is the claims request (OpenID Connect Core §5.5) for an
// access token whose acrs holds the context, in the form Entra documents
// for authentication context challenges (see challenge). The id is one of
// c1–c99, so it needs no escaping.
func (e *authContextError) claimsRequest() string {
	return `{"access_token":{"acrs":{"essential":true,"value":"` + e.id + `"}}}`
}

// AllOf requires every one of rs. It needs at least one.
func AllOf(rs ...Requirement) Requirement { return combine(kindAll, "AllOf", rs) }

// AnyOf requires at least one of rs. It needs at least one.
func AnyOf(rs ...Requirement) Requirement { return combine(kindAny, "AnyOf", rs) }

func combine(kind reqKind, name string, rs []Requirement) Requirement {
	r := Requirement{kind: kind, subs: slices.Clone(rs)}
	if len(rs) == 0 {
		r.err = fmt.Errorf("%w: %s of nothing", errInvalidRequirement, name)
	}
	for i := range rs {
		if err := rs[i].Validate(); err != nil && r.err == nil {
			r.err = err
		}
	}
	return r
}

// Validate reports whether r can be enforced: nil, or an error naming the
// first invalid argument given to the constructors.
func (r Requirement) Validate() error {
	if r.kind == kindInvalid {
		return fmt.Errorf("%w: zero Requirement; build one with Role, GroupMember, AllOf…", errInvalidRequirement)
	}
	return r.err
}

// String returns a compact form of r, used in logs and in the "required"
// member of denials: "role:{id}" (tenant-wide), "role:{id}@{scope}",
// "group-member:{id}", "group-owner:{id}", "app-role:{name}",
// "scope:{name}", "auth-context:{id}", "member-of:{id}", "all(…, …)" and
// "any(…, …)".
// Role and group IDs are lower case.
func (r Requirement) String() string {
	switch r.kind {
	case kindRole:
		if r.scope == graphcheck.TenantScope {
			return "role:" + r.id
		}
		return "role:" + r.id + "@" + r.scope
	case kindGroup:
		return "group-" + r.scope + ":" + r.id
	case kindAppRole:
		return "app-role:" + r.id
	case kindScope:
		return "scope:" + r.id
	case kindAuthContext:
		return "auth-context:" + r.id
	case kindMemberOf:
		return "member-of:" + r.id
	case kindAll, kindAny:
		var b strings.Builder
		if r.kind == kindAll {
			b.WriteString("all(")
		} else {
			b.WriteString("any(")
		}
		for i, s := range r.subs {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(s.String())
		}
		b.WriteByte(')')
		return b.String()
	case kindLoad:
		return "load"
	}
	return "invalid"
}

// needsLive reports whether evaluating r reads the live PIM state.
func (r *Requirement) needsLive() bool {
	switch r.kind {
	case kindRole, kindGroup, kindMemberOf, kindLoad:
		return true
	case kindAll, kindAny:
		for i := range r.subs {
			if r.subs[i].needsLive() {
				return true
			}
		}
	}
	return false
}

// evaluation is one decision in progress. failures collects, in tree order,
// the leaves that made it fail; it stays nil on the allow path.
type evaluation struct {
	state        *graphcheck.State // nil when the requirement needs no live state
	principal    *Principal
	now          time.Time
	tokenAndLive bool
	failures     []failure
}

// failure is one unmet leaf requirement.
type failure struct {
	req     *Requirement
	err     error     // ErrRoleNotActive and its siblings
	endedAt time.Time // when known, when the missing assignment ended
}

// eval decides r at e.now. Every leaf is decided against the instant, never
// against what was true when the state was fetched: an assignment whose end
// has passed does not count, however fresh the cache entry.
func (r *Requirement) eval(e *evaluation) bool {
	switch r.kind {
	case kindLoad:
		return true
	case kindRole:
		if e.state == nil {
			return e.fail(r, ErrRoleNotActive, time.Time{})
		}
		if _, ok := e.state.RoleActive(e.now, r.id, r.scope); !ok {
			ended, _ := e.state.LastEnd(e.now, r.id, r.scope)
			return e.fail(r, ErrRoleNotActive, ended)
		}
		// wids lists tenant-wide roles only: a scoped role has no claim to
		// agree with, so the live state alone decides it.
		if e.tokenAndLive && r.scope == graphcheck.TenantScope && !containsFold(e.principal.DirectoryRoles, r.id) {
			return e.fail(r, ErrRoleNotInToken, time.Time{})
		}
		return true
	case kindGroup:
		if e.state == nil {
			return e.fail(r, ErrGroupNotActive, time.Time{})
		}
		if _, ok := e.state.GroupActive(e.now, r.id, r.scope); !ok {
			ended, _ := e.state.GroupLastEnd(e.now, r.id, r.scope)
			return e.fail(r, ErrGroupNotActive, ended)
		}
		// The groups claim lists memberships, not ownerships; it is also
		// absent when the user has too many groups (overage), which then
		// denies under token-and-live.
		if e.tokenAndLive && r.scope == graphcheck.AccessMember && !containsFold(e.principal.Groups, r.id) {
			return e.fail(r, ErrGroupNotInToken, time.Time{})
		}
		return true
	case kindMemberOf:
		if e.state == nil {
			return e.fail(r, ErrGroupNotActive, time.Time{})
		}
		member, known := e.state.MemberOfGroup(e.now, r.id)
		switch {
		case !known:
			// Not asked of Graph (a group outside the Guard's set), or
			// possibly held through a PIM membership that ended since:
			// undecided, so 503, never a guess.
			return e.fail(r, ErrPIMUnavailable, time.Time{})
		case !member:
			return e.fail(r, ErrGroupNotActive, time.Time{})
		}
		return true
	case kindAppRole:
		if !slices.Contains(e.principal.AppRoles, r.id) {
			return e.fail(r, ErrAppRoleMissing, time.Time{})
		}
		return true
	case kindScope:
		if !slices.Contains(e.principal.Scopes, r.id) {
			return e.fail(r, ErrScopeMissing, time.Time{})
		}
		return true
	case kindAuthContext:
		if !slices.Contains(e.principal.AuthContexts, r.id) {
			return e.fail(r, r.unmet, time.Time{})
		}
		return true
	case kindAll:
		ok := true
		for i := range r.subs {
			// No short cut: a denial lists everything that is missing.
			if !r.subs[i].eval(e) {
				ok = false
			}
		}
		return ok
	case kindAny:
		mark := len(e.failures)
		for i := range r.subs {
			if r.subs[i].eval(e) {
				e.failures = e.failures[:mark]
				return true
			}
		}
		return false
	}
	return e.fail(r, errInvalidRequirement, time.Time{}) // unreachable: Require validates; answered 500
}

func (e *evaluation) fail(r *Requirement, err error, endedAt time.Time) bool {
	e.failures = append(e.failures, failure{req: r, err: err, endedAt: endedAt})
	return false
}

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

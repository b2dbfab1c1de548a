package graphcheck

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Principal identifies whose state to fetch.
type Principal struct {
	// TenantID and ObjectID are the token's tid and oid, lower-case GUIDs.
	TenantID string
	ObjectID string
	// ServicePrincipal is true for app-only tokens: the object is a service
	// principal, not a user, which changes the Graph paths used and skips
	// user-only checks.
	ServicePrincipal bool
	// Need lists the facts to fetch besides PIM state (account, risk). It
	// is part of [Principal.LookupKey], not of [Principal.Key].
	Need Need
	// CheckGroups lists the groups whose live, transitive membership the
	// lookup must check, PIM-managed or not: the answer is
	// [State.MemberOf], asked with [State.MemberOfGroup]. The zero value
	// checks none. Build it once, when configuring (middleware's Guard
	// builds one for all its requirements), and copy it into every
	// Principal: it carries the part of [Principal.LookupKey] that names
	// its groups, computed by [NewGroupSet], so that a key costs no more
	// than without it. It is part of LookupKey, not of Key.
	CheckGroups GroupSet
}

// Key returns "tenant/object": a cache key for what depends on the directory
// object alone, whatever its kind and Need (graphcheck/msgraph keys users'
// risk by it). A cache of Lookup answers must key them by
// [Principal.LookupKey] instead.
func (p Principal) Key() string { return p.TenantID + "/" + p.ObjectID }

// LookupKey returns "tenant/object/kind/need" followed by the key of
// CheckGroups, e.g. "…/…/u/ar", "…/…/sp/-" or "…/…/u/a/g1:…": a cache key
// for the answer of a Lookup of p. Kind is u (user) or sp (service
// principal); need lists a ([NeedAccount]) and r ([NeedRisk]), or is - for
// neither; the groups part ([GroupSet.Key]) is empty when CheckGroups is,
// and otherwise names the number of groups and a SHA-256 digest of their
// sorted IDs. A State holds what its lookup asked for and no more (Account
// and Risk are nil unless Need asked for them, Risk always for a service
// principal; MemberOf answers for the groups of CheckGroups only), so an
// answer cached for one kind, Need or group set must never be served to a
// lookup of another: keyed by Key alone, an app-only request's state,
// without account or risk, would be served to a user request for the same
// object ID, and a state that checked group A would answer "not a member"
// of group B. The codes are short and the groups part is computed once,
// by [NewGroupSet], so that a key costs what Key costs: one concatenation,
// and for GUIDs one allocation.
func (p Principal) LookupKey() string {
	kind := 0
	if p.ServicePrincipal {
		kind = 1
	}
	if int(p.Need) < len(lookupKeySuffixes[kind]) {
		return p.TenantID + "/" + p.ObjectID + lookupKeySuffixes[kind][p.Need] + p.CheckGroups.key
	}
	// A Need bit added without a code here still makes a distinct key.
	return fmt.Sprintf("%s/%s/%s/need(%#x)%s", p.TenantID, p.ObjectID, lookupKeyKinds[kind], uint8(p.Need), p.CheckGroups.key)
}

// lookupKeyKinds are the kind codes of [Principal.LookupKey].
var lookupKeyKinds = [2]string{"u", "sp"}

// lookupKeySuffixes are the kind and need parts of [Principal.LookupKey],
// by kind and Need, written out so that a key takes one concatenation.
var lookupKeySuffixes = [2][4]string{
	{"/u/-", "/u/a", "/u/r", "/u/ar"},
	{"/sp/-", "/sp/a", "/sp/r", "/sp/ar"},
}

// Validate checks that both IDs are GUIDs. Sources call it before putting
// an ID into a URL or an OData $filter: an oid is attacker-influenced input.
func (p Principal) Validate() error {
	if !IsGUID(p.TenantID) {
		return fmt.Errorf("%w: tenant ID %.40q is not a GUID", ErrInvalidPrincipal, p.TenantID)
	}
	if !IsGUID(p.ObjectID) {
		return fmt.Errorf("%w: object ID %.40q is not a GUID", ErrInvalidPrincipal, p.ObjectID)
	}
	return nil
}

// Source fetches a principal's live PIM state. Implementations must be safe
// for concurrent use, must bound every call (the ctx deadline and their own
// timeout), and must return either a State that reflects Graph's answer or
// an error wrapping one of the sentinels below: never an empty State for a
// failure.
type Source interface {
	Lookup(ctx context.Context, p Principal) (*State, error)
}

// SourceFunc adapts a function to [Source].
type SourceFunc func(ctx context.Context, p Principal) (*State, error)

// Lookup calls f.
func (f SourceFunc) Lookup(ctx context.Context, p Principal) (*State, error) { return f(ctx, p) }

// Error classes. Test with [errors.Is]; wrapping errors carry detail for
// logs (never a token).
var (
	// ErrInvalidPrincipal: the principal's IDs are not GUIDs. Nothing was sent.
	ErrInvalidPrincipal = errors.New("graphcheck: invalid principal")
	// ErrPrincipalNotFound: Graph answered 404 Request_ResourceNotFound for
	// the principal — the object was deleted. A definite answer, not an outage.
	ErrPrincipalNotFound = errors.New("graphcheck: principal not found in the directory")
	// ErrPermissionDenied: the application lacks a Graph permission (403
	// Authorization_RequestDenied, or PIM's PermissionScopeNotGranted). A
	// configuration error; see [PermissionError] for which permission.
	ErrPermissionDenied = errors.New("graphcheck: Graph permission missing")
	// ErrLicenseRequired: the tenant lacks the licence PIM needs (403
	// AadPremiumLicenseRequired: Microsoft Entra ID P2 or Governance).
	ErrLicenseRequired = errors.New("graphcheck: tenant licence required")
	// ErrUnavailable: Graph could not answer now — throttling (429), 5xx,
	// timeouts, connection failures, malformed or unexpected bodies. Retry
	// later; never read it as "no roles".
	ErrUnavailable = errors.New("graphcheck: Graph unavailable")
	// ErrOutage is wrapped, beside ErrUnavailable, by the failures that say
	// Graph itself is down for everyone rather than that one lookup went
	// wrong: refused or dropped connections, 5xx answers, throttling that
	// outlasted the retries, timeouts. A malformed or unexpected answer for
	// one principal is ErrUnavailable without ErrOutage. Circuit breakers
	// (graphcheck/breaker) count only these.
	ErrOutage = errors.New("graphcheck: Graph outage")
)

// PermissionError names the permission whose absence made Graph refuse a
// request. It wraps [ErrPermissionDenied] or [ErrLicenseRequired].
type PermissionError struct {
	// Permission is the application permission to grant, e.g.
	// "RoleAssignmentSchedule.Read.Directory", or the licence to buy.
	Permission string
	// Request is the Graph request that was refused (path, no query values).
	Request string
	// Code is Graph's error code.
	Code string
	// Err is ErrPermissionDenied or ErrLicenseRequired.
	Err error
}

func (e *PermissionError) Error() string {
	return fmt.Sprintf("%v: %s refused with %s; grant %s", e.Err, e.Request, e.Code, e.Permission)
}

func (e *PermissionError) Unwrap() error { return e.Err }

// IsGUID reports whether s has the 8-4-4-4-12 hexadecimal form of a GUID.
func IsGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// Optional capabilities. A Source may implement these besides [Source]; a
// caller that finds one (middleware.Guard does, with a type assertion) uses
// it. They are declared here, once, so that every Source and every caller
// agree on them.

// Preflighter is implemented by Sources that can check at start that they
// are allowed to read what lookups asking for need will read. Preflight
// returns nil when they are, and otherwise errors that wrap the sentinels
// above ([*PermissionError] naming each missing permission or licence).
type Preflighter interface {
	Preflight(ctx context.Context, need Need) error
}

// Purger is implemented by what caches facts about principals and can
// forget them on demand: a Source with caches of its own (graphcheck/msgraph
// keeps users' risk and the tenants' group-held roles), and the caches in
// front of a Source (middleware's Authenticator and Guard). Purge forgets
// one principal (IDs compared in lower case), PurgeAll everything. After
// either returns, nothing fetched before the call may be served or stored.
// Both must be safe for concurrent use.
type Purger interface {
	Purge(tenantID, objectID string)
	PurgeAll()
}

// MaxCheckGroups bounds the groups of a [GroupSet]. Graph's checkMemberGroups
// takes up to 20 group IDs per call, so graphcheck/msgraph asks 100 groups
// in five sub-requests, which still travel in the lookup's one $batch
// (with the three PIM requests, the account and the risk: ten of the 20
// a $batch may hold).
const MaxCheckGroups = 100

// GroupSet is an immutable set of group object IDs whose live membership a
// lookup checks ([Principal.CheckGroups]): distinct lower-case GUIDs in
// sorted order, with the [Principal.LookupKey] part that names them,
// computed once. The zero value is the empty set. Make one with
// [NewGroupSet]. A GroupSet is two strings, so it copies cheaply, compares
// with == (as does a Principal holding one) and is safe for concurrent
// use.
type GroupSet struct {
	list string // the sorted, distinct, lower-case GUIDs joined by ","; "" for none
	key  string // "" for the empty set, else "/g<n>:<digest>"
}

// guidLen is the length of a GUID in the 8-4-4-4-12 form.
const guidLen = 36

// NewGroupSet returns the set of the given group object IDs, compared and
// kept in lower case; duplicates count once. It fails when an ID is not a
// GUID or when there are more than [MaxCheckGroups] distinct IDs. No ID
// means the empty set. Call it when configuring, not per request: it
// sorts, hashes and allocates.
func NewGroupSet(ids ...string) (GroupSet, error) {
	if len(ids) == 0 {
		return GroupSet{}, nil
	}
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if !IsGUID(id) {
			return GroupSet{}, fmt.Errorf("graphcheck: group ID %.40q is not a GUID", id)
		}
		out = append(out, strings.ToLower(id))
	}
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) > MaxCheckGroups {
		return GroupSet{}, fmt.Errorf("graphcheck: %d groups to check, more than %d", len(out), MaxCheckGroups)
	}
	list := strings.Join(out, ",")
	sum := sha256.Sum256([]byte(list))
	return GroupSet{list: list, key: fmt.Sprintf("/g%d:%s", len(out), base64.RawURLEncoding.EncodeToString(sum[:]))}, nil
}

// Len returns the number of groups in g.
func (g GroupSet) Len() int { return (len(g.list) + 1) / (guidLen + 1) }

// IDs returns g's group IDs, lower case, sorted and distinct, in a new
// slice; nil for the empty set.
func (g GroupSet) IDs() []string {
	if g.list == "" {
		return nil
	}
	return strings.Split(g.list, ",")
}

// Contains reports whether id (compared case-insensitively) is in g.
func (g GroupSet) Contains(id string) bool {
	if len(id) != guidLen {
		return false
	}
	for i := 0; i < len(g.list); i += guidLen + 1 {
		if strings.EqualFold(g.list[i:i+guidLen], id) {
			return true
		}
	}
	return false
}

// Key returns the part of [Principal.LookupKey] that names g: "" for the
// empty set, else "/g<n>:" and the unpadded base64url SHA-256 digest of the
// sorted IDs joined by commas. Two sets have the same Key exactly when
// they hold the same groups.
func (g GroupSet) Key() string { return g.key }

// String returns the IDs joined by commas, for logs.
func (g GroupSet) String() string { return g.list }

// Needs that no lookup asks for through [Principal.Need]: they tell a
// [Preflighter] what else the Source will be asked, so that it checks the
// permissions those requests need. A Source ignores them in a Principal
// (setting them there only lengthens its LookupKey): a lookup checks
// membership because its [Principal.CheckGroups] is not empty, and
// [UserDirectory.User] is a call of its own.
const (
	// NeedGroupMembership says that lookups will check live group
	// membership ([Principal.CheckGroups]).
	NeedGroupMembership Need = 1 << (iota + 2)
	// NeedAdministrativeUnits says that the Source will be asked for users
	// and their administrative units ([UserDirectory]).
	NeedAdministrativeUnits
)

// DirectoryUser is a user of the directory as a [UserDirectory] describes
// it: typically the target of an operation (the user whose password a
// helpdesk resets), not the caller, whose live state is a [State].
type DirectoryUser struct {
	// TenantID and ID are the tenant's and the user's object IDs, lower
	// case.
	TenantID string
	ID       string
	// DisplayName and UserPrincipalName are the user's, as the directory
	// holds them ("" when it holds none).
	DisplayName       string
	UserPrincipalName string
	// AdministrativeUnits are the IDs of the administrative units the user
	// is a member of (graphcheck/msgraph reports them lower case, sorted
	// and distinct; the methods do not rely on it). Membership of an
	// administrative unit is direct: a unit holding a group does not hold
	// the group's members, as in Microsoft Entra ID, where a role scoped to
	// the unit covers the group but not its members.
	AdministrativeUnits []string
}

// InAdministrativeUnit reports whether the user is a member of the
// administrative unit auID (compared case-insensitively). A nil
// DirectoryUser is in none.
func (u *DirectoryUser) InAdministrativeUnit(auID string) bool {
	return u != nil && containsID(u.AdministrativeUnits, auID)
}

// Scopes returns the directory scopes a role assignment may have to cover
// the user: [TenantScope] and "/administrativeUnits/{id}" for each of its
// administrative units, the values to try in [State.RoleActive] for "this
// role, tenant-wide or scoped to a unit that holds the target user". A nil
// DirectoryUser has the tenant scope only.
func (u *DirectoryUser) Scopes() []string {
	out := []string{TenantScope}
	if u == nil {
		return out
	}
	for _, au := range u.AdministrativeUnits {
		out = append(out, "/administrativeUnits/"+au)
	}
	return out
}

// UserDirectory is implemented by Sources that can describe any user of
// the directory, not only the principal of a request: graphcheck/msgraph
// reads Graph, graphtest its fake directory, and a demo may answer from
// users of its own. User returns the user userID of tenant tenantID, with
// its administrative units. It wraps [ErrInvalidPrincipal] when an ID is
// not a GUID (nothing is asked), [ErrPrincipalNotFound] when the directory
// has no such user, and otherwise the sentinels of [Source]'s lookups; it
// never returns a partial user. Implementations must be safe for
// concurrent use and bound every call. Nothing is cached: each call asks
// the directory.
type UserDirectory interface {
	User(ctx context.Context, tenantID, userID string) (*DirectoryUser, error)
}

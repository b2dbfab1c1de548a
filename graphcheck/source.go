package graphcheck

import (
	"context"
	"errors"
	"fmt"
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
}

// Key returns "tenant/object": a cache key for what depends on the directory
// object alone, whatever its kind and Need (graphcheck/msgraph keys users'
// risk by it). A cache of Lookup answers must key them by
// [Principal.LookupKey] instead.
func (p Principal) Key() string { return p.TenantID + "/" + p.ObjectID }

// LookupKey returns "tenant/object/kind/need", e.g. "…/…/u/ar" or
// "…/…/sp/-": a cache key for the answer of a Lookup of p. Kind is u (user)
// or sp (service principal); need lists a ([NeedAccount]) and r
// ([NeedRisk]), or is - for neither. A State holds what its lookup asked
// for and no more (Account and Risk are nil unless Need asked for them,
// Risk always for a service principal), so an answer cached for one kind or
// Need must never be served to a lookup of another: keyed by Key alone, an
// app-only request's state, without account or risk, would be served to a
// user request for the same object ID. The codes are short so that a key
// costs what Key costs: one concatenation, and for GUIDs one allocation of
// the same size class.
func (p Principal) LookupKey() string {
	kind := 0
	if p.ServicePrincipal {
		kind = 1
	}
	if int(p.Need) < len(lookupKeySuffixes[kind]) {
		return p.TenantID + "/" + p.ObjectID + lookupKeySuffixes[kind][p.Need]
	}
	// A Need bit added without a code here still makes a distinct key.
	return fmt.Sprintf("%s/%s/%s/need(%#x)", p.TenantID, p.ObjectID, lookupKeyKinds[kind], uint8(p.Need))
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

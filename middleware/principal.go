package middleware

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Principal is the caller a verified access token names: a user (delegated
// token) or a service principal (app-only token). In both cases ObjectID is
// the Entra object ID (oid) that PIM assignments refer to.
//
// The claims it copies (Scopes, AppRoles, DirectoryRoles, Groups) were frozen
// when the token was issued, up to 90 minutes ago: they say nothing reliable
// about a PIM role now. A Principal is shared between requests that present
// the same token; treat it as read-only.
//
// Claims it does not copy into a field (amr, xms_cc, any optional claim)
// are read with [Principal.Claim] or [ClaimAs], from the payload kept at
// verification: no second parse of the token.
type Principal struct {
	// TenantID is the tid claim, lower case.
	TenantID string
	// ObjectID is the oid claim, lower case.
	ObjectID string
	// Subject is the sub claim (pairwise per application in Entra).
	Subject string
	// AppID is the client application that obtained the token (azp in v2
	// tokens, appid in v1).
	AppID string
	// Issuer is the iss claim; its form tells v1 from v2 tokens.
	Issuer string
	// Version is the ver claim, "1.0" or "2.0".
	Version string
	// AppOnly is true for tokens obtained by an application for itself
	// (client credentials): idtyp "app" and no scp, or, where the optional
	// idtyp claim is absent, no scp and sub equal to oid (Entra's app-only
	// shape). It is false for user (delegated) tokens: scp, and idtyp absent
	// or "user". [Authenticator] refuses a token that is neither, and ID
	// tokens, rather than guess: a [Guard] skips the user-only account checks
	// (sessions, password, risk) for app-only principals.
	AppOnly bool
	// Scopes are the delegated permissions in scp.
	Scopes []string
	// AppRoles are the application roles in roles.
	AppRoles []string
	// DirectoryRoles are the directory role template IDs in wids, as of issue time.
	DirectoryRoles []string
	// Groups are the group object IDs in groups, as of issue time.
	Groups []string
	// AuthContexts are the Conditional Access authentication context IDs
	// ("c1" to "c99") in acrs: the contexts whose policies the sign-in
	// satisfied when the token was issued. [AuthContext] requires one.
	AuthContexts []string
	// Name is the display name (name), for logs.
	Name string
	// Username is preferred_username (v2) or upn / unique_name (v1), for logs.
	Username string
	// IssuedAt and ExpiresAt are iat and exp.
	IssuedAt, ExpiresAt time.Time

	// claims is the verified payload and its index, for Claim; empty for a
	// Principal not built by an Authenticator.
	claims tokenClaims
}

// ErrClaimNotFound is returned (wrapped) by [ClaimAs] for a claim the
// token does not carry.
var ErrClaimNotFound = errors.New("middleware: claim not in token")

// Claim returns the raw JSON value of the token's claim name, e.g. "amr",
// "acrs", "xms_cc", and whether the token carries it. Names are matched as
// the Authenticator matched the claims it copies, as encoding/json matches
// struct fields: without regard to case (a verified token never has two
// members whose names differ only by case: it is refused). The value was
// verified with the token and kept by the verified-token cache; Claim
// neither parses the token again nor allocates for a lower-case name.
//
// The returned bytes are shared by every request that presents the token:
// read them, never modify them. A Principal not built by an Authenticator
// has no claims. Claim is safe for concurrent use.
func (p *Principal) Claim(name string) (json.RawMessage, bool) {
	if p == nil {
		return nil, false
	}
	return p.claims.lookup(name)
}

// ClaimAs decodes the token's claim name ([Principal.Claim]) into a new T
// with encoding/json, e.g. ClaimAs[[]string](p, "amr") or
// ClaimAs[string](p, "xms_cc"). It returns an error wrapping
// [ErrClaimNotFound] when the token does not carry the claim, and the
// decoding error (naming the claim, never its value) when the value is not
// a T. A null value decodes to T's zero value.
func ClaimAs[T any](p *Principal, name string) (T, error) {
	var v T
	raw, ok := p.Claim(name)
	if !ok {
		return v, fmt.Errorf("%w: %.60q", ErrClaimNotFound, name)
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		var zero T
		return zero, fmt.Errorf("middleware: claim %.60q: %w", name, err)
	}
	return v, nil
}

// LogValue implements [slog.LogValuer]: the identifiers an operator needs,
// and nothing a token could be rebuilt from.
func (p *Principal) LogValue() slog.Value {
	if p == nil {
		return slog.Value{}
	}
	attrs := []slog.Attr{
		slog.String("tid", p.TenantID),
		slog.String("oid", p.ObjectID),
		slog.String("app", p.AppID),
	}
	if p.Username != "" {
		attrs = append(attrs, slog.String("user", p.Username))
	}
	return slog.GroupValue(attrs...)
}

type principalKey struct{}

// ContextWithPrincipal returns a copy of ctx carrying p. [Authenticator]
// calls it for every authenticated request.
func ContextWithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFromContext returns the verified principal of the request, if the
// request went through an [Authenticator].
func PrincipalFromContext(ctx context.Context) (*Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(*Principal)
	return p, ok && p != nil
}

package middleware

import (
	"context"
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
	// Name is the display name (name), for logs.
	Name string
	// Username is preferred_username (v2) or upn / unique_name (v1), for logs.
	Username string
	// IssuedAt and ExpiresAt are iat and exp.
	IssuedAt, ExpiresAt time.Time
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

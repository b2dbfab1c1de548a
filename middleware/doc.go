// Package middleware authenticates Microsoft Entra ID access tokens for HTTP
// APIs and, with a live PIM source, enforces privileged roles that are active
// now rather than the ones a token claimed when it was issued.
//
// # Authentication
//
// [NewAuthenticator] builds an [Authenticator] from an [AuthenticatorConfig]:
// the tenants and audiences to accept. [Authenticator.Handler] is a
// func(http.Handler) http.Handler for chi, alice or plain net/http. For each
// request it
//
//   - reads the token from the Authorization header only ([BearerToken], RFC
//     6750 §2.1), refusing duplicates, empty and oversized tokens before any
//     parsing;
//   - verifies it with coreos/go-oidc (go-jose underneath) against the
//     tenant's v2 or v1 issuer and key set, RS256 only by default, with one
//     clock-skew leeway on exp, nbf and iat, and refuses Microsoft Graph
//     tokens, ID tokens and tokens without oid or tid;
//   - puts the resulting [Principal] in the request context
//     ([PrincipalFromContext]).
//
// Verified tokens are cached by SHA-256 until they expire, so a warm request
// repeats neither the RSA verification nor the JSON decoding; a cached token
// stops being accepted when its signing key leaves the key set. Key sets are
// refetched on an unknown kid at most once per cooldown, so a stream of tokens
// with random kids cannot turn into a stream of JWKS fetches.
//
// # Rejections
//
// A refused request gets 401 with a WWW-Authenticate: Bearer challenge (RFC
// 6750 §3), 400 for an ambiguous Authorization header, or 503 with
// Retry-After when the signing keys cannot be fetched; the body is JSON:
//
//	{"error": "invalid_token", "error_description": "The access token has expired.", "code": "token_expired"}
//
// The code values (CodeTokenExpired and its siblings) are a stable contract.
// [WriteRejection] writes that body; set [AuthenticatorConfig.ErrorWriter]
// to change it. Error descriptions are fixed sentences: neither the token nor
// internal error text ever reaches a client or a log record.
//
// This package never imports the Microsoft Graph SDK: live PIM state comes
// through interfaces, so users who bring their own source do not compile it.
package middleware

package middleware

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"
)

// Sentinel errors returned (wrapped) by [Authenticator.Authenticate] and
// [Authenticator.Verify]. Test for them with [errors.Is]; the wrapping error's
// text carries detail for logs, never the token itself.
var (
	// ErrTokenMissing: the request carries no bearer token.
	ErrTokenMissing = errors.New("middleware: bearer token missing")
	// ErrRequestMalformed: the Authorization header is ambiguous, e.g. sent twice.
	ErrRequestMalformed = errors.New("middleware: malformed authorization request")
	// ErrTokenMalformed: the token is empty, too large, or not a signed JWT.
	ErrTokenMalformed = errors.New("middleware: token malformed")
	// ErrTokenExpired: exp is past, beyond the clock skew.
	ErrTokenExpired = errors.New("middleware: token expired")
	// ErrTokenNotYetValid: nbf or iat is in the future, beyond the clock skew.
	ErrTokenNotYetValid = errors.New("middleware: token not yet valid")
	// ErrTokenBadSignature: the signature does not verify, the algorithm is not
	// allowed, or the signing key is not in the tenant's key set.
	ErrTokenBadSignature = errors.New("middleware: token signature invalid")
	// ErrTokenWrongAudience: no aud value is accepted, or aud names Microsoft Graph.
	ErrTokenWrongAudience = errors.New("middleware: token audience not accepted")
	// ErrTokenWrongIssuer: iss is not an accepted issuer, or tid disagrees with it.
	ErrTokenWrongIssuer = errors.New("middleware: token issuer not accepted")
	// ErrTokenTenantNotAllowed: the token comes from an Entra tenant that is not
	// in the allowed list.
	ErrTokenTenantNotAllowed = errors.New("middleware: token tenant not allowed")
	// ErrTokenNotAccessToken: the token has neither scp nor roles, the shape of
	// an ID token presented as a bearer token.
	ErrTokenNotAccessToken = errors.New("middleware: not an access token")
	// ErrTokenMissingClaim: a claim pimguard needs (oid, tid, exp, iat) is absent.
	ErrTokenMissingClaim = errors.New("middleware: token lacks a required claim")
	// ErrKeysUnavailable: the token's signing key is unknown and the key set
	// could not be fetched, so the token can be neither accepted nor refused.
	ErrKeysUnavailable = errors.New("middleware: signing keys unavailable")
)

// Sentinel errors of authorization by a [Guard]. They reach the [ErrorWriter]
// in [Rejection.Err] (wrapped, with the requirement or the source's error
// for logs) and [RejectionFor] classifies them like the ones above.
var (
	// ErrRoleNotActive: a required directory role is not active now in the
	// principal's live PIM state.
	ErrRoleNotActive = errors.New("middleware: required role not active")
	// ErrGroupNotActive: a required PIM-for-Groups membership or ownership is
	// not active now in the principal's live PIM state.
	ErrGroupNotActive = errors.New("middleware: required group not active")
	// ErrRoleNotInToken: under [PolicyTokenAndLive], the role is active but
	// the token's wids claim does not list it; a new token would.
	ErrRoleNotInToken = errors.New("middleware: required role not in token")
	// ErrGroupNotInToken: under [PolicyTokenAndLive], the membership is
	// active but the token's groups claim does not list the group.
	ErrGroupNotInToken = errors.New("middleware: required group not in token")
	// ErrAppRoleMissing: the token's roles claim lacks a required app role.
	ErrAppRoleMissing = errors.New("middleware: required app role missing")
	// ErrScopeMissing: the token's scp claim lacks a required scope.
	ErrScopeMissing = errors.New("middleware: required scope missing")
	// ErrPIMUnavailable: the live PIM state could not be fetched (Graph down,
	// throttled, a permission or licence missing, a timeout) and no usable
	// state was cached, so the request can be neither allowed nor denied.
	ErrPIMUnavailable = errors.New("middleware: live PIM state unavailable")
	// ErrPrincipalNotFound: the directory says the token's principal does not
	// exist (deleted since the token was issued), or its IDs are not GUIDs.
	ErrPrincipalNotFound = errors.New("middleware: principal not found in the directory")
	// ErrAccountDisabled: [CheckAccountEnabled] found the principal's
	// account disabled. The token is refused as revoked.
	ErrAccountDisabled = errors.New("middleware: account disabled")
	// ErrAccountDeleted: [CheckAccountEnabled] found that the directory no
	// longer has the principal.
	ErrAccountDeleted = errors.New("middleware: account deleted")
	// ErrSessionRevoked: [CheckSessionsRevoked] or [CheckPasswordChanged]
	// found the token issued before the user's sessions were revoked or
	// password changed. The client must sign in again.
	ErrSessionRevoked = errors.New("middleware: sign-in session revoked")
	// ErrUserAtRisk: [CheckUserRisk] found the user at high risk in
	// Identity Protection. Signing in again is where risk policies make the
	// user remediate.
	ErrUserAtRisk = errors.New("middleware: user at risk")
	// ErrPreflightUnsupported: [Guard.Preflight] was called with a Source
	// that does not implement graphcheck.Preflighter.
	ErrPreflightUnsupported = errors.New("middleware: the Source cannot preflight")
	// ErrNoPrincipal: a [Guard] ran on a request that carries no [Principal],
	// i.e. without an [Authenticator] in front of it: a wiring bug, answered
	// with 500 so that it is noticed and never mistaken for a decision.
	ErrNoPrincipal = errors.New("middleware: no authenticated principal in the request context; mount Authenticator.Handler before Guard")
)

// Machine-readable codes in the "code" member of rejection bodies. They are a
// stable contract: clients may branch on them.
const (
	CodeTokenMissing          = "token_missing"
	CodeRequestMalformed      = "request_malformed"
	CodeTokenMalformed        = "token_malformed"
	CodeTokenExpired          = "token_expired"
	CodeTokenNotYetValid      = "token_not_yet_valid"
	CodeTokenBadSignature     = "token_bad_signature"
	CodeTokenWrongAudience    = "token_wrong_audience"
	CodeTokenWrongIssuer      = "token_wrong_issuer"
	CodeTokenTenantNotAllowed = "token_tenant_not_allowed"
	CodeTokenNotAccessToken   = "token_not_access_token"
	CodeTokenMissingClaim     = "token_missing_claim"
	CodeKeysUnavailable       = "token_keys_unavailable"
	CodeInternal              = "internal_error"

	// Codes of [Guard] rejections.
	CodeRoleNotActive     = "role_not_active"
	CodeGroupNotActive    = "group_not_active"
	CodeRoleNotInToken    = "role_not_in_token"
	CodeGroupNotInToken   = "group_not_in_token"
	CodeAppRoleMissing    = "app_role_missing"
	CodeScopeMissing      = "scope_missing"
	CodePIMUnavailable    = "pim_unavailable"
	CodePrincipalNotFound = "principal_not_found"

	// Codes of [AccountChecks] rejections.
	CodeAccountDisabled = "account_disabled"
	CodeAccountDeleted  = "account_deleted"
	CodeSessionRevoked  = "session_revoked"
	CodeUserAtRisk      = "user_at_risk"
)

// RFC 6750 §3.1 error codes, the "error" member of rejection bodies and the
// error parameter of WWW-Authenticate.
const (
	OAuthInvalidRequest    = "invalid_request"
	OAuthInvalidToken      = "invalid_token"
	OAuthInsufficientScope = "insufficient_scope"
)

// Rejection describes a refused request: what the client is told, and the
// cause, which is for logs only. An [ErrorWriter] renders it.
type Rejection struct {
	// Status is the HTTP status: 400, 401, 403, 500 or 503.
	Status int
	// OAuthError is the RFC 6750 error code; empty when no token was presented
	// (RFC 6750 §3.1: no error information in that case).
	OAuthError string
	// Code is the machine-readable pimguard code, e.g. "token_expired".
	Code string
	// Description is a fixed, human-readable sentence safe to send to clients.
	Description string
	// Realm is the protection realm for WWW-Authenticate.
	Realm string
	// RetryAfter, when positive, is sent as a Retry-After header (503).
	RetryAfter time.Duration
	// Err is the underlying cause. Never send it to the client.
	Err error

	// Required lists, for a [Guard] denial, the requirements that were not
	// met, in the form of [Requirement.String] (e.g. "role:62e90394-…",
	// "group-member:…"), without the [AllOf] / [AnyOf] structure: where
	// the requirement offers alternatives, meeting one of them may be
	// enough (the decision log has the whole requirement). Empty for other
	// rejections.
	Required []string
	// EndedAt, when not zero, is when the latest of the missing assignments
	// ended, as far as the cached live state knows; zero when it is not
	// known (e.g. the assignment never was active, or ended before the
	// state was fetched).
	EndedAt time.Time
}

// ErrorWriter renders a [Rejection]. Replace the default ([WriteRejection]) to
// change the body format; keep the status and WWW-Authenticate semantics.
type ErrorWriter func(w http.ResponseWriter, r *http.Request, rej *Rejection)

type rejectionKind struct {
	err         error
	status      int
	oauth       string
	code        string
	description string
}

// rejectionKinds maps each sentinel to what the client sees. Descriptions are
// fixed strings: they must never echo token content (RFC 6750 also restricts
// error_description to printable ASCII without '"' and '\').
var rejectionKinds = []rejectionKind{
	{ErrTokenMissing, http.StatusUnauthorized, "", CodeTokenMissing, "A bearer access token is required."},
	{ErrRequestMalformed, http.StatusBadRequest, OAuthInvalidRequest, CodeRequestMalformed, "The Authorization header is malformed."},
	{ErrTokenMalformed, http.StatusUnauthorized, OAuthInvalidToken, CodeTokenMalformed, "The access token is malformed."},
	{ErrTokenExpired, http.StatusUnauthorized, OAuthInvalidToken, CodeTokenExpired, "The access token has expired."},
	{ErrTokenNotYetValid, http.StatusUnauthorized, OAuthInvalidToken, CodeTokenNotYetValid, "The access token is not yet valid."},
	{ErrTokenBadSignature, http.StatusUnauthorized, OAuthInvalidToken, CodeTokenBadSignature, "The access token signature is invalid."},
	{ErrTokenWrongAudience, http.StatusUnauthorized, OAuthInvalidToken, CodeTokenWrongAudience, "The access token was not issued for this API."},
	{ErrTokenWrongIssuer, http.StatusUnauthorized, OAuthInvalidToken, CodeTokenWrongIssuer, "The access token issuer is not accepted."},
	{ErrTokenTenantNotAllowed, http.StatusUnauthorized, OAuthInvalidToken, CodeTokenTenantNotAllowed, "The access token comes from a tenant that is not allowed."},
	{ErrTokenNotAccessToken, http.StatusUnauthorized, OAuthInvalidToken, CodeTokenNotAccessToken, "The token is not an access token."},
	{ErrTokenMissingClaim, http.StatusUnauthorized, OAuthInvalidToken, CodeTokenMissingClaim, "The access token lacks a required claim."},
	{ErrKeysUnavailable, http.StatusServiceUnavailable, "", CodeKeysUnavailable, "The token signing keys cannot be fetched; try again shortly."},
	{ErrRoleNotActive, http.StatusForbidden, OAuthInsufficientScope, CodeRoleNotActive, "A required privileged role is not active; activate it in Privileged Identity Management and retry."},
	{ErrGroupNotActive, http.StatusForbidden, OAuthInsufficientScope, CodeGroupNotActive, "A required privileged group membership is not active; activate it in Privileged Identity Management and retry."},
	{ErrRoleNotInToken, http.StatusForbidden, OAuthInsufficientScope, CodeRoleNotInToken, "The access token does not carry a required role; obtain a new token and retry."},
	{ErrGroupNotInToken, http.StatusForbidden, OAuthInsufficientScope, CodeGroupNotInToken, "The access token does not carry a required group; obtain a new token and retry."},
	{ErrAppRoleMissing, http.StatusForbidden, OAuthInsufficientScope, CodeAppRoleMissing, "The access token lacks a required application role."},
	{ErrScopeMissing, http.StatusForbidden, OAuthInsufficientScope, CodeScopeMissing, "The access token lacks a required scope."},
	{ErrPIMUnavailable, http.StatusServiceUnavailable, "", CodePIMUnavailable, "Privileged role state cannot be checked right now; try again shortly."},
	{ErrPrincipalNotFound, http.StatusUnauthorized, OAuthInvalidToken, CodePrincipalNotFound, "The principal of the access token does not exist in the directory."},
	{ErrAccountDisabled, http.StatusUnauthorized, OAuthInvalidToken, CodeAccountDisabled, "The account of the access token is disabled."},
	{ErrAccountDeleted, http.StatusUnauthorized, OAuthInvalidToken, CodeAccountDeleted, "The account of the access token has been deleted."},
	{ErrSessionRevoked, http.StatusUnauthorized, OAuthInvalidToken, CodeSessionRevoked, "The sign-in session of the access token was revoked; sign in again."},
	{ErrUserAtRisk, http.StatusUnauthorized, OAuthInvalidToken, CodeUserAtRisk, "The user is at high risk; sign in again to remediate."},
}

// keysRetryAfter is the Retry-After sent when signing keys are unavailable.
const keysRetryAfter = 5 * time.Second

// RejectionFor classifies err, as returned by [Authenticator.Authenticate]
// or produced by a [Guard], into the [Rejection] a client receives. Unknown errors become a 500 with
// code "internal_error": a bug must never look like a valid decision.
func RejectionFor(err error, realm string) *Rejection {
	for _, k := range rejectionKinds {
		if errors.Is(err, k.err) {
			rej := &Rejection{Status: k.status, OAuthError: k.oauth, Code: k.code, Description: k.description, Realm: realm, Err: err}
			if k.status == http.StatusServiceUnavailable {
				rej.RetryAfter = keysRetryAfter
			}
			return rej
		}
	}
	return &Rejection{Status: http.StatusInternalServerError, Code: CodeInternal, Description: "Internal error.", Realm: realm, Err: err}
}

// errorBody is the JSON body of every rejection. The members after code are
// present only when the rejection has them.
type errorBody struct {
	Error            string   `json:"error,omitempty"`
	ErrorDescription string   `json:"error_description"`
	Code             string   `json:"code"`
	Required         []string `json:"required,omitempty"`
	EndedAt          string   `json:"ended_at,omitempty"`
}

// WriteRejection is the default [ErrorWriter]. It sets WWW-Authenticate on
// 400, 401 and 403 responses (RFC 6750 §3), Retry-After when the rejection
// has one, and writes {"error", "error_description", "code"} as JSON, with
// "required" and "ended_at" (RFC 3339, UTC) added when the rejection has
// them.
func WriteRejection(w http.ResponseWriter, _ *http.Request, rej *Rejection) {
	h := w.Header()
	switch rej.Status {
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden:
		h.Set("WWW-Authenticate", challenge(rej))
	}
	if rej.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int((rej.RetryAfter+time.Second-1)/time.Second)))
	}
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(rej.Status)
	body := errorBody{Error: rej.OAuthError, ErrorDescription: rej.Description, Code: rej.Code, Required: rej.Required}
	if !rej.EndedAt.IsZero() {
		body.EndedAt = rej.EndedAt.UTC().Format(time.RFC3339)
	}
	_ = json.NewEncoder(w).Encode(body)
}

// challenge builds the RFC 6750 §3 WWW-Authenticate value.
func challenge(rej *Rejection) string {
	realm := rej.Realm
	if realm == "" {
		realm = DefaultRealm
	}
	v := `Bearer realm=` + quote(realm)
	if rej.OAuthError != "" {
		v += `, error=` + quote(rej.OAuthError) + `, error_description=` + quote(rej.Description)
	}
	return v
}

// quote returns s as an RFC 7230 quoted-string, dropping characters that are
// not allowed there (controls) and escaping '"' and '\'.
func quote(s string) string {
	b := make([]byte, 0, len(s)+2)
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20 || c == 0x7f || c >= 0x80:
			// not representable; skip
		default:
			b = append(b, c)
		}
	}
	return string(append(b, '"'))
}

package middleware

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"
)

// Sentinel errors returned (wrapped) by [Authenticator.Authenticate] and
// [Authenticator.Verify]. Test for them with [errors.Is]; the wrapping error's
// text carries detail for logs, never the token itself. Each is declared
// once, with what [RejectionFor] tells the client about it: its Code
// constant, HTTP status, RFC 6750 error and description.
var (
	// ErrTokenMissing: the request carries no bearer token.
	ErrTokenMissing error = &rejectionError{msg: "middleware: bearer token missing", code: CodeTokenMissing,
		status: http.StatusUnauthorized, oauth: "",
		description: "A bearer access token is required."}
	// ErrRequestMalformed: the Authorization header is ambiguous, e.g. sent twice.
	ErrRequestMalformed error = &rejectionError{msg: "middleware: malformed authorization request", code: CodeRequestMalformed,
		status: http.StatusBadRequest, oauth: OAuthInvalidRequest,
		description: "The Authorization header is malformed."}
	// ErrTokenMalformed: the token is empty, too large, or not a signed JWT.
	ErrTokenMalformed error = &rejectionError{msg: "middleware: token malformed", code: CodeTokenMalformed,
		status: http.StatusUnauthorized, oauth: OAuthInvalidToken,
		description: "The access token is malformed."}
	// ErrTokenExpired: exp is past, beyond the clock skew.
	ErrTokenExpired error = &rejectionError{msg: "middleware: token expired", code: CodeTokenExpired,
		status: http.StatusUnauthorized, oauth: OAuthInvalidToken,
		description: "The access token has expired."}
	// ErrTokenNotYetValid: nbf or iat is in the future, beyond the clock skew.
	ErrTokenNotYetValid error = &rejectionError{msg: "middleware: token not yet valid", code: CodeTokenNotYetValid,
		status: http.StatusUnauthorized, oauth: OAuthInvalidToken,
		description: "The access token is not yet valid."}
	// ErrTokenBadSignature: the signature does not verify, the algorithm is not
	// allowed, or the signing key is not in the tenant's key set.
	ErrTokenBadSignature error = &rejectionError{msg: "middleware: token signature invalid", code: CodeTokenBadSignature,
		status: http.StatusUnauthorized, oauth: OAuthInvalidToken,
		description: "The access token signature is invalid."}
	// ErrTokenWrongAudience: no aud value is accepted, or aud names Microsoft Graph.
	ErrTokenWrongAudience error = &rejectionError{msg: "middleware: token audience not accepted", code: CodeTokenWrongAudience,
		status: http.StatusUnauthorized, oauth: OAuthInvalidToken,
		description: "The access token was not issued for this API."}
	// ErrTokenWrongIssuer: iss is not an accepted issuer, or tid disagrees with it.
	ErrTokenWrongIssuer error = &rejectionError{msg: "middleware: token issuer not accepted", code: CodeTokenWrongIssuer,
		status: http.StatusUnauthorized, oauth: OAuthInvalidToken,
		description: "The access token issuer is not accepted."}
	// ErrTokenTenantNotAllowed: the token comes from an Entra tenant that is not
	// in the allowed list.
	ErrTokenTenantNotAllowed error = &rejectionError{msg: "middleware: token tenant not allowed", code: CodeTokenTenantNotAllowed,
		status: http.StatusUnauthorized, oauth: OAuthInvalidToken,
		description: "The access token comes from a tenant that is not allowed."}
	// ErrTokenNotAccessToken: the token is not an Entra access token of the
	// user or the app-only kind: an ID token (no azp in v2, no appid in v1,
	// or nonce, at_hash or c_hash), a ver other than 1.0 or 2.0, a token of
	// neither kind ([Principal.AppOnly]), or one with neither scp nor roles.
	ErrTokenNotAccessToken error = &rejectionError{msg: "middleware: not an access token", code: CodeTokenNotAccessToken,
		status: http.StatusUnauthorized, oauth: OAuthInvalidToken,
		description: "The token is not an access token."}
	// ErrTokenMissingClaim: a claim pimguard needs (oid, tid, exp, iat) is absent.
	ErrTokenMissingClaim error = &rejectionError{msg: "middleware: token lacks a required claim", code: CodeTokenMissingClaim,
		status: http.StatusUnauthorized, oauth: OAuthInvalidToken,
		description: "The access token lacks a required claim."}
	// ErrKeysUnavailable: the token's signing key is unknown and the key set
	// could not be fetched, so the token can be neither accepted nor refused.
	ErrKeysUnavailable error = &rejectionError{msg: "middleware: signing keys unavailable", code: CodeKeysUnavailable,
		status: http.StatusServiceUnavailable, oauth: "",
		description: "The token signing keys cannot be fetched; try again shortly."}
)

// Sentinel errors of authorization by a [Guard]. They reach the [ErrorWriter]
// in [Rejection.Err] (wrapped, with the requirement or the source's error
// for logs) and [RejectionFor] classifies them like the ones above.
var (
	// ErrRoleNotActive: a required directory role is not active now in the
	// principal's live PIM state.
	ErrRoleNotActive error = &rejectionError{msg: "middleware: required role not active", code: CodeRoleNotActive,
		status: http.StatusForbidden, oauth: OAuthInsufficientScope,
		description: "A required privileged role is not active; activate it in Privileged Identity Management and retry."}
	// ErrGroupNotActive: a required PIM-for-Groups membership or ownership is
	// not active now in the principal's live PIM state.
	ErrGroupNotActive error = &rejectionError{msg: "middleware: required group not active", code: CodeGroupNotActive,
		status: http.StatusForbidden, oauth: OAuthInsufficientScope,
		description: "A required privileged group membership is not active; activate it in Privileged Identity Management and retry."}
	// ErrRoleNotInToken: under [PolicyTokenAndLive], the role is active but
	// the token's wids claim does not list it; a new token would.
	ErrRoleNotInToken error = &rejectionError{msg: "middleware: required role not in token", code: CodeRoleNotInToken,
		status: http.StatusForbidden, oauth: OAuthInsufficientScope,
		description: "The access token does not carry a required role; obtain a new token and retry."}
	// ErrGroupNotInToken: under [PolicyTokenAndLive], the membership is
	// active but the token's groups claim does not list the group.
	ErrGroupNotInToken error = &rejectionError{msg: "middleware: required group not in token", code: CodeGroupNotInToken,
		status: http.StatusForbidden, oauth: OAuthInsufficientScope,
		description: "The access token does not carry a required group; obtain a new token and retry."}
	// ErrAppRoleMissing: the token's roles claim lacks a required app role.
	ErrAppRoleMissing error = &rejectionError{msg: "middleware: required app role missing", code: CodeAppRoleMissing,
		status: http.StatusForbidden, oauth: OAuthInsufficientScope,
		description: "The access token lacks a required application role."}
	// ErrInsufficientClaims: the token's acrs claim lacks a required
	// Conditional Access authentication context ([AuthContext]). The
	// client must obtain a new token with the claims request of the
	// challenge ([Rejection.Claims]), which makes Entra apply the
	// context's policies (a step-up), and retry.
	ErrInsufficientClaims error = &rejectionError{msg: "middleware: required authentication context missing", code: CodeInsufficientClaims,
		status: http.StatusUnauthorized, oauth: OAuthInsufficientClaims,
		description: "The access token does not satisfy a required authentication context; obtain a new token with the claims of the challenge and retry."}
	// ErrScopeMissing: the token's scp claim lacks a required scope.
	ErrScopeMissing error = &rejectionError{msg: "middleware: required scope missing", code: CodeScopeMissing,
		status: http.StatusForbidden, oauth: OAuthInsufficientScope,
		description: "The access token lacks a required scope."}
	// ErrPIMUnavailable: the live PIM state could not be fetched (Graph down,
	// throttled, a permission or licence missing, a timeout) and no usable
	// state was cached, so the request can be neither allowed nor denied.
	ErrPIMUnavailable error = &rejectionError{msg: "middleware: live PIM state unavailable", code: CodePIMUnavailable,
		status: http.StatusServiceUnavailable, oauth: "",
		description: "Privileged role state cannot be checked right now; try again shortly."}
	// ErrPrincipalNotFound: the directory says the token's principal does not
	// exist (deleted since the token was issued), or its IDs are not GUIDs.
	ErrPrincipalNotFound error = &rejectionError{msg: "middleware: principal not found in the directory", code: CodePrincipalNotFound,
		status: http.StatusUnauthorized, oauth: OAuthInvalidToken,
		description: "The principal of the access token does not exist in the directory."}
	// ErrAccountDisabled: [CheckAccountEnabled] found the principal's
	// account disabled. The token is refused as revoked.
	ErrAccountDisabled error = &rejectionError{msg: "middleware: account disabled", code: CodeAccountDisabled,
		status: http.StatusUnauthorized, oauth: OAuthInvalidToken,
		description: "The account of the access token is disabled."}
	// ErrAccountDeleted: [CheckAccountEnabled] found that the directory no
	// longer has the principal.
	ErrAccountDeleted error = &rejectionError{msg: "middleware: account deleted", code: CodeAccountDeleted,
		status: http.StatusUnauthorized, oauth: OAuthInvalidToken,
		description: "The account of the access token has been deleted."}
	// ErrSessionRevoked: [CheckSessionsRevoked] or [CheckPasswordChanged]
	// found the token issued before the user's sessions were revoked or
	// password changed. The client must sign in again.
	ErrSessionRevoked error = &rejectionError{msg: "middleware: sign-in session revoked", code: CodeSessionRevoked,
		status: http.StatusUnauthorized, oauth: OAuthInvalidToken,
		description: "The sign-in session of the access token was revoked; sign in again."}
	// ErrUserAtRisk: [CheckUserRisk] found the user at high risk in
	// Identity Protection. Signing in again is where risk policies make the
	// user remediate.
	ErrUserAtRisk error = &rejectionError{msg: "middleware: user at risk", code: CodeUserAtRisk,
		status: http.StatusUnauthorized, oauth: OAuthInvalidToken,
		description: "The user is at high risk; sign in again to remediate."}
	// ErrPreflightUnsupported and ErrNoPrincipal are not rejections: a
	// client never causes them, and [RejectionFor] answers them with 500
	// "internal_error" like any unknown error.

	// ErrPreflightUnsupported: [Guard.Preflight] was called with a Source
	// that does not implement graphcheck.Preflighter.
	ErrPreflightUnsupported = errors.New("middleware: the Source cannot preflight")
	// ErrNoPrincipal: a [Guard] ran on a request that carries no [Principal],
	// i.e. without an [Authenticator] in front of it: a wiring bug, answered
	// with 500 so that it is noticed and never mistaken for a decision.
	ErrNoPrincipal = errors.New("middleware: no authenticated principal in the request context; mount Authenticator.Handler before Guard")
)

// Machine-readable codes in the "code" member of rejection bodies. They are a
// stable contract: clients may branch on them. Each but [CodeInternal] is the
// code of exactly one sentinel error.
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
	CodeRoleNotActive      = "role_not_active"
	CodeGroupNotActive     = "group_not_active"
	CodeRoleNotInToken     = "role_not_in_token"
	CodeGroupNotInToken    = "group_not_in_token"
	CodeAppRoleMissing     = "app_role_missing"
	CodeScopeMissing       = "scope_missing"
	CodeInsufficientClaims = "insufficient_claims"
	CodePIMUnavailable     = "pim_unavailable"
	CodePrincipalNotFound  = "principal_not_found"

	// Codes of [AccountChecks] rejections.
	CodeAccountDisabled = "account_disabled"
	CodeAccountDeleted  = "account_deleted"
	CodeSessionRevoked  = "session_revoked"
	CodeUserAtRisk      = "user_at_risk"
)

// RFC 6750 §3.1 error codes, the "error" member of rejection bodies and the
// error parameter of WWW-Authenticate; and Microsoft's insufficient_claims,
// the claims challenge of Conditional Access authentication contexts and
// Continuous Access Evaluation, which MSAL clients answer.
const (
	OAuthInvalidRequest     = "invalid_request"
	OAuthInvalidToken       = "invalid_token"
	OAuthInsufficientScope  = "insufficient_scope"
	OAuthInsufficientClaims = "insufficient_claims"
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
	// Claims, for an [ErrInsufficientClaims] rejection, is the claims
	// request the client must send to Entra for a new token (OpenID
	// Connect Core §5.5), as JSON, e.g.
	// {"access_token":{"acrs":{"essential":true,"value":"c1"}}}.
	// [WriteRejection] sends it in standard base64 in the challenge's
	// claims parameter and in the body's "claims" member. Empty otherwise.
	Claims string
}

// ErrorWriter renders a [Rejection]. Replace the default ([WriteRejection]) to
// change the body format; keep the status and WWW-Authenticate semantics.
type ErrorWriter func(w http.ResponseWriter, r *http.Request, rej *Rejection)

// rejectionError is the type of the sentinels that map to a rejection: each
// is declared once, with its message and everything the client is told. The
// exported variables are of type error, so that callers compare them with
// [errors.Is] and the type stays the package's business. Descriptions are
// fixed strings: they must never echo token content (RFC 6750 also restricts
// error_description to printable ASCII without '"' and '\').
type rejectionError struct {
	msg         string // the error text, for logs
	code        string // a Code constant
	status      int
	oauth       string // an OAuth constant, or "" (no token, or not the client's fault)
	description string
}

func (e *rejectionError) Error() string { return e.msg }

// rejectionKinds lists every rejectionError sentinel, in no meaningful
// order, for what must know all codes in advance (the decision metrics'
// attribute sets). [RejectionFor] does not use it. A test parses this file to
// prove the list complete.
var rejectionKinds = kinds(
	ErrTokenMissing, ErrRequestMalformed, ErrTokenMalformed, ErrTokenExpired, ErrTokenNotYetValid,
	ErrTokenBadSignature, ErrTokenWrongAudience, ErrTokenWrongIssuer, ErrTokenTenantNotAllowed,
	ErrTokenNotAccessToken, ErrTokenMissingClaim, ErrKeysUnavailable,
	ErrRoleNotActive, ErrGroupNotActive, ErrRoleNotInToken, ErrGroupNotInToken, ErrAppRoleMissing,
	ErrScopeMissing, ErrInsufficientClaims, ErrPIMUnavailable, ErrPrincipalNotFound,
	ErrAccountDisabled, ErrAccountDeleted, ErrSessionRevoked, ErrUserAtRisk,
)

// kinds returns errs as rejectionErrors. A sentinel of another type panics
// at initialisation, so that no test run can miss it.
func kinds(errs ...error) []*rejectionError {
	ks := make([]*rejectionError, len(errs))
	for i, err := range errs {
		ks[i] = err.(*rejectionError)
	}
	return ks
}

// keysRetryAfter is the Retry-After [RejectionFor] sets on a 503 (signing
// keys or live PIM state unavailable); a [Guard] replaces it with
// [GuardConfig.RetryAfter].
const keysRetryAfter = 5 * time.Second

// RejectionFor classifies err, as returned by [Authenticator.Authenticate]
// or produced by a [Guard], into the [Rejection] a client receives. Unknown errors become a 500 with
// code "internal_error": a bug must never look like a valid decision.
//
// When err wraps several sentinels, the first one met in [errors.As] order
// decides: the outermost of a chain, and the left one of
// fmt.Errorf("%w: %w", ...) — the wrapper says what the wrapped error means
// to the client (ErrPIMUnavailable wrapping a Source's error).
func RejectionFor(err error, realm string) *Rejection {
	k, ok := errors.AsType[*rejectionError](err)
	if !ok {
		return &Rejection{Status: http.StatusInternalServerError, Code: CodeInternal, Description: "Internal error.", Realm: realm, Err: err}
	}
	rej := &Rejection{Status: k.status, OAuthError: k.oauth, Code: k.code, Description: k.description, Realm: realm, Err: err}
	if k.status == http.StatusServiceUnavailable {
		rej.RetryAfter = keysRetryAfter
	}
	if k.code == CodeInsufficientClaims {
		if ac, ok := errors.AsType[*authContextError](err); ok {
			rej.Claims = ac.claimsRequest()
		}
	}
	return rej
}

// errorBody is the JSON body of every rejection. The members after code are
// present only when the rejection has them.
type errorBody struct {
	Error            string   `json:"error,omitempty"`
	ErrorDescription string   `json:"error_description"`
	Code             string   `json:"code"`
	Required         []string `json:"required,omitempty"`
	EndedAt          string   `json:"ended_at,omitempty"`
	Claims           string   `json:"claims,omitempty"`
}

// WriteRejection is the default [ErrorWriter]. It sets WWW-Authenticate on
// 400, 401 and 403 responses (RFC 6750 §3), Retry-After when the rejection
// has one, and writes {"error", "error_description", "code"} as JSON, with
// "required", "ended_at" (RFC 3339, UTC) and "claims" (the challenge's
// claims parameter, for clients that cannot read response headers, such as
// browser code without Access-Control-Expose-Headers) added when the
// rejection has them.
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
	if rej.Claims != "" {
		body.Claims = base64.StdEncoding.EncodeToString([]byte(rej.Claims))
	}
	if !rej.EndedAt.IsZero() {
		body.EndedAt = rej.EndedAt.UTC().Format(time.RFC3339)
	}
	_ = json.NewEncoder(w).Encode(body)
}

// challenge builds the RFC 6750 §3 WWW-Authenticate value. A rejection
// with Claims adds the claims parameter of Microsoft's claims challenge,
// the standard base64 (with padding) of the claims request, as in
// "Claims challenges, claims requests and client capabilities",
// https://learn.microsoft.com/en-us/entra/identity-platform/claims-challenge
// (e.g. claims="eyJhY2Nlc3NfdG9rZW4iOnsiYWNycyI6eyJlc3NlbnRpYWwiOnRydWUsInZhbHVlIjoiYzEifX19"
// for the context c1), with error="insufficient_claims" and status 401.
// That page also shows an authorization_uri parameter; it is left out:
// the challenge is written without knowing the authority, MSAL reads only
// error and claims, and the client knows where it signs in.
func challenge(rej *Rejection) string {
	realm := rej.Realm
	if realm == "" {
		realm = DefaultRealm
	}
	v := `Bearer realm=` + quote(realm)
	if rej.OAuthError != "" {
		v += `, error=` + quote(rej.OAuthError) + `, error_description=` + quote(rej.Description)
	}
	if rej.Claims != "" {
		v += `, claims="` + base64.StdEncoding.EncodeToString([]byte(rej.Claims)) + `"`
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

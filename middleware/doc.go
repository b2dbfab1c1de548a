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
//   - parses it once, strictly, and verifies its signature with the standard
//     library against the tenant's v2 or v1 issuer and key set (discovered
//     with go-oidc's provider metadata, keys parsed by go-jose), RS256 only
//     by default, with one clock-skew leeway on exp, nbf and iat, and
//     refuses Microsoft Graph tokens, ID tokens and tokens without oid or
//     tid;
//   - puts the resulting [Principal] in the request context
//     ([PrincipalFromContext]).
//
// Verified tokens are cached by SHA-256 until they expire, so a warm request
// repeats neither the RSA verification nor the JSON decoding; a cached token
// stops being accepted when its signing key leaves the key set. Key sets are
// refetched on an unknown kid at most once per cooldown, so a stream of tokens
// with random kids cannot turn into a stream of JWKS fetches.
//
// Handlers read the claims the Principal does not copy (amr, xms_cc, any
// optional claim) with [Principal.Claim] or [ClaimAs], from the payload the
// Authenticator verified and kept: no second parse, names matched as the
// decoder matched them.
//
// By default [NewAuthenticator] fetches the discovery documents and key sets
// before it returns, and fails if it cannot. With
// [AuthenticatorConfig.DiscoverInBackground] it returns at once and retries in
// the background, with jittered exponential backoff, until each tenant's keys
// are fetched or [Authenticator.Close] is called; meanwhile that tenant's
// tokens get 503 token_keys_unavailable. [Authenticator.Health] reports, per
// tenant, whether its keys are there, how old they are and why not, for a
// readiness probe ([ReadyHandler]).
//
// # Rejections
//
// A refused request gets 401 with a WWW-Authenticate: Bearer challenge (RFC
// 6750 §3), 400 for an ambiguous Authorization header, or 503 with
// Retry-After when the signing keys cannot be fetched (or, with background
// discovery, are not fetched yet); the body is JSON:
//
//	{"error": "invalid_token", "error_description": "The access token has expired.", "code": "token_expired"}
//
// The code values (CodeTokenExpired and its siblings) are a stable contract.
// [WriteRejection] writes that body; set [AuthenticatorConfig.ErrorWriter]
// to change it. Error descriptions are fixed sentences: neither the token nor
// internal error text ever reaches a client or a log record.
//
// # Authorization against live PIM state
//
// [NewGuard] builds a [Guard] from a [GuardConfig] whose Source is a
// graphcheck.Source (the Graph-backed one in graphcheck/msgraph, or a fake).
// [Guard.Require] turns a [Requirement] into a func(http.Handler)
// http.Handler for one route, mounted after [Authenticator.Handler]:
//
//	r.Use(auth.Handler)
//	r.With(guard.Require(middleware.Role(middleware.RoleUserAdministrator))).Post("/api/users/{id}/reset", h)
//
// Requirements are [Role] (tenant-wide only), [RoleInScope] (e.g. an
// administrative unit, [AdministrativeUnitScope]), [GroupMember] and
// [GroupOwner] (PIM for Groups), [AppRole], [Scope] and [AuthContext] (from
// the token), and their combinations [AllOf] and [AnyOf]; the built-in role
// template IDs are constants such as [RoleGlobalAdministrator].
//
// [AuthContext] is step-up authentication with a Conditional Access
// authentication context: unmet, it answers 401 with Microsoft's claims
// challenge, error="insufficient_claims" and claims="<base64 claims
// request>" in WWW-Authenticate and the body (code insufficient_claims),
// which an MSAL client answers by requesting a new token with those claims.
//
// For each request the Guard takes the principal's live state from a
// process-wide cache (package cache: one coalesced Source lookup per
// principal on a miss, [GuardConfig.CacheTTL], never past the earliest end
// time it holds) and decides the requirement at [GuardConfig.Now]: data is
// cached, decisions never are, so an assignment stops counting at the very
// instant it ends. Under [PolicyLive] (the default) the token's wids and
// groups claims play no part; [PolicyTokenAndLive] requires both to agree.
// An allowed request reaches the handler with the state in its context
// ([LiveStateFromContext]; the State's ActiveRoles and ActiveGroups methods
// list what is active); [Guard.Load] does that without requiring anything.
//
// Every other outcome answers without calling the handler: 403
// insufficient_scope with code role_not_active, group_not_active,
// role_not_in_token, group_not_in_token, app_role_missing or scope_missing,
// naming what was required and, when the cached state knows, when it ended:
//
//	{"error": "insufficient_scope", "error_description": "…", "code": "role_not_active",
//	 "required": ["role:fe930be7-5e62-47db-91af-98c3a49a38b1"], "ended_at": "2026-11-25T10:30:00Z"}
//
// 503 pim_unavailable with Retry-After when the state cannot be fetched and
// [GuardConfig.MaxStale] allows no older one (Graph down or throttled, a
// missing permission or licence, a timeout, anything unknown); 401
// principal_not_found when the directory no longer has the principal; 500
// internal_error when no Authenticator ran before the Guard. Each decision
// is one slog record (tenant, oid, requirement, outcome, code, state source
// cache/graph/stale, lookup latency), never the token.
//
// # Account checks, preflight, purge
//
// [GuardConfig.AccountChecks] adds, in the spirit of Continuous Access
// Evaluation, checks on the principal's live account before every
// requirement: [CheckAccountEnabled] (401 account_disabled or
// account_deleted), [CheckSessionsRevoked] and [CheckPasswordChanged] (401
// session_revoked for a token issued before the revocation or the password
// change) and [CheckUserRisk] (401 user_at_risk for a user Identity
// Protection holds at high risk). Service principals skip the user-only
// checks. AccountChecks and ClaimsPolicy read themselves from configuration
// text ([AccountChecks.UnmarshalText], [ClaimsPolicy.UnmarshalText]).
//
// [Guard.Preflight] asks the Source, once at start, whether it may read
// everything the Guard will need, naming each missing Graph permission or
// licence. [Purgers] drops a principal's verified tokens ([Authenticator.Purge])
// and cached state ([Guard.Purge]) at once.
//
// # Metrics
//
// A Guard reports through the OpenTelemetry metrics API to
// [GuardConfig.MeterProvider] (by default the global provider, which
// records nothing until the application installs one):
//
//   - pimguard.decisions, a counter of decisions by outcome (allow, deny,
//     error) and code (the rejection code above, "" for allow), counted
//     once per request without allocating;
//   - pimguard.cache.hits, pimguard.cache.misses, pimguard.cache.loads,
//     pimguard.cache.load_errors, pimguard.cache.stale_served,
//     pimguard.cache.evictions and pimguard.cache.shared_hits (fleet mode,
//     [GuardConfig.Shared]), counters, and pimguard.cache.size, a gauge,
//     read from the state cache by one callback when metrics are collected,
//     so they cost a request nothing.
//
// An Authenticator reports to [AuthenticatorConfig.MeterProvider] (the
// same default):
//
//   - pimguard.auth.rejections, a counter of refused requests by code;
//   - pimguard.auth.key_fetches, a counter of discovery-document and key-set
//     fetches by document (discovery, jwks) and outcome (success, timeout,
//     unreachable, http_error, invalid, canceled);
//   - pimguard.auth.token_cache.hits and pimguard.auth.token_cache.misses,
//     counters, and pimguard.auth.token_cache.size, a gauge, read by one
//     callback at collection time: a warm request adds one atomic
//     increment and no allocation.
//
// An exporter such as Prometheus names them pimguard_decisions_total,
// pimguard_cache_hits_total and so on.
//
// This package never imports the Microsoft Graph SDK: live PIM state comes
// through interfaces, so users who bring their own source do not compile it.
package middleware

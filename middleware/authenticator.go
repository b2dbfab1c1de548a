package middleware

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"

	"github.com/pimguard/pimguard/graphcheck"
)

// Defaults applied by [NewAuthenticator] to zero-valued [AuthenticatorConfig] fields.
const (
	DefaultAuthority           = "https://login.microsoftonline.com"
	DefaultClockSkew           = 2 * time.Minute
	DefaultJWKSRefreshCooldown = 30 * time.Second
	DefaultJWKSMaxAge          = time.Hour
	DefaultHTTPTimeout         = 10 * time.Second
	DefaultRealm               = "pimguard"
	DefaultDiscoveryRetryMin   = time.Second
	DefaultDiscoveryRetryMax   = time.Minute
)

// isGraphAudience reports whether aud (in any case) is an audience of
// Microsoft Graph access tokens, in the public or a sovereign cloud. A token
// for Graph is never accepted by an API: it was meant for Graph, and its
// signature cannot be validated by third parties anyway. [NewAuthenticator]
// refuses these values in [AuthenticatorConfig.Audiences], and
// [Authenticator.Verify] refuses tokens that carry one. The list is a
// function, not a variable, so that no code can edit what a security check
// reads.
func isGraphAudience(aud string) bool {
	switch strings.ToLower(aud) {
	case "00000003-0000-0000-c000-000000000000",
		"https://graph.microsoft.com", "https://graph.microsoft.com/",
		"https://graph.microsoft.us", "https://graph.microsoft.us/",
		"https://dod-graph.microsoft.us", "https://dod-graph.microsoft.us/",
		"https://microsoftgraph.chinacloudapi.cn", "https://microsoftgraph.chinacloudapi.cn/":
		return true
	}
	return false
}

// AuthenticatorConfig configures an [Authenticator]. Tenants and Audiences are
// required; every other field has a safe default.
type AuthenticatorConfig struct {
	// Tenants are the Entra tenant IDs (GUIDs) whose tokens are accepted. For
	// each, the v2 issuer ({Authority}/{tenant}/v2.0) and the v1 issuer
	// (https://sts.windows.net/{tenant}/ in the public cloud) are accepted, as
	// published by the tenant's discovery documents, and the token's tid must
	// equal the tenant in its iss. There is no "any tenant" mode: a
	// multi-tenant API lists the tenants it serves.
	Tenants []string

	// Audiences are the accepted aud values; a token needs one of them. List
	// both the API's application (client) ID, which v2 tokens carry, and its
	// App ID URI (api://…), which v1 tokens carry. Microsoft Graph's
	// audiences (00000003-0000-0000-c000-000000000000,
	// https://graph.microsoft.com and the sovereign clouds' equivalents) are
	// refused, here and in tokens.
	Audiences []string

	// Authority is the base of the discovery URLs:
	// {Authority}/{tenant}/v2.0/.well-known/openid-configuration and
	// {Authority}/{tenant}/.well-known/openid-configuration. Default
	// [DefaultAuthority]; set https://login.microsoftonline.us or
	// https://login.chinacloudapi.cn for sovereign clouds, or a
	// graphtest.Server's URL in tests. It must be https, or http on a
	// loopback address.
	Authority string

	// Algorithms are the accepted JWS algorithms. Default ["RS256"], the only
	// one Entra uses. "none" and symmetric (HS*) algorithms are refused: with
	// a public key set they would let anyone mint tokens.
	Algorithms []string

	// ClockSkew is the leeway applied to exp, nbf and iat. Zero means
	// [DefaultClockSkew]; a negative value means no leeway at all.
	ClockSkew time.Duration

	// InsecureAcceptTokensWithoutScopeOrRoles accepts access tokens that
	// carry neither scp nor roles. Entra's access tokens for an API with
	// scopes or app roles carry one of them; a token with neither proves a
	// sign-in to some client, not consent to call this API.
	//
	// It relaxes that one rule and nothing else: the token must still be an
	// access token (azp in v2, appid in v1; no nonce, at_hash or c_hash) of
	// one of the two kinds (see [Principal.AppOnly]), and a token of neither
	// kind is still refused. Since a user token is recognised by its scp,
	// what it admits in practice is app-only tokens without roles: any
	// application of the tenant that obtains a token for this API's
	// audience. Set it only if the API has no app roles, restrict the
	// audience to this API alone, and decide what app-only callers may do
	// with requirements that do not rely on roles.
	InsecureAcceptTokensWithoutScopeOrRoles bool

	// MaxTokenBytes caps the bearer token's length; larger tokens are refused
	// before any parsing. Zero means [DefaultMaxTokenBytes] (16 KiB); a
	// negative value is refused by [NewAuthenticator], as are negative
	// JWKSRefreshCooldown, JWKSMaxAge and HTTPTimeout.
	MaxTokenBytes int

	// TokenCacheSize is how many verified tokens are remembered (by SHA-256,
	// until exp) so warm requests skip signature verification. Default
	// [DefaultTokenCacheSize]; negative disables the cache.
	TokenCacheSize int

	// JWKSRefreshCooldown is the minimum time between two fetches of one key
	// set triggered by unknown key IDs. It bounds what a stream of tokens with
	// random kids can cost: one fetch per cooldown. Default
	// [DefaultJWKSRefreshCooldown].
	JWKSRefreshCooldown time.Duration

	// JWKSMaxAge is how long a fetched key set is trusted before it is
	// refetched, so that a key Entra withdraws stops verifying tokens, cached
	// ones included. Default [DefaultJWKSMaxAge]. The refetch runs in the
	// background, started by the first request that finds the set aged; that
	// request and those during the fetch are answered from the current set,
	// so a hanging JWKS endpoint never delays a token whose key is known, and
	// a withdrawn key stops verifying once the new set is installed (within
	// HTTPTimeout). Only a token with an unknown kid waits for a fetch. A
	// failed refresh keeps the previous keys, is logged once (Warn), and is
	// retried after JWKSRefreshCooldown.
	JWKSMaxAge time.Duration

	// HTTPClient fetches discovery documents and key sets. Default: a client
	// with a [DefaultHTTPTimeout] timeout.
	HTTPClient *http.Client

	// HTTPTimeout bounds each discovery or key-set fetch. Default
	// [DefaultHTTPTimeout].
	HTTPTimeout time.Duration

	// Realm is the realm of WWW-Authenticate challenges. Default [DefaultRealm].
	Realm string

	// ErrorWriter renders rejections. Default [WriteRejection].
	ErrorWriter ErrorWriter

	// Logger receives one record per rejected request (Info; Debug for a
	// missing token) and key-set refresh failures. It never receives a token.
	// Default [slog.Default].
	Logger *slog.Logger

	// Now is the clock for exp, nbf, iat and key-set ages. Default [time.Now].
	Now func() time.Time

	// DiscoverInBackground makes [NewAuthenticator] return at once, without
	// a network call, and fetch the tenants' discovery documents and key
	// sets in the background, retrying until every tenant's succeed, so that
	// a replica started during an Entra or network outage comes up instead
	// of crash-looping. Until a tenant's keys are fetched, its tokens are
	// answered 503 token_keys_unavailable with Retry-After (they can be
	// neither accepted nor refused), and [Authenticator.Health] reports the
	// tenant not ready, with the class of the last failure. Serve Health on
	// a readiness probe ([ReadyHandler]) so that the replica gets traffic
	// once it can verify tokens.
	//
	// Failed rounds are retried after DiscoveryRetryMin, doubling up to
	// DiscoveryRetryMax, each delay jittered (a random point in its upper
	// half) so that replicas restarted together do not retry together. Each
	// failure is logged (Warn), never with a token. The retries stop when
	// every tenant is discovered or [Authenticator.Close] is called; the
	// context given to NewAuthenticator does not stop them (its values are
	// kept), so a start-up deadline on it cannot leave the replica without
	// keys for good.
	//
	// The default, false, is the strict start: NewAuthenticator fetches
	// everything and returns an error if any fetch fails, so that a wrong
	// tenant ID or Authority stops the program at once. With
	// DiscoverInBackground such a mistake is reported only by Health and
	// the log.
	DiscoverInBackground bool

	// DiscoveryRetryMin and DiscoveryRetryMax bound the delay between two
	// rounds of background discovery (see DiscoverInBackground). Defaults
	// [DefaultDiscoveryRetryMin] and [DefaultDiscoveryRetryMax]; a negative
	// value, or a maximum below the minimum, is refused.
	DiscoveryRetryMin, DiscoveryRetryMax time.Duration

	// MeterProvider receives the Authenticator's metrics:
	// pimguard.auth.rejections, one count per rejected request by code;
	// pimguard.auth.key_fetches, one count per discovery-document or key-set
	// fetch by document and outcome; and the verified-token cache's
	// counters and size (pimguard.auth.token_cache.*), observed in one
	// callback at collection time, so that a warm request costs nothing
	// more than an atomic increment (see the package documentation).
	// Default (nil) otel.GetMeterProvider(), the global provider, which
	// records nothing until the application installs one. The callback is
	// unregistered when the Authenticator is garbage collected.
	MeterProvider metric.MeterProvider
}

// Authenticator verifies Entra ID access tokens and puts the [Principal] in
// the request context. Build one with [NewAuthenticator] and share it: it
// holds the key sets and the verified-token cache. It is safe for concurrent use.
//
// Authenticator establishes who the caller is. It does not decide what the
// caller may do: the wids and groups claims it copies are stale by design.
//
// It reports its readiness ([Authenticator.Health]: one item per tenant's
// signing keys) and its metrics ([AuthenticatorConfig.MeterProvider]).
// [Authenticator.Close] stops its background work; it matters above all
// with [AuthenticatorConfig.DiscoverInBackground], whose retries otherwise
// run until discovery succeeds.
type Authenticator struct {
	cfg       AuthenticatorConfig
	algs      []jose.SignatureAlgorithm
	audiences map[string]bool
	cache     *tokenCache
	skew      time.Duration

	// tenants are the configured tenants, in order, each with its discovery
	// state; issuers are the accepted issuers of those discovered so far,
	// an immutable table replaced whenever a tenant's discovery completes
	// (see authdiscovery.go).
	tenants []*tenantKeys
	issuers atomic.Pointer[issuerTable]
	mu      sync.Mutex         // serialises installs; guards keySets
	keySets map[string]*keySet // by jwks_uri

	// closing is set by Close; cancel cancels the background discovery's
	// fetches (nil without DiscoverInBackground). bg counts the background
	// discovery goroutine.
	closing atomic.Bool
	cancel  context.CancelFunc
	bg      sync.WaitGroup

	stats   [tokenStatShards]tokenStats // verified-token cache hits and misses
	metrics authMetrics
}

// NewAuthenticator validates cfg, fetches each tenant's v2 and v1 discovery
// documents and their key sets, and returns a ready Authenticator. Those
// fetches are the only network calls it makes; afterwards the network is used
// only to refresh key sets (see JWKSRefreshCooldown and JWKSMaxAge). ctx
// bounds those fetches.
//
// With [AuthenticatorConfig.DiscoverInBackground], NewAuthenticator makes
// no network call: it returns at once and the fetches run, and are
// retried, in the background until they succeed or [Authenticator.Close]
// is called. Only configuration errors are returned then.
func NewAuthenticator(ctx context.Context, cfg AuthenticatorConfig) (*Authenticator, error) {
	a := &Authenticator{cfg: cfg, audiences: map[string]bool{}, keySets: map[string]*keySet{}}
	if err := a.applyDefaults(); err != nil {
		return nil, err
	}
	a.issuers.Store(&issuerTable{byIss: map[string]*issuer{}})
	start := a.cfg.Now()
	for _, t := range a.cfg.Tenants {
		a.tenants = append(a.tenants, &tenantKeys{id: t, since: start})
	}
	var err error
	if a.metrics, err = newAuthMetrics(a.cfg.MeterProvider, a); err != nil {
		return nil, err
	}
	if !a.cfg.DiscoverInBackground {
		for _, t := range a.tenants {
			if err := a.discoverTenant(ctx, t); err != nil {
				return nil, err
			}
		}
		return a, nil
	}
	bctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a.cancel = cancel
	a.bg.Go(func() { a.discoverInBackground(bctx) })
	return a, nil
}

func (a *Authenticator) applyDefaults() error {
	c := &a.cfg
	if len(c.Tenants) == 0 {
		return errors.New("middleware: AuthenticatorConfig.Tenants is empty: name the tenants whose tokens are accepted")
	}
	tenants := make([]string, 0, len(c.Tenants))
	for _, t := range c.Tenants {
		if !graphcheck.IsGUID(t) {
			return fmt.Errorf("middleware: AuthenticatorConfig.Tenants: %q is not a tenant ID (GUID)", t)
		}
		if t = strings.ToLower(t); !slices.Contains(tenants, t) {
			tenants = append(tenants, t)
		}
	}
	c.Tenants = tenants
	if len(c.Audiences) == 0 {
		return errors.New("middleware: AuthenticatorConfig.Audiences is empty: list the API's client ID and App ID URI")
	}
	for _, aud := range c.Audiences {
		if strings.TrimSpace(aud) == "" {
			return errors.New("middleware: AuthenticatorConfig.Audiences holds an empty value")
		}
		if isGraphAudience(aud) {
			return fmt.Errorf("middleware: AuthenticatorConfig.Audiences: %q is Microsoft Graph's audience, not this API's", aud)
		}
		a.audiences[aud] = true
	}
	c.Authority = strings.TrimRight(cmp.Or(c.Authority, DefaultAuthority), "/")
	if err := checkURL(c.Authority); err != nil {
		return fmt.Errorf("middleware: AuthenticatorConfig.Authority: %w", err)
	}
	if len(c.Algorithms) == 0 {
		c.Algorithms = []string{oidc.RS256}
	}
	for _, alg := range c.Algorithms {
		switch jose.SignatureAlgorithm(alg) {
		case jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512, jose.ES256, jose.ES384, jose.ES512, jose.EdDSA:
			a.algs = append(a.algs, jose.SignatureAlgorithm(alg))
		default:
			return fmt.Errorf("middleware: AuthenticatorConfig.Algorithms: %q is not an asymmetric JWS algorithm", alg)
		}
	}
	switch {
	case c.ClockSkew == 0:
		a.skew = DefaultClockSkew
	case c.ClockSkew > 0:
		a.skew = c.ClockSkew
	}
	if c.MaxTokenBytes < 0 {
		return fmt.Errorf("middleware: AuthenticatorConfig.MaxTokenBytes is negative (%d)", c.MaxTokenBytes)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"JWKSRefreshCooldown", c.JWKSRefreshCooldown}, {"JWKSMaxAge", c.JWKSMaxAge}, {"HTTPTimeout", c.HTTPTimeout},
		{"DiscoveryRetryMin", c.DiscoveryRetryMin}, {"DiscoveryRetryMax", c.DiscoveryRetryMax},
	} {
		if d.v < 0 {
			return fmt.Errorf("middleware: AuthenticatorConfig.%s is negative (%v)", d.name, d.v)
		}
	}
	c.MaxTokenBytes = cmp.Or(c.MaxTokenBytes, DefaultMaxTokenBytes)
	c.JWKSRefreshCooldown = cmp.Or(c.JWKSRefreshCooldown, DefaultJWKSRefreshCooldown)
	c.JWKSMaxAge = cmp.Or(c.JWKSMaxAge, DefaultJWKSMaxAge)
	c.HTTPTimeout = cmp.Or(c.HTTPTimeout, DefaultHTTPTimeout)
	c.DiscoveryRetryMin = cmp.Or(c.DiscoveryRetryMin, DefaultDiscoveryRetryMin)
	c.DiscoveryRetryMax = cmp.Or(c.DiscoveryRetryMax, max(DefaultDiscoveryRetryMax, c.DiscoveryRetryMin))
	if c.DiscoveryRetryMax < c.DiscoveryRetryMin {
		return fmt.Errorf("middleware: AuthenticatorConfig.DiscoveryRetryMax (%v) is below DiscoveryRetryMin (%v)", c.DiscoveryRetryMax, c.DiscoveryRetryMin)
	}
	c.MeterProvider = cmp.Or(c.MeterProvider, otel.GetMeterProvider())
	c.HTTPClient = cmp.Or(c.HTTPClient, &http.Client{Timeout: c.HTTPTimeout})
	c.Realm = cmp.Or(c.Realm, DefaultRealm)
	c.Logger = cmp.Or(c.Logger, slog.Default())
	if c.ErrorWriter == nil { // funcs are not comparable: cmp.Or cannot default them
		c.ErrorWriter = WriteRejection
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	cache, err := newTokenCache(c.TokenCacheSize)
	if err != nil {
		return fmt.Errorf("middleware: AuthenticatorConfig.TokenCacheSize: %w", err)
	}
	a.cache = cache
	return nil
}

func (a *Authenticator) newKeySet(uri string) *keySet {
	return &keySet{
		url: uri, client: a.cfg.HTTPClient, now: a.cfg.Now, logger: a.cfg.Logger,
		cooldown: a.cfg.JWKSRefreshCooldown, maxAge: a.cfg.JWKSMaxAge, timeout: a.cfg.HTTPTimeout,
		fetched: a.metrics.fetched,
	}
}

// discover fetches and checks one discovery document (OpenID Connect
// Discovery 1.0 §3, decoded as go-oidc's provider metadata): its issuer must
// name the tenant and its jwks_uri be https (or http on loopback).
func (a *Authenticator) discover(ctx context.Context, tenant, u string) (*oidc.ProviderConfig, error) {
	doc, err := a.fetchDiscovery(ctx, tenant, u)
	a.metrics.fetched(ctx, docDiscovery, err)
	return doc, err
}

func (a *Authenticator) fetchDiscovery(ctx context.Context, tenant, u string) (*oidc.ProviderConfig, error) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.HTTPTimeout)
	defer cancel()
	body, err := getDocument(ctx, a.cfg.HTTPClient, u)
	if err != nil {
		return nil, fmt.Errorf("middleware: discovery for tenant %s: %w", tenant, err)
	}
	var doc oidc.ProviderConfig
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("middleware: discovery for tenant %s: %w: decoding %s: %w", tenant, errInvalidDocument, u, err)
	}
	if !strings.Contains(strings.ToLower(doc.IssuerURL), tenant) {
		return nil, fmt.Errorf("middleware: discovery for tenant %s: %w: issuer %q does not name the tenant", tenant, errInvalidDocument, doc.IssuerURL)
	}
	if err := checkURL(doc.JWKSURL); err != nil {
		return nil, fmt.Errorf("middleware: discovery for tenant %s: %w: jwks_uri: %w", tenant, errInvalidDocument, err)
	}
	return &doc, nil
}

// Handler is the middleware: it authenticates each request and calls next
// with the [Principal] in the context ([PrincipalFromContext]), or answers
// with a rejection and does not call next. Its signature fits chi's Use and
// With, alice, and plain net/http wrapping.
func (a *Authenticator) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := a.Authenticate(r)
		if err != nil {
			a.Reject(w, r, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(ContextWithPrincipal(r.Context(), p)))
	})
}

// Reject logs err and answers the request with the matching [Rejection]
// through the configured [ErrorWriter].
func (a *Authenticator) Reject(w http.ResponseWriter, r *http.Request, err error) {
	rej := RejectionFor(err, a.cfg.Realm)
	a.metrics.rejected(r.Context(), rej.Code)
	level := slog.LevelInfo
	if rej.Code == CodeTokenMissing {
		level = slog.LevelDebug
	}
	a.cfg.Logger.Log(r.Context(), level, "pimguard: request rejected",
		"status", rej.Status, "code", rej.Code, "method", r.Method, "path", r.URL.Path, "err", err)
	a.cfg.ErrorWriter(w, r, rej)
}

// Authenticate extracts the bearer token from r ([BearerToken]) and verifies
// it ([Authenticator.Verify]).
func (a *Authenticator) Authenticate(r *http.Request) (*Principal, error) {
	raw, jws, err := bearerToken(r, a.cfg.MaxTokenBytes)
	if err != nil {
		return nil, err
	}
	if !jws {
		return nil, errNotJWSAlphabet
	}
	return a.verifyJWS(r.Context(), raw)
}

// Verify checks a raw access token and returns its principal. A token seen
// before is answered from the verified-token cache after checking its expiry
// and that its signing key is still published; otherwise it checks, in order:
// JWS structure (the compact serialization, canonical base64url), the JOSE
// header (an allowed algorithm, a kid, no key or URL of its own, no crit),
// the claims' JSON (no duplicate member), issuer (an allowed tenant's v1 or
// v2 issuer), signature against the issuer's key set, the presence of oid,
// tid, exp and iat, tid against the issuer, audience, exp, nbf and iat with
// the clock skew, and the access-token shape: an access token rather than an
// ID token, of the user or the app-only kind ([Principal.AppOnly]), with scp
// or roles. Errors wrap the package's sentinels.
func (a *Authenticator) Verify(ctx context.Context, raw string) (*Principal, error) {
	if len(raw) > a.cfg.MaxTokenBytes {
		return nil, fmt.Errorf("%w: token exceeds the size cap", ErrTokenMalformed)
	}
	// The b64token characters that no compact JWS has, found with
	// IndexByte (vectorised) rather than a byte loop, which would cost a
	// warm request more than the rest of its check; any other stray byte is
	// refused by the strict decoder.
	const notJWS = "+/=~"
	for i := 0; i < len(notJWS); i++ {
		if strings.IndexByte(raw, notJWS[i]) >= 0 {
			return nil, errNotJWSAlphabet
		}
	}
	return a.verifyJWS(ctx, raw)
}

// errNotJWSAlphabet refuses a token with a character outside base64url and
// '.', or with padding: no compact JWS has one, and refusing it before the
// SHA-256 of the cache key keeps such garbage under a microsecond.
var errNotJWSAlphabet = fmt.Errorf("%w: token has characters outside the compact JWS alphabet", ErrTokenMalformed)

// verifyJWS is [Authenticator.Verify] for a token already known to be within
// the size cap and the compact JWS alphabet.
func (a *Authenticator) verifyJWS(ctx context.Context, raw string) (*Principal, error) {
	if _, _, err := checkCompactShape(raw); err != nil {
		return nil, err
	}
	key := tokenKey(raw)
	now := a.cfg.Now()
	st := &a.stats[key[0]%tokenStatShards]
	if e, ok := a.cache.get(key, now); ok {
		if e.keys.has(ctx, e.kid, now) {
			st.hits.Add(1)
			return e.principal, nil
		}
		// The signing key left the JWKS: verify afresh, which now fails.
		a.cache.remove(key)
	} else if e, ok := a.cache.expired(key, now); ok {
		st.hits.Add(1)
		return nil, fmt.Errorf("%w: expired at %s", ErrTokenExpired, e.principal.ExpiresAt.UTC().Format(time.RFC3339))
	}
	st.misses.Add(1)
	e, err := a.verify(ctx, raw)
	if err != nil {
		return nil, err
	}
	a.cache.add(key, e)
	return e.principal, nil
}

// verify checks a token the cache does not hold. It parses the token once
// (splitCompact), decodes the header and the claims once each, and verifies
// the signature once, on the signing input the parser split off, with the
// standard library ([keySet.verify]).
func (a *Authenticator) verify(ctx context.Context, raw string) (*tokenEntry, error) {
	jws, err := splitCompact(raw)
	if err != nil {
		return nil, err
	}
	h, err := decodeHeader(jws.header, a.algs)
	if err != nil {
		return nil, err
	}
	// The claims are read before the signature is checked only to pick the
	// issuer's key set; nothing in them is trusted until the signature over
	// the same bytes has verified.
	var refsBuf [claimRefsOnStack]claimRef
	c, refs, err := decodeIndexedClaims(jws.payload, refsBuf[:0])
	if err != nil {
		return nil, fmt.Errorf("%w: claims: %v", ErrTokenMalformed, err)
	}
	is, err := a.issuerFor(c.Iss)
	if err != nil {
		return nil, err
	}
	if err := is.keys.verify(ctx, h, jws.signingInput, jws.signature); err != nil {
		return nil, err
	}
	if err := a.checkClaims(&c, is); err != nil {
		return nil, err
	}
	p := principalOf(&c)
	p.claims = newTokenClaims(jws.payload, refs)
	return &tokenEntry{principal: p, notAfter: c.Exp.t.Add(a.skew), kid: h.kid, keys: is.keys}, nil
}

// issuerFor returns the accepted issuer iss names. An unknown iss that
// names a tenant whose discovery has not succeeded yet (background
// discovery) is ErrKeysUnavailable: the token can be neither accepted nor
// refused until that tenant's issuers and keys are known.
func (a *Authenticator) issuerFor(iss string) (*issuer, error) {
	tab := a.issuers.Load()
	if is, ok := tab.byIss[iss]; ok {
		return is, nil
	}
	l := strings.ToLower(iss)
	for _, t := range a.tenants {
		if !t.discovered() && strings.Contains(l, t.id) {
			return nil, fmt.Errorf("%w: the issuers and keys of tenant %s are not fetched yet", ErrKeysUnavailable, t.id)
		}
	}
	for _, t := range tab.templates {
		if len(l) == len(t.prefix)+36+len(t.suffix) && strings.HasPrefix(l, t.prefix) && strings.HasSuffix(l, t.suffix) &&
			graphcheck.IsGUID(l[len(t.prefix):len(t.prefix)+36]) {
			return nil, fmt.Errorf("%w: issuer of tenant %s", ErrTokenTenantNotAllowed, l[len(t.prefix):len(t.prefix)+36])
		}
	}
	return nil, fmt.Errorf("%w: %.200q", ErrTokenWrongIssuer, iss)
}

func (a *Authenticator) checkClaims(c *accessClaims, is *issuer) error {
	switch {
	case c.Oid == "":
		return fmt.Errorf("%w: oid", ErrTokenMissingClaim)
	case c.Tid == "":
		return fmt.Errorf("%w: tid", ErrTokenMissingClaim)
	case !c.Exp.set:
		return fmt.Errorf("%w: exp", ErrTokenMissingClaim)
	case !c.Iat.set:
		return fmt.Errorf("%w: iat", ErrTokenMissingClaim)
	}
	if strings.ToLower(c.Tid) != is.tenant {
		return fmt.Errorf("%w: tid %.40q disagrees with issuer tenant %s", ErrTokenWrongIssuer, c.Tid, is.tenant)
	}
	accepted := false
	for _, aud := range c.Aud {
		if isGraphAudience(aud) {
			return fmt.Errorf("%w: token is for Microsoft Graph", ErrTokenWrongAudience)
		}
		accepted = accepted || a.audiences[aud]
	}
	if !accepted {
		return fmt.Errorf("%w: %.200q", ErrTokenWrongAudience, []string(c.Aud))
	}
	now := a.cfg.Now()
	if now.After(c.Exp.t.Add(a.skew)) {
		return fmt.Errorf("%w: expired at %s", ErrTokenExpired, c.Exp.t.UTC().Format(time.RFC3339))
	}
	if c.Nbf.set && now.Add(a.skew).Before(c.Nbf.t) {
		return fmt.Errorf("%w: nbf %s", ErrTokenNotYetValid, c.Nbf.t.UTC().Format(time.RFC3339))
	}
	if now.Add(a.skew).Before(c.Iat.t) {
		return fmt.Errorf("%w: iat %s is in the future", ErrTokenNotYetValid, c.Iat.t.UTC().Format(time.RFC3339))
	}
	if _, err := c.kind(); err != nil {
		return err
	}
	// The kind is decided first: this switch relaxes the scp-or-roles rule,
	// never the kind rules.
	if c.Scp == "" && len(c.Roles) == 0 && !a.cfg.InsecureAcceptTokensWithoutScopeOrRoles {
		return fmt.Errorf("%w: neither scp nor roles", ErrTokenNotAccessToken)
	}
	return nil
}

// principalOf builds the principal of claims that passed checkClaims.
func principalOf(c *accessClaims) *Principal {
	kind, _ := c.kind() // checked by checkClaims; kindRefused would read as a user, never as app-only
	p := &Principal{
		TenantID:       strings.ToLower(c.Tid),
		ObjectID:       strings.ToLower(c.Oid),
		Subject:        c.Sub,
		AppID:          c.clientID(),
		Issuer:         c.Iss,
		Version:        c.Ver,
		AppOnly:        kind == kindApp,
		Scopes:         strings.Fields(c.Scp),
		AppRoles:       c.Roles,
		DirectoryRoles: c.Wids,
		Groups:         c.Grps,
		AuthContexts:   c.Acrs,
		Name:           c.Name,
		Username:       c.PUN,
		IssuedAt:       c.Iat.t,
		ExpiresAt:      c.Exp.t,
	}
	if p.Username == "" {
		p.Username = c.UPN
	}
	if p.Username == "" {
		p.Username = c.UName
	}
	return p
}

// checkURL accepts https URLs, and http URLs whose host is a loopback address
// (for tests and local fakes).
func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	switch u.Scheme {
	case "https":
		if u.Host == "" {
			return fmt.Errorf("%q has no host", s)
		}
		return nil
	case "http":
		if graphcheck.IsLoopbackHost(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("%q is plain http on a non-loopback host; use https", s)
	default:
		return fmt.Errorf("%q is not an https URL", s)
	}
}

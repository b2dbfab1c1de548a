package middleware

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"

	"github.com/pimguard/pimguard/cache"
	"github.com/pimguard/pimguard/graphcheck"
)

// Defaults applied by [NewGuard] to zero-valued [GuardConfig] fields.
const (
	DefaultStateCacheSize   = cache.DefaultSize
	DefaultStateTTL         = 30 * time.Second
	DefaultNegativeStateTTL = 5 * time.Second
	DefaultLookupTimeout    = 10 * time.Second
	DefaultPIMRetryAfter    = 5 * time.Second
)

// ClaimsPolicy says whether the token's wids and groups claims take part in
// authorization. The zero value is [PolicyLive].
type ClaimsPolicy uint8

const (
	// PolicyLive (the default) decides on the live PIM state alone: wids and
	// groups are ignored, so a role activated after the token was issued
	// works with the token already in hand, and a role deactivated since is
	// refused although the token still lists it.
	PolicyLive ClaimsPolicy = iota
	// PolicyTokenAndLive requires the token and the live state to agree: a
	// tenant-wide role must also be in wids, a group membership also in
	// groups. Activating a role then takes a new token too. Requirements
	// the token has no claim for (roles scoped to an administrative unit,
	// group ownership) are decided on the live state alone; a groups claim
	// left out by Entra for overage (too many groups) denies.
	PolicyTokenAndLive
)

// claimsPolicyNames are the names of [ClaimsPolicy.String] and
// [ClaimsPolicy.UnmarshalText], by value.
var claimsPolicyNames = []string{PolicyLive: "live", PolicyTokenAndLive: "token-and-live"}

// String returns "live" or "token-and-live".
func (p ClaimsPolicy) String() string {
	if int(p) < len(claimsPolicyNames) {
		return claimsPolicyNames[p]
	}
	return fmt.Sprintf("ClaimsPolicy(%d)", uint8(p))
}

// MarshalText implements [encoding.TextMarshaler]: "live" or
// "token-and-live"; an unknown policy is an error.
func (p ClaimsPolicy) MarshalText() ([]byte, error) {
	if int(p) >= len(claimsPolicyNames) {
		return nil, fmt.Errorf("middleware: unknown %v", p)
	}
	return []byte(claimsPolicyNames[p]), nil
}

// UnmarshalText implements [encoding.TextUnmarshaler], so that environment
// variables, flags (flag.TextVar) and configuration files read the policy
// one way: "live" or "token-and-live", case-insensitive, surrounding spaces
// ignored; an empty text is the default, [PolicyLive]. Anything else is an
// error naming the accepted values, and leaves p unchanged.
func (p *ClaimsPolicy) UnmarshalText(text []byte) error {
	s := strings.TrimSpace(string(text))
	if s == "" {
		*p = PolicyLive
		return nil
	}
	i := slices.IndexFunc(claimsPolicyNames, func(n string) bool { return strings.EqualFold(s, n) })
	if i < 0 {
		return fmt.Errorf("middleware: unknown claims policy %q (want %s)", s, strings.Join(claimsPolicyNames, " or "))
	}
	*p = ClaimsPolicy(i)
	return nil
}

// GuardConfig configures a [Guard]. Source is required; every other field
// has a default, and the defaults fail closed.
type GuardConfig struct {
	// Source fetches a principal's live PIM state, e.g. the Graph-backed
	// source of graphcheck/msgraph, or a graphcheck.SourceFunc in tests. It
	// is called only on a cache miss, at most once at a time per principal.
	Source graphcheck.Source

	// CacheSize is how many principals' states are kept. Default
	// [DefaultStateCacheSize]; a full cache evicts the least recently used.
	CacheSize int

	// CacheTTL is how long a fetched state is served before it is fetched
	// again: the longest a role deactivated or removed before its end time
	// can still be honoured. (A Source may add its own lag: graphcheck/msgraph
	// reuses the tenant-wide map of role-assignable groups' roles for its
	// GroupRolesTTL, so a group's own role removed early can be honoured for
	// up to CacheTTL + GroupRolesTTL; a member leaving the group is seen
	// within CacheTTL.) A state is never served as fresh past the
	// earliest end time among its assignments, whatever the TTL, and every
	// decision checks each assignment's window at the request's instant.
	// Default [DefaultStateTTL].
	CacheTTL time.Duration

	// NegativeTTL replaces CacheTTL for states holding no assignment at all,
	// so that a fresh activation is seen quickly. Default
	// [DefaultNegativeStateTTL]. It also bounds how long "principal not
	// found" is remembered.
	NegativeTTL time.Duration

	// Shared, when set, makes the Guards of several replicas act as one
	// (fleet mode; redisstore provides it on Redis): a state looked
	// up by any replica serves all of them until the expiry its lookup
	// gave it, concurrent misses on several replicas make one Source
	// lookup between them, and Purge and PurgeAll reach every replica. The
	// warm path stays in this process: a state read once is served from
	// the local cache, which the tier invalidates. When the tier cannot be
	// reached, the Guard works as if it were nil (each replica looks up on
	// its own) until it is back. Decisions are made on every replica, per
	// request, at Now, exactly as without it. Default nil: this replica
	// alone.
	Shared cache.Shared

	// MaxStale enables stale-if-error: when a refresh fails, a state that
	// expired less than MaxStale ago still decides, marked "stale" in the
	// decision log. Its assignments still end at their end times (a stale
	// state never extends one), but a role deactivated early is not seen
	// until Graph answers again. Zero (the default) fails closed: no fresh
	// state, no access (503).
	MaxStale time.Duration

	// LookupTimeout bounds one Source lookup. The lookup runs detached from
	// the request that started it (other requests may be waiting for it);
	// each request still stops waiting when its own context is done.
	// Default [DefaultLookupTimeout].
	LookupTimeout time.Duration

	// RetryAfter is the Retry-After sent with 503 pim_unavailable. Default
	// [DefaultPIMRetryAfter].
	RetryAfter time.Duration

	// ClaimsPolicy is [PolicyLive] (zero value) or [PolicyTokenAndLive].
	ClaimsPolicy ClaimsPolicy

	// MemberOfGroups lists groups whose live membership [MemberOf]
	// requirements may name besides those of the Guard's Require calls,
	// which are added as routes are built: list here the groups of
	// requirements built per request for [Guard.Check]. The Guard asks
	// Graph about all of them on every lookup (one checkMemberGroups
	// sub-request per 20 groups; at most graphcheck.MaxCheckGroups).
	// Default none.
	MemberOfGroups []string

	// AccountChecks are made on every request through this Guard, before
	// its requirement: a disabled or deleted account, revoked sessions, a
	// changed password, a user at high risk (see [AccountChecks] for each
	// check's code and Graph permission). Zero (the default) makes none.
	// With any check on, every route of the Guard fetches the live state,
	// also those whose requirement is decided from the token alone, and
	// the Source is asked for the account facts (graphcheck.Principal.Need);
	// a state without them fails closed (503 pim_unavailable).
	AccountChecks AccountChecks

	// DenialLogLevel is the level of decision records for denied requests.
	// Default (nil) [slog.LevelInfo].
	DenialLogLevel slog.Leveler
	// AllowLogLevel is the level of decision records for allowed requests.
	// Default (nil) [slog.LevelDebug]. Failures to get the live state are
	// logged at Warn, or at Error for a missing Graph permission or licence
	// (naming it), whatever these say.
	AllowLogLevel slog.Leveler

	// Logger receives one record per decision: tenant, object ID,
	// requirement, outcome, code, where the state came from and the lookup
	// latency. It never receives a token. Default [slog.Default].
	Logger *slog.Logger

	// Now is the clock of decisions and of the cache. Default [time.Now].
	Now func() time.Time

	// Realm is the realm of WWW-Authenticate challenges. Default [DefaultRealm].
	Realm string

	// ErrorWriter renders rejections. Default [WriteRejection].
	ErrorWriter ErrorWriter

	// MeterProvider receives the Guard's metrics: pimguard.decisions, one
	// count per decision by outcome and code, and the state cache's
	// counters and size (pimguard.cache.*), observed in one callback at
	// collection time, so they cost a request nothing (see the package
	// documentation for the list). Default (nil) otel.GetMeterProvider(),
	// the global provider, which records nothing until the application
	// installs one. The Guard needs no Close: its callback is unregistered
	// when the Guard is garbage collected. Several Guards on one provider
	// report under the same names without telling themselves apart (their
	// counters add up; pimguard.cache.size is one Guard's).
	MeterProvider metric.MeterProvider
}

// Guard authorizes requests against live PIM state: per route, it allows a
// request only while the required role or group is active now. Build one
// with [NewGuard], share it between routes (it holds the state cache), and
// mount its middleware ([Guard.Require], [Guard.Load]) after
// [Authenticator.Handler]. A Guard is safe for concurrent use.
//
// The cache holds data, never decisions: every request is decided at
// [GuardConfig.Now] against the principal's cached state, so an assignment
// stops counting at its end time even while its state is cached.
type Guard struct {
	cfg     GuardConfig
	cache   *cache.Cache[string, *lookupResult]
	metrics guardMetrics
	lookups lookupHealth // the last lookup outcome per tenant, for Health

	// groups are the groups of MemberOf requirements, asked on every
	// lookup (graphcheck.Principal.CheckGroups). Require adds to them as
	// routes are built; a request reads them with one atomic load.
	groups   atomic.Pointer[graphcheck.GroupSet]
	groupsMu sync.Mutex // serialises additions
}

// lookupResult is a cached answer of the Source: a state, or the definite
// answer that the principal does not exist.
type lookupResult struct {
	state    *graphcheck.State
	notFound error
}

// NewGuard validates cfg, applies its defaults and returns a Guard with an
// empty cache. It makes no network call.
func NewGuard(cfg GuardConfig) (*Guard, error) {
	if cfg.Source == nil {
		return nil, errors.New("middleware: GuardConfig.Source is nil: give the live PIM source (e.g. graphcheck/msgraph)")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"CacheTTL", cfg.CacheTTL}, {"NegativeTTL", cfg.NegativeTTL}, {"MaxStale", cfg.MaxStale},
		{"LookupTimeout", cfg.LookupTimeout}, {"RetryAfter", cfg.RetryAfter},
	} {
		if d.v < 0 {
			return nil, fmt.Errorf("middleware: GuardConfig.%s is negative (%v)", d.name, d.v)
		}
	}
	if cfg.CacheSize < 0 {
		return nil, fmt.Errorf("middleware: GuardConfig.CacheSize is negative (%d)", cfg.CacheSize)
	}
	if cfg.ClaimsPolicy > PolicyTokenAndLive {
		return nil, fmt.Errorf("middleware: GuardConfig.ClaimsPolicy: unknown %v", cfg.ClaimsPolicy)
	}
	if cfg.AccountChecks >= checksEnd {
		return nil, fmt.Errorf("middleware: GuardConfig.AccountChecks: unknown %v", cfg.AccountChecks)
	}
	cfg.CacheSize = cmp.Or(cfg.CacheSize, DefaultStateCacheSize)
	cfg.CacheTTL = cmp.Or(cfg.CacheTTL, DefaultStateTTL)
	cfg.NegativeTTL = cmp.Or(cfg.NegativeTTL, DefaultNegativeStateTTL)
	cfg.LookupTimeout = cmp.Or(cfg.LookupTimeout, DefaultLookupTimeout)
	cfg.RetryAfter = cmp.Or(cfg.RetryAfter, DefaultPIMRetryAfter)
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	cfg.Realm = cmp.Or(cfg.Realm, DefaultRealm)
	cfg.MeterProvider = cmp.Or(cfg.MeterProvider, otel.GetMeterProvider())
	cfg.DenialLogLevel = cmp.Or[slog.Leveler](cfg.DenialLogLevel, slog.LevelInfo)
	cfg.AllowLogLevel = cmp.Or[slog.Leveler](cfg.AllowLogLevel, slog.LevelDebug)
	if cfg.Now == nil { // funcs are not comparable: cmp.Or cannot default them
		cfg.Now = time.Now
	}
	if cfg.ErrorWriter == nil {
		cfg.ErrorWriter = WriteRejection
	}
	g := &Guard{cfg: cfg}
	if err := g.addGroups(cfg.MemberOfGroups); err != nil {
		return nil, fmt.Errorf("middleware: GuardConfig.MemberOfGroups: %w", err)
	}
	c, err := cache.NewShared(cache.Config{
		Size: cfg.CacheSize, TTL: cfg.CacheTTL, NegativeTTL: cfg.NegativeTTL,
		MaxStale: cfg.MaxStale, LoadTimeout: cfg.LookupTimeout, Now: cfg.Now,
	}, g.load, cfg.Shared, cache.Codec[*lookupResult](stateCodec{}))
	if err != nil {
		return nil, fmt.Errorf("middleware: GuardConfig: %w", err)
	}
	g.cache = c
	if cfg.Shared != nil {
		cfg.Shared.Subscribe(g.sharedInvalidated)
	}
	if g.metrics, err = newGuardMetrics(cfg.MeterProvider, c, g); err != nil {
		return nil, err
	}
	return g, nil
}

// MustNewGuard is like [NewGuard] but panics on error. NewGuard makes no
// network call, so its only errors are configuration errors: MustNewGuard
// is for package-level wiring, where such an error is a programming error.
func MustNewGuard(cfg GuardConfig) *Guard {
	g, err := NewGuard(cfg)
	if err != nil {
		panic(err)
	}
	return g
}

// Require returns a middleware that lets a request through only if r is met
// now: it reads the [Principal] that [Authenticator.Handler] put in the
// context, gets the principal's live state (from the cache, or one coalesced
// Source lookup), decides r at [GuardConfig.Now], and on success calls next
// with the state in the context ([LiveStateFromContext]). It fits chi's With
// and Use, alice, and plain net/http wrapping.
//
// Every other path answers without calling next: 403 insufficient_scope
// when r is not met (401 insufficient_claims, with a claims challenge,
// when the first unmet leaf is an [AuthContext]); 401 principal_not_found when the directory says the
// principal no longer exists; 503 pim_unavailable with Retry-After when the
// state cannot be fetched and MaxStale does not allow an older one; and 500
// internal_error when no Principal is in the context (no Authenticator in
// front: a wiring bug, refused rather than guessed at).
//
// Require panics if r is invalid ([Requirement.Validate]), so that a
// mistyped role ID fails when routes are built, not on a request. A
// requirement made only of [AppRole], [Scope] and [AuthContext] is decided
// from the token and does not fetch the live state. The groups of its
// [MemberOf] leaves join those every lookup of the Guard asks about, and
// when the Source is a graphcheck.GroupWatcher (graphcheck/msgraph's
// Snapshot) it is told the groups of its [GroupMember] and [GroupOwner]
// leaves, which it then reads.
func (g *Guard) Require(r Requirement) func(http.Handler) http.Handler {
	if err := r.Validate(); err != nil {
		panic(err)
	}
	if err := g.addGroups(r.groupIDs(kindMemberOf, nil)); err != nil {
		panic(fmt.Errorf("middleware: Require(%s): %w", r, err))
	}
	if w, ok := g.cfg.Source.(graphcheck.GroupWatcher); ok {
		w.WatchGroups(r.groupIDs(kindGroup, nil)...)
	}
	return g.middleware(r)
}

// addGroups adds ids to the groups asked on every lookup. Lookups made
// before see the old set: their states are keyed by it (LookupKey) and
// never answer for a group they did not check.
func (g *Guard) addGroups(ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	g.groupsMu.Lock()
	defer g.groupsMu.Unlock()
	cur := g.groups.Load()
	if cur != nil && !slices.ContainsFunc(ids, func(id string) bool { return !cur.Contains(id) }) {
		return nil
	}
	if cur != nil {
		ids = append(cur.IDs(), ids...)
	}
	set, err := graphcheck.NewGroupSet(ids...)
	if err != nil {
		return err
	}
	g.groups.Store(&set)
	return nil
}

// checkGroups is the set of groups every lookup asks about.
func (g *Guard) checkGroups() graphcheck.GroupSet {
	if s := g.groups.Load(); s != nil {
		return *s
	}
	return graphcheck.GroupSet{}
}

// unknownGroup returns a group r names in a MemberOf that the Guard does not
// ask about, or "".
func (g *Guard) unknownGroup(r *Requirement) string {
	set := g.checkGroups()
	for _, id := range r.groupIDs(kindMemberOf, nil) {
		if !set.Contains(id) {
			return id
		}
	}
	return ""
}

// Load is a middleware that fetches the principal's live state and puts it
// in the context ([LiveStateFromContext]) without requiring anything, for
// routes such as /api/me that show a caller what is active. Its failures are
// those of [Guard.Require]: a request is never served without a state.
func (g *Guard) Load(next http.Handler) http.Handler {
	return g.middleware(Requirement{kind: kindLoad})(next)
}

// rule is a validated requirement with what the request path needs of it.
type rule struct {
	req       Requirement
	str       string
	needsLive bool
}

// newRule prepares a validated requirement for the request path.
func (g *Guard) newRule(r Requirement) *rule {
	return &rule{req: r, str: r.String(), needsLive: r.needsLive() || g.cfg.AccountChecks != 0}
}

func (g *Guard) middleware(r Requirement) func(http.Handler) http.Handler {
	ru := g.newRule(r)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			g.serve(w, req, next, ru)
		})
	}
}

// State sources named in decision records.
const (
	stateNone  = "none"   // not needed, or not obtained
	stateCache = "cache"  // a fresh cache entry
	stateGraph = "graph"  // a Source lookup made or joined by this request
	stateStale = "stale"  // an expired entry standing in for a failed lookup
	stateFleet = "shared" // a state another replica looked up (GuardConfig.Shared)
)

// decision is what one request's decision record says.
type decision struct {
	rule    *rule
	p       *Principal
	outcome string // allow, deny or error
	source  string
	latency time.Duration
	level   slog.Level
	rej     *Rejection
	attrs   []slog.Attr
}

// serve is Require's and Load's handler: the decision of [Guard.decide],
// then the rejection or next, with the state in the context.
func (g *Guard) serve(w http.ResponseWriter, r *http.Request, next http.Handler, ru *rule) {
	var d decision
	state := g.decide(r, ru, &d)
	if d.rej != nil {
		g.cfg.ErrorWriter(w, r, d.rej)
		return
	}
	if state != nil {
		r = r.WithContext(ContextWithLiveState(r.Context(), state))
	}
	next.ServeHTTP(w, r)
}

// decide is the one decision path of [Guard.Require], [Guard.Load] and
// [Guard.Check]: it decides ru for r at Now, fills d (a refusal in d.rej),
// counts the decision and writes its record. On an allow it returns the
// live state, nil when ru needed none.
func (g *Guard) decide(r *http.Request, ru *rule, d *decision) *graphcheck.State {
	state := g.evaluate(r.Context(), ru, d)
	g.record(r, d)
	return state
}

// evaluate is decide without the record.
func (g *Guard) evaluate(ctx context.Context, ru *rule, d *decision) *graphcheck.State {
	d.rule, d.source = ru, stateNone
	p, ok := PrincipalFromContext(ctx)
	if !ok {
		d.outcome, d.level, d.rej = "error", slog.LevelError, g.rejection(ErrNoPrincipal)
		return nil
	}
	d.p = p
	var state *graphcheck.State
	if ru.needsLive {
		var err error
		state, err = g.lookup(ctx, p, d)
		if err != nil {
			d.rej = g.rejection(err)
			return nil
		}
	}
	if state != nil {
		if err := g.cfg.AccountChecks.check(p, state); err != nil {
			d.outcome, d.level = "deny", g.cfg.DenialLogLevel.Level()
			if errors.Is(err, ErrPIMUnavailable) {
				// A fact the checks need is missing: undecided, not denied.
				d.outcome, d.level = "error", slog.LevelWarn
			}
			d.rej = g.rejection(err)
			return nil
		}
	}
	e := evaluation{state: state, principal: p, now: g.cfg.Now(), tokenAndLive: g.cfg.ClaimsPolicy == PolicyTokenAndLive}
	if !ru.req.eval(&e) {
		d.outcome, d.level = "deny", g.cfg.DenialLogLevel.Level()
		d.rej = g.denial(ru, e.failures)
		return nil
	}
	d.outcome, d.level = "allow", g.cfg.AllowLogLevel.Level()
	return state
}

// lookup returns p's live state, filling in d's source, latency and, on
// failure, outcome, level and log attributes. Errors wrap ErrPIMUnavailable
// or ErrPrincipalNotFound.
func (g *Guard) lookup(ctx context.Context, p *Principal, d *decision) (*graphcheck.State, error) {
	start := time.Now()
	// The key names the principal's kind and the facts asked for
	// (LookupKey), so a state fetched for an app-only request, without
	// account or risk, is never served to a user request for the same oid.
	// The loader reads p from ctx (PrincipalFromContext) and checks that it
	// is the principal the key names.
	v, info, err := g.cache.Get(ctx, g.graphPrincipal(p).LookupKey())
	d.latency = time.Since(start)
	if err != nil {
		d.outcome, d.level = "error", slog.LevelWarn
		var pe *graphcheck.PermissionError
		switch {
		case errors.As(err, &pe):
			d.level = slog.LevelError
			d.attrs = append(d.attrs, slog.String("permission", pe.Permission), slog.String("graph_request", pe.Request), slog.String("graph_code", pe.Code))
		case errors.Is(err, graphcheck.ErrPermissionDenied), errors.Is(err, graphcheck.ErrLicenseRequired):
			d.level = slog.LevelError
		case ctx.Err() != nil:
			d.level = g.cfg.DenialLogLevel.Level() // the client gave up; nothing is wrong with Graph
		}
		return nil, fmt.Errorf("%w: %w", ErrPIMUnavailable, err)
	}
	switch info.Source {
	case cache.Hit:
		d.source = stateCache
	case cache.Loaded:
		d.source = stateGraph
	case cache.FromShared:
		d.source = stateFleet
		// The tier verified that a holder of the fleet key wrote this
		// entry for this key; check the principal anyway, as load checks
		// what the Source returns.
		if s := v.state; s != nil && (!strings.EqualFold(s.ObjectID, p.ObjectID) || !strings.EqualFold(s.TenantID, p.TenantID)) {
			d.outcome, d.level = "error", slog.LevelError
			return nil, fmt.Errorf("%w: the shared tier returned the state of %s/%s for %s/%s", ErrPIMUnavailable, s.TenantID, s.ObjectID, p.TenantID, p.ObjectID)
		}
	case cache.Stale:
		d.source = stateStale
		d.attrs = append(d.attrs, slog.Any("refresh_error", info.LoadErr))
	}
	if v.notFound != nil {
		d.outcome, d.level = "deny", g.cfg.DenialLogLevel.Level()
		if g.cfg.AccountChecks&CheckAccountEnabled != 0 {
			return nil, fmt.Errorf("%w: %w", ErrAccountDeleted, v.notFound)
		}
		return nil, fmt.Errorf("%w: %w", ErrPrincipalNotFound, v.notFound)
	}
	return v.state, nil
}

// graphPrincipal is what the Source is asked about p: its IDs, its kind, and
// the facts the Guard's account checks need for that kind. Its LookupKey is
// the state cache's key.
func (g *Guard) graphPrincipal(p *Principal) graphcheck.Principal {
	return g.principalOfKind(p.TenantID, p.ObjectID, p.AppOnly)
}

// principalOfKind is graphPrincipal for IDs and a kind: app for a service
// principal.
func (g *Guard) principalOfKind(tenantID, objectID string, app bool) graphcheck.Principal {
	return graphcheck.Principal{TenantID: tenantID, ObjectID: objectID, ServicePrincipal: app,
		Need: g.cfg.AccountChecks.need(app), CheckGroups: g.checkGroups()}
}

// load is the cache's LoadFunc: one Source lookup for a principal. It
// refuses a key that is not the LookupKey of the principal in ctx, so that
// an entry always holds what its key says (kind and facts). Its checks that
// the facts asked for came back are defence in depth: AccountChecks.check
// fails closed without them too.
func (g *Guard) load(ctx context.Context, key string) (cache.Result[*lookupResult], error) {
	var none cache.Result[*lookupResult]
	p, ok := PrincipalFromContext(ctx)
	if !ok {
		return none, errors.New("middleware: state lookup without a principal")
	}
	gp := g.graphPrincipal(p)
	if gp.LookupKey() != key {
		return none, errors.New("middleware: state lookup for another principal than its key")
	}
	if err := gp.Validate(); err != nil {
		// Not a directory object ID: nothing to ask Graph (the Source would
		// refuse it too). Remembered like a deleted principal.
		return cache.Result[*lookupResult]{Value: &lookupResult{notFound: err}, Negative: true}, nil
	}
	s, err := g.cfg.Source.Lookup(ctx, gp)
	res, err := g.result(key, gp, s, err)
	g.lookups.observe(gp.TenantID, err, g.cfg.Now())
	return res, err
}

// result is load's reading of the Source's answer for key.
func (g *Guard) result(key string, gp graphcheck.Principal, s *graphcheck.State, err error) (cache.Result[*lookupResult], error) {
	var none cache.Result[*lookupResult]
	switch {
	case errors.Is(err, graphcheck.ErrPrincipalNotFound):
		// A definite answer: remember it briefly, so that a deleted user's
		// still-valid token does not cost one Graph lookup per request.
		return cache.Result[*lookupResult]{Value: &lookupResult{notFound: err}, Negative: true}, nil
	case err != nil:
		return none, err
	case s == nil:
		return none, fmt.Errorf("%w: source returned neither a state nor an error", graphcheck.ErrUnavailable)
	case s.ObjectID != "" && !strings.EqualFold(s.ObjectID, gp.ObjectID),
		s.TenantID != "" && !strings.EqualFold(s.TenantID, gp.TenantID):
		return none, fmt.Errorf("%w: source returned the state of %s/%s for %s", graphcheck.ErrUnavailable, s.TenantID, s.ObjectID, key)
	case gp.Need.Has(graphcheck.NeedAccount) && s.Account == nil:
		return none, fmt.Errorf("%w: source returned no account for %s, which the account checks need", graphcheck.ErrUnavailable, key)
	case gp.Need.Has(graphcheck.NeedRisk) && s.Risk == nil:
		return none, fmt.Errorf("%w: source returned no risk for %s, which the risk check needs", graphcheck.ErrUnavailable, key)
	case !s.CheckedAll(gp.CheckGroups):
		return none, fmt.Errorf("%w: source did not check the group memberships asked for %s", graphcheck.ErrUnavailable, key)
	}
	return cache.Result[*lookupResult]{Value: &lookupResult{state: s}, NotAfter: s.NotAfter(), Negative: s.Empty()}, nil
}

// rejection classifies err and applies the Guard's realm and Retry-After:
// [GuardConfig.RetryAfter], or the hint of an error in err's chain that has
// a RetryAfter method (a retryHint, such as graphcheck/breaker's
// OpenError, whose hint is the rest of the tenant's cool-down).
func (g *Guard) rejection(err error) *Rejection {
	rej := RejectionFor(err, g.cfg.Realm)
	if rej.Status == http.StatusServiceUnavailable {
		rej.RetryAfter = g.cfg.RetryAfter
		if h, ok := errors.AsType[retryHint](err); ok && h.RetryAfter() > 0 {
			rej.RetryAfter = h.RetryAfter()
		}
	}
	return rej
}

// retryHint is an error that knows when trying again is worth it, e.g.
// graphcheck/breaker's OpenError: the rest of the tenant's cool-down.
type retryHint interface {
	error
	RetryAfter() time.Duration
}

// denial builds the 403 for unmet requirements. The first failure, in the
// requirement's order, picks the code.
func (g *Guard) denial(ru *rule, failures []failure) *Rejection {
	rej := g.rejection(fmt.Errorf("%w: %s", failures[0].err, ru.str))
	for _, f := range failures {
		s := f.req.String()
		if !containsFold(rej.Required, s) {
			rej.Required = append(rej.Required, s)
		}
		if f.endedAt.After(rej.EndedAt) {
			rej.EndedAt = f.endedAt
		}
	}
	return rej
}

// record counts the decision and writes its record.
func (g *Guard) record(r *http.Request, d *decision) {
	ctx := r.Context()
	g.metrics.decided(ctx, d)
	if g.cfg.Logger.Enabled(ctx, d.level) {
		attrs := make([]slog.Attr, 0, 12+len(d.attrs))
		if d.p != nil {
			attrs = append(attrs, slog.String("tenant", d.p.TenantID), slog.String("oid", d.p.ObjectID))
		}
		attrs = append(attrs,
			slog.String("requirement", d.rule.str),
			slog.String("outcome", d.outcome),
			slog.String("state", d.source),
			slog.Duration("latency", d.latency),
			slog.String("method", r.Method),
			slog.String("path", r.URL.Path),
		)
		if d.rej != nil {
			attrs = append(attrs, slog.String("code", d.rej.Code), slog.Int("status", d.rej.Status))
			if len(d.rej.Required) > 0 {
				attrs = append(attrs, slog.Any("required", d.rej.Required))
			}
			if !d.rej.EndedAt.IsZero() {
				attrs = append(attrs, slog.Time("ended_at", d.rej.EndedAt))
			}
			attrs = append(attrs, slog.Any("err", d.rej.Err))
		} else {
			attrs = append(attrs, slog.String("code", ""))
		}
		attrs = append(attrs, d.attrs...)
		g.cfg.Logger.LogAttrs(ctx, d.level, "pimguard: authorization decision", attrs...)
	}
}

// Purge drops the cached state of one principal, so that its next request
// fetches it afresh; call it when you learn of a change (e.g. from an audit
// event). It drops the entries of both kinds (the state fetched for user
// tokens and for app-only tokens with that object ID), and a lookup of
// either already running is not stored. IDs are compared in lower case.
// Purge is safe for concurrent use.
//
// When the Source caches something of its own about principals and is a
// graphcheck.Purger (graphcheck/msgraph keeps users' risk for its RiskTTL),
// Purge purges the Source first.
func (g *Guard) Purge(tenantID, objectID string) {
	tenantID, objectID = strings.ToLower(tenantID), strings.ToLower(objectID)
	if p, ok := g.cfg.Source.(graphcheck.Purger); ok {
		p.Purge(tenantID, objectID)
	}
	g.cache.Purge(g.principalOfKind(tenantID, objectID, false).LookupKey(), g.principalOfKind(tenantID, objectID, true).LookupKey())
}

// PurgeAll drops every cached state, and first what the Source caches when
// it is a graphcheck.Purger (graphcheck/msgraph). It is safe for concurrent
// use.
func (g *Guard) PurgeAll() {
	if p, ok := g.cfg.Source.(graphcheck.Purger); ok {
		p.PurgeAll()
	}
	g.cache.PurgeAll()
}

// Preflight checks, once at start, that the Source may read everything
// this Guard's lookups will ask for: the PIM state and what its
// [GuardConfig.AccountChecks] need. It calls the Source's Preflight
// (graphcheck.Preflighter; graphcheck/msgraph sends one cheap Graph request
// per feature) and returns its errors, each naming a missing permission or
// licence (graphcheck.PermissionError), or an error wrapping
// [ErrPreflightUnsupported] when the Source has no Preflight. It changes no
// cached state and is safe for concurrent use.
func (g *Guard) Preflight(ctx context.Context) error {
	pf, ok := g.cfg.Source.(graphcheck.Preflighter)
	if !ok {
		return fmt.Errorf("%w: %T", ErrPreflightUnsupported, g.cfg.Source)
	}
	need := g.cfg.AccountChecks.need(false) | g.cfg.AccountChecks.need(true)
	if g.checkGroups().Len() > 0 {
		need |= graphcheck.NeedGroupMembership
	}
	if err := pf.Preflight(ctx, need); err != nil {
		if errors.Is(err, errors.ErrUnsupported) {
			// A wrapper (graphcheck/breaker) around a Source without Preflight.
			return fmt.Errorf("%w: %T: %w", ErrPreflightUnsupported, g.cfg.Source, err)
		}
		return fmt.Errorf("middleware: preflight: %w", err)
	}
	return nil
}

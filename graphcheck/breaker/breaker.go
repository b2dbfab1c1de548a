package breaker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"

	"github.com/pimguard/pimguard/graphcheck"
)

// Defaults applied by [New] to zero-valued [Config] fields.
const (
	DefaultFailures   = 5
	DefaultPrincipals = 2
	DefaultTimeout    = 10 * time.Second
	DefaultMaxTenants = 1000
)

// Config configures a [Source]. The zero value is valid: every zero field
// takes its default. There is no clock: see the package documentation.
type Config struct {
	// Failures is how many lookups in a row, for one tenant, must fail
	// with an outage (an error wrapping graphcheck.ErrOutage) to open the
	// tenant's breaker. Default [DefaultFailures]. Lower opens sooner on a
	// real outage and more readily on a blip.
	Failures int

	// Principals is how many distinct principals those failures must come
	// from. Default and minimum [DefaultPrincipals] (2): a single
	// principal whose lookups time out (a user in thousands of groups) or
	// come back broken must never make the whole tenant fail fast. The
	// breaker opens once both Failures and Principals are reached.
	Principals int

	// Timeout is the cool-down: how long an open breaker fails lookups
	// fast before it lets one through to probe Graph. Default
	// [DefaultTimeout]. It bounds both the Graph traffic during an outage
	// (one probe per Timeout per tenant) and how long after Graph is back
	// lookups keep failing (at most Timeout, plus the probe).
	Timeout time.Duration

	// MaxTenants bounds the tenants that have a breaker, so that a flood
	// of tenants cannot grow memory without limit. When it is reached, the
	// breakers of tenants that are closed with no failure counted are
	// dropped (a new breaker is the same); if every breaker is busy, a new
	// tenant's lookups go to the Source without one. Default
	// [DefaultMaxTenants].
	MaxTenants int

	// Logger receives one record per state change of a tenant's breaker:
	// Warn when it opens, Info when it becomes half-open or closes.
	// Default slog.Default().
	Logger *slog.Logger

	// MeterProvider receives pimguard.breaker.transitions (by the state
	// entered), pimguard.breaker.rejected (lookups failed fast) and
	// pimguard.breaker.tenants (tenants per state, observed at collection
	// time). Default otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
}

// Source is a graphcheck.Source wrapped in one circuit breaker per tenant.
// Create it with [New]. It passes the wrapped Source's optional
// capabilities through: graphcheck.Purger, graphcheck.Preflighter (an
// error wrapping errors.ErrUnsupported when the wrapped Source has no
// Preflight) and graphcheck.HealthReporter (before its own items). A
// Source is safe for concurrent use.
type Source struct {
	src graphcheck.Source
	cfg Config

	mu      sync.RWMutex
	tenants map[string]*tenant

	transitions metric.Int64Counter
	rejected    metric.Int64Counter
}

var (
	_ graphcheck.Source         = (*Source)(nil)
	_ graphcheck.Purger         = (*Source)(nil)
	_ graphcheck.Preflighter    = (*Source)(nil)
	_ graphcheck.HealthReporter = (*Source)(nil)
	_ graphcheck.UserDirectory  = (*Source)(nil)
	_ graphcheck.GroupWatcher   = (*Source)(nil)
)

// New wraps src and returns the wrapper. It panics if src is nil or a
// field of cfg is invalid (negative, or Principals 1): both are wiring
// errors, found when the application starts. Use [NewSource] to get them
// as an error instead.
func New(src graphcheck.Source, cfg Config) *Source {
	s, err := NewSource(src, cfg)
	if err != nil {
		panic(err)
	}
	return s
}

// NewSource is [New] returning configuration errors instead of panicking.
func NewSource(src graphcheck.Source, cfg Config) (*Source, error) {
	if src == nil {
		return nil, errors.New("breaker: the Source to wrap is nil")
	}
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"Failures", int64(cfg.Failures)}, {"Principals", int64(cfg.Principals)},
		{"Timeout", int64(cfg.Timeout)}, {"MaxTenants", int64(cfg.MaxTenants)},
	} {
		if f.v < 0 {
			return nil, fmt.Errorf("breaker: Config.%s is negative (%d)", f.name, f.v)
		}
	}
	if cfg.Principals == 1 {
		return nil, errors.New("breaker: Config.Principals is 1: one principal's failing lookups must not open the breaker for its whole tenant; use at least 2")
	}
	cfg.Failures = cmp.Or(cfg.Failures, DefaultFailures)
	cfg.Principals = cmp.Or(cfg.Principals, DefaultPrincipals)
	cfg.Timeout = cmp.Or(cfg.Timeout, DefaultTimeout)
	cfg.MaxTenants = cmp.Or(cfg.MaxTenants, DefaultMaxTenants)
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	cfg.MeterProvider = cmp.Or(cfg.MeterProvider, otel.GetMeterProvider())
	s := &Source{src: src, cfg: cfg, tenants: map[string]*tenant{}}
	if err := s.initMetrics(); err != nil {
		return nil, err
	}
	return s, nil
}

// OpenError is the error of a lookup failed fast: the tenant's breaker is
// open, or half-open with its probe still running. It wraps
// graphcheck.ErrUnavailable and graphcheck.ErrOutage (test with
// errors.Is), so a caller treats it as the outage it stands for.
type OpenError struct {
	// TenantID is the tenant whose breaker refused the lookup.
	TenantID string
	// Until is when the cool-down ends and a lookup may probe Graph; zero
	// when the cool-down is over and a probe is running.
	Until time.Time

	retryAfter time.Duration
}

func (e *OpenError) Error() string {
	if e.Until.IsZero() {
		return "breaker: Graph lookups for tenant " + e.TenantID + " fail fast while a probe tests whether Graph is back"
	}
	return "breaker: Graph lookups for tenant " + e.TenantID + " fail fast after repeated outage failures, until " + e.Until.UTC().Format(time.RFC3339)
}

// Unwrap returns graphcheck.ErrUnavailable and graphcheck.ErrOutage.
func (e *OpenError) Unwrap() []error {
	return []error{graphcheck.ErrUnavailable, graphcheck.ErrOutage}
}

// RetryAfter is when trying again is worth it: the rest of the cool-down,
// at least a second, or zero while a probe runs (its outcome decides).
// middleware.Guard sends it as Retry-After.
func (e *OpenError) RetryAfter() time.Duration { return e.retryAfter }

// outcome is how a lookup's result counts.
type outcome uint8

const (
	neither  outcome = iota // not evidence either way: excluded
	answered                // Graph answered: a success
	outage                  // Graph is down: a failure
)

// classify says how a lookup's result counts. A caller that gave up
// (ctx cancelled) says nothing about Graph, whatever the error.
func classify(ctx context.Context, err error) outcome {
	switch {
	case err == nil,
		errors.Is(err, graphcheck.ErrPrincipalNotFound),
		errors.Is(err, graphcheck.ErrPermissionDenied),
		errors.Is(err, graphcheck.ErrLicenseRequired):
		return answered
	case errors.Is(ctx.Err(), context.Canceled):
		return neither
	case errors.Is(err, graphcheck.ErrOutage):
		return outage
	}
	return neither
}

// What the breakers are told: errOutage is a failure, errExcluded neither
// a failure nor a success, nil a success.
var (
	errOutage   = errors.New("breaker: outage")
	errExcluded = errors.New("breaker: excluded")
)

// Lookup asks the wrapped Source, through p's tenant's breaker: at once
// an [*OpenError] while the breaker is open (or half-open with its probe
// running), else the wrapped Source's answer, counted.
func (s *Source) Lookup(ctx context.Context, p graphcheck.Principal) (*graphcheck.State, error) {
	return through(s, ctx, p.TenantID, p.ObjectID, func() (*graphcheck.State, error) { return s.src.Lookup(ctx, p) })
}

// User implements graphcheck.UserDirectory when the wrapped Source does
// (graphcheck/msgraph): it reads a target user through tenantID's breaker,
// as Lookup does, so that a handler's directory read fails fast during an
// outage too, and its outages count. The user's ID stands for the
// principal in the breaker's count of distinct principals. It returns an
// error wrapping errors.ErrUnsupported when the wrapped Source has no
// directory.
func (s *Source) User(ctx context.Context, tenantID, userID string) (*graphcheck.DirectoryUser, error) {
	dir, ok := s.src.(graphcheck.UserDirectory)
	if !ok {
		return nil, fmt.Errorf("breaker: the wrapped %T reads no users: %w", s.src, errors.ErrUnsupported)
	}
	return through(s, ctx, tenantID, userID, func() (*graphcheck.DirectoryUser, error) { return dir.User(ctx, tenantID, userID) })
}

// through runs call through tenantID's breaker, counting its outcome for
// the object objectID.
func through[T any](s *Source, ctx context.Context, tenantID, objectID string, call func() (T, error)) (T, error) {
	var zero T
	t := s.tenant(tenantID)
	if t == nil {
		return call()
	}
	done, err := t.cb.Allow()
	if err != nil {
		s.rejected.Add(ctx, 1)
		return zero, t.openError(err)
	}
	gen := t.gen.Load() // after Allow: a lazy open → half-open has been counted
	reported := false
	defer func() {
		if !reported { // the call panicked: free the probe slot
			t.report(gen, "", neither, done)
		}
	}()
	v, err := call()
	reported = true
	t.report(gen, strings.ToLower(objectID), classify(ctx, err), done)
	return v, err
}

// Purge calls the wrapped Source's Purge when it is a graphcheck.Purger.
// The breakers are not facts about principals: they stay as they are.
func (s *Source) Purge(tenantID, objectID string) {
	if p, ok := s.src.(graphcheck.Purger); ok {
		p.Purge(tenantID, objectID)
	}
}

// PurgeAll calls the wrapped Source's PurgeAll when it is a
// graphcheck.Purger.
func (s *Source) PurgeAll() {
	if p, ok := s.src.(graphcheck.Purger); ok {
		p.PurgeAll()
	}
}

// WatchGroups passes ids on to the wrapped Source when it is a
// graphcheck.GroupWatcher (graphcheck/msgraph's Snapshot), so that a Guard
// in front of the breaker still tells the snapshot which groups to read.
func (s *Source) WatchGroups(ids ...string) {
	if w, ok := s.src.(graphcheck.GroupWatcher); ok {
		w.WatchGroups(ids...)
	}
}

// Preflight calls the wrapped Source's Preflight, outside the breakers,
// or returns an error wrapping errors.ErrUnsupported when the wrapped
// Source is not a graphcheck.Preflighter (middleware.Guard.Preflight then
// reports ErrPreflightUnsupported).
func (s *Source) Preflight(ctx context.Context, need graphcheck.Need) error {
	pf, ok := s.src.(graphcheck.Preflighter)
	if !ok {
		return fmt.Errorf("breaker: the wrapped %T cannot preflight: %w", s.src, errors.ErrUnsupported)
	}
	return pf.Preflight(ctx, need)
}

// Health implements graphcheck.HealthReporter: the wrapped Source's items
// when it is a HealthReporter, then one "breaker/<tenant>" item per tenant
// looked up, sorted: ready while closed; not ready while open (every
// lookup fails fast until the cool-down ends, with no traffic needed);
// ready and degraded while half-open (the next lookup probes Graph: a
// replica taken out of rotation would never send it). Since is when the
// breaker entered its state. Health makes no network call.
func (s *Source) Health() []graphcheck.HealthCheck {
	var out []graphcheck.HealthCheck
	if hr, ok := s.src.(graphcheck.HealthReporter); ok {
		out = append(out, hr.Health()...)
	}
	for _, t := range s.sortedTenants() {
		out = append(out, t.health(s.cfg))
	}
	return out
}

// allTenants returns the tenants that have a breaker, in no order.
func (s *Source) allTenants() []*tenant {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Collect(maps.Values(s.tenants))
}

func (s *Source) sortedTenants() []*tenant {
	ts := s.allTenants()
	slices.SortFunc(ts, func(a, b *tenant) int { return strings.Compare(a.id, b.id) })
	return ts
}

// tenant returns the breaker of tenantID, creating it on first use; nil
// when MaxTenants breakers are all busy.
func (s *Source) tenant(tenantID string) *tenant {
	id := strings.ToLower(tenantID)
	s.mu.RLock()
	t := s.tenants[id]
	s.mu.RUnlock()
	if t != nil {
		return t
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.tenants[id]; t != nil {
		return t
	}
	if len(s.tenants) >= s.cfg.MaxTenants {
		for k, t := range s.tenants {
			if t.idle() {
				delete(s.tenants, k)
			}
		}
		if len(s.tenants) >= s.cfg.MaxTenants {
			return nil
		}
	}
	t = s.newTenant(id)
	s.tenants[id] = t
	return t
}

// tenant is one tenant's breaker and what it needs to decide to open.
type tenant struct {
	id       string
	cb       *gobreaker.TwoStepCircuitBreaker[struct{}]
	need     int           // Config.Principals
	cooldown time.Duration // Config.Timeout

	// mu serialises recording an outcome with reporting it to cb, so that
	// failing matches the breaker's own count when ReadyToTrip reads it.
	mu         sync.Mutex
	failing    []string // distinct principals of the outages in a row, at most Config.Principals
	failingGen uint64   // the generation failing belongs to
	distinct   atomic.Int32

	gen      atomic.Uint64 // bumped by each state change
	since    atomic.Int64  // UnixNano of the last state change (or of creation)
	openedAt atomic.Int64  // UnixNano of the last opening
	trip     atomic.Uint32 // the failures in a row that opened it last
}

func (s *Source) newTenant(id string) *tenant {
	t := &tenant{id: id, need: s.cfg.Principals, cooldown: s.cfg.Timeout}
	t.since.Store(time.Now().UnixNano())
	t.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        id,
		MaxRequests: 1, // one probe at a time; its answer closes the breaker
		Timeout:     s.cfg.Timeout,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			if c.ConsecutiveFailures >= uint32(s.cfg.Failures) && int(t.distinct.Load()) >= s.cfg.Principals {
				t.trip.Store(c.ConsecutiveFailures)
				return true
			}
			return false
		},
		IsSuccessful:  func(err error) bool { return err == nil },
		IsExcluded:    func(err error) bool { return err == errExcluded },
		OnStateChange: func(_ string, from, to gobreaker.State) { s.changed(t, from, to) },
	})
	return t
}

// report records a lookup's outcome and tells the breaker. gen is the
// generation the lookup was allowed in: an outcome from an earlier one
// does not count (the breaker ignores it too).
func (t *tenant) report(gen uint64, oid string, o outcome, done func(error)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if gen == t.gen.Load() {
		if t.failingGen != gen {
			t.failing, t.failingGen = t.failing[:0], gen
		}
		switch o {
		case answered:
			t.failing = t.failing[:0]
		case outage:
			if len(t.failing) < t.need && !slices.Contains(t.failing, oid) {
				t.failing = append(t.failing, oid)
			}
		}
		t.distinct.Store(int32(len(t.failing)))
	}
	switch o {
	case answered:
		done(nil)
	case outage:
		done(errOutage)
	default:
		done(errExcluded)
	}
}

// openError is the error of a lookup the breaker refused with err.
func (t *tenant) openError(err error) *OpenError {
	e := &OpenError{TenantID: t.id}
	if errors.Is(err, gobreaker.ErrOpenState) {
		e.Until = time.Unix(0, t.openedAt.Load()).Add(t.cooldown)
		e.retryAfter = max(time.Until(e.Until), time.Second)
	}
	return e
}

// idle reports whether dropping t loses nothing: closed, no failure counted.
func (t *tenant) idle() bool {
	return t.cb.State() == gobreaker.StateClosed && t.cb.Counts().ConsecutiveFailures == 0
}

// health is t's readiness item.
func (t *tenant) health(cfg Config) graphcheck.HealthCheck {
	st := t.cb.State() // also moves an open breaker past its cool-down to half-open
	c := graphcheck.HealthCheck{Name: "breaker/" + t.id, Since: time.Unix(0, t.since.Load())}
	switch st {
	case gobreaker.StateClosed:
		c.Ready = true
		c.Detail = "closed: lookups go to the Source"
	case gobreaker.StateOpen:
		until := time.Unix(0, t.openedAt.Load()).Add(t.cooldown)
		c.Detail = fmt.Sprintf("open: %d Graph outage failures in a row from %d or more principals; lookups fail fast (503 pim_unavailable) until %s, then one probes Graph",
			t.trip.Load(), cfg.Principals, until.UTC().Format(time.RFC3339))
	case gobreaker.StateHalfOpen:
		c.Ready, c.Degraded = true, true
		c.Since = time.Unix(0, t.openedAt.Load()).Add(t.cooldown)
		c.Detail = "half-open: the cool-down is over; the next lookup probes Graph and the others fail fast until it answers"
	}
	return c
}

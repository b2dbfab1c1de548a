package msgraph

import (
	"context"
	"encoding/json"
	"math"
	"strings"
	"time"

	"github.com/microsoftgraph/msgraph-sdk-go/identityprotection"
	"github.com/microsoftgraph/msgraph-sdk-go/serviceprincipals"
	"github.com/microsoftgraph/msgraph-sdk-go/users"
	"golang.org/x/time/rate"

	"github.com/pimguard/pimguard/graphcheck"
)

// account is the GET of oid's user (accountEnabled, sessions, password) or
// service principal (accountEnabled), sent in the same $batch as the PIM
// requests. A 404 Request_ResourceNotFound is the principal's deletion
// ([graphcheck.ErrPrincipalNotFound]).
func (s *Source) account(ctx context.Context, oid string, servicePrincipal bool, set func(*graphcheck.Account)) (*collection, error) {
	ep := epUser
	var (
		rel string
		err error
	)
	if servicePrincipal {
		ep = epSP
		rel, err = s.relative(s.client.ServicePrincipals().ByServicePrincipalId(oid).ToGetRequestInformation(ctx,
			&serviceprincipals.ServicePrincipalItemRequestBuilderGetRequestConfiguration{
				QueryParameters: &serviceprincipals.ServicePrincipalItemRequestBuilderGetQueryParameters{Select: spSelect},
			}))
	} else {
		rel, err = s.relative(s.client.Users().ByUserId(oid).ToGetRequestInformation(ctx,
			&users.UserItemRequestBuilderGetRequestConfiguration{
				QueryParameters: &users.UserItemRequestBuilderGetQueryParameters{Select: userSelect},
			}))
	}
	if err != nil {
		return nil, unavailable("building %s: %v", ep.request(), err)
	}
	return &collection{ep: ep, next: rel, single: true, add: func(body json.RawMessage) error {
		a, err := decodeAccount(body, oid, !servicePrincipal)
		if err == nil {
			set(a)
		}
		return err
	}}, nil
}

// risk is the GET of oid's riskyUser. Identity Protection has no record for
// a user it never flagged and answers 404 with Graph's not-found error
// (notFoundError): that is no risk. Any other 404 fails the lookup.
func (s *Source) risk(ctx context.Context, oid string, set func(graphcheck.Risk)) (*collection, error) {
	rel, err := s.relative(s.client.IdentityProtection().RiskyUsers().ByRiskyUserId(oid).ToGetRequestInformation(ctx,
		&identityprotection.RiskyUsersRiskyUserItemRequestBuilderGetRequestConfiguration{
			QueryParameters: &identityprotection.RiskyUsersRiskyUserItemRequestBuilderGetQueryParameters{Select: riskSelect},
		}))
	if err != nil {
		return nil, unavailable("building %s: %v", epRisk.request(), err)
	}
	return &collection{ep: epRisk, next: rel, single: true,
		add: func(body json.RawMessage) error {
			r, err := decodeRisk(body, oid)
			if err == nil {
				set(r)
			}
			return err
		},
		absent: func() { set(graphcheck.Risk{Level: graphcheck.RiskLevelNone, State: graphcheck.RiskStateNone}) },
	}, nil
}

// cachedRisk returns the risk read for key less than RiskTTL ago.
func (s *Source) cachedRisk(key string) (graphcheck.Risk, bool) {
	now := s.cfg.Now()
	r, ok := s.risks.Get(key, now) // stored until FetchedAt+RiskTTL
	return r, ok && !now.Before(r.FetchedAt)
}

// riskBucket is the name of the riskyUsers bucket in Config.TenantLimits.
const riskBucket = "riskyUsers"

// riskTurn waits, through Config.Sleep, until the tenant's riskyUsers
// limiter allows one more request, or fails at once when that wait does not
// fit before ctx's deadline. The limiter is Config.TenantLimits' bucket
// when it is set and answers, and otherwise this process's own, which runs
// on Config.Now, so a fake clock drives it in tests.
func (s *Source) riskTurn(ctx context.Context, tenant string) error {
	if tl := s.cfg.TenantLimits; tl != nil {
		if done, err := s.sharedRiskTurn(ctx, tl, tenant); done {
			return err
		}
	}

	s.mu.Lock()
	lim := s.limits[tenant]
	if lim == nil {
		lim = rate.NewLimiter(rate.Limit(s.cfg.RiskRequestsPerSecond), s.cfg.RiskBurst)
		s.limits[tenant] = lim
	}
	s.mu.Unlock()

	now := s.cfg.Now()
	r := lim.ReserveN(now, 1)
	if !r.OK() {
		return unavailable("%s: the riskyUsers limiter refuses every request (RiskBurst %d)", epRisk.request(), s.cfg.RiskBurst)
	}
	d := r.DelayFrom(now)
	if d <= 0 {
		return nil
	}
	if !fits(ctx, d) {
		r.CancelAt(now)
		return unavailable("%s: the riskyUsers rate limit (%g/s per tenant) allows no request before the deadline (next in %v)",
			epRisk.request(), s.cfg.RiskRequestsPerSecond, d)
	}
	if err := s.cfg.Sleep(ctx, d); err != nil {
		r.CancelAt(s.cfg.Now())
		return classifyErr(epRisk, err)
	}
	return nil
}

// sharedRiskTurn is riskTurn on tl's bucket, shared by every process: it
// asks tl for a turn until it gets one, sleeping the wait tl names each
// time, and fails as soon as a wait does not fit before ctx's deadline
// (counting the waits already slept, so that a Sleep that returns early
// cannot make it ask forever). done is false when tl failed: the caller
// then takes its turn from this process's limiter instead.
func (s *Source) sharedRiskTurn(ctx context.Context, tl graphcheck.TenantLimits, tenant string) (done bool, err error) {
	budget := time.Duration(math.MaxInt64)
	if dl, ok := ctx.Deadline(); ok {
		budget = time.Until(dl)
	}
	var slept time.Duration
	for {
		d, err := tl.Take(ctx, tenant, riskBucket, s.cfg.RiskRequestsPerSecond, s.cfg.RiskBurst)
		if err != nil {
			s.sharedFailed(ctx, "using this process's riskyUsers limiter", err)
			return false, nil
		}
		if d <= 0 {
			return true, nil
		}
		if !fits(ctx, d) || d+minAttempt > budget-slept {
			return true, unavailable("%s: the riskyUsers rate limit (%g/s per tenant, shared by every process) allows no request before the deadline (next in %v)",
				epRisk.request(), s.cfg.RiskRequestsPerSecond, d)
		}
		if err := s.cfg.Sleep(ctx, d); err != nil {
			return true, classifyErr(epRisk, err)
		}
		slept += d
	}
}

// storeRisk caches r under key unless a purge ran since the lookup that
// read it started (gen is the key's generation as that lookup read it
// first).
func (s *Source) storeRisk(key string, r graphcheck.Risk, gen uint64) {
	s.risks.StoreIf(gen, key, r, r.FetchedAt.Add(s.cfg.RiskTTL))
}

// Purge drops what the Source caches about one principal: its Identity
// Protection risk, so that the next Lookup asking for it reads it afresh
// (the tenant's groups-to-roles map is shared and kept). A risk that a
// Lookup running meanwhile read before the purge is not cached after it
// (nor, at worst, the risk of another user whose key shares its shard of
// the cache, read by a Lookup running at that moment, which costs that
// user one extra riskyUsers request). A
// middleware.Guard calls Purge from its own. IDs are compared in lower
// case; Purge is safe for concurrent use.
func (s *Source) Purge(tenantID, objectID string) {
	s.risks.Purge(graphcheck.Principal{TenantID: strings.ToLower(tenantID), ObjectID: strings.ToLower(objectID)}.Key())
}

// PurgeAll drops every cached risk and the tenants' groups-to-roles maps.
// Lookups and group-roles fetches running meanwhile store nothing they
// read before it, and Lookups starting after it do not join a group-roles
// fetch that started before it. It is safe for concurrent use.
func (s *Source) PurgeAll() {
	s.risks.PurgeAll()
	s.roles.PurgeAll()
}

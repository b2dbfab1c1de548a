package main

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/pimguard/pimguard/cmd/pimguard/internal/config"
	"github.com/pimguard/pimguard/forwardauth"
	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/graphcheck/breaker"
	"github.com/pimguard/pimguard/graphcheck/msgraph"
	"github.com/pimguard/pimguard/internal/prommetrics"
	"github.com/pimguard/pimguard/middleware"
	"github.com/pimguard/pimguard/redisstore"
)

// stack is what serve and proxy run: the Authenticator, the Graph source
// behind per-tenant breakers, the Guard (sharing state on Redis in fleet
// mode) and the forward-auth Server with the file's rules.
type stack struct {
	auth    *middleware.Authenticator
	source  *msgraph.Source
	guard   *middleware.Guard
	server  *forwardauth.Server
	fleet   *redisstore.Store // nil without fleet mode
	metrics *prommetrics.Metrics
}

// graphConfig is the file's Graph source configuration.
func graphConfig(f *config.File, logger *slog.Logger) msgraph.Config {
	return msgraph.Config{BaseURL: f.GraphURL, InsecureNoCredential: f.GraphAuth == "none", Logger: logger}
}

// newStack builds the stack of f. It makes no network call but fleet
// mode's first connection (not an error when Redis is unreachable: the
// replica then works alone until it is back); the signing keys are fetched
// in the background, and requests get 503 token_keys_unavailable until
// they are.
func newStack(ctx context.Context, f *config.File, logger *slog.Logger) (_ *stack, err error) {
	m, err := prommetrics.New()
	if err != nil {
		return nil, err
	}
	s := &stack{metrics: m}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	s.auth, err = middleware.NewAuthenticator(ctx, middleware.AuthenticatorConfig{
		Tenants: []string{f.Tenant}, Audiences: f.Audiences, Authority: f.Authority,
		DiscoverInBackground: true, ErrorWriter: forwardauth.WriteRejection,
		Logger: logger, MeterProvider: m.Provider,
	})
	if err != nil {
		return nil, err
	}
	gc := graphConfig(f, logger)
	gc.MeterProvider = m.Provider
	guard := middleware.GuardConfig{
		CacheTTL: f.CacheTTL, NegativeTTL: f.NegativeTTL, MaxStale: f.MaxStale, CacheSize: f.CacheSize,
		AccountChecks: f.AccountChecks, ClaimsPolicy: f.ClaimsPolicy,
		ErrorWriter: forwardauth.WriteRejection, Logger: logger, MeterProvider: m.Provider,
	}
	if f.RedisURL != "" {
		s.fleet, err = redisstore.New(redisstore.Config{URL: f.RedisURL, Key: f.SharedKey, Logger: logger, MeterProvider: m.Provider})
		if err != nil {
			return nil, err
		}
		guard.Shared, gc.TenantLimits = s.fleet, s.fleet
		logger.Info("pimguard: fleet mode on: the replicas share their Graph lookups, purges and Graph limits on Redis",
			"redis", redisstore.RedactURL(f.RedisURL), "connected", s.fleet.Connected())
	}
	if s.source, err = msgraph.New(gc); err != nil {
		return nil, err
	}
	var pim graphcheck.Source = s.source
	if f.GraphSource == "snapshot" {
		sc := snapshotConfig(f, &guard)
		if s.fleet != nil {
			sc.Store = s.fleet // one replica sweeps a tenant at a time; the others read its snapshot
		}
		if pim, err = msgraph.NewSnapshot(s.source, sc); err != nil {
			return nil, err
		}
		logger.Info("pimguard: snapshot mode: roles and groups come from a tenant-wide snapshot of PIM state",
			"sweep_interval", sc.SweepInterval.String(), "cache_ttl", guard.CacheTTL.String())
	}
	// During a Graph outage each tenant's lookups fail fast (503
	// pim_unavailable) once its breaker opens, and /readyz says so.
	guard.Source = breaker.New(pim, breaker.Config{Logger: logger, MeterProvider: m.Provider})
	if s.guard, err = middleware.NewGuard(guard); err != nil {
		return nil, err
	}
	s.server, err = forwardauth.New(forwardauth.Config{Rules: f.Rules, Authenticator: s.auth, Guard: s.guard,
		EnvoyPrefix: f.EnvoyPrefix, ErrorWriter: forwardauth.WriteRejection, Logger: logger, MeterProvider: m.Provider})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// snapshotConfig is the snapshot of graph.source: snapshot. A state built
// from a snapshot is cached like any other, so a deactivation can go
// unseen for the sweep interval plus the cache TTL: without
// graph.sweep-interval the two share cache.ttl (half each), keeping the
// promise cache.ttl makes in the default mode. It adjusts g's TTLs.
func snapshotConfig(f *config.File, g *middleware.GuardConfig) msgraph.SnapshotConfig {
	sweep := f.SweepInterval
	if sweep == 0 {
		ttl := cmp.Or(f.CacheTTL, middleware.DefaultStateTTL)
		sweep, g.CacheTTL = ttl/2, ttl/2
		g.NegativeTTL = min(cmp.Or(g.NegativeTTL, middleware.DefaultNegativeStateTTL), g.CacheTTL)
	}
	return msgraph.SnapshotConfig{SweepInterval: sweep, MaxStale: f.MaxStale}
}

// Close stops the Authenticator's background work and, in fleet mode,
// disconnects from Redis.
func (s *stack) Close() error {
	var errs []error
	if s.auth != nil {
		errs = append(errs, s.auth.Close())
	}
	if s.fleet != nil {
		errs = append(errs, s.fleet.Close())
	}
	if s.metrics != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		errs = append(errs, s.metrics.Provider.Shutdown(ctx))
	}
	return errors.Join(errs...)
}

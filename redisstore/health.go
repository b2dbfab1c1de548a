package redisstore

import (
	"time"

	"github.com/pimguard/pimguard/graphcheck"
)

var _ graphcheck.HealthReporter = (*Store)(nil)

// Health implements graphcheck.HealthReporter with one item, "shared",
// which is always ready: without Redis each replica decides alone, as
// correctly, only with more Graph lookups and with purges reaching only
// itself (see the package documentation). While Redis is unreachable, or
// after [Store.Close], the item is degraded and says the replica works
// local-only. Since is when reachability last changed (or when the Store
// was made, before its first PING), on [Config.Now]. middleware.Guard
// includes this report when the Store is its GuardConfig.Shared. Health
// reads two atomics and is safe for concurrent use.
func (s *Store) Health() []graphcheck.HealthCheck {
	c := graphcheck.HealthCheck{Name: "shared", Ready: true, Since: time.Unix(0, s.since.Load())}
	switch {
	case s.closed.Load():
		c.Degraded = true
		c.Detail = "the Redis store is closed: this replica works local-only (its own Graph lookups; purges reach only it)"
	case s.up.Load():
		c.Detail = "Redis reachable: the fleet shares lookups, limits and purges"
	default:
		c.Degraded = true
		c.Detail = "Redis unreachable: this replica works local-only (its own Graph lookups; purges reach only it) until a probe reaches Redis again"
	}
	return []graphcheck.HealthCheck{c}
}

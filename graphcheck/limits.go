package graphcheck

import (
	"context"
	"time"
)

// TenantLimits paces a tenant's Graph requests for every process that shares
// it: the replicas of one deployment. Graph throttles per application and
// tenant, not per process, so limits kept in each process let N replicas
// send N times what one may. A Source that rate-limits or backs off
// (graphcheck/msgraph) consults a TenantLimits when it is given one;
// redisstore implements it on Redis.
//
// Durations, not instants, cross the interface, so that processes whose
// clocks disagree (or run on a fake clock in tests) still agree on how long
// to wait. An error means the shared limits could not be reached: the caller
// then falls back to limits of its own, never to no limit. Implementations
// must be safe for concurrent use and bound every call.
type TenantLimits interface {
	// Take takes one request from the tenant's bucket called bucket (e.g.
	// "riskyUsers"), which refills at perSecond requests per second up to
	// burst, shared by every process. It returns 0 when the request may be
	// sent now, and otherwise how long to wait before calling Take again;
	// a request that must wait has not taken anything.
	Take(ctx context.Context, tenantID, bucket string, perSecond float64, burst int) (wait time.Duration, err error)
	// Pause records that Graph asked for the tenant's requests to stop for
	// d (a 429's Retry-After), for every process. A shorter pause never
	// cuts a longer one short.
	Pause(ctx context.Context, tenantID string, d time.Duration) error
	// Paused returns how long the tenant's requests must still wait: 0
	// when they need not.
	Paused(ctx context.Context, tenantID string) (time.Duration, error)
}

// Package redisstore makes a fleet of pimguard replicas act as one, on
// Redis: a [cache.Shared] tier for middleware.Guard's state cache
// (GuardConfig.Shared), a [graphcheck.TenantLimits] for
// graphcheck/msgraph (Config.TenantLimits), and a
// [graphcheck.SnapshotStore] for msgraph's snapshot mode
// (SnapshotConfig.Store: one replica sweeps a tenant at a time, under a
// lease, and the others read its sealed snapshot). It is a leaf package, the only
// one that imports a Redis client (github.com/redis/go-redis/v9), so that
// middleware and cache build without it.
//
// # What the fleet shares
//
//   - Principals' states. A replica that misses locally runs one script
//     that returns the shared entry or takes a short lease on it (SET NX
//     PX, renewed while the lookup runs); the lease holder looks up and
//     stores the entry, the others poll for it and use it. N replicas thus
//     make the Graph lookups of one. Entries expire at the expiry their
//     lookup computed (the cache TTL, or the end of the earliest
//     assignment), which every replica then also uses for its local copy.
//   - Invalidations. A purge deletes the entry and its lease (so a lookup
//     running anywhere does not store what it read before the purge) and
//     publishes the key on a channel every replica subscribes to; each
//     drops its local copy. PurgeAll moves the fleet to a new epoch, part
//     of every key, so old entries are unreachable at once.
//   - Limits. Take is a GCRA token bucket (go-redis/redis_rate, one Lua
//     script, on Redis's clock) per tenant; Pause records a 429's
//     Retry-After for the tenant with a Redis expiry, and Paused reads it.
//
// Requests that hit the local cache never touch Redis.
//
// # Integrity
//
// Every entry is sealed with HMAC-SHA-256 under [Config.Key], over the
// Redis key it is stored under and its bytes: an entry forged without the
// key, or copied from another principal's key, fails verification and is
// ignored (counted as pimguard.shared.rejected), never served. Invalidation
// messages, buckets and pauses are not authenticated: they grant nothing,
// and whoever can write to Redis can at worst make replicas look up more.
//
// # When Redis is unavailable
//
// Every call is bounded by [Config.Timeout]. A failed call marks Redis
// unreachable (one log line, pimguard.shared.connected 0,
// pimguard.shared.errors counted) and the replica carries on alone: a
// lookup goes to the Source, limits fall back to the caller's own. No
// request fails because of Redis. A probe every [Config.ProbeInterval]
// notices its return; the replica then drops its local copies, since it
// may have missed invalidations meanwhile, and logs once more.
//
// # Connecting
//
// [Config.URL] takes redis:// and rediss:// (TLS) URLs with an ACL user
// and password; [Config.Client] takes any go-redis client, for Sentinel
// (redis.NewFailoverClient) and Cluster (redis.NewClusterClient). An entry
// and its lease share a hash tag, so the scripts run on a Cluster.
package redisstore

// Package cache is a generic, size-bounded, short-TTL cache with coalesced
// loads, built for answers that must be fresh rather than merely fast.
//
// pimguard keeps each principal's live PIM state here, but the package knows
// nothing about PIM: a [Cache] maps string-like keys to values produced by a
// [LoadFunc], and callers read through it with [Cache.Get].
//
// # Freshness
//
// A value is fresh until the earliest of two instants: the load's start plus
// [Config.TTL], and the bound the loader returns in [Result.NotAfter]. The
// second exists because the loader often knows better than any TTL: a role
// assignment that ends at 10:32:00 must not be served from the cache at
// 10:32:00, whatever the TTL says. "Nothing found" answers ([Result.Negative])
// use the shorter [Config.NegativeTTL], so a role that was just activated is
// seen quickly. Expiry is checked when an entry is read; nothing sweeps the
// cache, so it starts no background goroutine and there is nothing to stop.
//
// # Loads
//
// A miss calls the loader through a [Flight] (golang.org/x/sync/singleflight
// with a detached, bounded context): any number
// of concurrent misses for one key make one load, and every caller gets its
// result ([Info.Shared] tells the ones that joined). The load runs on
// [context.WithoutCancel] of the first caller's context, bounded by
// [Config.LoadTimeout], so the first caller giving up does not fail everyone
// else; each caller still stops waiting as soon as its own context is done.
//
// Errors are never cached: the next Get loads again. By default a failed load
// fails the Get (fail closed). With [Config.MaxStale] set, a value that
// expired less than MaxStale ago is served instead, marked [Stale] in
// [Info.Source]; callers that serve stale data must re-check whatever
// validity the value carries itself (pimguard re-checks each assignment's end
// time), because the cache only knows the entry's lifetime.
//
// # Invalidation
//
// [Cache.Purge] and [Cache.PurgeAll] drop entries and also win over loads that
// were already running when they were called: such a load still answers the
// callers waiting for it, but its result is not stored, and callers arriving
// after the purge start a new load instead of joining the old one.
//
// # Several processes
//
// [NewShared] adds a [Shared] tier between the local store and the loader,
// for the replicas of one deployment (redisstore provides one on
// Redis): a local miss reads the tier, which runs one load for the whole
// fleet and keeps its result, encoded by a [Codec], until the expiry the
// loading process computed; every process then serves that value, from
// its own memory, until the same instant. [Cache.Purge] and
// [Cache.PurgeAll] also invalidate the tier, which tells every process to
// drop its copy. Hits never touch the tier. When the tier is down, each
// process loads on its own, as without it.
//
// # Performance
//
// A Cache is a [Store] of loaded values: a size-bounded LRU whose entries
// carry their own expiry, split into shards chosen by [hash/maphash], each a
// hashicorp/golang-lru/v2 simplelru LRU behind its own lock, so concurrent
// hits on different keys do not queue on one mutex. A hit takes only its
// shard's lock and allocates nothing. Counters are kept per shard and summed
// by [Cache.Stats]. [Store] and [Flight] are also usable on their own:
// pimguard's verified-token cache and the Graph source's risk and
// group-roles caches are built on them.
package cache

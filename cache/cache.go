package cache

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync/atomic"
	"time"
)

// Defaults applied by [New] to the zero fields of a [Config].
const (
	DefaultSize        = 10_000
	DefaultTTL         = 30 * time.Second
	DefaultNegativeTTL = 5 * time.Second
	DefaultLoadTimeout = 10 * time.Second
)

// Sentinel errors. Test for them with [errors.Is]; the wrapping error's text
// says which field or value was at fault.
var (
	// ErrInvalidConfig: [New] was given a negative size or duration, or no
	// loader.
	ErrInvalidConfig = errors.New("cache: invalid config")
	// ErrLoaderPanicked: the [LoadFunc] panicked. The panic is turned into an
	// error because a panic in a shared load cannot be recovered by any
	// caller and would take the whole process down.
	ErrLoaderPanicked = errors.New("cache: loader panicked")
)

// Config sets up a [Cache]. The zero value is valid: every zero field takes
// its default. Negative values are rejected by [New].
type Config struct {
	// Size is the maximum number of entries; 0 means [DefaultSize]. A cache
	// of at least 256 entries is split into 16 shards of Size/16 (rounded
	// up), each evicting its own least recently used entry, so eviction is
	// LRU per shard rather than globally.
	Size int
	// TTL is how long a loaded value stays fresh, counted from the start of
	// its load so that a slow load does not make the value older than TTL
	// when served; 0 means [DefaultTTL]. [Result.NotAfter] can only shorten
	// it.
	TTL time.Duration
	// NegativeTTL replaces TTL for results marked [Result.Negative]; 0 means
	// [DefaultNegativeTTL]. It is usually shorter than TTL so that "nothing
	// found" is re-checked soon.
	NegativeTTL time.Duration
	// MaxStale enables stale-if-error: when a load fails, a value that
	// expired less than MaxStale ago is returned with [Info.Source] set to
	// [Stale] instead of the error. 0 (the default) turns it off: a failed
	// load fails the Get. While it is on, expired entries are kept until
	// MaxStale past their expiry so that they can serve.
	MaxStale time.Duration
	// LoadTimeout bounds each load. The load's context does not inherit the
	// callers' cancellation (see [Cache.Get]), so this is what stops it; 0
	// means [DefaultLoadTimeout].
	LoadTimeout time.Duration
	// Now is the clock that decides freshness; nil means [time.Now]. Tests
	// set a settable clock here instead of sleeping. LoadTimeout always uses
	// real time.
	Now func() time.Time
}

// Result is what a [LoadFunc] returns for one key.
type Result[V any] struct {
	// Value is returned to callers of [Cache.Get] as is, and shared by all of
	// them: treat it as read-only.
	Value V
	// NotAfter, when non-zero, is the last instant the loader vouches for
	// Value (in pimguard, the earliest endDateTime among the assignments it
	// holds). The entry stops being fresh at NotAfter even if TTL has not
	// run out. A NotAfter at or before the end of the load is returned to
	// the callers of that load but never served as fresh from the cache.
	NotAfter time.Time
	// Negative marks a "nothing found" answer, kept for
	// [Config.NegativeTTL] instead of [Config.TTL].
	Negative bool
}

// LoadFunc produces the value for a key on a miss. Its context carries the
// values of the Get that started the load but not its cancellation, and
// times out after [Config.LoadTimeout]. Errors are returned unchanged to
// every caller waiting for the load and are never cached. A LoadFunc is
// called from several goroutines at once; for one key, only after a purge
// can a second call start while the first is still running.
type LoadFunc[K ~string, V any] func(ctx context.Context, key K) (Result[V], error)

// Source says where the value returned by [Cache.Get] came from.
type Source uint8

// The zero Source accompanies an error: no value was returned.
const (
	// Hit: a fresh value from the cache.
	Hit Source = iota + 1
	// Loaded: a value from a load this Get started or joined.
	Loaded
	// Stale: the load failed and an expired value within [Config.MaxStale]
	// was returned instead.
	Stale
	// FromShared: a value another process loaded, read from the [Shared]
	// tier by a Get that missed locally.
	FromShared
)

// String returns "hit", "loaded", "stale", "shared", or "none" for the zero
// Source.
func (s Source) String() string {
	switch s {
	case Hit:
		return "hit"
	case Loaded:
		return "loaded"
	case Stale:
		return "stale"
	case FromShared:
		return "shared"
	case 0:
		return "none"
	}
	return fmt.Sprintf("Source(%d)", uint8(s))
}

// Info describes the value returned by [Cache.Get], for metrics, logs and
// stale handling.
type Info struct {
	// Source tells a hit from a load or a stale value; zero with an error.
	Source Source
	// Expires is when the value stops (or, for Stale, stopped) being fresh.
	// It can be in the past for a Loaded value whose [Result.NotAfter] had
	// already passed.
	Expires time.Time
	// LoadTime is how long the load that produced the value took, also on a
	// hit, measured with [Config.Now].
	LoadTime time.Duration
	// Shared reports that this Get joined a load started by another Get
	// instead of starting its own.
	Shared bool
	// LoadErr, for a Stale value, is the load error the value stands in for.
	LoadErr error
}

// Stats are counters since [New]. Each is read atomically, but a Stats is
// not a consistent snapshot across counters while the cache is in use.
type Stats struct {
	Hits        uint64 // Gets answered with a fresh cached value
	Misses      uint64 // Gets that needed a load (started or joined)
	Loads       uint64 // calls to the LoadFunc
	LoadErrors  uint64 // loads that returned an error or panicked
	StaleServed uint64 // Gets answered with a Stale value
	Evictions   uint64 // entries dropped to make room (not purges)
	SharedHits  uint64 // loads answered by the Shared tier without calling the LoadFunc
}

// Cache is a size-bounded, short-TTL, read-through cache: a [Store] of
// loaded values with a [Flight] of loads, and optionally a [Shared] tier
// between the two. Create one with [New] or [NewShared]; a Cache is safe for
// concurrent use and needs no Close: it starts no goroutine except one per
// running load, which ends with the load.
type Cache[K ~string, V any] struct {
	store       *Store[K, *entry[V]]
	flight      Flight[*entry[V]]
	shared      Shared     // nil without a shared tier
	codec       Codec[V]   // set with shared
	counters    []counters // per shard of store
	load        LoadFunc[K, V]
	now         func() time.Time
	ttl         time.Duration
	negativeTTL time.Duration
	maxStale    time.Duration
	loadTimeout time.Duration
}

// counters are kept per shard, so that hits on different shards do not
// contend on one cache line.
type counters struct {
	hits, misses, loads, loadErrors, staleServed, sharedHits atomic.Uint64

	_ [64]byte // keep neighbouring shards' hot counters off this cache line
}

// entry is immutable once stored, so a hit can return its fields without
// further locking. Its Store expiry is staleUntil.
type entry[V any] struct {
	value      V
	expires    time.Time // fresh while now is before expires
	staleUntil time.Time // servable as Stale while now is before staleUntil
	loadTime   time.Duration
	fromShared bool // read from the Shared tier, loaded by another process
}

// New returns an empty cache that calls load on misses. It returns an error
// wrapping [ErrInvalidConfig] when load is nil or a field of cfg is negative.
func New[K ~string, V any](cfg Config, load LoadFunc[K, V]) (*Cache[K, V], error) {
	return NewShared(cfg, load, nil, nil)
}

// NewShared is [New] with a [Shared] tier: a local miss reads the tier
// before calling load, coalesced with the other processes sharing it, and
// stores what load returns there, encoded by codec, for the others. Purges
// go to the tier too ([Cache.Purge]), and the Cache drops its local copies
// of the keys the tier says were invalidated, for as long as shared lives
// (the subscription keeps the Cache reachable). A nil shared makes it [New];
// a shared without a codec is an error wrapping [ErrInvalidConfig].
func NewShared[K ~string, V any](cfg Config, load LoadFunc[K, V], shared Shared, codec Codec[V]) (*Cache[K, V], error) {
	if shared != nil && codec == nil {
		return nil, fmt.Errorf("%w: a Shared tier without a Codec", ErrInvalidConfig)
	}
	if load == nil {
		return nil, fmt.Errorf("%w: nil LoadFunc", ErrInvalidConfig)
	}
	if cfg.Size < 0 {
		return nil, fmt.Errorf("%w: Size is negative (%d)", ErrInvalidConfig, cfg.Size)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"TTL", cfg.TTL},
		{"NegativeTTL", cfg.NegativeTTL},
		{"MaxStale", cfg.MaxStale},
		{"LoadTimeout", cfg.LoadTimeout},
	} {
		if d.v < 0 {
			return nil, fmt.Errorf("%w: %s is negative (%v)", ErrInvalidConfig, d.name, d.v)
		}
	}
	store, err := NewStore[K, *entry[V]](cmp.Or(cfg.Size, DefaultSize))
	if err != nil {
		return nil, err
	}
	c := &Cache[K, V]{
		store:       store,
		counters:    make([]counters, len(store.shards)),
		load:        load,
		now:         cfg.Now,
		ttl:         cmp.Or(cfg.TTL, DefaultTTL),
		negativeTTL: cmp.Or(cfg.NegativeTTL, DefaultNegativeTTL),
		maxStale:    cfg.MaxStale,
		loadTimeout: cmp.Or(cfg.LoadTimeout, DefaultLoadTimeout),
	}
	if c.now == nil {
		c.now = time.Now
	}
	if shared != nil {
		c.shared, c.codec = shared, codec
		shared.Subscribe(c.invalidated)
	}
	return c, nil
}

// invalidated drops the local copies of keys another process (or this one)
// invalidated in the shared tier; nil keys mean all of them.
func (c *Cache[K, V]) invalidated(keys []string) {
	if keys == nil {
		c.store.PurgeAll()
		c.flight.ForgetAll()
		return
	}
	ks := make([]K, len(keys))
	for i, k := range keys {
		ks[i] = K(k)
	}
	c.purgeLocal(ks)
}

// Get returns the value for key: from the cache while it is fresh, otherwise
// from a load, started by this Get or joined if one is already running for
// key. Get is safe for concurrent use.
//
// A hit never blocks and ignores ctx. On a miss, Get returns ctx.Err() as
// soon as ctx is done (without starting a load if it already is); the load
// itself goes on for the other callers and for the cache, bounded by
// [Config.LoadTimeout]. A failed load returns the loader's error unchanged
// and a zero [Info], unless [Config.MaxStale] allows serving a stale value,
// in which case the error is nil and [Info.Source] is [Stale].
func (c *Cache[K, V]) Get(ctx context.Context, key K) (V, Info, error) {
	i := c.store.index(key)
	sh, n := &c.store.shards[i], &c.counters[i]
	now := c.now()
	if e, ok := sh.get(key, now); ok && now.Before(e.expires) {
		n.hits.Add(1)
		return e.value, Info{Source: Hit, Expires: e.expires, LoadTime: e.loadTime}, nil
	}
	n.misses.Add(1)
	return c.miss(ctx, sh, n, key)
}

func (c *Cache[K, V]) miss(ctx context.Context, sh *storeShard[K, *entry[V]], n *counters, key K) (V, Info, error) {
	var zero V
	// started is written by the load goroutine before it sends the result,
	// and read only after receiving it.
	started := false
	e, err := c.flight.Do(ctx, string(key), c.loadTimeout, func(lctx context.Context) (*entry[V], error) {
		// A load that finished between this Get's miss and now has stored
		// a fresh entry and left the flight: use it rather than load again.
		if e, _, ok := sh.peek(key); ok && c.now().Before(e.expires) {
			return e, nil
		}
		started = true
		return c.loadAndStore(lctx, sh, n, key)
	})
	if err == nil {
		src := Loaded
		if e.fromShared {
			src = FromShared
		}
		return e.value, Info{Source: src, Expires: e.expires, LoadTime: e.loadTime, Shared: !started}, nil
	}
	if cerr := ctx.Err(); cerr != nil && err == cerr {
		return zero, Info{}, err // this caller gave up; the load goes on
	}
	if v, info, ok := c.stale(sh, n, key); ok {
		info.Shared = !started
		if info.Source == Stale {
			info.LoadErr = err
		}
		return v, info, nil
	}
	return zero, Info{}, err
}

// loadAndStore runs in the flight's goroutine, once per coalesced load, on
// the detached context the flight bounds with LoadTimeout.
func (c *Cache[K, V]) loadAndStore(ctx context.Context, sh *storeShard[K, *entry[V]], n *counters, key K) (*entry[V], error) {
	gen := sh.gen.Load()
	var (
		e   *entry[V]
		err error
	)
	if c.shared != nil {
		e, err = c.fetchShared(ctx, n, key)
	} else {
		e, err = c.loadEntry(ctx, n, key)
	}
	if err != nil {
		return nil, err
	}
	end := c.now()
	e.staleUntil = e.expires.Add(c.maxStale)
	// An entry that is neither fresh nor servable as stale is useless; it
	// still replaces the previous one, which is older news.
	keep := end.Before(e.expires) || (c.maxStale > 0 && end.Before(e.staleUntil))

	sh.mu.Lock()
	defer sh.mu.Unlock()
	switch {
	case sh.gen.Load() != gen: // purged while loading: answer the waiters, store nothing
	case keep:
		sh.add(key, e, e.staleUntil)
	default:
		sh.lru.Remove(key)
	}
	return e, nil
}

// loadEntry calls the LoadFunc and makes its result an entry, fresh from
// the load's start for TTL (NegativeTTL) or until its NotAfter.
func (c *Cache[K, V]) loadEntry(ctx context.Context, n *counters, key K) (*entry[V], error) {
	n.loads.Add(1)
	start := c.now()
	res, err := c.callLoad(ctx, key)
	end := c.now()
	if err != nil {
		n.loadErrors.Add(1)
		return nil, err
	}
	ttl := c.ttl
	if res.Negative {
		ttl = c.negativeTTL
	}
	e := &entry[V]{value: res.Value, expires: start.Add(ttl), loadTime: end.Sub(start)}
	if !res.NotAfter.IsZero() && res.NotAfter.Before(e.expires) {
		e.expires = res.NotAfter
	}
	return e, nil
}

// fetchShared reads key from the shared tier, which calls loadEntry (here
// or in another process) when it holds no fresh entry. An entry that is
// expired on this Cache's clock, or that the codec cannot read (another
// version of the program wrote it), is loaded here instead, as if the tier
// were down.
func (c *Cache[K, V]) fetchShared(ctx context.Context, n *counters, key K) (*entry[V], error) {
	start := c.now()
	var loaded *entry[V]
	se, filled, err := c.shared.Fetch(ctx, string(key), func(ctx context.Context) (SharedEntry, error) {
		e, err := c.loadEntry(ctx, n, key)
		if err != nil {
			return SharedEntry{}, err
		}
		data, err := c.codec.Encode(e.value)
		if err != nil {
			return SharedEntry{}, fmt.Errorf("cache: encoding for the shared tier: %w", err)
		}
		loaded = e
		return SharedEntry{Data: data, Expires: e.expires}, nil
	})
	switch {
	case err != nil:
		return nil, err
	case filled && loaded != nil:
		return loaded, nil
	}
	if !c.now().Before(se.Expires) {
		// Expired on this Cache's clock (the writer's ran ahead): load.
		return c.loadEntry(ctx, n, key)
	}
	v, err := c.codec.Decode(se.Data)
	if err != nil {
		return c.loadEntry(ctx, n, key)
	}
	n.sharedHits.Add(1)
	return &entry[V]{value: v, expires: se.Expires, loadTime: c.now().Sub(start), fromShared: true}, nil
}

func (c *Cache[K, V]) callLoad(ctx context.Context, key K) (res Result[V], err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v\n\n%s", ErrLoaderPanicked, r, debug.Stack())
		}
	}()
	return c.load(ctx, key)
}

// stale returns the cached value for key if it can stand in for a failed
// load. It looks again rather than reusing what Get saw, so that a purge or a
// newer load made meanwhile is honoured.
func (c *Cache[K, V]) stale(sh *storeShard[K, *entry[V]], n *counters, key K) (V, Info, bool) {
	var zero V
	if c.maxStale == 0 {
		return zero, Info{}, false
	}
	e, _, ok := sh.peek(key)
	if !ok {
		return zero, Info{}, false
	}
	now := c.now()
	switch {
	case now.Before(e.expires): // another load refreshed it meanwhile
		return e.value, Info{Source: Hit, Expires: e.expires, LoadTime: e.loadTime}, true
	case now.Before(e.staleUntil):
		n.staleServed.Add(1)
		return e.value, Info{Source: Stale, Expires: e.expires, LoadTime: e.loadTime}, true
	}
	return zero, Info{}, false
}

// Purge removes keys. A load for one of them already running when Purge is
// called still answers the Gets waiting for it, but its result is not
// stored, and Gets that start after Purge returns do not join it. Loads of
// other keys in the same shards that are running at that moment are not
// stored either, which costs one extra load at worst. Purge is safe for
// concurrent use.
//
// With a [Shared] tier, Purge also invalidates keys there, for every
// process, in one call; the tier reports (and counts) a failure to reach
// it, and must not serve what it may still hold until it has replayed the
// invalidation.
func (c *Cache[K, V]) Purge(keys ...K) {
	c.purgeLocal(keys)
	if c.shared != nil && len(keys) > 0 {
		ks := make([]string, len(keys))
		for i, k := range keys {
			ks[i] = string(k)
		}
		_ = c.shared.Invalidate(context.Background(), ks...)
		// A Get between the local purge and the tier's may have read an
		// entry the tier was about to delete: purge again.
		c.purgeLocal(keys)
	}
}

func (c *Cache[K, V]) purgeLocal(keys []K) {
	for _, k := range keys {
		c.store.Purge(k)
		c.flight.Forget(string(k))
	}
}

// PurgeAll removes every entry and, like [Cache.Purge], keeps loads running
// when it is called from storing their results. It purges one shard at a
// time, so a concurrent Get may still see an entry of a shard not yet
// purged; once PurgeAll returns, none remains. PurgeAll is safe for
// concurrent use.
func (c *Cache[K, V]) PurgeAll() {
	c.store.PurgeAll()
	c.flight.ForgetAll()
	if c.shared != nil {
		_ = c.shared.InvalidateAll(context.Background())
		c.store.PurgeAll() // as in Purge
		c.flight.ForgetAll()
	}
}

// Len returns the number of entries, including expired ones that have not
// been evicted or replaced yet (expiry is checked on read, not swept).
func (c *Cache[K, V]) Len() int {
	return c.store.Len()
}

// Stats returns the counters summed over all shards. It is safe for
// concurrent use and does not block Gets.
func (c *Cache[K, V]) Stats() Stats {
	st := Stats{Evictions: c.store.Evictions()}
	for i := range c.counters {
		n := &c.counters[i]
		st.Hits += n.hits.Load()
		st.Misses += n.misses.Load()
		st.Loads += n.loads.Load()
		st.LoadErrors += n.loadErrors.Load()
		st.StaleServed += n.staleServed.Load()
		st.SharedHits += n.sharedHits.Load()
	}
	return st
}

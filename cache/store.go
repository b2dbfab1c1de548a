package cache

import (
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// maxShards is the number of independently locked LRUs of a large store.
// An LRU read writes (it reorders the list), so with one LRU every reader
// would queue on the same mutex.
const maxShards = 16

// minShardSize keeps per-shard LRU order meaningful: stores smaller than
// maxShards*minShardSize use one shard and so evict in exact LRU order.
const minShardSize = 16

// Store is a size-bounded LRU whose entries carry their own expiry: the
// core under [Cache] and pimguard's other caches. Create one with
// [NewStore]. It is split into shards chosen by [maphash.Comparable], each
// with its own lock, so a hit takes only its shard's lock and allocates
// nothing. Expiry is checked on read; nothing sweeps the store.
//
// Purges win over writers that started before them: a writer reads
// [Store.Generation] before it starts its work and stores its result with
// [Store.StoreIf], which stores nothing if the key's shard was purged
// meanwhile. A Store is safe for concurrent use.
type Store[K comparable, V any] struct {
	shards []storeShard[K, V]
	mask   uint64 // len(shards)-1; len(shards) is a power of two
	seed   maphash.Seed
}

type storeShard[K comparable, V any] struct {
	mu  sync.Mutex
	lru *simplelru.LRU[K, item[V]]
	// gen counts the purges of this shard. It is written under mu and
	// read without it by Generation.
	gen       atomic.Uint64
	evictions atomic.Uint64

	_ [64]byte // keep neighbouring shards' locks off this cache line
}

type item[V any] struct {
	value   V
	expires time.Time // returned by Get while now is before expires
}

// NewStore returns an empty store of at most size entries. A store of at
// least 256 entries is split into 16 shards of size/16 (rounded up), each
// evicting its own least recently used entry, so eviction is LRU per shard
// rather than globally. It returns an error wrapping [ErrInvalidConfig]
// when size is less than 1.
func NewStore[K comparable, V any](size int) (*Store[K, V], error) {
	if size < 1 {
		return nil, fmt.Errorf("%w: store size %d is less than 1", ErrInvalidConfig, size)
	}
	n := 1
	if size >= maxShards*minShardSize {
		n = maxShards
	}
	s := &Store[K, V]{shards: make([]storeShard[K, V], n), mask: uint64(n - 1), seed: maphash.MakeSeed()}
	for i := range s.shards {
		l, err := simplelru.NewLRU[K, item[V]]((size+n-1)/n, nil)
		if err != nil {
			return nil, fmt.Errorf("cache: %w", err)
		}
		s.shards[i].lru = l
	}
	return s, nil
}

func (s *Store[K, V]) index(key K) int {
	if s.mask == 0 {
		return 0
	}
	return int(maphash.Comparable(s.seed, key) & s.mask)
}

func (s *Store[K, V]) shard(key K) *storeShard[K, V] {
	return &s.shards[s.index(key)]
}

// Get returns key's value if it is present and now is before its expiry,
// and marks it recently used. An expired entry stays (and counts in
// [Store.Len]) until it is replaced, evicted or removed.
func (s *Store[K, V]) Get(key K, now time.Time) (V, bool) {
	return s.shard(key).get(key, now)
}

func (sh *storeShard[K, V]) get(key K, now time.Time) (V, bool) {
	sh.mu.Lock()
	it, ok := sh.lru.Get(key)
	sh.mu.Unlock()
	if !ok || !now.Before(it.expires) {
		var zero V
		return zero, false
	}
	return it.value, true
}

// Peek returns key's value and expiry, expired or not, without marking it
// recently used.
func (s *Store[K, V]) Peek(key K) (V, time.Time, bool) {
	return s.shard(key).peek(key)
}

func (sh *storeShard[K, V]) peek(key K) (V, time.Time, bool) {
	sh.mu.Lock()
	it, ok := sh.lru.Peek(key)
	sh.mu.Unlock()
	return it.value, it.expires, ok
}

// Add stores v under key until expires, evicting the shard's least recently
// used entry if it is full.
func (s *Store[K, V]) Add(key K, v V, expires time.Time) {
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.add(key, v, expires)
}

func (sh *storeShard[K, V]) add(key K, v V, expires time.Time) {
	if sh.lru.Add(key, item[V]{value: v, expires: expires}) {
		sh.evictions.Add(1)
	}
}

// Generation returns the purge count of key's shard, to be passed to
// [Store.StoreIf] by a writer before it starts the work whose result it
// will store.
func (s *Store[K, V]) Generation(key K) uint64 {
	return s.shard(key).gen.Load()
}

// StoreIf is [Store.Add] unless key's shard was purged ([Store.Purge],
// [Store.PurgeAll]) since gen was read with [Store.Generation]; it reports
// whether it stored v. A purge of another key of the same shard also
// counts, which costs that writer one extra load at worst.
func (s *Store[K, V]) StoreIf(gen uint64, key K, v V, expires time.Time) bool {
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.gen.Load() != gen {
		return false
	}
	sh.add(key, v, expires)
	return true
}

// Remove drops key and reports whether it was present. Unlike
// [Store.Purge], it does not stop writers already running from storing.
func (s *Store[K, V]) Remove(key K) bool {
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.lru.Remove(key)
}

// Purge drops key and makes [Store.StoreIf] refuse the writers of its
// shard that read their generation before the purge.
func (s *Store[K, V]) Purge(key K) {
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.gen.Add(1)
	sh.lru.Remove(key)
}

// PurgeAll is [Store.Purge] for every entry. It purges one shard at a
// time, so a concurrent Get may still see an entry of a shard not yet
// purged; once PurgeAll returns, none remains.
func (s *Store[K, V]) PurgeAll() {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		sh.gen.Add(1)
		sh.lru.Purge()
		sh.mu.Unlock()
	}
}

// RemoveFunc drops every entry for which drop returns true and returns how
// many it dropped. It scans the store one shard at a time, holding that
// shard's lock: drop must be quick and must not call the Store.
func (s *Store[K, V]) RemoveFunc(drop func(K, V) bool) int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for _, k := range sh.lru.Keys() {
			if it, ok := sh.lru.Peek(k); ok && drop(k, it.value) {
				sh.lru.Remove(k)
				n++
			}
		}
		sh.mu.Unlock()
	}
	return n
}

// Len returns the number of entries, expired ones not yet replaced,
// evicted or removed included.
func (s *Store[K, V]) Len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += sh.lru.Len()
		sh.mu.Unlock()
	}
	return n
}

// Evictions returns the number of entries dropped to make room since
// [NewStore] (not removals or purges).
func (s *Store[K, V]) Evictions() uint64 {
	var n uint64
	for i := range s.shards {
		n += s.shards[i].evictions.Load()
	}
	return n
}

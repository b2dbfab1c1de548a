package middleware

import (
	"cmp"
	"crypto/sha256"
	"time"

	"github.com/pimguard/pimguard/cache"
)

// DefaultTokenCacheSize is the default number of verified tokens kept.
const DefaultTokenCacheSize = 10_000

// tokenCache remembers verified tokens by the SHA-256 of their compact form,
// so a warm request costs one hash and one map lookup instead of an RSA
// verification and two JSON decodes. Entries hold the principal, the
// instant after which the token is expired, and the signing key, whose
// continued presence in the JWKS is checked on every hit. It is a typed
// view of a [cache.Store]; a nil *tokenCache caches nothing.
type tokenCache struct {
	store *cache.Store[[sha256.Size]byte, *tokenEntry]
}

type tokenEntry struct {
	principal *Principal
	notAfter  time.Time // exp + clock skew
	kid       string
	keys      *keySet
}

// newTokenCache returns a cache for size tokens (0 means
// [DefaultTokenCacheSize]), or nil (no caching) when size is negative.
func newTokenCache(size int) (*tokenCache, error) {
	if size < 0 {
		return nil, nil
	}
	s, err := cache.NewStore[[sha256.Size]byte, *tokenEntry](cmp.Or(size, DefaultTokenCacheSize))
	if err != nil {
		return nil, err
	}
	return &tokenCache{store: s}, nil
}

// tokenKey hashes the token without copying it ([stringBytes]): it saves
// a 1–4 KiB allocation per request.
func tokenKey(raw string) [sha256.Size]byte {
	return sha256.Sum256(stringBytes(raw))
}

// get returns the entry of a token verified before, unless it has expired
// at now (the entry then stays until it is replaced or evicted: see
// [tokenCache.expired]).
func (c *tokenCache) get(k [sha256.Size]byte, now time.Time) (*tokenEntry, bool) {
	if c == nil {
		return nil, false
	}
	return c.store.Get(k, now)
}

// expired returns the entry of a token verified before that has expired by
// now, so that presenting it again is refused without a second signature
// verification: clients retrying with a stale token are common, and each
// retry would otherwise cost an RSA check.
func (c *tokenCache) expired(k [sha256.Size]byte, now time.Time) (*tokenEntry, bool) {
	if c == nil {
		return nil, false
	}
	e, until, ok := c.store.Peek(k)
	return e, ok && !now.Before(until)
}

// add caches a verified token until its notAfter, inclusive, as the
// verification's own expiry check counts it: the store's expiry is the
// first instant at which the entry no longer serves.
func (c *tokenCache) add(k [sha256.Size]byte, e *tokenEntry) {
	if c != nil {
		c.store.Add(k, e, e.notAfter.Add(time.Nanosecond))
	}
}

func (c *tokenCache) remove(k [sha256.Size]byte) {
	if c != nil {
		c.store.Remove(k)
	}
}

func (c *tokenCache) len() int {
	if c == nil {
		return 0
	}
	return c.store.Len()
}

// purge drops every token.
func (c *tokenCache) purge() {
	if c != nil {
		c.store.PurgeAll()
	}
}

// removePrincipal drops every verified token of one principal and returns
// how many it dropped. It scans the cache: purges are rare, requests are not,
// so no per-principal index is kept on the hot path.
func (c *tokenCache) removePrincipal(tenantID, objectID string) int {
	if c == nil {
		return 0
	}
	return c.store.RemoveFunc(func(_ [sha256.Size]byte, e *tokenEntry) bool {
		return e.principal.TenantID == tenantID && e.principal.ObjectID == objectID
	})
}

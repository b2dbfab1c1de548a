package middleware

import (
	"crypto/sha256"
	"time"
	"unsafe"

	lru "github.com/hashicorp/golang-lru/v2"
)

// DefaultTokenCacheSize is the default number of verified tokens kept.
const DefaultTokenCacheSize = 10_000

// tokenCacheShards spreads the cache over independently locked LRUs, so that
// concurrent warm requests do not all queue on one mutex (an LRU Get writes).
const tokenCacheShards = 16

// tokenCache remembers verified tokens by the SHA-256 of their compact form,
// so a warm request costs one hash and one map lookup instead of an RSA
// verification and two JSON decodes. Entries hold the principal, the
// instant after which the token is expired, and the signing key, whose
// continued presence in the JWKS is checked on every hit.
type tokenCache struct {
	shards []*lru.Cache[[sha256.Size]byte, *tokenEntry]
}

type tokenEntry struct {
	principal *Principal
	notAfter  time.Time // exp + clock skew
	kid       string
	keys      *keySet
}

// newTokenCache returns a cache for size tokens, or nil (no caching) when
// size is negative.
func newTokenCache(size int) (*tokenCache, error) {
	if size < 0 {
		return nil, nil
	}
	if size == 0 {
		size = DefaultTokenCacheSize
	}
	n := tokenCacheShards
	if size < n {
		n = 1
	}
	c := &tokenCache{shards: make([]*lru.Cache[[sha256.Size]byte, *tokenEntry], n)}
	for i := range c.shards {
		s, err := lru.New[[sha256.Size]byte, *tokenEntry]((size + n - 1) / n)
		if err != nil {
			return nil, err
		}
		c.shards[i] = s
	}
	return c, nil
}

// tokenKey hashes the token without copying it: sha256.Sum256 neither keeps
// nor modifies its argument, so viewing the string's bytes is safe and saves
// a 1–4 KiB allocation per request.
func tokenKey(raw string) [sha256.Size]byte {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(raw), len(raw)))
}

func (c *tokenCache) shard(k *[sha256.Size]byte) *lru.Cache[[sha256.Size]byte, *tokenEntry] {
	return c.shards[int(k[0])%len(c.shards)]
}

func (c *tokenCache) get(k [sha256.Size]byte) (*tokenEntry, bool) {
	if c == nil {
		return nil, false
	}
	return c.shard(&k).Get(k)
}

func (c *tokenCache) add(k [sha256.Size]byte, e *tokenEntry) {
	if c != nil {
		c.shard(&k).Add(k, e)
	}
}

func (c *tokenCache) remove(k [sha256.Size]byte) {
	if c != nil {
		c.shard(&k).Remove(k)
	}
}

func (c *tokenCache) len() int {
	if c == nil {
		return 0
	}
	n := 0
	for _, s := range c.shards {
		n += s.Len()
	}
	return n
}

// purge drops every token.
func (c *tokenCache) purge() {
	if c == nil {
		return
	}
	for _, s := range c.shards {
		s.Purge()
	}
}

// removePrincipal drops every verified token of one principal and returns
// how many it dropped. It scans the cache: purges are rare, requests are not,
// so no per-principal index is kept on the hot path.
func (c *tokenCache) removePrincipal(tenantID, objectID string) int {
	if c == nil {
		return 0
	}
	n := 0
	for _, s := range c.shards {
		for _, k := range s.Keys() {
			if e, ok := s.Peek(k); ok && e.principal.TenantID == tenantID && e.principal.ObjectID == objectID {
				s.Remove(k)
				n++
			}
		}
	}
	return n
}

package middleware

import (
	"strings"

	"github.com/pimguard/pimguard/graphcheck"
)

// Purgers purges several caches at once, e.g. Purgers{auth, guard}, so
// that the next request of a principal is verified and looked up afresh:
// call it when you learn of a change (a PIM deactivation in the audit log,
// an incident) and do not want to wait for the TTLs. [Authenticator]
// (verified tokens) and [Guard] (live state, and the Source's own caches)
// are graphcheck.Purgers, and so is Purgers.
type Purgers []graphcheck.Purger

// Purge calls Purge on each element, in order.
func (ps Purgers) Purge(tenantID, objectID string) {
	for _, p := range ps {
		p.Purge(tenantID, objectID)
	}
}

// PurgeAll calls PurgeAll on each element, in order.
func (ps Purgers) PurgeAll() {
	for _, p := range ps {
		p.PurgeAll()
	}
}

var (
	_ graphcheck.Purger = (*Authenticator)(nil)
	_ graphcheck.Purger = (*Guard)(nil)
	_ graphcheck.Purger = Purgers(nil)
)

// Purge drops the verified tokens of one principal from the verified-token
// cache, so that its next request repeats the whole verification. IDs are
// compared in lower case. A verification running at that moment may still
// store its token, which is harmless: the cache holds only tokens that
// verified. Purge scans the cache and is safe for concurrent use.
func (a *Authenticator) Purge(tenantID, objectID string) {
	a.cache.removePrincipal(strings.ToLower(tenantID), strings.ToLower(objectID))
}

// PurgeAll empties the verified-token cache, so that every token is
// verified afresh on its next use (after a key compromise, say). It is safe
// for concurrent use.
func (a *Authenticator) PurgeAll() {
	a.cache.purge()
}

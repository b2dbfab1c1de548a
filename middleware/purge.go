package middleware

import "strings"

// Purger drops what it has cached about one principal. [Authenticator]
// (verified tokens) and [Guard] (live state) are Purgers.
type Purger interface {
	Purge(tenantID, objectID string)
}

// Purgers purges several caches at once, e.g. Purgers{auth, guard}, so
// that the next request of a principal is verified and looked up afresh:
// call it when you learn of a change (a PIM deactivation in the audit log,
// an incident) and do not want to wait for the TTLs.
type Purgers []Purger

// Purge calls Purge on each element, in order.
func (ps Purgers) Purge(tenantID, objectID string) {
	for _, p := range ps {
		p.Purge(tenantID, objectID)
	}
}

var (
	_ Purger = (*Authenticator)(nil)
	_ Purger = (*Guard)(nil)
	_ Purger = Purgers(nil)
)

// Purge drops the verified tokens of one principal from the verified-token
// cache, so that its next request repeats the whole verification. IDs are
// compared in lower case. A verification running at that moment may still
// store its token, which is harmless: the cache holds only tokens that
// verified. Purge scans the cache
// and is safe for concurrent use.
func (a *Authenticator) Purge(tenantID, objectID string) {
	a.cache.removePrincipal(strings.ToLower(tenantID), strings.ToLower(objectID))
}

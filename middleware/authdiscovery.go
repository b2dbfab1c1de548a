package middleware

import (
	"context"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

var _ io.Closer = (*Authenticator)(nil)

// issuerTable is the accepted issuers of the tenants discovered so far. It
// is immutable: a completed discovery installs a new table, so that the
// verification reads it with one atomic load and no lock.
type issuerTable struct {
	byIss     map[string]*issuer
	templates []issuerTemplate
}

// issuer is one accepted iss value with its tenant and key set.
type issuer struct {
	iss    string
	tenant string
	keys   *keySet
}

// issuerTemplate is an issuer with its tenant ID cut out, to recognise tokens
// from other tenants of the same cloud.
type issuerTemplate struct{ prefix, suffix string }

// tenantKeys is one configured tenant's discovery: its key sets once its
// discovery documents and keys were fetched, and what the last failed
// attempt said until then.
type tenantKeys struct {
	id    string
	since time.Time // when the Authenticator was created

	sets     atomic.Pointer[[]*keySet] // nil until discovered
	attempts atomic.Int64              // failed attempts so far
	failure  atomic.Pointer[fetchFailure]
}

// discovered reports whether the tenant's issuers and keys are installed.
func (t *tenantKeys) discovered() bool { return t.sets.Load() != nil }

// fetchFailure is a failed discovery or key-set fetch, for readiness: when,
// and its class in a few fixed words ([fetchClass]), never its text.
type fetchFailure struct {
	at    time.Time
	class string
}

// discoverTenant fetches t's v2 and v1 discovery documents and, for each
// jwks_uri not fetched before, its key set, then installs t's issuers. On
// failure it records the failure for Health and installs nothing: a tenant
// is either fully discovered or not at all.
func (a *Authenticator) discoverTenant(ctx context.Context, t *tenantKeys) error {
	var sets []*keySet
	var issuers []*issuer
	for _, path := range []string{"/v2.0/.well-known/openid-configuration", "/.well-known/openid-configuration"} {
		doc, err := a.discover(ctx, t.id, a.cfg.Authority+"/"+t.id+path)
		if err != nil {
			return a.discoveryFailed(t, err)
		}
		ks := a.keySetFor(doc.JWKSURL)
		if ks.snap.Load() == nil {
			if err := ks.fetch(ctx); err != nil {
				return a.discoveryFailed(t, fmt.Errorf("middleware: tenant %s: %w", t.id, err))
			}
		}
		if !slices.Contains(sets, ks) {
			sets = append(sets, ks)
		}
		issuers = append(issuers, &issuer{iss: doc.IssuerURL, tenant: t.id, keys: ks})
	}
	a.install(t, sets, issuers)
	return nil
}

func (a *Authenticator) discoveryFailed(t *tenantKeys, err error) error {
	t.attempts.Add(1)
	t.failure.Store(&fetchFailure{at: a.cfg.Now(), class: fetchClass(err)})
	return err
}

// keySetFor returns the key set of a jwks_uri, shared by the tenants and
// issuers that name it.
func (a *Authenticator) keySetFor(uri string) *keySet {
	a.mu.Lock()
	defer a.mu.Unlock()
	ks := a.keySets[uri]
	if ks == nil {
		ks = a.newKeySet(uri)
		a.keySets[uri] = ks
	}
	return ks
}

// allKeySets returns the key sets created so far.
func (a *Authenticator) allKeySets() []*keySet {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Collect(maps.Values(a.keySets))
}

// install publishes a discovered tenant: a new issuer table with its
// issuers, then its key sets (which Health reads).
func (a *Authenticator) install(t *tenantKeys, sets []*keySet, issuers []*issuer) {
	a.mu.Lock()
	defer a.mu.Unlock()
	old := a.issuers.Load()
	tab := &issuerTable{byIss: maps.Clone(old.byIss), templates: slices.Clone(old.templates)}
	for _, is := range issuers {
		tab.byIss[is.iss] = is
		l := strings.ToLower(is.iss)
		i := strings.Index(l, t.id)
		tab.templates = append(tab.templates, issuerTemplate{prefix: l[:i], suffix: l[i+len(t.id):]})
	}
	a.issuers.Store(tab)
	t.sets.Store(&sets)
	t.failure.Store(nil)
}

// discoverInBackground runs rounds of discovery of the tenants not yet
// discovered until all are, or until Close. A failed round is retried
// after [Authenticator.retryDelay].
func (a *Authenticator) discoverInBackground(ctx context.Context) {
	for round := 0; ; round++ {
		pending := 0
		for _, t := range a.tenants {
			if t.discovered() {
				continue
			}
			if err := a.discoverTenant(ctx, t); err != nil {
				if ctx.Err() != nil {
					return // Close
				}
				pending++
				a.cfg.Logger.WarnContext(ctx, "pimguard: background discovery failed; requests for this tenant get 503 until it succeeds",
					"tenant", t.id, "attempts", t.attempts.Load(), "err", err)
				continue
			}
			if n := t.attempts.Load(); n > 0 {
				a.cfg.Logger.InfoContext(ctx, "pimguard: background discovery succeeded", "tenant", t.id, "failed_attempts", n)
			}
		}
		if pending == 0 {
			return
		}
		timer := time.NewTimer(a.retryDelay(round))
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
	}
}

// retryDelay is the delay after the failed round number round (0 for the
// first): DiscoveryRetryMin doubled round times, capped at
// DiscoveryRetryMax, then a random point in its upper half ("equal
// jitter": never less than half the backoff, so that the load on Entra
// stays bounded, and spread so that replicas restarted together drift
// apart).
func (a *Authenticator) retryDelay(round int) time.Duration {
	d, limit := a.cfg.DiscoveryRetryMin, a.cfg.DiscoveryRetryMax
	for i := 0; i < round && d < limit; i++ {
		if d > limit/2 {
			d = limit
			break
		}
		d *= 2
	}
	d = min(d, limit)
	half := d / 2
	return d - half + rand.N(half+1)
}

// Close stops the Authenticator's background work and waits for it to
// return: the background discovery of [AuthenticatorConfig.DiscoverInBackground]
// (a fetch in progress is cancelled) and the refreshes of aged key sets
// ([AuthenticatorConfig.JWKSMaxAge]) running in the background; neither
// starts again afterwards. It does not stop the Authenticator: requests are
// still verified with the keys it holds (tenants not discovered by then
// keep getting 503 token_keys_unavailable), and a token whose kid is
// unknown still refetches its key set for its own request, within
// HTTPTimeout. Call it when the server shuts down, and in tests. Close is
// idempotent, safe for concurrent use, and returns nil; it implements
// [io.Closer].
func (a *Authenticator) Close() error {
	a.closing.Store(true)
	if a.cancel != nil {
		a.cancel()
	}
	a.bg.Wait()
	for _, ks := range a.allKeySets() {
		ks.closed.Store(true)
		ks.background.Wait()
	}
	return nil
}

// closed reports whether Close was called.
func (a *Authenticator) closed() bool { return a.closing.Load() }

package middleware

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
)

var _ graphcheck.HealthReporter = (*Authenticator)(nil)

// Health implements graphcheck.HealthReporter: one "keys/<tenant>" item per
// configured tenant, in the order of [AuthenticatorConfig.Tenants].
//
//   - Ready once the tenant's discovery documents and key sets were
//     fetched (always, after a strict [NewAuthenticator]): Detail gives the
//     number of signing keys (distinct key IDs) and key sets and their
//     ages, Since is the last successful fetch. (A key set is refreshed when
//     a token needs it: the set of v1 tokens ages while only v2 tokens
//     arrive.) It is Degraded while the last refresh of
//     one of its key sets failed (the keys fetched before keep verifying),
//     naming the failure's class.
//   - Not ready while the tenant's discovery has not succeeded
//     ([AuthenticatorConfig.DiscoverInBackground]): its tokens get 503
//     token_keys_unavailable. Detail gives the number of failed attempts
//     and the class of the last failure (e.g. "timed out", "HTTP 503",
//     "unreachable"), never its text; Since is when the Authenticator was
//     created.
//
// Health reads what fetches recorded and makes no network call. It is safe
// for concurrent use.
func (a *Authenticator) Health() []graphcheck.HealthCheck {
	now := a.cfg.Now()
	out := make([]graphcheck.HealthCheck, 0, len(a.tenants))
	for _, t := range a.tenants {
		out = append(out, a.tenantHealth(t, now))
	}
	return out
}

func (a *Authenticator) tenantHealth(t *tenantKeys, now time.Time) graphcheck.HealthCheck {
	c := graphcheck.HealthCheck{Name: "keys/" + t.id}
	sets := t.sets.Load()
	if sets == nil {
		c.Since = t.since
		f, n := t.failure.Load(), t.attempts.Load()
		switch {
		case f == nil:
			c.Detail = "discovery of the tenant's issuers and signing keys is in progress; its tokens get 503 token_keys_unavailable"
		case a.closed():
			c.Detail = fmt.Sprintf("discovery stopped (Authenticator closed) after %d failed attempts, the last %s at %s; its tokens get 503 token_keys_unavailable",
				n, f.class, f.at.UTC().Format(time.RFC3339))
		default:
			c.Detail = fmt.Sprintf("signing keys not fetched yet: %d failed attempts, the last %s at %s, retrying; its tokens get 503 token_keys_unavailable",
				n, f.class, f.at.UTC().Format(time.RFC3339))
		}
		return c
	}
	c.Ready = true
	kids := map[string]bool{}
	var oldest time.Time
	var failed *fetchFailure
	for _, ks := range *sets {
		s := ks.snap.Load()
		for kid := range s.keys {
			kids[kid] = true
		}
		if s.fetched.After(c.Since) {
			c.Since = s.fetched
		}
		if oldest.IsZero() || s.fetched.Before(oldest) {
			oldest = s.fetched
		}
		if f := ks.failure.Load(); f != nil && (failed == nil || f.at.After(failed.at)) {
			failed = f
		}
	}
	c.Detail = fmt.Sprintf("%d signing %s in %d key %s, last fetched %s ago", len(kids), plural(len(kids), "key", "keys"),
		len(*sets), plural(len(*sets), "set", "sets"), now.Sub(c.Since).Round(time.Second))
	if len(*sets) > 1 {
		c.Detail += fmt.Sprintf(" (the oldest %s ago)", now.Sub(oldest).Round(time.Second))
	}
	if failed != nil {
		c.Degraded = true
		c.Detail += fmt.Sprintf("; the last refresh failed (%s) at %s: the keys fetched before keep verifying",
			failed.class, failed.at.UTC().Format(time.RFC3339))
	}
	return c
}

// fetchClass names what went wrong with a discovery or key-set fetch in a
// few fixed words, for Health: the error's text names URLs and is for logs.
func fetchClass(err error) string {
	if se, ok := errors.AsType[*httpStatusError](err); ok {
		return "HTTP " + strconv.Itoa(se.status)
	}
	switch fetchOutcome(err) {
	case outcomeTimeout:
		return "timed out"
	case outcomeCanceled:
		return "canceled"
	case outcomeInvalid:
		if errors.Is(err, errNoUsableKeys) {
			return "no usable signing keys"
		}
		return "invalid document"
	}
	return "unreachable"
}

// Outcomes of fetches, the outcome attribute of pimguard.auth.key_fetches.
const (
	outcomeSuccess     = "success"
	outcomeTimeout     = "timeout"
	outcomeUnreachable = "unreachable"
	outcomeHTTPError   = "http_error"
	outcomeInvalid     = "invalid"
	outcomeCanceled    = "canceled"
)

// fetchOutcomes lists every outcome, for the metrics' attribute sets.
var fetchOutcomes = []string{outcomeSuccess, outcomeTimeout, outcomeUnreachable, outcomeHTTPError, outcomeInvalid, outcomeCanceled}

// fetchOutcome classifies the result of a fetch: a status other than 200,
// a document that does not decode or check (or holds no usable key), a
// timeout, a cancellation (Close), or, for any other error, unreachable
// (refused or dropped connections, DNS, TLS).
func fetchOutcome(err error) string {
	var ne net.Error
	switch {
	case err == nil:
		return outcomeSuccess
	case errors.Is(err, errInvalidDocument), errors.Is(err, errNoUsableKeys):
		return outcomeInvalid
	case errors.As(err, new(*httpStatusError)):
		return outcomeHTTPError
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return outcomeTimeout
	case errors.Is(err, context.Canceled):
		return outcomeCanceled
	}
	return outcomeUnreachable
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

package middleware

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"weak"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// The Authenticator's instruments share the Guard's instrumentation scope
// (meterName) and conventions: counters whose attribute sets are built
// once, so that counting allocates nothing, and the cache's counters read
// by one callback at collection time.

// Attribute keys of pimguard.auth.key_fetches (and attrCode, shared with
// pimguard.decisions, for pimguard.auth.rejections).
const (
	attrDocument     = "document"
	attrFetchOutcome = "outcome"
)

// fetchDoc is what a fetch downloaded: a discovery document or a key set.
type fetchDoc string

const (
	docDiscovery fetchDoc = "discovery"
	docJWKS      fetchDoc = "jwks"
)

// tokenStatShards is how many counter pairs the verified-token cache's hits
// and misses are spread over, by the first byte of the token's SHA-256, so
// that requests with different tokens do not contend on one cache line.
const tokenStatShards = 16

// tokenStats counts one shard's verified-token cache hits (answered from the
// cache: accepted, or refused as expired, without a signature check) and
// misses (verified afresh).
type tokenStats struct {
	hits, misses atomic.Uint64

	_ [64]byte // keep neighbouring shards' counters off this cache line
}

// authMetrics are an Authenticator's synchronous instruments; the cache's
// are asynchronous and live only in their callback. The zero value counts
// nothing.
type authMetrics struct {
	rejections metric.Int64Counter
	fetches    metric.Int64Counter
}

type fetchKey struct {
	doc     fetchDoc
	outcome string
}

// rejectionCodeOpts and fetchOpts are the measurement options of every
// count an Authenticator makes, built once (see decisionOpts).
var (
	rejectionCodeOpts = func() map[string][]metric.AddOption {
		m := make(map[string][]metric.AddOption, len(rejectionKinds)+1)
		m[CodeInternal] = codeOptions(CodeInternal)
		for _, k := range rejectionKinds {
			m[k.code] = codeOptions(k.code)
		}
		return m
	}()
	fetchOpts = func() map[fetchKey][]metric.AddOption {
		m := map[fetchKey][]metric.AddOption{}
		for _, d := range []fetchDoc{docDiscovery, docJWKS} {
			for _, o := range fetchOutcomes {
				m[fetchKey{d, o}] = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(
					attribute.String(attrDocument, string(d)), attribute.String(attrFetchOutcome, o)))}
			}
		}
		return m
	}()
)

func codeOptions(code string) []metric.AddOption {
	return []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(attribute.String(attrCode, code)))}
}

// rejected counts one rejection with the given code.
func (m authMetrics) rejected(ctx context.Context, code string) {
	if m.rejections == nil {
		return
	}
	opts, ok := rejectionCodeOpts[code]
	if !ok {
		opts = codeOptions(code) // a code this package does not know of: allocates
	}
	m.rejections.Add(ctx, 1, opts...)
}

// fetched counts one fetch of doc that ended with err (nil: success).
func (m authMetrics) fetched(ctx context.Context, doc fetchDoc, err error) {
	if m.fetches == nil {
		return
	}
	m.fetches.Add(ctx, 1, fetchOpts[fetchKey{doc, fetchOutcome(err)}]...)
}

// newAuthMetrics creates an Authenticator's instruments on mp and registers
// the callback that observes its verified-token cache. The callback holds
// a weakly, and is unregistered once a is garbage collected (as a Guard's).
func newAuthMetrics(mp metric.MeterProvider, a *Authenticator) (authMetrics, error) {
	m := mp.Meter(meterName)
	var am authMetrics
	var err error
	if am.rejections, err = m.Int64Counter("pimguard.auth.rejections", metric.WithUnit("{request}"),
		metric.WithDescription("Requests the Authenticator refused, by rejection code.")); err != nil {
		return authMetrics{}, authInstrumentError("pimguard.auth.rejections", err)
	}
	if am.fetches, err = m.Int64Counter("pimguard.auth.key_fetches", metric.WithUnit("{fetch}"),
		metric.WithDescription("Fetches of OpenID discovery documents and JWKS key sets, by document (discovery, jwks) and outcome (success, timeout, unreachable, http_error, invalid, canceled).")); err != nil {
		return authMetrics{}, authInstrumentError("pimguard.auth.key_fetches", err)
	}
	hits, err := m.Int64ObservableCounter("pimguard.auth.token_cache.hits", metric.WithUnit("{request}"),
		metric.WithDescription("Tokens answered from the verified-token cache, without a signature check."))
	if err != nil {
		return authMetrics{}, authInstrumentError("pimguard.auth.token_cache.hits", err)
	}
	misses, err := m.Int64ObservableCounter("pimguard.auth.token_cache.misses", metric.WithUnit("{request}"),
		metric.WithDescription("Tokens verified afresh (signature checked): first seen, evicted, or cache disabled."))
	if err != nil {
		return authMetrics{}, authInstrumentError("pimguard.auth.token_cache.misses", err)
	}
	size, err := m.Int64ObservableGauge("pimguard.auth.token_cache.size", metric.WithUnit("{token}"),
		metric.WithDescription("Verified tokens held by the verified-token cache, expired ones not yet replaced included."))
	if err != nil {
		return authMetrics{}, authInstrumentError("pimguard.auth.token_cache.size", err)
	}
	wa := weak.Make(a)
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		live := wa.Value()
		if live == nil {
			return nil // the Authenticator is gone; its cleanup unregisters this callback
		}
		var h, ms uint64
		for i := range live.stats {
			h += live.stats[i].hits.Load()
			ms += live.stats[i].misses.Load()
		}
		o.ObserveInt64(hits, clampInt64(h))
		o.ObserveInt64(misses, clampInt64(ms))
		o.ObserveInt64(size, int64(live.cache.len()))
		return nil
	}, hits, misses, size)
	if err != nil {
		return authMetrics{}, fmt.Errorf("middleware: AuthenticatorConfig.MeterProvider: registering the cache callback: %w", err)
	}
	runtime.AddCleanup(a, func(r metric.Registration) { _ = r.Unregister() }, reg)
	return am, nil
}

func authInstrumentError(name string, err error) error {
	return meterError("AuthenticatorConfig", name, err)
}

package middleware

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"weak"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/pimguard/pimguard/cache"
)

// meterName is the instrumentation scope of a Guard's instruments.
const meterName = "github.com/pimguard/pimguard/middleware"

// Attribute keys of pimguard.decisions.
const (
	attrOutcome = "outcome"
	attrCode    = "code"
)

// guardMetrics are a Guard's synchronous instruments. The cache instruments
// are asynchronous and live only in their registered callback.
type guardMetrics struct {
	decisions metric.Int64Counter
}

// decisionKey is an outcome ("allow", "deny", "error") and a rejection code
// ("" for allow).
type decisionKey struct{ outcome, code string }

// allowOpts and decisionOpts are the measurement options of every decision
// a Guard can make, built once so that recording one allocates nothing: a
// []metric.AddOption passed on with ... is not copied, where a single
// option would be boxed into a new slice on every call.
var (
	allowOpts    = decisionOptions(decisionKey{outcome: "allow"})
	decisionOpts = func() map[decisionKey][]metric.AddOption {
		codes := []string{CodeInternal}
		for _, k := range rejectionKinds {
			codes = append(codes, k.code)
		}
		m := make(map[decisionKey][]metric.AddOption, 2*len(codes)+1)
		m[decisionKey{outcome: "allow"}] = allowOpts
		for _, c := range codes {
			for _, o := range []string{"deny", "error"} {
				k := decisionKey{outcome: o, code: c}
				m[k] = decisionOptions(k)
			}
		}
		return m
	}()
)

func decisionOptions(k decisionKey) []metric.AddOption {
	return []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(
		attribute.String(attrOutcome, k.outcome), attribute.String(attrCode, k.code)))}
}

// decided counts one decision.
func (m *guardMetrics) decided(ctx context.Context, d *decision) {
	opts := allowOpts
	if d.rej != nil || d.outcome != "allow" {
		var k decisionKey
		k.outcome = d.outcome
		if d.rej != nil {
			k.code = d.rej.Code
		}
		var ok bool
		if opts, ok = decisionOpts[k]; !ok {
			opts = decisionOptions(k) // a code this file does not know of: allocates
		}
	}
	m.decisions.Add(ctx, 1, opts...)
}

// newGuardMetrics creates a Guard's instruments on mp and registers the one
// callback that observes c. The callback holds c weakly, and is unregistered
// once owner (the Guard holding c) is garbage collected, so that a Guard
// needs no Close and a dropped Guard is not kept alive by the provider (the
// global provider keeps every callback until a real provider is installed).
func newGuardMetrics(mp metric.MeterProvider, c *cache.Cache[string, *lookupResult], owner *Guard) (guardMetrics, error) {
	m := mp.Meter(meterName)
	var gm guardMetrics
	var err error
	gm.decisions, err = m.Int64Counter("pimguard.decisions", metric.WithUnit("{decision}"),
		metric.WithDescription("Authorization decisions of the Guard, by outcome (allow, deny, error) and rejection code (empty for allow)."))
	if err != nil {
		return gm, instrumentError("pimguard.decisions", err)
	}

	counters := []struct {
		name, unit, desc string
		read             func(cache.Stats) uint64
	}{
		{"pimguard.cache.hits", "{request}", "Requests answered from a fresh cached live state.", func(s cache.Stats) uint64 { return s.Hits }},
		{"pimguard.cache.misses", "{request}", "Requests that needed a Source lookup (started or joined).", func(s cache.Stats) uint64 { return s.Misses }},
		{"pimguard.cache.loads", "{lookup}", "Source lookups started by the state cache (coalesced per principal).", func(s cache.Stats) uint64 { return s.Loads }},
		{"pimguard.cache.load_errors", "{lookup}", "Source lookups that failed.", func(s cache.Stats) uint64 { return s.LoadErrors }},
		{"pimguard.cache.stale_served", "{request}", "Requests decided on an expired state because its refresh failed (GuardConfig.MaxStale).", func(s cache.Stats) uint64 { return s.StaleServed }},
		{"pimguard.cache.evictions", "{entry}", "States evicted to make room (not purges).", func(s cache.Stats) uint64 { return s.Evictions }},
		{"pimguard.cache.shared_hits", "{lookup}", "Misses answered by the shared tier (GuardConfig.Shared) with a state another replica looked up.", func(s cache.Stats) uint64 { return s.SharedHits }},
	}
	insts := make([]metric.Int64Observable, len(counters))
	for i, ct := range counters {
		if insts[i], err = m.Int64ObservableCounter(ct.name, metric.WithUnit(ct.unit), metric.WithDescription(ct.desc)); err != nil {
			return gm, instrumentError(ct.name, err)
		}
	}
	size, err := m.Int64ObservableGauge("pimguard.cache.size", metric.WithUnit("{entry}"),
		metric.WithDescription("Principals' states held by the state cache, expired ones not yet replaced included."))
	if err != nil {
		return gm, instrumentError("pimguard.cache.size", err)
	}

	wc := weak.Make(c)
	observables := make([]metric.Observable, 0, len(insts)+1)
	for _, in := range insts {
		observables = append(observables, in)
	}
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		live := wc.Value()
		if live == nil {
			return nil // the Guard is gone; its cleanup unregisters this callback
		}
		st := live.Stats()
		for i, ct := range counters {
			o.ObserveInt64(insts[i], clampInt64(ct.read(st)))
		}
		o.ObserveInt64(size, int64(live.Len()))
		return nil
	}, append(observables, size)...)
	if err != nil {
		return gm, fmt.Errorf("middleware: GuardConfig.MeterProvider: registering the cache callback: %w", err)
	}
	runtime.AddCleanup(owner, func(r metric.Registration) { _ = r.Unregister() }, reg)
	return gm, nil
}

func instrumentError(name string, err error) error {
	return meterError("GuardConfig", name, err)
}

// meterError is the error of a MeterProvider (of the config named) that
// refused to create instrument name.
func meterError(config, name string, err error) error {
	return fmt.Errorf("middleware: %s.MeterProvider: creating instrument %s: %w", config, name, err)
}

func clampInt64(v uint64) int64 {
	if v > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(v)
}

package breaker

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"time"
	"weak"

	"github.com/sony/gobreaker/v2"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

const meterName = "github.com/pimguard/pimguard/graphcheck/breaker"

// stateOpts are the attribute sets of the three states, made once.
var stateOpts = func() map[gobreaker.State]metric.MeasurementOption {
	m := map[gobreaker.State]metric.MeasurementOption{}
	for _, st := range []gobreaker.State{gobreaker.StateClosed, gobreaker.StateHalfOpen, gobreaker.StateOpen} {
		m[st] = metric.WithAttributeSet(attribute.NewSet(attribute.String("state", st.String())))
	}
	return m
}()

// initMetrics creates the instruments and registers the callback that
// counts the tenants per state. The callback holds s weakly and is
// unregistered once s is garbage collected, so that a Source needs no
// Close.
func (s *Source) initMetrics() error {
	m := s.cfg.MeterProvider.Meter(meterName)
	var err error
	if s.transitions, err = m.Int64Counter("pimguard.breaker.transitions", metric.WithUnit("{transition}"),
		metric.WithDescription("State changes of the per-tenant circuit breakers around the Graph source, by the state entered (open, half-open, closed).")); err != nil {
		return fmt.Errorf("breaker: Config.MeterProvider: creating pimguard.breaker.transitions: %w", err)
	}
	if s.rejected, err = m.Int64Counter("pimguard.breaker.rejected", metric.WithUnit("{lookup}"),
		metric.WithDescription("Lookups failed fast, without calling the Source, because their tenant's breaker was open or probing.")); err != nil {
		return fmt.Errorf("breaker: Config.MeterProvider: creating pimguard.breaker.rejected: %w", err)
	}
	tenants, err := m.Int64ObservableGauge("pimguard.breaker.tenants", metric.WithUnit("{tenant}"),
		metric.WithDescription("Tenants whose circuit breaker is in each state (closed, half-open, open)."))
	if err != nil {
		return fmt.Errorf("breaker: Config.MeterProvider: creating pimguard.breaker.tenants: %w", err)
	}
	ws := weak.Make(s)
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		live := ws.Value()
		if live == nil {
			return nil // the Source is gone; its cleanup unregisters this callback
		}
		var n [3]int64
		for _, t := range live.allTenants() { // counts need no order
			if st := t.cb.State(); st >= 0 && int(st) < len(n) {
				n[st]++
			}
		}
		for st, opt := range stateOpts {
			o.ObserveInt64(tenants, n[st], opt)
		}
		return nil
	}, tenants)
	if err != nil {
		return fmt.Errorf("breaker: Config.MeterProvider: registering the tenants callback: %w", err)
	}
	runtime.AddCleanup(s, func(r metric.Registration) { _ = r.Unregister() }, reg)
	return nil
}

// changed is every breaker's OnStateChange, called with the breaker's lock
// held: it records the change, counts it and logs it, and calls nothing
// that could come back to the breaker.
func (s *Source) changed(t *tenant, from, to gobreaker.State) {
	now := time.Now()
	t.gen.Add(1)
	t.since.Store(now.UnixNano())
	if to == gobreaker.StateOpen {
		t.openedAt.Store(now.UnixNano())
	}
	s.transitions.Add(context.Background(), 1, stateOpts[to])
	log := s.cfg.Logger
	switch {
	case to == gobreaker.StateOpen && from == gobreaker.StateHalfOpen:
		log.LogAttrs(context.Background(), slog.LevelWarn, "breaker: the probe found Graph still down; lookups fail fast for another cool-down",
			slog.String("tenant", t.id), slog.Time("until", now.Add(t.cooldown)))
	case to == gobreaker.StateOpen:
		log.LogAttrs(context.Background(), slog.LevelWarn, "breaker: Graph outage; lookups for the tenant fail fast (503 pim_unavailable) until the cool-down ends",
			slog.String("tenant", t.id), slog.Uint64("failures", uint64(t.trip.Load())), slog.Int("principals", int(t.distinct.Load())),
			slog.Time("until", now.Add(t.cooldown)))
	case to == gobreaker.StateHalfOpen:
		log.LogAttrs(context.Background(), slog.LevelInfo, "breaker: cool-down over; the next lookup probes Graph",
			slog.String("tenant", t.id))
	case to == gobreaker.StateClosed:
		log.LogAttrs(context.Background(), slog.LevelInfo, "breaker: Graph answered the probe; lookups go to Graph again",
			slog.String("tenant", t.id), slog.Duration("failed_fast_for", now.Sub(time.Unix(0, t.openedAt.Load()))))
	}
}

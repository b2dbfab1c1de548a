package msgraph

import (
	"context"
	"fmt"
	"runtime"
	"weak"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// A Snapshot's metrics, on its Source's Config.MeterProvider:
//
//   - pimguard.snapshot.sweeps: sweeps finished, by outcome ("ok" or the
//     failure's class, as pimguard.graph.errors) and source ("graph": swept
//     here; "shared": read from the fleet's store);
//   - pimguard.snapshot.age: seconds since each tenant's current snapshot
//     started its sweep, by tenant_id: what a deactivation may still be
//     hidden behind, and the alarm when sweeps keep failing;
//   - pimguard.snapshot.assignments: active role and PIM-for-Groups
//     assignment instances in each tenant's current snapshot.
//
// The gauges are observed in one callback at collection time, unregistered
// when the Snapshot is garbage collected.
func (sn *Snapshot) initMetrics() error {
	m := sn.src.tel.meter
	var err error
	if sn.sweeps, err = m.Int64Counter("pimguard.snapshot.sweeps", metric.WithUnit("{sweep}"),
		metric.WithDescription("Tenant snapshot sweeps finished, by outcome (ok or the failure's class) and source (graph, or shared: read from the fleet's store).")); err != nil {
		return instrumentError("pimguard.snapshot.sweeps", err)
	}
	age, err := m.Int64ObservableGauge("pimguard.snapshot.age", metric.WithUnit("s"),
		metric.WithDescription("Seconds since each tenant's current snapshot started its sweep."))
	if err != nil {
		return instrumentError("pimguard.snapshot.age", err)
	}
	size, err := m.Int64ObservableGauge("pimguard.snapshot.assignments", metric.WithUnit("{assignment}"),
		metric.WithDescription("Active role and PIM-for-Groups assignment instances in each tenant's current snapshot."))
	if err != nil {
		return instrumentError("pimguard.snapshot.assignments", err)
	}
	ws := weak.Make(sn)
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		live := ws.Value()
		if live == nil {
			return nil // the Snapshot is gone; its cleanup unregisters this callback
		}
		now := live.src.cfg.Now()
		live.mu.Lock()
		defer live.mu.Unlock()
		for tenant, snap := range live.current {
			opt := metric.WithAttributes(attribute.String("tenant_id", tenant))
			o.ObserveInt64(age, int64(now.Sub(snap.fetchedAt).Seconds()), opt)
			o.ObserveInt64(size, int64(snap.roleInstances+snap.groupInstances), opt)
		}
		return nil
	}, age, size)
	if err != nil {
		return fmt.Errorf("%w: MeterProvider: registering the snapshot callback: %v", ErrInvalidConfig, err)
	}
	runtime.AddCleanup(sn, func(r metric.Registration) { _ = r.Unregister() }, reg)
	return nil
}

// countSweep counts a finished sweep of source ("graph" or "shared").
func (sn *Snapshot) countSweep(ctx context.Context, source string, err error) {
	outcome := "ok"
	if err != nil {
		outcome = errorClass(err)
	}
	sn.sweeps.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", outcome), attribute.String("source", source)))
}

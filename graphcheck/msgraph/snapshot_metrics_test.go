package msgraph_test

import (
	"context"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/graphcheck/msgraph"
	"github.com/pimguard/pimguard/internal/metrictest"
)

// A Snapshot counts its sweeps by outcome and reports each tenant's
// snapshot age and size, so that an operator sees sweeps failing and the
// snapshot ageing before requests get 503.
func TestSnapshotMetrics(t *testing.T) {
	e, reader, _ := telemetryEnv(t)
	seedSnapshotTenant(t, e)
	sn := newSnapshot(t, e, msgraph.SnapshotConfig{SweepInterval: 30 * time.Second, MaxStale: time.Minute})
	ctx := context.Background()
	if _, err := sn.Lookup(ctx, user(alice)); err != nil {
		t.Fatal(err)
	}
	tenant := "tenant_id=" + graphtest.TenantID
	info, _ := sn.Info(graphtest.TenantID)
	got := metrictest.Collect(t, reader)
	if n := got["pimguard.snapshot.sweeps"].Points["outcome=ok,source=graph"]; n != 1 {
		t.Errorf("sweeps ok: %d, want 1 (%v)", n, got["pimguard.snapshot.sweeps"])
	}
	if n := got["pimguard.snapshot.assignments"].Points[tenant]; n == 0 || n != int64(info.RoleInstances+info.GroupInstances) {
		t.Errorf("assignments %d, want %d (%+v)", n, info.RoleInstances+info.GroupInstances, info)
	}
	if n, ok := got["pimguard.snapshot.age"].Points[tenant]; !ok || n != 0 {
		t.Errorf("age %d (%v), want 0 right after the sweep", n, ok)
	}

	e.clock.Advance(45 * time.Second)
	remove := e.srv.InjectGraphFault(inside("/roleManagement/"), graphtest.DeniedFault())
	defer remove()
	if _, err := sn.Lookup(ctx, user(alice)); err != nil {
		t.Fatalf("within MaxStale: %v", err)
	}
	got = metrictest.Collect(t, reader)
	if n := got["pimguard.snapshot.sweeps"].Points["outcome=permission,source=graph"]; n == 0 {
		t.Errorf("no failed sweep counted: %v", got["pimguard.snapshot.sweeps"])
	}
	if n := got["pimguard.snapshot.age"].Points[tenant]; n != 45 {
		t.Errorf("age %d s while sweeps fail, want 45", n)
	}
}

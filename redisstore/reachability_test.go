package redisstore_test

import (
	"context"
	"log/slog"
	"net/http"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/pimguard/pimguard/internal/logtest"
	"github.com/pimguard/pimguard/internal/metrictest"
	"github.com/pimguard/pimguard/redisstore"
)

// Losing and regaining Redis under load is one log line each way, counted
// errors, and a connection gauge that follows; a forged entry is counted.
func TestReachabilityIsReportedOncePerTransition(t *testing.T) {
	logs := &logtest.Recorder{}
	reader := sdkmetric.NewManualReader()
	f := newFleet(t, 1, fleetOptions{storeConfig: func(c *redisstore.Config) {
		c.Logger = slog.New(logs)
		c.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	}})
	f.waitConnected(t)
	r := f.replicas[0]
	connected := func() int64 { return metrictest.Collect(t, reader)["pimguard.shared.connected"].Points[""] }
	if connected() != 1 {
		t.Fatal("pimguard.shared.connected is not 1 while connected")
	}

	// A forged entry: counted, never served.
	rc := rawClient(t, f)
	if err := rc.Set(context.Background(), entryKey(userID), "forged", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	f.src.active.Store(false)
	if c := r.do(); c != http.StatusForbidden {
		t.Fatalf("status %d with a forged entry in Redis", c)
	}
	if n := metrictest.Collect(t, reader)["pimguard.shared.rejected"].Total(); n != 1 {
		t.Fatalf("pimguard.shared.rejected = %d, want 1", n)
	}

	f.redis.Kill()
	for i := range 50 { // cold requests and purges while Redis is down
		r.doAs(oid(i))
		r.guard.Purge(tenantID, oid(i))
	}
	if r.store.Connected() || connected() != 0 {
		t.Fatal("still reported connected with Redis killed")
	}
	if n := metrictest.Collect(t, reader)["pimguard.shared.errors"].Total(); n == 0 {
		t.Fatal("pimguard.shared.errors counted nothing while Redis was down")
	}
	f.redis.Restart()
	f.waitConnected(t)
	for i := range 50 {
		r.doAs(oid(100 + i))
	}
	if down, up := logs.Count("WARN redisstore: Redis unreachable"), logs.Count("INFO redisstore: Redis reachable"); down != 1 || up < 1 {
		t.Fatalf("%d 'unreachable' and %d 'reachable' log lines; want 1 and at least 1: %q", down, up, logs.All())
	}
	if connected() != 1 {
		t.Fatal("pimguard.shared.connected is not 1 after reconnecting")
	}
}

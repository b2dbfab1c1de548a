package redisstore_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/middleware"
)

// The "shared" item is ready whether Redis is up or not, degraded while it
// is down or the Store closed, with Since at each transition; the Guard
// includes it, and readiness stays 200 with Redis down.
func TestStoreHealth(t *testing.T) {
	clk := &fakeClock{now: time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)}
	f := newFleet(t, 1, fleetOptions{now: clk.Now})
	r := f.replicas[0]
	made := clk.Now() // New PINGs Redis before it returns
	f.waitConnected(t)
	shared := func() graphcheck.HealthCheck {
		t.Helper()
		items := r.store.Health()
		if len(items) != 1 || items[0].Name != "shared" {
			t.Fatalf("items %+v", items)
		}
		return items[0]
	}
	if c := shared(); !c.Ready || c.Degraded || !strings.Contains(c.Detail, "Redis reachable") || !c.Since.Equal(made) {
		t.Fatalf("connected: %+v", c)
	}
	ready := middleware.ReadyHandler(r.guard)
	status := func() int {
		rec := httptest.NewRecorder()
		ready.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return rec.Code
	}

	clk.Advance(time.Minute)
	down := clk.Now()
	f.redis.Kill()
	deadline := time.Now().Add(10 * time.Second)
	for r.store.Connected() { // the probe (every 50 ms) notices
		if time.Now().After(deadline) {
			t.Fatal("still connected 10s after Redis was killed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	c := shared()
	if !c.Ready || !c.Degraded || !strings.Contains(c.Detail, "local-only") || !c.Since.Equal(down) {
		t.Fatalf("Redis down: %+v, want ready, degraded, local-only, since %v", c, down)
	}
	var inGuard bool
	for _, g := range r.guard.Health() {
		inGuard = inGuard || g == c
	}
	if !inGuard {
		t.Errorf("the Guard's report %+v lacks the shared item", r.guard.Health())
	}
	if code := status(); code != http.StatusOK {
		t.Errorf("readiness with Redis down: %d, want 200", code)
	}

	clk.Advance(time.Minute)
	up := clk.Now()
	f.redis.Restart()
	f.waitConnected(t)
	if c := shared(); !c.Ready || c.Degraded || !c.Since.Equal(up) {
		t.Fatalf("Redis back: %+v, since want %v", c, up)
	}

	clk.Advance(time.Minute)
	if err := r.store.Close(); err != nil {
		t.Fatal(err)
	}
	if c := shared(); !c.Ready || !c.Degraded || !strings.Contains(c.Detail, "closed") || !c.Since.Equal(clk.Now()) {
		t.Fatalf("closed: %+v", c)
	}
}

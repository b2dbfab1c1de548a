package msgraph_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/graphcheck/msgraph"
	"github.com/pimguard/pimguard/internal/redistest"
	"github.com/pimguard/pimguard/redisstore"
)

// The riskyUsers figure of README.md's "Running several replicas", on a
// real Redis and in real time (the shared bucket runs on Redis's clock):
//
//	go test -run TestFleetRiskyUsersOnRedis -v ./graphcheck/msgraph/
//
// Five replicas, each a Source with a redisstore.Store of its own on one
// redis-server, look up users' risk as fast as they can for 3 s; the fake
// tenant counts the riskyUsers requests it receives.
func TestFleetRiskyUsersOnRedis(t *testing.T) {
	const (
		replicas = 5
		rate     = 4.0 // riskyUsers requests per second per tenant
		burst    = 1
		span     = 3 * time.Second
	)
	srv := redistest.Start(t)
	e := newEnv(t, graphtest.Options{}, func(_ *stack, c *msgraph.Config) {
		c.RiskRequestsPerSecond, c.RiskBurst = rate, burst
		c.Sleep = nil // real waits: the bucket is on Redis's clock
	})
	var srcs []*msgraph.Source
	for range replicas {
		st, err := redisstore.New(redisstore.Config{URL: srv.URL(), Key: []byte("pimguard-test-fleet-key-32-bytes"), Logger: e.logger})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		if !st.Connected() {
			t.Fatal("a replica's Store did not reach Redis")
		}
		srcs = append(srcs, e.newSource(t, func(c *msgraph.Config) { c.TenantLimits = st }))
	}
	users := []string{alice, bob, carol, dave, erin, frank}
	before := e.subRequests("/identityProtection/")
	start := time.Now()
	var wg sync.WaitGroup
	for i, src := range srcs {
		wg.Go(func() {
			for n := 0; time.Since(start) < span; n++ {
				oid := users[(i+n)%len(users)]
				if _, err := src.Lookup(context.Background(), need(user(oid), graphcheck.NeedRisk)); err != nil {
					t.Errorf("replica %d, %s: %v", i, oid, err)
					return
				}
				src.Purge(graphtest.TenantID, oid) // the next lookup reads risk again
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	n := e.subRequests("/identityProtection/") - before
	allowed := burst + int(elapsed.Seconds()*rate)
	t.Logf("%d replicas on one Redis: %d riskyUsers requests in %v (%.2f/s; configured %g/s per tenant, burst %d: at most %d)",
		replicas, n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), rate, burst, allowed)
	if n > allowed {
		t.Errorf("%d riskyUsers requests, more than the %d the tenant's shared bucket allows", n, allowed)
	}
}

package redisstore_test

import (
	"net/http"
	"sync"
	"testing"
	"time"
)

func TestFleetColdRequestsMakeOneLookup(t *testing.T) {
	f := newFleet(t, 3, fleetOptions{})
	f.waitConnected(t)
	f.src.delay.Store(int64(50 * time.Millisecond)) // let the misses overlap
	var wg sync.WaitGroup
	codes := make([]int, 100)
	for i := range codes {
		wg.Go(func() { codes[i] = f.replicas[i%3].do() })
	}
	wg.Wait()
	for i, c := range codes {
		if c != http.StatusOK {
			t.Fatalf("request %d: status %d", i, c)
		}
	}
	if n := f.src.lookups.Load(); n != 1 {
		t.Errorf("100 cold requests over 3 replicas made %d Source lookups, want 1", n)
	}
}

func TestFleetPurgeReachesEveryReplica(t *testing.T) {
	f := newFleet(t, 3, fleetOptions{})
	f.waitConnected(t)
	for _, r := range f.replicas {
		if c := r.do(); c != http.StatusOK {
			t.Fatalf("warm-up: %d", c)
		}
	}
	f.src.active.Store(false) // the role was deactivated early
	for i, r := range f.replicas {
		if c := r.do(); c != http.StatusOK {
			t.Fatalf("replica %d answered %d before the purge; its cached state should still allow", i, c)
		}
	}
	f.replicas[0].guard.Purge(tenantID, userID)
	deadline := time.Now().Add(5 * time.Second)
	for i, r := range f.replicas {
		for r.do() != http.StatusForbidden {
			if time.Now().After(deadline) {
				t.Fatalf("replica %d still allows 5s after a purge on replica 0", i)
			}
			time.Sleep(time.Millisecond)
		}
	}
}

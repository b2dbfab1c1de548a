package msgraph_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/graphcheck/msgraph"
	"github.com/pimguard/pimguard/internal/redistest"
	"github.com/pimguard/pimguard/redisstore"
)

// snapshotReplicas returns n Snapshots, each over a Source and a
// redisstore.Store of its own, all on one redis-server and one fake
// tenant: the replicas of a fleet in snapshot mode.
func snapshotReplicas(t *testing.T, e *stack, srv *redistest.Server, n int) []*msgraph.Snapshot {
	t.Helper()
	var out []*msgraph.Snapshot
	for range n {
		st, err := redisstore.New(redisstore.Config{URL: srv.URL(), Key: []byte("pimguard-test-fleet-key-32-bytes"), Logger: e.logger, Now: e.clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		if !st.Connected() {
			t.Fatal("a replica's Store did not reach Redis")
		}
		sn, err := msgraph.NewSnapshot(e.newSource(t, nil), msgraph.SnapshotConfig{SweepInterval: 30 * time.Second, RefreshAhead: msgraph.NoRefreshAhead, Store: st})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, sn)
	}
	return out
}

// sweeps counts the sweeps Graph served: each reads the unfiltered role
// listing once.
func sweeps(e *stack) int {
	return e.countRequests(func(r graphtest.Request) bool {
		return r.BatchID != "" && r.Path == "/v1.0/roleManagement/directory/roleAssignmentScheduleInstances" && r.Query != "" &&
			!strings.Contains(r.Query, "principalId eq")
	})
}

// In fleet mode one replica sweeps a tenant at a time and the others read
// its snapshot from Redis: three replicas looking up cold principals at
// once cost one sweep, a later Lookup on another replica none; the next
// sweep, after SweepInterval, is again one for the fleet.
func TestSnapshotFleetSweepsOnce(t *testing.T) {
	srv := redistest.Start(t)
	e := newEnv(t, graphtest.Options{}, nil)
	seedSnapshotTenant(t, e)
	replicas := snapshotReplicas(t, e, srv, 3)
	lookupEverywhere := func() []*graphcheck.State {
		t.Helper()
		states := make([]*graphcheck.State, len(replicas))
		var wg sync.WaitGroup
		for i, sn := range replicas {
			wg.Go(func() {
				st, err := sn.Lookup(context.Background(), user(carol))
				if err != nil {
					t.Errorf("replica %d: %v", i, err)
				}
				states[i] = st
			})
		}
		wg.Wait()
		return states
	}

	e.srv.ResetRequests()
	states := lookupEverywhere()
	if n := sweeps(e); n != 1 {
		t.Errorf("3 replicas, cold: %d sweeps, want 1", n)
	}
	for i, st := range states[1:] {
		if st == nil || states[0] == nil || !sameAssignments(st, states[0], nil) || len(st.Roles) != 1 {
			t.Errorf("replica %d: %+v, replica 0: %+v; want the same state, carol's role through admins", i+1, st, states[0])
		}
	}
	e.srv.ResetRequests()
	lookupEverywhere()
	if n := len(e.srv.Requests()); n != 0 {
		t.Errorf("warm: %d Graph requests, want 0", n)
	}

	// carol leaves admins; the next sweep, by whichever replica, shows it
	// on every replica.
	must(t, e.srv.RemoveGroupAssignment(admins, carol, graphtest.AccessMember))
	e.clock.Advance(30 * time.Second)
	e.srv.ResetRequests()
	states = lookupEverywhere()
	if n := sweeps(e); n != 1 {
		t.Errorf("3 replicas after SweepInterval: %d sweeps, want 1", n)
	}
	for i, st := range states {
		if st != nil && len(st.Roles) != 0 {
			t.Errorf("replica %d after the sweep: %+v; want no role", i, st.Roles)
		}
	}
}

// A snapshot in Redis that fails verification is never used: the replica
// sweeps itself. With Redis gone, each replica sweeps alone.
func TestSnapshotFleetNeverTrustsRedis(t *testing.T) {
	srv := redistest.Start(t)
	e := newEnv(t, graphtest.Options{}, nil)
	seedSnapshotTenant(t, e)
	r := snapshotReplicas(t, e, srv, 2)
	a, b := r[0], r[1]
	ctx := context.Background()
	if _, err := a.Lookup(ctx, user(alice)); err != nil {
		t.Fatal(err)
	}

	// Someone with write access to Redis, without the fleet key, swaps
	// in another tenant's bytes and garbage.
	raw := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer raw.Close()
	key := "pimguard:v1:snapshot:{" + graphtest.TenantID + "}:0"
	sealed, err := raw.Get(ctx, key).Bytes()
	if err != nil {
		t.Fatalf("no shared snapshot at %s: %v", key, err)
	}
	tampered := append([]byte(nil), sealed...)
	tampered[len(tampered)/2] ^= 0xff
	must(t, raw.Set(ctx, key, tampered, time.Minute).Err())
	e.srv.ResetRequests()
	if _, err := b.Lookup(ctx, user(alice)); err != nil {
		t.Fatal(err)
	}
	if n := sweeps(e); n != 1 {
		t.Errorf("a tampered snapshot in Redis: %d sweeps by the reader, want 1 (its own)", n)
	}

	srv.Kill()
	e.clock.Advance(30 * time.Second)
	e.srv.ResetRequests()
	for _, sn := range []*msgraph.Snapshot{a, b} {
		if st, err := sn.Lookup(ctx, user(alice)); err != nil || len(st.Roles) != 1 {
			t.Errorf("Redis down: %+v, %v; want the replica to sweep alone", st, err)
		}
	}
	if n := sweeps(e); n != 2 {
		t.Errorf("Redis down: %d sweeps, want one per replica", n)
	}
}

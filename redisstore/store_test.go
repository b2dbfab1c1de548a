package redisstore_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pimguard/pimguard/cache"
	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/internal/redistest"
	"github.com/pimguard/pimguard/redisstore"
)

func TestNewRefusesBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  redisstore.Config
		want string
	}{
		{"no server", redisstore.Config{Key: testKey}, "exactly one of URL and Client"},
		{"both", redisstore.Config{URL: "redis://127.0.0.1:1/0", Client: redis.NewClient(&redis.Options{}), Key: testKey}, "exactly one of URL and Client"},
		{"no key", redisstore.Config{URL: "redis://127.0.0.1:1/0"}, "Config.Key has 0 bytes"},
		{"short key", redisstore.Config{URL: "redis://127.0.0.1:1/0", Key: testKey[:31]}, "Config.Key has 31 bytes"},
		{"short previous key", redisstore.Config{URL: "redis://127.0.0.1:1/0", Key: testKey, PreviousKeys: [][]byte{[]byte("short")}}, "PreviousKeys[0]"},
		{"bad URL", redisstore.Config{URL: "http://127.0.0.1/", Key: testKey}, "Config.URL"},
		{"negative timeout", redisstore.Config{URL: "redis://127.0.0.1:1/0", Key: testKey, Timeout: -1}, "Config.Timeout is negative"},
		{"negative lease", redisstore.Config{URL: "redis://127.0.0.1:1/0", Key: testKey, LeaseTTL: -1}, "Config.LeaseTTL is negative"},
		{"prefix with a brace", redisstore.Config{URL: "redis://127.0.0.1:1/0", Key: testKey, Prefix: "a{b"}, "Config.Prefix"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := redisstore.New(tc.cfg)
			if err == nil {
				s.Close()
				t.Fatal("New accepted the config")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

// rawClient is a plain client to the fleet's Redis: what an attacker with
// write access to Redis, but not the fleet key, can do.
func rawClient(t *testing.T, f *fleet) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: f.redis.Addr()})
	t.Cleanup(func() { c.Close() })
	return c
}

func entryKey(oid string) string {
	return "pimguard:v1:entry:{" + graphcheck.Principal{TenantID: tenantID, ObjectID: oid}.LookupKey() + "}:0"
}

func TestWritingToRedisGrantsNothing(t *testing.T) {
	const other = "33333333-3333-4333-8333-333333333333"
	f := newFleet(t, 2, fleetOptions{})
	f.waitConnected(t)
	rc := rawClient(t, f)
	ctx := context.Background()

	// The user holds the role; their entry is in Redis, signed.
	if c := f.replicas[0].do(); c != http.StatusOK {
		t.Fatalf("warm-up: %d", c)
	}
	signed, err := rc.Get(ctx, entryKey(userID)).Bytes()
	if err != nil {
		t.Fatalf("the entry is not in Redis under %s: %v", entryKey(userID), err)
	}
	f.src.active.Store(false) // from now on Graph says: no role, for anyone

	forged := []byte(strings.Replace(string(signed), userID, other, -1))
	for _, tc := range []struct {
		name  string
		value []byte
	}{
		{"signed entry copied from another principal", signed},
		{"entry edited to name this principal", forged},
		{"unsigned JSON", []byte(`{"state":{"Roles":[{"RoleDefinitionID":"` + roleID + `","DirectoryScopeID":"/"}]}}`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.replicas[1].guard.Purge(tenantID, other)
			if err := rc.Set(ctx, entryKey(other), tc.value, time.Minute).Err(); err != nil {
				t.Fatal(err)
			}
			before := f.src.lookups.Load()
			if c := f.replicas[1].doAs(other); c != http.StatusForbidden {
				t.Fatalf("status %d: a value written to Redis without the key decided", c)
			}
			if f.src.lookups.Load() != before+1 {
				t.Fatal("the replica did not look the principal up itself")
			}
		})
	}
}

func TestLeaseOfADeadReplicaExpires(t *testing.T) {
	f := newFleet(t, 1, fleetOptions{storeConfig: func(c *redisstore.Config) { c.LeaseTTL = 300 * time.Millisecond }})
	f.waitConnected(t)
	rc := rawClient(t, f)
	lease := strings.Replace(entryKey(userID), ":entry:", ":lease:", 1)
	// A replica took the lease and died: nobody renews it.
	if err := rc.Set(context.Background(), lease, "dead-replica", 300*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if c := f.replicas[0].do(); c != http.StatusOK {
		t.Fatalf("status %d", c)
	}
	if waited := time.Since(start); waited < 200*time.Millisecond {
		t.Errorf("the replica loaded after %v, while another replica's lease was alive", waited)
	}
	if n := f.src.lookups.Load(); n != 1 {
		t.Errorf("%d lookups, want 1", n)
	}
}

func TestPurgeDuringALoadStoresNothing(t *testing.T) {
	f := newFleet(t, 3, fleetOptions{})
	f.waitConnected(t)
	rc := rawClient(t, f)
	f.src.delay.Store(int64(300 * time.Millisecond))
	done := make(chan int)
	go func() { done <- f.replicas[0].do() }() // reads the role as active
	time.Sleep(100 * time.Millisecond)
	f.src.active.Store(false)
	f.replicas[1].guard.Purge(tenantID, userID) // while replica 0 is loading
	<-done
	if n, err := rc.Exists(context.Background(), entryKey(userID)).Result(); err != nil || n != 0 {
		t.Fatalf("after a purge during the load, Redis holds the load's entry (exists=%d, err=%v)", n, err)
	}
	f.src.delay.Store(0)
	if c := f.replicas[2].do(); c != http.StatusForbidden {
		t.Fatalf("replica 2 answered %d from a state read before the purge", c)
	}
}

func TestPurgeAllReachesEveryReplica(t *testing.T) {
	f := newFleet(t, 3, fleetOptions{})
	f.waitConnected(t)
	for _, r := range f.replicas {
		r.do()
	}
	f.src.active.Store(false)
	f.replicas[2].guard.PurgeAll()
	deadline := time.Now().Add(5 * time.Second)
	for i, r := range f.replicas {
		for r.do() != http.StatusForbidden {
			if time.Now().After(deadline) {
				t.Fatalf("replica %d still allows 5s after PurgeAll on replica 2", i)
			}
			time.Sleep(time.Millisecond)
		}
	}
}

func TestRedisDownFallsBackToLocal(t *testing.T) {
	f := newFleet(t, 2, fleetOptions{})
	f.waitConnected(t)
	for _, r := range f.replicas {
		if c := r.do(); c != http.StatusOK {
			t.Fatalf("warm-up: %d", c)
		}
	}
	f.redis.Kill()
	f.src.active.Store(false)
	// Warm copies serve their TTL; a purge reaches the replica it is made
	// on, and that replica looks up on its own.
	f.replicas[0].guard.Purge(tenantID, userID)
	if c := f.replicas[0].do(); c != http.StatusForbidden {
		t.Fatalf("replica 0 answered %d with Redis down after its own purge", c)
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.replicas[1].store.Connected() {
		if time.Now().After(deadline) {
			t.Fatal("replica 1 still reports Redis connected 5s after it was killed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	f.src.active.Store(true)
	before := f.src.lookups.Load()
	const other = "44444444-4444-4444-8444-444444444444"
	for _, r := range f.replicas {
		if c := r.doAs(other); c != http.StatusOK {
			t.Fatalf("cold request with Redis down: %d", c)
		}
	}
	if n := f.src.lookups.Load() - before; n != 2 {
		t.Errorf("with Redis down, 2 replicas made %d lookups, want 2 (one each)", n)
	}

	// Back up: the replicas reconnect and drop their local copies (they may
	// have missed invalidations), so the next request looks up again.
	f.redis.Restart()
	f.waitConnected(t)
	f.src.active.Store(false)
	deadline = time.Now().Add(5 * time.Second)
	for f.replicas[1].doAs(other) != http.StatusForbidden {
		if time.Now().After(deadline) {
			t.Fatal("replica 1 kept the copy it made while Redis was down after reconnecting")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestTenantLimits(t *testing.T) {
	srv := redistest.Start(t)
	s, err := redisstore.New(redisstore.Config{URL: srv.URL(), Key: testKey, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	var l graphcheck.TenantLimits = s

	for i := range 3 {
		if w, err := l.Take(ctx, tenantID, "riskyUsers", 1, 3); err != nil || w != 0 {
			t.Fatalf("take %d within the burst: wait %v, err %v", i, w, err)
		}
	}
	w, err := l.Take(ctx, tenantID, "riskyUsers", 1, 3)
	if err != nil || w <= 0 || w > time.Second {
		t.Fatalf("take past the burst: wait %v, err %v; want (0, 1s]", w, err)
	}
	if w, _ := l.Take(ctx, strings.ToUpper(tenantID), "riskyUsers", 1, 3); w <= 0 {
		t.Fatal("the tenant ID's case made another bucket")
	}
	if w, _ := l.Take(ctx, "other-tenant", "riskyUsers", 1, 3); w != 0 {
		t.Fatal("another tenant shares the bucket")
	}
	if _, err := l.Take(ctx, tenantID, "riskyUsers", 0, 3); err == nil {
		t.Fatal("Take accepted a zero rate")
	}

	if d, err := l.Paused(ctx, tenantID); err != nil || d != 0 {
		t.Fatalf("Paused before any pause: %v, %v", d, err)
	}
	if err := l.Pause(ctx, tenantID, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := l.Pause(ctx, tenantID, time.Second); err != nil { // shorter: must not cut it
		t.Fatal(err)
	}
	if d, err := l.Paused(ctx, tenantID); err != nil || d <= 4*time.Second || d > 5*time.Second {
		t.Fatalf("Paused = %v, %v; want the longer pause (≈5s) left", d, err)
	}

	srv.Kill()
	if _, err := l.Take(ctx, tenantID, "riskyUsers", 1, 3); !errors.Is(err, redisstore.ErrUnavailable) {
		t.Fatalf("Take with Redis down: %v, want ErrUnavailable", err)
	}
}

func TestACLUserInURL(t *testing.T) {
	srv := redistest.Start(t, "user default off", "user fleet on >s3cret-pass ~pimguard:* &pimguard:* +@all")
	for _, tc := range []struct {
		name      string
		userinfo  string
		connected bool
	}{
		{"right password", "fleet:s3cret-pass@", true},
		{"wrong password", "fleet:wrong@", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := redisstore.New(redisstore.Config{URL: "redis://" + tc.userinfo + srv.Addr() + "/0", Key: testKey, Logger: quiet()})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			deadline := time.Now().Add(2 * time.Second)
			for !s.Connected() && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if s.Connected() != tc.connected {
				t.Fatalf("Connected() = %v, want %v", s.Connected(), tc.connected)
			}
			// Either way a lookup is answered.
			e, filled, err := s.Fetch(context.Background(), "k", func(context.Context) (cache.SharedEntry, error) {
				return cache.SharedEntry{Data: []byte("x"), Expires: time.Now().Add(time.Minute)}, nil
			})
			if err != nil || !filled || string(e.Data) != "x" {
				t.Fatalf("Fetch = %q, %v, %v", e.Data, filled, err)
			}
		})
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/internal/redistest"
	"github.com/pimguard/pimguard/middleware"
)

// purgeDeadline bounds how long a test waits for a purge on one replica to
// reach another. It is a bound on the wait, not a figure: the README's
// propagation figures come from redisstore's benchmarks.
const purgeDeadline = 10 * time.Second

// TestFleetModeReplicas runs two replicas of the example in-process, in demo
// mode, on one fake tenant and one real Redis (PIMGUARD_REDIS_URL): a
// principal's lookup by either serves both, and a purge on one reaches the
// other without waiting for the cache TTL (an hour here, so that only the
// purge can change an answer during the test).
func TestFleetModeReplicas(t *testing.T) {
	rs := redistest.Start(t)
	logs := &listenWatch{cancel: func() {}} // a locked buffer: newApp logs no "listening"
	demo, bases := startDemoReplicas(t, 2, map[string]string{
		"PIMGUARD_REDIS_URL":  rs.URL(),
		"PIMGUARD_SHARED_KEY": testSharedKey,
		"PIMGUARD_CACHE_TTL":  "1h",
	}, logs)
	replicas := []struct{ name, base string }{{"A", bases[0]}, {"B", bases[1]}}
	a, b := replicas[0], replicas[1]
	tenant := demo.tenant

	// lookups counts the Graph requests about oid ($batch sub-requests
	// included): the fleet's lookups of that principal.
	lookups := func(oid string) int {
		n := 0
		for _, r := range tenant.Requests() {
			if strings.Contains(r.Path, oid) || strings.Contains(r.Query, oid) {
				n++
			}
		}
		return n
	}
	status := func(base, method, path, tok string) (int, string) {
		t.Helper()
		resp, body := call(t, method, base+path, tok)
		var e struct {
			Code string `json:"code"`
		}
		_ = json.Unmarshal(body, &e)
		return resp.StatusCode, e.Code
	}

	t.Run("a cold principal is looked up once for the fleet", func(t *testing.T) {
		// Two User Administrators alike, so that one lookup of either
		// makes the same Graph requests.
		const first, second = "d0000000-0000-4000-8000-000000000001", "d0000000-0000-4000-8000-000000000002"
		for _, id := range []string{first, second} {
			must(t, tenant.AddUser(id, id[len(id)-4:]+"@contoso.example"))
			must(t, tenant.AssignRole(id, middleware.RoleUserAdministrator, "/", time.Time{}, time.Time{}))
		}

		// One replica, then the other.
		tok := tenant.MustMint(graphtest.Token{ObjectID: first})
		if st, c := status(a.base, "GET", "/api/me", tok); st != 200 {
			t.Fatalf("A: %d %s", st, c)
		}
		one := lookups(first)
		if one == 0 {
			t.Fatal("no Graph request names the principal: the count below would prove nothing")
		}
		if st, c := status(b.base, "GET", "/api/me", tok); st != 200 {
			t.Fatalf("B: %d %s", st, c)
		}
		if n := lookups(first); n != one {
			t.Errorf("one replica after the other: %d Graph requests about the principal, want %d (one lookup)", n, one)
		}

		// Both at once: concurrent misses on both replicas.
		tok = tenant.MustMint(graphtest.Token{ObjectID: second})
		const requests = 16
		statuses := make([]int, requests)
		errs := make([]error, requests)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range requests {
			wg.Go(func() {
				<-start
				req, err := http.NewRequest("GET", replicas[i%2].base+"/api/me", nil)
				if err != nil {
					errs[i] = err
					return
				}
				req.Header.Set("Authorization", "Bearer "+tok)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					errs[i] = err
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				statuses[i] = resp.StatusCode
			})
		}
		close(start)
		wg.Wait()
		for i := range requests {
			if errs[i] != nil || statuses[i] != 200 {
				t.Fatalf("request %d to %s: %d, %v", i, replicas[i%2].name, statuses[i], errs[i])
			}
		}
		if n := lookups(second); n != one {
			t.Errorf("%d concurrent requests over both replicas: %d Graph requests about the principal, want %d (one lookup)", requests, n, one)
		}
	})

	t.Run("a purge on one replica reaches the other", func(t *testing.T) {
		jane, bob := demo.token("jane"), demo.token("bob")
		const reset = "/api/users/alex/reset-password"
		_, err := tenant.ActivateRole(janeID, middleware.RoleHelpdeskAdministrator, "/", time.Hour)
		must(t, err)
		for _, r := range replicas {
			if st, c := status(r.base, "POST", reset, jane); st != 200 {
				t.Fatalf("%s, role active: %d %s", r.name, st, c)
			}
		}
		must(t, tenant.DeactivateRole(janeID, middleware.RoleHelpdeskAdministrator, "/"))
		// Both replicas still hold the state: what follows is the purge's
		// doing, not the cache TTL's.
		for _, r := range replicas {
			if st, c := status(r.base, "POST", reset, jane); st != 200 {
				t.Fatalf("%s, deactivated but cached: %d %s; want 200 until a purge", r.name, st, c)
			}
		}
		if st, c := status(a.base, "POST", "/admin/purge/"+janeID, bob); st != 200 {
			t.Fatalf("purge on A: %d %s", st, c)
		}
		if st, c := status(a.base, "POST", reset, jane); st != 403 || c != middleware.CodeRoleNotActive {
			t.Errorf("A after its purge: %d %s, want 403 %s", st, c, middleware.CodeRoleNotActive)
		}
		begin := time.Now()
		deadline := begin.Add(purgeDeadline)
		polls := 0
		for {
			polls++
			st, c := status(b.base, "POST", reset, jane)
			if st == 403 && c == middleware.CodeRoleNotActive {
				t.Logf("B denied after %d request(s), %v after the purge on A", polls, time.Since(begin).Round(time.Microsecond))
				break
			}
			if st != 200 {
				t.Fatalf("B: %d %s, want 200 (not yet purged) or 403 %s", st, c, middleware.CodeRoleNotActive)
			}
			if time.Now().After(deadline) {
				t.Fatalf("B still allows %v after the purge on A (cache TTL 1h): the purge did not reach it", purgeDeadline)
			}
			time.Sleep(5 * time.Millisecond)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		for _, r := range replicas {
			_, body := call(t, "GET", r.base+"/metrics", "")
			if !hasSample(string(body), "pimguard_shared_connected{", " 1") {
				t.Errorf("%s: /metrics has no pimguard_shared_connected 1", r.name)
			}
		}
		_, body := call(t, "GET", b.base+"/metrics", "")
		if !hasSample(string(body), "pimguard_cache_shared_hits_total{", "") {
			t.Errorf("B: /metrics has no pimguard_cache_shared_hits_total")
		}
	})

	t.Run("logs", func(t *testing.T) {
		logs.mu.Lock()
		text := logs.buf.String()
		logs.mu.Unlock()
		if n := len(fleetRecords(t, text, rs.URL())); n != 2 {
			t.Errorf("%d fleet-mode records naming %s and connected, want one per replica:\n%s", n, rs.URL(), text)
		}
		if strings.Contains(text, testSharedKey) {
			t.Error("the logs show PIMGUARD_SHARED_KEY")
		}
	})
}

// hasSample reports whether the Prometheus text has a sample line starting
// with prefix and ending with suffix.
func hasSample(text, prefix, suffix string) bool {
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, prefix) && strings.HasSuffix(line, suffix) {
			return true
		}
	}
	return false
}

// fleetRecords returns the "fleet mode on" records of JSON logs that name
// redisURL and say Redis was reached.
func fleetRecords(t *testing.T, logs, redisURL string) []string {
	t.Helper()
	var out []string
	for _, line := range strings.Split(logs, "\n") {
		var rec struct {
			Msg       string `json:"msg"`
			Redis     string `json:"redis"`
			Connected bool   `json:"connected"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && strings.HasPrefix(rec.Msg, "example: fleet mode on") &&
			rec.Redis == redisURL && rec.Connected {
			out = append(out, line)
		}
	}
	return out
}

// TestRunFleetMode: through run, as main calls it, PIMGUARD_REDIS_URL with
// an ACL user and password connects (the default user is off, so only
// those credentials get in) and logs one line naming Redis without them;
// neither the password nor the key shows anywhere.
func TestRunFleetMode(t *testing.T) {
	rs := redistest.Start(t, "user default off", "user pimguard on >"+testRedisPassword+" ~* &* +@all")
	host, code, stderr := runDemoUntilListening(t, nil, map[string]string{
		"PIMGUARD_ADDR":       "127.0.0.1:0",
		"PIMGUARD_REDIS_URL":  "redis://pimguard:" + testRedisPassword + "@" + rs.Addr() + "/0",
		"PIMGUARD_SHARED_KEY": testSharedKey,
	})
	if code != 0 || host == "" {
		t.Fatalf("exit %d, listened on %q; stderr %s", code, host, stderr)
	}
	if n := len(fleetRecords(t, stderr, "redis://"+rs.Addr()+"/0")); n != 1 {
		t.Errorf("%d fleet-mode records naming redis://%s/0 and connected, want 1; stderr %s", n, rs.Addr(), stderr)
	}
	for _, secret := range []string{testRedisPassword, testSharedKey} {
		if strings.Contains(stderr, secret) {
			t.Errorf("stderr shows a secret: %s", stderr)
		}
	}
}

// TestWalkthroughFleetMode: the demo's walkthrough behaves as described in
// fleet mode too, twice in a row on one Redis. Each demo process has a fake
// tenant of its own, with the same made-up tenant and people, whose clock
// the walkthrough jumps ahead: states one demo left in Redis must not
// serve the next.
func TestWalkthroughFleetMode(t *testing.T) {
	rs := redistest.Start(t)
	kv := map[string]string{"PIMGUARD_REDIS_URL": rs.URL(), "PIMGUARD_SHARED_KEY": testSharedKey}
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	defer rdb.Close()
	for _, round := range []string{"first", "second"} {
		t.Run(round, func(t *testing.T) {
			var out, stderr bytes.Buffer
			if code := run(context.Background(), []string{"-walkthrough-only"}, env(kv), &out, &stderr); code != 0 {
				t.Fatalf("exit %d:\n%s\nstderr: %s", code, out.String(), stderr.String())
			}
			if !strings.Contains(out.String(), "every step behaved as described") {
				t.Fatalf("walkthrough output:\n%s", out.String())
			}
			// The walkthrough went through Redis: its entries are there.
			keys, err := rdb.Keys(context.Background(), "pimguard-demo-*:v1:entry:*").Result()
			must(t, err)
			if len(keys) == 0 {
				t.Error("the walkthrough left no entry in Redis: fleet mode was not on")
			}
		})
	}
}

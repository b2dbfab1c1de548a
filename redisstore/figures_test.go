package redisstore_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pimguard/pimguard/internal/measure"
	"github.com/pimguard/pimguard/middleware"
)

// The fleet figures of README.md's "Running several replicas", measured
// side by side in one run:
//
//	go test -run TestFleetFigures -v ./redisstore/
//	go test -run XXX -bench FleetWarm ./redisstore/
//
// They log what they measure. What they assert is correctness (lookup
// counts, wrong allows, failed requests), never a duration.

// fakeClock is a settable clock shared by the Source, the Guards and the
// Stores of a figure.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// oid returns the object ID of test principal i.
func oid(i int) string { return fmt.Sprintf("%08x-0000-4000-8000-000000000000", i) }

func TestFleetFigures(t *testing.T) {
	t.Run("graph lookups", figureLookups)
	t.Run("purge propagation", figurePurge)
	t.Run("redis killed mid-run", figureRedisKilled)
}

// figureLookups: the same load, 5 principals each requesting every 100 ms
// of fake time for 300 s (15 000 requests, round robin over the replicas),
// on 1 replica, on 3 without fleet mode, and on 3 with it.
func figureLookups(t *testing.T) {
	const principals, period, span = 5, 100 * time.Millisecond, 300 * time.Second
	run := func(replicas int, local bool) int64 {
		clk := &fakeClock{now: time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)}
		f := newFleet(t, replicas, fleetOptions{local: local, now: clk.Now})
		f.waitConnected(t)
		n := 0
		for elapsed := time.Duration(0); elapsed < span; elapsed += period {
			for p := range principals {
				if c := f.replicas[n%replicas].doAs(oid(p)); c != http.StatusOK {
					t.Fatalf("status %d", c)
				}
				n++
			}
			clk.Advance(period)
		}
		return f.src.lookups.Load()
	}
	one, off, on := run(1, false), run(3, true), run(3, false)
	t.Logf("Source lookups for the same load: 1 replica %d; 3 replicas without fleet mode %d (÷1 = %.2f); 3 replicas with fleet mode %d (÷1 = %.2f)",
		one, off, float64(off)/float64(one), on, float64(on)/float64(one))
	if r := float64(on) / float64(one); r > 1.1 {
		t.Errorf("3 replicas in fleet mode made %.2f× the lookups of one, want ≤ 1.1", r)
	}
}

// figurePurge: 120 purges, each on one of 3 replicas in turn, of a
// principal warm on all three whose role Graph no longer shows; the
// propagation time is from the Purge call until every replica answers
// 403 (end to end: invalidation received, local copy dropped, new state
// looked up).
func figurePurge(t *testing.T) {
	const purges = 120
	f := newFleet(t, 3, fleetOptions{})
	f.waitConnected(t)
	var lat []time.Duration
	for i := range purges {
		p := oid(1000 + i)
		for _, r := range f.replicas {
			if c := r.doAs(p); c != http.StatusOK {
				t.Fatalf("warm-up: %d", c)
			}
		}
		f.src.never.Store(p, true) // the role ended early
		start := time.Now()
		f.replicas[i%3].guard.Purge(tenantID, p)
		deadline := start.Add(5 * time.Second)
		for _, r := range f.replicas {
			for r.doAs(p) != http.StatusForbidden {
				if time.Now().After(deadline) {
					t.Fatalf("purge %d: a replica still allows 5 s later", i)
				}
			}
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	t.Logf("purge propagation over %d purges, 3 replicas: p50 %v, p99 %v, max %v",
		purges, lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1])
}

// figureRedisKilled: 3 replicas under load from 4 clients for 3 s; Redis
// is killed after 1 s and restarted after 2 s. Half the principals hold
// the role, half never do: an allow for one of those is a wrong allow.
// Any answer but 200 or 403 is a failed request.
func figureRedisKilled(t *testing.T) {
	const principals = 40
	f := newFleet(t, 3, fleetOptions{})
	f.waitConnected(t)
	for p := 0; p < principals; p += 2 {
		f.src.never.Store(oid(p), true)
	}
	var requests, wrong, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := w; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				p := i % principals
				c := f.replicas[i%3].doAs(oid(p))
				requests.Add(1)
				switch {
				case c == http.StatusOK && p%2 == 0:
					wrong.Add(1)
				case c != http.StatusOK && c != http.StatusForbidden:
					failed.Add(1)
				}
				if i%50 == 0 { // keep some lookups going: a purge now and then
					f.replicas[(i+1)%3].guard.Purge(tenantID, oid(p))
				}
			}
		})
	}
	time.Sleep(time.Second)
	f.redis.Kill()
	killed := time.Now()
	time.Sleep(time.Second)
	f.redis.Restart()
	restarted := time.Now()
	f.waitConnected(t)
	recovered := time.Since(restarted)
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	down := 0
	for _, r := range f.replicas {
		if !r.store.Connected() {
			down++
		}
	}
	t.Logf("Redis killed for %v under load: %d requests, %d wrong allows, %d failed, every replica reconnected %v after the restart",
		restarted.Sub(killed).Round(time.Millisecond), requests.Load(), wrong.Load(), failed.Load(), recovered.Round(time.Millisecond))
	if wrong.Load() != 0 || failed.Load() != 0 || down != 0 {
		t.Errorf("%d wrong allows, %d failed requests, %d replicas not reconnected; want 0, 0, 0", wrong.Load(), failed.Load(), down)
	}
}

// BenchmarkFleetWarm measures a warm request (the state cached locally)
// through a Guard without and with fleet mode, side by side, and reports
// the ratio: fleet mode adds nothing to the warm path, which never touches
// Redis. Goal: on ÷ off ≤ 1.1.
func BenchmarkFleetWarm(b *testing.B) {
	off := newFleet(b, 1, fleetOptions{local: true}).replicas[0]
	fl := newFleet(b, 1, fleetOptions{})
	fl.waitConnected(b)
	on := fl.replicas[0]
	req := httptest.NewRequest(http.MethodGet, "/admin", nil)
	req = req.WithContext(middleware.ContextWithPrincipal(context.Background(), &middleware.Principal{TenantID: tenantID, ObjectID: userID}))
	w := httptest.NewRecorder()
	for _, r := range []*replica{off, on} {
		if r.handler.ServeHTTP(w, req); w.Code != http.StatusOK {
			b.Fatalf("warm-up: %d", w.Code)
		}
	}
	for b.Loop() {
		moff := measure.For(300*time.Millisecond, func(int) { off.handler.ServeHTTP(w, req) })
		mon := measure.For(300*time.Millisecond, func(int) { on.handler.ServeHTTP(w, req) })
		b.ReportMetric(moff.NS, "off-ns/req")
		b.ReportMetric(mon.NS, "on-ns/req")
		b.ReportMetric(mon.NS/moff.NS, "on/off")
		b.ReportMetric(mon.Allocs-moff.Allocs, "added-allocs/req")
	}
}

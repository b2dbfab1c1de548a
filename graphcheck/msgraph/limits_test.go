package msgraph_test

// Fleet-wide Graph limits (Config.TenantLimits): several Sources stand for
// the replicas of one deployment, sharing one fake tenant, one fake clock
// and one in-memory TenantLimits (memLimits, what cache/redisstore does on
// Redis). The riskyUsers bucket and Graph's 429 pauses are the tenant's,
// not each Source's; without TenantLimits, or when it fails, each Source
// keeps limits of its own, never none.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/graphcheck/msgraph"
)

// otherTenant is a tenant ID that is not graphtest.TenantID. The fake
// Graph serves one directory whatever the tenant, as the Source's
// requests name none: only the Source's own keying tells tenants apart.
const otherTenant = "7e4a0000-0000-4000-8000-0000000000e7"

// memLimits is an in-memory graphcheck.TenantLimits on a clock: one token
// bucket per tenant and bucket name, and one pause end per tenant. When
// fail is set, every call counts and returns it, as an unreachable store
// would.
type memLimits struct {
	now  func() time.Time
	fail error

	mu      sync.Mutex
	buckets map[string]*memBucket
	pauses  map[string]time.Time
	calls   map[string]int // by method
}

type memBucket struct {
	tokens float64
	at     time.Time
}

var _ graphcheck.TenantLimits = (*memLimits)(nil)

func newMemLimits(now func() time.Time) *memLimits {
	return &memLimits{now: now, buckets: map[string]*memBucket{}, pauses: map[string]time.Time{}, calls: map[string]int{}}
}

func (m *memLimits) Take(_ context.Context, tenant, bucket string, perSecond float64, burst int) (time.Duration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls["Take"]++
	if m.fail != nil {
		return 0, m.fail
	}
	now := m.now()
	b := m.buckets[tenant+"/"+bucket]
	if b == nil {
		b = &memBucket{tokens: float64(burst), at: now}
		m.buckets[tenant+"/"+bucket] = b
	}
	if now.After(b.at) {
		b.tokens = min(float64(burst), b.tokens+now.Sub(b.at).Seconds()*perSecond)
		b.at = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return 0, nil
	}
	return time.Duration(math.Ceil((1 - b.tokens) / perSecond * float64(time.Second))), nil
}

func (m *memLimits) Pause(_ context.Context, tenant string, d time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls["Pause"]++
	if m.fail != nil {
		return m.fail
	}
	if end := m.now().Add(d); end.After(m.pauses[tenant]) {
		m.pauses[tenant] = end
	}
	return nil
}

func (m *memLimits) Paused(_ context.Context, tenant string) (time.Duration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls["Paused"]++
	if m.fail != nil {
		return 0, m.fail
	}
	return max(m.pauses[tenant].Sub(m.now()), 0), nil
}

func (m *memLimits) called(method string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calls[method]
}

// probe is a Source's Sleep that records each wait and how many requests
// the fake tenant had received when it began, and returns at once
// without moving the clock.
type probe struct {
	srv   *graphtest.Server
	mu    sync.Mutex
	waits []time.Duration
	sent  []int
}

func (p *probe) Sleep(ctx context.Context, d time.Duration) error {
	n := len(p.srv.Requests())
	p.mu.Lock()
	defer p.mu.Unlock()
	p.waits, p.sent = append(p.waits, d), append(p.sent, n)
	return ctx.Err()
}

// take returns the waits and request counts recorded since the last take.
func (p *probe) take() (waits []time.Duration, sent []int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	waits, sent, p.waits, p.sent = p.waits, p.sent, nil, nil
	return waits, sent
}

// riskLoad has each of srcs, in turn, look up a user's risk (a cold one:
// each lookup is followed by a Purge) until the fake clock, moved only by
// the Sources' waits, has passed span, and returns the riskyUsers requests
// the fake tenant received and the fake time that passed.
func riskLoad(t *testing.T, e *stack, srcs []*msgraph.Source, span time.Duration) (requests int, elapsed time.Duration) {
	t.Helper()
	users := []string{alice, bob, carol, dave, erin, frank}
	start := e.clock.Now()
	for e.clock.Now().Before(start.Add(span)) {
		for i, src := range srcs {
			oid := users[i%len(users)]
			if _, err := src.Lookup(context.Background(), need(user(oid), graphcheck.NeedRisk)); err != nil {
				t.Fatalf("Source %d, %s: %v", i, oid, err)
			}
			src.Purge(graphtest.TenantID, oid)
		}
	}
	return e.subRequests("/identityProtection/"), e.clock.Now().Sub(start)
}

// Five replicas under load send the tenant's riskyUsers budget, not five
// times it: with one TenantLimits, their requests stay within the shared
// bucket (burst + rate × elapsed); each with limits of its own, they send
// about five times that.
func TestTenantLimitsRiskyUsersFleetWide(t *testing.T) {
	const (
		replicas = 5
		rate     = 1.0
		burst    = 1
		span     = 10 * time.Second
	)
	counts := map[bool]float64{} // shared → requests per allowed
	for _, shared := range []bool{true, false} {
		name := map[bool]string{true: "one TenantLimits", false: "limits per process"}[shared]
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, graphtest.Options{}, func(e *stack, c *msgraph.Config) {
				c.RiskRequestsPerSecond, c.RiskBurst = rate, burst
				advancingSleep(e, c)
			})
			lim := newMemLimits(e.clock.Now)
			var srcs []*msgraph.Source
			for range replicas {
				srcs = append(srcs, e.newSource(t, func(c *msgraph.Config) {
					if shared {
						c.TenantLimits = lim
					}
				}))
			}
			n, elapsed := riskLoad(t, e, srcs, span)
			allowed := burst + int(elapsed.Seconds()*rate)
			counts[shared] = float64(n) / float64(allowed)
			t.Logf("%s: %d riskyUsers requests in %v of fake time (%.2f/s); the tenant's bucket allows %d",
				name, n, elapsed, float64(n)/elapsed.Seconds(), allowed)
			switch {
			case shared && n > allowed:
				t.Errorf("%d riskyUsers requests, more than the %d the shared bucket allows", n, allowed)
			case shared && lim.called("Take") < n:
				t.Errorf("%d Take calls for %d requests", lim.called("Take"), n)
			case !shared && n < 4*allowed:
				t.Errorf("%d riskyUsers requests without TenantLimits, want about %d× the %d one bucket allows", n, replicas, allowed)
			}
		})
	}
	t.Logf("requests ÷ tenant budget: %.2f with one TenantLimits, %.2f with limits per process", counts[true], counts[false])
}

// Replicas asking at once still share one budget: whatever the order in
// which their concurrent lookups take turns, the tenant never receives
// more riskyUsers requests than the shared bucket allows on the clock.
func TestTenantLimitsRiskyUsersConcurrent(t *testing.T) {
	e := newEnv(t, graphtest.Options{}, func(e *stack, c *msgraph.Config) {
		c.RiskRequestsPerSecond, c.RiskBurst = 2, 2
		advancingSleep(e, c)
	})
	lim := newMemLimits(e.clock.Now)
	users := []string{alice, bob, carol, dave, erin}
	var wg sync.WaitGroup
	for i, oid := range users {
		src := e.newSource(t, func(c *msgraph.Config) { c.TenantLimits = lim })
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 4 {
				if _, err := src.Lookup(context.Background(), need(user(oid), graphcheck.NeedRisk)); err != nil {
					t.Errorf("Source %d: %v", i, err)
					return
				}
				src.Purge(graphtest.TenantID, oid)
			}
		}()
	}
	wg.Wait()
	n, elapsed := e.subRequests("/identityProtection/"), e.clock.Now().Sub(t0)
	if allowed := 2 + int(elapsed.Seconds()*2); n > allowed {
		t.Errorf("%d riskyUsers requests in %v, more than the %d the shared bucket allows", n, elapsed, allowed)
	}
	if n != len(users)*4 {
		t.Errorf("%d riskyUsers requests, want %d (one per lookup)", n, len(users)*4)
	}
}

// A 429 with Retry-After seen by one replica pauses the tenant for the
// others: replica B's next lookup waits for what is left of the pause
// before it sends anything. Replica A waits once for its own 429 (its
// retry), not a second time for the pause it set.
func TestTenantPauseSharedAcrossSources(t *testing.T) {
	for _, tc := range []struct {
		name  string
		match graphtest.GraphMatch
	}{
		{"429 inside the $batch", inside("/roleManagement/")},
		{"429 on the $batch", batchItself},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, graphtest.Options{}, nil)
			lim := newMemLimits(e.clock.Now)
			a := e.newSource(t, func(c *msgraph.Config) { c.TenantLimits = lim })
			pb := &probe{srv: e.srv}
			b := e.newSource(t, func(c *msgraph.Config) { c.TenantLimits = lim; c.Sleep = pb.Sleep })
			pc := &probe{srv: e.srv}
			outside := e.newSource(t, func(c *msgraph.Config) { c.Sleep = pc.Sleep }) // not in the fleet

			e.srv.InjectGraphFault(tc.match, once(graphtest.ThrottledFault("3")))
			if _, err := a.Lookup(context.Background(), user(alice)); err != nil {
				t.Fatalf("A: %v", err)
			}
			if got := e.sleep.take(); !slices.Equal(got, []time.Duration{3 * time.Second}) {
				t.Errorf("A waited %v, want its one 3s retry wait", got)
			}

			e.clock.Advance(time.Second)
			before := len(e.srv.Requests())
			if _, err := b.Lookup(context.Background(), user(bob)); err != nil {
				t.Fatalf("B: %v", err)
			}
			waits, sent := pb.take()
			if !slices.Equal(waits, []time.Duration{2 * time.Second}) || !slices.Equal(sent, []int{before}) {
				t.Errorf("B waited %v with %v requests sent (before its lookup: %d); want the 2s left of A's pause, before sending", waits, sent, before)
			}
			if len(e.srv.Requests()) == before {
				t.Error("B sent nothing after the pause")
			}
			if logs := e.logs.String(); !strings.Contains(logs, "waiting for its pause") || !strings.Contains(logs, `"shared":true`) {
				t.Error("no log record of B waiting for the shared pause")
			}

			// A Source without the TenantLimits knows nothing of the pause.
			if _, err := outside.Lookup(context.Background(), user(carol)); err != nil {
				t.Fatalf("outside: %v", err)
			}
			if waits, _ := pc.take(); len(waits) != 0 {
				t.Errorf("a Source outside the fleet waited %v", waits)
			}

			// Over for everyone 3s after the 429.
			e.clock.Advance(2 * time.Second)
			if _, err := b.Lookup(context.Background(), user(dave)); err != nil {
				t.Fatalf("B after the pause: %v", err)
			}
			if waits, _ := pb.take(); len(waits) != 0 {
				t.Errorf("B waited %v after the pause was over", waits)
			}
		})
	}
}

// Without TenantLimits the pause still holds for the one Source that saw
// the 429: its other lookups of the tenant wait for it, lookups of
// another tenant do not, and the lookup that saw the 429 waits only once.
func TestTenantPauseWithinOneSource(t *testing.T) {
	for _, tc := range []struct {
		name  string
		match graphtest.GraphMatch
	}{
		{"429 inside the $batch", inside("/identityGovernance/")},
		{"429 on the $batch", batchItself},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, graphtest.Options{}, nil)
			p := &probe{srv: e.srv}
			src := e.newSource(t, func(c *msgraph.Config) { c.Sleep = p.Sleep })

			e.srv.InjectGraphFault(tc.match, once(graphtest.ThrottledFault("3")))
			if _, err := src.Lookup(context.Background(), user(alice)); err != nil {
				t.Fatal(err)
			}
			if waits, _ := p.take(); !slices.Equal(waits, []time.Duration{3 * time.Second}) {
				t.Errorf("the throttled lookup waited %v, want its one 3s retry wait", waits)
			}

			e.clock.Advance(time.Second)
			before := len(e.srv.Requests())
			if _, err := src.Lookup(context.Background(), user(bob)); err != nil {
				t.Fatal(err)
			}
			if waits, sent := p.take(); !slices.Equal(waits, []time.Duration{2 * time.Second}) || !slices.Equal(sent, []int{before}) {
				t.Errorf("the next lookup waited %v with %v requests sent (before it: %d); want the 2s left, before sending", waits, sent, before)
			}

			other := graphcheck.Principal{TenantID: otherTenant, ObjectID: carol}
			if _, err := src.Lookup(context.Background(), other); err != nil {
				t.Fatal(err)
			}
			if waits, _ := p.take(); len(waits) != 0 {
				t.Errorf("a lookup in another tenant waited %v", waits)
			}

			e.clock.Advance(2 * time.Second)
			if _, err := src.Lookup(context.Background(), user(dave)); err != nil {
				t.Fatal(err)
			}
			if waits, _ := p.take(); len(waits) != 0 {
				t.Errorf("a lookup after the pause waited %v", waits)
			}
		})
	}
}

// The lookup that saw the 429 does not wait for its own pause again in the
// group-roles fetch it starts afterwards (carol holds her role through a
// role-assignable group), even though Sleep does not move the clock.
func TestTenantPauseNotWaitedTwice(t *testing.T) {
	e := newEnv(t, graphtest.Options{}, nil)
	must(t, e.srv.AssignRole(admins, ga, "/", time.Time{}, time.Time{}))
	must(t, e.srv.AddGroupMember(admins, carol))
	lim := newMemLimits(e.clock.Now)
	src := e.newSource(t, func(c *msgraph.Config) { c.TenantLimits = lim })
	e.srv.InjectGraphFault(inside("/identityGovernance/"), once(graphtest.ThrottledFault("3")))
	st, err := src.Lookup(context.Background(), user(carol))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := st.RoleActive(t0, ga, "/"); !ok {
		t.Errorf("roles %+v", st.Roles)
	}
	if got := e.sleep.take(); !slices.Equal(got, []time.Duration{3 * time.Second}) {
		t.Errorf("waits %v, want the one 3s retry wait", got)
	}
	if n := e.subRequests("/groups"); n != 1 {
		t.Errorf("%d group list requests, want 1", n)
	}
	// The pause holds for the next lookup, which was not the one throttled.
	if _, err := src.Lookup(context.Background(), user(bob)); err != nil {
		t.Fatal(err)
	}
	if got := e.sleep.take(); !slices.Equal(got, []time.Duration{3 * time.Second}) {
		t.Errorf("next lookup's waits %v, want the 3s pause", got)
	}
}

// A 429 on one $batch of a fetch that needs several (the group-roles fetch
// of a tenant with more than 20 role-assignable groups) holds back the
// batches of that pass not yet sent: they go after the wait, with the
// retry, and the wait is made once, not once for the pause and again for
// the retry.
func TestTenantPauseHoldsBackTheRestOfAPass(t *testing.T) {
	e := newEnv(t, graphtest.Options{}, nil)
	var (
		mu      sync.Mutex
		batches []int // $batch POSTs sent when each wait began
	)
	src := e.newSource(t, func(c *msgraph.Config) {
		c.Sleep = func(ctx context.Context, d time.Duration) error {
			mu.Lock()
			batches = append(batches, e.graphLookups())
			mu.Unlock()
			if err := e.sleep.Sleep(ctx, d); err != nil {
				return err
			}
			e.clock.Advance(d)
			return nil
		}
	})
	for i := range 21 { // with admins and secops: 23, in batches of 20 and 3
		gid := fmt.Sprintf("6a000000-0000-4000-8000-%012x", i)
		must(t, e.srv.AddGroup(gid, fmt.Sprintf("Group %d", i), true))
		if i == 0 {
			must(t, e.srv.AddGroupMember(gid, carol))
		}
	}
	// The principal's own $batch and the group list pass (a FaultNextLink
	// leaves a $batch answer unchanged); the first batch of group role
	// instances is throttled.
	e.srv.InjectGraphFault(batchItself, graphtest.Fault{Kind: graphtest.FaultNextLink, Times: 2})
	e.srv.InjectGraphFault(batchItself, once(graphtest.ThrottledFault("3")))
	if _, err := src.Lookup(context.Background(), user(carol)); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if got := e.sleep.slept(); !slices.Equal(got, []time.Duration{3 * time.Second}) {
		t.Errorf("waits %v, want the one 3s retry wait", got)
	}
	if !slices.Equal(batches, []int{3}) {
		t.Errorf("$batch requests sent when the waits began: %v, want [3] (the own, the group list, the throttled one)", batches)
	}
	if n := e.graphLookups(); n != 5 {
		t.Errorf("%d $batch requests, want 5", n)
	}
}

// TenantLimits failing (the shared store unreachable) falls back to this
// process's limits, never to none: the riskyUsers limiter still spaces the
// requests, and a 429's pause still holds back the Source's next lookup.
func TestTenantLimitsFailuresFallBack(t *testing.T) {
	down := errors.New("shared store: connection refused")

	t.Run("riskyUsers", func(t *testing.T) {
		e := newEnv(t, graphtest.Options{RiskyUsersPerSecond: 1}, func(e *stack, c *msgraph.Config) {
			c.RiskRequestsPerSecond, c.RiskBurst = 1, 1
			advancingSleep(e, c)
		})
		lim := newMemLimits(e.clock.Now)
		lim.fail = down
		src := e.newSource(t, func(c *msgraph.Config) { c.TenantLimits = lim })
		for _, oid := range []string{alice, bob, carol, dave} {
			if st, err := src.Lookup(context.Background(), need(user(oid), graphcheck.NeedRisk)); err != nil || st.Risk == nil {
				t.Fatalf("%s: %+v, %v", oid, st, err)
			}
		}
		if got := e.sleep.slept(); !slices.Equal(got, []time.Duration{time.Second, time.Second, time.Second}) {
			t.Errorf("waits %v, want three of 1s from the local limiter", got)
		}
		if n := e.subRequests("/identityProtection/"); n != 4 {
			t.Errorf("%d riskyUsers requests, want 4 (none throttled)", n)
		}
		if lim.called("Take") != 4 {
			t.Errorf("%d Take calls, want 4 (one per lookup, each failing)", lim.called("Take"))
		}
	})

	t.Run("pause", func(t *testing.T) {
		e := newEnv(t, graphtest.Options{}, nil)
		lim := newMemLimits(e.clock.Now)
		lim.fail = down
		p := &probe{srv: e.srv}
		src := e.newSource(t, func(c *msgraph.Config) { c.TenantLimits = lim; c.Sleep = p.Sleep; c.MaxRetries = msgraph.NoRetries })
		e.srv.InjectGraphFault(inside("/roleManagement/"), once(graphtest.ThrottledFault("3")))
		if _, err := src.Lookup(context.Background(), user(alice)); !errors.Is(err, graphcheck.ErrUnavailable) {
			t.Fatalf("throttled lookup without retries: %v", err)
		}
		before := len(e.srv.Requests())
		if _, err := src.Lookup(context.Background(), user(bob)); err != nil {
			t.Fatal(err)
		}
		if waits, sent := p.take(); !slices.Equal(waits, []time.Duration{3 * time.Second}) || !slices.Equal(sent, []int{before}) {
			t.Errorf("the next lookup waited %v with %v requests sent (before it: %d); want the local 3s pause, before sending", waits, sent, before)
		}
		if lim.called("Pause") != 1 || lim.called("Paused") < 2 {
			t.Errorf("calls %v: the shared store was not asked", lim.calls)
		}
	})
}

// A pause that does not fit before the deadline fails the lookup at once,
// with ErrUnavailable naming the pause, and sends nothing, in the Source
// that saw the 429 and in the others. A Retry-After beyond MaxPause pauses
// for MaxPause.
func TestTenantPauseBeyondDeadline(t *testing.T) {
	e := newEnv(t, graphtest.Options{}, func(_ *stack, c *msgraph.Config) { c.Timeout = 5 * time.Second })
	lim := newMemLimits(e.clock.Now)
	a := e.newSource(t, func(c *msgraph.Config) { c.TenantLimits = lim })
	b := e.newSource(t, func(c *msgraph.Config) { c.TenantLimits = lim })

	e.srv.InjectGraphFault(inside("/roleManagement/"), once(graphtest.ThrottledFault("30")))
	if _, err := a.Lookup(context.Background(), user(alice)); !errors.Is(err, graphcheck.ErrUnavailable) {
		t.Fatalf("A, Retry-After 30s with a 5s Timeout: %v", err)
	}
	e.clock.Advance(10 * time.Second)
	for _, tc := range []struct {
		name string
		src  *msgraph.Source
	}{
		{"the Source that saw the 429", a},
		{"another Source", b},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(e.srv.Requests())
			e.sleep.take()
			_, err := tc.src.Lookup(context.Background(), user(bob))
			if !errors.Is(err, graphcheck.ErrUnavailable) || !strings.Contains(err.Error(), "paused") || !strings.Contains(err.Error(), "20s") {
				t.Errorf("Lookup: %v; want ErrUnavailable naming the pause and the 20s left", err)
			}
			if n := len(e.srv.Requests()) - before; n != 0 {
				t.Errorf("%d requests sent during the pause", n)
			}
			if w := e.sleep.take(); len(w) != 0 {
				t.Errorf("waits %v", w)
			}
		})
	}

	// 3s left: more than a 1s caller deadline allows, less than Timeout.
	e.clock.Advance(17 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	before := len(e.srv.Requests())
	if _, err := b.Lookup(ctx, user(bob)); !errors.Is(err, graphcheck.ErrUnavailable) || len(e.srv.Requests()) != before {
		t.Errorf("3s of pause, 1s deadline: %v, %d requests sent", err, len(e.srv.Requests())-before)
	}
	if _, err := b.Lookup(context.Background(), user(bob)); err != nil {
		t.Errorf("3s of pause, 5s Timeout: %v", err)
	}
	if w := e.sleep.take(); !slices.Equal(w, []time.Duration{3 * time.Second}) {
		t.Errorf("waits %v, want the 3s left", w)
	}

	// Retry-After a day: the tenant is paused for MaxPause only.
	e.srv.InjectGraphFault(inside("/roleManagement/"), once(graphtest.ThrottledFault("86400")))
	if _, err := a.Lookup(context.Background(), user(carol)); !errors.Is(err, graphcheck.ErrUnavailable) {
		t.Fatalf("Retry-After a day: %v", err)
	}
	e.clock.Advance(msgraph.MaxPause - 10*time.Second)
	if _, err := b.Lookup(context.Background(), user(carol)); !errors.Is(err, graphcheck.ErrUnavailable) {
		t.Errorf("10s before MaxPause is over: %v, want ErrUnavailable", err)
	}
	e.clock.Advance(10 * time.Second)
	e.sleep.take()
	if _, err := b.Lookup(context.Background(), user(carol)); err != nil {
		t.Errorf("after MaxPause: %v", err)
	}
	if w := e.sleep.take(); len(w) != 0 {
		t.Errorf("waits %v after MaxPause", w)
	}
}

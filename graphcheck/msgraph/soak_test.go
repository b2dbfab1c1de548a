package msgraph_test

// The soak test: many principals churn through a Guard whose state cache is
// a tenth of the population, from concurrent goroutines, with the real
// msgraph.Source reading fake tenants, while the fake clock moves across
// the end times of their roles. Every decision is checked against what the
// tenant holds at that instant.
//
// Size it with PIMGUARD_SOAK_PRINCIPALS (default 10 000, 1 000 with -short;
// the cache holds a tenth of them, at most 1 000), PIMGUARD_SOAK_WORKERS
// (default 8) and PIMGUARD_SOAK_SAMPLE (how many principals each phase
// after the first requests; default a twentieth). The default run makes
// about 12 700 Graph round trips and takes about 30 s under -race on two
// cores.

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	abstractions "github.com/microsoft/kiota-abstractions-go"
	khttp "github.com/microsoft/kiota-http-go"

	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/graphcheck/msgraph"
	"github.com/pimguard/pimguard/middleware"
)

const (
	// soakMaxCache is the Guard's state cache size for 10 000 principals
	// or more; smaller runs keep a tenth of the population.
	soakMaxCache = 1000
	// soakPerTenant is how many principals one fake tenant holds: the
	// emulator builds every active schedule instance of its tenant on each
	// request, so one tenant of 10 000 principals would measure the
	// emulator rather than pimguard. A multi-tenant API, with one Source
	// per tenant, is a real deployment shape anyway.
	soakPerTenant = 250
	// soakHot principals (the first ones, which cover every kind and end
	// time) are requested soakHotRepeat more times in every phase, so that
	// some decisions come from cache hits.
	soakHot       = 200
	soakHotRepeat = 3
	// soakCrossCheckEvery: one principal in this many is also looked up
	// directly (no cache) in every phase, to check the model against the
	// tenant itself.
	soakCrossCheckEvery = 199
)

// soakEnv reads a positive integer knob from the environment.
func soakEnv(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// soakKind is how a principal holds, or does not hold, the required role.
type soakKind int

const (
	soakPermanent soakKind = iota // Assigned, no end
	soakTimeBound                 // Assigned with an endDateTime
	soakActivated                 // eligible, activated at t0 until its end
	soakOtherRole                 // holds Global Reader, not the required role
	soakEligible                  // eligible only, never activated
	soakNone                      // nothing at all
)

func (k soakKind) String() string {
	return [...]string{"permanent", "time-bound", "activated", "other-role", "eligible-only", "none"}[k]
}

// soakMix is the kind of principal i%len(soakMix): half hold a role
// instance, a third of the population holds the required role at t0.
var soakMix = []soakKind{soakPermanent, soakTimeBound, soakActivated, soakActivated, soakOtherRole,
	soakEligible, soakEligible, soakNone, soakNone, soakNone}

// soakPrincipal is one principal and what the test seeded for it.
type soakPrincipal struct {
	i    int
	p    *middleware.Principal
	kind soakKind
	end  time.Time // end of the required role, for time-bound and activated
}

// holds is the seeded truth: whether the required role is active at now
// (an assignment is over at the very instant of its end).
func (sp *soakPrincipal) holds(now time.Time) bool {
	switch sp.kind {
	case soakPermanent:
		return true
	case soakTimeBound, soakActivated:
		return now.Before(sp.end)
	}
	return false
}

// Phases, as offsets from t0. The clock is frozen during a phase and moved
// only between phases, with every request finished, so that the expected
// answer of each request is fixed. Roles end on phase boundaries, just
// before and after them, and between phase 1 and phase 2, which comes
// before CacheTTL has run out on the states phase 1 fetched. Only end times
// change the truth: a role deactivated early may be honoured for up to
// CacheTTL by design, which this test does not model.
var (
	soakPhases = []time.Duration{0, 15 * time.Minute, 15*time.Minute + 10*time.Second, 45 * time.Minute}
	soakEnds   = []time.Duration{
		15 * time.Minute,                    // exactly at phase 1
		15*time.Minute - time.Second,        // just before phase 1
		15*time.Minute + time.Second,        // just after phase 1
		15*time.Minute + 5*time.Second,      // between phases 1 and 2, within CacheTTL
		15*time.Minute + 10*time.Second,     // exactly at phase 2
		15*time.Minute + 10*time.Second + 1, // 1 ns after phase 2
		30 * time.Minute,                    // between phases 2 and 3
		45 * time.Minute,                    // exactly at phase 3
		2 * time.Hour,                       // after the test
	}
)

// soakNoCompression is a request context value that turns off Kiota's
// gzip compression of request bodies (Kiota reads request options from the
// context). A gzip writer allocates about 1 MB, which costs more than the
// rest of a lookup under -race; the emulator accepts both encodings, and
// the compressed path is exercised by every other test.
func soakNoCompression(ctx context.Context) context.Context {
	return context.WithValue(ctx, abstractions.RequestOptionKey{Key: "CompressionHandler"}, khttp.NewCompressionOptionsReference(false))
}

func TestSoak(t *testing.T) {
	def := 10_000
	if testing.Short() {
		def = 1_000
	}
	n := soakEnv(t, "PIMGUARD_SOAK_PRINCIPALS", def)
	workers := soakEnv(t, "PIMGUARD_SOAK_WORKERS", 8)
	sample := soakEnv(t, "PIMGUARD_SOAK_SAMPLE", max(1, n/20))
	tenants := (n + soakPerTenant - 1) / soakPerTenant
	cacheSize := min(soakMaxCache, max(1, n/10))
	// The test allocates a lot and keeps little: fewer collections.
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	start := time.Now()

	clock := graphtest.NewClock(t0)
	// One keep-alive pool sized for the workers, shared by the Sources.
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = workers
	t.Cleanup(transport.CloseIdleConnections)
	// One stack per tenant, on one clock: a tenant and its Source, without
	// log records (too many to keep).
	stacks := make([]*stack, tenants)
	tenantIDs := make([]string, tenants)
	sources := make(map[string]*msgraph.Source, tenants)
	for k := range stacks {
		id := fmt.Sprintf("7e000000-0000-4000-8000-%012x", k)
		tenantIDs[k] = id
		stacks[k] = newStack(t, stackOptions{
			clock: clock, tenant: graphtest.Options{Tenants: []string{id}},
			bare: true, anonymous: true, quiet: true, sourceOnly: true,
			graph: func(_ *stack, c *msgraph.Config) {
				c.Timeout = time.Minute // a slow -race run is not an outage
				c.Transport = transport
			},
		})
		sources[id] = stacks[k].src
	}
	// The tenants are seeded concurrently.
	pop := make([]*soakPrincipal, n)
	var (
		seedMu  sync.Mutex
		seedErr error
		seedWG  sync.WaitGroup
		slots   = make(chan struct{}, workers)
	)
	for k, st := range stacks {
		seedWG.Go(func() {
			slots <- struct{}{}
			defer func() { <-slots }()
			var err error
			for i := k; i < n && err == nil; i += tenants {
				pop[i], err = soakSeed(st.srv, tenantIDs[k], i)
			}
			if err != nil {
				seedMu.Lock()
				defer seedMu.Unlock()
				seedErr = cmp.Or(seedErr, err)
			}
		})
	}
	seedWG.Wait()
	if seedErr != nil {
		t.Fatalf("seeding: %v", seedErr)
	}
	kinds := map[soakKind]int{}
	for _, sp := range pop {
		kinds[sp.kind]++
	}
	route := graphcheck.SourceFunc(func(ctx context.Context, p graphcheck.Principal) (*graphcheck.State, error) {
		src, ok := sources[p.TenantID]
		if !ok {
			return nil, fmt.Errorf("%w: no source for tenant %s", graphcheck.ErrUnavailable, p.TenantID)
		}
		return src.Lookup(ctx, p)
	})
	seeded := time.Since(start)

	// One Guard over every tenant's Source, on their clock.
	guard := stacks[0].newGuard(t, func(c *middleware.GuardConfig) {
		c.Source = route
		c.CacheSize = cacheSize
		c.LookupTimeout = time.Minute
	})
	var served atomic.Int64
	h := guard.Require(middleware.Role(ga))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		if _, ok := middleware.LiveStateFromContext(r.Context()); !ok {
			t.Error("handler reached without the live state")
		}
	}))

	var requests, allowed, denied, mismatches, crossChecks atomic.Int64
	var reportMu sync.Mutex
	reported := 0
	mismatch := func(format string, args ...any) {
		mismatches.Add(1)
		reportMu.Lock()
		defer reportMu.Unlock()
		if reported < 20 {
			reported++
			t.Errorf(format, args...)
		}
	}

	rng := rand.New(rand.NewPCG(6, 1))
	seen := make([]bool, n)
	for phase, off := range soakPhases {
		clock.Set(t0.Add(off))
		now := clock.Now()

		// Phase 0 requests every principal; later phases a random sample.
		// The hot ones come back a few times in every phase.
		var order []*soakPrincipal
		if phase == 0 {
			order = append(order, pop...)
		} else {
			for _, i := range rng.Perm(n)[:min(sample, n)] {
				order = append(order, pop[i])
			}
		}
		for range soakHotRepeat + 1 {
			order = append(order, pop[:min(soakHot, n)]...)
		}
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })

		var next atomic.Int64
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for {
					i := int(next.Add(1)) - 1
					if i >= len(order) {
						return
					}
					sp := order[i]
					want := sp.holds(now)
					req := httptest.NewRequest(http.MethodGet, "/api/admin", nil)
					req = req.WithContext(soakNoCompression(middleware.ContextWithPrincipal(req.Context(), sp.p)))
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, req)
					requests.Add(1)
					switch {
					case want && rec.Code == http.StatusOK:
						allowed.Add(1)
					case !want && rec.Code == http.StatusForbidden:
						denied.Add(1)
					default:
						mismatch("phase %d (t0+%v): %s principal %s (end %v): %d %s, want allowed=%v",
							phase, off, sp.kind, sp.p.ObjectID, sp.end, rec.Code, rec.Body.String(), want)
					}
				}
			})
		}
		wg.Wait()
		for _, sp := range order {
			seen[sp.i] = true
		}

		// The model is the tenant's truth: ask the tenant directly, without
		// the cache, for a sample of principals at the same instant.
		for i := phase; i < n; i += soakCrossCheckEvery {
			sp := pop[i]
			s, err := sources[sp.p.TenantID].Lookup(soakNoCompression(context.Background()),
				graphcheck.Principal{TenantID: sp.p.TenantID, ObjectID: sp.p.ObjectID})
			if err != nil {
				t.Fatalf("cross-check of %s: %v", sp.p.ObjectID, err)
			}
			crossChecks.Add(1)
			if _, ok := s.RoleActive(now, ga, "/"); ok != sp.holds(now) {
				mismatch("phase %d: the tenant says %s (%s) holds the role: %v; the model: %v", phase, sp.p.ObjectID, sp.kind, ok, sp.holds(now))
			}
		}
	}

	distinct := 0
	for _, ok := range seen {
		if ok {
			distinct++
		}
	}
	trips := 0
	for _, st := range stacks {
		trips += st.roundTrips()
	}
	switch {
	case distinct != n:
		t.Errorf("%d of %d principals were requested", distinct, n)
	case served.Load() != allowed.Load():
		t.Errorf("the handler ran %d times for %d allowed decisions", served.Load(), allowed.Load())
	case mismatches.Load() != 0:
		t.Errorf("%d mismatches", mismatches.Load())
	}
	for k, st := range stacks {
		if w := st.sleep.slept(); len(w) != 0 {
			t.Errorf("the Source of tenant %s waited to retry %d times", tenantIDs[k], len(w))
		}
	}
	t.Logf("soak: %d principals (%v) in %d tenants, cache %d, %d workers, %d phases: %d requests, %d decisions checked (%d allowed, %d denied), %d mismatches; %d tenant cross-checks; %d Graph round trips; seeding %v, total %v",
		n, kinds, tenants, cacheSize, workers, len(soakPhases), requests.Load(), allowed.Load()+denied.Load()+mismatches.Load(),
		allowed.Load(), denied.Load(), mismatches.Load(), crossChecks.Load(), trips, seeded.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

// msgraph.New may be called from several goroutines, e.g. by a
// multi-tenant service that creates one Source per tenant on demand. Under
// -race this failed until New serialised its calls (newMu, source.go):
// every NewGraphServiceClient call goes through kiota-http-go's
// NetHttpRequestAdapter.EnableBackingStore, which assigns the package
// global store.BackingStoreFactoryInstance without synchronisation, while
// NewGraphServiceClient reads it. (New concurrent with Lookups of an
// existing Source is race-free.)
func TestSoakConcurrentNew(t *testing.T) {
	s := newStack(t, stackOptions{bare: true, anonymous: true, sourceOnly: true}) // the first client
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if _, err := msgraph.New(s.cfg); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
}

// soakSeed adds principal i to srv with the PIM state of its kind.
func soakSeed(srv *graphtest.Server, tenant string, i int) (*soakPrincipal, error) {
	oid := fmt.Sprintf("50a40000-0000-4000-8000-%012x", i)
	sp := &soakPrincipal{i: i, p: &middleware.Principal{TenantID: tenant, ObjectID: oid}, kind: soakMix[i%len(soakMix)]}
	if err := srv.AddUser(oid, "soak"+strconv.Itoa(i)+"@contoso.test"); err != nil {
		return nil, err
	}
	end := t0.Add(soakEnds[(i/len(soakMix))%len(soakEnds)])
	var err error
	switch sp.kind {
	case soakPermanent:
		err = srv.AssignRole(oid, ga, "/", time.Time{}, time.Time{})
	case soakTimeBound:
		sp.end = end
		err = srv.AssignRole(oid, ga, "/", t0.Add(-time.Hour), end)
	case soakActivated:
		if err = srv.MakeEligible(oid, ga, "/", time.Time{}); err == nil {
			sp.end, err = srv.ActivateRole(oid, ga, "/", end.Sub(t0))
		}
	case soakEligible:
		err = srv.MakeEligible(oid, ga, "/", time.Time{})
	case soakOtherRole:
		err = srv.AssignRole(oid, reader, "/", time.Time{}, time.Time{})
	}
	return sp, err
}

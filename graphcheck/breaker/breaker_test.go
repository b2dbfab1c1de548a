package breaker_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/graphcheck/breaker"
	"github.com/pimguard/pimguard/internal/logtest"
	"github.com/pimguard/pimguard/internal/metrictest"
)

const (
	tenantA = "11111111-1111-4111-8111-111111111111"
	tenantB = "22222222-2222-4222-8222-222222222222"
)

// oid returns the object ID of test principal i.
func oid(i int) string { return fmt.Sprintf("%08x-0000-4000-8000-000000000000", i) }

func principal(tenant string, i int) graphcheck.Principal {
	return graphcheck.Principal{TenantID: tenant, ObjectID: oid(i)}
}

// Errors as a Graph source returns them.
var (
	errOutage  = fmt.Errorf("%w: %w: 503 Service Unavailable", graphcheck.ErrUnavailable, graphcheck.ErrOutage)
	errGarbage = fmt.Errorf("%w: malformed JSON in the answer", graphcheck.ErrUnavailable)
	errGone    = fmt.Errorf("%w: 404 Request_ResourceNotFound", graphcheck.ErrPrincipalNotFound)
	errDenied  = &graphcheck.PermissionError{Permission: "RoleAssignmentSchedule.Read.Directory", Err: graphcheck.ErrPermissionDenied}
)

// fakeGraph is a Source whose answer per call the test sets: answer(p)
// returns the error to fail with, nil for a state. It counts calls per
// tenant.
type fakeGraph struct {
	mu     sync.Mutex
	answer func(ctx context.Context, p graphcheck.Principal) error
	calls  map[string]int
}

func newFakeGraph(answer func(ctx context.Context, p graphcheck.Principal) error) *fakeGraph {
	return &fakeGraph{answer: answer, calls: map[string]int{}}
}

func (f *fakeGraph) Lookup(ctx context.Context, p graphcheck.Principal) (*graphcheck.State, error) {
	f.mu.Lock()
	f.calls[p.TenantID]++
	answer := f.answer
	f.mu.Unlock()
	if err := answer(ctx, p); err != nil {
		return nil, err
	}
	return &graphcheck.State{TenantID: p.TenantID, ObjectID: p.ObjectID, FetchedAt: time.Now()}, nil
}

func (f *fakeGraph) set(answer func(ctx context.Context, p graphcheck.Principal) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answer = answer
}

func (f *fakeGraph) callsFor(tenant string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[tenant]
}

func always(err error) func(context.Context, graphcheck.Principal) error {
	return func(context.Context, graphcheck.Principal) error { return err }
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// isOpen reports whether a lookup of a fresh principal of tenant is failed
// fast (without calling the Source).
func isOpen(t *testing.T, s *breaker.Source, f *fakeGraph, tenant string) bool {
	t.Helper()
	before := f.callsFor(tenant)
	_, err := s.Lookup(context.Background(), principal(tenant, 9999))
	var oe *breaker.OpenError
	fast := errors.As(err, &oe)
	if fast != (f.callsFor(tenant) == before) {
		t.Fatalf("lookup failed fast %v but the Source was called %d times", fast, f.callsFor(tenant)-before)
	}
	return fast
}

// step is one lookup: principal i of tenantA, answered with err.
type step struct {
	i   int
	err error
}

func repeat(n int, f func(k int) step) []step {
	var out []step
	for k := range n {
		out = append(out, f(k))
	}
	return out
}

func TestBreakerOpensOnlyOnOutagesFromSeveralPrincipals(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
		open  bool
	}{
		{"5 outages from 5 principals", repeat(5, func(k int) step { return step{k, errOutage} }), true},
		{"4 outages from 5 principals", repeat(4, func(k int) step { return step{k, errOutage} }), false},
		{"4 from one principal, 1 from another", append(repeat(4, func(int) step { return step{0, errOutage} }), step{1, errOutage}), true},
		{"50 outages from one principal", repeat(50, func(int) step { return step{0, errOutage} }), false},
		{"50 malformed answers from 50 principals", repeat(50, func(k int) step { return step{k, errGarbage} }), false},
		{"an answer in between resets", append(append(repeat(4, func(k int) step { return step{k, errOutage} }), step{10, nil}),
			repeat(4, func(k int) step { return step{k, errOutage} })...), false},
		{"not found is an answer", append(append(repeat(4, func(k int) step { return step{k, errOutage} }), step{10, errGone}),
			repeat(4, func(k int) step { return step{k, errOutage} })...), false},
		{"a refused permission is an answer", append(append(repeat(4, func(k int) step { return step{k, errOutage} }), step{10, errDenied}),
			repeat(4, func(k int) step { return step{k, errOutage} })...), false},
		{"a malformed answer neither resets nor counts", append(append(repeat(4, func(k int) step { return step{k, errOutage} }), step{10, errGarbage}),
			step{11, errOutage}), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var next error
			f := newFakeGraph(func(context.Context, graphcheck.Principal) error { return next })
			s := breaker.New(f, breaker.Config{Logger: quiet()})
			for _, st := range tt.steps {
				next = st.err
				if _, err := s.Lookup(context.Background(), principal(tenantA, st.i)); !errors.Is(err, st.err) && err != st.err {
					t.Fatalf("lookup of %d: %v, want %v", st.i, err, st.err)
				}
			}
			next = nil
			if got := isOpen(t, s, f, tenantA); got != tt.open {
				t.Fatalf("open %v, want %v", got, tt.open)
			}
		})
	}
}

// One principal whose lookups hang until they time out cannot open the
// breaker; timeouts across principals do. Run on synctest's clock.
func TestBreakerTimeouts(t *testing.T) {
	hang := func(ctx context.Context, p graphcheck.Principal) error {
		<-ctx.Done()
		return fmt.Errorf("%w: %w: %w", graphcheck.ErrUnavailable, graphcheck.ErrOutage, ctx.Err())
	}
	for _, principals := range []int{1, 3} {
		t.Run(fmt.Sprintf("%d principals", principals), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFakeGraph(hang)
				s := breaker.New(f, breaker.Config{Logger: quiet()})
				var wg sync.WaitGroup
				for k := range 10 {
					wg.Go(func() {
						ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
						defer cancel()
						_, _ = s.Lookup(ctx, principal(tenantA, k%principals))
					})
				}
				wg.Wait()
				f.set(always(nil))
				if got, want := isOpen(t, s, f, tenantA), principals > 1; got != want {
					t.Fatalf("open %v, want %v", got, want)
				}
			})
		})
	}

	// A caller that gave up says nothing about Graph.
	t.Run("cancelled callers", func(t *testing.T) {
		f := newFakeGraph(func(ctx context.Context, _ graphcheck.Principal) error {
			return fmt.Errorf("%w: %w: %w", graphcheck.ErrUnavailable, graphcheck.ErrOutage, ctx.Err())
		})
		s := breaker.New(f, breaker.Config{Logger: quiet()})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		for k := range 20 {
			_, _ = s.Lookup(ctx, principal(tenantA, k))
		}
		if isOpen(t, s, f, tenantA) {
			t.Fatal("cancelled lookups opened the breaker")
		}
	})
}

// openBreaker makes 5 principals of tenant fail with an outage.
func openBreaker(t *testing.T, s *breaker.Source, f *fakeGraph, tenant string) {
	t.Helper()
	f.set(always(errOutage))
	for k := range 5 {
		_, _ = s.Lookup(context.Background(), principal(tenant, k))
	}
	f.set(always(nil))
	if !isOpen(t, s, f, tenant) {
		t.Fatal("the breaker did not open")
	}
}

// While open: at once an OpenError wrapping ErrUnavailable and ErrOutage,
// with the rest of the cool-down as RetryAfter, without calling the
// Source; other tenants are not affected.
func TestBreakerOpenFailsFastPerTenant(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeGraph(always(nil))
		s := breaker.New(f, breaker.Config{Logger: quiet(), Timeout: 30 * time.Second})
		openBreaker(t, s, f, tenantA)
		opened := time.Now()
		time.Sleep(12 * time.Second)

		calls := f.callsFor(tenantA)
		_, err := s.Lookup(context.Background(), principal(tenantA, 42))
		var oe *breaker.OpenError
		if !errors.As(err, &oe) || !errors.Is(err, graphcheck.ErrUnavailable) || !errors.Is(err, graphcheck.ErrOutage) {
			t.Fatalf("error %v (%T), want an OpenError wrapping ErrUnavailable and ErrOutage", err, err)
		}
		if oe.TenantID != tenantA || !oe.Until.Equal(opened.Add(30*time.Second)) || oe.RetryAfter() != 18*time.Second {
			t.Errorf("OpenError %+v, RetryAfter %v; want until %v, 18s", oe, oe.RetryAfter(), opened.Add(30*time.Second))
		}
		if f.callsFor(tenantA) != calls {
			t.Error("the Source was called while the breaker was open")
		}
		if _, err := s.Lookup(context.Background(), principal(tenantB, 1)); err != nil {
			t.Fatalf("tenant B: %v", err)
		}
		if isOpen(t, s, f, tenantB) {
			t.Fatal("tenant B's breaker opened with tenant A's")
		}
		// Tenant IDs are compared in lower case.
		if _, err := s.Lookup(context.Background(), principal(strings.ToUpper(tenantA), 1)); !errors.As(err, &oe) {
			t.Fatalf("upper-case tenant A: %v", err)
		}
	})
}

// After the cool-down one lookup probes while the others keep failing
// fast; its answer closes the breaker, an outage reopens it, and a lookup
// that says nothing (malformed, panicking) lets the next one probe.
func TestBreakerHalfOpenProbe(t *testing.T) {
	tests := []struct {
		name      string
		probe     func() error // what the probe's lookup returns or does
		afterOpen bool         // the breaker is open after the probe
		reprobes  bool         // the next lookup probes again
	}{
		{name: "answer closes", probe: func() error { return nil }},
		{name: "not found closes", probe: func() error { return errGone }},
		{name: "outage reopens", probe: func() error { return errOutage }, afterOpen: true},
		{name: "malformed answer probes again", probe: func() error { return errGarbage }, reprobes: true},
		{name: "panic probes again", probe: func() error { panic("boom") }, reprobes: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFakeGraph(always(nil))
				s := breaker.New(f, breaker.Config{Logger: quiet(), Timeout: 10 * time.Second})
				openBreaker(t, s, f, tenantA)
				time.Sleep(10*time.Second + time.Nanosecond)

				release := make(chan struct{})
				f.set(func(context.Context, graphcheck.Principal) error { <-release; return tt.probe() })
				calls := f.callsFor(tenantA)
				var wg sync.WaitGroup
				wg.Go(func() {
					defer func() { _ = recover() }()
					_, _ = s.Lookup(context.Background(), principal(tenantA, 100))
				})
				synctest.Wait() // the probe is in the Source
				var fast atomic.Int32
				for k := range 10 {
					wg.Go(func() {
						_, err := s.Lookup(context.Background(), principal(tenantA, 200+k))
						var oe *breaker.OpenError
						if errors.As(err, &oe) && oe.Until.IsZero() && oe.RetryAfter() == 0 {
							fast.Add(1)
						}
					})
				}
				synctest.Wait()
				if n := f.callsFor(tenantA) - calls; n != 1 || fast.Load() != 10 {
					t.Fatalf("%d lookups reached the Source and %d failed fast while probing; want 1 and 10", n, fast.Load())
				}
				for _, c := range s.Health() {
					if c.Name == "breaker/"+tenantA && (!c.Ready || !c.Degraded) {
						t.Errorf("half-open: %+v, want ready and degraded", c)
					}
				}
				close(release)
				wg.Wait()

				f.set(always(nil))
				if tt.reprobes {
					if _, err := s.Lookup(context.Background(), principal(tenantA, 300)); err != nil {
						t.Fatalf("the next lookup did not probe: %v", err)
					}
					if isOpen(t, s, f, tenantA) {
						t.Fatal("still open after an answered probe")
					}
					return
				}
				if got := isOpen(t, s, f, tenantA); got != tt.afterOpen {
					t.Fatalf("open after the probe %v, want %v", got, tt.afterOpen)
				}
				if tt.afterOpen { // another full cool-down, then a probe again
					time.Sleep(10 * time.Second)
					if !isOpen(t, s, f, tenantA) {
						t.Fatal("closed before the second cool-down ended")
					}
					time.Sleep(time.Nanosecond)
					if _, err := s.Lookup(context.Background(), principal(tenantA, 400)); err != nil {
						t.Fatalf("second probe: %v", err)
					}
				}
			})
		})
	}
}

// A full cycle is one log line and one count per state change, a count
// per lookup failed fast, the tenants per state, and a health item per
// tenant that follows.
func TestBreakerReports(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		logs := &logtest.Recorder{}
		reader := sdkmetric.NewManualReader()
		inner := &reportingGraph{fakeGraph: newFakeGraph(always(nil)), item: graphcheck.HealthCheck{Name: "graph-client", Ready: true}}
		s := breaker.New(inner, breaker.Config{Logger: slog.New(logs), Timeout: 10 * time.Second,
			MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))})
		health := func() map[string]graphcheck.HealthCheck {
			m := map[string]graphcheck.HealthCheck{}
			for i, c := range s.Health() {
				if i == 0 && c != inner.item {
					t.Errorf("first item %+v, want the wrapped Source's", c)
				}
				m[c.Name] = c
			}
			return m
		}
		start := time.Now()
		_, _ = s.Lookup(context.Background(), principal(tenantB, 1))
		if c := health()["breaker/"+tenantB]; !c.Ready || c.Degraded || !c.Since.Equal(start) {
			t.Errorf("closed: %+v", c)
		}

		time.Sleep(time.Second)
		openBreaker(t, s, inner.fakeGraph, tenantA) // its check is one lookup failed fast
		opened := time.Now()
		for k := range 3 {
			_, _ = s.Lookup(context.Background(), principal(tenantA, 50+k))
		}
		c := health()["breaker/"+tenantA]
		if c.Ready || c.Degraded || !c.Since.Equal(opened) || !strings.Contains(c.Detail, opened.Add(10*time.Second).UTC().Format(time.RFC3339)) {
			t.Errorf("open: %+v", c)
		}
		m := metrictest.Collect(t, reader)
		if got := m["pimguard.breaker.tenants"].Points; got["state=open"] != 1 || got["state=closed"] != 1 || got["state=half-open"] != 0 {
			t.Errorf("tenants %v", got)
		}
		if n := m["pimguard.breaker.rejected"].Total(); n != 4 {
			t.Errorf("rejected %d, want 4", n)
		}

		time.Sleep(10*time.Second + time.Nanosecond)
		if c := health()["breaker/"+tenantA]; !c.Ready || !c.Degraded || !c.Since.Equal(opened.Add(10*time.Second)) {
			t.Errorf("half-open: %+v", c)
		}
		_, _ = s.Lookup(context.Background(), principal(tenantA, 1)) // the probe, answered
		if c := health()["breaker/"+tenantA]; !c.Ready || c.Degraded || !c.Since.Equal(time.Now()) {
			t.Errorf("closed again: %+v", c)
		}
		if got := metrictest.Collect(t, reader)["pimguard.breaker.transitions"].Points; got["state=open"] != 1 || got["state=half-open"] != 1 || got["state=closed"] != 1 {
			t.Errorf("transitions %v", got)
		}
		want := []string{
			"WARN breaker: Graph outage; lookups for the tenant fail fast (503 pim_unavailable) until the cool-down ends",
			"INFO breaker: cool-down over; the next lookup probes Graph",
			"INFO breaker: Graph answered the probe; lookups go to Graph again",
		}
		if got := logs.All(); !slices.Equal(got, want) {
			t.Errorf("log lines\n%q\nwant\n%q", got, want)
		}
	})
}

// reportingGraph is a fakeGraph with the optional capabilities.
type reportingGraph struct {
	*fakeGraph
	item        graphcheck.HealthCheck
	purged      []string
	preflighted graphcheck.Need
}

func (r *reportingGraph) Health() []graphcheck.HealthCheck { return []graphcheck.HealthCheck{r.item} }
func (r *reportingGraph) Purge(tenantID, objectID string) {
	r.purged = append(r.purged, tenantID+"/"+objectID)
}
func (r *reportingGraph) PurgeAll() { r.purged = append(r.purged, "all") }
func (r *reportingGraph) Preflight(_ context.Context, need graphcheck.Need) error {
	r.preflighted = need
	return errDenied
}

func TestBreakerPassesCapabilitiesThrough(t *testing.T) {
	inner := &reportingGraph{fakeGraph: newFakeGraph(always(nil)), item: graphcheck.HealthCheck{Name: "x", Ready: true}}
	s := breaker.New(inner, breaker.Config{Logger: quiet()})
	s.Purge(tenantA, oid(1))
	s.PurgeAll()
	if !slices.Equal(inner.purged, []string{tenantA + "/" + oid(1), "all"}) {
		t.Errorf("purged %v", inner.purged)
	}
	if err := s.Preflight(context.Background(), graphcheck.NeedRisk); !errors.Is(err, graphcheck.ErrPermissionDenied) || inner.preflighted != graphcheck.NeedRisk {
		t.Errorf("Preflight: %v, need %v", err, inner.preflighted)
	}
	if got := s.Health(); len(got) != 1 || got[0] != inner.item {
		t.Errorf("Health %+v", got)
	}

	bare := breaker.New(newFakeGraph(always(nil)), breaker.Config{Logger: quiet()})
	bare.Purge(tenantA, oid(1)) // nothing to purge: no panic
	bare.PurgeAll()
	if err := bare.Preflight(context.Background(), 0); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Preflight of a Source without it: %v", err)
	}
	if got := bare.Health(); len(got) != 0 {
		t.Errorf("Health before any lookup: %+v", got)
	}
}

func TestNewSourceRejectsBadConfig(t *testing.T) {
	src := newFakeGraph(always(nil))
	for _, tt := range []struct {
		name string
		src  graphcheck.Source
		cfg  breaker.Config
	}{
		{"nil source", nil, breaker.Config{}},
		{"one principal", src, breaker.Config{Principals: 1}},
		{"negative failures", src, breaker.Config{Failures: -1}},
		{"negative principals", src, breaker.Config{Principals: -2}},
		{"negative timeout", src, breaker.Config{Timeout: -time.Second}},
		{"negative max tenants", src, breaker.Config{MaxTenants: -1}},
	} {
		if _, err := breaker.NewSource(tt.src, tt.cfg); err == nil {
			t.Errorf("%s: no error", tt.name)
		}
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("New with Principals 1 did not panic")
			}
		}()
		breaker.New(src, breaker.Config{Principals: 1})
	}()
}

// Configured thresholds apply: 3 outages from 3 principals open a breaker
// configured for 3 and 3, not one configured for 4.
func TestBreakerThresholds(t *testing.T) {
	for _, tt := range []struct {
		cfg  breaker.Config
		open bool
	}{
		{breaker.Config{Failures: 3, Principals: 3}, true},
		{breaker.Config{Failures: 4, Principals: 2}, false},
		{breaker.Config{Failures: 2, Principals: 4}, false},
	} {
		f := newFakeGraph(always(errOutage))
		tt.cfg.Logger = quiet()
		s := breaker.New(f, tt.cfg)
		for k := range 3 {
			_, _ = s.Lookup(context.Background(), principal(tenantA, k))
		}
		f.set(always(nil))
		if got := isOpen(t, s, f, tenantA); got != tt.open {
			t.Errorf("%+v: open %v, want %v", tt.cfg, got, tt.open)
		}
	}
}

// A full table of breakers drops idle ones for new tenants; when every
// breaker is busy, a new tenant's lookups go to the Source unprotected.
func TestBreakerMaxTenants(t *testing.T) {
	f := newFakeGraph(always(nil))
	s := breaker.New(f, breaker.Config{Logger: quiet(), MaxTenants: 2})
	tenantC := "33333333-3333-4333-8333-333333333333"
	openBreaker(t, s, f, tenantA)
	_, _ = s.Lookup(context.Background(), principal(tenantB, 1)) // idle
	if _, err := s.Lookup(context.Background(), principal(tenantC, 1)); err != nil {
		t.Fatal(err)
	}
	names := func() (out []string) {
		for _, c := range s.Health() {
			out = append(out, c.Name)
		}
		return out
	}
	if got := names(); !slices.Equal(got, []string{"breaker/" + tenantA, "breaker/" + tenantC}) {
		t.Fatalf("breakers %v: want tenant B's dropped for C's", got)
	}
	openBreaker(t, s, f, tenantC)
	if _, err := s.Lookup(context.Background(), principal(tenantB, 1)); err != nil {
		t.Fatalf("tenant B without a breaker: %v", err)
	}
	if got := names(); len(got) != 2 {
		t.Fatalf("breakers %v", got)
	}
}

// fakeDirectory is a fakeGraph that also reads users: its User answers as
// its Lookup would for the user as a principal.
type fakeDirectory struct{ *fakeGraph }

func (d fakeDirectory) User(ctx context.Context, tenantID, userID string) (*graphcheck.DirectoryUser, error) {
	if _, err := d.Lookup(ctx, graphcheck.Principal{TenantID: tenantID, ObjectID: userID}); err != nil {
		return nil, err
	}
	return &graphcheck.DirectoryUser{TenantID: tenantID, ID: userID}, nil
}

// A handler's directory read goes through the tenant's breaker: failed
// fast while it is open, and its outages count toward opening it.
func TestBreakerUserDirectory(t *testing.T) {
	f := newFakeGraph(always(nil))
	s := breaker.New(fakeDirectory{f}, breaker.Config{Logger: quiet()})
	ctx := context.Background()
	if u, err := s.User(ctx, tenantA, oid(1)); err != nil || u.ID != oid(1) {
		t.Fatalf("User = %+v, %v", u, err)
	}
	f.set(always(errOutage))
	for k := range 5 { // outages of directory reads alone, 5 users
		if _, err := s.User(ctx, tenantA, oid(10+k)); !errors.Is(err, graphcheck.ErrOutage) {
			t.Fatalf("User %d: %v", k, err)
		}
	}
	before := f.callsFor(tenantA)
	_, err := s.User(ctx, tenantA, oid(20))
	var open *breaker.OpenError
	if !errors.As(err, &open) || !errors.Is(err, graphcheck.ErrUnavailable) {
		t.Fatalf("User with the breaker open: %v, want an OpenError", err)
	}
	if f.callsFor(tenantA) != before {
		t.Fatal("User reached the directory while the breaker was open")
	}
	if !isOpen(t, s, f, tenantA) {
		t.Fatal("directory outages did not open the tenant's breaker for lookups")
	}
	if _, err := breaker.New(f, breaker.Config{Logger: quiet()}).User(ctx, tenantA, oid(1)); !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("User over a Source without a directory: %v", err)
	}
}

package msgraph_test

// Figures of snapshot mode against per-principal mode (issue 17), measured
// side by side on one generated tenant (graphtest.Server.Generate: 10 000
// users, 2 000 active role instances across tenant-wide roles,
// administrative units and 40 role-assignable groups, 50 PIM-managed
// groups) and one fake clock:
//
//	go test -run 'TestSnapshot(Figures|Soak)' -v ./graphcheck/msgraph/                     # P = 100; a 10-minute soak on a small tenant
//	go test -run 'TestSnapshot(Figures|Soak)' -v -timeout 30m ./graphcheck/msgraph/ -args -snapshot.large   # P = 100, 1 000, 10 000; a 1-hour soak on the large tenant
//
// Both modes keep the same freshness promise, a deactivation honoured for
// at most 30 s: per-principal mode with the Guard's CacheTTL of 30 s,
// snapshot mode with SweepInterval 15 s and CacheTTL 15 s. Nothing here
// asserts elapsed real time: the figures are logged, and the assertions are
// the goals themselves (0 Graph requests for a cold burst, 0 mismatches),
// which hold by construction on a fake clock.

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/graphcheck/msgraph"
	"github.com/pimguard/pimguard/middleware"
)

var snapshotLarge = flag.Bool("snapshot.large", false, "TestSnapshotFigures and TestSnapshotSoak: add P = 1 000 and 10 000, soak an hour on the large tenant (slow: run without -race)")

const (
	// figT is the freshness promise of both modes.
	figT = 30 * time.Second
	// figWindow is the steady-state window over which traffic is counted,
	// after one figT of warm-up; every principal sends a request every
	// figTick.
	figWindow = 2 * time.Minute
	figTick   = 5 * time.Second
)

// figEnv is the generated tenant, a Source over it, and a Snapshot over
// that Source, on one fake clock.
type figEnv struct {
	*stack
	gen  *graphtest.GeneratedTenant
	snap *msgraph.Snapshot
}

func newFigEnv(tb testing.TB, spec graphtest.TenantSpec) *figEnv {
	tb.Helper()
	s := newStack(tb, stackOptions{start: perfT0, bare: true, anonymous: true, quiet: true, sourceOnly: true})
	spec.Seed = 17
	gen, err := s.srv.Generate(spec)
	if err != nil {
		tb.Fatal(err)
	}
	sn, err := msgraph.NewSnapshot(s.src, msgraph.SnapshotConfig{SweepInterval: figT / 2, RefreshAhead: msgraph.NoRefreshAhead})
	if err != nil {
		tb.Fatal(err)
	}
	return &figEnv{stack: s, gen: gen, snap: sn}
}

// guard returns a Guard over src with the given CacheTTL, on the stack's
// clock, logging nothing.
func (e *figEnv) guard(tb testing.TB, src graphcheck.Source, ttl time.Duration) *middleware.Guard {
	tb.Helper()
	g, err := middleware.NewGuard(middleware.GuardConfig{Source: src, CacheTTL: ttl, CacheSize: 20_000, Now: e.clock.Now,
		Logger: e.logger, MeterProvider: nil})
	if err != nil {
		tb.Fatal(err)
	}
	for _, gid := range e.gen.PIMGroups {
		g.Require(middleware.GroupMember(gid)) // what an API's routes would do; a snapshot watches them
	}
	return g
}

// check asks g whether oid meets req now: nil when allowed.
func check(g *middleware.Guard, oid string, req middleware.Requirement) *middleware.Rejection {
	r := httptest.NewRequest(http.MethodGet, "/api", nil)
	r = r.WithContext(middleware.ContextWithPrincipal(r.Context(), &middleware.Principal{TenantID: graphtest.TenantID, ObjectID: oid}))
	return g.Check(r, req)
}

// callers returns P users: every user holding a role or a PIM for Groups
// access first, then other users, as an internal portal's callers are
// mostly users without any.
func (e *figEnv) callers(p int) []string {
	seen := map[string]bool{}
	var out []string
	add := func(id string) {
		if !seen[id] && len(out) < p && !slices.Contains(e.gen.RoleAssignableGroups, id) && !slices.Contains(e.gen.ServicePrincipals, id) {
			seen[id] = true
			out = append(out, id)
		}
	}
	for _, r := range e.gen.ActiveRoles {
		add(r.PrincipalID)
	}
	for _, a := range e.gen.ActiveGroups {
		add(a.PrincipalID)
	}
	for _, u := range e.gen.Users {
		add(u)
	}
	return out
}

// drive sends a request (Guard.Check of Load-like Role requirement) for
// every caller every figTick from now for d, from 8 goroutines, failing tb
// on any 503.
func (e *figEnv) drive(tb testing.TB, g *middleware.Guard, callers []string, d time.Duration) {
	tb.Helper()
	req := middleware.Role(graphtest.RoleGlobalReader)
	for end := e.clock.Now().Add(d); e.clock.Now().Before(end); e.clock.Advance(figTick) {
		var wg sync.WaitGroup
		var failed atomic.Int64
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < len(callers); i += 8 {
					if rej := check(g, callers[i], req); rej != nil && rej.Status == http.StatusServiceUnavailable {
						failed.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		if n := failed.Load(); n > 0 {
			tb.Fatalf("%d requests answered 503 at %v", n, e.clock.Now())
		}
	}
}

// countingSource counts Lookups of the Source it wraps.
type countingSource struct {
	graphcheck.Source
	n atomic.Int64
}

func (c *countingSource) Lookup(ctx context.Context, p graphcheck.Principal) (*graphcheck.State, error) {
	c.n.Add(1)
	return c.Source.Lookup(ctx, p)
}

// TestSnapshotFigures fills the README's table for snapshot mode.
func TestSnapshotFigures(t *testing.T) {
	e := newFigEnv(t, graphtest.TenantSpec{})
	t.Logf("tenant: %s", e.gen)

	// Sweep: requests and wall time for the generated tenant, reading its
	// 50 PIM groups as a Guard requiring them would have it.
	e.snap.WatchGroups(e.gen.PIMGroups...)
	e.srv.ResetRequests()
	start := time.Now()
	if _, err := e.snap.Lookup(context.Background(), user(e.gen.Users[0])); err != nil {
		t.Fatal(err)
	}
	sweepWall := time.Since(start)
	sweepRoundTrips, sweepSubs := e.graphLookups(), e.countRequests(func(r graphtest.Request) bool { return r.BatchID != "" })
	info, _ := e.snap.Info(graphtest.TenantID)
	t.Logf("sweep of %d role instances and %d PIM for Groups instances (%d groups read): %d $batch round trips, %d sub-requests, %v wall time on loopback",
		info.RoleInstances, info.GroupInstances, info.Groups, sweepRoundTrips, sweepSubs, sweepWall.Round(time.Millisecond))
	if sweepRoundTrips > 30 {
		t.Errorf("a sweep took %d round trips, more than the goal of 30", sweepRoundTrips)
	}

	// Memory per active assignment: the heap the snapshot holds, measured
	// as what PurgeAll (which drops it) frees.
	// Two collections each time: the first moves sync.Pools' buffers
	// (gzip, JSON) to their victim caches, the second frees them, so that
	// they are counted on neither side.
	var before, after runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&before)
	e.snap.PurgeAll()
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	held := int64(before.HeapAlloc) - int64(after.HeapAlloc)
	perAssignment := float64(held) / float64(info.RoleInstances+info.GroupInstances)
	t.Logf("snapshot memory: %d KiB for %d assignments, %.0f B per assignment", held/1024, info.RoleInstances+info.GroupInstances, perAssignment)
	if perAssignment > 300 {
		t.Errorf("%.0f B per assignment, more than the goal of 300 B", perAssignment)
	}

	// A burst of 1 000 cold principals.
	all := e.callers(len(e.gen.Users) + len(e.gen.ServicePrincipals))
	burst := all[len(all)-1_000:] // users without assignments, never asked about
	e.srv.ResetRequests()
	if _, err := e.snap.Lookup(context.Background(), user(burst[0])); err != nil { // the snapshot exists before the burst
		t.Fatal(err)
	}
	subs := func() int { return e.countRequests(func(r graphtest.Request) bool { return r.BatchID != "" }) }
	e.srv.ResetRequests()
	lookupAll(t, e.snap, burst)
	snapBurst := len(e.srv.Requests())
	e.srv.ResetRequests()
	lookupAll(t, e.src, burst)
	perBurst, perBurstSubs := e.graphLookups(), subs()
	t.Logf("burst of %d cold principals: %d Graph requests ($batch, %d sub-requests) per-principal, %d with a snapshot", len(burst), perBurst, perBurstSubs, snapBurst)
	if snapBurst != 0 {
		t.Errorf("a burst of cold principals cost %d Graph requests with a snapshot, want 0", snapBurst)
	}

	// Sub-requests per second against P. Per-principal mode: the Guard's
	// lookups are counted over a Source answering from the tenant itself
	// (graphtest's, as msgraph would), and each costs the sub-requests one
	// msgraph Lookup sends, measured on a sample over HTTP; the
	// group-roles map adds its own fetch per GroupRolesTTL. Snapshot mode
	// is measured whole, over HTTP.
	subsPerLookup, groupRolesSubs := e.perLookupCost(t, e.callers(200))
	ps := []int{100}
	if *snapshotLarge {
		ps = append(ps, 1_000, 10_000)
	}
	for _, p := range ps {
		callers := e.callers(p)
		truth := &countingSource{Source: e.srv.Source()}
		g := e.guard(t, truth, figT)
		e.drive(t, g, callers, figT) // warm-up
		truth.n.Store(0)
		e.drive(t, g, callers, figWindow)
		perSecond := float64(truth.n.Load())/figWindow.Seconds()*subsPerLookup + groupRolesSubs/msgraph.DefaultGroupRolesTTL.Seconds()

		e.snap.PurgeAll()
		gs := e.guard(t, e.snap, figT/2)
		e.drive(t, gs, callers, figT)
		e.srv.ResetRequests()
		e.drive(t, gs, callers, figWindow)
		snapPerSecond := float64(e.countRequests(func(r graphtest.Request) bool { return r.BatchID != "" })) / figWindow.Seconds()
		t.Logf("P = %5d, T = %v: %7.1f sub-requests/s per-principal (%.1f lookups/s × %.2f + group roles), %5.1f with a snapshot (ratio %.0f)",
			p, figT, perSecond, float64(truth.n.Load())/figWindow.Seconds(), subsPerLookup, snapPerSecond, perSecond/snapPerSecond)
	}
}

// lookupAll looks every principal up once through src, from 8 goroutines.
func lookupAll(tb testing.TB, src graphcheck.Source, oids []string) {
	tb.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(oids))
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(oids); i += 8 {
				if _, err := src.Lookup(context.Background(), user(oids[i])); err != nil {
					errs <- fmt.Errorf("%s: %w", oids[i], err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		tb.Fatal(err)
	}
}

// perLookupCost measures, over HTTP, the sub-requests of one msgraph
// Lookup of each of oids (the principal's own $batch) and those of one
// fetch of the tenant's group-roles map.
func (e *figEnv) perLookupCost(tb testing.TB, oids []string) (perLookup, groupRoles float64) {
	tb.Helper()
	src := e.newSource(tb, nil) // a cold group-roles cache
	e.srv.ResetRequests()
	lookupAll(tb, src, oids)
	var own, shared int
	for _, r := range e.srv.Requests() {
		switch {
		case r.BatchID == "":
		case r.Path == "/v1.0/groups" || slices.ContainsFunc(e.gen.RoleAssignableGroups, func(g string) bool { return strings.Contains(r.Query, g) }):
			shared++ // the group-roles map: GET /groups and each group's role instances
		default:
			own++
		}
	}
	return float64(own) / float64(len(oids)), float64(shared)
}

// TestSnapshotSoak checks every decision of both modes against the fake
// tenant's truth while assignments start (activations), end (on schedule)
// and are deactivated, over an hour of fake time. A decision may differ
// from the truth only within the mode's promise after an unscheduled change
// of that principal (a deactivation, an activation); never after a
// scheduled end.
func TestSnapshotSoak(t *testing.T) {
	spec, steps := graphtest.TenantSpec{Users: 2_000, RoleAssignments: 400, RoleAssignableGroups: 10, PIMGroups: 10, GroupAssignments: 100}, 20
	if *snapshotLarge {
		spec, steps = graphtest.TenantSpec{}, 120
	}
	e := newFigEnv(t, spec)
	perPrincipal := e.guard(t, e.src, figT)
	snapshot := e.guard(t, e.snap, figT/2)
	truth := e.srv.Source()
	rng := rand.New(rand.NewPCG(1, 2))

	// The soak's principals: 30 with eligibilities to activate, 10 with
	// activations running, and what each may be asked.
	type ask struct {
		req   middleware.Requirement
		role  string
		scope string
		group string
		owner bool
	}
	asks := map[string][]ask{}
	eligible := slices.Clone(e.gen.RoleEligible[:30])
	var activated []graphtest.GeneratedRole
	for _, r := range e.gen.ActiveRoles {
		if r.Activated && len(activated) < 10 {
			activated = append(activated, r)
		}
	}
	for _, r := range append(slices.Clone(eligible), activated...) {
		req := middleware.Role(r.RoleDefinitionID)
		if r.Scope != "/" {
			req = middleware.RoleInScope(r.RoleDefinitionID, middleware.AdministrativeUnitScope(strings.TrimPrefix(r.Scope, "/administrativeUnits/")))
		}
		asks[r.PrincipalID] = append(asks[r.PrincipalID], ask{req: req, role: r.RoleDefinitionID, scope: r.Scope})
	}
	for _, a := range e.gen.GroupEligible[:10] {
		if !slices.Contains(e.gen.PIMGroups, a.GroupID) {
			continue
		}
		req := middleware.GroupMember(a.GroupID)
		if a.AccessID == graphtest.AccessOwner {
			req = middleware.GroupOwner(a.GroupID)
		}
		asks[a.PrincipalID] = append(asks[a.PrincipalID], ask{req: req, group: a.GroupID, owner: a.AccessID == graphtest.AccessOwner})
	}
	principals := slices.Sorted(func(yield func(string) bool) {
		for p := range asks {
			if !yield(p) {
				return
			}
		}
	})

	changed := map[string]time.Time{} // a principal's last unscheduled change
	var events, ends int
	decisions, mismatches, excused := map[string]int{}, map[string]int{}, map[string]int{}
	activeRoles := slices.Clone(activated)
	endsAt := map[time.Time]bool{}
	for _, r := range activated {
		endsAt[r.End] = true
	}
	for step := 0; step < steps; step++ { // a step every 30 s
		now := e.clock.Now()
		// Events, 5 s into the step (after the decisions at now, so that
		// the decisions 10 and 20 s into it fall within the lag): an
		// activation, a deactivation every other step, and a PIM for
		// Groups activation.
		happen := func(now time.Time) {
			e.clock.Set(now)
			r := eligible[rng.IntN(len(eligible))]
			if end, err := e.srv.ActivateRole(r.PrincipalID, r.RoleDefinitionID, r.Scope, soakDuration(rng)); err == nil {
				changed[r.PrincipalID] = now
				events++
				activeRoles = append(activeRoles, graphtest.GeneratedRole{PrincipalID: r.PrincipalID, RoleDefinitionID: r.RoleDefinitionID, Scope: r.Scope, End: end})
				endsAt[end] = true
			}
			if len(activeRoles) > 0 && rng.IntN(2) == 0 {
				i := rng.IntN(len(activeRoles))
				r := activeRoles[i]
				if err := e.srv.DeactivateRole(r.PrincipalID, r.RoleDefinitionID, r.Scope); err == nil {
					changed[r.PrincipalID] = now
					events++
				}
				activeRoles = slices.Delete(activeRoles, i, i+1)
			}
			if a := e.gen.GroupEligible[rng.IntN(10)]; slices.Contains(e.gen.PIMGroups, a.GroupID) {
				if end, err := e.srv.ActivateGroup(a.GroupID, a.PrincipalID, a.AccessID, soakDuration(rng)); err == nil {
					changed[a.PrincipalID] = now
					events++
					endsAt[end] = true
				}
			}
		}
		happened := false
		// Decisions at now, 10 s and 20 s later (inside the lag after a
		// change), and at every scheduled end inside this step.
		instants := []time.Time{now, now.Add(10 * time.Second), now.Add(20 * time.Second)}
		for end := range endsAt {
			if end.After(now) && end.Before(now.Add(30*time.Second)) {
				instants = append(instants, end)
				ends++
			}
		}
		slices.SortFunc(instants, func(a, b time.Time) int { return a.Compare(b) })
		for _, at := range instants {
			if !happened && at.After(now.Add(5*time.Second)) {
				happen(now.Add(5 * time.Second))
				happened = true
			}
			e.clock.Set(at)
			for _, p := range principals {
				want, err := truth.Lookup(context.Background(), user(p))
				if err != nil {
					t.Fatal(err)
				}
				for _, gr := range asks[p] {
					var truly bool
					switch {
					case gr.group != "" && gr.owner:
						_, truly = want.GroupActive(at, gr.group, graphtest.AccessOwner)
					case gr.group != "":
						_, truly = want.GroupActive(at, gr.group, graphtest.AccessMember)
					default:
						_, truly = want.RoleActive(at, gr.role, gr.scope)
					}
					for mode, g := range map[string]*middleware.Guard{"per-principal": perPrincipal, "snapshot": snapshot} {
						rej := check(g, p, gr.req)
						if rej != nil && rej.Status == http.StatusServiceUnavailable {
							t.Fatalf("%s at %v: 503 %v", p, at, rej.Err)
						}
						decisions[mode]++
						if (rej == nil) == truly {
							continue
						}
						if c, ok := changed[p]; ok && at.Sub(c) < figT {
							excused[mode]++
							continue
						}
						mismatches[mode]++
						t.Errorf("%s mode: %s %s at %v: allowed %v, truth %v", mode, p, gr.req, at, rej == nil, truly)
					}
				}
			}
		}
		e.clock.Set(now.Add(30 * time.Second))
	}
	t.Logf("soak: %s; %d principals over %v of fake time, %d changes and %d scheduled ends", e.gen, len(principals), time.Duration(steps)*30*time.Second, events, ends)
	for _, mode := range []string{"per-principal", "snapshot"} {
		t.Logf("soak, %s mode: %d decisions, %d mismatches (and %d within 30 s of a change, as promised)", mode, decisions[mode], mismatches[mode], excused[mode])
	}
}

// soakDuration is an activation's length: 5 to 35 minutes and some seconds,
// so that its end falls between the soak's steps.
func soakDuration(rng *rand.Rand) time.Duration {
	return time.Duration(5+rng.IntN(30))*time.Minute + time.Duration(1+rng.IntN(28))*time.Second
}

// BenchmarkSnapshotLookup is a Lookup answered from a warm snapshot of the
// generated tenant (what a Guard's cache miss costs in snapshot mode),
// against a Lookup of the Source over loopback HTTP:
//
//	go test -run XXX -bench SnapshotLookup -benchmem ./graphcheck/msgraph/
func BenchmarkSnapshotLookup(b *testing.B) {
	e := newFigEnv(b, graphtest.TenantSpec{})
	callers := e.callers(1_000)
	ctx := context.Background()
	if _, err := e.snap.Lookup(ctx, user(callers[0])); err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		src  graphcheck.Source
	}{{"snapshot", e.snap}, {"per-principal", e.src}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := bc.src.Lookup(ctx, user(callers[i%len(callers)])); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

package msgraph_test

// Performance figures of the whole chain (issue 7, items 3 to 7): a real
// msgraph.Source reading graphtest's fake tenant over loopback HTTP, behind
// an Authenticator and a Guard, all on one fake clock.
//
//	go test -run XXX -bench 'Cold|Coalesc|Memory' -benchmem ./graphcheck/msgraph/
//	go test -run Figures -v ./graphcheck/msgraph/
//
// The Benchmarks measure time and memory; the Figures tests print figures
// that depend only on the fake clock (Graph traffic, freshness lags,
// coalescing) and so are exact and deterministic. Their only assertions are
// the targets themselves, which hold by construction on a fake clock: none
// is about elapsed real time.

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/middleware"
)

const (
	// perfGroup is a plain (not role-assignable) group whose membership
	// PIM for Groups manages: the "1 group membership" of a typical state.
	perfGroup = "9e000000-0000-4000-8000-0000000000e1"
	// perfTokenLife outlasts every clock jump of these figures.
	perfTokenLife = 24 * time.Hour
)

// perfT0 is the fake clock's start, on a whole second.
var perfT0 = time.Date(2025, 6, 2, 8, 0, 0, 0, time.UTC)

// perfOID returns the object ID of the i-th generated user.
func perfOID(i int) string { return fmt.Sprintf("e0000000-0000-4000-8000-%012x", i) }

// perfStack is a stack for measuring: the tenant holds perfGroup and the
// users a figure adds, the Source sends no token, log records are
// discarded (or only counted), and the Guard counts its calls of the
// Source.
type perfStack struct {
	*stack
	// lookups counts the Guard's calls of the Source.
	lookups atomic.Int64
	// states counts decision records by where the state came from, when
	// perfOptions.countStates is set.
	states *perfStateCounter
}

type perfOptions struct {
	guard        func(*middleware.GuardConfig)
	beforeLookup func() // runs in each Source call before the real lookup
	countStates  bool
}

func newPerfStack(tb testing.TB, o perfOptions) *perfStack {
	tb.Helper()
	ps := &perfStack{}
	ps.stack = newStack(tb, stackOptions{start: perfT0, bare: true, anonymous: true, quiet: true,
		guard: func(c *middleware.GuardConfig) {
			src := c.Source
			c.Source = graphcheck.SourceFunc(func(ctx context.Context, p graphcheck.Principal) (*graphcheck.State, error) {
				ps.lookups.Add(1)
				if o.beforeLookup != nil {
					o.beforeLookup()
				}
				return src.Lookup(ctx, p)
			})
			if o.countStates {
				ps.states = &perfStateCounter{}
				c.Logger = slog.New(ps.states)
				c.AllowLogLevel = slog.LevelInfo
			}
			if o.guard != nil {
				o.guard(c)
			}
		}})
	must(tb, ps.srv.AddGroup(perfGroup, "On-call", false))
	return ps
}

// addTypical adds a user with a typical state: Helpdesk Administrator
// assigned permanently, User Administrator activated through PIM for 8
// hours, and an active PIM-for-Groups membership of perfGroup.
func (s *perfStack) addTypical(tb testing.TB, oid string) {
	tb.Helper()
	must(tb, s.srv.AddUser(oid, oid[len(oid)-6:]+"@contoso.test"))
	must(tb, s.srv.AssignRole(oid, middleware.RoleHelpdeskAdministrator, "/", time.Time{}, time.Time{}))
	must(tb, s.srv.MakeEligible(oid, middleware.RoleUserAdministrator, "/", time.Time{}))
	_, err := s.srv.ActivateRole(oid, middleware.RoleUserAdministrator, "/", 8*time.Hour)
	must(tb, err)
	must(tb, s.srv.AssignGroup(perfGroup, oid, graphtest.AccessMember, time.Time{}, time.Time{}))
}

// token mints a user access token for oid, valid for perfTokenLife.
func (s *perfStack) token(oid string) string {
	s.t.Helper()
	return s.mint(graphtest.Token{
		ObjectID: oid, Name: "Perf User", Username: oid[len(oid)-6:] + "@contoso.test",
		Wids: []string{middleware.RoleHelpdeskAdministrator}, Lifetime: perfTokenLife,
	}).raw
}

// protect returns the Authenticator and Guard.Require(req) in front of
// perfOK.
func (s *perfStack) protect(req middleware.Requirement) http.Handler {
	return s.auth.Handler(s.guard.Require(req)(perfOK))
}

var perfOK = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })

// perfBearer is a GET carrying tok.
func perfBearer(tok string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/api/admin", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	return r
}

// perfAuthenticated is a GET as the Authenticator hands it on: the
// principal in its context. The IDs are copied so that what the Guard keeps
// of them is charged to the request.
func perfAuthenticated(oid string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/api/admin", nil)
	p := &middleware.Principal{TenantID: strings.Clone(graphtest.TenantID), ObjectID: strings.Clone(oid)}
	return r.WithContext(middleware.ContextWithPrincipal(r.Context(), p))
}

// perfWriter is a reusable ResponseWriter that keeps the status.
type perfWriter struct {
	h    http.Header
	code int
}

func newPerfWriter() *perfWriter                  { return &perfWriter{h: http.Header{}} }
func (w *perfWriter) Header() http.Header         { return w.h }
func (w *perfWriter) Write(b []byte) (int, error) { w.WriteHeader(http.StatusOK); return len(b), nil }
func (w *perfWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

// serve runs h on r and returns the status.
func (w *perfWriter) serve(h http.Handler, r *http.Request) int {
	w.code = 0
	clear(w.h)
	h.ServeHTTP(w, r)
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}

// perfStateCounter is a slog.Handler counting the Guard's decision records
// by their "state" attribute: "graph" for a request that made or joined a
// lookup, "cache" for a cache hit.
type perfStateCounter struct{ graph, cache, other atomic.Int64 }

func (c *perfStateCounter) Enabled(context.Context, slog.Level) bool { return true }
func (c *perfStateCounter) WithAttrs([]slog.Attr) slog.Handler       { return c }
func (c *perfStateCounter) WithGroup(string) slog.Handler            { return c }
func (c *perfStateCounter) Handle(_ context.Context, r slog.Record) error {
	if r.Message != decisionMsg {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key != "state" {
			return true
		}
		switch a.Value.String() {
		case "graph":
			c.graph.Add(1)
		case "cache":
			c.cache.Add(1)
		default:
			c.other.Add(1)
		}
		return false
	})
	return nil
}

func (c *perfStateCounter) reset() { c.graph.Store(0); c.cache.Store(0); c.other.Store(0) }

// ---------------------------------------------------------------------------
// Item 3: a cold principal.

// perfWarmBatch is how many warm requests side-by-side times per cold one,
// so that the clock reads cost little against a warm request.
const perfWarmBatch = 16

// BenchmarkColdPrincipal times one request of a principal whose live state
// is not cached (purged before each request; the token stays verified)
// through Authenticator + Guard.Require + msgraph.Source against graphtest
// on loopback, and the same request warm. cold and warm are plain
// benchmarks; side-by-side alternates them in one loop and reports both
// times, what the cold path adds and the ratio. graph-roundtrips/op counts
// the HTTP requests on graphtest's log (target 1 per cold request).
func BenchmarkColdPrincipal(b *testing.B) {
	s := newPerfStack(b, perfOptions{})
	oid := perfOID(1)
	s.addTypical(b, oid)
	h := s.protect(middleware.Role(middleware.RoleHelpdeskAdministrator))
	req := perfBearer(s.token(oid))
	w := newPerfWriter()
	if code := w.serve(h, req); code != http.StatusOK { // key set, token and state warm
		b.Fatalf("warm-up: status %d", code)
	}
	cold := func(b *testing.B) {
		s.guard.Purge(graphtest.TenantID, oid)
		if code := w.serve(h, req); code != http.StatusOK {
			b.Fatalf("cold request: status %d", code)
		}
	}
	warm := func(b *testing.B) {
		if code := w.serve(h, req); code != http.StatusOK {
			b.Fatalf("warm request: status %d", code)
		}
	}
	// per reports the Graph traffic of n requests.
	per := func(b *testing.B, n int, lookups0 int64) {
		b.ReportMetric(float64(s.graphHTTPRequests())/float64(n), "graph-roundtrips/op")
		b.ReportMetric(float64(s.lookups.Load()-lookups0)/float64(n), "lookups/op")
	}

	b.Run("cold", func(b *testing.B) {
		s.srv.ResetRequests()
		l0, n := s.lookups.Load(), 0
		b.ReportAllocs()
		for b.Loop() {
			cold(b)
			n++
		}
		per(b, n, l0)
	})
	b.Run("warm", func(b *testing.B) {
		s.srv.ResetRequests()
		l0, n := s.lookups.Load(), 0
		b.ReportAllocs()
		for b.Loop() {
			warm(b)
			n++
		}
		per(b, n, l0)
	})
	b.Run("side-by-side", func(b *testing.B) {
		s.srv.ResetRequests()
		l0, n := s.lookups.Load(), 0
		var coldT, warmT time.Duration
		for b.Loop() {
			s.guard.Purge(graphtest.TenantID, oid)
			t := time.Now()
			if code := w.serve(h, req); code != http.StatusOK {
				b.Fatalf("cold request: status %d", code)
			}
			coldT += time.Since(t)
			t = time.Now()
			for range perfWarmBatch {
				warm(b)
			}
			warmT += time.Since(t)
			n++
		}
		coldNs := float64(coldT.Nanoseconds()) / float64(n)
		warmNs := float64(warmT.Nanoseconds()) / float64(n*perfWarmBatch)
		b.ReportMetric(coldNs, "cold-ns/req")
		b.ReportMetric(warmNs, "warm-ns/req")
		b.ReportMetric(coldNs-warmNs, "added-ns/req")
		b.ReportMetric(coldNs/warmNs, "x-warm")
		b.ReportMetric(float64(s.graphHTTPRequests())/float64(n), "graph-roundtrips/cold")
		b.ReportMetric(float64(s.lookups.Load()-l0)/float64(n), "lookups/cold")
	})
}

// ---------------------------------------------------------------------------
// Item 4: coalescing.

// perfBurstSize is the number of concurrent requests of one burst.
const perfBurstSize = 1000

// perfBurst is one principal's stack ready for bursts of concurrent cold
// requests. When held, the lookup waits until all the burst's requests
// have reached the Guard, so that every one of them finds it running.
type perfBurst struct {
	s       *perfStack
	oid     string
	h       http.Handler
	tok     string
	held    bool
	entered atomic.Int64
	mu      sync.Mutex
	allIn   chan struct{} // closed when the burst's last request enters the Guard
}

func newPerfBurst(tb testing.TB, held bool) *perfBurst {
	tb.Helper()
	pb := &perfBurst{held: held, oid: perfOID(2)}
	var o perfOptions
	o.countStates = true
	if held {
		o.beforeLookup = func() {
			pb.mu.Lock()
			ch := pb.allIn
			pb.mu.Unlock()
			select {
			case <-ch:
			case <-time.After(10 * time.Second): // a lost request must not hang the run
			}
		}
	}
	pb.s = newPerfStack(tb, o)
	pb.s.addTypical(tb, pb.oid)
	pb.tok = pb.s.token(pb.oid)
	enter := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if pb.entered.Add(1) == perfBurstSize {
				pb.release()
			}
			next.ServeHTTP(w, r)
		})
	}
	pb.h = pb.s.auth.Handler(enter(pb.s.guard.Require(middleware.Role(middleware.RoleHelpdeskAdministrator))(perfOK)))
	// Warm the key set and the token cache with one request, never held,
	// then forget the state so that every burst starts cold.
	pb.reset()
	pb.release()
	rec := httptest.NewRecorder()
	pb.h.ServeHTTP(rec, perfBearer(pb.tok))
	if rec.Code != http.StatusOK {
		tb.Fatalf("warm-up: status %d", rec.Code)
	}
	pb.reset()
	return pb
}

// reset purges the principal's state and every counter.
func (pb *perfBurst) reset() {
	pb.s.guard.Purge(graphtest.TenantID, pb.oid)
	pb.s.srv.ResetRequests()
	pb.s.lookups.Store(0)
	pb.s.states.reset()
	pb.entered.Store(0)
	pb.mu.Lock()
	pb.allIn = make(chan struct{})
	pb.mu.Unlock()
	if !pb.held {
		pb.release()
	}
}

// release lets the lookup proceed (once per reset).
func (pb *perfBurst) release() {
	pb.mu.Lock()
	defer pb.mu.Unlock()
	select {
	case <-pb.allIn:
	default:
		close(pb.allIn)
	}
}

// perfBurstResult is what one burst cost.
type perfBurstResult struct {
	failed, lookups, graphHTTP int
	joined, hits               int64
}

// run sends perfBurstSize concurrent requests, released together, and
// waits for all of them.
func (pb *perfBurst) run() perfBurstResult {
	var failed atomic.Int64
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range perfBurstSize {
		wg.Go(func() {
			req := perfBearer(pb.tok)
			w := newPerfWriter()
			<-start
			if w.serve(pb.h, req) != http.StatusOK {
				failed.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	return perfBurstResult{
		failed: int(failed.Load()), lookups: int(pb.s.lookups.Load()), graphHTTP: pb.s.graphHTTPRequests(),
		joined: pb.s.states.graph.Load(), hits: pb.s.states.cache.Load(),
	}
}

// BenchmarkCoalescing sends bursts of 1000 concurrent requests of one
// principal whose state is not cached, through Authenticator + Guard +
// msgraph.Source against graphtest, and reports per burst the lookups made
// (target 1), the Graph HTTP requests, and how many requests joined the
// lookup or found its result cached, and the share of bursts that made
// more than one lookup. free: requests arrive as the scheduler lets them;
// held: the lookup waits until all 1000 have reached the Guard.
func BenchmarkCoalescing(b *testing.B) {
	for _, held := range []bool{false, true} {
		name := map[bool]string{false: "free", true: "held"}[held]
		b.Run(name, func(b *testing.B) {
			pb := newPerfBurst(b, held)
			var sum perfBurstResult
			var spent time.Duration
			n, multi := 0, 0
			for b.Loop() {
				b.StopTimer()
				pb.reset()
				b.StartTimer()
				t := time.Now()
				r := pb.run()
				spent += time.Since(t)
				if r.failed > 0 {
					b.Fatalf("%d requests of the burst failed", r.failed)
				}
				sum.lookups += r.lookups
				if r.lookups > 1 {
					multi++
				}
				sum.graphHTTP += r.graphHTTP
				sum.joined += r.joined
				sum.hits += r.hits
				n++
			}
			f := float64(n)
			b.ReportMetric(float64(sum.lookups)/f, "lookups/burst")
			b.ReportMetric(float64(multi)/f, "bursts>1lookup/burst")
			b.ReportMetric(float64(sum.graphHTTP)/f, "graph-roundtrips/burst")
			b.ReportMetric(float64(sum.joined)/f, "joined/burst")
			b.ReportMetric(float64(sum.hits)/f, "cache-hits/burst")
			b.ReportMetric(float64(spent.Nanoseconds())/f/perfBurstSize, "ns/req")
		})
	}
}

// TestCoalescingFigures prints, for one burst of 1000 concurrent cold
// requests of one principal, the lookups and Graph HTTP requests made, and
// checks the target: exactly 1 of each, both when all 1000 requests find the
// lookup running (held) and when they arrive as the scheduler lets them
// (free: late requests find the stored state, or re-check the cache inside
// the coalescing group instead of starting a second lookup).
func TestCoalescingFigures(t *testing.T) {
	t.Logf("%-5s %9s %8s %18s %7s %11s", "mode", "requests", "lookups", "Graph HTTP reqs", "joined", "cache hits")
	for _, held := range []bool{false, true} {
		pb := newPerfBurst(t, held)
		r := pb.run()
		mode := map[bool]string{false: "free", true: "held"}[held]
		t.Logf("%-5s %9d %8d %18d %7d %11d", mode, perfBurstSize, r.lookups, r.graphHTTP, r.joined, r.hits)
		if r.failed > 0 || r.lookups < 1 || r.graphHTTP != r.lookups || r.joined+r.hits != perfBurstSize {
			t.Errorf("%s: %d failed, %d lookups, %d Graph HTTP requests, %d+%d decisions; want 0 failed, one Graph HTTP request per lookup, %d decisions",
				mode, r.failed, r.lookups, r.graphHTTP, r.joined, r.hits, perfBurstSize)
		}
		if r.lookups != 1 || r.graphHTTP != 1 {
			t.Errorf("%s: %d lookups and %d Graph HTTP requests for one cold principal; want 1 each", mode, r.lookups, r.graphHTTP)
		}
		if held && (r.lookups != 1 || r.joined != perfBurstSize) {
			t.Errorf("held: %d lookups, %d requests joined; want 1 lookup joined by all %d", r.lookups, r.joined, perfBurstSize)
		}
	}
}

// ---------------------------------------------------------------------------
// Item 5: Graph traffic under load.

// perfLarge adds larger rows to TestGraphTrafficFigures.
var perfLarge = flag.Bool("perf.large", false, "TestGraphTrafficFigures: add rows with up to 1000 principals and 1000 requests/s (slow)")

// TestGraphTrafficFigures simulates, on the fake clock, R requests per
// second spread round-robin over P principals with the Guard's CacheTTL T,
// and prints the Graph HTTP requests per second that result (target: at
// most P/T; with fewer than one request per principal per T, every request
// is a lookup and the rate is R). Each simulated second issues its R
// requests through Guard.Require (the principal already authenticated:
// the Authenticator makes no Graph call) and then advances the clock by 1 s.
func TestGraphTrafficFigures(t *testing.T) {
	type row struct {
		p    int
		ttl  time.Duration
		rate int // requests per simulated second
		dur  int // simulated seconds, a multiple of ttl
	}
	// Each lookup costs a few ms of real time (far more under -race), so
	// the default rows make about 180 of them; -perf.large adds larger ones.
	rows := []row{
		{10, 30 * time.Second, 100, 60}, // every principal requested each second
		{20, 5 * time.Second, 400, 20},  // a short TTL
		{20, 30 * time.Second, 2, 60},   // each principal every 10 s: still P/T
		{20, 10 * time.Second, 1, 40},   // each principal every 20 s > T: R-bound
	}
	if *perfLarge {
		rows = append(rows,
			row{100, 30 * time.Second, 1000, 90},
			row{100, 5 * time.Second, 1000, 30},
			row{1000, 30 * time.Second, 100, 90},
			row{1000, 60 * time.Second, 10, 120},
		)
	}
	t.Logf("%5s %6s %7s %6s %9s %8s %10s %10s %8s %10s %s",
		"P", "TTL", "R/s", "sim s", "requests", "lookups", "Graph HTTP", "Graph/s", "P/T", "min(R,P/T)", "≤ P/T")
	for _, row := range rows {
		s := newPerfStack(t, perfOptions{guard: func(c *middleware.GuardConfig) { c.CacheTTL = row.ttl }})
		reqs := make([]*http.Request, row.p)
		for i := range reqs {
			oid := perfOID(i)
			s.addTypical(t, oid)
			reqs[i] = perfAuthenticated(oid)
		}
		h := s.guard.Require(middleware.Role(middleware.RoleHelpdeskAdministrator))(perfOK)
		w := newPerfWriter()
		s.srv.ResetRequests()
		l0 := s.lookups.Load()
		k := 0
		for range row.dur {
			for range row.rate {
				if code := w.serve(h, reqs[k%row.p]); code != http.StatusOK {
					t.Fatalf("P=%d: request %d at %v: status %d", row.p, k, s.clock.Now(), code)
				}
				k++
			}
			s.clock.Advance(time.Second)
		}
		graph, lookups := s.graphHTTPRequests(), int(s.lookups.Load()-l0)
		perSec := float64(graph) / float64(row.dur)
		bound := float64(row.p) / row.ttl.Seconds()
		ok := float64(graph)*row.ttl.Seconds() <= float64(row.p*row.dur) // perSec <= P/T, exactly
		t.Logf("%5d %6v %7d %6d %9d %8d %10d %10.2f %8.2f %10.2f %v",
			row.p, row.ttl, row.rate, row.dur, k, lookups, graph, perSec, bound, min(float64(row.rate), bound), ok)
		if !ok || graph != lookups {
			t.Errorf("P=%d T=%v R=%d: %d Graph HTTP requests for %d lookups in %d s, want one per lookup and at most P/T per second",
				row.p, row.ttl, row.rate, graph, lookups, row.dur)
		}
	}
}

// ---------------------------------------------------------------------------
// Item 6: memory per cached principal.

// perfMemPrincipals is how many principals fill the Guard's cache.
const perfMemPrincipals = 5000

// perfMemTemplates is how many users the fake tenant holds for
// BenchmarkMemoryPerPrincipal: graphtest scans its whole directory on every
// request, so 5000 users would make each lookup cost milliseconds of the
// fake's own work.
const perfMemTemplates = 50

// BenchmarkMemoryPerPrincipal fills a fresh Guard's cache with 5000
// principals of a typical state (2 roles, 1 PIM-for-Groups membership) and
// reports the live heap it added (runtime.MemStats.HeapAlloc after GC,
// before and after) per principal: the cache entry, its key, the State and
// every string in it. Target: at most 2 KB.
//
// Every state is a real msgraph.Source lookup against graphtest, of one of
// perfMemTemplates seeded users with the same typical state, relabelled
// with the principal's object ID (an ID of the same length): the State
// holds exactly what a lookup of that principal would decode.
func BenchmarkMemoryPerPrincipal(b *testing.B) {
	s := newPerfStack(b, perfOptions{})
	for i := range perfMemTemplates {
		s.addTypical(b, perfOID(i))
	}
	oids := make([]string, perfMemPrincipals)
	for i := range oids {
		oids[i] = perfOID(1_000_000 + i)
	}
	var lookups atomic.Int64
	relabel := graphcheck.SourceFunc(func(ctx context.Context, p graphcheck.Principal) (*graphcheck.State, error) {
		lookups.Add(1)
		var i int
		if _, err := fmt.Sscanf(p.ObjectID[24:], "%x", &i); err != nil {
			return nil, err
		}
		tp := p
		tp.ObjectID = perfOID(i % perfMemTemplates)
		st, err := s.src.Lookup(ctx, tp)
		if err != nil {
			return nil, err
		}
		if len(st.Roles) != 2 || len(st.Groups) != 1 {
			return nil, fmt.Errorf("template %s: %d roles and %d groups, want 2 and 1", tp.ObjectID, len(st.Roles), len(st.Groups))
		}
		st.ObjectID = p.ObjectID
		return st, nil
	})
	newGuard := func() *middleware.Guard {
		return s.newGuard(b, func(c *middleware.GuardConfig) { c.Source = relabel })
	}
	h := func(g *middleware.Guard) http.Handler {
		return g.Require(middleware.Role(middleware.RoleHelpdeskAdministrator))(perfOK)
	}
	// fill serves every principal once.
	fill := func(b *testing.B, h http.Handler) {
		w := newPerfWriter()
		for _, oid := range oids {
			if code := w.serve(h, perfAuthenticated(oid)); code != http.StatusOK {
				b.Fatalf("%s: status %d", oid, code)
			}
		}
	}
	// Warm the Source's connections on a throwaway Guard.
	if code := newPerfWriter().serve(h(newGuard()), perfAuthenticated(oids[0])); code != http.StatusOK {
		b.Fatalf("warm-up: status %d", code)
	}
	var perPrincipal float64
	for b.Loop() {
		g := newGuard()
		gh := h(g)
		s.srv.ResetRequests()
		l0 := lookups.Load()
		before := perfHeap()
		fill(b, gh)
		s.srv.ResetRequests() // graphtest's request log is not the Guard's
		after := perfHeap()
		perPrincipal = float64(after-before) / perfMemPrincipals

		// Every principal was looked up once and is still cached.
		if n := lookups.Load() - l0; n != perfMemPrincipals {
			b.Fatalf("%d lookups filling the cache, want %d", n, perfMemPrincipals)
		}
		fill(b, gh)
		if n := lookups.Load() - l0; n != perfMemPrincipals {
			b.Fatalf("%d lookups after serving every principal again, want %d: entries were evicted", n, perfMemPrincipals)
		}
		runtime.KeepAlive(g)
	}
	b.ReportMetric(perPrincipal, "B/principal")
}

// perfHeap returns the live heap after two collections (the second frees
// what the first's finalizers and sync.Pool victims released).
func perfHeap() int64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// ---------------------------------------------------------------------------
// Item 7: freshness.

// perfStep is the fake clock's polling step.
const perfStep = 100 * time.Millisecond

// pollUntilDenied serves req through h at from, from+step, ... up to
// limit, and also at probe when it falls between two of those instants,
// until a request is refused. It returns the last instant allowed and the
// first refused (zero if none), failing on any status but 200 and 403.
func (s *perfStack) pollUntilDenied(tb testing.TB, h http.Handler, req *http.Request, from, limit, probe time.Time) (lastOK, denied time.Time) {
	tb.Helper()
	w := newPerfWriter()
	poll := func(at time.Time) bool {
		s.clock.Set(at)
		switch code := w.serve(h, req); code {
		case http.StatusOK:
			lastOK = at
			return false
		case http.StatusForbidden:
			denied = at
			return true
		default:
			tb.Fatalf("at %v: status %d", at, code)
			return true
		}
	}
	for at := from; !at.After(limit); at = at.Add(perfStep) {
		if !probe.IsZero() && at.After(from) && probe.After(at.Add(-perfStep)) && probe.Before(at) && poll(probe) {
			return
		}
		if poll(at) {
			return
		}
	}
	return
}

// TestFreshnessFigures prints, on the fake clock polled every 100 ms
// through Authenticator + Guard + msgraph.Source, the lag from an
// assignment's endDateTime to its first denial (target 0, whatever the
// CacheTTL) and from a role's deactivation to its first denial (target at
// most CacheTTL; it is CacheTTL minus the age of the cached state at the
// deactivation, and 0 when the application calls Guard.Purge on hearing
// of it). The token stays valid and keeps claiming the role throughout.
func TestFreshnessFigures(t *testing.T) {
	const life = 2 * time.Minute
	end := perfT0.Add(life)
	ends := []struct {
		name string
		ttl  time.Duration
		req  middleware.Requirement
		seed func(s *perfStack, oid string) error
	}{
		{"PIM role activation", 30 * time.Second, middleware.Role(middleware.RoleUserAdministrator), func(s *perfStack, oid string) error {
			if err := s.srv.MakeEligible(oid, middleware.RoleUserAdministrator, "/", time.Time{}); err != nil {
				return err
			}
			_, err := s.srv.ActivateRole(oid, middleware.RoleUserAdministrator, "/", life)
			return err
		}},
		{"PIM role activation", time.Hour, middleware.Role(middleware.RoleUserAdministrator), func(s *perfStack, oid string) error {
			if err := s.srv.MakeEligible(oid, middleware.RoleUserAdministrator, "/", time.Time{}); err != nil {
				return err
			}
			_, err := s.srv.ActivateRole(oid, middleware.RoleUserAdministrator, "/", life)
			return err
		}},
		{"time-bound role assignment", time.Hour, middleware.Role(middleware.RoleUserAdministrator), func(s *perfStack, oid string) error {
			return s.srv.AssignRole(oid, middleware.RoleUserAdministrator, "/", time.Time{}, end)
		}},
		{"PIM-for-Groups membership", time.Hour, middleware.GroupMember(perfGroup), func(s *perfStack, oid string) error {
			return s.srv.AssignGroup(perfGroup, oid, graphtest.AccessMember, time.Time{}, end)
		}},
	}
	oid := perfOID(7)
	t.Logf("endDateTime → first denial (polled every %v, and at endDateTime−1ns):", perfStep)
	t.Logf("  %-28s %6s %-12s %-18s %-12s %4s", "assignment", "TTL", "endDateTime", "last allowed", "first denied", "lag")
	for _, e := range ends {
		s := newPerfStack(t, perfOptions{guard: func(c *middleware.GuardConfig) { c.CacheTTL = e.ttl }})
		must(t, s.srv.AddUser(oid, "fresh@contoso.test"))
		must(t, e.seed(s, oid))
		h := s.protect(e.req)
		req := perfBearer(s.token(oid))
		lastOK, denied := s.pollUntilDenied(t, h, req, perfT0, end.Add(2*e.ttl), end.Add(-time.Nanosecond))
		lag := denied.Sub(end)
		t.Logf("  %-28s %6v %-12s %-18s %-12s %4v", e.name, e.ttl, perfClock(end), perfClock(lastOK), perfClock(denied), lag)
		if denied.IsZero() || lag != 0 || !lastOK.Equal(end.Add(-time.Nanosecond)) {
			t.Errorf("%s, TTL %v: last allowed %v, first denied %v; want %v and %v", e.name, e.ttl, lastOK, denied, end.Add(-time.Nanosecond), end)
		}
	}

	deacts := []struct {
		ttl   time.Duration
		after time.Duration // age of the cached state when the role is deactivated
		purge bool          // the application calls Guard.Purge then
	}{
		{5 * time.Second, 0, false},
		{30 * time.Second, 0, false},
		{30 * time.Second, 10 * time.Second, false},
		{30 * time.Second, 29900 * time.Millisecond, false},
		{5 * time.Minute, 0, false},
		{5 * time.Minute, 0, true},
	}
	t.Logf("deactivation → first denial (polled every %v; the state is fetched at 0 s):", perfStep)
	t.Logf("  %6s %-15s %-7s %-14s %-14s %8s %s", "TTL", "deactivated at", "Purge", "first denied", "lag", "lag/TTL", "≤ TTL")
	for _, d := range deacts {
		s := newPerfStack(t, perfOptions{guard: func(c *middleware.GuardConfig) { c.CacheTTL = d.ttl }})
		must(t, s.srv.AddUser(oid, "fresh@contoso.test"))
		must(t, s.srv.MakeEligible(oid, middleware.RoleUserAdministrator, "/", time.Time{}))
		if _, err := s.srv.ActivateRole(oid, middleware.RoleUserAdministrator, "/", 8*time.Hour); err != nil {
			t.Fatal(err)
		}
		h := s.protect(middleware.Role(middleware.RoleUserAdministrator))
		req := perfBearer(s.token(oid))
		at := perfT0.Add(d.after)
		if _, denied := s.pollUntilDenied(t, h, req, perfT0, at, time.Time{}); !denied.IsZero() {
			t.Fatalf("TTL %v: denied at %v before the deactivation", d.ttl, denied)
		}
		must(t, s.srv.DeactivateRole(oid, middleware.RoleUserAdministrator, "/"))
		if d.purge {
			s.guard.Purge(graphtest.TenantID, oid)
		}
		_, denied := s.pollUntilDenied(t, h, req, at, at.Add(2*d.ttl), time.Time{})
		lag := denied.Sub(at)
		ok := !denied.IsZero() && lag <= d.ttl
		t.Logf("  %6v %-15s %-7v %-14s %-14v %8.3f %v", d.ttl, perfClock(at), d.purge, perfClock(denied), lag, lag.Seconds()/d.ttl.Seconds(), ok)
		if !ok {
			t.Errorf("TTL %v, deactivated at %v: first denied %v, more than the TTL later", d.ttl, at, denied)
		}
	}
}

// perfClock shows an instant of the fake clock as the time since perfT0.
func perfClock(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return "+" + t.Sub(perfT0).String()
}

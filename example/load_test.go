package main

// A loopback HTTP load run of the example (issue 7): a Go load generator
// against the app running in-process in real mode (realAppConfig + newApp)
// over a graphtest tenant, comparing protected routes with the unprotected
// /healthz in the same run.
//
//	go test -run XXX -bench ExampleLoad ./example/
//
// Every phase is bounded in time and in requests, and targets only the
// loopback listener of an httptest.Server.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/middleware"
)

const (
	// loadHelpdesk holds an active Helpdesk Administrator activation.
	loadHelpdesk = "b1000000-0000-4000-8000-000000000001"
	// loadWorkers is the number of concurrent clients (keep-alive
	// connections) of a phase.
	loadWorkers = 8
	// loadRounds is how many times every target is run, in turn, so that
	// each is measured alongside the others rather than at another moment.
	loadRounds = 3
	// loadPhase bounds one target's run in a round.
	loadPhase = time.Second
	// loadMaxPerPhase bounds the requests of one phase.
	loadMaxPerPhase = 200_000
	// loadProtectedHealthz is /healthz's handler behind the Authenticator
	// and Guard.Require(canResetPasswords): pimguard's cost alone.
	loadProtectedHealthz = "/load/healthz-protected"
)

// loadTarget is one route under load.
type loadTarget struct {
	name   string // metric prefix
	method string
	path   string
	auth   bool // send the bearer token
}

var loadTargets = []loadTarget{
	{"healthz", http.MethodGet, "/healthz", false},
	{"healthz+token", http.MethodGet, "/healthz", true}, // the same bytes on the wire as auth+guard
	{"auth+guard", http.MethodGet, loadProtectedHealthz, true},
	{"me", http.MethodGet, "/api/me", true},
	{"reset", http.MethodPost, "/api/users/alex/reset-password", true},
}

// loadEnv is the example app serving on loopback in real mode against a
// fake tenant, and a client for it.
type loadEnv struct {
	tenant *graphtest.Server
	srv    *httptest.Server
	token  string
	client *http.Client
}

func newLoadEnv(tb testing.TB) *loadEnv {
	tb.Helper()
	e := &loadEnv{tenant: graphtest.NewServer(graphtest.Options{Clock: graphtest.NewLiveClock()})}
	tb.Cleanup(e.tenant.Close)
	loadMust(tb, e.tenant.AddUser(loadHelpdesk, "helpdesk@contoso.example"))
	loadMust(tb, e.tenant.MakeEligible(loadHelpdesk, middleware.RoleHelpdeskAdministrator, "/", time.Time{}))
	_, err := e.tenant.ActivateRole(loadHelpdesk, middleware.RoleHelpdeskAdministrator, "/", 8*time.Hour)
	loadMust(tb, err)
	e.token = e.tenant.MustMint(graphtest.Token{
		ObjectID: loadHelpdesk, Name: "Helpdesk", Username: "helpdesk@contoso.example",
		Wids: []string{middleware.RoleHelpdeskAdministrator}, Lifetime: 8 * time.Hour,
	})

	// Real mode, configured as TestRealModeEndToEnd configures the binary.
	cfg, err := loadConfig(func(k string) string {
		return map[string]string{
			"PIMGUARD_TENANT_ID":  graphtest.TenantID,
			"PIMGUARD_AUDIENCES":  graphtest.APIClientID + "," + graphtest.APIAppIDURI,
			"PIMGUARD_AUTHORITY":  e.tenant.URL,
			"PIMGUARD_GRAPH_URL":  e.tenant.GraphURL(),
			"PIMGUARD_GRAPH_AUTH": "none",
		}[k]
	})
	loadMust(tb, err)
	// Decision records of allowed requests are at Debug: an Info logger,
	// as main sets up, writes none on this path.
	logger := slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ac := realAppConfig(cfg)
	// The strict start, so that the keys are there before the first
	// request; and the demo's in-memory directory for the helpdesk
	// actions' target, so that the run measures pimguard rather than a
	// Graph lookup of the target per request.
	ac.auth.DiscoverInBackground, ac.users = false, demoUsers
	a, err := newApp(context.Background(), ac, logger)
	loadMust(tb, err)
	tb.Cleanup(func() { loadMust(tb, a.Close()) })
	a.extraRoutes = func(r chi.Router) {
		r.With(a.auth.Handler, a.guard.Require(canResetPasswords)).Get(loadProtectedHealthz, func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		})
	}
	e.srv = httptest.NewServer(a.routes())
	tb.Cleanup(e.srv.Close)
	if host, _, _ := net.SplitHostPort(e.srv.Listener.Addr().String()); !net.ParseIP(host).IsLoopback() {
		tb.Fatalf("listener %s is not on loopback", e.srv.Listener.Addr())
	}
	e.client = &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			Proxy:               nil, // loopback only, whatever the environment says
			MaxIdleConns:        2 * loadWorkers,
			MaxIdleConnsPerHost: 2 * loadWorkers,
			DisableCompression:  true,
		},
	}
	tb.Cleanup(e.client.CloseIdleConnections)
	return e
}

func loadMust(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

// loadResult is what one target's runs served.
type loadResult struct {
	n, failed int
	elapsed   time.Duration
	lat       []time.Duration
	firstErr  string
}

func (r *loadResult) add(o loadResult) {
	r.n += o.n
	r.failed += o.failed
	r.elapsed += o.elapsed
	r.lat = append(r.lat, o.lat...)
	if r.firstErr == "" {
		r.firstErr = o.firstErr
	}
}

func (r *loadResult) rps() float64 { return float64(r.n) / r.elapsed.Seconds() }

// quantile returns the q-quantile latency; lat must be sorted.
func (r *loadResult) quantile(q float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	return r.lat[min(len(r.lat)-1, int(q*float64(len(r.lat))))]
}

// run sends tg's request from workers concurrent clients until d has
// passed or max requests were sent, and returns each request's latency.
// A request counts as failed unless it is answered 200.
func (e *loadEnv) run(tg loadTarget, workers int, d time.Duration, max int) loadResult {
	var sent atomic.Int64
	var mu sync.Mutex
	var res loadResult
	url := e.srv.URL + tg.path
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			var mine loadResult
			mine.lat = make([]time.Duration, 0, 4096)
			for sent.Add(1) <= int64(max) && time.Now().Before(deadline) {
				req, err := http.NewRequest(tg.method, url, nil)
				if err != nil {
					panic(err)
				}
				if tg.auth {
					req.Header.Set("Authorization", "Bearer "+e.token)
				}
				t := time.Now()
				resp, err := e.client.Do(req)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				mine.lat = append(mine.lat, time.Since(t))
				mine.n++
				switch {
				case err != nil:
					mine.failed++
					if mine.firstErr == "" {
						mine.firstErr = err.Error()
					}
				case resp.StatusCode != http.StatusOK:
					mine.failed++
					if mine.firstErr == "" {
						mine.firstErr = resp.Status
					}
				}
			}
			mu.Lock()
			res.add(mine)
			mu.Unlock()
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	return res
}

// graphHTTP counts the HTTP requests the fake Graph received.
func (e *loadEnv) graphHTTP() int {
	n := 0
	for _, r := range e.tenant.Requests() {
		if r.BatchID == "" && strings.HasPrefix(r.Path, "/v1.0/") {
			n++
		}
	}
	return n
}

// BenchmarkExampleLoad runs the example app in-process in real mode
// against graphtest on loopback and loads, in turn for loadRounds rounds:
// /healthz (unprotected), /healthz sent with the bearer token it ignores
// (healthz+token: the token's bytes on the wire, nothing else), the same
// handler behind the Authenticator and Guard.Require (auth+guard), GET
// /api/me (Guard.Load and the live state as JSON) and POST
// /api/users/{id}/reset-password (Guard.Load, then Guard.Check in the
// handler with an active Helpdesk Administrator role, the target read from
// the in-memory directory), each from loadWorkers keep-alive clients for
// loadPhase. It reports each route's requests/s and p50/p99 latency, and
// each other route's throughput and p50 as a ratio to /healthz's. Token and
// state caches are warm: the run measures the warm path over HTTP (the
// state is refetched when CacheTTL, 30 s, runs out). The load generator
// shares the machine's CPUs with the server.
func BenchmarkExampleLoad(b *testing.B) {
	e := newLoadEnv(b)
	for _, tg := range loadTargets { // warm both caches and check every route
		if r := e.run(tg, 1, 5*time.Second, 5); r.failed > 0 {
			b.Fatalf("%s %s: %d of %d failed (%s)", tg.method, tg.path, r.failed, r.n, r.firstErr)
		}
	}
	var results map[string]*loadResult
	var graph int
	for b.Loop() {
		e.tenant.ResetRequests()
		results = map[string]*loadResult{}
		for _, tg := range loadTargets {
			results[tg.name] = &loadResult{}
		}
		for range loadRounds {
			for _, tg := range loadTargets {
				r := e.run(tg, loadWorkers, loadPhase, loadMaxPerPhase)
				if r.failed > 0 {
					b.Fatalf("%s %s: %d of %d failed (%s)", tg.method, tg.path, r.failed, r.n, r.firstErr)
				}
				results[tg.name].add(r)
			}
		}
		graph = e.graphHTTP()
	}
	base := results["healthz"]
	slices.Sort(base.lat)
	var table strings.Builder
	fmt.Fprintf(&table, "%d workers, %d rounds of %v per route; Graph HTTP requests during the run: %d\n", loadWorkers, loadRounds, loadPhase, graph)
	fmt.Fprintf(&table, "%-14s %-36s %9s %10s %10s %10s %12s %12s\n", "route", "request", "requests", "req/s", "p50", "p99", "req/s ratio", "p50 ratio")
	for _, tg := range loadTargets {
		r := results[tg.name]
		slices.Sort(r.lat)
		p50, p99 := r.quantile(0.50), r.quantile(0.99)
		b.ReportMetric(r.rps(), tg.name+"-req/s")
		b.ReportMetric(float64(p50.Microseconds()), tg.name+"-p50-us")
		b.ReportMetric(float64(p99.Microseconds()), tg.name+"-p99-us")
		rpsRatio, p50Ratio := r.rps()/base.rps(), float64(p50)/float64(base.quantile(0.50))
		if tg.name != "healthz" {
			b.ReportMetric(rpsRatio, tg.name+"-x-healthz-req/s")
			b.ReportMetric(p50Ratio, tg.name+"-x-healthz-p50")
		}
		fmt.Fprintf(&table, "%-14s %-36s %9d %10.0f %10v %10v %12.3f %12.3f\n",
			tg.name, tg.method+" "+tg.path, r.n, r.rps(), p50.Round(time.Microsecond), p99.Round(time.Microsecond), rpsRatio, p50Ratio)
	}
	b.ReportMetric(float64(graph), "graph-requests")
	b.Log("\n" + table.String())
}

// TestExampleLoadHarness checks, with a handful of requests, that every
// route BenchmarkExampleLoad loads answers 200 through the load generator,
// so that the benchmark cannot silently measure rejections.
func TestExampleLoadHarness(t *testing.T) {
	e := newLoadEnv(t)
	for _, tg := range loadTargets {
		r := e.run(tg, 2, 5*time.Second, 20)
		if r.n != 20 || r.failed > 0 {
			t.Errorf("%s %s: %d requests, %d failed (%s); want 20 answered 200", tg.method, tg.path, r.n, r.failed, r.firstErr)
		}
	}
}

package breaker_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/graphcheck/breaker"
	"github.com/pimguard/pimguard/middleware"
)

// The breaker figures of README.md, on the real clock:
//
//	go test -run TestBreakerFigures -v ./graphcheck/breaker/
//
// A Guard serves cold requests (a new principal each, so every one needs a
// lookup) from 20 clients, each sending its next request 10 ms after the
// last answer, over a fake Graph that answers in 5 ms, then is down for
// outage (each failed lookup taking failLatency, standing for the Graph
// SDK's retries against a dead Graph: ≈ 7 s measured with
// graphcheck/msgraph), then answers again. The same load runs without and
// with the breaker (cool-down Timeout). The test logs the figures and
// asserts counts only, never a duration.
func TestBreakerFigures(t *testing.T) {
	if testing.Short() {
		t.Skip("real-time figures (≈ 13 s); run without -short")
	}
	const (
		failLatency = 500 * time.Millisecond
		cooldown    = time.Second
		outage      = 4 * time.Second
		after       = 2 * time.Second
	)
	without := runOutage(t, nil, failLatency, outage, after)
	with := runOutage(t, &breaker.Config{Timeout: cooldown}, failLatency, outage, after)

	t.Logf("outage of %v, failed lookups taking %v, 20 clients of cold requests:", outage, failLatency)
	t.Logf("  without breaker: %d requests answered 503 during the outage, median %v; %d Source calls (%.1f/s)",
		len(without.slow), median(without.slow), without.outageCalls, float64(without.outageCalls)/outage.Seconds())
	t.Logf("  with breaker (cool-down %v): before it opened %d 503s, median %v; after, %d 503s failed fast, median %v",
		cooldown, len(with.slow), median(with.slow), len(with.fast), median(with.fast))
	t.Logf("  with breaker: %d Source calls during the outage (%.1f/s), of which %d while open over %.1f cool-downs (%.2f probes per cool-down)",
		with.outageCalls, float64(with.outageCalls)/outage.Seconds(), with.openCalls, with.openFor.Seconds()/cooldown.Seconds(),
		float64(with.openCalls)/(with.openFor.Seconds()/cooldown.Seconds()))
	t.Logf("  recovery after Graph returned: first 200 for a cold request after %v without the breaker, %v with it (cool-down %v)",
		without.recovered.Round(time.Millisecond), with.recovered.Round(time.Millisecond), cooldown)

	if len(with.fast) == 0 || len(without.fast) != 0 {
		t.Errorf("%d fast 503s with the breaker, %d without; want some and none", len(with.fast), len(without.fast))
	}
	if cooldowns := int64(with.openFor/cooldown) + 1; with.openCalls > cooldowns {
		t.Errorf("%d Source calls while open over %v: more than one probe per cool-down (%d)", with.openCalls, with.openFor, cooldowns)
	}
	if with.recovered < 0 || without.recovered < 0 {
		t.Errorf("no 200 after Graph returned (without %v, with %v)", without.recovered, with.recovered)
	}
	if with.wrong+without.wrong != 0 {
		t.Errorf("%d requests allowed while Graph was down, or refused while it was up", with.wrong+without.wrong)
	}
}

// outageRun is what one run measured.
type outageRun struct {
	slow, fast  []time.Duration // 503s through a Source lookup, and failed fast by the breaker
	outageCalls int64           // Source calls during the outage
	openCalls   int64           // of which while the breaker was open or half-open
	openFor     time.Duration   // from its first opening to the end of the outage
	recovered   time.Duration   // from Graph's return to the first 200; -1 if none
	wrong       int             // 200 during the outage (nothing was cached) or 503 well after it
}

// transitionLog records when the breaker opened first.
type transitionLog struct {
	mu     sync.Mutex
	opened time.Time
}

func (l *transitionLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *transitionLog) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if r.Level == slog.LevelWarn && l.opened.IsZero() {
		l.opened = time.Now()
	}
	return nil
}
func (l *transitionLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *transitionLog) WithGroup(string) slog.Handler      { return l }

func runOutage(t *testing.T, cfg *breaker.Config, failLatency, outage, after time.Duration) outageRun {
	t.Helper()
	var down atomic.Bool
	var calls, outageCalls, openCalls atomic.Int64
	tl := &transitionLog{}
	isOpen := func() bool { tl.mu.Lock(); defer tl.mu.Unlock(); return !tl.opened.IsZero() }
	graph := graphcheck.SourceFunc(func(ctx context.Context, p graphcheck.Principal) (*graphcheck.State, error) {
		calls.Add(1)
		if down.Load() {
			outageCalls.Add(1)
			if isOpen() {
				openCalls.Add(1)
			}
			select {
			case <-time.After(failLatency):
			case <-ctx.Done():
			}
			return nil, errOutage
		}
		time.Sleep(5 * time.Millisecond)
		return &graphcheck.State{TenantID: p.TenantID, ObjectID: p.ObjectID, FetchedAt: time.Now(),
			Roles: []graphcheck.RoleAssignment{{RoleDefinitionID: roleID, DirectoryScopeID: "/",
				AssignmentType: graphcheck.AssignmentActivated, Window: graphcheck.Window{End: time.Now().Add(time.Hour)}}}}, nil
	})
	var src graphcheck.Source = graph
	if cfg != nil {
		c := *cfg
		c.Logger = slog.New(tl)
		src = breaker.New(graph, c)
	}
	guard := middleware.MustNewGuard(middleware.GuardConfig{Source: src, Logger: quiet(),
		ErrorWriter: func(w http.ResponseWriter, r *http.Request, rej *middleware.Rejection) {
			if _, ok := errors.AsType[*breaker.OpenError](rej.Err); ok {
				w.Header().Set("X-Failed-Fast", "1")
			}
			middleware.WriteRejection(w, r, rej)
		}})
	h := guard.Require(middleware.Role(roleID))(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))

	type result struct {
		start, end time.Time
		status     int
		fast       bool
	}
	var (
		mu      sync.Mutex
		results []result
		next    atomic.Int64
		stop    atomic.Bool
		wg      sync.WaitGroup
	)
	for range 20 {
		wg.Go(func() {
			for !stop.Load() {
				r := httptest.NewRequest(http.MethodGet, "/admin", nil)
				r = r.WithContext(middleware.ContextWithPrincipal(r.Context(),
					&middleware.Principal{TenantID: tenantA, ObjectID: oid(int(next.Add(1)))}))
				rec := httptest.NewRecorder()
				start := time.Now()
				h.ServeHTTP(rec, r)
				res := result{start: start, end: time.Now(), status: rec.Code, fast: rec.Header().Get("X-Failed-Fast") == "1"}
				mu.Lock()
				results = append(results, res)
				mu.Unlock()
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	time.Sleep(500 * time.Millisecond)
	outageStart := time.Now()
	down.Store(true)
	time.Sleep(outage)
	down.Store(false)
	back := time.Now()
	time.Sleep(after)
	stop.Store(true)
	wg.Wait()

	run := outageRun{outageCalls: outageCalls.Load(), openCalls: openCalls.Load(), recovered: -1}
	if isOpen() {
		run.openFor = back.Sub(tl.opened)
	}
	for _, r := range results {
		switch {
		case r.status == http.StatusServiceUnavailable && r.fast:
			run.fast = append(run.fast, r.end.Sub(r.start))
		case r.status == http.StatusServiceUnavailable && r.start.After(outageStart) && r.end.Before(back):
			run.slow = append(run.slow, r.end.Sub(r.start))
		}
		if r.status == http.StatusOK && r.start.After(back) && (run.recovered < 0 || r.end.Sub(back) < run.recovered) {
			run.recovered = r.end.Sub(back)
		}
		// Nothing is cached (every principal is new): a 200 during the
		// outage is a wrong allow; a 503 for a request started a
		// cool-down and two failed lookups after Graph returned is a
		// failure to recover.
		cool := time.Duration(0)
		if cfg != nil {
			cool = cfg.Timeout
		}
		if r.status == http.StatusOK && r.start.After(outageStart) && r.end.Before(back) ||
			r.status != http.StatusOK && r.start.After(back.Add(cool+2*failLatency)) {
			run.wrong++
		}
	}
	if n := calls.Load(); n == 0 {
		t.Fatal("no Source call")
	}
	return run
}

func median(ds []time.Duration) string {
	if len(ds) == 0 {
		return "n/a"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	m := s[len(s)/2]
	switch {
	case m < time.Millisecond:
		return fmt.Sprintf("%.0fµs", float64(m)/float64(time.Microsecond))
	default:
		return m.Round(time.Millisecond).String()
	}
}

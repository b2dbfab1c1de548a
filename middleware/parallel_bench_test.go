package middleware_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/middleware"
)

// spreadPrincipals is how many principals (and tokens) the parallel
// benchmark spreads its requests over, so that it measures the caches'
// sharding rather than one hot key's shard lock.
const spreadPrincipals = 256

// spreadSetup returns Authenticator + Guard.Require(Role(...)) over a fake
// source, both caches warm for spreadPrincipals principals, on the wall
// clock (graphtest's settable clock takes a mutex on every read).
func spreadSetup(b *testing.B) (http.Handler, []*http.Request) {
	b.Helper()
	tenant := graphtest.NewServer(graphtest.Options{Clock: graphtest.NewLiveClock()})
	b.Cleanup(tenant.Close)
	auth, err := middleware.NewAuthenticator(context.Background(), middleware.AuthenticatorConfig{
		Tenants: []string{graphtest.TenantID}, Audiences: []string{graphtest.APIClientID}, Authority: tenant.URL,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	end := time.Now().Add(8 * time.Hour)
	src := graphcheck.SourceFunc(func(_ context.Context, p graphcheck.Principal) (*graphcheck.State, error) {
		return &graphcheck.State{TenantID: p.TenantID, ObjectID: p.ObjectID, FetchedAt: time.Now(),
			Roles: []graphcheck.RoleAssignment{{RoleDefinitionID: middleware.RoleHelpdeskAdministrator, DirectoryScopeID: "/", Window: graphcheck.Window{End: end}}},
		}, nil
	})
	guard := middleware.MustNewGuard(middleware.GuardConfig{Source: src, CacheTTL: time.Hour, Logger: slog.New(slog.DiscardHandler)})
	h := auth.Handler(guard.Require(middleware.Role(middleware.RoleHelpdeskAdministrator))(okHandler))
	reqs := make([]*http.Request, spreadPrincipals)
	for i := range reqs {
		tok := tenant.MustMint(graphtest.Token{ObjectID: fmt.Sprintf("5a000000-0000-4000-8000-%012d", i)})
		reqs[i] = httptest.NewRequest(http.MethodGet, "/api/me", nil)
		reqs[i].Header.Set("Authorization", "Bearer "+tok)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, reqs[i])
		if rec.Code != http.StatusOK {
			b.Fatalf("warm-up %d: status %d %s", i, rec.Code, rec.Body)
		}
	}
	return h, reqs
}

// BenchmarkGuardSpreadParallel reports, in one run, the wall time per warm
// request (Authenticator + Guard, 256 principals) served by one goroutine and
// by GOMAXPROCS goroutines, and their ratio. With caches that do not
// serialise on one lock, parallel/serial approaches 1/GOMAXPROCS.
func BenchmarkGuardSpreadParallel(b *testing.B) {
	h, reqs := spreadSetup(b)
	procs := runtime.GOMAXPROCS(0)
	run := func(workers, perWorker int) time.Duration {
		var wg sync.WaitGroup
		start := time.Now()
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rw := &discardWriter{h: http.Header{}}
				for i := range perWorker {
					h.ServeHTTP(rw, reqs[(w*7919+i)%len(reqs)])
				}
			}()
		}
		wg.Wait()
		return time.Since(start)
	}
	const total = 200_000
	for b.Loop() {
		serial := float64(run(1, total).Nanoseconds()) / total
		parallel := float64(run(procs, total/procs).Nanoseconds()) / float64(total/procs*procs)
		b.ReportMetric(serial, "serial-ns/op")
		b.ReportMetric(parallel, "parallel-ns/op")
		b.ReportMetric(parallel/serial, "parallel/serial")
		b.ReportMetric(float64(procs), "procs")
	}
}

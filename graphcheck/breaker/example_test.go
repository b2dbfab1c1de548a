package breaker_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/graphcheck/breaker"
)

// Wrap the Graph source (graphcheck/msgraph in a service; a SourceFunc
// failing as Graph does when it is down, here) and give the wrapper to
// the Guard as its Source. After 5 outage failures from 2 or more
// principals, the tenant's lookups fail fast until the cool-down ends;
// middleware.Guard answers them 503 pim_unavailable with Retry-After.
func ExampleNew() {
	graphDown := graphcheck.SourceFunc(func(context.Context, graphcheck.Principal) (*graphcheck.State, error) {
		return nil, fmt.Errorf("%w: %w: dial tcp: connection refused", graphcheck.ErrUnavailable, graphcheck.ErrOutage)
	})
	src := breaker.New(graphDown, breaker.Config{Logger: slog.New(slog.DiscardHandler)})
	// guard := middleware.MustNewGuard(middleware.GuardConfig{Source: src, MaxStale: 10 * time.Minute})

	const tenant = "8d3f0a52-6b1e-4c2a-9f4e-1a7b2c3d4e5f"
	for i := range 6 {
		p := graphcheck.Principal{TenantID: tenant, ObjectID: fmt.Sprintf("%08x-0000-4000-8000-000000000000", i)}
		_, err := src.Lookup(context.Background(), p)
		var open *breaker.OpenError
		if errors.As(err, &open) {
			fmt.Printf("lookup %d failed fast: retry after %v\n", i+1, open.RetryAfter().Round(time.Second))
		} else {
			fmt.Printf("lookup %d went to Graph: outage %v\n", i+1, errors.Is(err, graphcheck.ErrOutage))
		}
	}
	for _, c := range src.Health() {
		fmt.Printf("%s ready=%v\n", c.Name, c.Ready)
	}
	// Output:
	// lookup 1 went to Graph: outage true
	// lookup 2 went to Graph: outage true
	// lookup 3 went to Graph: outage true
	// lookup 4 went to Graph: outage true
	// lookup 5 went to Graph: outage true
	// lookup 6 failed fast: retry after 10s
	// breaker/8d3f0a52-6b1e-4c2a-9f4e-1a7b2c3d4e5f ready=false
}

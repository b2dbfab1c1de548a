// Package breaker fails Graph lookups fast while Graph is down: [New] wraps
// any graphcheck.Source in one circuit breaker per tenant
// (github.com/sony/gobreaker/v2), so that during an outage a request that
// needs a lookup gets its 503 at once instead of after the Source's
// retries and timeouts, and Graph receives one probe per cool-down instead
// of one lookup per uncached principal.
//
//	src := breaker.New(graphSource, breaker.Config{})
//	guard, err := middleware.NewGuard(middleware.GuardConfig{Source: src, MaxStale: 10 * time.Minute})
//
// # What opens a breaker
//
// Only failures that say Graph itself is down count: errors wrapping
// graphcheck.ErrOutage (refused or dropped connections, 5xx answers,
// throttling that outlasted the retries, timeouts; graphcheck/msgraph
// wraps them so). A tenant's breaker opens after [Config.Failures] of
// them in a row, from at least [Config.Principals] distinct principals,
// with no lookup answered in between: one principal whose lookup times out
// or returns garbage cannot open it for the whole tenant. An answer (a
// state, "not found", a refused permission) resets the count; other errors
// (a malformed answer, a cancelled caller) neither count nor reset it.
//
// # While a breaker is open
//
// [Source.Lookup] returns an [*OpenError] at once, wrapping
// graphcheck.ErrUnavailable and graphcheck.ErrOutage: middleware.Guard
// answers 503 pim_unavailable, with the rest of the cool-down as
// Retry-After, and with GuardConfig.MaxStale a state that expired less than
// MaxStale ago still serves. After [Config.Timeout] the breaker is
// half-open: the next lookup goes to Graph as a probe, the others keep
// failing fast until it ends; an answer closes the breaker, an outage
// failure opens it for another cool-down.
//
// # Reporting
//
// [Source.Health] reports each tenant's breaker ("breaker/<tenant>": not
// ready while open, ready but degraded while half-open) after the wrapped
// Source's own report. Each state change is one log line and one count of
// pimguard.breaker.transitions; pimguard.breaker.rejected counts the
// lookups failed fast and pimguard.breaker.tenants the tenants in each
// state.
//
// # Clock
//
// gobreaker reads time.Now and has no clock of its own, so neither has
// [Config]: tests drive the cool-down with testing/synctest.
package breaker

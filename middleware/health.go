package middleware

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
)

var _ graphcheck.HealthReporter = (*Guard)(nil)

// Health implements graphcheck.HealthReporter: the Guard's readiness
// report, for [ReadyHandler]. It lists, in this order:
//
//   - the report of [GuardConfig.Source] when it is a
//     graphcheck.HealthReporter (graphcheck/breaker: "breaker/<tenant>",
//     not ready while the tenant's lookups are failed fast);
//   - the report of [GuardConfig.Shared] when it is one (redisstore:
//     "shared", always ready, degraded while Redis is unreachable);
//   - one "graph/<tenant>" item per tenant the Guard has looked up: the
//     outcome of its last Source lookup and since when lookups have been
//     answering or failing. It is always ready, and degraded while lookups
//     fail, naming the failure's class (Graph outage, a missing permission
//     or licence, an unexpected answer), never its text.
//
// A failed lookup does not make the Guard unready: Graph is shared by
// every replica, and a replica taken out of rotation gets no request that
// could show that Graph answers again. What fails fast is reported by the
// breaker, whose cool-down ends without traffic.
//
// Health reads what lookups recorded (a request answered from the cache
// records nothing) and makes no network call. The "graph/" items cover at
// most the first 1000 tenants looked up. It is safe for concurrent use.
func (g *Guard) Health() []graphcheck.HealthCheck {
	var out []graphcheck.HealthCheck
	if hr, ok := g.cfg.Source.(graphcheck.HealthReporter); ok {
		out = append(out, hr.Health()...)
	}
	if hr, ok := g.cfg.Shared.(graphcheck.HealthReporter); ok {
		out = append(out, hr.Health()...)
	}
	return append(out, g.lookups.health()...)
}

// maxHealthTenants bounds the tenants whose lookups a Guard reports.
const maxHealthTenants = 1000

// lookupHealth is the outcome of the last Source lookup per tenant. It is
// written by lookups only (cache misses), so the warm path never touches it.
type lookupHealth struct {
	mu      sync.Mutex
	tenants map[string]*tenantLookups
}

type tenantLookups struct {
	failing  bool      // the last lookup failed
	class    string    // what the last failure was, for operators
	since    time.Time // when lookups started answering or failing
	last     time.Time // the last lookup
	failures int       // lookups failed in a row
}

// observe records the outcome of one lookup for tenant at now; err is nil
// for an answer (a state, or "not found").
func (h *lookupHealth) observe(tenant string, err error, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := h.tenants[tenant]
	if t == nil {
		if len(h.tenants) >= maxHealthTenants {
			return
		}
		if h.tenants == nil {
			h.tenants = map[string]*tenantLookups{}
		}
		t = &tenantLookups{failing: err != nil, since: now}
		h.tenants[tenant] = t
	}
	if failing := err != nil; failing != t.failing {
		t.failing, t.since = failing, now
	}
	t.last = now
	if err != nil {
		t.failures++
		t.class = lookupFailureClass(err)
	} else {
		t.failures, t.class = 0, ""
	}
}

// health returns one item per tenant, sorted by name.
func (h *lookupHealth) health() []graphcheck.HealthCheck {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]graphcheck.HealthCheck, 0, len(h.tenants))
	for tenant, t := range h.tenants {
		c := graphcheck.HealthCheck{Name: "graph/" + tenant, Ready: true, Since: t.since}
		if t.failing {
			c.Degraded = true
			c.Detail = fmt.Sprintf("the last %d Source lookups failed (%s), the last at %s; requests for principals not cached get 503 pim_unavailable",
				t.failures, t.class, t.last.UTC().Format(time.RFC3339))
		} else {
			c.Detail = "the Source answered the last lookup, at " + t.last.UTC().Format(time.RFC3339)
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b graphcheck.HealthCheck) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// lookupFailureClass names the class of a lookup error in a few fixed
// words: the error's text may name principals and is for logs.
func lookupFailureClass(err error) string {
	if pe, ok := errors.AsType[*graphcheck.PermissionError](err); ok && pe.Permission != "" {
		if errors.Is(pe, graphcheck.ErrLicenseRequired) {
			return "tenant licence required: " + pe.Permission
		}
		return "Graph permission missing: " + pe.Permission
	}
	switch {
	case errors.Is(err, graphcheck.ErrPermissionDenied):
		return "Graph permission missing"
	case errors.Is(err, graphcheck.ErrLicenseRequired):
		return "tenant licence required"
	case errors.Is(err, graphcheck.ErrOutage):
		if _, ok := errors.AsType[retryHint](err); ok {
			return "Graph outage, failed fast"
		}
		return "Graph outage"
	case errors.Is(err, context.DeadlineExceeded):
		return "timed out"
	case errors.Is(err, graphcheck.ErrUnavailable):
		return "Graph unavailable or an unexpected answer"
	}
	return "lookup failed"
}

// ReadyHandler returns a readiness endpoint (e.g. GET /readyz) over the
// reports of reporters: the [Authenticator], the [Guard] (which includes
// its Source's and shared tier's), anything else implementing
// graphcheck.HealthReporter. It answers GET and HEAD, 200 when every item
// is ready and 503 otherwise, with a JSON body:
//
//	{"ready":false,"not_ready":["breaker/<tenant>"],"checks":[{"name":…,"ready":…,"degraded":…,"detail":…,"since":…},…]}
//
// not_ready lists the names of the items that are not ready, and is
// absent when there is none. A degraded item (e.g. the fleet working
// locally while Redis is down) does not make the answer 503. Responses are
// not cached (Cache-Control: no-store); other methods get 405.
//
// Reporters promise that no item holds a token or a secret; ReadyHandler
// still replaces anything in a name or detail that looks like a JWT with
// "[redacted]". It panics if a reporter is nil, so that a wiring mistake
// fails when routes are built. The handler calls every reporter's Health
// on each request and is safe for concurrent use.
func ReadyHandler(reporters ...graphcheck.HealthReporter) http.Handler {
	for i, r := range reporters {
		if r == nil {
			panic(fmt.Sprintf("middleware: ReadyHandler: reporter %d is nil", i))
		}
	}
	reporters = slices.Clone(reporters)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		rep := readyReport{Checks: []graphcheck.HealthCheck{}}
		for _, hr := range reporters {
			for _, c := range hr.Health() {
				c.Name, c.Detail = redactJWT(c.Name), redactJWT(c.Detail)
				rep.Checks = append(rep.Checks, c)
				if !c.Ready {
					rep.NotReady = append(rep.NotReady, c.Name)
				}
			}
		}
		rep.Ready = len(rep.NotReady) == 0
		h := w.Header()
		h.Set("Content-Type", "application/json; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		status := http.StatusOK
		if !rep.Ready {
			status = http.StatusServiceUnavailable
		}
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(rep)
	})
}

// readyReport is the body of [ReadyHandler].
type readyReport struct {
	Ready    bool                     `json:"ready"`
	NotReady []string                 `json:"not_ready,omitempty"`
	Checks   []graphcheck.HealthCheck `json:"checks"`
}

// jwtLike matches the start of a compact JWS or JWE: a base64url JSON
// object ("eyJ") followed by at least one more dot-separated segment.
var jwtLike = regexp.MustCompile(`eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_.-]*`)

func redactJWT(s string) string {
	if !strings.Contains(s, "eyJ") {
		return s
	}
	return jwtLike.ReplaceAllString(s, "[redacted]")
}

package msgraph_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/graphcheck/msgraph"
)

// TestOutageClassification runs a lookup against each kind of fault the
// fake tenant can inject (and a closed port, a redirect, the caller giving
// up, the Source's own limits) and checks that the error wraps
// graphcheck.ErrOutage exactly when it says Graph is down for everyone:
// refused or dropped connections, 5xx, throttling that outlasted the
// retries, timeouts. Malformed or unexpected answers, 404s and refusals
// are failures of one lookup: ErrUnavailable (or their own sentinel)
// without ErrOutage, so that a circuit breaker does not open on them.
// Every failure still wraps a sentinel that is never "no roles".
func TestOutageClassification(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String() + "/v1.0"
	_ = l.Close()
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "https://graph.microsoft.com"+r.URL.RequestURI(), http.StatusTemporaryRedirect)
	}))
	t.Cleanup(redirector.Close)

	const short = 200 * time.Millisecond
	forged := graphtest.Fault{Body: `{"value":[{"roleDefinitionId":"` + ga + `","directoryScopeId":"/","assignmentType":"Assigned","endDateTime":"tomorrow"}]}`}
	tests := []struct {
		name   string
		match  graphtest.GraphMatch
		fault  graphtest.Fault
		cfg    func(*msgraph.Config)
		ctx    func() (context.Context, context.CancelFunc)
		p      graphcheck.Principal
		before func(*stack) // runs first, e.g. a lookup that sets a tenant pause
		want   error
		outage bool
	}{
		// Graph down: outages.
		{name: "500 on $batch", match: batchItself, fault: graphtest.Fault{Status: 500}, want: graphcheck.ErrUnavailable, outage: true},
		{name: "502 on $batch", match: batchItself, fault: graphtest.Fault{Status: 502}, want: graphcheck.ErrUnavailable, outage: true},
		{name: "503 on $batch, retries spent", match: batchItself, fault: graphtest.Fault{Status: 503}, want: graphcheck.ErrUnavailable, outage: true},
		{name: "504 on $batch, retries spent", match: batchItself, fault: graphtest.Fault{Status: 504}, want: graphcheck.ErrUnavailable, outage: true},
		{name: "500 inside", match: inside("/roleManagement/"), fault: graphtest.Fault{Status: 500}, want: graphcheck.ErrUnavailable, outage: true},
		{name: "503 inside, retries spent", match: inside("/identityGovernance/"), fault: graphtest.Fault{Status: 503, RetryAfter: "1"}, want: graphcheck.ErrUnavailable, outage: true},
		{name: "429 inside, retries spent", match: inside("/roleManagement/"), fault: graphtest.ThrottledFault("1"), want: graphcheck.ErrUnavailable, outage: true},
		{name: "429 on $batch without Retry-After, retries spent", match: batchItself, fault: graphtest.ThrottledFault(""), want: graphcheck.ErrUnavailable, outage: true},
		{name: "429 with retries disabled", match: inside("/users/"), fault: graphtest.ThrottledFault("1"), cfg: func(c *msgraph.Config) { c.MaxRetries = msgraph.NoRetries },
			want: graphcheck.ErrUnavailable, outage: true},
		{name: "429 whose Retry-After outlasts the deadline", match: inside("/roleManagement/"), fault: graphtest.ThrottledFault("86400"), want: graphcheck.ErrUnavailable, outage: true},
		{name: "the tenant paused beyond the deadline", p: user(bob),
			before: func(e *stack) {
				remove := e.srv.InjectGraphFault(inside("/roleManagement/"), graphtest.ThrottledFault("50"))
				_, _ = e.src.Lookup(context.Background(), user(alice)) // sets a 50 s pause; its own retry does not fit
				remove()
			},
			cfg: func(c *msgraph.Config) { c.Timeout = 20 * time.Second }, want: graphcheck.ErrUnavailable, outage: true},
		{name: "connection dropped: $batch", match: batchItself, fault: graphtest.Fault{Kind: graphtest.FaultDropConnection}, want: graphcheck.ErrUnavailable, outage: true},
		{name: "connection dropped: sub-request", match: inside("/users/"), fault: graphtest.Fault{Kind: graphtest.FaultDropConnection}, want: graphcheck.ErrUnavailable, outage: true},
		{name: "connection dropped: nextLink page", match: inside("/roleManagement/"), fault: graphtest.Fault{Kind: graphtest.FaultDropConnection},
			before: func(e *stack) {
				e.srv.InjectGraphFault(inside("/roleManagement/"), graphtest.Fault{Kind: graphtest.FaultNextLink, Times: 1,
					NextLink: e.srv.GraphURL() + "/roleManagement/directory/roleAssignmentScheduleInstances?$skiptoken=page2"})
			}, want: graphcheck.ErrUnavailable, outage: true},
		{name: "connection refused", cfg: func(c *msgraph.Config) { c.BaseURL = closed }, want: graphcheck.ErrUnavailable, outage: true},
		{name: "hang: Source Timeout", match: batchItself, fault: graphtest.Fault{Kind: graphtest.FaultHang}, cfg: func(c *msgraph.Config) { c.Timeout = short },
			want: context.DeadlineExceeded, outage: true},
		{name: "hang: the caller's deadline", match: inside("/identityGovernance/"), fault: graphtest.Fault{Kind: graphtest.FaultHang},
			ctx: func() (context.Context, context.CancelFunc) { return context.WithTimeout(context.Background(), short) }, want: context.DeadlineExceeded, outage: true},

		// One lookup went wrong: not outages.
		{name: "403 Authorization_RequestDenied", match: inside("/roleManagement/"), fault: graphtest.DeniedFault(), want: graphcheck.ErrPermissionDenied},
		{name: "403 PermissionScopeNotGranted", match: inside("/roleManagement/"), fault: graphtest.ScopeNotGrantedFault(), want: graphcheck.ErrPermissionDenied},
		{name: "403 on $batch", match: batchItself, fault: graphtest.DeniedFault(), want: graphcheck.ErrPermissionDenied},
		{name: "403 AadPremiumLicenseRequired", match: inside("/identityGovernance/"), fault: graphtest.LicenseRequiredFault(), want: graphcheck.ErrLicenseRequired},
		{name: "404: the principal is gone", p: user(nobody), want: graphcheck.ErrPrincipalNotFound},
		{name: "404 on a collection", match: inside("/roleManagement/"), fault: graphtest.Fault{Status: 404, Code: "Request_ResourceNotFound"}, want: graphcheck.ErrUnavailable},
		{name: "400 inside", match: inside("/roleManagement/"), fault: graphtest.Fault{Status: 400}, want: graphcheck.ErrUnavailable},
		{name: "401 on $batch", match: batchItself, fault: graphtest.Fault{Status: 401}, want: graphcheck.ErrUnavailable},
		{name: "malformed JSON inside", match: inside("/roleManagement/"), fault: graphtest.MalformedJSONFault(), want: graphcheck.ErrUnavailable},
		{name: "malformed $batch answer", match: batchItself, fault: graphtest.MalformedJSONFault(), want: graphcheck.ErrUnavailable},
		{name: "wrong shape inside", match: inside("/users/"), fault: graphtest.WrongShapeFault(), want: graphcheck.ErrUnavailable},
		{name: "wrong shape $batch answer", match: batchItself, fault: graphtest.WrongShapeFault(), want: graphcheck.ErrUnavailable},
		{name: "forged date", match: inside("/roleManagement/"), fault: forged, want: graphcheck.ErrUnavailable},
		{name: "nextLink off host", match: inside("/users/"), fault: graphtest.NextLinkOffHostFault(), want: graphcheck.ErrUnavailable},
		{name: "nextLink loop", match: inside("/identityGovernance/"), fault: graphtest.Fault{Kind: graphtest.FaultNextLinkLoop}, want: graphcheck.ErrUnavailable},
		{name: "redirect inside", match: inside("/roleManagement/"), fault: graphtest.Fault{Status: http.StatusTemporaryRedirect, Body: `{}`}, want: graphcheck.ErrUnavailable},
		{name: "$batch redirected", cfg: func(c *msgraph.Config) { c.BaseURL = redirector.URL + "/v1.0" }, want: graphcheck.ErrUnavailable},
		{name: "more pages than MaxPages", before: func(e *stack) { e.srv.SetGraphPageSize(1) }, p: user(carol),
			cfg: func(c *msgraph.Config) { c.MaxPages = 1 }, want: graphcheck.ErrUnavailable},
		{name: "the caller gave up", ctx: func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx, cancel
		}, want: context.Canceled},
		{name: "the riskyUsers limiter allows no request in time", p: graphcheck.Principal{TenantID: graphtest.TenantID, ObjectID: bob, Need: graphcheck.NeedRisk},
			before: func(e *stack) {
				_, _ = e.src.Lookup(context.Background(), graphcheck.Principal{TenantID: graphtest.TenantID, ObjectID: alice, Need: graphcheck.NeedRisk})
			},
			cfg: func(c *msgraph.Config) { c.RiskRequestsPerSecond = 0.001 }, want: graphcheck.ErrUnavailable},
		{name: "invalid principal: nothing sent", p: user("not-a-guid"), want: graphcheck.ErrInvalidPrincipal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, graphtest.Options{}, func(_ *stack, c *msgraph.Config) {
				if tt.cfg != nil {
					tt.cfg(c)
				}
			})
			must(t, e.srv.AssignRole(alice, ga, "/", time.Time{}, time.Time{}))
			must(t, e.srv.AssignRole(carol, ga, "/", time.Time{}, time.Time{}))
			must(t, e.srv.AssignRole(carol, reader, "/", time.Time{}, time.Time{}))
			if tt.before != nil {
				tt.before(e)
			}
			if tt.match != (graphtest.GraphMatch{}) {
				e.srv.InjectGraphFault(tt.match, tt.fault)
			}
			ctx, cancel := context.Background(), context.CancelFunc(func() {})
			if tt.ctx != nil {
				ctx, cancel = tt.ctx()
			}
			defer cancel()
			p := tt.p
			if p == (graphcheck.Principal{}) {
				p = user(alice)
			}
			st, err := e.src.Lookup(ctx, p)
			if st != nil || !errors.Is(err, tt.want) {
				t.Fatalf("Lookup = %v, %v; want error %v", st, err, tt.want)
			}
			if got := errors.Is(err, graphcheck.ErrOutage); got != tt.outage {
				t.Errorf("errors.Is(err, ErrOutage) = %v, want %v\n%v", got, tt.outage, err)
			}
			if tt.outage && !errors.Is(err, graphcheck.ErrUnavailable) {
				t.Errorf("an outage that is not ErrUnavailable: %v", err)
			}
		})
	}
}

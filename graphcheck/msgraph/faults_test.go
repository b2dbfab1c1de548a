package msgraph_test

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/graphcheck/msgraph"
)

func inside(prefix string) graphtest.GraphMatch {
	return graphtest.GraphMatch{PathPrefix: prefix, Scope: graphtest.InsideBatch}
}

var batchItself = graphtest.GraphMatch{PathPrefix: "/$batch", Scope: graphtest.OutsideBatch}

func TestFaults(t *testing.T) {
	tests := []struct {
		name      string
		principal graphcheck.Principal
		match     graphtest.GraphMatch
		fault     graphtest.Fault
		want      error  // sentinel
		perm      string // PermissionError.Permission, if one is expected
		code      string // PermissionError.Code
		trips     int    // HTTP round trips, 0: not checked
	}{
		{name: "roles: Authorization_RequestDenied", principal: user(alice), match: inside("/roleManagement/"), fault: graphtest.DeniedFault(),
			want: graphcheck.ErrPermissionDenied, perm: msgraph.PermissionRoleAssignmentSchedule, code: "Authorization_RequestDenied", trips: 1},
		{name: "roles: PermissionScopeNotGranted", principal: user(alice), match: inside("/roleManagement/"), fault: graphtest.ScopeNotGrantedFault(),
			want: graphcheck.ErrPermissionDenied, perm: msgraph.PermissionRoleAssignmentSchedule, code: "PermissionScopeNotGranted"},
		{name: "roles: licence", principal: user(alice), match: inside("/roleManagement/"), fault: graphtest.LicenseRequiredFault(),
			want: graphcheck.ErrLicenseRequired, perm: msgraph.LicencePIM, code: "AadPremiumLicenseRequired"},
		{name: "PIM for Groups: PermissionScopeNotGranted", principal: user(alice), match: inside("/identityGovernance/"), fault: graphtest.ScopeNotGrantedFault(),
			want: graphcheck.ErrPermissionDenied, perm: msgraph.PermissionGroupAssignmentSchedule, code: "PermissionScopeNotGranted"},
		{name: "PIM for Groups: licence", principal: user(alice), match: inside("/identityGovernance/"), fault: graphtest.LicenseRequiredFault(),
			want: graphcheck.ErrLicenseRequired, perm: msgraph.LicencePIM, code: "AadPremiumLicenseRequired"},
		{name: "user memberships: denied", principal: user(alice), match: inside("/users/"), fault: graphtest.DeniedFault(),
			want: graphcheck.ErrPermissionDenied, perm: msgraph.PermissionGroupMember, code: "Authorization_RequestDenied"},
		{name: "service principal memberships: denied", principal: app(daemon), match: inside("/servicePrincipals/"), fault: graphtest.DeniedFault(),
			want: graphcheck.ErrPermissionDenied, perm: msgraph.PermissionServicePrincipalMemberOf, code: "Authorization_RequestDenied"},
		{name: "group list: denied", principal: user(bob), match: inside("/groups"), fault: graphtest.DeniedFault(),
			want: graphcheck.ErrPermissionDenied, perm: msgraph.PermissionGroupMember, code: "Authorization_RequestDenied", trips: 2},
		{name: "403 without a code", principal: user(alice), match: inside("/identityGovernance/"), fault: graphtest.Fault{Status: 403, Body: `{"error":{"code":"","message":"You do not have the required permissions to access this item."}}`},
			want: graphcheck.ErrPermissionDenied, perm: msgraph.PermissionGroupAssignmentSchedule, code: "403 Forbidden"},
		{name: "$batch itself denied", principal: user(alice), match: batchItself, fault: graphtest.DeniedFault(),
			want: graphcheck.ErrPermissionDenied, code: "Authorization_RequestDenied",
			perm: msgraph.PermissionRoleAssignmentSchedule + ", " + msgraph.PermissionGroupAssignmentSchedule + ", " + msgraph.PermissionGroupMember},
		{name: "principal deleted", principal: user(nobody), want: graphcheck.ErrPrincipalNotFound, trips: 1},
		{name: "404 on a collection is no verdict on the principal", principal: user(alice), match: inside("/roleManagement/"),
			fault: graphtest.Fault{Status: 404, Code: "Request_ResourceNotFound"}, want: graphcheck.ErrUnavailable},
		{name: "404 without Graph's code", principal: user(alice), match: inside("/users/"), fault: graphtest.Fault{Status: 404, Body: `not found`},
			want: graphcheck.ErrUnavailable},
		{name: "401", principal: user(alice), match: batchItself, fault: graphtest.Fault{Status: 401}, want: graphcheck.ErrUnavailable},
		{name: "500 inside", principal: user(alice), match: inside("/roleManagement/"), fault: graphtest.Fault{Status: 500}, want: graphcheck.ErrUnavailable, trips: 1},
		{name: "502 inside", principal: user(alice), match: inside("/users/"), fault: graphtest.Fault{Status: 502}, want: graphcheck.ErrUnavailable, trips: 1},
		{name: "503 inside, retried", principal: user(alice), match: inside("/identityGovernance/"), fault: graphtest.Fault{Status: 503}, want: graphcheck.ErrUnavailable, trips: 4},
		{name: "504 inside, retried", principal: user(alice), match: inside("/roleManagement/"), fault: graphtest.Fault{Status: 504}, want: graphcheck.ErrUnavailable, trips: 4},
		{name: "500 on $batch", principal: user(alice), match: batchItself, fault: graphtest.Fault{Status: 500}, want: graphcheck.ErrUnavailable, trips: 1},
		{name: "503 on $batch, retried", principal: user(alice), match: batchItself, fault: graphtest.Fault{Status: 503, RetryAfter: "1"}, want: graphcheck.ErrUnavailable, trips: 4},
		{name: "malformed JSON inside", principal: user(alice), match: inside("/roleManagement/"), fault: graphtest.MalformedJSONFault(), want: graphcheck.ErrUnavailable},
		{name: "malformed $batch answer", principal: user(alice), match: batchItself, fault: graphtest.MalformedJSONFault(), want: graphcheck.ErrUnavailable},
		{name: "wrong shape inside", principal: user(alice), match: inside("/users/"), fault: graphtest.WrongShapeFault(), want: graphcheck.ErrUnavailable},
		{name: "wrong shape $batch answer", principal: user(alice), match: batchItself, fault: graphtest.WrongShapeFault(), want: graphcheck.ErrUnavailable},
		{name: "page of the wrong entity", principal: user(alice), match: inside("/roleManagement/"),
			fault: graphtest.Fault{Body: `{"value":[{"id":"x","endDateTime":"tomorrow","roleDefinitionId":"` + reader + `"}]}`}, want: graphcheck.ErrUnavailable},
		{name: "nextLink off host", principal: user(alice), match: inside("/users/"), fault: graphtest.NextLinkOffHostFault(), want: graphcheck.ErrUnavailable, trips: 1},
		{name: "nextLink to another API version", principal: user(alice), match: inside("/users/"),
			fault: graphtest.Fault{Kind: graphtest.FaultNextLink, NextLink: "{URL}/beta/users?$skiptoken=x"}, want: graphcheck.ErrUnavailable, trips: 1},
		{name: "nextLink loop", principal: user(alice), match: inside("/identityGovernance/"), fault: graphtest.Fault{Kind: graphtest.FaultNextLinkLoop},
			want: graphcheck.ErrUnavailable, trips: 1},
		{name: "dropped connection", principal: user(alice), match: inside("/users/"), fault: graphtest.Fault{Kind: graphtest.FaultDropConnection},
			want: graphcheck.ErrUnavailable, trips: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, graphtest.Options{}, nil)
			must(t, e.srv.AssignRole(alice, reader, "/", time.Time{}, time.Time{}))
			must(t, e.srv.AddGroupMember(admins, bob))
			if tt.match != (graphtest.GraphMatch{}) {
				f := tt.fault
				f.NextLink = strings.ReplaceAll(f.NextLink, "{URL}", e.srv.URL)
				e.srv.InjectGraphFault(tt.match, f)
			}
			st, err := e.lookup(tt.principal)
			if st != nil || !errors.Is(err, tt.want) {
				t.Fatalf("Lookup = %v, %v; want error %v", st, err, tt.want)
			}
			var pe *graphcheck.PermissionError
			switch {
			case tt.perm == "" && errors.As(err, &pe):
				t.Errorf("unexpected PermissionError %v", err)
			case tt.perm != "" && !errors.As(err, &pe):
				t.Errorf("error %v is no PermissionError", err)
			case tt.perm != "" && (pe.Permission != tt.perm || pe.Code != tt.code):
				t.Errorf("PermissionError{Permission: %q, Code: %q}, want %q, %q", pe.Permission, pe.Code, tt.perm, tt.code)
			}
			if tt.trips != 0 {
				if n := e.roundTrips(); n != tt.trips {
					t.Errorf("%d round trips, want %d", n, tt.trips)
				}
			}
			for _, r := range e.srv.Requests() {
				if strings.Contains(r.Query, "stolen") || strings.HasPrefix(r.Path, "/beta") {
					t.Errorf("followed a foreign nextLink: %s?%s", r.Path, r.Query)
				}
			}
			t.Log(err)
		})
	}
}

func TestHangIsBoundedByTimeout(t *testing.T) {
	for _, match := range []graphtest.GraphMatch{batchItself, inside("/roleManagement/")} {
		e := newEnv(t, graphtest.Options{}, func(_ *stack, c *msgraph.Config) { c.Timeout = 200 * time.Millisecond })
		e.srv.InjectGraphFault(match, graphtest.Fault{Kind: graphtest.FaultHang})
		start := time.Now()
		_, err := e.lookup(user(alice))
		if !errors.Is(err, graphcheck.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%+v: %v, want ErrUnavailable and DeadlineExceeded", match, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%+v: took %v", match, d)
		}
	}
	// The caller's own deadline applies too.
	e := newEnv(t, graphtest.Options{}, nil)
	e.srv.InjectGraphFault(batchItself, graphtest.Fault{Kind: graphtest.FaultHang})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := e.src.Lookup(ctx, user(alice)); !errors.Is(err, graphcheck.ErrUnavailable) {
		t.Errorf("caller deadline: %v", err)
	}
}

func TestRetries(t *testing.T) {
	tests := []struct {
		name   string
		faults map[string]graphtest.Fault // match path ("$batch" for the batch itself) → fault
		edit   func(*msgraph.Config)
		ok     bool
		waits  []time.Duration
		trips  int
		resent int // sub-requests in the second batch
	}{
		{name: "429 integer Retry-After inside", faults: map[string]graphtest.Fault{"/identityGovernance/": once(graphtest.ThrottledFault("7"))},
			ok: true, waits: []time.Duration{7 * time.Second}, trips: 2, resent: 1},
		{name: "429 fractional Retry-After inside", faults: map[string]graphtest.Fault{"/roleManagement/": once(graphtest.ThrottledFault("2.128"))},
			ok: true, waits: []time.Duration{2128 * time.Millisecond}, trips: 2, resent: 1},
		{name: "429 without Retry-After inside", faults: map[string]graphtest.Fault{"/users/": once(graphtest.ThrottledFault(""))},
			ok: true, waits: []time.Duration{msgraph.DefaultRetryDelay}, trips: 2, resent: 1},
		{name: "503 inside", faults: map[string]graphtest.Fault{"/users/": once(graphtest.Fault{Status: 503, RetryAfter: "1"})},
			ok: true, waits: []time.Duration{time.Second}, trips: 2, resent: 1},
		{name: "two throttled sub-requests wait for the longer", faults: map[string]graphtest.Fault{
			"/roleManagement/": once(graphtest.ThrottledFault("1")), "/users/": once(graphtest.ThrottledFault("4"))},
			ok: true, waits: []time.Duration{4 * time.Second}, trips: 2, resent: 2},
		{name: "429 on the $batch itself", faults: map[string]graphtest.Fault{"$batch": once(graphtest.ThrottledFault("2"))},
			ok: true, waits: []time.Duration{2 * time.Second}, trips: 2, resent: 3},
		{name: "Retry-After beyond the deadline", faults: map[string]graphtest.Fault{"/roleManagement/": once(graphtest.ThrottledFault("30"))},
			edit: func(c *msgraph.Config) { c.Timeout = 5 * time.Second }, waits: nil, trips: 1},
		{name: "retries run out", faults: map[string]graphtest.Fault{"/roleManagement/": graphtest.ThrottledFault("1")},
			waits: []time.Duration{time.Second, time.Second, time.Second}, trips: 4},
		{name: "backoff doubles without Retry-After", faults: map[string]graphtest.Fault{"/roleManagement/": graphtest.ThrottledFault("")},
			edit:  func(c *msgraph.Config) { c.RetryDelay = 100 * time.Millisecond; c.MaxRetries = 4 },
			waits: []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond}, trips: 5},
		{name: "NoRetries", faults: map[string]graphtest.Fault{"/roleManagement/": once(graphtest.ThrottledFault("1"))},
			edit: func(c *msgraph.Config) { c.MaxRetries = msgraph.NoRetries }, waits: nil, trips: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, graphtest.Options{}, func(_ *stack, c *msgraph.Config) {
				if tt.edit != nil {
					tt.edit(c)
				}
			})
			must(t, e.srv.AssignRole(alice, reader, "/", time.Time{}, time.Time{}))
			for path, f := range tt.faults {
				m := inside(path)
				if path == "$batch" {
					m = batchItself
				}
				e.srv.InjectGraphFault(m, f)
			}
			st, err := e.lookup(user(alice))
			switch {
			case tt.ok && err != nil:
				t.Fatalf("Lookup: %v", err)
			case tt.ok && len(st.Roles) != 1:
				t.Errorf("roles after retry = %+v", st.Roles)
			case !tt.ok && !errors.Is(err, graphcheck.ErrUnavailable):
				t.Fatalf("Lookup: %v, want ErrUnavailable", err)
			}
			if got := e.sleep.slept(); !reflect.DeepEqual(got, tt.waits) {
				t.Errorf("waits = %v, want %v", got, tt.waits)
			}
			if n := e.roundTrips(); n != tt.trips {
				t.Errorf("%d round trips, want %d", n, tt.trips)
			}
			if b := e.batches(); tt.resent != 0 && (len(b) < 2 || len(b[1]) != tt.resent) {
				t.Errorf("second batch = %v, want %d sub-requests", b, tt.resent)
			}
			t.Log(err)
		})
	}
}

func once(f graphtest.Fault) graphtest.Fault {
	f.Times = 1
	return f
}

// A retry's wait ends with the caller's context.
func TestRetryWaitInterrupted(t *testing.T) {
	e := newEnv(t, graphtest.Options{}, nil)
	e.sleep.result = context.Canceled
	e.srv.InjectGraphFault(inside("/roleManagement/"), graphtest.ThrottledFault("1"))
	_, err := e.lookup(user(alice))
	if !errors.Is(err, graphcheck.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Errorf("Lookup: %v", err)
	}
	if n := e.roundTrips(); n != 1 {
		t.Errorf("%d round trips, want 1", n)
	}
}

// Paging stops at MaxPages: a partial answer is never returned.
func TestMaxPages(t *testing.T) {
	e := newEnv(t, graphtest.Options{GraphPageSize: 1}, func(_ *stack, c *msgraph.Config) { c.MaxPages = 2 })
	for _, r := range []string{ga, reader, userAdm} {
		must(t, e.srv.AssignRole(alice, r, "/", time.Time{}, time.Time{}))
	}
	if _, err := e.lookup(user(alice)); !errors.Is(err, graphcheck.ErrUnavailable) {
		t.Errorf("Lookup: %v, want ErrUnavailable", err)
	}
	if n := e.roundTrips(); n != 2 {
		t.Errorf("%d round trips, want 2", n)
	}
}

// A failure of the shared group-roles fetch fails the lookups that need it,
// is not cached, and a later lookup fetches again.
func TestGroupRolesFailureNotCached(t *testing.T) {
	e := newEnv(t, graphtest.Options{}, nil)
	must(t, e.srv.AssignRole(admins, ga, "/", time.Time{}, time.Time{}))
	must(t, e.srv.AddGroupMember(admins, alice))
	e.srv.InjectGraphFault(inside("/groups"), once(graphtest.Fault{Status: http.StatusInternalServerError}))
	if _, err := e.lookup(user(alice)); !errors.Is(err, graphcheck.ErrUnavailable) {
		t.Fatalf("Lookup: %v, want ErrUnavailable", err)
	}
	st := e.mustLookup(user(alice))
	if _, ok := st.RoleActive(t0, ga, "/"); !ok {
		t.Errorf("group role missing after recovery: %+v", st.Roles)
	}
}

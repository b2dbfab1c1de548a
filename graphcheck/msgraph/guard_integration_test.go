package msgraph_test

// End-to-end tests of pimguard's enforcement: the real Microsoft Graph SDK
// client (msgraph.Source) reads the fake tenant of graphtest, and an
// Authenticator and a Guard protect a handler that records whether it ran.
// One fake clock drives the tenant (tokens, PIM schedules), the Source, the
// Authenticator and the Guard's cache, so nothing sleeps: time passes when a
// test says so. Every request carries a token that is still valid, so each
// denial is a decision on live PIM state, never token expiry.

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/graphcheck/msgraph"
	"github.com/pimguard/pimguard/middleware"
)

// otherAU is an administrative unit nobody holds a role in.
const otherAU = "a0000000-0000-4000-8000-0000000000a2"

// Done when 1: a role deactivated (or an assignment removed) before its end
// keeps working only while the state fetched before is cached, and is
// denied once CacheTTL has passed since that fetch, with the same still
// valid token that keeps listing the role in wids.
func TestGuardDeniesDeactivatedRoleWithinTTL(t *testing.T) {
	const ttl = 30 * time.Second
	activate := func(s *stack) {
		must(s.t, s.srv.MakeEligible(alice, userAdm, "/", time.Time{}))
		if _, err := s.srv.ActivateRole(alice, userAdm, "/", 8*time.Hour); err != nil {
			s.t.Fatal(err)
		}
	}
	deactivate := func(s *stack) error { return s.srv.DeactivateRole(alice, userAdm, "/") }
	tests := []struct {
		name   string
		policy middleware.ClaimsPolicy
		grant  func(*stack)
		revoke func(*stack) error
	}{
		{"PIM activation deactivated, live", middleware.PolicyLive, activate, deactivate},
		{"PIM activation deactivated, token-and-live", middleware.PolicyTokenAndLive, activate, deactivate},
		{"permanent assignment removed, live", middleware.PolicyLive,
			func(s *stack) { must(s.t, s.srv.AssignRole(alice, userAdm, "/", time.Time{}, time.Time{})) },
			func(s *stack) error { return s.srv.RemoveRoleAssignment(alice, userAdm, "/") }},
		{"time-bound assignment removed early, live", middleware.PolicyLive,
			func(s *stack) { must(s.t, s.srv.AssignRole(alice, userAdm, "/", at(-time.Hour), at(8*time.Hour))) },
			func(s *stack) error { return s.srv.RemoveRoleAssignment(alice, userAdm, "/") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStack(t, stackOptions{guard: func(c *middleware.GuardConfig) {
				c.CacheTTL = ttl
				c.ClaimsPolicy = tt.policy
			}})
			tt.grant(s)
			tok := s.mint(graphtest.Token{ObjectID: alice, Wids: []string{userAdm}}) // keeps claiming the role
			req := middleware.Role(middleware.RoleUserAdministrator)

			s.allowed("active", req, tok) // fetched at t0
			s.clock.Set(at(10 * time.Second))
			must(t, tt.revoke(s))
			revokedAt := s.clock.Now()
			s.clock.Set(at(ttl - time.Nanosecond))
			s.allowed("revoked, state fetched before still fresh", req, tok)
			s.wantLookups("inside the TTL", 1)

			s.clock.Set(at(ttl))
			res := s.denied("revoked, TTL over", req, tok, http.StatusForbidden, middleware.CodeRoleNotActive)
			if since := s.clock.Now().Sub(revokedAt); since > ttl {
				t.Errorf("denied %v after the revocation, more than the TTL %v", since, ttl)
			}
			if want := []string{"role:" + userAdm}; !slices.Equal(res.body.Required, want) {
				t.Errorf("required %q, want %q", res.body.Required, want)
			}
			s.wantLookups("after the TTL", 2)
			if d := s.lastDecision(); d["state"] != "graph" || d["outcome"] != "deny" || d["level"] != "INFO" {
				t.Errorf("decision record %v, want a denial at INFO on a Graph state", d)
			}
			if n := s.served.Load(); n != 2 {
				t.Errorf("handler ran %d times, want 2", n)
			}
		})
	}
}

// Done when 2: an assignment reaching its endDateTime is denied at that
// very instant although CacheTTL is an hour, and the cached state answers
// every request before the end without asking Graph again.
func TestGuardDeniesAtEndDateTimeWithHourTTL(t *testing.T) {
	const life = 10 * time.Minute
	tests := []struct {
		name  string
		grant func(*stack) time.Time // returns the end
	}{
		{"PIM activation", func(s *stack) time.Time {
			must(s.t, s.srv.MakeEligible(alice, userAdm, "/", time.Time{}))
			end, err := s.srv.ActivateRole(alice, userAdm, "/", life)
			must(s.t, err)
			return end
		}},
		{"time-bound active assignment", func(s *stack) time.Time {
			must(s.t, s.srv.AssignRole(alice, userAdm, "/", at(-time.Hour), at(life)))
			return at(life)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStack(t, stackOptions{guard: func(c *middleware.GuardConfig) { c.CacheTTL = time.Hour }})
			end := tt.grant(s)
			tok := s.mint(graphtest.Token{ObjectID: alice})
			req := middleware.Role(userAdm)

			s.allowed("just activated", req, tok)
			for _, before := range []time.Duration{time.Minute, time.Second, time.Nanosecond} {
				s.clock.Set(end.Add(-before))
				s.allowed(before.String()+" before the end", req, tok)
			}
			s.wantLookups("before the end", 1)
			if d := s.lastDecision(); d["state"] != "cache" {
				t.Errorf("decision before the end came from %v, want the cache", d["state"])
			}

			s.clock.Set(end)
			s.denied("at the end", req, tok, http.StatusForbidden, middleware.CodeRoleNotActive)
			s.clock.Set(end.Add(time.Minute))
			s.denied("after the end", req, tok, http.StatusForbidden, middleware.CodeRoleNotActive)
			if n := s.served.Load(); n != 4 {
				t.Errorf("handler ran %d times, want 4", n)
			}
		})
	}
}

// Done when 3: a role activated after the token was issued works with that
// token under PolicyLive; under PolicyTokenAndLive it takes a new token
// listing the role in wids (role_not_in_token until then).
func TestGuardRoleActivatedAfterTokenIssued(t *testing.T) {
	tests := []struct {
		name     string
		policy   middleware.ClaimsPolicy
		newToken bool // a token issued after the activation, with wids
		status   int
		code     string
	}{
		{"live, token issued before the activation", middleware.PolicyLive, false, http.StatusOK, ""},
		{"live, new token listing the role", middleware.PolicyLive, true, http.StatusOK, ""},
		{"token-and-live, token issued before the activation", middleware.PolicyTokenAndLive, false, http.StatusForbidden, middleware.CodeRoleNotInToken},
		{"token-and-live, new token listing the role", middleware.PolicyTokenAndLive, true, http.StatusOK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStack(t, stackOptions{guard: func(c *middleware.GuardConfig) { c.ClaimsPolicy = tt.policy }})
			must(t, s.srv.MakeEligible(alice, userAdm, "/", time.Time{}))
			old := s.mint(graphtest.Token{ObjectID: alice}) // no wids: the role was not active at issue
			req := middleware.Role(userAdm)
			s.denied("eligible, not activated", req, old, http.StatusForbidden, middleware.CodeRoleNotActive)

			s.clock.Advance(time.Minute) // past NegativeTTL
			if _, err := s.srv.ActivateRole(alice, userAdm, "/", time.Hour); err != nil {
				t.Fatal(err)
			}
			tok := old
			if tt.newToken {
				tok = s.mint(graphtest.Token{ObjectID: alice, Wids: []string{userAdm}})
			}
			res := s.with(s.guard, req, tok)
			s.expect("activated", res, tt.status, tt.code)
			if tt.status != http.StatusOK && !slices.Equal(res.body.Required, []string{"role:" + userAdm}) {
				t.Errorf("required %q", res.body.Required)
			}
			s.wantLookups("after the activation", 2)

			// The token alone never grants: wids listing a role that is
			// not active is refused under both policies.
			ga := s.mint(graphtest.Token{ObjectID: alice, Wids: []string{middleware.RoleGlobalAdministrator}})
			s.denied("wids claim a role not active", middleware.Role(middleware.RoleGlobalAdministrator), ga, http.StatusForbidden, middleware.CodeRoleNotActive)
		})
	}
}

// Done when 4: a role held through a role-assignable group counts while
// the principal's PIM-for-Groups membership lasts and stops with it (or
// with the group's own assignment), while the group keeps the role; a
// GroupMember requirement follows the same rules. A fresh activation is
// seen once NegativeTTL has passed.
func TestGuardRoleThroughGroupAndPIMForGroups(t *testing.T) {
	const (
		negTTL     = 5 * time.Second
		membership = 30 * time.Minute
	)
	type ending int
	const (
		deactivated    ending = iota // DeactivateGroup before the end
		membershipEnds               // the activation reaches its endDateTime
		groupRoleEnds                // the group's own role assignment ends first
	)
	roleReq, memberReq := middleware.Role(secAdm), middleware.GroupMember(admins)
	tests := []struct {
		name       string
		req        middleware.Requirement
		code       string
		ttl        time.Duration
		ending     ending
		bobAllowed bool // bob, a plain (non-PIM) member, at the instant alice is denied
	}{
		{"role through group, membership deactivated", roleReq, middleware.CodeRoleNotActive, 30 * time.Second, deactivated, true},
		{"role through group, membership reaches its end", roleReq, middleware.CodeRoleNotActive, time.Hour, membershipEnds, true},
		{"role through group, group's assignment ends first", roleReq, middleware.CodeRoleNotActive, time.Hour, groupRoleEnds, false},
		{"group member, deactivated", memberReq, middleware.CodeGroupNotActive, 30 * time.Second, deactivated, false},
		{"group member, reaches its end", memberReq, middleware.CodeGroupNotActive, time.Hour, membershipEnds, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStack(t, stackOptions{guard: func(c *middleware.GuardConfig) {
				c.CacheTTL = tt.ttl
				c.NegativeTTL = negTTL
			}})
			groupRoleEnd := time.Time{}
			if tt.ending == groupRoleEnds {
				groupRoleEnd = at(20 * time.Minute)
			}
			must(t, s.srv.AssignRole(admins, secAdm, "/", time.Time{}, groupRoleEnd))
			must(t, s.srv.AddGroupMember(admins, bob))
			must(t, s.srv.MakeGroupEligible(admins, alice, graphtest.AccessMember, time.Time{}))
			tok, bobTok := s.mint(graphtest.Token{ObjectID: alice}), s.mint(graphtest.Token{ObjectID: bob})

			s.denied("eligible, not activated", tt.req, tok, http.StatusForbidden, tt.code)
			end, err := s.srv.ActivateGroup(admins, alice, graphtest.AccessMember, membership)
			must(t, err)
			s.clock.Set(at(negTTL - time.Nanosecond))
			s.denied("activated, empty state still cached", tt.req, tok, http.StatusForbidden, tt.code)
			s.clock.Set(at(negTTL))
			s.allowed("activated, NegativeTTL over", tt.req, tok)
			fetched := s.clock.Now()
			lookups := s.graphLookups()

			var deniedAt time.Time
			switch tt.ending {
			case deactivated:
				s.clock.Advance(time.Second)
				must(t, s.srv.DeactivateGroup(admins, alice, graphtest.AccessMember))
				s.clock.Set(fetched.Add(tt.ttl - time.Nanosecond))
				s.allowed("deactivated, state still fresh", tt.req, tok)
				deniedAt = fetched.Add(tt.ttl)
			case membershipEnds:
				deniedAt = end
			case groupRoleEnds:
				deniedAt = groupRoleEnd
			}
			if tt.ending != deactivated {
				s.clock.Set(deniedAt.Add(-time.Nanosecond))
				s.allowed("1ns before the end", tt.req, tok)
				if n := s.graphLookups(); n != lookups {
					t.Errorf("%d Graph $batch requests before the end, want none since the last fetch", n-lookups)
				}
			}
			s.clock.Set(deniedAt)
			res := s.denied("ended", tt.req, tok, http.StatusForbidden, tt.code)
			if want := []string{tt.req.String()}; !slices.Equal(res.body.Required, want) {
				t.Errorf("required %q, want %q", res.body.Required, want)
			}

			// The group itself keeps its role (unless its own assignment
			// ended): its permanent plain member bob still holds it. A plain
			// membership is no PIM-for-Groups membership.
			bobRes := s.with(s.guard, tt.req, bobTok)
			if tt.bobAllowed {
				s.expect("bob, plain member", bobRes, http.StatusOK, "")
			} else {
				s.expect("bob, plain member", bobRes, http.StatusForbidden, tt.code)
			}
		})
	}
}

// Done when 5: an assignment scoped to an administrative unit does not
// satisfy a tenant-wide requirement (not even with the role in wids under
// token-and-live), and satisfies RoleInScope for that unit only; a
// tenant-wide assignment does not satisfy an AU requirement either.
func TestGuardAdministrativeUnitScope(t *testing.T) {
	s := newStack(t, stackOptions{})
	tokenAndLive := s.newGuard(t, func(c *middleware.GuardConfig) { c.ClaimsPolicy = middleware.PolicyTokenAndLive })
	must(t, s.srv.AssignRole(alice, userAdm, auScope, time.Time{}, time.Time{})) // active assignment in au1
	must(t, s.srv.MakeEligible(bob, userAdm, auScope, time.Time{}))              // PIM activation in au1
	if _, err := s.srv.ActivateRole(bob, userAdm, auScope, time.Hour); err != nil {
		t.Fatal(err)
	}
	must(t, s.srv.AssignRole(carol, userAdm, "/", time.Time{}, time.Time{})) // tenant-wide

	au := middleware.RoleInScope(userAdm, middleware.AdministrativeUnitScope(au1))
	tenantWide := middleware.Role(userAdm)
	tests := []struct {
		name     string
		oid      string
		wids     []string
		tokenAnd bool
		req      middleware.Requirement
		status   int
		code     string
	}{
		{"AU assignment, tenant-wide requirement", alice, nil, false, tenantWide, http.StatusForbidden, middleware.CodeRoleNotActive},
		{"AU assignment, tenant-wide requirement, wids claim it, token-and-live", alice, []string{userAdm}, true, tenantWide, http.StatusForbidden, middleware.CodeRoleNotActive},
		{"AU assignment, same AU", alice, nil, false, au, http.StatusOK, ""},
		{"AU assignment, same AU, token-and-live without wids", alice, nil, true, au, http.StatusOK, ""},
		{"AU assignment, AU written in upper case", alice, nil, false, middleware.RoleInScope(userAdm, "/administrativeUnits/"+strings.ToUpper(au1)), http.StatusOK, ""},
		{"AU assignment, other AU", alice, nil, false, middleware.RoleInScope(userAdm, middleware.AdministrativeUnitScope(otherAU)), http.StatusForbidden, middleware.CodeRoleNotActive},
		{"AU assignment, any of tenant-wide or AU", alice, nil, false, middleware.AnyOf(tenantWide, au), http.StatusOK, ""},
		{"AU assignment, all of tenant-wide and AU", alice, nil, false, middleware.AllOf(tenantWide, au), http.StatusForbidden, middleware.CodeRoleNotActive},
		{"AU activation, tenant-wide requirement", bob, nil, false, tenantWide, http.StatusForbidden, middleware.CodeRoleNotActive},
		{"AU activation, same AU", bob, nil, false, au, http.StatusOK, ""},
		{"tenant-wide assignment, AU requirement", carol, nil, false, au, http.StatusForbidden, middleware.CodeRoleNotActive},
		{"tenant-wide assignment, tenant-wide requirement", carol, nil, false, tenantWide, http.StatusOK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := s.guard
			if tt.tokenAnd {
				g = tokenAndLive
			}
			res := s.with(g, tt.req, s.mint(graphtest.Token{ObjectID: tt.oid, Wids: tt.wids}))
			s.expect(tt.name, res, tt.status, tt.code)
			if tt.status != http.StatusForbidden {
				return
			}
			want := []string{tt.req.String()}
			if tt.req.String() == middleware.AllOf(tenantWide, au).String() {
				want = []string{tenantWide.String()} // only the unmet part
			}
			if !slices.Equal(res.body.Required, want) {
				t.Errorf("required %q, want %q", res.body.Required, want)
			}
		})
	}
}

// Done when 6, first half: when Graph cannot answer (error statuses, after
// retries where Graph asks for them, a hang, a dropped connection), every
// route answers 503 pim_unavailable with Retry-After and never runs the
// handler, whatever the requirement; nothing is cached, so the next request
// after Graph recovers is allowed.
func TestGuardGraphDownFailsClosed(t *testing.T) {
	tests := []struct {
		name    string
		match   graphtest.GraphMatch
		fault   graphtest.Fault
		timeout time.Duration // msgraph.Config.Timeout, 0: default
		retries bool          // the Source waits (stubbed) and retries
	}{
		{name: "500 on $batch", match: batchItself, fault: graphtest.Fault{Status: http.StatusInternalServerError}},
		{name: "503 on $batch", match: batchItself, fault: graphtest.Fault{Status: http.StatusServiceUnavailable, RetryAfter: "1"}, retries: true},
		{name: "500 inside the batch", match: inside("/roleManagement/"), fault: graphtest.Fault{Status: http.StatusInternalServerError}},
		{name: "503 inside the batch", match: inside("/identityGovernance/"), fault: graphtest.Fault{Status: http.StatusServiceUnavailable}, retries: true},
		{name: "429 throttled", match: inside("/users/"), fault: graphtest.ThrottledFault("2.128"), retries: true},
		{name: "hang", match: batchItself, fault: graphtest.Fault{Kind: graphtest.FaultHang}, timeout: 200 * time.Millisecond},
		{name: "dropped connection", match: batchItself, fault: graphtest.Fault{Kind: graphtest.FaultDropConnection}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStack(t, stackOptions{graph: func(_ *stack, c *msgraph.Config) { c.Timeout = tt.timeout }})
			must(t, s.srv.AssignRole(alice, ga, "/", time.Time{}, time.Time{}))
			must(t, s.srv.AssignGroup(admins, alice, graphtest.AccessMember, time.Time{}, time.Time{}))
			tok := s.mint(graphtest.Token{ObjectID: alice, Wids: []string{ga}})
			remove := s.srv.InjectGraphFault(tt.match, tt.fault)

			for _, route := range []struct {
				name string
				mw   func(http.Handler) http.Handler
			}{
				{"Role", s.guard.Require(middleware.Role(ga))},
				{"GroupMember", s.guard.Require(middleware.GroupMember(admins))},
				{"AnyOf", s.guard.Require(middleware.AnyOf(middleware.Role(ga), middleware.Role(secAdm)))},
				{"Load", s.guard.Load},
			} {
				s.expect(route.name, s.run(route.mw, tok), http.StatusServiceUnavailable, middleware.CodePIMUnavailable)
				if d := s.lastDecision(); d["outcome"] != "error" || d["code"] != middleware.CodePIMUnavailable || d["state"] != "none" {
					t.Errorf("%s: decision record %v", route.name, d)
				}
			}
			if n := s.served.Load(); n != 0 {
				t.Fatalf("handler ran %d times while Graph was down", n)
			}
			if n := len(s.sleep.slept()); (n > 0) != tt.retries {
				t.Errorf("%d retry waits, want retries: %v", n, tt.retries)
			}

			remove()
			s.allowed("Graph back", middleware.AllOf(middleware.Role(ga), middleware.GroupMember(admins)), tok)
		})
	}
}

// Done when 6, second half: with MaxStale, a state that expired less than
// MaxStale ago stands in for a failed refresh, yet still decides at now (no
// assignment counts past its endDateTime), and past MaxStale the answer is
// 503 again.
func TestGuardStaleIfErrorIsBounded(t *testing.T) {
	t.Run("served within MaxStale, 503 after", func(t *testing.T) {
		const ttl, maxStale = time.Minute, 10 * time.Minute
		s := newStack(t, stackOptions{guard: func(c *middleware.GuardConfig) {
			c.CacheTTL, c.MaxStale, c.RetryAfter = ttl, maxStale, 7*time.Second
		}})
		must(t, s.srv.AssignRole(alice, ga, "/", time.Time{}, time.Time{}))
		tok := s.mint(graphtest.Token{ObjectID: alice})
		req := middleware.Role(ga)
		s.allowed("Graph up", req, tok)
		remove := s.srv.InjectGraphFault(batchItself, graphtest.Fault{Status: http.StatusInternalServerError})

		s.clock.Set(at(ttl - time.Nanosecond))
		s.allowed("fresh", req, tok)
		s.wantLookups("fresh", 1)
		for _, d := range []time.Duration{ttl, ttl + maxStale - time.Nanosecond} {
			s.clock.Set(at(d))
			s.allowed("stale at "+d.String(), req, tok)
			if rec := s.lastDecision(); rec["state"] != "stale" || rec["refresh_error"] == nil {
				t.Errorf("decision record %v, want state stale with the refresh error", rec)
			}
		}
		s.wantLookups("stale", 3) // each stale answer follows a failed refresh
		s.clock.Set(at(ttl + maxStale))
		s.denied("MaxStale over", req, tok, http.StatusServiceUnavailable, middleware.CodePIMUnavailable)
		remove()
		s.allowed("Graph back", req, tok)
	})

	t.Run("never past endDateTime", func(t *testing.T) {
		const maxStale = time.Hour
		s := newStack(t, stackOptions{guard: func(c *middleware.GuardConfig) {
			c.CacheTTL, c.MaxStale = time.Hour, maxStale
		}})
		must(t, s.srv.AssignRole(alice, reader, "/", time.Time{}, time.Time{}))
		must(t, s.srv.MakeEligible(alice, ga, "/", time.Time{}))
		end, err := s.srv.ActivateRole(alice, ga, "/", 5*time.Minute)
		must(t, err)
		tok := s.mint(graphtest.Token{ObjectID: alice, Wids: []string{ga, reader}})
		gaReq, readerReq := middleware.Role(ga), middleware.Role(reader)
		s.allowed("activated", gaReq, tok)
		s.srv.InjectGraphFault(batchItself, graphtest.Fault{Status: http.StatusServiceUnavailable})

		s.clock.Set(end.Add(-time.Nanosecond))
		s.allowed("1ns before the end, cached", gaReq, tok)
		s.wantLookups("before the end", 1)

		// The state expires at the activation's end; the refresh fails and
		// the stale state decides, at now.
		s.clock.Set(end)
		res := s.denied("at the end, stale state", gaReq, tok, http.StatusForbidden, middleware.CodeRoleNotActive)
		if want := end.UTC().Format(time.RFC3339); res.body.EndedAt != want {
			t.Errorf("ended_at %q, want %s", res.body.EndedAt, want)
		}
		if rec := s.lastDecision(); rec["state"] != "stale" {
			t.Errorf("decision record %v, want state stale", rec)
		}
		s.allowed("permanent role, stale state", readerReq, tok)
		s.clock.Set(end.Add(maxStale - time.Nanosecond))
		s.denied("ended, stale state", gaReq, tok, http.StatusForbidden, middleware.CodeRoleNotActive)
		s.allowed("permanent role, stale state, 1ns before MaxStale", readerReq, tok)

		s.clock.Set(end.Add(maxStale))
		s.denied("MaxStale over", gaReq, tok, http.StatusServiceUnavailable, middleware.CodePIMUnavailable)
		s.denied("MaxStale over", readerReq, tok, http.StatusServiceUnavailable, middleware.CodePIMUnavailable)
	})
}

// holdTransport holds every round trip until release is closed, so that a
// lookup is still running while the other requests arrive.
type holdTransport struct {
	base    http.RoundTripper
	release <-chan struct{}
	trips   atomic.Int64
}

func (h *holdTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	h.trips.Add(1)
	select {
	case <-h.release:
	case <-r.Context().Done():
		return nil, r.Context().Err()
	}
	return h.base.RoundTrip(r)
}

// Done when 7: 1000 concurrent requests of one principal whose state is
// not cached cost one lookup: one $batch HTTP request on graphtest's log
// (its three sub-requests are recorded apart, with a BatchID), and all
// 1000 are allowed. The lookup is held until all 1000 requests have reached
// the Guard, so that they find it running.
func TestGuardColdPrincipalConcurrentRequestsOneLookup(t *testing.T) {
	const n = 1000
	allIn := make(chan struct{})
	base := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(base.CloseIdleConnections)
	hold := &holdTransport{base: base, release: allIn}
	s := newStack(t, stackOptions{graph: func(_ *stack, c *msgraph.Config) { c.Transport = hold }})
	must(t, s.srv.MakeEligible(alice, ga, "/", time.Time{}))
	if _, err := s.srv.ActivateRole(alice, ga, "/", time.Hour); err != nil {
		t.Fatal(err)
	}
	tok := s.mint(graphtest.Token{ObjectID: alice})

	var entered atomic.Int64
	h := s.auth.Handler(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if entered.Add(1) == n {
				close(allIn)
			}
			next.ServeHTTP(w, r)
		})
	}(s.guard.Require(middleware.Role(ga))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.served.Add(1)
		_, _ = io.WriteString(w, "ok")
	}))))

	statuses := make([]int, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			req := httptest.NewRequest(http.MethodGet, "/api/admin", nil)
			req.Header.Set("Authorization", "Bearer "+tok.raw)
			rec := httptest.NewRecorder()
			<-start
			h.ServeHTTP(rec, req)
			statuses[i] = rec.Code
		})
	}
	close(start)
	wg.Wait()

	for i, st := range statuses {
		if st != http.StatusOK {
			t.Fatalf("request %d: status %d", i, st)
		}
	}
	if got := s.served.Load(); got != n {
		t.Errorf("handler ran %d times, want %d", got, n)
	}
	if got := s.graphLookups(); got != 1 {
		t.Errorf("%d $batch requests on graphtest's log, want 1", got)
	}
	if got := s.graphHTTPRequests(); got != 1 {
		t.Errorf("%d Graph HTTP requests on graphtest's log, want 1", got)
	}
	if got := hold.trips.Load(); got != 1 {
		t.Errorf("%d round trips through the transport, want 1", got)
	}
	bySource := map[any]int{}
	for _, d := range s.decisions() {
		bySource[d["state"]]++
	}
	if bySource["graph"]+bySource["cache"] != n {
		t.Errorf("decision records by state %v, want %d from the lookup or the cache", bySource, n)
	}
	t.Logf("%d requests joined the lookup, %d found its result cached", bySource["graph"], bySource["cache"])
}

// A role the group itself loses before its end (the assignment removed, or
// the group's own PIM activation deactivated) reaches the Guard through the
// Source's tenant-wide cache of group-held roles (msgraph
// Config.GroupRolesTTL) as well as the Guard's cache: it stops counting
// within CacheTTL + GroupRolesTTL of the change, and within CacheTTL alone
// when GroupRolesTTL is negligible. The requests come from two members, so
// that one refreshes the shared group roles just before the change while
// the other's state is fetched earlier: the worst case.
func TestGuardGroupHeldRoleRevokedEarly(t *testing.T) {
	const ttl = 30 * time.Second
	assign := func(s *stack) {
		must(s.t, s.srv.AssignRole(admins, secAdm, "/", time.Time{}, time.Time{}))
	}
	activate := func(s *stack) {
		must(s.t, s.srv.MakeEligible(admins, secAdm, "/", time.Time{}))
		if _, err := s.srv.ActivateRole(admins, secAdm, "/", 8*time.Hour); err != nil {
			s.t.Fatal(err)
		}
	}
	tests := []struct {
		name          string
		groupRolesTTL time.Duration
		grant         func(*stack)
		revoke        func(*stack) error
		bound         time.Duration // from the change to the first denial
	}{
		{"assignment removed, default GroupRolesTTL", 0, assign,
			func(s *stack) error { return s.srv.RemoveRoleAssignment(admins, secAdm, "/") }, ttl + msgraph.DefaultGroupRolesTTL},
		{"group's activation deactivated, default GroupRolesTTL", 0, activate,
			func(s *stack) error { return s.srv.DeactivateRole(admins, secAdm, "/") }, ttl + msgraph.DefaultGroupRolesTTL},
		{"assignment removed, GroupRolesTTL 1ns", time.Nanosecond, assign,
			func(s *stack) error { return s.srv.RemoveRoleAssignment(admins, secAdm, "/") }, ttl},
		{"group's activation deactivated, GroupRolesTTL 1ns", time.Nanosecond, activate,
			func(s *stack) error { return s.srv.DeactivateRole(admins, secAdm, "/") }, ttl},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStack(t, stackOptions{
				guard: func(c *middleware.GuardConfig) { c.CacheTTL = ttl },
				graph: func(_ *stack, c *msgraph.Config) { c.GroupRolesTTL = tt.groupRolesTTL },
			})
			tt.grant(s)
			must(t, s.srv.AddGroupMember(admins, alice))
			must(t, s.srv.AddGroupMember(admins, bob))
			tok, bobTok := s.mint(graphtest.Token{ObjectID: alice}), s.mint(graphtest.Token{ObjectID: bob})
			req := middleware.Role(secAdm)

			s.allowed("bob", req, bobTok) // group roles fetched at t0
			s.clock.Set(at(10 * time.Second))
			s.allowed("alice", req, tok) // alice's state fetched at t0+10s
			s.clock.Set(at(ttl))
			s.allowed("bob, state refreshed", req, bobTok) // group roles refreshed at t0+30s
			s.clock.Set(at(ttl + time.Second))
			must(t, tt.revoke(s))
			revoked := s.clock.Now()

			var firstDenial time.Time
			for d := time.Duration(0); d <= tt.bound; d += time.Second {
				s.clock.Set(revoked.Add(d))
				res := s.with(s.guard, req, tok)
				switch {
				case res.status == http.StatusOK && firstDenial.IsZero():
				case res.status == http.StatusForbidden && res.body.Code == middleware.CodeRoleNotActive && !res.called:
					if firstDenial.IsZero() {
						firstDenial = s.clock.Now()
					}
				default:
					t.Fatalf("%v after the change: %d %s (handler called: %v)", d, res.status, strings.TrimSpace(res.raw), res.called)
				}
			}
			if firstDenial.IsZero() {
				t.Fatalf("still allowed %v after the change", tt.bound)
			}
			t.Logf("first denied %v after the change (CacheTTL %v, bound %v)", firstDenial.Sub(revoked), ttl, tt.bound)
		})
	}
}

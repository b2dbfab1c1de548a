package forwardauth_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pimguard/pimguard/forwardauth"
	"github.com/pimguard/pimguard/internal/metrictest"
	"github.com/pimguard/pimguard/middleware"
)

// nginxHeaders and forwardedHeaders describe the original request the way
// the documented nginx configuration and Traefik or Caddy do.
func nginxHeaders(method, uri string) http.Header {
	return http.Header{"X-Original-Method": {method}, "X-Original-Uri": {uri}}
}

func forwardedHeaders(method, uri string) http.Header {
	return http.Header{"X-Forwarded-Method": {method}, "X-Forwarded-Uri": {uri}, "X-Forwarded-Host": {"helpdesk.contoso.example"}}
}

func TestForwardAuth(t *testing.T) {
	s := newStack(t, testRules())
	jane, bob := s.token(janeOID), s.token(bobOID)
	const resetURI = "/api/users/42/reset-password?notify=true"
	tests := []struct {
		name    string
		header  http.Header
		token   string
		status  int
		code    string // X-Pimguard-Error and the body's code
		rule    string // X-Pimguard-Rule on 200
		object  string
		roles   string // X-Pimguard-Roles; "-" for absent
		outage  bool
		retryIn bool // Retry-After present
		challng bool // WWW-Authenticate present
	}{
		{name: "nginx: active role", header: nginxHeaders("POST", resetURI), token: jane, status: 200, rule: "reset-password", object: janeOID, roles: helpdesk},
		{name: "traefik/caddy: active role", header: forwardedHeaders("POST", resetURI), token: jane, status: 200, rule: "reset-password", object: janeOID, roles: helpdesk},
		{name: "no role", header: nginxHeaders("POST", resetURI), token: bob, status: 403, code: middleware.CodeRoleNotActive, challng: true},
		{name: "no token", header: nginxHeaders("POST", resetURI), status: 401, code: middleware.CodeTokenMissing, challng: true},
		{name: "bad token", header: nginxHeaders("POST", resetURI), token: "Bearer x.y.z", status: 401, code: middleware.CodeTokenMalformed, challng: true},
		{name: "graph outage", header: nginxHeaders("POST", resetURI), token: jane, outage: true, status: 503, code: middleware.CodePIMUnavailable, retryIn: true},
		{name: "wrong method: no rule", header: nginxHeaders("GET", resetURI), token: jane, status: 403, code: forwardauth.CodeNoRule, challng: true},
		{name: "unmatched path", header: nginxHeaders("GET", "/admin"), token: jane, status: 403, code: forwardauth.CodeNoRule, challng: true},
		{name: "dot-dot into a protected path is no rule", header: nginxHeaders("GET", "/static/../api/audit"), status: 403, code: forwardauth.CodeNoRule, challng: true},
		{name: "double slash", header: nginxHeaders("GET", "/static//x"), status: 403, code: forwardauth.CodeNoRule, challng: true},
		{name: "encoded slash", header: nginxHeaders("GET", "/static/..%2Fapi%2Faudit"), status: 403, code: forwardauth.CodeNoRule, challng: true},
		{name: "public, no token", header: nginxHeaders("GET", "/static/app.js"), status: 200, rule: "health", roles: "-"},
		{name: "public HEAD via GET pattern", header: nginxHeaders("HEAD", "/healthz"), status: 200, rule: "health", roles: "-"},
		{name: "authenticated lists live roles", header: forwardedHeaders("GET", "/api/me"), token: jane, status: 200, rule: "me", object: janeOID, roles: helpdesk},
		{name: "authenticated, no roles", header: forwardedHeaders("GET", "/api/me"), token: bob, status: 200, rule: "me", object: bobOID, roles: ""},
		{name: "authenticated, no token", header: forwardedHeaders("GET", "/api/me"), status: 401, code: middleware.CodeTokenMissing, challng: true},
		{name: "both header sets: a client forged one", header: merge(nginxHeaders("GET", "/healthz"), forwardedHeaders("POST", resetURI)), token: jane, status: 400, code: forwardauth.CodeForwardRequestInvalid, challng: true},
		{name: "no original request", header: http.Header{}, token: jane, status: 400, code: forwardauth.CodeForwardRequestInvalid, challng: true},
		{name: "original URI not a path", header: nginxHeaders("GET", "http://evil.example/healthz"), status: 400, code: forwardauth.CodeForwardRequestInvalid, challng: true},
		{name: "method missing", header: http.Header{"X-Original-Uri": {"/healthz"}}, status: 400, code: forwardauth.CodeForwardRequestInvalid, challng: true},
		{name: "URI twice", header: http.Header{"X-Original-Method": {"GET"}, "X-Original-Uri": {"/healthz", "/api/audit"}}, status: 400, code: forwardauth.CodeForwardRequestInvalid, challng: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s.outage.Store(tc.outage)
			s.guard.PurgeAll()
			req := httptest.NewRequest(http.MethodGet, "/auth", nil)
			req.Header = tc.header.Clone()
			if tc.token != "" {
				req.Header.Set("Authorization", tc.token)
			}
			w := do(s.server, req)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d; body %s", w.Code, tc.status, w.Body)
			}
			h := w.Header()
			if got := h.Get(forwardauth.HeaderError); got != tc.code {
				t.Errorf("%s = %q, want %q", forwardauth.HeaderError, got, tc.code)
			}
			if tc.status != 200 {
				var body struct{ Code string }
				if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Code != tc.code {
					t.Errorf("body %s (%v), want code %q", w.Body, err, tc.code)
				}
				if h.Get(forwardauth.HeaderObjectID) != "" || h.Get(forwardauth.HeaderRule) != "" {
					t.Errorf("a refusal carries identity headers: %v", h)
				}
			}
			if got := h.Get("Retry-After") != ""; got != tc.retryIn {
				t.Errorf("Retry-After present = %v, want %v", got, tc.retryIn)
			}
			if got := h.Get("WWW-Authenticate") != ""; got != tc.challng {
				t.Errorf("WWW-Authenticate present = %v, want %v (%q)", got, tc.challng, h.Get("WWW-Authenticate"))
			}
			if tc.status != 200 {
				return
			}
			if got := h.Get(forwardauth.HeaderRule); got != tc.rule {
				t.Errorf("rule %q, want %q", got, tc.rule)
			}
			if got := h.Get(forwardauth.HeaderObjectID); got != tc.object {
				t.Errorf("object %q, want %q", got, tc.object)
			}
			wantTenant := ""
			if tc.object != "" {
				wantTenant = "8d3f0a52-6b1e-4c2a-9f4e-1a7b2c3d4e5f"
			}
			if got := h.Get(forwardauth.HeaderTenantID); got != wantTenant {
				t.Errorf("tenant %q, want %q", got, wantTenant)
			}
			roles, present := h[forwardauth.HeaderRoles]
			switch {
			case tc.roles == "-" && present:
				t.Errorf("roles %q sent for a public rule", roles)
			case tc.roles != "-" && (!present || roles[0] != tc.roles):
				t.Errorf("roles %q (present %v), want %q", roles, present, tc.roles)
			}
		})
	}
}

// A role that ends, or is deactivated, stops being allowed: at its end time
// exactly, and within the cache TTL for a deactivation.
func TestForwardAuthFollowsLiveState(t *testing.T) {
	s := newStack(t, testRules())
	jane := s.token(janeOID)
	ask := func() int {
		req := httptest.NewRequest(http.MethodGet, "/auth", nil)
		req.Header = nginxHeaders("POST", "/api/users/7/reset-password")
		req.Header.Set("Authorization", jane)
		return do(s.server, req).Code
	}
	if got := ask(); got != 200 {
		t.Fatalf("active: %d", got)
	}
	must(t, s.tenant.DeactivateRole(janeOID, helpdesk, "/"))
	if got := ask(); got != 200 {
		t.Fatalf("deactivated, within the TTL (cached): %d, want 200", got)
	}
	s.clock.Advance(31 * time.Second)
	if got := ask(); got != 403 {
		t.Fatalf("deactivated, TTL passed: %d, want 403", got)
	}
}

func TestExtAuthz(t *testing.T) {
	s := newStack(t, testRules())
	tests := []struct {
		method, path string
		token        string
		status       int
		rule         string
	}{
		{"POST", "/ext-authz/api/users/1/reset-password?x=1", s.token(janeOID), 200, "reset-password"},
		{"POST", "/ext-authz/api/users/1/reset-password", s.token(bobOID), 403, ""},
		{"GET", "/ext-authz/healthz", "", 200, "health"},
		{"GET", "/ext-authz", "", 403, ""},
		{"GET", "/ext-authz/static/../api/audit", "", 403, ""},
		{"GET", "/other", "", 404, ""},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, "http://helpdesk.contoso.example"+tc.path, nil)
			if tc.token != "" {
				req.Header.Set("Authorization", tc.token)
			}
			// A client-sent original request is ignored in Envoy's mode.
			req.Header.Set("X-Original-Uri", "/healthz")
			w := do(s.server, req)
			if w.Code != tc.status || w.Header().Get(forwardauth.HeaderRule) != tc.rule {
				t.Fatalf("%d rule %q, want %d rule %q; body %s", w.Code, w.Header().Get(forwardauth.HeaderRule), tc.status, tc.rule, w.Body)
			}
		})
	}
}

func merge(hs ...http.Header) http.Header {
	out := http.Header{}
	for _, h := range hs {
		for k, v := range h {
			out[k] = append(out[k], v...)
		}
	}
	return out
}

func TestMatchByHost(t *testing.T) {
	s := newStack(t, []forwardauth.Rule{
		{Name: "admin host", Patterns: []string{"admin.contoso.example/"}, Require: middleware.Role(helpdesk)},
		{Name: "rest", Patterns: []string{"/"}, Access: forwardauth.AccessPublic},
	})
	for host, want := range map[string]string{"admin.contoso.example": "admin host", "admin.contoso.example:8443": "admin host",
		"Admin.Contoso.EXAMPLE": "admin host", "admin.contoso.example.": "admin host", "admin.contoso.example.:443": "admin host",
		"www.contoso.example": "rest", "": "rest"} {
		r := httptest.NewRequest("GET", "/x", nil)
		r.Host = host
		rule, ok := s.server.Match(r)
		if !ok || rule.Name != want {
			t.Errorf("host %q: rule %q (%v), want %q", host, rule.Name, ok, want)
		}
	}
	// Through forward-auth, the host is the forwarded one.
	req := httptest.NewRequest("GET", "/auth", nil)
	req.Header = forwardedHeaders("GET", "/x")
	req.Header.Set("X-Forwarded-Host", "admin.contoso.example")
	if w := do(s.server, req); w.Code != 401 {
		t.Errorf("admin host without a token: %d, want 401", w.Code)
	}
}

// A request the service behind might read as another request than the one
// the rules see matches no rule, even with a catch-all rule last: dot
// segments however encoded, methods not in upper case, CONNECT.
func TestAmbiguousRequestsMatchNoRule(t *testing.T) {
	s := newStack(t, append(testRules()[:4:4], forwardauth.Rule{Name: "fallback", Patterns: []string{"/"}, Access: forwardauth.AccessPublic}))
	tests := []struct {
		method, uri string
		rule        string // "" for no rule
	}{
		{"GET", "/anything", "fallback"},
		{"POST", "/api/users/1/reset-password", "reset-password"},
		{"post", "/api/users/1/reset-password", ""},
		{"Post", "/api/users/1/reset-password", ""},
		{"CONNECT", "/static/x", ""},
		{"GET", "/static/%2e%2e/api/audit", ""},
		{"GET", "/static/.%2E/api/audit", ""},
		{"GET", "/static/%2e/x", ""},
		{"GET", "/static/..;/api/audit", ""},
		{"GET", "/static/..;jsessionid=1/api/audit", ""},
		{"GET", "/static/x;y", "health"},
		{"GET", "/static/%23/x", ""},
		{"GET", "/static/%00/x", ""},
		{"GET", "/static/%5Capi", ""},
		{"GET", "/static/a%2Fb", ""},
		{"GET", "/static/%252F", "health"},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.uri, func(t *testing.T) {
			rule, _ := s.server.Match(httptest.NewRequest(tc.method, tc.uri, nil))
			if rule.Name != tc.rule {
				t.Fatalf("rule %q, want %q", rule.Name, tc.rule)
			}
			if tc.rule != "" {
				return
			}
			// Through forward auth: 403 no_rule, before any token is asked for.
			req := httptest.NewRequest(http.MethodGet, "/auth", nil)
			req.Header = nginxHeaders(tc.method, tc.uri)
			if w := do(s.server, req); w.Code != 403 || w.Header().Get(forwardauth.HeaderError) != forwardauth.CodeNoRule {
				t.Fatalf("forward auth: %d %q, want 403 no_rule", w.Code, w.Header().Get(forwardauth.HeaderError))
			}
		})
	}
}

func TestRuleNamesDefault(t *testing.T) {
	s := newStack(t, testRules())
	var names []string
	for _, r := range s.server.Rules() {
		names = append(names, r.Name)
	}
	if got, want := strings.Join(names, "|"), "reset-password|GET /api/audit|me|health"; got != want {
		t.Errorf("names %q, want %q", got, want)
	}
}

// The Server counts the refusals it makes itself; the Guard's and the
// Authenticator's are theirs.
func TestRefusalsCounted(t *testing.T) {
	s := newStack(t, testRules())
	for _, h := range []http.Header{nginxHeaders("GET", "/nowhere"), nginxHeaders("get", "/healthz"), {}, nginxHeaders("GET", "/healthz"),
		nginxHeaders("POST", "/api/users/1/reset-password")} {
		req := httptest.NewRequest(http.MethodGet, "/auth", nil)
		req.Header = h
		do(s.server, req)
	}
	metrictest.Expect(t, s.metrics, map[string]metrictest.Instrument{
		"pimguard.forwardauth.refusals": {Kind: "counter", Unit: "{request}", Points: map[string]int64{
			"code=" + forwardauth.CodeNoRule: 2, "code=" + forwardauth.CodeForwardRequestInvalid: 1}},
	})
}

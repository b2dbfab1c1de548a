package forwardauth_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/pimguard/pimguard/forwardauth"
)

// upstream records the requests that reach it.
type upstream struct {
	mu   sync.Mutex
	seen []*http.Request
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.seen = append(u.seen, r)
	u.mu.Unlock()
	w.WriteHeader(http.StatusTeapot)
}

func (u *upstream) last() *http.Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.seen) == 0 {
		return nil
	}
	r := u.seen[len(u.seen)-1]
	u.seen = nil
	return r
}

func TestProxy(t *testing.T) {
	s := newStack(t, testRules())
	up := &upstream{}
	srv := httptest.NewServer(up)
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	proxy, err := s.server.Proxy(u)
	must(t, err)
	front := httptest.NewServer(proxy)
	t.Cleanup(front.Close)

	tests := []struct {
		name         string
		method, path string
		token        string
		status       int    // as the client sees it
		object       string // X-Pimguard-Object-Id upstream; "" none
		rule         string
	}{
		{"allowed", "POST", "/api/users/1/reset-password", s.token(janeOID), http.StatusTeapot, janeOID, "reset-password"},
		{"denied never reaches upstream", "POST", "/api/users/1/reset-password", s.token(bobOID), 403, "", ""},
		{"no token", "GET", "/api/me", "", 401, "", ""},
		{"public: forged identity stripped", "GET", "/healthz", "", http.StatusTeapot, "", "health"},
		{"authenticated: forged identity replaced", "GET", "/api/me", s.token(bobOID), http.StatusTeapot, bobOID, "me"},
		{"no rule", "DELETE", "/api/users/1", s.token(janeOID), 403, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, front.URL+tc.path, nil)
			if tc.token != "" {
				req.Header.Set("Authorization", tc.token)
			}
			req.Header.Set(forwardauth.HeaderObjectID, "00000000-0000-0000-0000-000000000bad")
			req.Header.Set(forwardauth.HeaderRoles, "62e90394-69f5-4237-9190-012177145e10")
			req.Header.Set("X-Pimguard-Anything", "forged")
			req.Header["X_Pimguard_Object_Id"] = []string{"00000000-0000-0000-0000-000000000bad"} // HTTP_X_PIMGUARD_OBJECT_ID to CGI-style servers
			resp, err := http.DefaultClient.Do(req)
			must(t, err)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			got := up.last()
			if tc.status != http.StatusTeapot {
				if got != nil {
					t.Fatalf("a refused request reached the upstream")
				}
				return
			}
			if got == nil {
				t.Fatal("the upstream saw nothing")
			}
			if v := got.Header.Get(forwardauth.HeaderObjectID); v != tc.object {
				t.Errorf("object %q upstream, want %q", v, tc.object)
			}
			if v := got.Header.Get(forwardauth.HeaderRule); v != tc.rule {
				t.Errorf("rule %q upstream, want %q", v, tc.rule)
			}
			for name, v := range got.Header {
				if n := strings.ToLower(strings.ReplaceAll(name, "_", "-")); strings.HasPrefix(n, "x-pimguard-") &&
					(strings.Contains(n, "anything") || slices.Contains(v, "00000000-0000-0000-0000-000000000bad")) {
					t.Errorf("a client-sent pimguard header reached the upstream: %s: %q", name, v)
				}
			}
			if tc.object == "" && got.Header.Get(forwardauth.HeaderRoles) != "" {
				t.Errorf("forged roles reached the upstream")
			}
			if got.Header.Get("X-Forwarded-For") == "" {
				t.Errorf("no X-Forwarded-For")
			}
		})
	}
	if _, err := s.server.Proxy(&url.URL{Path: "/relative"}); err == nil {
		t.Error("Proxy accepted a relative upstream")
	}
}

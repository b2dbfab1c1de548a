package proxytest_test

import (
	"cmp"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
)

// authDouble answers /auth as pimguard's forward-auth contract says, so
// that the documented proxy configurations can be tested before (and
// independently of) cmd/pimguard. The bearer token picks the answer; a path
// under /public matches a public rule. It records what each request carried,
// by the client's X-Test-Id header, which both proxies pass on.
type authDouble struct{ requestLog }

// requestLog records requests by the client's X-Test-Id: what the auth
// server, or the upstream, received.
type requestLog struct {
	mu   sync.Mutex
	seen map[string]seenRequest
}

// add records r.
func (l *requestLog) add(r *http.Request) {
	s := record(r)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen == nil {
		l.seen = map[string]seenRequest{}
	}
	l.seen[r.Header.Get("X-Test-Id")] = s
}

// Seen is what was received for the client request with X-Test-Id id.
func (l *requestLog) Seen(id string) (seenRequest, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s, ok := l.seen[id]
	return s, ok
}

// seenRequest is what a proxy sent to the auth server or the upstream.
type seenRequest struct {
	Method string
	URI    string
	Header http.Header
	Body   string
}

func record(r *http.Request) seenRequest {
	body, _ := io.ReadAll(r.Body)
	return seenRequest{Method: r.Method, URI: r.RequestURI, Header: r.Header.Clone(), Body: string(body)}
}

// The tokens the double knows.
const (
	tokenAllow   = "allow"   // 200 with an identity
	tokenExpired = "expired" // 401 token_expired
	tokenNoRule  = "norule"  // 403 no_rule
	tokenPIMDown = "pimdown" // 503 pim_unavailable, Retry-After: 7
	tokenCrash   = "crash"   // 500 internal_error
	tokenBad     = "bad"     // 400 token_malformed
)

// The identity the double grants to tokenAllow.
const (
	allowTenant = "11111111-2222-3333-4444-555555555555"
	allowObject = "66666666-7777-8888-9999-000000000000"
	allowRoles  = "Orders.Read,Orders.Write"
	allowRule   = "orders"
)

const (
	wwwAuthMissing = `Bearer realm="pimguard"`
	wwwAuthExpired = `Bearer realm="pimguard", error="invalid_token", error_description="The access token expired"`
	wwwAuthNoRule  = `Bearer realm="pimguard", error="insufficient_scope", error_description="No rule grants this request"`
)

func (a *authDouble) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.add(r)

	if r.URL.Path != "/auth" {
		deny(w, http.StatusNotFound, "", "not_found", "")
		return
	}
	orig, fwd := r.Header.Get("X-Original-Uri"), r.Header.Get("X-Forwarded-Uri")
	if orig != "" && fwd != "" {
		deny(w, http.StatusBadRequest, "", "ambiguous_original_request", "invalid_request")
		return
	}
	u, err := url.ParseRequestURI(cmp.Or(orig, fwd))
	if err != nil {
		deny(w, http.StatusBadRequest, "", "missing_original_request", "invalid_request")
		return
	}
	if strings.HasPrefix(u.Path, "/public") {
		w.Header().Set("X-Pimguard-Rule", "public")
		w.WriteHeader(http.StatusOK)
		return
	}
	token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	switch token {
	case "":
		deny(w, http.StatusUnauthorized, wwwAuthMissing, "token_missing", "invalid_request")
	case tokenAllow:
		w.Header().Set("X-Pimguard-Tenant-Id", allowTenant)
		w.Header().Set("X-Pimguard-Object-Id", allowObject)
		w.Header().Set("X-Pimguard-Roles", allowRoles)
		w.Header().Set("X-Pimguard-Rule", allowRule)
		w.WriteHeader(http.StatusOK)
	case tokenExpired:
		deny(w, http.StatusUnauthorized, wwwAuthExpired, "token_expired", "invalid_token")
	case tokenNoRule:
		deny(w, http.StatusForbidden, wwwAuthNoRule, "no_rule", "insufficient_scope")
	case tokenPIMDown:
		w.Header().Set("Retry-After", "7")
		deny(w, http.StatusServiceUnavailable, "", "pim_unavailable", "temporarily_unavailable")
	case tokenBad:
		deny(w, http.StatusBadRequest, "", "token_malformed", "invalid_request")
	case tokenCrash:
		deny(w, http.StatusInternalServerError, "", "internal_error", "server_error")
	default:
		deny(w, http.StatusUnauthorized, wwwAuthExpired, "token_invalid", "invalid_token")
	}
}

// deny writes a denial as the contract says: the status, WWW-Authenticate,
// X-Pimguard-Error and the JSON body.
func deny(w http.ResponseWriter, status int, wwwAuth, code, oauthErr string) {
	if wwwAuth != "" {
		w.Header().Set("WWW-Authenticate", wwwAuth)
	}
	w.Header().Set("X-Pimguard-Error", code)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{
		"error":             cmp.Or(oauthErr, "error"),
		"error_description": "denied by the test double",
		"code":              code,
	})
}

// upstream is the application behind the proxy: it answers 200 "app" and
// records each request by X-Test-Id.
type upstream struct{ requestLog }

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.add(r)
	_, _ = io.WriteString(w, "app")
}

package graphtest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"time"
)

// Well-known identifiers of the fake tenant. They are ordinary GUIDs with no
// meaning outside tests; use them when one tenant and one API are enough.
const (
	// TenantID is the directory (tenant) ID a [Server] serves when
	// [Options.Tenants] is empty.
	TenantID = "8d3f0a52-6b1e-4c2a-9f4e-1a7b2c3d4e5f"
	// APIClientID is the application (client) ID of the protected API; v2
	// access tokens carry it as their audience by default.
	APIClientID = "c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f"
	// APIAppIDURI is the protected API's App ID URI; v1 access tokens carry it
	// as their audience by default.
	APIAppIDURI = "api://pimguard-test-api"
	// ClientAppID is the client application that requested the tokens (the
	// azp/appid claim).
	ClientAppID = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
)

// Options configures a [Server]. The zero value is ready to use.
type Options struct {
	// Tenants lists the tenant IDs the server answers for. Discovery for any
	// other tenant fails the way Entra does (HTTP 400, AADSTS90002).
	// Default: [TenantID] alone.
	Tenants []string
	// Clock is the time source for minted tokens, PIM schedules and Graph
	// error timestamps. Default: a new Clock reading the current time
	// truncated to the second.
	Clock *Clock
	// GraphPageSize is the largest number of items one page of a Graph
	// collection holds; further items are reached through @odata.nextLink.
	// Zero means one page holds everything (unless $top asks for less). See
	// also [Server.SetGraphPageSize].
	GraphPageSize int
	// RequireGraphAuth makes Graph requests without an "Authorization: Bearer"
	// header fail with 401 InvalidAuthenticationToken. The token itself is
	// not verified. Default false: such requests are served (and recorded
	// with an empty [Request.BearerToken]). See also [Server.SetRequireGraphAuth].
	RequireGraphAuth bool
	// ExpandGroupRoleInstances makes GET roleAssignmentScheduleInstances,
	// when filtered by principalId, also return one memberType "Group"
	// instance per role the principal holds through an active membership of
	// a role-assignable group (principalId set to the member,
	// roleAssignmentOriginId to the group's assignment). Default false: a
	// principalId filter returns only instances whose principalId is that
	// principal, with memberType "Direct". Whether Graph expands is not
	// documented; this switch lets a client be tested against both readings.
	ExpandGroupRoleInstances bool
	// RiskyUsersPerSecond throttles the Identity Protection riskyUsers
	// endpoints as Microsoft documents for Identity Protection: about one
	// request per second per tenant, shared by every app. With n > 0, a
	// request to those endpoints (each $batch sub-request counts on its own)
	// beyond the n-th within one second of the Clock (its now truncated to
	// the second) answers 429 TooManyRequests without a Retry-After header,
	// as Identity Protection may. Since the clock moves only when a test
	// moves it, the next request after [Clock.Advance] by a second succeeds
	// again. Requests answered by an injected fault, refused for lack of a
	// bearer token or not a GET do not count. Zero, the default, means
	// unlimited; other endpoints are never throttled (inject
	// [ThrottledFault] for that). See also [Server.SetRiskyUsersPerSecond].
	RiskyUsersPerSecond int
}

// Server is a fake Microsoft Entra tenant on loopback: OpenID Connect
// discovery for the v1 and v2 endpoints, a JWKS with key rotation, and a
// minter of Entra-shaped access tokens. It records every request it serves.
//
// Its authority (the value for a middleware's Authority setting) is
// [Server.URL]; discovery lives at {URL}/{tenant}/v2.0/.well-known/openid-configuration
// as on login.microsoftonline.com. The v2 issuer is {URL}/{tenant}/v2.0 and the
// v1 issuer is Entra's own https://sts.windows.net/{tenant}/.
//
// Its Graph half, under [Server.GraphURL], emulates the Microsoft Graph
// endpoints a PIM-aware client reads (see the package documentation) over a
// small directory seeded with [Server.AddUser], [Server.AssignRole] and
// friends.
//
// A Server is safe for concurrent use. Close it when done.
type Server struct {
	// URL is the base URL of the server, e.g. http://127.0.0.1:41234.
	URL string

	clock   *Clock
	tenants map[string]bool
	first   string
	srv     *httptest.Server

	dir       directory
	closing   chan struct{}
	closeOnce sync.Once

	mu              sync.Mutex
	keys            keyRing
	requests        []Request
	faults          []*fault
	graphFaults     []*graphFault
	pageSize        int
	requireAuth     bool
	expandGroupRole bool
	riskyPerSecond  int
	riskyWindow     time.Time // the second riskyCount counts
	riskyCount      int
}

// Request is one request the server received, as recorded in
// [Server.Requests].
type Request struct {
	Method string
	Path   string
	Query  string
	// At is the fake clock's time when the request arrived.
	At time.Time
	// BearerToken is the token of the request's "Authorization: Bearer"
	// header, empty when it carried none. A $batch sub-request inherits the
	// token of its outer request.
	BearerToken string
	// BatchID is the id of a Graph $batch sub-request, empty for a request
	// that arrived on its own. Sub-requests are recorded after their outer
	// POST /v1.0/$batch, with Path prefixed by /v1.0 (e.g.
	// /v1.0/users/{id}) and Query holding the sub-request's query.
	BatchID string
}

type fault struct {
	match  func(*http.Request) bool
	status int
}

// NewServer starts a fake tenant on a loopback port. It panics if no key can
// be generated or no port can be opened, as [httptest.NewServer] does.
func NewServer(opts Options) *Server {
	s := &Server{
		clock:           opts.Clock,
		tenants:         map[string]bool{},
		closing:         make(chan struct{}),
		pageSize:        opts.GraphPageSize,
		requireAuth:     opts.RequireGraphAuth,
		expandGroupRole: opts.ExpandGroupRoleInstances,
		riskyPerSecond:  opts.RiskyUsersPerSecond,
	}
	if s.clock == nil {
		s.clock = NewClock(time.Now().Truncate(time.Second))
	}
	tenants := opts.Tenants
	if len(tenants) == 0 {
		tenants = []string{TenantID}
	}
	for _, t := range tenants {
		s.tenants[strings.ToLower(t)] = true
	}
	s.first = strings.ToLower(tenants[0])
	s.dir.init()
	if _, err := s.keys.rotate(); err != nil {
		panic("graphtest: generating signing key: " + err.Error())
	}
	// URL is set before the server starts: a request arriving over TCP does
	// not synchronise with this goroutine in the race detector's eyes.
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.URL = "http://" + s.srv.Listener.Addr().String()
	s.srv.Start()
	return s
}

// Close shuts the server down and waits for outstanding requests. Requests
// held by a hang fault (see [FaultHang]) are released first.
func (s *Server) Close() {
	s.closeOnce.Do(func() { close(s.closing) })
	s.srv.Close()
}

// GraphURL returns the base URL of the emulated Microsoft Graph v1.0
// endpoint, {URL}/v1.0, for a Graph client's base URL setting. The beta
// endpoint is not emulated.
func (s *Server) GraphURL() string { return s.URL + graphVersion }

// Clock returns the clock the server mints tokens with.
func (s *Server) Clock() *Clock { return s.clock }

// Client returns an HTTP client for the server (plain loopback HTTP).
func (s *Server) Client() *http.Client { return s.srv.Client() }

// Issuer returns the issuer that tokens of the given version (1 or 2) from
// tenant carry.
func (s *Server) Issuer(tenant string, version int) string {
	if version == 1 {
		return "https://sts.windows.net/" + tenant + "/"
	}
	return s.URL + "/" + tenant + "/v2.0"
}

// Requests returns a copy of the requests served so far, oldest first.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// CountRequests returns how many recorded requests have a path starting with
// prefix.
func (s *Server) CountRequests(prefix string) int {
	n := 0
	for _, r := range s.Requests() {
		if strings.HasPrefix(r.Path, prefix) {
			n++
		}
	}
	return n
}

// ResetRequests forgets the recorded requests.
func (s *Server) ResetRequests() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = nil
}

// InjectFault makes every request for which match returns true fail with the
// given HTTP status and an Entra-style JSON error body, until the returned
// function is called. It sees whole HTTP requests only (not $batch
// sub-requests) and answers in the login endpoint's error format; for Graph
// paths prefer [Server.InjectGraphFault].
func (s *Server) InjectFault(match func(*http.Request) bool, status int) (remove func()) {
	return addFault(s, &s.faults, &fault{match: match, status: status})
}

// addFault appends f to *list under s.mu and returns the function that
// removes it again; calling that twice does nothing more.
func addFault[F comparable](s *Server, list *[]F, f F) (remove func()) {
	s.mu.Lock()
	*list = append(*list, f)
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		*list = slices.DeleteFunc(*list, func(g F) bool { return g == f })
	}
}

// PathPrefix returns a fault matcher for [Server.InjectFault] that selects
// requests whose path starts with prefix.
func PathPrefix(prefix string) func(*http.Request) bool {
	return func(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, prefix) }
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests = append(s.requests, Request{
		Method:      r.Method,
		Path:        r.URL.Path,
		Query:       r.URL.RawQuery,
		At:          s.clock.Now(),
		BearerToken: bearerToken(r.Header),
	})
	var injected *fault
	for _, f := range s.faults {
		if f.match(r) {
			injected = f
			break
		}
	}
	s.mu.Unlock()
	if injected != nil {
		writeEntraError(w, injected.status, "temporarily_unavailable", "AADSTS50000: injected fault")
		return
	}
	if _, ok := graphPath(r.URL.Path); ok {
		s.serveGraph(w, r)
		return
	}
	s.serveLogin(w, r)
}

func (s *Server) serveLogin(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		writeEntraError(w, http.StatusMethodNotAllowed, "invalid_request", "AADSTS900561: method not allowed")
		return
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	// Key sets: /common/discovery/keys, /{t}/discovery/keys, /{t}/discovery/v2.0/keys.
	if len(parts) >= 3 && parts[1] == "discovery" && parts[len(parts)-1] == "keys" {
		if parts[0] != "common" && !s.tenants[strings.ToLower(parts[0])] {
			writeEntraError(w, http.StatusBadRequest, "invalid_tenant", "AADSTS90002: Tenant '"+parts[0]+"' not found.")
			return
		}
		s.mu.Lock()
		set := s.keys.publicSet()
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, set)
		return
	}
	// Discovery: /{t}/.well-known/openid-configuration (v1), /{t}/v2.0/.well-known/openid-configuration (v2).
	if strings.HasSuffix(r.URL.Path, "/.well-known/openid-configuration") && len(parts) >= 3 {
		tenant := parts[0]
		if !s.tenants[strings.ToLower(tenant)] {
			writeEntraError(w, http.StatusBadRequest, "invalid_tenant", "AADSTS90002: Tenant '"+tenant+"' not found.")
			return
		}
		switch {
		case len(parts) == 3:
			writeJSON(w, http.StatusOK, s.discovery(tenant, 1))
			return
		case len(parts) == 4 && parts[1] == "v2.0":
			writeJSON(w, http.StatusOK, s.discovery(tenant, 2))
			return
		}
	}
	writeEntraError(w, http.StatusNotFound, "invalid_request", "AADSTS90000: no such endpoint")
}

func (s *Server) discovery(tenant string, version int) map[string]any {
	base := s.URL + "/" + tenant
	doc := map[string]any{
		"issuer":                                s.Issuer(tenant, version),
		"response_types_supported":              []string{"code", "id_token", "code id_token", "id_token token"},
		"subject_types_supported":               []string{"pairwise"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"tenant_region_scope":                   "EU",
	}
	if version == 1 {
		doc["jwks_uri"] = s.URL + "/common/discovery/keys"
		doc["authorization_endpoint"] = base + "/oauth2/authorize"
		doc["token_endpoint"] = base + "/oauth2/token"
	} else {
		doc["jwks_uri"] = base + "/discovery/v2.0/keys"
		doc["authorization_endpoint"] = base + "/oauth2/v2.0/authorize"
		doc["token_endpoint"] = base + "/oauth2/v2.0/token"
	}
	return doc
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeEntraError writes the OAuth-style error body login.microsoftonline.com
// returns.
func writeEntraError(w http.ResponseWriter, status int, code, description string) {
	writeJSON(w, status, map[string]any{
		"error":             code,
		"error_description": description,
		"error_codes":       []int{},
		"timestamp":         time.Now().UTC().Format("2006-01-02 15:04:05Z"),
	})
}

package forwardauth

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/pimguard/pimguard/middleware"
)

// Headers pimguard sends upstream on an allowed request. Every header whose
// name starts with [HeaderPrefix] is pimguard's: [Server.Proxy] removes
// client-sent ones, and the documented proxy configurations do the same.
const (
	HeaderPrefix   = "X-Pimguard-"
	HeaderTenantID = "X-Pimguard-Tenant-Id"
	HeaderObjectID = "X-Pimguard-Object-Id"
	// HeaderRoles lists the directory roles active now according to the
	// live state, comma-separated: a tenant-wide role as its definition ID,
	// a scoped one as ID@scope (e.g.
	// 729827e3-…@/administrativeUnits/…). It is absent when the rule was
	// decided without the live state (a requirement made only of token
	// claims, or a public rule), never sent empty for "unknown".
	HeaderRoles = "X-Pimguard-Roles"
	// HeaderRule names the rule that allowed the request.
	HeaderRule = "X-Pimguard-Rule"
	// HeaderError carries a refusal's code (e.g. pim_unavailable) for
	// proxies that drop the refusal's body (nginx auth_request).
	HeaderError = "X-Pimguard-Error"
)

// Headers a proxy sends to a forward-auth endpoint to describe the original
// request: nginx's auth_request (set in its configuration) and the
// X-Forwarded- set of Traefik's forwardAuth and Caddy's forward_auth.
const (
	headerOriginalMethod  = "X-Original-Method"
	headerOriginalURI     = "X-Original-Uri"
	headerOriginalHost    = "X-Original-Host"
	headerForwardedMethod = "X-Forwarded-Method"
	headerForwardedURI    = "X-Forwarded-Uri"
	headerForwardedHost   = "X-Forwarded-Host"
)

// Codes of the refusals the Server makes itself; the others are the
// middleware's.
const (
	// CodeNoRule: no rule matches the request (403).
	CodeNoRule = "no_rule"
	// CodeForwardRequestInvalid: the proxy did not say which request to
	// decide, or said it twice, differently (400).
	CodeForwardRequestInvalid = "forward_request_invalid"
)

// DefaultEnvoyPrefix is where [Server.ServeHTTP] answers Envoy's ext_authz.
const DefaultEnvoyPrefix = "/ext-authz"

// Config configures a [Server].
type Config struct {
	// Rules, in order; the first that matches a request decides it.
	// Required.
	Rules []Rule
	// Authenticator verifies bearer tokens. Required.
	Authenticator *middleware.Authenticator
	// Guard decides requirements against live PIM state. Required.
	Guard *middleware.Guard
	// EnvoyPrefix is the path prefix under which [Server.ServeHTTP]
	// answers Envoy's HTTP ext_authz (its path_prefix). Default
	// [DefaultEnvoyPrefix].
	EnvoyPrefix string
	// Realm is the realm of the Server's own refusals' challenges. Default
	// middleware.DefaultRealm.
	Realm string
	// ErrorWriter renders the Server's own refusals (no_rule,
	// forward_request_invalid). Default [WriteRejection]. Configure the
	// Authenticator and the Guard with the same one.
	ErrorWriter middleware.ErrorWriter
	// Logger receives a record per request no rule matches (the Guard
	// records its own decisions). Default slog.Default().
	Logger *slog.Logger
	// Now is the instant at which X-Pimguard-Roles lists active roles.
	// Default time.Now; give it the Guard's clock.
	Now func() time.Time
	// MeterProvider receives pimguard.forwardauth.refusals, one count per
	// request the Server refused itself, by code (no_rule,
	// forward_request_invalid); the Guard and the Authenticator count
	// their own. Default (nil) otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
}

// Server decides requests that a proxy in front of another service asks
// about, with the rules of [Config.Rules]. It is safe for concurrent use.
type Server struct {
	cfg      Config
	rules    []*compiledRule
	refusals metric.Int64Counter
	// allow answers each rule's allowed requests in forward-auth mode.
	allow []http.Handler
}

// New validates cfg and returns a Server. It refuses an invalid pattern or
// requirement, and a pattern that an earlier one shadows (see [Rule]).
func New(cfg Config) (*Server, error) {
	if cfg.Authenticator == nil || cfg.Guard == nil {
		return nil, errors.New("forwardauth: Config.Authenticator and Config.Guard are required")
	}
	cfg.EnvoyPrefix = strings.TrimSuffix(cmp.Or(cfg.EnvoyPrefix, DefaultEnvoyPrefix), "/")
	if !strings.HasPrefix(cfg.EnvoyPrefix, "/") || cfg.EnvoyPrefix == "/auth" {
		return nil, fmt.Errorf("forwardauth: EnvoyPrefix %q must be a path other than /auth", cfg.EnvoyPrefix)
	}
	cfg.Realm = cmp.Or(cfg.Realm, middleware.DefaultRealm)
	if cfg.ErrorWriter == nil {
		cfg.ErrorWriter = WriteRejection
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	rules, err := compile(cfg.Rules)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, rules: rules}
	mp := cfg.MeterProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	if s.refusals, err = mp.Meter("github.com/pimguard/pimguard/forwardauth").Int64Counter("pimguard.forwardauth.refusals",
		metric.WithUnit("{request}"), metric.WithDescription("Requests the forward-auth server refused itself, by code: no_rule (no rule matches), forward_request_invalid (the proxy did not describe the request).")); err != nil {
		return nil, fmt.Errorf("forwardauth: Config.MeterProvider: creating pimguard.forwardauth.refusals: %w", err)
	}
	s.allow = make([]http.Handler, len(rules))
	for i, ru := range rules {
		s.allow[i] = s.chain(ru, s.answerAllowed(ru))
	}
	return s, nil
}

// WriteRejection is [middleware.WriteRejection] plus the X-Pimguard-Error
// header naming the refusal's code, which nginx's auth_request can pass on
// (it drops the body). Use it as the ErrorWriter of the Authenticator and
// the Guard behind a Server.
func WriteRejection(w http.ResponseWriter, r *http.Request, rej *middleware.Rejection) {
	if rej.Code != "" {
		w.Header().Set(HeaderError, rej.Code)
	}
	middleware.WriteRejection(w, r, rej)
}

// chain puts rule ru's checks in front of next.
func (s *Server) chain(ru *compiledRule, next http.Handler) http.Handler {
	switch ru.Access {
	case AccessPublic:
		return next
	case AccessAuthenticated:
		return s.cfg.Authenticator.Handler(s.cfg.Guard.Load(next))
	default:
		return s.cfg.Authenticator.Handler(s.cfg.Guard.Require(ru.Require)(next))
	}
}

// ServeHTTP answers forward-auth requests on /auth (any method: nginx,
// Traefik, Caddy), Envoy's ext_authz under the EnvoyPrefix, and 404
// elsewhere. Mount health endpoints beside it, not behind it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/auth":
		s.serveForwardAuth(w, r)
	case r.URL.Path == s.cfg.EnvoyPrefix || strings.HasPrefix(r.URL.Path, s.cfg.EnvoyPrefix+"/"):
		s.serveExtAuthz(w, r)
	default:
		http.NotFound(w, r)
	}
}

// ForwardAuth returns the handler of nginx's auth_request, Traefik's
// forwardAuth and Caddy's forward_auth. It decides the original request,
// which the proxy describes in headers: X-Original-Method, X-Original-URI
// and, optionally, X-Original-Host (as the documented nginx configuration
// sets them), or X-Forwarded-Method, X-Forwarded-Uri and X-Forwarded-Host
// (Traefik, Caddy); the token is the request's Authorization. A request
// carrying X-Original-URI and X-Forwarded-Uri at once is refused (400):
// one of them came from the client, and which one the proxy set cannot be
// told. On allow it answers 200 with the identity headers ([HeaderTenantID],
// [HeaderObjectID], [HeaderRoles], [HeaderRule]) for the proxy to copy
// upstream; on refusal, the status, challenge and JSON body of the
// refusal, plus [HeaderError].
func (s *Server) ForwardAuth() http.Handler { return http.HandlerFunc(s.serveForwardAuth) }

func (s *Server) serveForwardAuth(w http.ResponseWriter, r *http.Request) {
	orig, err := forwardedRequest(r)
	if err != nil {
		s.rejectInvalid(w, r, err)
		return
	}
	s.decide(w, orig, s.allow)
}

// ExtAuthz returns the handler of Envoy's HTTP ext_authz service: Envoy
// sends the original method, headers and Host, and the original path
// (with its query) after the EnvoyPrefix. The answers are those of
// [Server.ForwardAuth]; list the identity headers in Envoy's
// allowed_upstream_headers.
func (s *Server) ExtAuthz() http.Handler { return http.HandlerFunc(s.serveExtAuthz) }

func (s *Server) serveExtAuthz(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimPrefix(r.URL.EscapedPath(), s.cfg.EnvoyPrefix)
	if path == "" {
		path = "/"
	}
	u, err := url.ParseRequestURI(path)
	if err == nil && !strings.HasPrefix(path, "/") {
		err = errors.New("the path after the prefix is not a path")
	}
	if err != nil {
		s.rejectInvalid(w, r, err)
		return
	}
	u.RawQuery = r.URL.RawQuery
	s.decide(w, originalRequest(r, r.Method, u, r.Host), s.allow)
}

// rejectInvalid refuses a request whose proxy did not describe the
// original request: 400 forward_request_invalid.
func (s *Server) rejectInvalid(w http.ResponseWriter, r *http.Request, err error) {
	s.reject(w, r, &middleware.Rejection{Status: http.StatusBadRequest, OAuthError: middleware.OAuthInvalidRequest,
		Code: CodeForwardRequestInvalid, Description: "The proxy did not describe the original request.", Realm: s.cfg.Realm, Err: err})
}

// decide finds the rule of r and serves r with that rule's handler of
// handlers, or refuses it when no rule matches.
func (s *Server) decide(w http.ResponseWriter, r *http.Request, handlers []http.Handler) {
	i := s.match(r)
	if i < 0 {
		s.cfg.Logger.LogAttrs(r.Context(), slog.LevelInfo, "pimguard: no rule matches the request",
			slog.String("method", r.Method), slog.String("host", r.Host), slog.String("path", r.URL.Path))
		s.reject(w, r, &middleware.Rejection{Status: http.StatusForbidden, OAuthError: middleware.OAuthInsufficientScope,
			Code: CodeNoRule, Description: "No rule allows this request.", Realm: s.cfg.Realm})
		return
	}
	handlers[i].ServeHTTP(w, r)
}

// match returns the index of the first rule that matches r, or -1. A
// request the service behind the proxy might read differently from the
// rules matches no rule (see [ambiguous]); the host is compared in lower
// case without a trailing dot, as DNS names are.
func (s *Server) match(r *http.Request) int {
	if ambiguous(r) {
		return -1
	}
	if h := canonicalHost(r.Host); h != r.Host {
		r2 := *r
		r2.Host = h
		r = &r2
	}
	for i, ru := range s.rules {
		for _, mux := range ru.muxes {
			if matches(mux, r) {
				return i
			}
		}
	}
	return -1
}

// canonicalHost is host (with an optional port) in lower case and without
// a trailing dot.
func canonicalHost(host string) string {
	name, port := host, ""
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		name, port = host[:i], host[i:]
	}
	return strings.ToLower(strings.TrimSuffix(name, ".")) + port
}

// Match returns the rule that decides r (its method, Host and URL path),
// and false when none does.
func (s *Server) Match(r *http.Request) (Rule, bool) {
	if i := s.match(r); i >= 0 {
		return s.rules[i].Rule, true
	}
	return Rule{}, false
}

// Rules returns the Server's rules, in order, with their default names set.
func (s *Server) Rules() []Rule {
	out := make([]Rule, len(s.rules))
	for i, ru := range s.rules {
		out[i] = ru.Rule
	}
	return out
}

// ambiguous reports whether r could mean another request to the service
// behind the proxy than the one the rules would match, which no rule may
// then allow:
//   - a method that is not upper case: ServeMux compares methods exactly,
//     while many frameworks upper-case them (a "post" would skip a POST
//     rule for a broader one); and CONNECT, whose path ServeMux never cleans;
//   - a path that is not clean once decoded: a "." or ".." segment (also
//     %2e-encoded, or with ;parameters, which Tomcat and Jetty strip), an
//     empty segment ("//"), an encoded slash or a backslash (read as a
//     separator by some servers), a "#", or a control character.
func ambiguous(r *http.Request) bool {
	if r.Method != strings.ToUpper(r.Method) || r.Method == http.MethodConnect {
		return true
	}
	raw := strings.ToLower(r.URL.EscapedPath())
	if strings.Contains(raw, "%2f") || strings.Contains(raw, "%5c") {
		return true
	}
	p := r.URL.Path
	if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "\\#") || strings.Contains(p, "//") {
		return true
	}
	for i := 0; i < len(p); i++ {
		if p[i] < 0x20 || p[i] == 0x7f {
			return true
		}
	}
	for seg := range strings.SplitSeq(p[1:], "/") {
		seg, _, _ = strings.Cut(seg, ";")
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

func (s *Server) reject(w http.ResponseWriter, r *http.Request, rej *middleware.Rejection) {
	s.refusals.Add(r.Context(), 1, metric.WithAttributes(attribute.String("code", rej.Code)))
	s.cfg.ErrorWriter(w, r, rej)
}

// answerAllowed is forward-auth's answer to a request rule ru allowed.
func (s *Server) answerAllowed(ru *compiledRule) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.setIdentity(w.Header(), r, ru)
		w.WriteHeader(http.StatusOK)
	})
}

// setIdentity sets the identity headers of an allowed request r in h.
func (s *Server) setIdentity(h http.Header, r *http.Request, ru *compiledRule) {
	h.Set(HeaderRule, ru.Name)
	p, ok := middleware.PrincipalFromContext(r.Context())
	if !ok {
		return // a public rule
	}
	h.Set(HeaderTenantID, p.TenantID)
	h.Set(HeaderObjectID, p.ObjectID)
	if st, ok := middleware.LiveStateFromContext(r.Context()); ok {
		var roles []string
		for _, ra := range st.ActiveRoles(s.cfg.Now()) {
			role := ra.RoleDefinitionID
			if ra.DirectoryScopeID != "/" {
				role += "@" + ra.DirectoryScopeID
			}
			roles = append(roles, role)
		}
		slices.Sort(roles)
		h.Set(HeaderRoles, strings.Join(slices.Compact(roles), ","))
	}
}

// forwardedRequest is the original request that forward-auth request r
// describes.
func forwardedRequest(r *http.Request) (*http.Request, error) {
	h := r.Header
	method, uri, host := h.Get(headerOriginalMethod), h.Values(headerOriginalURI), h.Get(headerOriginalHost)
	fwdURI := h.Values(headerForwardedURI)
	switch {
	case len(uri) > 0 && len(fwdURI) > 0:
		return nil, errors.New("both X-Original-URI and X-Forwarded-Uri are present")
	case len(fwdURI) > 0:
		method, uri, host = h.Get(headerForwardedMethod), fwdURI, h.Get(headerForwardedHost)
	case len(uri) == 0:
		return nil, errors.New("neither X-Original-URI nor X-Forwarded-Uri is present")
	}
	if len(uri) != 1 {
		return nil, errors.New("the original URI is given more than once")
	}
	for _, name := range []string{headerOriginalMethod, headerOriginalHost, headerForwardedMethod, headerForwardedHost} {
		if len(h.Values(name)) > 1 {
			return nil, fmt.Errorf("%s is given more than once", name)
		}
	}
	if method == "" || !validMethod(method) {
		return nil, fmt.Errorf("original method %.20q is missing or not a token", method)
	}
	if !strings.HasPrefix(uri[0], "/") {
		return nil, errors.New("the original URI is not a path")
	}
	u, err := url.ParseRequestURI(uri[0])
	if err != nil {
		return nil, err
	}
	return originalRequest(r, method, u, host), nil
}

// originalRequest is r as the proxy received it: method, URL and host
// replaced, headers (the token) and context kept. It is a shallow copy:
// the header map is r's, which nothing behind the Server changes.
func originalRequest(r *http.Request, method string, u *url.URL, host string) *http.Request {
	o := new(http.Request)
	*o = *r
	o.Method, o.URL, o.Host, o.RequestURI = method, u, host, u.RequestURI()
	return o
}

func validMethod(m string) bool {
	for i := 0; i < len(m); i++ {
		c := m[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return len(m) <= 32
}

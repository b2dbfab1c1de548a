package proxytest_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pimguard/pimguard/internal/proxytest"
)

// The documented, copy-paste configurations (cmd/pimguard's README points
// at them). These tests run them in the real proxies, with authDouble
// standing in for pimguard, and look at what the client and the
// application get.
const (
	nginxConf = "../../cmd/pimguard/testdata/nginx.conf"
	caddyfile = "../../cmd/pimguard/testdata/Caddyfile"
)

type startFunc func(t testing.TB, conf string, replace map[string]string) *proxytest.Proxy

var proxies = []struct {
	name  string
	conf  string
	start startFunc
}{
	{"nginx", nginxConf, proxytest.StartNginx},
	{"caddy", caddyfile, proxytest.StartCaddy},
}

// forged are identity headers a client sends hoping the application
// believes them.
var forged = map[string]string{
	"X-Pimguard-Tenant-Id": "forged-tenant",
	"X-Pimguard-Object-Id": "forged-object",
	"X-Pimguard-Roles":     "Global.Admin",
	"X-Pimguard-Rule":      "forged-rule",
	"X-Pimguard-Error":     "forged-error",
}

// clientCase is one request through a proxy and what must come of it.
type clientCase struct {
	name   string
	method string
	uri    string
	token  string
	header map[string]string // more client headers
	body   string

	status     int
	respHeader map[string]string // single-valued response headers, exactly
	code       string            // the JSON body's "code"; "" for an allowed request

	upstream   map[string]string // the application's request headers ("" = absent or empty); nil: the application must not be asked
	authMethod string            // the original method the auth server was told
	authURI    string            // the original URI the auth server was told
}

func withForged(h map[string]string) map[string]string {
	m := map[string]string{}
	for k, v := range forged {
		m[k] = v
	}
	for k, v := range h {
		m[k] = v
	}
	return m
}

// commonCases hold for every documented proxy configuration.
func commonCases() []clientCase {
	identity := map[string]string{
		"X-Pimguard-Tenant-Id": allowTenant,
		"X-Pimguard-Object-Id": allowObject,
		"X-Pimguard-Roles":     allowRoles,
		"X-Pimguard-Rule":      allowRule,
		"X-Pimguard-Error":     "",
		"Authorization":        "Bearer " + tokenAllow,
	}
	return []clientCase{
		{name: "allowed, forged identity replaced", method: "GET", uri: "/api/orders?x=1&y=%2F", token: tokenAllow,
			header: forged, status: 200, upstream: identity, authMethod: "GET", authURI: "/api/orders?x=1&y=%2F"},
		{name: "allowed POST, body to the application only", method: "POST", uri: "/api/orders", token: tokenAllow,
			body: "payload", status: 200, upstream: identity, authMethod: "POST", authURI: "/api/orders"},
		{name: "public rule, forged identity removed", method: "GET", uri: "/public/health",
			header: forged, status: 200, authMethod: "GET", authURI: "/public/health",
			upstream: map[string]string{
				"X-Pimguard-Tenant-Id": "", "X-Pimguard-Object-Id": "", "X-Pimguard-Roles": "",
				"X-Pimguard-Rule": "public", "X-Pimguard-Error": "",
			}},
		{name: "no token", method: "GET", uri: "/api/orders", status: 401, code: "token_missing",
			respHeader: map[string]string{"WWW-Authenticate": wwwAuthMissing, "X-Pimguard-Error": "token_missing"},
			authMethod: "GET", authURI: "/api/orders"},
		{name: "expired token, forged identity", method: "DELETE", uri: "/api/orders/7", token: tokenExpired,
			header: forged, status: 401, code: "token_expired",
			respHeader: map[string]string{"WWW-Authenticate": wwwAuthExpired, "X-Pimguard-Error": "token_expired"},
			authMethod: "DELETE", authURI: "/api/orders/7"},
		{name: "no rule", method: "GET", uri: "/admin", token: tokenNoRule, status: 403, code: "no_rule",
			respHeader: map[string]string{"WWW-Authenticate": wwwAuthNoRule, "X-Pimguard-Error": "no_rule"},
			authMethod: "GET", authURI: "/admin"},
		{name: "PIM unavailable", method: "GET", uri: "/api/orders", token: tokenPIMDown, status: 503, code: "pim_unavailable",
			respHeader: map[string]string{"Retry-After": "7", "X-Pimguard-Error": "pim_unavailable"},
			authMethod: "GET", authURI: "/api/orders"},
		{name: "malformed token", method: "GET", uri: "/api/orders", token: tokenBad, status: 400, code: "token_malformed",
			respHeader: map[string]string{"X-Pimguard-Error": "token_malformed"},
			authMethod: "GET", authURI: "/api/orders"},
		{name: "pimguard internal error", method: "GET", uri: "/api/orders", token: tokenCrash, status: 500, code: "internal_error",
			respHeader: map[string]string{"X-Pimguard-Error": "internal_error"},
			authMethod: "GET", authURI: "/api/orders"},
	}
}

func TestDocumentedConfigs(t *testing.T) {
	extra := map[string][]clientCase{
		// A client's X-Forwarded-Uri (Traefik's and Caddy's name) must not
		// reach pimguard beside nginx's X-Original-URI: pimguard would
		// answer 400, or, worse, believe it.
		"nginx": {{name: "forged X-Forwarded-Uri cleared", method: "GET", uri: "/api/orders",
			header: map[string]string{"X-Forwarded-Uri": "/public/x", "X-Forwarded-Method": "GET", "X-Forwarded-Host": "evil"},
			status: 401, code: "token_missing", respHeader: map[string]string{"WWW-Authenticate": wwwAuthMissing},
			authMethod: "GET", authURI: "/api/orders"}},
		// And the other way round through Caddy.
		"caddy": {{name: "forged X-Original-URI removed", method: "GET", uri: "/api/orders",
			header: map[string]string{"X-Original-Uri": "/public/x", "X-Original-Method": "GET", "X-Original-Host": "evil"},
			status: 401, code: "token_missing", respHeader: map[string]string{"WWW-Authenticate": wwwAuthMissing},
			authMethod: "GET", authURI: "/api/orders"},
			{name: "forged X-Forwarded-Uri overwritten", method: "GET", uri: "/api/orders",
				header: map[string]string{"X-Forwarded-Uri": "/public/x", "X-Forwarded-Method": "GET"},
				status: 401, code: "token_missing", respHeader: map[string]string{"WWW-Authenticate": wwwAuthMissing},
				authMethod: "GET", authURI: "/api/orders"}},
	}
	for _, px := range proxies {
		t.Run(px.name, func(t *testing.T) {
			auth, app := &authDouble{}, &upstream{}
			authSrv, appSrv := httptest.NewServer(auth), httptest.NewServer(app)
			t.Cleanup(authSrv.Close)
			t.Cleanup(appSrv.Close)
			p := px.start(t, px.conf, map[string]string{
				proxytest.ExamplePimguard: authSrv.Listener.Addr().String(),
				proxytest.ExampleUpstream: appSrv.Listener.Addr().String(),
			})
			for i, c := range append(commonCases(), extra[px.name]...) {
				t.Run(c.name, func(t *testing.T) {
					id := fmt.Sprintf("%s-%d", px.name, i)
					resp, body := do(t, p, id, c)
					checkResponse(t, resp, body, c)

					a, ok := auth.Seen(id)
					if !ok {
						t.Fatal("the auth server was not asked")
					}
					checkAuthRequest(t, a, c)

					u, asked := app.Seen(id)
					switch {
					case c.upstream == nil && asked:
						t.Fatalf("the application was asked (%s %s) although pimguard denied", u.Method, u.URI)
					case c.upstream != nil && !asked:
						t.Fatal("the application was not asked although pimguard allowed")
					case asked:
						checkUpstream(t, u, c)
					}
				})
			}
		})
	}
}

// TestPimguardDown: when pimguard cannot be reached, the request is denied
// and the client is told to retry (nginx), never let through.
func TestPimguardDown(t *testing.T) {
	want := map[string]struct {
		status int
		header map[string]string
		code   string
	}{
		"nginx": {503, map[string]string{"Retry-After": "5", "X-Pimguard-Error": "pimguard_unavailable"}, "pimguard_unavailable"},
		"caddy": {502, nil, ""}, // Caddy's own answer to an unreachable forward_auth upstream
	}
	for _, px := range proxies {
		t.Run(px.name, func(t *testing.T) {
			app := &upstream{}
			appSrv := httptest.NewServer(app)
			t.Cleanup(appSrv.Close)
			p := px.start(t, px.conf, map[string]string{
				proxytest.ExamplePimguard: proxytest.FreeAddr(t), // nothing listens there
				proxytest.ExampleUpstream: appSrv.Listener.Addr().String(),
			})
			w := want[px.name]
			c := clientCase{method: "GET", uri: "/api/orders", token: tokenAllow, header: forged,
				status: w.status, respHeader: w.header, code: w.code}
			resp, body := do(t, p, "down", c)
			checkResponse(t, resp, body, c)
			if _, asked := app.Seen("down"); asked {
				t.Fatal("the application was asked while pimguard was down")
			}
		})
	}
}

func do(t *testing.T, p *proxytest.Proxy, id string, c clientCase) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(c.method, p.URL()+c.uri, strings.NewReader(c.body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Test-Id", id)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func checkResponse(t *testing.T, resp *http.Response, body []byte, c clientCase) {
	t.Helper()
	if resp.StatusCode != c.status {
		t.Fatalf("status %d, want %d; headers %v; body %q", resp.StatusCode, c.status, resp.Header, body)
	}
	for k, want := range c.respHeader {
		if got := resp.Header.Values(k); len(got) != 1 || got[0] != want {
			t.Errorf("response %s = %q, want exactly [%q]", k, got, want)
		}
	}
	if c.status == 200 {
		if string(body) != "app" {
			t.Errorf("body %q, want the application's", body)
		}
		return
	}
	if c.code == "" {
		return
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var e struct{ Error, Code string }
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("body %q is not JSON: %v", body, err)
	}
	if e.Code != c.code || e.Error == "" {
		t.Errorf("body %q: want code %q and an error", body, c.code)
	}
}

// checkAuthRequest: the auth server was told the client's method and URI
// in exactly one header set, got the token, and no request body.
func checkAuthRequest(t *testing.T, a seenRequest, c clientCase) {
	t.Helper()
	h := a.Header
	method, uri := h.Get("X-Original-Method"), h.Get("X-Original-Uri")
	if uri == "" {
		method, uri = h.Get("X-Forwarded-Method"), h.Get("X-Forwarded-Uri")
	} else if h.Get("X-Forwarded-Uri") != "" || h.Get("X-Forwarded-Method") != "" {
		t.Errorf("auth request carries both X-Original-* and X-Forwarded-*: %v", h)
	}
	if method != c.authMethod || uri != c.authURI {
		t.Errorf("auth server told %s %s, want %s %s", method, uri, c.authMethod, c.authURI)
	}
	if c.token != "" && h.Get("Authorization") != "Bearer "+c.token {
		t.Errorf("auth request Authorization %q, want the client's", h.Get("Authorization"))
	}
	if a.Body != "" {
		t.Errorf("auth request carries the client's body %q", a.Body)
	}
	if !strings.HasPrefix(a.URI, "/auth") {
		t.Errorf("auth request to %s, want /auth", a.URI)
	}
}

func checkUpstream(t *testing.T, u seenRequest, c clientCase) {
	t.Helper()
	if u.Method != c.method || u.URI != c.uri {
		t.Errorf("application asked %s %s, want %s %s", u.Method, u.URI, c.method, c.uri)
	}
	if u.Body != c.body {
		t.Errorf("application got body %q, want %q", u.Body, c.body)
	}
	for k, want := range c.upstream {
		got := u.Header.Values(k)
		if want == "" {
			if len(got) > 0 && strings.Join(got, "") != "" {
				t.Errorf("application got %s %q, want none", k, got)
			}
			continue
		}
		if len(got) != 1 || got[0] != want {
			t.Errorf("application got %s %q, want exactly [%q]", k, got, want)
		}
	}
	for k, v := range forged {
		for _, got := range u.Header.Values(k) {
			if got == v {
				t.Errorf("the client's forged %s: %s reached the application", k, v)
			}
		}
	}
}

// TestRecordedRequests: the recorded requests of the proxies that are not
// started here (cmd/pimguard's tests replay them against pimguard) are raw
// HTTP/1.1 that parses to one complete request, with the token placeholder
// and exactly one way of naming the original request.
func TestRecordedRequests(t *testing.T) {
	tests := []struct {
		file   string
		method string
		uri    string // the request target pimguard gets
		header map[string]string
	}{
		{"traefik-request.http", "GET", "/auth", map[string]string{
			"Host": "127.0.0.1:8081", "X-Forwarded-Method": "DELETE",
			"X-Forwarded-Uri": "/api/orders/42?force=true", "X-Forwarded-Host": "app.example.com",
		}},
		{"envoy-request.http", "DELETE", "/ext-authz/api/orders/42?force=true", map[string]string{
			"Host": "app.example.com", "Content-Length": "0",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("../../cmd/pimguard/testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			s := string(raw)
			if !strings.HasSuffix(s, "\r\n\r\n") || strings.Count(s, "\n") != strings.Count(s, "\r\n") {
				t.Fatal("not CRLF-framed raw HTTP ending with an empty line")
			}
			if strings.Count(s, "Bearer {{TOKEN}}") != 1 {
				t.Fatal("no single Bearer {{TOKEN}} placeholder")
			}
			br := bufio.NewReader(strings.NewReader(strings.ReplaceAll(s, "{{TOKEN}}", "tok")))
			req, err := http.ReadRequest(br)
			if err != nil {
				t.Fatal(err)
			}
			if rest, _ := io.ReadAll(br); len(rest) != 0 {
				t.Fatalf("%d bytes after the request", len(rest))
			}
			if req.Method != tt.method || req.RequestURI != tt.uri {
				t.Errorf("request %s %s, want %s %s", req.Method, req.RequestURI, tt.method, tt.uri)
			}
			if got := req.Header.Get("Authorization"); got != "Bearer tok" {
				t.Errorf("Authorization %q", got)
			}
			for k, want := range tt.header {
				got := req.Header.Get(k)
				switch k {
				case "Host":
					got = req.Host
				case "Content-Length":
					got = fmt.Sprint(req.ContentLength)
				}
				if got != want {
					t.Errorf("%s %q, want %q", k, got, want)
				}
			}
			for k := range req.Header {
				if strings.HasPrefix(k, "X-Original-") || strings.HasPrefix(k, "X-Pimguard-") {
					t.Errorf("unexpected %s", k)
				}
			}
		})
	}
}

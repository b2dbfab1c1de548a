package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pimguard/pimguard/forwardauth"
	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/internal/proxytest"
	"github.com/pimguard/pimguard/internal/syncio"
	"github.com/pimguard/pimguard/middleware"
)

// proxies starts each documented proxy configuration in front of e's
// pimguard and upstream.
var proxies = []struct {
	name  string
	start func(t *testing.T, e *e2e) *proxytest.Proxy
}{
	{"nginx", func(t *testing.T, e *e2e) *proxytest.Proxy {
		return proxytest.StartNginx(t, "testdata/nginx.conf", map[string]string{proxytest.ExamplePimguard: e.pgAddr, proxytest.ExampleUpstream: e.upAddr})
	}},
	{"caddy", func(t *testing.T, e *e2e) *proxytest.Proxy {
		return proxytest.StartCaddy(t, "testdata/Caddyfile", map[string]string{proxytest.ExamplePimguard: e.pgAddr, proxytest.ExampleUpstream: e.upAddr})
	}},
}

// TestThroughRealProxies drives pimguard serve through real nginx and Caddy
// with the documented configurations, as a client sees it.
func TestThroughRealProxies(t *testing.T) {
	for _, px := range proxies {
		t.Run(px.name, func(t *testing.T) {
			e := newE2E(t, "")
			proxy := px.start(t, e)
			base := proxy.URL()
			// X_Pimguard_Object_Id is X-Pimguard-Object-Id to servers that
			// map names CGI-style (HTTP_X_PIMGUARD_OBJECT_ID).
			forged := http.Header{forwardauth.HeaderObjectID: {bobOID}, forwardauth.HeaderRoles: {middleware.RoleGlobalAdministrator},
				"X_Pimguard_Object_Id": {bobOID}, "X-Pimguard_Object_Id": {bobOID}, "x_pimguard-object-id": {bobOID}}

			t.Run("allowed: the upstream gets the live identity, never the forged one", func(t *testing.T) {
				resp, body := send(t, "POST", base+"/api/users/42/reset-password?notify=1", e.token(janeOID), forged)
				if resp.StatusCode != 200 || body != "upstream ok\n" {
					t.Fatalf("%d %q", resp.StatusCode, body)
				}
				seen := e.upstream.take()
				if len(seen) != 1 {
					t.Fatalf("the upstream saw %d requests", len(seen))
				}
				h := seen[0]
				for name, v := range h {
					if slices.Contains(v, bobOID) {
						t.Fatalf("forged identity reached the upstream: %s: %q", name, v)
					}
				}
				if h.Get(forwardauth.HeaderObjectID) != janeOID || h.Get(forwardauth.HeaderTenantID) != graphtest.TenantID ||
					h.Get(forwardauth.HeaderRoles) != helpdesk || h.Get(forwardauth.HeaderRule) != "reset-password" ||
					len(h.Values(forwardauth.HeaderObjectID)) != 1 || h.Get("X-Test-Path") != "/api/users/42/reset-password?notify=1" {
					t.Fatalf("upstream headers: %v", h)
				}
			})
			t.Run("public: forged identity headers never reach the upstream", func(t *testing.T) {
				resp, _ := send(t, "GET", base+"/public/app.js", "", forged)
				seen := e.upstream.take()
				if resp.StatusCode != 200 || len(seen) != 1 {
					t.Fatalf("%d, upstream saw %d", resp.StatusCode, len(seen))
				}
				for name, v := range seen[0] {
					if strings.HasPrefix(strings.ToLower(strings.ReplaceAll(name, "_", "-")), "x-pimguard-") && name != "X-Pimguard-Rule" {
						t.Fatalf("forged identity reached the upstream: %s: %q", name, v)
					}
				}
			})
			refusals := []struct {
				name, method, path, token string
				status                    int
				code                      string
				challenge                 string // in WWW-Authenticate; "" for none required
			}{
				{"bad token: 401 with the challenge", "GET", "/api/me", "Bearer not.a.token", 401, middleware.CodeTokenMalformed, `error="invalid_token"`},
				{"no token: 401 with the challenge", "POST", "/api/users/1/reset-password", "", 401, middleware.CodeTokenMissing, `Bearer realm="pimguard"`},
				{"role not active: 403", "POST", "/api/users/1/reset-password", e.token(bobOID), 403, middleware.CodeRoleNotActive, `error="insufficient_scope"`},
				{"no rule: 403", "GET", "/admin", e.token(janeOID), 403, forwardauth.CodeNoRule, `error="insufficient_scope"`},
			}
			for _, tc := range refusals {
				t.Run(tc.name, func(t *testing.T) {
					resp, body := send(t, tc.method, base+tc.path, tc.token, nil)
					if resp.StatusCode != tc.status || resp.Header.Get(forwardauth.HeaderError) != tc.code {
						t.Fatalf("%d %s=%q, want %d %q; body %s", resp.StatusCode, forwardauth.HeaderError, resp.Header.Get(forwardauth.HeaderError), tc.status, tc.code, body)
					}
					if ch := resp.Header.Values("WWW-Authenticate"); len(ch) != 1 || !strings.Contains(ch[0], tc.challenge) {
						t.Fatalf("WWW-Authenticate %q, want one containing %q", ch, tc.challenge)
					}
					assertJSONCode(t, body, tc.code)
					if n := len(e.upstream.take()); n != 0 {
						t.Fatalf("a refused request reached the upstream (%d)", n)
					}
				})
			}
			t.Run("Graph outage: 503 with Retry-After, not 500", func(t *testing.T) {
				remove := e.tenant.InjectGraphFault(graphtest.GraphMatch{}, graphtest.Fault{Status: http.StatusServiceUnavailable})
				defer remove()
				resp, body := send(t, "POST", base+"/api/users/1/reset-password", e.token(leeOID), nil)
				if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || resp.Header.Get(forwardauth.HeaderError) != middleware.CodePIMUnavailable {
					t.Fatalf("%d Retry-After=%q %s=%q; body %s", resp.StatusCode, resp.Header.Get("Retry-After"),
						forwardauth.HeaderError, resp.Header.Get(forwardauth.HeaderError), body)
				}
				assertJSONCode(t, body, middleware.CodePIMUnavailable)
				if n := len(e.upstream.take()); n != 0 {
					t.Fatalf("a request reached the upstream during the outage")
				}
			})
			t.Run("deactivated: 403 once the TTL has passed", func(t *testing.T) {
				if resp, _ := send(t, "POST", base+"/api/users/1/reset-password", e.token(janeOID), nil); resp.StatusCode != 200 {
					t.Fatalf("before: %d", resp.StatusCode)
				}
				e.upstream.take()
				must(t, e.tenant.DeactivateRole(janeOID, helpdesk, "/"))
				start := time.Now()
				var status int
				for time.Since(start) < 10*time.Second {
					resp, _ := send(t, "POST", base+"/api/users/1/reset-password", e.token(janeOID), nil)
					if status = resp.StatusCode; status != 200 {
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
				if status != 403 {
					t.Fatalf("still %d 10 s after the deactivation (cache ttl 1s)", status)
				}
				t.Logf("%s: denied %v after the deactivation (cache ttl 1s)", px.name, time.Since(start).Round(time.Millisecond))
			})
		})
	}
}

func assertJSONCode(t *testing.T, body, code string) {
	t.Helper()
	var b struct{ Code string }
	if err := json.Unmarshal([]byte(body), &b); err != nil || b.Code != code {
		t.Fatalf("body %q (%v), want JSON with code %q", body, err, code)
	}
}

// TestRecordedRequests sends pimguard serve the requests Traefik's
// forwardAuth and Envoy's HTTP ext_authz send, byte for byte as recorded
// (testdata/*.http), with a token in place of {{TOKEN}}.
func TestRecordedRequests(t *testing.T) {
	e := newE2E(t, "")
	for _, file := range []string{"traefik-request.http", "envoy-request.http"} {
		raw, err := os.ReadFile(filepath.Join("testdata", file))
		must(t, err)
		for _, tc := range []struct {
			who    string
			oid    string
			status int
			code   string
		}{{"jane", janeOID, 200, ""}, {"bob", bobOID, 403, middleware.CodeRoleNotActive}} {
			t.Run(file+"/"+tc.who, func(t *testing.T) {
				req := strings.ReplaceAll(string(raw), "{{TOKEN}}", strings.TrimPrefix(e.token(tc.oid), "Bearer "))
				conn, err := net.Dial("tcp", e.pgAddr)
				must(t, err)
				defer conn.Close()
				_, err = io.WriteString(conn, req)
				must(t, err)
				resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
				must(t, err)
				resp.Body.Close()
				if resp.StatusCode != tc.status || resp.Header.Get(forwardauth.HeaderError) != tc.code {
					t.Fatalf("%d %q, want %d %q", resp.StatusCode, resp.Header.Get(forwardauth.HeaderError), tc.status, tc.code)
				}
				if tc.status == 200 && (resp.Header.Get(forwardauth.HeaderRule) != "delete-order" || resp.Header.Get(forwardauth.HeaderObjectID) != tc.oid) {
					t.Fatalf("allow headers: %v", resp.Header)
				}
				if tc.status == 403 && !strings.Contains(resp.Header.Get("WWW-Authenticate"), "insufficient_scope") {
					t.Fatalf("no challenge: %v", resp.Header)
				}
			})
		}
	}
}

func TestCheck(t *testing.T) {
	e := newE2E(t, "")
	tests := []struct {
		user string
		code int
		want []string
	}{
		{"jane@contoso.example", 0, []string{
			"<jane@contoso.example> " + janeOID,
			"Helpdesk Administrator (" + helpdesk + "), activated, until ",
			"reset-password  POST /api/users/{id}/reset-password  allow",
			"audit           GET /api/audit                       deny 403 group_not_active (needs group-member:" + auditors + ")",
			"me              GET /api/me                          allow (any valid token)",
			"public          GET /healthz, GET /public/           allow (public: no token needed)",
		}},
		{bobOID, 0, []string{"roles     0 active", "reset-password  POST /api/users/{id}/reset-password  deny 403 role_not_active"}},
		{"nobody@contoso.example", 1, []string{"principal not found"}},
		{"not a user", 1, []string{"neither an object ID nor a userPrincipalName"}},
	}
	for _, tc := range tests {
		t.Run(tc.user, func(t *testing.T) {
			var out, errOut strings.Builder
			code := run(context.Background(), []string{"check", "-config", e.config, "-user", tc.user}, func(string) string { return "" }, &out, &errOut)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, &out, &errOut)
			}
			got := out.String() + errOut.String()
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("output lacks %q:\n%s", w, got)
				}
			}
		})
	}
}

// A configuration mistake stops the program before it serves, naming the
// file, line and reason; usage mistakes too.
func TestConfigurationErrorsStopTheProgram(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	must(t, os.WriteFile(bad, []byte("tenant: "+graphtest.TenantID+"\naudiences: [api://x]\nrules:\n  - match: \"GET /x\"\n    require: {role: Helpdesk Admin}\n"), 0o600))
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"serve", "-config", bad}, bad + `:5:21: unknown role "Helpdesk Admin"`},
		{[]string{"serve", "-config", filepath.Join(dir, "missing.yaml")}, "no such file"},
		{[]string{"proxy", "-config", "testdata/pimguard.yaml"}, "-upstream"},
		{[]string{"check", "-config", "testdata/pimguard.yaml"}, "-user is required"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{nil, "usage:"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var errOut strings.Builder
			code := run(context.Background(), tc.args, func(string) string { return "" }, io.Discard, &errOut)
			if code != 2 || !strings.Contains(errOut.String(), tc.want) {
				t.Fatalf("exit %d, stderr:\n%s\nwant exit 2 and %q", code, &errOut, tc.want)
			}
		})
	}
}

// TestProxyCommand runs pimguard proxy in front of the upstream: the same
// rules, the identity headers set and client-sent ones removed, and
// pimguard's own endpoints on admin-listen only.
func TestProxyCommand(t *testing.T) {
	e := newE2E(t, "")
	front, admin := proxytest.FreeAddr(t), proxytest.FreeAddr(t)
	cfg := filepath.Join(t.TempDir(), "proxy.yaml")
	data, err := os.ReadFile(e.config)
	must(t, err)
	must(t, os.WriteFile(cfg, append([]byte("admin-listen: "+admin+"\n"), data...), 0o600))
	startRun(t, &syncio.Buffer{}, "http://"+admin+"/readyz", "proxy", "-config", cfg, "-upstream", "http://"+e.upAddr, "-listen", front)
	forged := http.Header{forwardauth.HeaderObjectID: {bobOID}, "X-Pimguard-Whatever": {"x"}}

	resp, body := send(t, "POST", "http://"+front+"/api/users/1/reset-password", e.token(janeOID), forged)
	seen := e.upstream.take()
	if resp.StatusCode != 200 || body != "upstream ok\n" || len(seen) != 1 {
		t.Fatalf("allowed: %d %q, upstream saw %d", resp.StatusCode, body, len(seen))
	}
	if seen[0].Get(forwardauth.HeaderObjectID) != janeOID || seen[0].Get("X-Pimguard-Whatever") != "" || seen[0].Get(forwardauth.HeaderRoles) != helpdesk {
		t.Fatalf("upstream headers: %v", seen[0])
	}
	resp, body = send(t, "POST", "http://"+front+"/api/users/1/reset-password", e.token(bobOID), nil)
	if resp.StatusCode != 403 || len(e.upstream.take()) != 0 {
		t.Fatalf("refused: %d %s", resp.StatusCode, body)
	}
	assertJSONCode(t, body, middleware.CodeRoleNotActive)
	// /healthz on the front listener is the upstream's (a public rule),
	// and /metrics is no rule's: the proxy serves none of its own there.
	if resp, body = send(t, "GET", "http://"+front+"/healthz", "", nil); resp.StatusCode != 200 || body != "upstream ok\n" {
		t.Fatalf("front /healthz: %d %q", resp.StatusCode, body)
	}
	e.upstream.take()
	if resp, _ = send(t, "GET", "http://"+front+"/metrics", "", nil); resp.StatusCode != 403 {
		t.Fatalf("front /metrics: %d, want 403 no_rule", resp.StatusCode)
	}
	if resp, body = send(t, "GET", "http://"+admin+"/metrics", "", nil); resp.StatusCode != 200 || !strings.Contains(body, "pimguard_decisions") {
		t.Fatalf("admin /metrics: %d, lacks pimguard_decisions", resp.StatusCode)
	}
}

// TestServeSnapshotMode: with graph.source snapshot, the first decision
// sweeps the tenant and later callers' roles come from the snapshot, with
// no Graph request per caller.
func TestServeSnapshotMode(t *testing.T) {
	e := newE2E(t, "graph: {url: {{GRAPH}}, auth: none, source: snapshot}\ncache: {ttl: 10m, negative-ttl: 10m}\n")
	u, err := url.Parse(e.tenant.GraphURL())
	must(t, err)
	ask := func(oid string) int {
		req, _ := http.NewRequest("GET", "http://"+e.pgAddr+"/auth", nil)
		req.Header.Set("X-Original-Method", "POST")
		req.Header.Set("X-Original-URI", "/api/users/1/reset-password")
		req.Header.Set("Authorization", e.token(oid))
		resp, err := http.DefaultClient.Do(req)
		must(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := ask(janeOID); got != 200 {
		t.Fatalf("jane: %d", got)
	}
	swept := e.tenant.CountRequests(u.Path)
	if swept == 0 {
		t.Fatal("no Graph request for the sweep")
	}
	for oid, want := range map[string]int{leeOID: 200, bobOID: 403} {
		if got := ask(oid); got != want {
			t.Fatalf("%s: %d, want %d", oid, got, want)
		}
	}
	if n := e.tenant.CountRequests(u.Path); n != swept {
		t.Fatalf("%d Graph requests for two more callers, want 0 (snapshot mode)", n-swept)
	}
}

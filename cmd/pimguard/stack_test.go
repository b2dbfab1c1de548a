package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/internal/proxytest"
	"github.com/pimguard/pimguard/internal/syncio"
	"github.com/pimguard/pimguard/middleware"
)

// People of the fake tenant the end-to-end tests run against.
const (
	janeOID   = "0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e" // Helpdesk Administrator, activated
	bobOID    = "5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b" // nothing active
	leeOID    = "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d" // Helpdesk Administrator, activated, looked up first in an outage
	auditors  = "6f7a8b9c-0d1e-4f2a-9b3c-4d5e6f7a8b9c"
	helpdesk  = middleware.RoleHelpdeskAdministrator
	userAdmin = middleware.RoleUserAdministrator
)

// testRules is the rules: section of the test configurations, after the
// documented example (testdata/pimguard.yaml) plus the route of the
// recorded Traefik and Envoy requests.
const testRules = `rules:
  - name: reset-password
    match: "POST /api/users/{id}/reset-password"
    require:
      any-of:
        - {role: Helpdesk Administrator}
        - {role: ` + userAdmin + `}
  - name: delete-order
    match: "DELETE /api/orders/{id}"
    require: {role: Helpdesk Administrator}
  - name: audit
    match: "GET /api/audit"
    require: {group-member: ` + auditors + `}
  - name: me
    match: "GET /api/me"
    require: authenticated
  - name: public
    match: ["GET /healthz", "GET /public/"]
    require: public
`

// e2e is a fake tenant (real time), an upstream that records what reaches
// it, and pimguard serve started by run() on a loopback port.
type e2e struct {
	tenant   *graphtest.Server
	upstream *recorder
	upAddr   string
	pgAddr   string // pimguard serve
	config   string // the configuration file
	stderr   *syncio.Buffer
}

// newE2E starts it all, with extra (YAML) added to the configuration; the
// cache TTLs are 1 s unless extra sets cache:, and Graph is the fake
// tenant's unless extra sets graph: ({{GRAPH}} stands for its URL).
func newE2E(t *testing.T, extra string) *e2e {
	t.Helper()
	if !strings.Contains(extra, "cache:") {
		extra += "cache: {ttl: 1s, negative-ttl: 1s}\n"
	}
	if !strings.Contains(extra, "graph:") {
		extra += "graph: {url: {{GRAPH}}, auth: none}\n"
	}
	e := &e2e{tenant: graphtest.NewServer(graphtest.Options{Clock: graphtest.NewLiveClock()}), upstream: &recorder{}, stderr: &syncio.Buffer{}}
	t.Cleanup(e.tenant.Close)
	for _, u := range []struct{ oid, upn string }{{janeOID, "jane@contoso.example"}, {bobOID, "bob@contoso.example"}, {leeOID, "lee@contoso.example"}} {
		must(t, e.tenant.AddUser(u.oid, u.upn))
	}
	for _, oid := range []string{janeOID, leeOID} {
		must(t, e.tenant.MakeEligible(oid, helpdesk, "/", time.Time{}))
		_, err := e.tenant.ActivateRole(oid, helpdesk, "/", 8*time.Hour)
		must(t, err)
	}
	up := httptest.NewServer(e.upstream)
	t.Cleanup(up.Close)
	e.upAddr = strings.TrimPrefix(up.URL, "http://")
	e.pgAddr = proxytest.FreeAddr(t)
	e.config = filepath.Join(t.TempDir(), "pimguard.yaml")
	yaml := fmt.Sprintf(`tenant: %s
audiences: [%s]
authority: %s
listen: %s
%s%s`, graphtest.TenantID, graphtest.APIClientID, e.tenant.URL, e.pgAddr, strings.ReplaceAll(extra, "{{GRAPH}}", e.tenant.GraphURL()), testRules)
	must(t, os.WriteFile(e.config, []byte(yaml), 0o600))

	startRun(t, e.stderr, "http://"+e.pgAddr+"/readyz", "serve", "-config", e.config)
	return e
}

// startRun runs pimguard with args until t ends, and waits until readyURL
// answers 200 (the signing keys fetched).
func startRun(t *testing.T, stderr *syncio.Buffer, readyURL string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, args, func(string) string { return "" }, io.Discard, stderr)
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("pimguard %s exited %d:\n%s", args[0], code, stderr)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case code := <-done:
			done <- code
			t.Fatalf("pimguard %s exited %d:\n%s", args[0], code, stderr)
		default:
		}
		if resp, err := http.Get(readyURL); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("pimguard %s not ready after 20 s:\n%s", args[0], stderr)
}

func (e *e2e) token(oid string) string {
	return "Bearer " + e.tenant.MustMint(graphtest.Token{ObjectID: oid})
}

// recorder is the upstream: it records the headers of what reaches it.
type recorder struct {
	mu   sync.Mutex
	seen []http.Header
}

func (u *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	h := r.Header.Clone()
	h.Set("X-Test-Path", r.URL.RequestURI())
	u.seen = append(u.seen, h)
	u.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain")
	_, _ = io.WriteString(w, "upstream ok\n")
}

// take returns and forgets what reached the upstream.
func (u *recorder) take() []http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	s := u.seen
	u.seen = nil
	return s
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// send makes a client request to base+path and returns the response with
// its body read.
func send(t testing.TB, method, url, token string, header http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	must(t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

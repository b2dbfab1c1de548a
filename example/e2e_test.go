package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/middleware"
)

// exampleBinary builds the example once per test run. It is built with the
// race detector when the tests are, so that the Graph SDK compiled for the
// tests is reused instead of compiled a second time.
var exampleBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "pimguard-example-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "example")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

func buildExample(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the example binary")
	}
	bin, err := exampleBinary()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// TestWalkthroughOnly runs `example -walkthrough-only` as a user would: the
// demo story must behave as it says and exit 0.
func TestWalkthroughOnly(t *testing.T) {
	bin := buildExample(t)
	cmd := exec.Command(bin, "-walkthrough-only")
	cmd.Env = cleanEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("walkthrough failed: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "every step behaved as described") {
		t.Fatalf("walkthrough output:\n%s", out)
	}
	t.Logf("walkthrough:\n%s", out)
}

// cleanEnv is the test's environment without PIMGUARD_ variables, so that
// a developer's own settings cannot change the outcome.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PIMGUARD_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

func TestInvalidConfigurationStopsAtStart(t *testing.T) {
	bin := buildExample(t)
	tests := []struct {
		env  []string
		want string
	}{
		{[]string{"PIMGUARD_TENANT_ID=" + graphtest.TenantID}, "PIMGUARD_AUDIENCES"},
		{[]string{"PIMGUARD_CACHE_TTL=soon"}, "PIMGUARD_CACHE_TTL"},
		{[]string{"PIMGUARD_TENANT_ID=" + graphtest.TenantID, "PIMGUARD_AUDIENCES=api://x", "PIMGUARD_GRAPH_AUTH=none"}, "PIMGUARD_GRAPH_AUTH"},
		{[]string{"PIMGUARD_REDIS_URL=redis://127.0.0.1:6379/0"}, "PIMGUARD_SHARED_KEY: required"},
		{[]string{"PIMGUARD_SHARED_KEY=" + testSharedKey}, "PIMGUARD_SHARED_KEY is set but PIMGUARD_REDIS_URL is not"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			cmd := exec.Command(bin)
			cmd.Env = cleanEnv(tt.env...)
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), tt.want) {
				t.Fatalf("err %v, output %q; want a failure naming %s", err, out, tt.want)
			}
		})
	}
}

// TestRealModeEndToEnd runs the binary in real mode against a fake tenant on
// loopback, configured only through the documented variables, and checks
// every route's success and failure statuses.
func TestRealModeEndToEnd(t *testing.T) {
	bin := buildExample(t)
	const (
		helpdeskUser = "b0000000-0000-4000-8000-000000000001"
		userAdmin    = "b0000000-0000-4000-8000-000000000002"
		nobody       = "b0000000-0000-4000-8000-000000000003"
		auditor      = "b0000000-0000-4000-8000-000000000004"
		auditors     = "b0000000-0000-4000-8000-0000000000a0"
		flaky        = "b0000000-0000-4000-8000-000000000005"
	)
	tenant := graphtest.NewServer(graphtest.Options{Clock: graphtest.NewLiveClock()})
	defer tenant.Close()
	for _, id := range []string{helpdeskUser, userAdmin, nobody, auditor, flaky} {
		must(t, tenant.AddUser(id, id[len(id)-4:]+"@contoso.example"))
	}
	must(t, tenant.AddGroup(auditors, "Auditors", false))
	must(t, tenant.MakeEligible(helpdeskUser, middleware.RoleHelpdeskAdministrator, "/", time.Time{}))
	_, err := tenant.ActivateRole(helpdeskUser, middleware.RoleHelpdeskAdministrator, "/", time.Hour)
	must(t, err)
	must(t, tenant.AssignRole(userAdmin, middleware.RoleUserAdministrator, "/", time.Time{}, time.Time{}))
	must(t, tenant.AssignGroup(auditors, auditor, graphtest.AccessMember, time.Time{}, time.Now().Add(time.Hour)))
	must(t, tenant.AssignRole(flaky, middleware.RoleUserAdministrator, "/", time.Time{}, time.Time{}))

	base, stop := startRealMode(t, bin, tenant, "PIMGUARD_AUDITORS_GROUP="+auditors)

	tok := func(oid string) string { return tenant.MustMint(graphtest.Token{ObjectID: oid}) }
	tests := []struct {
		name, method, path, token string
		status                    int
		code, challenge           string
	}{
		{"health", "GET", "/healthz", "", 200, "", ""},
		{"me without a token", "GET", "/api/me", "", 401, "token_missing", `Bearer realm="pimguard"`},
		{"me with a malformed token", "GET", "/api/me", "not-a-jwt", 401, "token_malformed", `error="invalid_token"`},
		{"me with a v1 token", "GET", "/api/me", tenant.MustMint(graphtest.Token{ObjectID: helpdeskUser, Version: 1}), 200, "", ""},
		{"me", "GET", "/api/me", tok(helpdeskUser), 200, "", ""},
		{"reset by an active Helpdesk Administrator", "POST", "/api/users/alex/reset-password", tok(helpdeskUser), 200, "", ""},
		{"reset by a User Administrator", "POST", "/api/users/alex/reset-password", tok(userAdmin), 200, "", ""},
		{"reset by someone without a role", "POST", "/api/users/alex/reset-password", tok(nobody), 403, "role_not_active", `error="insufficient_scope"`},
		{"reset without a token", "POST", "/api/users/alex/reset-password", "", 401, "token_missing", `Bearer realm="pimguard"`},
		{"delete by a Helpdesk Administrator", "DELETE", "/api/users/sam", tok(helpdeskUser), 403, "role_not_active", `error="insufficient_scope"`},
		{"delete by a User Administrator", "DELETE", "/api/users/sam", tok(userAdmin), 200, "", ""},
		{"audit by an active auditor", "GET", "/api/audit", tok(auditor), 200, "", ""},
		{"audit by a non-member", "GET", "/api/audit", tok(nobody), 403, "group_not_active", `error="insufficient_scope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := call(t, tt.method, base+tt.path, tt.token)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tt.status, body)
			}
			var b struct {
				Code string `json:"code"`
			}
			_ = json.Unmarshal(body, &b)
			if b.Code != tt.code {
				t.Errorf("code %q, want %q", b.Code, tt.code)
			}
			if h := resp.Header.Get("WWW-Authenticate"); !strings.Contains(h, tt.challenge) || (tt.challenge == "" && h != "") {
				t.Errorf("WWW-Authenticate %q, want it to contain %q", h, tt.challenge)
			}
		})
	}

	t.Run("me reports live state", func(t *testing.T) {
		_, body := call(t, "GET", base+"/api/me", tok(helpdeskUser))
		var me struct {
			TenantID string `json:"tenantId"`
			ObjectID string `json:"objectId"`
			Roles    []struct {
				RoleDefinitionID string  `json:"roleDefinitionId"`
				DirectoryScopeID string  `json:"directoryScopeId"`
				AssignmentType   string  `json:"assignmentType"`
				EndDateTime      *string `json:"endDateTime"`
			} `json:"roles"`
			Groups []json.RawMessage `json:"groups"`
		}
		must(t, json.Unmarshal(body, &me))
		if me.TenantID != graphtest.TenantID || me.ObjectID != helpdeskUser || len(me.Roles) != 1 || me.Groups == nil {
			t.Fatalf("me = %s", body)
		}
		r := me.Roles[0]
		if r.RoleDefinitionID != middleware.RoleHelpdeskAdministrator || r.DirectoryScopeID != "/" ||
			!strings.EqualFold(r.AssignmentType, "Activated") || r.EndDateTime == nil {
			t.Errorf("role = %+v", r)
		}
		if _, err := time.Parse(time.RFC3339, *r.EndDateTime); err != nil {
			t.Errorf("endDateTime %q is not RFC 3339", *r.EndDateTime)
		}
	})

	t.Run("Graph down gives 503 pim_unavailable", func(t *testing.T) {
		remove := tenant.InjectGraphFault(graphtest.MatchPath("/"), graphtest.Fault{Status: http.StatusInternalServerError})
		defer remove()
		resp, body := call(t, "DELETE", base+"/api/users/kim", tok(flaky))
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "pim_unavailable") {
			t.Fatalf("status %d, Retry-After %q, body %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		resp, body := call(t, "GET", base+"/metrics", "")
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
			t.Fatalf("GET /metrics: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		text := string(body)
		// Each want is a metric name and labels that one sample line has
		// (the exporter adds otel_scope_* labels in between).
		for _, want := range [][]string{
			{"pimguard_decisions_total{", `code=""`, `outcome="allow"`},
			{"pimguard_decisions_total{", `code="role_not_active"`, `outcome="deny"`},
			{"pimguard_decisions_total{", `code="group_not_active"`, `outcome="deny"`},
			{"pimguard_decisions_total{", `code="pim_unavailable"`, `outcome="error"`},
			{"pimguard_cache_hits_total{"},
			{"pimguard_cache_misses_total{"},
			{"pimguard_cache_size{"},
			{"pimguard_graph_request_duration_seconds_count{"},
			{"pimguard_graph_errors_total{", `class="unavailable"`},
			{"go_goroutines "},
		} {
			found := false
			for _, line := range strings.Split(text, "\n") {
				ok := strings.HasPrefix(line, want[0])
				for _, label := range want[1:] {
					ok = ok && strings.Contains(line, label)
				}
				found = found || ok
			}
			if !found {
				t.Errorf("/metrics has no sample %q", want)
			}
		}
		if strings.Contains(text, graphtest.TenantID) || strings.Contains(text, helpdeskUser) {
			t.Error("/metrics names a tenant or principal")
		}
	})

	stop()
}

// startRealMode starts the example binary in real mode against tenant,
// configured through the documented variables (plus extra), waits until it
// listens and returns its base URL and a function that stops it with
// SIGTERM and checks that it exits cleanly.
func startRealMode(t *testing.T, bin string, tenant *graphtest.Server, extra ...string) (base string, stop func()) {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = cleanEnv(append([]string{
		"PIMGUARD_TENANT_ID=" + graphtest.TenantID,
		"PIMGUARD_AUDIENCES=" + graphtest.APIClientID + "," + graphtest.APIAppIDURI,
		"PIMGUARD_AUTHORITY=" + tenant.URL,
		"PIMGUARD_GRAPH_URL=" + tenant.GraphURL(),
		"PIMGUARD_GRAPH_AUTH=none",
		"PIMGUARD_ADDR=127.0.0.1:0",
	}, extra...)...)
	stderr, err := cmd.StderrPipe()
	must(t, err)
	must(t, cmd.Start())
	exited := make(chan error, 1)
	addrCh := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var rec struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "example: listening" {
				addrCh <- rec.Addr
			}
		}
		exited <- cmd.Wait()
	}()
	select {
	case a := <-addrCh:
		base = "http://" + a
	case err := <-exited:
		t.Fatalf("example exited before listening: %v", err)
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("example did not start listening within 60s")
	}
	return base, func() {
		t.Helper()
		must(t, cmd.Process.Signal(syscall.SIGTERM))
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("exit after SIGTERM: %v", err)
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Error("example did not stop within 30s of SIGTERM")
		}
	}
}

// startDemoReplicas runs n instances of the example app in-process, in demo
// mode, on one fake tenant: the replicas of one deployment behind a load
// balancer. They are configured through kv as run reads the environment
// and log to logs. It returns the fake tenant and the replicas' base URLs;
// everything stops when t ends.
func startDemoReplicas(t *testing.T, n int, kv map[string]string, logs io.Writer) (*demoTenant, []string) {
	t.Helper()
	cfg, err := loadConfig(env(kv))
	must(t, err)
	if !cfg.Demo() {
		t.Fatalf("%v does not configure demo mode", kv)
	}
	demo, err := startDemoTenant(cfg)
	must(t, err)
	t.Cleanup(demo.Close)
	var bases []string
	for i := range n {
		logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})).With("replica", i)
		a, err := newApp(context.Background(), demo.appConfig(cfg), logger)
		must(t, err)
		srv := httptest.NewServer(a.routes())
		t.Cleanup(func() {
			srv.Close()
			must(t, a.Close())
		})
		bases = append(bases, srv.URL)
	}
	return demo, bases
}

func call(t *testing.T, method, url, token string) (*http.Response, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	must(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	must(t, err)
	return resp, body
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

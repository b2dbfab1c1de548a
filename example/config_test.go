package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pimguard/pimguard/middleware"
	"github.com/pimguard/pimguard/redisstore"
)

func env(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }

const testTenant = "8d3f0a52-6b1e-4c2a-9f4e-1a7b2c3d4e5f"

func TestLoadConfig(t *testing.T) {
	real := func(extra map[string]string) map[string]string {
		m := map[string]string{"PIMGUARD_TENANT_ID": testTenant, "PIMGUARD_AUDIENCES": "api://helpdesk, c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f"}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string // substring naming the variable; empty = valid
	}{
		{"demo mode with defaults", map[string]string{}, ""},
		{"real mode", real(nil), ""},
		{"real mode on loopback without Graph credentials", real(map[string]string{"PIMGUARD_GRAPH_URL": "http://127.0.0.1:9999/v1.0", "PIMGUARD_GRAPH_AUTH": "none", "PIMGUARD_AUTHORITY": "http://127.0.0.1:9998"}), ""},
		{"tenant not a GUID", real(map[string]string{"PIMGUARD_TENANT_ID": "contoso.onmicrosoft.com"}), "PIMGUARD_TENANT_ID"},
		{"no audiences", real(map[string]string{"PIMGUARD_AUDIENCES": " , "}), "PIMGUARD_AUDIENCES"},
		{"Graph auth none off loopback", real(map[string]string{"PIMGUARD_GRAPH_AUTH": "none"}), "PIMGUARD_GRAPH_AUTH"},
		{"Graph auth unknown", real(map[string]string{"PIMGUARD_GRAPH_AUTH": "secret"}), "PIMGUARD_GRAPH_AUTH"},
		{"Graph URL plain http", real(map[string]string{"PIMGUARD_GRAPH_URL": "http://graph.example.com/v1.0"}), "PIMGUARD_GRAPH_URL"},
		{"authority not a URL", real(map[string]string{"PIMGUARD_AUTHORITY": "login"}), "PIMGUARD_AUTHORITY"},
		{"bad TTL", map[string]string{"PIMGUARD_CACHE_TTL": "soon"}, "PIMGUARD_CACHE_TTL"},
		{"zero TTL", map[string]string{"PIMGUARD_CACHE_TTL": "0s"}, "PIMGUARD_CACHE_TTL"},
		{"negative negative TTL", map[string]string{"PIMGUARD_NEGATIVE_TTL": "-5s"}, "PIMGUARD_NEGATIVE_TTL"},
		{"max stale zero is fine", map[string]string{"PIMGUARD_MAX_STALE": "0"}, ""},
		{"max stale bad", map[string]string{"PIMGUARD_MAX_STALE": "1 minute"}, "PIMGUARD_MAX_STALE"},
		{"claims policy unknown", map[string]string{"PIMGUARD_CLAIMS_POLICY": "token"}, "PIMGUARD_CLAIMS_POLICY"},
		{"auditors group not a GUID", real(map[string]string{"PIMGUARD_AUDITORS_GROUP": "auditors"}), "PIMGUARD_AUDITORS_GROUP"},
		{"address without port", map[string]string{"PIMGUARD_ADDR": "localhost"}, "PIMGUARD_ADDR"},
		{"account checks", map[string]string{"PIMGUARD_ACCOUNT_CHECKS": "enabled, sessions,password,risk"}, ""},
		{"account check unknown", map[string]string{"PIMGUARD_ACCOUNT_CHECKS": "enabled,mfa"}, "PIMGUARD_ACCOUNT_CHECKS"},
		{"preflight off", real(map[string]string{"PIMGUARD_PREFLIGHT": "off"}), ""},
		{"preflight unknown", map[string]string{"PIMGUARD_PREFLIGHT": "sometimes"}, "PIMGUARD_PREFLIGHT"},
		{"delete auth context", map[string]string{"PIMGUARD_DELETE_AUTH_CONTEXT": "c1"}, ""},
		{"delete auth context c99 in real mode", real(map[string]string{"PIMGUARD_DELETE_AUTH_CONTEXT": "c99"}), ""},
		{"delete auth context c0", map[string]string{"PIMGUARD_DELETE_AUTH_CONTEXT": "c0"}, "PIMGUARD_DELETE_AUTH_CONTEXT"},
		{"delete auth context c100", map[string]string{"PIMGUARD_DELETE_AUTH_CONTEXT": "c100"}, "PIMGUARD_DELETE_AUTH_CONTEXT"},
		{"delete auth context upper case", map[string]string{"PIMGUARD_DELETE_AUTH_CONTEXT": "C1"}, "PIMGUARD_DELETE_AUTH_CONTEXT"},
		{"delete auth context a policy name", map[string]string{"PIMGUARD_DELETE_AUTH_CONTEXT": "Require MFA"}, "PIMGUARD_DELETE_AUTH_CONTEXT"},
		{"delete auth context blanks", map[string]string{"PIMGUARD_DELETE_AUTH_CONTEXT": "  "}, "PIMGUARD_DELETE_AUTH_CONTEXT"},
		{"source mode snapshot", map[string]string{"PIMGUARD_SOURCE_MODE": " Snapshot "}, ""},
		{"source mode principal in real mode", real(map[string]string{"PIMGUARD_SOURCE_MODE": "principal"}), ""},
		{"source mode unknown", map[string]string{"PIMGUARD_SOURCE_MODE": "tenant"}, "PIMGUARD_SOURCE_MODE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadConfig(env(tt.env))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.wantErr)):
				t.Fatalf("err = %v, want one starting with %s", err, tt.wantErr)
			}
		})
	}
}

func TestLoadConfigDefaults(t *testing.T) {
	c, err := loadConfig(env(map[string]string{}))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Demo() || c.CacheTTL != 30*time.Second || c.NegativeTTL != 5*time.Second || c.MaxStale != 0 ||
		c.ClaimsPolicy != middleware.PolicyLive || c.Addr != "127.0.0.1:8080" || c.GraphURL != "https://graph.microsoft.com/v1.0" ||
		c.AccountChecks != 0 || c.Preflight || c.DeleteAuthContext != "" || c.SourceMode != sourcePrincipal {
		t.Errorf("defaults: %+v", c)
	}
	c, err = loadConfig(env(map[string]string{"PIMGUARD_TENANT_ID": testTenant, "PIMGUARD_AUDIENCES": "api://x"}))
	if err != nil || !c.Preflight {
		t.Errorf("real mode: preflight %v, %v; want on by default", c.Preflight, err)
	}
	c, err = loadConfig(env(map[string]string{"PIMGUARD_DELETE_AUTH_CONTEXT": " c12\n"}))
	if err != nil || c.DeleteAuthContext != "c12" {
		t.Errorf("PIMGUARD_DELETE_AUTH_CONTEXT: %q, %v; want c12", c.DeleteAuthContext, err)
	}
	c, err = loadConfig(env(map[string]string{"PIMGUARD_ACCOUNT_CHECKS": "risk,enabled"}))
	if err != nil || c.AccountChecks != middleware.CheckAccountEnabled|middleware.CheckUserRisk {
		t.Errorf("PIMGUARD_ACCOUNT_CHECKS: %v, %v", c.AccountChecks, err)
	}
}

// realModeExamples and sharedExamples hold a valid value for every variable
// of realModeVars and sharedVars; the tests fail when one is missing, so a
// variable added to either list is tested too.
var (
	realModeExamples = map[string]string{
		"PIMGUARD_AUDIENCES":      "api://helpdesk",
		"PIMGUARD_AUTHORITY":      "http://127.0.0.1:9/authority",
		"PIMGUARD_GRAPH_URL":      "http://127.0.0.1:9/v1.0",
		"PIMGUARD_GRAPH_AUTH":     "none",
		"PIMGUARD_AUDITORS_GROUP": "c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f",
	}
	sharedExamples = map[string]string{
		"PIMGUARD_CACHE_TTL":           "10s",
		"PIMGUARD_NEGATIVE_TTL":        "2s",
		"PIMGUARD_CLAIMS_POLICY":       "token-and-live",
		"PIMGUARD_MAX_STALE":           "1m",
		"PIMGUARD_ACCOUNT_CHECKS":      "enabled,sessions",
		"PIMGUARD_PREFLIGHT":           "off",
		"PIMGUARD_ADDR":                "127.0.0.1:0",
		"PIMGUARD_REDIS_URL":           "redis://127.0.0.1:6379/0",
		"PIMGUARD_SHARED_KEY":          testSharedKey,
		"PIMGUARD_DELETE_AUTH_CONTEXT": "c1",
		"PIMGUARD_SOURCE_MODE":         "snapshot",
	}
)

// exampleValue returns the valid example value of a classified variable.
func exampleValue(t *testing.T, name string) string {
	t.Helper()
	v, ok := realModeExamples[name]
	if !ok {
		v, ok = sharedExamples[name]
	}
	if !ok {
		t.Fatalf("%s has no example value in realModeExamples or sharedExamples", name)
	}
	return v
}

// TestConfigVariablesAreClassified records every name loadConfig asks
// getenv for, in demo mode and in real mode with every variable set, and
// fails when one is neither PIMGUARD_TENANT_ID nor in realModeVars or
// sharedVars: a new real-mode variable must not be forgotten by checkMode.
func TestConfigVariablesAreClassified(t *testing.T) {
	classified := map[string]string{"PIMGUARD_TENANT_ID": "selector"}
	for _, list := range []struct {
		kind  string
		names []string
	}{{"real-mode", realModeVars}, {"shared", sharedVars}} {
		for _, n := range list.names {
			if k, dup := classified[n]; dup {
				t.Errorf("%s is both %s and %s", n, k, list.kind)
			}
			classified[n] = list.kind
			exampleValue(t, n)
		}
	}
	full := map[string]string{"PIMGUARD_TENANT_ID": testTenant}
	for n := range classified {
		if n != "PIMGUARD_TENANT_ID" {
			full[n] = exampleValue(t, n)
		}
	}
	read := map[string]bool{}
	for _, kv := range []map[string]string{{}, sharedExamples, full} {
		c, err := loadConfig(func(k string) string { read[k] = true; return kv[k] })
		if err != nil {
			t.Fatalf("loadConfig(%v): %v", kv, err)
		}
		if c.Demo() != (kv["PIMGUARD_TENANT_ID"] == "") {
			t.Errorf("loadConfig(%v): Demo() = %v", kv, c.Demo())
		}
	}
	for n := range read {
		if _, ok := classified[n]; !ok {
			t.Errorf("loadConfig reads %s, which is in neither realModeVars nor sharedVars", n)
		}
	}
	for n := range classified {
		if !read[n] {
			t.Errorf("%s is classified, but loadConfig never reads it", n)
		}
	}
}

// TestLoadConfigModeSelection: demo mode starts only when no real-mode
// variable is set; variables both modes use, and the Azure SDK's own
// variables, do not select real mode.
func TestLoadConfigModeSelection(t *testing.T) {
	realWithoutTenant := maps.Clone(realModeExamples)
	tests := []struct {
		name      string
		env       map[string]string
		wantNamed []string // nil: valid demo configuration
	}{
		{"a whole real-mode configuration without the tenant", realWithoutTenant, append([]string{"PIMGUARD_TENANT_ID"}, realModeVars...)},
		{"audiences and a shared variable", map[string]string{"PIMGUARD_AUDIENCES": "api://x", "PIMGUARD_CACHE_TTL": "10s"}, []string{"PIMGUARD_TENANT_ID", "PIMGUARD_AUDIENCES"}},
		{"a blank real-mode variable is set", map[string]string{"PIMGUARD_GRAPH_AUTH": " "}, []string{"PIMGUARD_TENANT_ID", "PIMGUARD_GRAPH_AUTH"}},
		{"a misspelt tenant variable", map[string]string{"PIMGUARD_TENANTID": testTenant, "PIMGUARD_AUDIENCES": "api://x"}, []string{"PIMGUARD_TENANT_ID", "PIMGUARD_AUDIENCES"}},
		{"a blank tenant", map[string]string{"PIMGUARD_TENANT_ID": "  "}, []string{"PIMGUARD_TENANT_ID"}},
		{"a blank tenant with audiences", map[string]string{"PIMGUARD_TENANT_ID": "\t", "PIMGUARD_AUDIENCES": "api://x"}, []string{"PIMGUARD_TENANT_ID"}},
		{"every shared variable", sharedExamples, nil},
		{"Azure SDK credentials set machine-wide", map[string]string{
			"AZURE_CLIENT_ID": "c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f", "AZURE_TENANT_ID": testTenant,
			"AZURE_CLIENT_SECRET": "s3cret", "AZURE_FEDERATED_TOKEN_FILE": "/var/run/secrets/token",
		}, nil},
	}
	for _, n := range realModeVars {
		tests = append(tests, struct {
			name      string
			env       map[string]string
			wantNamed []string
		}{n + " alone", map[string]string{n: exampleValue(t, n)}, []string{"PIMGUARD_TENANT_ID", n}})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadConfig(env(tt.env))
			if tt.wantNamed == nil {
				if err != nil || !c.Demo() {
					t.Fatalf("Demo() = %v, err %v; want demo mode", c.Demo(), err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error (demo mode %v); want one naming %v", c.Demo(), tt.wantNamed)
			}
			for _, n := range tt.wantNamed {
				if !strings.Contains(err.Error(), n) {
					t.Errorf("err %q does not name %s", err, n)
				}
			}
		})
	}
}

// TestCheckListenAddr: the demo listens on loopback only; real mode
// wherever it is told.
func TestCheckListenAddr(t *testing.T) {
	tests := []struct {
		tenant, addr string
		wantErr      string // substring; empty = accepted
	}{
		{"", "0.0.0.0:8080", "not a loopback address"},
		{"", ":8080", "not a loopback address"},
		{"", "192.168.1.1:8080", "not a loopback address"},
		{"", "[::]:8080", "not a loopback address"},
		{"", "example.com:8080", "not a loopback address"},
		{"", "127.0.0.1", "not host:port"},
		{"", "127.0.0.1:0", ""},
		{"", "127.0.0.2:8080", ""},
		{"", "[::1]:0", ""},
		{"", "localhost:0", ""},
		{"", "LocalHost:8080", ""},
		{testTenant, "0.0.0.0:8080", ""},
		{testTenant, ":8080", ""},
		{testTenant, "192.168.1.1:8080", ""},
		{testTenant, "192.168.1.1", "not host:port"},
	}
	for _, tt := range tests {
		mode := "demo"
		if tt.tenant != "" {
			mode = "real"
		}
		t.Run(mode+" "+tt.addr, func(t *testing.T) {
			err := config{TenantID: tt.tenant, Addr: tt.addr}.checkListenAddr("-addr")
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), "-addr: ") || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("err = %v, want one naming -addr and saying %q", err, tt.wantErr)
			}
		})
	}
}

// TestRunRefusesHalfConfiguredRealMode: through run, as main calls it, any
// real-mode variable without PIMGUARD_TENANT_ID stops the program at start
// with exit code 2 and a message naming both. The context is cancelled
// from the start, so a program that went on anyway could not serve.
func TestRunRefusesHalfConfiguredRealMode(t *testing.T) {
	for _, n := range realModeVars {
		t.Run(n, func(t *testing.T) {
			code, stderr := runCancelled(t, nil, map[string]string{n: exampleValue(t, n)})
			if code != 2 || !strings.Contains(stderr, n+" is set but PIMGUARD_TENANT_ID is not") {
				t.Fatalf("exit %d, stderr %q; want 2 and a message naming %s and PIMGUARD_TENANT_ID", code, stderr, n)
			}
		})
	}
}

// TestRunDemoListenAddress: through run, the demo refuses a non-loopback
// address from PIMGUARD_ADDR or -addr (exit 2, before anything starts), and
// listens on the loopback addresses it accepts; real mode accepts any.
func TestRunDemoListenAddress(t *testing.T) {
	refused := []struct {
		name, envAddr string
		args          []string
		source        string
	}{
		{"all IPv4 interfaces", "0.0.0.0:8080", nil, "PIMGUARD_ADDR"},
		{"empty host", ":8080", nil, "PIMGUARD_ADDR"},
		{"a LAN address", "192.168.1.1:8080", nil, "PIMGUARD_ADDR"},
		{"all IPv6 interfaces", "[::]:8080", nil, "PIMGUARD_ADDR"},
		{"-addr all interfaces", "", []string{"-addr", "0.0.0.0:8080"}, "-addr"},
		{"-addr empty host over a loopback PIMGUARD_ADDR", "127.0.0.1:0", []string{"-addr", ":8080"}, "-addr"},
		{"-addr without a port", "", []string{"-addr", "127.0.0.1"}, "-addr"},
	}
	for _, tt := range refused {
		t.Run("refused/"+tt.name, func(t *testing.T) {
			code, stderr := runCancelled(t, tt.args, map[string]string{"PIMGUARD_ADDR": tt.envAddr})
			if code != 2 || !strings.Contains(stderr, "example: configuration: "+tt.source+": ") {
				t.Fatalf("exit %d, stderr %q; want 2 and a configuration error naming %s", code, stderr, tt.source)
			}
		})
	}

	accepted := []struct {
		name, envAddr string
		args          []string
		wantHost      string // empty: any loopback IP
	}{
		{"IPv4 loopback", "127.0.0.1:0", nil, "127.0.0.1"},
		{"IPv6 loopback", "[::1]:0", nil, "::1"},
		{"localhost", "localhost:0", nil, ""},
		{"-addr loopback over a non-loopback PIMGUARD_ADDR", "0.0.0.0:8080", []string{"-addr", "127.0.0.1:0"}, "127.0.0.1"},
	}
	for _, tt := range accepted {
		t.Run("accepted/"+tt.name, func(t *testing.T) {
			if tt.wantHost == "::1" {
				if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
					t.Skipf("no IPv6 loopback here: %v", err)
				} else {
					ln.Close()
				}
			}
			host, code, stderr := runDemoUntilListening(t, tt.args, map[string]string{"PIMGUARD_ADDR": tt.envAddr})
			ip := net.ParseIP(host)
			if code != 0 || ip == nil || !ip.IsLoopback() || (tt.wantHost != "" && host != tt.wantHost) {
				t.Fatalf("exit %d, listened on host %q; want 0 and loopback %q; stderr %s", code, host, tt.wantHost, stderr)
			}
		})
	}

	// Real mode goes past the check to its startup, which the cancelled
	// context stops before anything listens (real mode fetches its
	// signing keys in the background, so the start itself succeeds).
	for _, addr := range []string{"0.0.0.0:8080", ":8080", "192.168.1.1:8080"} {
		t.Run("real mode accepts "+addr, func(t *testing.T) {
			kv := maps.Clone(realModeExamples)
			kv["PIMGUARD_TENANT_ID"], kv["PIMGUARD_PREFLIGHT"], kv["PIMGUARD_ADDR"] = testTenant, "off", addr
			code, stderr := runCancelled(t, nil, kv)
			if code == 2 || strings.Contains(stderr, "example: configuration:") || !strings.Contains(stderr, "example: startup:") {
				t.Fatalf("exit %d, stderr %q; want the configuration accepted", code, stderr)
			}
			if strings.Contains(stderr, "example: listening") {
				t.Errorf("listened on %s after the start was cancelled: %s", addr, stderr)
			}
		})
	}
}

// runCancelled calls run with a context cancelled from the start: a
// configuration run accepts can get no further than its startup, and
// nothing listens.
func runCancelled(t *testing.T, args []string, kv map[string]string) (code int, stderr string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var errBuf bytes.Buffer
	code = run(ctx, args, env(kv), io.Discard, &errBuf)
	return code, errBuf.String()
}

// runDemoUntilListening calls run in demo mode and cancels it as soon as the
// server logs that it listens; it returns the host it listened on, run's
// exit code and its stderr.
func runDemoUntilListening(t *testing.T, args []string, kv map[string]string) (host string, code int, stderr string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &listenWatch{cancel: cancel}
	code = run(ctx, args, env(kv), io.Discard, w)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.addr != "" {
		var err error
		if host, _, err = net.SplitHostPort(w.addr); err != nil {
			t.Fatalf("listening address %q: %v", w.addr, err)
		}
	}
	return host, code, w.buf.String()
}

// listenWatch is run's stderr in tests: it keeps the address of the
// "example: listening" record and cancels the run when it sees it.
type listenWatch struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	addr   string
	cancel context.CancelFunc
}

func (w *listenWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for _, line := range bytes.Split(p, []byte("\n")) {
		var rec struct {
			Msg  string `json:"msg"`
			Addr string `json:"addr"`
		}
		if json.Unmarshal(line, &rec) == nil && rec.Msg == "example: listening" {
			w.addr = rec.Addr
			w.cancel()
		}
	}
	return len(p), nil
}

// Fleet-mode keys of the tests. Each is a distinctive string, so that a test
// can tell when one leaks into an error or a log line.
const (
	// testSharedKey is 32 bytes in standard base64: the shortest key
	// accepted.
	testSharedKey = "cGltZ3VhcmQtdGVzdC1rZXktMzItYnl0ZXMtbG9uZyE="
	// testSharedKeyURLSafe is 33 bytes (0xfb 0xef 0xbe ×11) in the
	// URL-safe alphabet.
	testSharedKeyURLSafe = "--------------------------------------------"
	// testShortKey is 31 bytes in standard base64.
	testShortKey = "cGltZ3VhcmQtdGVzdC1rZXktMzEtYnl0ZXMtbG9uZw=="
	// testNotBase64 is not base64 in any alphabet.
	testNotBase64 = "hunter2-is-not-base64!"
	// testRedisPassword is the ACL password of URLs in tests.
	testRedisPassword = "redis-acl-s3cret"
)

// TestLoadConfigFleet: PIMGUARD_REDIS_URL and PIMGUARD_SHARED_KEY turn fleet
// mode on together, in demo and real mode; either without the other, a key
// that is not base64 or shorter than 32 bytes, or a URL redisstore cannot
// use stops the program, naming the variable, and no error shows the key
// or the URL's password.
func TestLoadConfigFleet(t *testing.T) {
	fleet := func(url, key string, extra ...string) map[string]string {
		m := map[string]string{}
		if url != "" {
			m["PIMGUARD_REDIS_URL"] = url
		}
		if key != "" {
			m["PIMGUARD_SHARED_KEY"] = key
		}
		for i := 0; i+1 < len(extra); i += 2 {
			m[extra[i]] = extra[i+1]
		}
		return m
	}
	const url = "redis://127.0.0.1:6379/0"
	tests := []struct {
		name      string
		env       map[string]string
		wantErr   string   // prefix of the error; empty = valid
		wantNamed []string // also named by the error
		wantURL   string   // config.RedisURL when valid
		wantKey   int      // len(config.SharedKey) when valid
	}{
		{"no fleet mode", fleet("", ""), "", nil, "", 0},
		{"good", fleet(url, testSharedKey), "", nil, url, 32},
		{"good, blanks and a newline around the key", fleet(url, " "+testSharedKey+"\n"), "", nil, url, 32},
		{"good, key without padding", fleet(url, strings.TrimRight(testSharedKey, "=")), "", nil, url, 32},
		{"good, URL-safe key", fleet(url, testSharedKeyURLSafe), "", nil, url, 33},
		{"good, TLS with an ACL user", fleet("rediss://pimguard:"+testRedisPassword+"@redis.internal:6380/2", testSharedKey), "", nil,
			"rediss://pimguard:" + testRedisPassword + "@redis.internal:6380/2", 32},
		{"good, real mode", fleet(url, testSharedKey, "PIMGUARD_TENANT_ID", testTenant, "PIMGUARD_AUDIENCES", "api://x"), "", nil, url, 32},
		{"missing key", fleet(url, ""), "PIMGUARD_SHARED_KEY", []string{"PIMGUARD_REDIS_URL"}, "", 0},
		{"missing key, real mode", fleet(url, "", "PIMGUARD_TENANT_ID", testTenant, "PIMGUARD_AUDIENCES", "api://x"), "PIMGUARD_SHARED_KEY", nil, "", 0},
		{"blank key", fleet(url, "  "), "PIMGUARD_SHARED_KEY", nil, "", 0},
		{"short key", fleet(url, testShortKey), "PIMGUARD_SHARED_KEY", []string{"31 bytes"}, "", 0},
		{"bad base64", fleet(url, testNotBase64), "PIMGUARD_SHARED_KEY", []string{"not base64"}, "", 0},
		{"key without URL", fleet("", testSharedKey), "PIMGUARD_SHARED_KEY", []string{"PIMGUARD_REDIS_URL"}, "", 0},
		{"blank key without URL", fleet("", " "), "PIMGUARD_SHARED_KEY", []string{"PIMGUARD_REDIS_URL"}, "", 0},
		{"key with a blank URL", fleet("  ", testSharedKey), "PIMGUARD_REDIS_URL", nil, "", 0},
		{"URL without scheme", fleet("127.0.0.1:6379", testSharedKey), "PIMGUARD_REDIS_URL", nil, "", 0},
		{"URL of another scheme", fleet("http://127.0.0.1:6379", testSharedKey), "PIMGUARD_REDIS_URL", []string{"redis://"}, "", 0},
		{"URL without host", fleet("redis:///0", testSharedKey), "PIMGUARD_REDIS_URL", nil, "", 0},
		{"URL with a bad database", fleet("redis://u:"+testRedisPassword+"@127.0.0.1:6379/zero", testSharedKey), "PIMGUARD_REDIS_URL", []string{"database"}, "", 0},
		{"URL that does not parse, with a password", fleet("redis://u:"+testRedisPassword+"@127.0.0.1:port/0", testSharedKey), "PIMGUARD_REDIS_URL", nil, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadConfig(env(tt.env))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if c.RedisURL != tt.wantURL || len(c.SharedKey) != tt.wantKey {
					t.Errorf("RedisURL %q, key of %d bytes; want %q and %d", c.RedisURL, len(c.SharedKey), tt.wantURL, tt.wantKey)
				}
				// Printed whole, the config shows the key's length only.
				for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x"} {
					if out := fmt.Sprintf(verb, c); len(c.SharedKey) > 0 &&
						(strings.Contains(out, string(c.SharedKey)) || strings.Contains(out, fmt.Sprintf("%x", []byte(c.SharedKey))) ||
							strings.Contains(out, strings.TrimSpace(tt.env["PIMGUARD_SHARED_KEY"]))) {
						t.Errorf("fmt %s of the config shows the key: %s", verb, out)
					}
				}
				return
			}
			if err == nil {
				t.Fatalf("no error; want one starting with %s", tt.wantErr)
			}
			if !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Errorf("err = %v, want one starting with %s", err, tt.wantErr)
			}
			for _, n := range tt.wantNamed {
				if !strings.Contains(err.Error(), n) {
					t.Errorf("err %q does not say %q", err, n)
				}
			}
			for _, secret := range []string{strings.TrimSpace(tt.env["PIMGUARD_SHARED_KEY"]), testRedisPassword} {
				if secret != "" && strings.Contains(err.Error(), secret) {
					t.Errorf("err %q shows a secret", err)
				}
			}
		})
	}
}

// TestSharedKeyNeverPrinted: the decoded key prints and logs as its length.
func TestSharedKeyNeverPrinted(t *testing.T) {
	k := redisstore.Key("0123456789abcdef0123456789abcdef")
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "key", k, "config", config{SharedKey: k})
	for _, out := range []string{fmt.Sprint(k), fmt.Sprintf("%q", k), fmt.Sprintf("%x", k), fmt.Sprintf("%#v", config{SharedKey: k}), logged.String()} {
		if strings.Contains(out, "0123456789") || strings.Contains(out, "3031323334") || strings.Contains(out, "MDEyMzQ1Njc4") {
			t.Errorf("the key shows in %q", out)
		}
		if !strings.Contains(out, "32-byte key") {
			t.Errorf("%q does not give the key's length", out)
		}
	}
}

// TestRunRefusesFleetMisconfiguration: through run, as main calls it, a
// fleet-mode mistake stops the program at start with exit code 2 and a
// message naming the variable, in demo and real mode, never showing the
// key. The context is cancelled from the start, so a program that went
// on anyway could not serve.
func TestRunRefusesFleetMisconfiguration(t *testing.T) {
	realMode := map[string]string{"PIMGUARD_TENANT_ID": testTenant, "PIMGUARD_AUDIENCES": "api://x", "PIMGUARD_PREFLIGHT": "off"}
	tests := []struct {
		name, url, key string
		want           string
	}{
		{"URL without key", "redis://127.0.0.1:6379/0", "", "example: configuration: PIMGUARD_SHARED_KEY: required with PIMGUARD_REDIS_URL"},
		{"short key", "redis://127.0.0.1:6379/0", testShortKey, "example: configuration: PIMGUARD_SHARED_KEY: the key decodes to 31 bytes"},
		{"bad base64", "redis://127.0.0.1:6379/0", testNotBase64, "example: configuration: PIMGUARD_SHARED_KEY: the key (22 characters) is not base64"},
		{"key without URL", "", testSharedKey, "example: configuration: PIMGUARD_SHARED_KEY is set but PIMGUARD_REDIS_URL is not"},
		{"URL of another scheme", "https://u:" + testRedisPassword + "@127.0.0.1/", testSharedKey, "example: configuration: PIMGUARD_REDIS_URL: "},
	}
	for _, tt := range tests {
		for _, mode := range []string{"demo", "real"} {
			t.Run(mode+"/"+tt.name, func(t *testing.T) {
				kv := map[string]string{"PIMGUARD_REDIS_URL": tt.url, "PIMGUARD_SHARED_KEY": tt.key}
				if mode == "real" {
					maps.Copy(kv, realMode)
				}
				code, stderr := runCancelled(t, nil, kv)
				if code != 2 || !strings.Contains(stderr, tt.want) {
					t.Fatalf("exit %d, stderr %q; want 2 and %q", code, stderr, tt.want)
				}
				for _, secret := range []string{tt.key, testRedisPassword} {
					if secret != "" && strings.Contains(stderr, secret) {
						t.Errorf("stderr %q shows a secret", stderr)
					}
				}
			})
		}
	}
}

// PIMGUARD_SOURCE_MODE=snapshot splits PIMGUARD_CACHE_TTL between the
// sweep and the Guard's cache, so that a deactivation is honoured for no
// longer than in the default mode, and reads the auditors group's PIM for
// Groups instances; the default mode makes no snapshot.
func TestSourceModeConfig(t *testing.T) {
	for _, tc := range []struct {
		mode                string
		wantSnapshot        bool
		wantTTL, wantNegTTL time.Duration
	}{
		{"", false, 40 * time.Second, 5 * time.Second},
		{"principal", false, 40 * time.Second, 5 * time.Second},
		{"snapshot", true, 20 * time.Second, 5 * time.Second},
	} {
		t.Run("mode="+tc.mode, func(t *testing.T) {
			c, err := loadConfig(env(map[string]string{"PIMGUARD_SOURCE_MODE": tc.mode, "PIMGUARD_CACHE_TTL": "40s"}))
			if err != nil {
				t.Fatal(err)
			}
			g := guardConfig(c)
			sn := snapshotConfig(c, "", auditorsID)
			if g.CacheTTL != tc.wantTTL || g.NegativeTTL != tc.wantNegTTL || (sn != nil) != tc.wantSnapshot {
				t.Fatalf("CacheTTL %v, NegativeTTL %v, snapshot %+v", g.CacheTTL, g.NegativeTTL, sn)
			}
			if sn != nil && (sn.SweepInterval+g.CacheTTL != c.CacheTTL || !slices.Equal(sn.Groups, []string{auditorsID})) {
				t.Errorf("snapshot %+v with CacheTTL %v; want the sweep and the cache to share %v, and the auditors group", sn, g.CacheTTL, c.CacheTTL)
			}
		})
	}
}

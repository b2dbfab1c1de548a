package msgraph_test

import (
	"bytes"
	"errors"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/graphcheck/msgraph"
)

func TestNewRefuses(t *testing.T) {
	cred := &fakeCredential{}
	tests := []struct {
		name string
		cfg  msgraph.Config
	}{
		{"no credential on the real Graph", msgraph.Config{InsecureNoCredential: true}},
		{"no credential on another public host", msgraph.Config{BaseURL: "https://graph.microsoft.us/v1.0", InsecureNoCredential: true}},
		{"no credential on a look-alike of loopback", msgraph.Config{BaseURL: "http://127.0.0.1.nip.io/v1.0", InsecureNoCredential: true}},
		{"no credential and a credential", msgraph.Config{BaseURL: "http://127.0.0.1:1/v1.0", InsecureNoCredential: true, Credential: cred}},
		{"plain http off loopback", msgraph.Config{BaseURL: "http://graph.microsoft.com/v1.0", Credential: cred}},
		{"relative base URL", msgraph.Config{BaseURL: "/v1.0", Credential: cred}},
		{"no version path", msgraph.Config{BaseURL: "https://graph.microsoft.com", Credential: cred}},
		{"query in base URL", msgraph.Config{BaseURL: "https://graph.microsoft.com/v1.0?x=1", Credential: cred}},
		{"user info in base URL", msgraph.Config{BaseURL: "https://u:p@graph.microsoft.com/v1.0", Credential: cred}},
		{"unknown host without Scope", msgraph.Config{BaseURL: "https://graph.contoso.test/v1.0", Credential: cred}},
		{"negative Timeout", msgraph.Config{Credential: cred, Timeout: -time.Second}},
		{"negative GroupRolesTTL", msgraph.Config{Credential: cred, GroupRolesTTL: -time.Second}},
		{"negative RetryDelay", msgraph.Config{Credential: cred, RetryDelay: -time.Second}},
		{"negative MaxPages", msgraph.Config{Credential: cred, MaxPages: -1}},
		{"MaxRetries below NoRetries", msgraph.Config{Credential: cred, MaxRetries: -2}},
		{"negative RiskTTL", msgraph.Config{Credential: cred, RiskTTL: -time.Second}},
		{"negative RiskRequestsPerSecond", msgraph.Config{Credential: cred, RiskRequestsPerSecond: -1}},
		{"NaN RiskRequestsPerSecond", msgraph.Config{Credential: cred, RiskRequestsPerSecond: math.NaN()}},
		{"infinite RiskRequestsPerSecond", msgraph.Config{Credential: cred, RiskRequestsPerSecond: math.Inf(1)}},
		{"negative RiskBurst", msgraph.Config{Credential: cred, RiskBurst: -1}},
		{"negative RiskCacheSize", msgraph.Config{Credential: cred, RiskCacheSize: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if s, err := msgraph.New(tt.cfg); !errors.Is(err, msgraph.ErrInvalidConfig) {
				t.Errorf("New = %v, %v; want ErrInvalidConfig", s, err)
			}
		})
	}
}

func TestNewAccepts(t *testing.T) {
	for _, cfg := range []msgraph.Config{
		{}, // DefaultAzureCredential, created without a network call
		{BaseURL: "https://graph.microsoft.us/v1.0", Credential: &fakeCredential{}},
		{BaseURL: "https://graph.contoso.test/v1.0", Credential: &fakeCredential{}, Scope: "https://graph.microsoft.com/.default"},
		{BaseURL: "http://localhost:8080/v1.0", InsecureNoCredential: true},
		{BaseURL: "http://[::1]:8080/beta/", InsecureNoCredential: true},
		{BaseURL: "http://127.0.0.1:8080/v1.0", InsecureNoCredential: true, MaxRetries: msgraph.NoRetries},
	} {
		if _, err := msgraph.New(cfg); err != nil {
			t.Errorf("New(%+v): %v", cfg, err)
		}
	}
}

// Retries are logged, and no log line carries the token.
func TestRetryLogging(t *testing.T) {
	var buf bytes.Buffer
	e := newEnv(t, graphtest.Options{RequireGraphAuth: true}, func(_ *stack, c *msgraph.Config) {
		c.Logger = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	e.srv.InjectGraphFault(inside("/roleManagement/"), once(graphtest.ThrottledFault("2.128")))
	e.mustLookup(user(alice))
	out := buf.String()
	if !strings.Contains(out, "retrying") || !strings.Contains(out, "delay=2.128s") {
		t.Errorf("log = %q", out)
	}
	if strings.Contains(out, fakeToken) {
		t.Error("the token was logged")
	}
}

package main

import (
	"strings"
	"testing"
	"time"

	"github.com/pimguard/pimguard/middleware"
)

func env(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }

func TestLoadConfig(t *testing.T) {
	const tenant = "8d3f0a52-6b1e-4c2a-9f4e-1a7b2c3d4e5f"
	real := func(extra map[string]string) map[string]string {
		m := map[string]string{"PIMGUARD_TENANT_ID": tenant, "PIMGUARD_AUDIENCES": "api://helpdesk, c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f"}
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
		{"auditors group not a GUID", map[string]string{"PIMGUARD_AUDITORS_GROUP": "auditors"}, "PIMGUARD_AUDITORS_GROUP"},
		{"address without port", map[string]string{"PIMGUARD_ADDR": "localhost"}, "PIMGUARD_ADDR"},
		{"account checks", map[string]string{"PIMGUARD_ACCOUNT_CHECKS": "enabled, sessions,password,risk"}, ""},
		{"account check unknown", map[string]string{"PIMGUARD_ACCOUNT_CHECKS": "enabled,mfa"}, "PIMGUARD_ACCOUNT_CHECKS"},
		{"preflight off", real(map[string]string{"PIMGUARD_PREFLIGHT": "off"}), ""},
		{"preflight unknown", map[string]string{"PIMGUARD_PREFLIGHT": "sometimes"}, "PIMGUARD_PREFLIGHT"},
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
		c.ClaimsPolicy != "live" || c.Addr != "127.0.0.1:8080" || c.GraphURL != "https://graph.microsoft.com/v1.0" ||
		c.AccountChecks != 0 || c.Preflight {
		t.Errorf("defaults: %+v", c)
	}
	c, err = loadConfig(env(map[string]string{"PIMGUARD_TENANT_ID": "8d3f0a52-6b1e-4c2a-9f4e-1a7b2c3d4e5f", "PIMGUARD_AUDIENCES": "api://x"}))
	if err != nil || !c.Preflight {
		t.Errorf("real mode: preflight %v, %v; want on by default", c.Preflight, err)
	}
	c, err = loadConfig(env(map[string]string{"PIMGUARD_ACCOUNT_CHECKS": "risk,enabled"}))
	if err != nil || c.AccountChecks != middleware.CheckAccountEnabled|middleware.CheckUserRisk {
		t.Errorf("PIMGUARD_ACCOUNT_CHECKS: %v, %v", c.AccountChecks, err)
	}
}

package config_test

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pimguard/pimguard/cmd/pimguard/internal/config"
	"github.com/pimguard/pimguard/forwardauth"
	"github.com/pimguard/pimguard/middleware"
)

func noEnv(string) string { return "" }

func TestLoadDocumentedExample(t *testing.T) {
	f, err := config.Load("../../testdata/pimguard.yaml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if f.Tenant != "8d3f0a52-6b1e-4c2a-9f4e-1a7b2c3d4e5f" || len(f.Audiences) != 2 || f.CacheTTL != 30*time.Second ||
		f.NegativeTTL != 5*time.Second || f.Listen != "127.0.0.1:8081" || f.GraphAuth != "azure" ||
		f.AccountChecks != middleware.CheckAccountEnabled|middleware.CheckSessionsRevoked || f.RedisURL != "" {
		t.Fatalf("%+v", f)
	}
	var got []string
	for _, r := range f.Rules {
		got = append(got, fmt.Sprintf("%s %v %v %s", r.Name, r.Patterns, r.Access, reqString(r)))
	}
	want := []string{
		"reset-password [POST /api/users/{id}/reset-password] requirement any(role:729827e3-9c14-49f7-bb1b-9608f156bbb8, role:fe930be7-5e62-47db-91af-98c3a49a38b1, role:729827e3-9c14-49f7-bb1b-9608f156bbb8@/administrativeUnits/3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f)",
		"audit [GET /api/audit] requirement group-member:6f7a8b9c-0d1e-4f2a-9b3c-4d5e6f7a8b9c",
		"me [GET /api/me] authenticated -",
		"health [GET /healthz GET /static/] public -",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("rules:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func reqString(r forwardauth.Rule) string {
	if r.Access != forwardauth.AccessRequirement {
		return "-"
	}
	return r.Require.String()
}

// base is a valid configuration that each case changes.
const base = `tenant: 8d3f0a52-6b1e-4c2a-9f4e-1a7b2c3d4e5f
audiences: [api://helpdesk]
rules:
  - match: "GET /api/me"
    require: authenticated
`

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		env  map[string]string
		want []string // each error, "line:col: text" (a prefix of the text)
	}{
		{"unknown top key", base + "tennant: x\n", nil, []string{"6:1: unknown key \"tennant\" in the configuration"}},
		{"missing required", "audiences: [a]\nrules: [{match: /x, require: public}]\n", nil, []string{"1:1: the configuration: required key \"tenant\" is missing"}},
		{"malformed tenant", strings.Replace(base, "8d3f0a52-6b1e-4c2a-9f4e-1a7b2c3d4e5f", "contoso.onmicrosoft.com", 1), nil, []string{"1:9: tenant \"contoso.onmicrosoft.com\" is not a GUID"}},
		{"unknown role name", base + "  - match: \"POST /x\"\n    require: {role: Helpdesk Admin}\n", nil, []string{"7:21: unknown role \"Helpdesk Admin\": not a built-in Entra role's name (give a custom role's definition ID); did you mean \"Helpdesk Administrator\"?"}},
		{"malformed group GUID", base + "  - match: \"GET /audit\"\n    require: {group-member: 1234}\n", nil, []string{"7:29: group-member \"1234\" is not a group object ID"}},
		{"malformed AU", base + "  - match: \"GET /x\"\n    require: {role: {name: Global Reader, administrative-unit: nope}}\n", nil, []string{"7:64: administrative-unit \"nope\" is not"}},
		{"unknown requirement", base + "  - match: \"GET /x\"\n    require: {rol: Global Reader}\n", nil, []string{"7:15: unknown requirement \"rol\""}},
		{"two keys in a requirement", base + "  - match: \"GET /x\"\n    require: {role: Global Reader, scope: x}\n", nil, []string{"7:14: a requirement is a mapping with one key"}},
		{"public nested", base + "  - match: \"GET /x\"\n    require: {any-of: [public]}\n", nil, []string{"7:24: a requirement is a mapping with one key"}},
		{"unreachable rule", base + "  - match: \"GET /api/me\"\n    require: public\n", nil, []string{"6:12: rule 2, pattern \"GET /api/me\": unreachable: \"GET /api/me\" of rule \"GET /api/me\", tried first"}},
		{"unreachable in a list", base + "  - match: [\"GET /a\", \"GET /api/me\"]\n    require: public\n", nil, []string{"6:23: rule 2, pattern \"GET /api/me\": unreachable"}},
		{"bad pattern", base + "  - match: \"GET /a/{x\"\n    require: public\n", nil, []string{"6:12: rule 2, pattern \"GET /a/{x\": parsing \"GET /a/{x\": at offset 7: bad wildcard segment"}},
		{"bad graph source", base + "graph: {source: cache}\n", nil, []string{"6:17: graph.source \"cache\" is neither principal"}},
		{"sweep interval without snapshot", base + "graph: {sweep-interval: 15s}\n", nil, []string{"graph.sweep-interval is set but graph.source is not snapshot"}},
		{"bad duration", base + "cache: {ttl: 30}\n", nil, []string{"6:14: cache.ttl \"30\" is not a positive duration"}},
		{"bad account check", base + "account-checks: [enabled, mfa]\n", nil, []string{"6:17: account-checks: unknown account check \"mfa\""}},
		{"graph auth none off loopback", base + "graph: {url: https://graph.microsoft.com/v1.0, auth: none}\n", nil, []string{"graph.auth none sends Graph requests without a token"}},
		{"http authority", base + "authority: http://login.example\n", nil, []string{"6:12: authority: \"http://login.example\" must be an https URL"}},
		{"secret in the file", base + "fleet: {redis-url: redis://127.0.0.1:6379, shared-key: abc}\n", nil, []string{"6:56: fleet.shared-key: a secret does not belong in the configuration file"}},
		{"fleet without key", base + "fleet: {redis-url: redis://127.0.0.1:6379}\n", nil, []string{"fleet mode needs a shared key"}},
		{"short key", base, map[string]string{"PIMGUARD_REDIS_URL": "redis://127.0.0.1:6379", "PIMGUARD_SHARED_KEY": "c2hvcnQ="}, []string{"PIMGUARD_SHARED_KEY: the key decodes to 5 bytes"}},
		{"key without Redis", base, map[string]string{"PIMGUARD_SHARED_KEY": base64.StdEncoding.EncodeToString(make([]byte, 32))}, []string{"a shared key is set but no Redis URL"}},
		{"not YAML", "tenant: [\n", nil, []string{"1: not YAML"}},
		{"empty rules", "tenant: 8d3f0a52-6b1e-4c2a-9f4e-1a7b2c3d4e5f\naudiences: [a]\nrules: []\n", nil, []string{"3:8: rules is empty"}},
		{"several problems, in file order", "tenant: x\naudiences: []\nlisten: nowhere\nrules:\n  - match: /x\n    require: {scope: \"\"}\n", nil, []string{
			"1:9: tenant \"x\" is not a GUID", "2:12: audiences is empty", "3:9: listen \"nowhere\" is not host:port", "6:22: scope is empty"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			getenv := func(k string) string { return tc.env[k] }
			_, err := config.Parse("p.yaml", []byte(tc.yaml), getenv)
			if err == nil {
				t.Fatal("accepted")
			}
			var errs []error
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				errs = j.Unwrap()
			} else {
				errs = []error{err}
			}
			if len(errs) != len(tc.want) {
				t.Fatalf("%d errors, want %d:\n%v", len(errs), len(tc.want), err)
			}
			for i, e := range errs {
				var ce *config.Error
				if !errors.As(e, &ce) && !strings.HasPrefix(tc.want[i], "PIMGUARD_") {
					t.Errorf("error %d %q is not a *config.Error", i, e)
				}
				msg := strings.TrimPrefix(e.Error(), "p.yaml:")
				if !strings.HasPrefix(msg, tc.want[i]) && !strings.HasPrefix(strings.TrimPrefix(msg, " "), tc.want[i]) {
					t.Errorf("error %d:\n got %s\nwant %s…", i, e, tc.want[i])
				}
			}
		})
	}
}

func TestSecretsFromEnvironmentAndFile(t *testing.T) {
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	withFleet := base + "fleet: {redis-url: redis://127.0.0.1:6379/0, shared-key-file: " + keyFile + "}\n"
	f, err := config.Parse("p.yaml", []byte(withFleet), noEnv)
	if err != nil || f.RedisURL != "redis://127.0.0.1:6379/0" || string(f.SharedKey) != "0123456789abcdef0123456789abcdef" {
		t.Fatalf("%v %+v", err, f)
	}
	other := base64.StdEncoding.EncodeToString([]byte("ffffffffffffffffffffffffffffffff"))
	env := map[string]string{"PIMGUARD_SHARED_KEY": other, "PIMGUARD_REDIS_URL": "redis://:pw@127.0.0.1:6380/1"}
	f, err = config.Parse("p.yaml", []byte(withFleet), func(k string) string { return env[k] })
	if err != nil || f.RedisURL != env["PIMGUARD_REDIS_URL"] || string(f.SharedKey) != "ffffffffffffffffffffffffffffffff" {
		t.Fatalf("the environment does not override the file: %v %+v", err, f)
	}
	if s := fmt.Sprintf("%+v", f); strings.Contains(s, "ffff") {
		t.Fatalf("a printed configuration shows the key: %s", s)
	}
}

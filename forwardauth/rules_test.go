package forwardauth_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/pimguard/pimguard/forwardauth"
	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/middleware"
)

func TestNewRefusesBadRules(t *testing.T) {
	auth, err := middleware.NewAuthenticator(context.Background(), middleware.AuthenticatorConfig{
		Tenants: []string{"8d3f0a52-6b1e-4c2a-9f4e-1a7b2c3d4e5f"}, Audiences: []string{"api://x"},
		Authority: "https://login.microsoftonline.com", DiscoverInBackground: true,
	})
	must(t, err)
	t.Cleanup(func() { _ = auth.Close() })
	guard := middleware.MustNewGuard(middleware.GuardConfig{Source: graphcheck.SourceFunc(
		func(context.Context, graphcheck.Principal) (*graphcheck.State, error) {
			return nil, graphcheck.ErrOutage
		})})
	role := middleware.Role(helpdesk)
	pub := func(patterns ...string) forwardauth.Rule {
		return forwardauth.Rule{Patterns: patterns, Access: forwardauth.AccessPublic}
	}
	tests := []struct {
		name  string
		rules []forwardauth.Rule
		err   string // "" for valid
	}{
		{"none", nil, "no rules"},
		{"no pattern", []forwardauth.Rule{{Name: "x", Require: role}}, "no pattern"},
		{"bad pattern", []forwardauth.Rule{pub("GET /a/{x")}, "pattern"},
		{"bad requirement", []forwardauth.Rule{{Patterns: []string{"/a"}, Require: middleware.Role("not-a-guid")}}, "not a GUID"},
		{"zero requirement", []forwardauth.Rule{{Patterns: []string{"/a"}}}, "invalid requirement"},
		{"name with newline", []forwardauth.Rule{{Name: "a\nb", Patterns: []string{"/a"}, Access: forwardauth.AccessPublic}}, "printable"},
		{"same pattern twice", []forwardauth.Rule{pub("GET /a"), {Patterns: []string{"GET /a"}, Require: role}}, "unreachable"},
		{"prefix shadows below it", []forwardauth.Rule{pub("GET /api/"), pub("GET /api/users")}, "unreachable"},
		{"wildcard shadows literal", []forwardauth.Rule{pub("/api/{x}"), pub("GET /api/users")}, "unreachable"},
		{"GET shadows HEAD", []forwardauth.Rule{pub("GET /a"), pub("HEAD /a")}, "unreachable"},
		{"rest wildcard shadows prefix", []forwardauth.Rule{pub("/a/{rest...}"), pub("POST /a/")}, "unreachable"},
		{"within one rule", []forwardauth.Rule{pub("/a/", "/a/b")}, "unreachable"},
		{"method-less shadows host-specific", []forwardauth.Rule{pub("/a"), pub("GET example.com/a")}, "unreachable"},
		{"method not upper case", []forwardauth.Rule{pub("get /a")}, "must be upper case"},
		{"host not lower case", []forwardauth.Rule{pub("Admin.example.com/")}, "must be lower case"},
		{"host with a port", []forwardauth.Rule{pub("GET admin.example.com:8443/")}, "must not name a port"},
		{"host with a trailing dot", []forwardauth.Rule{pub("admin.example.com./")}, "must not end with a dot"},
		{"catch-all last", []forwardauth.Rule{pub("GET /a"), {Patterns: []string{"/"}, Require: role}}, ""},
		{"specific first", []forwardauth.Rule{pub("GET /api/users"), pub("GET /api/")}, ""},
		{"one segment does not cover many", []forwardauth.Rule{pub("/a/{x}"), pub("/a/{rest...}")}, ""},
		{"exact end does not cover prefix", []forwardauth.Rule{pub("/a/{$}"), pub("/a/")}, ""},
		{"HEAD does not shadow GET", []forwardauth.Rule{pub("HEAD /a"), pub("GET /a")}, ""},
		{"other method", []forwardauth.Rule{pub("GET /a"), pub("POST /a")}, ""},
		{"host-specific first", []forwardauth.Rule{pub("example.com/a"), pub("/a")}, ""},
		{"overlapping, neither covers", []forwardauth.Rule{pub("/a/{x}/c"), pub("/a/b/{y}")}, ""},
		{"literal then wildcard", []forwardauth.Rule{pub("/a/b"), pub("/a/{x}")}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := forwardauth.New(forwardauth.Config{Rules: tc.rules, Authenticator: auth, Guard: guard})
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("error %v, want one containing %q", err, tc.err)
			}
			// The faulty rule is the last of each list.
			var re *forwardauth.RuleError
			if tc.err != "" && len(tc.rules) > 0 && (!errors.As(err, &re) || re.Index != len(tc.rules)-1) {
				t.Fatalf("error %#v is not a RuleError for rule %d", err, len(tc.rules)-1)
			}
		})
	}
}

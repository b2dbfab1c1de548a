package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pimguard/pimguard/cmd/pimguard/internal/config"
	"github.com/pimguard/pimguard/forwardauth"
	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/graphcheck/msgraph"
	"github.com/pimguard/pimguard/middleware"
)

// check prints user's live state as Graph reports it now and what each
// rule would decide for them. It asks Graph directly (no cache, no Redis)
// and needs no token: the parts of a rule that a token decides (scopes,
// app roles, authentication contexts) are assumed present, and said so.
func check(ctx context.Context, f *config.File, user string, stdout, stderr io.Writer) int {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	src, err := msgraph.New(graphConfig(f, quiet))
	if err != nil {
		fmt.Fprintln(stderr, "pimguard check:", err)
		return 1
	}
	u, err := src.ResolveUser(ctx, f.Tenant, user)
	if err != nil {
		fmt.Fprintf(stderr, "pimguard check: user %s: %v\n", user, err)
		return 1
	}
	now := time.Now()
	rep, err := decideRules(ctx, f, src, u, now)
	if err != nil {
		fmt.Fprintln(stderr, "pimguard check:", err)
		return 1
	}
	printReport(stdout, rep)
	return 0
}

// report is what check prints.
type report struct {
	user     *graphcheck.DirectoryUser
	state    *graphcheck.State
	now      time.Time
	assumed  []string // token claims the rules name, assumed present
	outcomes []outcome
}

type outcome struct {
	rule     forwardauth.Rule
	decision string
}

// decideRules decides every rule of f for user u at now, with a Guard over
// src configured as serve configures it (account checks, claims policy),
// through the same Guard.Check a request goes through. The principal is
// built from the directory, not from a token.
func decideRules(ctx context.Context, f *config.File, src graphcheck.Source, u *graphcheck.DirectoryUser, now time.Time) (*report, error) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	// Load's refusal, written by the Guard's ErrorWriter (check runs one
	// request at a time).
	var loadRej *middleware.Rejection
	guard, err := middleware.NewGuard(middleware.GuardConfig{Source: src, AccountChecks: f.AccountChecks,
		ClaimsPolicy: middleware.PolicyLive, Logger: quiet, Now: func() time.Time { return now },
		ErrorWriter: func(_ http.ResponseWriter, _ *http.Request, rej *middleware.Rejection) { loadRej = rej }})
	if err != nil {
		return nil, err
	}
	// Require registers each requirement with the Guard, as serve's Server
	// does: the Guard then asks about the groups of its member-of leaves.
	for _, r := range f.Rules {
		if r.Access == forwardauth.AccessRequirement {
			guard.Require(r.Require) // validated with the file
		}
	}
	rep := &report{user: u, now: now}
	p := &middleware.Principal{TenantID: u.TenantID, ObjectID: u.ID, Version: "2.0", Username: u.UserPrincipalName}
	for _, r := range f.Rules {
		for _, c := range tokenClaims(r) {
			kind, value, _ := strings.Cut(c, ":")
			switch kind {
			case "scope":
				p.Scopes = append(p.Scopes, value)
			case "app-role":
				p.AppRoles = append(p.AppRoles, value)
			case "auth-context":
				p.AuthContexts = append(p.AuthContexts, value)
			}
			rep.assumed = append(rep.assumed, c)
		}
	}
	req := httptest.NewRequestWithContext(middleware.ContextWithPrincipal(ctx, p), http.MethodGet, "/", nil)
	var loaded *graphcheck.State
	guard.Load(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		loaded, _ = middleware.LiveStateFromContext(r.Context())
	})).ServeHTTP(httptest.NewRecorder(), req)
	if loaded == nil {
		if loadRej != nil && loadRej.Err != nil && loadRej.Status == http.StatusServiceUnavailable {
			return nil, fmt.Errorf("the user's live state could not be read from Graph: %w", loadRej.Err)
		}
		if loadRej != nil {
			// An account check refused: every rule but public ones is denied.
			rep.state = &graphcheck.State{TenantID: u.TenantID, ObjectID: u.ID}
		} else {
			return nil, errors.New("the Guard returned no live state")
		}
	} else {
		rep.state = loaded
	}
	for _, r := range f.Rules {
		var d string
		switch r.Access {
		case forwardauth.AccessPublic:
			d = "allow (public: no token needed)"
		case forwardauth.AccessAuthenticated:
			d = "allow (any valid token)"
			if loadRej != nil {
				d = describe(loadRej)
			}
		default:
			d = "allow"
			if rej := guard.Check(req, r.Require); rej != nil {
				d = describe(rej)
			}
		}
		rep.outcomes = append(rep.outcomes, outcome{rule: r, decision: d})
	}
	return rep, nil
}

func describe(rej *middleware.Rejection) string {
	s := fmt.Sprintf("deny %d %s", rej.Status, rej.Code)
	if len(rej.Required) > 0 {
		s += " (needs " + strings.Join(rej.Required, " or ") + ")"
	}
	if !rej.EndedAt.IsZero() {
		s += ", ended " + rej.EndedAt.UTC().Format(time.RFC3339)
	}
	return s
}

// tokenClaims lists the leaves of r that a token decides, as
// "scope:…", "app-role:…" and "auth-context:…", read from r's String
// (the form middleware documents for Rejection.Required).
func tokenClaims(r forwardauth.Rule) []string {
	if r.Access != forwardauth.AccessRequirement {
		return nil
	}
	var out []string
	for _, leaf := range strings.FieldsFunc(r.Require.String(), func(c rune) bool { return c == '(' || c == ')' || c == ',' || c == ' ' }) {
		for _, kind := range []string{"scope:", "app-role:", "auth-context:"} {
			if strings.HasPrefix(leaf, kind) {
				out = append(out, leaf)
			}
		}
	}
	return out
}

func printReport(w io.Writer, rep *report) {
	u, st := rep.user, rep.state
	fmt.Fprintf(w, "user      %s <%s> %s\n", u.DisplayName, u.UserPrincipalName, u.ID)
	fmt.Fprintf(w, "as of     %s (Graph, now)\n", rep.now.UTC().Format(time.RFC3339))
	if st.Account != nil {
		fmt.Fprintf(w, "account   %s\n", accountLine(st.Account))
	}
	roles := st.ActiveRoles(rep.now)
	fmt.Fprintf(w, "roles     %d active\n", len(roles))
	for _, ra := range roles {
		name, ok := middleware.BuiltInRoleName(ra.RoleDefinitionID)
		if !ok {
			name = "custom role"
		}
		line := fmt.Sprintf("  %s (%s)", name, ra.RoleDefinitionID)
		if ra.DirectoryScopeID != graphcheck.TenantScope {
			line += " in " + ra.DirectoryScopeID
		}
		line += ", " + strings.ToLower(ra.AssignmentType)
		if ra.ViaGroupID != "" {
			line += " through group " + ra.ViaGroupID
		}
		line += ", " + until(ra.End)
		fmt.Fprintln(w, line)
	}
	groups := st.ActiveGroups(rep.now)
	fmt.Fprintf(w, "groups    %d active PIM for Groups assignments\n", len(groups))
	for _, g := range groups {
		fmt.Fprintf(w, "  %s %s, %s, %s\n", g.GroupID, g.AccessID, strings.ToLower(g.AssignmentType), until(g.End))
	}
	if len(st.CheckedGroups) > 0 {
		fmt.Fprintf(w, "member of %s (of the groups the rules ask about: %s)\n", orNone(st.MemberOf), strings.Join(st.CheckedGroups, ", "))
	}
	if len(rep.assumed) > 0 {
		fmt.Fprintf(w, "assumed   the token carries %s (a token decides those; check has none)\n", strings.Join(rep.assumed, ", "))
	}
	fmt.Fprintln(w, "rules (first match wins):")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for i, o := range rep.outcomes {
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\n", i+1, o.rule.Name, strings.Join(o.rule.Patterns, ", "), o.decision)
	}
	_ = tw.Flush()
}

func accountLine(a *graphcheck.Account) string {
	s := "enabled"
	if !a.Enabled {
		s = "DISABLED"
	}
	if !a.SessionsValidFrom.IsZero() {
		s += ", sessions valid from " + a.SessionsValidFrom.UTC().Format(time.RFC3339)
	}
	return s
}

func until(end time.Time) string {
	if end.IsZero() {
		return "permanent"
	}
	return "until " + end.UTC().Format(time.RFC3339)
}

func orNone(ids []string) string {
	if len(ids) == 0 {
		return "none"
	}
	return strings.Join(ids, ", ")
}

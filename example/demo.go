package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/graphcheck/msgraph"
	"github.com/pimguard/pimguard/middleware"
)

// The demo tenant's people, group and administrative unit. The IDs are
// made up.
const (
	janeID     = "a1b2c3d4-0001-4a00-8000-0000000000a1"
	bobID      = "a1b2c3d4-0002-4a00-8000-0000000000b2"
	annID      = "a1b2c3d4-0003-4a00-8000-0000000000c3"
	leeID      = "a1b2c3d4-0004-4a00-8000-0000000000e5"
	auditorsID = "a1b2c3d4-00a0-4a00-8000-0000000000d4"
	berlinID   = "a1b2c3d4-00b0-4a00-8000-0000000000f6" // the Berlin administrative unit
)

// berlinScope is the directory scope of the Berlin administrative unit.
var berlinScope = middleware.AdministrativeUnitScope(berlinID)

// demoUsers are the users of the demo's in-memory directory, the targets
// of the helpdesk actions: Alex and Kim are in the Berlin administrative
// unit, Sam in none.
var demoUsers = map[string]directoryUser{
	"alex": {name: "Alex Wilber", units: []string{berlinID}},
	"sam":  {name: "Sam Taylor"},
	"kim":  {name: "Kim Akers", units: []string{berlinID}},
}

// demoPerson is someone who can sign in to the demo tenant.
type demoPerson struct {
	key, id, upn, name, story string
}

var demoPeople = []demoPerson{
	{"jane", janeID, "jane@contoso.example", "Jane", "eligible Helpdesk Administrator (PIM): must activate first"},
	{"bob", bobID, "bob@contoso.example", "Bob", "permanent User Administrator and Privileged Role Administrator"},
	{"ann", annID, "ann@contoso.example", "Ann", "eligible member of the Auditors group (PIM for Groups)"},
	{"lee", leeID, "lee@contoso.example", "Lee", "eligible Helpdesk Administrator of the Berlin administrative unit (Alex and Kim, not Sam)"},
}

// demoTenant is the in-process fake Entra tenant of demo mode, on a live
// clock that the walkthrough can jump ahead.
type demoTenant struct {
	tenant *graphtest.Server
	clock  *graphtest.Clock
	cfg    config
	// fleetPrefix namespaces the Redis keys of the apps on this fake
	// tenant in fleet mode (see appConfig).
	fleetPrefix string
}

func startDemoTenant(cfg config) (*demoTenant, error) {
	clock := graphtest.NewLiveClock()
	d := &demoTenant{tenant: graphtest.NewServer(graphtest.Options{Clock: clock}), clock: clock, cfg: cfg,
		fleetPrefix: "pimguard-demo-" + rand.Text()}
	seed := []error{
		d.tenant.AddUser(janeID, "jane@contoso.example"),
		d.tenant.AddUser(bobID, "bob@contoso.example"),
		d.tenant.AddUser(annID, "ann@contoso.example"),
		d.tenant.AddUser(leeID, "lee@contoso.example"),
		d.tenant.AddGroup(auditorsID, "Auditors", false),
		// The unit's members are the in-memory directory's users
		// (demoUsers), which the fake tenant does not hold.
		d.tenant.AddAdministrativeUnit(berlinID, "Berlin"),
		d.tenant.MakeEligible(janeID, middleware.RoleHelpdeskAdministrator, "/", time.Time{}),
		d.tenant.AssignRole(bobID, middleware.RoleUserAdministrator, "/", time.Time{}, time.Time{}),
		d.tenant.AssignRole(bobID, middleware.RolePrivilegedRoleAdministrator, "/", time.Time{}, time.Time{}),
		d.tenant.MakeGroupEligible(auditorsID, annID, graphtest.AccessMember, time.Time{}),
		d.tenant.MakeEligible(leeID, middleware.RoleHelpdeskAdministrator, berlinScope, time.Time{}),
	}
	if err := errors.Join(seed...); err != nil {
		d.tenant.Close()
		return nil, err
	}
	return d, nil
}

// Close stops the fake tenant.
func (d *demoTenant) Close() { d.tenant.Close() }

// appConfig points the app at the fake tenant: its authority, its Graph
// emulator (no credential: loopback only) and its clock.
//
// In fleet mode (PIMGUARD_REDIS_URL) the apps on this fake tenant share
// Redis keys of their own: every demo process makes up the same tenant ID
// and people, in a fake tenant of its own whose clock its walkthrough
// jumps ahead, so a state one demo looked up is not another's to serve.
func (d *demoTenant) appConfig(cfg config) appConfig {
	fleet := fleetConfig(cfg)
	if fleet.URL != "" {
		fleet.Prefix = d.fleetPrefix
	}
	ac := appConfig{
		auth: middleware.AuthenticatorConfig{
			Tenants:   []string{graphtest.TenantID},
			Audiences: []string{graphtest.APIClientID, graphtest.APIAppIDURI},
			Authority: d.tenant.URL,
		},
		graph:             msgraph.Config{BaseURL: d.tenant.GraphURL(), InsecureNoCredential: true},
		guard:             guardConfig(cfg),
		fleet:             fleet,
		auditorsGroup:     auditorsID,
		preflight:         cfg.Preflight,
		users:             demoUsers,
		deleteAuthContext: cfg.DeleteAuthContext,
		now:               d.clock.Now,
		extraRoutes:       d.controls,
		snapshot:          snapshotConfig(cfg, auditorsID),
	}
	return ac
}

// controls mounts the fake tenant's PIM controls, for trying things by hand:
//
//	POST /demo/{person}/activate         jane: Helpdesk Administrator for 1 h; lee: the same in the Berlin unit;
//	                                     ann: Auditors membership for 1 h
//	POST /demo/{person}/deactivate
//	POST /demo/{person}/token            a fresh access token
//	POST /demo/{person}/step-up          a fresh access token whose acrs lists PIMGUARD_DELETE_AUTH_CONTEXT
//	POST /demo/{person}/disable          accountEnabled false (enable: true again)
//	POST /demo/{person}/revoke-sessions  signInSessionsValidFromDateTime = now
//	POST /demo/{person}/change-password  lastPasswordChangeDateTime = now
//	POST /demo/{person}/risk             Identity Protection: high, atRisk (dismiss-risk: dismissed)
//
// The account controls matter when PIMGUARD_ACCOUNT_CHECKS turns the checks on.
func (d *demoTenant) controls(r chi.Router) {
	r.Post("/demo/{person}/{action}", func(w http.ResponseWriter, r *http.Request) {
		person, action := chi.URLParam(r, "person"), chi.URLParam(r, "action")
		var (
			end time.Time
			err error
		)
		switch person + " " + action {
		case "jane activate":
			end, err = d.tenant.ActivateRole(janeID, middleware.RoleHelpdeskAdministrator, "/", time.Hour)
		case "jane deactivate":
			err = d.tenant.DeactivateRole(janeID, middleware.RoleHelpdeskAdministrator, "/")
		case "lee activate":
			end, err = d.tenant.ActivateRole(leeID, middleware.RoleHelpdeskAdministrator, berlinScope, time.Hour)
		case "lee deactivate":
			err = d.tenant.DeactivateRole(leeID, middleware.RoleHelpdeskAdministrator, berlinScope)
		case "ann activate":
			end, err = d.tenant.ActivateGroup(auditorsID, annID, graphtest.AccessMember, time.Hour)
		case "ann deactivate":
			err = d.tenant.DeactivateGroup(auditorsID, annID, graphtest.AccessMember)
		case "jane token", "bob token", "ann token", "lee token":
			writeJSON(w, http.StatusOK, map[string]string{"access_token": d.token(person)})
			return
		case "jane step-up", "bob step-up", "ann step-up", "lee step-up":
			if d.cfg.DeleteAuthContext == "" {
				writeJSON(w, http.StatusConflict, map[string]string{"error": "no step-up to do: start with PIMGUARD_DELETE_AUTH_CONTEXT=c1"})
				return
			}
			writeJSON(w, http.StatusOK, map[string]string{"access_token": d.token(person, d.cfg.DeleteAuthContext)})
			return
		default:
			id, ok := d.personID(person)
			switch {
			case !ok:
				err = errUnknownControl
			case action == "disable" || action == "enable":
				err = d.tenant.SetAccountEnabled(id, action == "enable")
			case action == "revoke-sessions":
				err = d.tenant.RevokeSignInSessions(id)
			case action == "change-password":
				err = d.tenant.ChangePassword(id)
			case action == "risk":
				err = d.tenant.SetUserRisk(id, "high", "atRisk")
			case action == "dismiss-risk":
				err = d.tenant.SetUserRisk(id, "none", "dismissed")
			default:
				err = errUnknownControl
			}
			if errors.Is(err, errUnknownControl) {
				writeJSON(w, http.StatusNotFound, map[string]string{"error": "unknown demo control: try jane, lee or ann with activate or deactivate; " +
					"{person}/token, step-up, disable, enable, revoke-sessions, change-password, risk or dismiss-risk"})
				return
			}
		}
		if err != nil {
			writeJSON(w, http.StatusConflict, map[string]string{"error": err.Error()})
			return
		}
		out := map[string]any{"person": person, "action": action}
		if !end.IsZero() {
			out["endDateTime"] = end.UTC().Format(time.RFC3339)
		}
		writeJSON(w, http.StatusOK, out)
	})
}

var errUnknownControl = errors.New("unknown demo control")

// personID returns the object ID of a demo person.
func (d *demoTenant) personID(key string) (string, bool) {
	for _, p := range demoPeople {
		if p.key == key {
			return p.id, true
		}
	}
	return "", false
}

// token mints an access token for a demo person, with the wids and groups
// claims Entra would freeze into it at this instant and, when given, the
// authentication contexts the sign-in satisfied (acrs).
func (d *demoTenant) token(key string, acrs ...string) string {
	for _, p := range demoPeople {
		if p.key != key {
			continue
		}
		tok := graphtest.Token{ObjectID: p.id, Username: p.upn, Name: p.name}
		switch key {
		case "bob":
			tok.Wids = []string{middleware.RoleUserAdministrator}
		}
		if len(acrs) > 0 {
			tok.Claims = map[string]any{"acrs": acrs}
		}
		return d.tenant.MustMint(tok)
	}
	panic("unknown demo person " + key)
}

// step is one line of the walkthrough: a request and the status it must get.
type step struct {
	person, method, path string
	want                 int
	wantCode             string
	why                  string
}

// walkthrough plays the story on the running API and reports whether every
// step got the status it should.
func (d *demoTenant) walkthrough(ctx context.Context, out io.Writer, base string, a *app) bool {
	start := d.clock.Now()
	client := &http.Client{Timeout: 30 * time.Second}
	tokens := map[string]string{}
	failures := 0
	ttl, neg := d.cfg.CacheTTL, d.cfg.NegativeTTL

	say := func(format string, args ...any) {
		el := d.clock.Now().Sub(start).Round(time.Second)
		fmt.Fprintf(out, "T+%02d:%02d  %s\n", int(el.Minutes()), int(el.Seconds())%60, fmt.Sprintf(format, args...))
	}
	check := func(s step) {
		req, err := http.NewRequestWithContext(ctx, s.method, base+s.path, nil)
		if err != nil {
			panic(err)
		}
		req.Header.Set("Authorization", "Bearer "+tokens[s.person])
		status, code := 0, ""
		resp, err := client.Do(req)
		if err == nil {
			var body struct {
				Code string `json:"code"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			status, code = resp.StatusCode, body.Code
		}
		mark := "ok"
		if status != s.want || (s.wantCode != "" && code != s.wantCode) {
			mark = fmt.Sprintf("UNEXPECTED (wanted %d %s)", s.want, s.wantCode)
			failures++
		}
		got := fmt.Sprint(status)
		if code != "" {
			got += " " + code
		}
		say("  %-5s %-6s %-36s -> %-22s %s  %s", s.person, s.method, s.path, got, mark, s.why)
	}
	must := func(err error) {
		if err != nil {
			say("  demo tenant refused: %v", err)
			failures++
		}
	}
	advance := func(dd time.Duration, why string) {
		d.clock.Advance(dd)
		say("(%s later: %s)", dd, why)
	}

	fmt.Fprintf(out, "pimguard demo walkthrough (cache TTL %s, negative TTL %s, claims policy %s)\n\n", ttl, neg, d.cfg.ClaimsPolicy)
	for _, p := range demoPeople {
		tokens[p.key] = d.token(p.key)
	}
	say("Jane, Bob and Ann sign in. Jane's token has no wids: she is only eligible.")
	check(step{"jane", "POST", "/api/users/alex/reset-password", 403, "role_not_active", "eligible is not active"})

	end, err := d.tenant.ActivateRole(janeID, middleware.RoleHelpdeskAdministrator, "/", time.Hour)
	must(err)
	say("Jane activates Helpdesk Administrator in PIM until %s. She keeps the token she has.", end.UTC().Format("15:04:05"))
	advance(neg, "the cached \"no roles\" answer expires after the negative TTL")
	check(step{"jane", "POST", "/api/users/alex/reset-password", 200, "", "same token, issued before the activation"})

	must(d.tenant.DeactivateRole(janeID, middleware.RoleHelpdeskAdministrator, "/"))
	say("Jane deactivates the role. A token-trusting API would not notice; her token is valid for another hour.")
	check(step{"jane", "POST", "/api/users/alex/reset-password", 200, "", "the cached state is at most one TTL old"})
	advance(ttl, "one cache TTL")
	check(step{"jane", "POST", "/api/users/alex/reset-password", 403, "role_not_active", "same still-valid token, denied"})

	end, err = d.tenant.ActivateRole(janeID, middleware.RoleHelpdeskAdministrator, "/", 10*time.Minute)
	must(err)
	tokens["jane"] = d.tenant.MustMint(graphtest.Token{ObjectID: janeID, Username: "jane@contoso.example", Wids: []string{middleware.RoleHelpdeskAdministrator}})
	say("Jane activates for 10 minutes (until %s) and gets a new token whose wids name the role.", end.UTC().Format("15:04:05"))
	advance(neg, "the negative TTL again")
	check(step{"jane", "POST", "/api/users/kim/reset-password", 200, "", "active"})
	d.clock.Set(end.Add(-2 * time.Second))
	say("(two seconds before the activation ends)")
	check(step{"jane", "POST", "/api/users/kim/reset-password", 200, "", "still active"})
	d.clock.Set(end)
	say("(the activation's endDateTime)")
	check(step{"jane", "POST", "/api/users/kim/reset-password", 403, "role_not_active", "denied at that instant; her token still claims the role for an hour"})

	check(step{"jane", "DELETE", "/api/users/sam", 403, "role_not_active", "Helpdesk Administrator cannot delete users"})
	bobWhy := "permanent User Administrator"
	if ac := d.cfg.DeleteAuthContext; ac != "" {
		check(step{"bob", "DELETE", "/api/users/sam", 401, middleware.CodeInsufficientClaims, "permanent User Administrator, no step-up: a claims challenge for " + ac})
		tokens["bob"] = d.token("bob", ac)
		say("Bob signs in again, satisfying the authentication context %s (acrs).", ac)
		bobWhy += ", stepped up"
	}
	check(step{"bob", "DELETE", "/api/users/sam", 200, "", bobWhy})

	check(step{"ann", "GET", "/api/audit", 403, "group_not_active", "eligible Auditors member"})
	_, err = d.tenant.ActivateGroup(auditorsID, annID, graphtest.AccessMember, time.Hour)
	must(err)
	say("Ann activates her Auditors membership (PIM for Groups).")
	advance(neg, "the negative TTL")
	check(step{"ann", "GET", "/api/audit", 200, "", "active member, same token"})
	must(d.tenant.DeactivateGroup(auditorsID, annID, graphtest.AccessMember))
	say("Ann deactivates her membership.")
	advance(ttl, "one cache TTL")
	check(step{"ann", "GET", "/api/audit", 403, "group_not_active", "same token, denied"})

	fmt.Fprintln(out)
	if failures > 0 {
		fmt.Fprintf(out, "walkthrough: %d step(s) did not behave as described\n", failures)
		return false
	}
	fmt.Fprintln(out, "walkthrough: every step behaved as described")
	return true
}

// printTryIt prints ready-to-paste commands for trying the API by hand.
func (d *demoTenant) printTryIt(out io.Writer, base string) {
	var b strings.Builder
	fmt.Fprintf(&b, "\nThe API is at %s (demo tenant: %s). Tokens are valid for 75 minutes.\n\n", base, d.tenant.URL)
	for _, p := range demoPeople {
		fmt.Fprintf(&b, "# %s: %s\nexport %s_TOKEN=%s\n", p.name, p.story, strings.ToUpper(p.key), d.token(p.key))
	}
	fmt.Fprintf(&b, `
curl -s %[1]s/api/me -H "Authorization: Bearer $JANE_TOKEN"
curl -s -X POST %[1]s/api/users/alex/reset-password -H "Authorization: Bearer $JANE_TOKEN"
curl -s -X DELETE %[1]s/api/users/kim -H "Authorization: Bearer $BOB_TOKEN"
curl -s %[1]s/api/audit -H "Authorization: Bearer $ANN_TOKEN"

# The fake tenant's PIM controls:
curl -s -X POST %[1]s/demo/jane/activate      # Helpdesk Administrator for 1 hour
curl -s -X POST %[1]s/demo/jane/deactivate
curl -s -X POST %[1]s/demo/lee/activate       # Helpdesk Administrator of the Berlin unit for 1 hour
curl -s -X POST %[1]s/api/users/kim/reset-password -H "Authorization: Bearer $LEE_TOKEN"   # 200 once active: Kim is in Berlin
curl -s -X POST %[1]s/api/users/sam/reset-password -H "Authorization: Bearer $LEE_TOKEN"   # 403: Sam is not
curl -s -X POST %[1]s/demo/ann/activate       # Auditors membership for 1 hour
curl -s -X POST %[1]s/demo/ann/deactivate
curl -s -X POST %[1]s/demo/jane/token         # a new token (also bob, ann, lee)
curl -s %[1]s/readyz                          # readiness: signing keys, Graph breaker

# Account checks (start with PIMGUARD_ACCOUNT_CHECKS=enabled,sessions,password,risk):
curl -s -X POST %[1]s/demo/jane/revoke-sessions   # also disable, enable, change-password, risk, dismiss-risk
curl -s -X POST %[1]s/admin/purge/%[2]s -H "Authorization: Bearer $BOB_TOKEN"   # see it now, not within the TTL
curl -s %[1]s/api/me -H "Authorization: Bearer $JANE_TOKEN"                     # 401 session_revoked

# Step-up (start with PIMGUARD_DELETE_AUTH_CONTEXT=c1): DELETE needs acrs c1 besides the role
curl -si -X DELETE %[1]s/api/users/sam -H "Authorization: Bearer $BOB_TOKEN"     # 401 insufficient_claims, claims challenge
curl -s -X POST %[1]s/demo/bob/step-up        # a token whose acrs lists the context

Serving until Ctrl-C.
`, base, janeID)
	fmt.Fprint(out, b.String())
}

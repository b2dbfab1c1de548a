package graphtest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/middleware"
)

// The direct Source's tests. Their names start with ds so that they stay
// apart from the other test files of the package.

// Object IDs of the direct Source's test directory.
const (
	dsAlice   = "a11ce000-0000-4000-8000-0000000000d1" // reader; permanent member of admins
	dsBob     = "b0b00000-0000-4000-8000-0000000000d2" // User Administrator from +1h to +3h
	dsCarol   = "ca201000-0000-4000-8000-0000000000d3" // activates Global Administrator at +1h, eligibility ends at +3h
	dsDave    = "da7e0000-0000-4000-8000-0000000000d4" // User Administrator in an administrative unit until +3h
	dsErin    = "e2140000-0000-4000-8000-0000000000d5" // PIM member of admins from +1h to +3h
	dsFrank   = "f2a00000-0000-4000-8000-0000000000d6" // activates membership of secops at +1h; owner of staff until +3h
	dsGrace   = "92ace000-0000-4000-8000-0000000000d7" // member of staff, nested in everyone; PIM member of everyone
	dsHeidi   = "4e1d1000-0000-4000-8000-0000000000d8" // permanent and PIM member (until +2h) of admins
	dsIvan    = "1a400000-0000-4000-8000-0000000000d9" // eligible only
	dsJudy    = "10d90000-0000-4000-8000-0000000000da" // disabled, sessions revoked at +1h, at high risk
	dsKen     = "1ce00000-0000-4000-8000-0000000000db" // risk hidden (no licence)
	dsLeo     = "1e000000-0000-4000-8000-0000000000dc" // deleted
	dsMallory = "3a110000-0000-4000-8000-0000000000dd" // activated at 0 for 8h, deactivated at +2h
	dsNobody  = "00000000-0000-4000-8000-0000000000de" // never existed
	dsDaemon  = "dae30000-0000-4000-8000-0000000000e1" // service principal: reader until +3h, member of admins
	dsRobot   = "20b00000-0000-4000-8000-0000000000e2" // disabled service principal

	dsAdmins   = "ad315000-0000-4000-8000-0000000000f1" // role-assignable: GA; Security Administrator until +2h
	dsSecops   = "5ec00000-0000-4000-8000-0000000000f2" // role-assignable: Groups Administrator in au from +1h
	dsStaff    = "57aff000-0000-4000-8000-0000000000f3" // plain, member of everyone
	dsEveryone = "e7e20000-0000-4000-8000-0000000000f4" // plain
	dsAU       = "a0000000-0000-4000-8000-0000000000f5" // an administrative unit: alice, dave and the group staff
	dsAU2      = "a0000000-0000-4000-8000-0000000000f6" // an administrative unit: dave
	dsNoGroup  = "90000000-0000-4000-8000-0000000000f7" // no group at all
)

const (
	dsGA       = graphtest.RoleGlobalAdministrator
	dsReader   = graphtest.RoleGlobalReader
	dsUserAdm  = graphtest.RoleUserAdministrator
	dsSecAdm   = graphtest.RoleSecurityAdministrator
	dsGroupAdm = graphtest.RoleGroupsAdministrator
	dsAUScope  = "/administrativeUnits/" + dsAU
)

var dsT0 = time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)

func dsAt(d time.Duration) time.Time { return dsT0.Add(d) }

func dsMust(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

// dsTenant starts a fake tenant on a clock at dsT0 and seeds the test
// directory (see the IDs' comments), moving the clock to +1h and +2h for
// the activations and changes made then. It leaves the clock at +2h.
func dsTenant(tb testing.TB, opts graphtest.Options) (*graphtest.Server, *graphtest.Clock) {
	tb.Helper()
	clock := graphtest.NewClock(dsT0)
	opts.Clock = clock
	srv := graphtest.NewServer(opts)
	tb.Cleanup(srv.Close)
	must := func(err error) { tb.Helper(); dsMust(tb, err) }
	activate := func(_ time.Time, err error) { tb.Helper(); dsMust(tb, err) }

	for _, u := range []string{dsAlice, dsBob, dsCarol, dsDave, dsErin, dsFrank, dsGrace, dsHeidi, dsIvan, dsJudy, dsKen, dsLeo, dsMallory} {
		must(srv.AddUser(u, u[:8]+"@contoso.test"))
	}
	must(srv.AddServicePrincipal(dsDaemon, "daemon"))
	must(srv.AddServicePrincipal(dsRobot, "robot"))
	must(srv.AddGroup(dsAdmins, "Admins", true))
	must(srv.AddGroup(dsSecops, "SecOps", true))
	must(srv.AddGroup(dsStaff, "Staff", false))
	must(srv.AddGroup(dsEveryone, "Everyone", false))
	must(srv.AddGroupMember(dsEveryone, dsStaff))
	must(srv.AssignRole(dsAdmins, dsGA, "/", time.Time{}, time.Time{}))
	must(srv.AssignRole(dsAdmins, dsSecAdm, "/", time.Time{}, dsAt(2*time.Hour)))
	must(srv.AssignRole(dsSecops, dsGroupAdm, dsAUScope, dsAt(time.Hour), time.Time{}))

	must(srv.AssignRole(dsAlice, dsReader, "/", time.Time{}, time.Time{}))
	must(srv.AddGroupMember(dsAdmins, dsAlice))
	// Graph speaks UTC: times given in another zone come back in UTC.
	cet := time.FixedZone("CET", 3600)
	must(srv.AssignRole(dsBob, dsUserAdm, "/", dsAt(time.Hour).In(cet), dsAt(3*time.Hour).In(cet)))
	must(srv.MakeEligible(dsCarol, dsGA, "/", dsAt(3*time.Hour)))
	must(srv.AssignRole(dsDave, dsUserAdm, dsAUScope, time.Time{}, dsAt(3*time.Hour)))
	must(srv.AssignGroup(dsAdmins, dsErin, graphtest.AccessMember, dsAt(time.Hour), dsAt(3*time.Hour)))
	must(srv.AssignGroup(dsStaff, dsFrank, graphtest.AccessOwner, time.Time{}, dsAt(3*time.Hour)))
	must(srv.MakeGroupEligible(dsSecops, dsFrank, graphtest.AccessMember, time.Time{}))
	must(srv.AddGroupMember(dsStaff, dsGrace))
	must(srv.AssignGroup(dsEveryone, dsGrace, graphtest.AccessMember, dsAt(time.Hour), dsAt(3*time.Hour)))
	must(srv.AddGroupMember(dsAdmins, dsHeidi))
	must(srv.AssignGroup(dsAdmins, dsHeidi, graphtest.AccessMember, time.Time{}, dsAt(2*time.Hour)))
	must(srv.MakeEligible(dsIvan, dsGA, "/", time.Time{}))
	must(srv.MakeGroupEligible(dsAdmins, dsIvan, graphtest.AccessMember, time.Time{}))
	must(srv.SetAccountEnabled(dsJudy, false))
	must(srv.SetUserRisk(dsJudy, "high", "atRisk"))
	must(srv.SetUserRisk(dsKen, "hidden", "none"))
	must(srv.AssignRole(dsLeo, dsReader, "/", time.Time{}, time.Time{}))
	must(srv.DeleteUser(dsLeo))
	must(srv.MakeEligible(dsMallory, dsGA, "/", time.Time{}))
	activate(srv.ActivateRole(dsMallory, dsGA, "/", 8*time.Hour))
	must(srv.AssignRole(dsDaemon, dsReader, "/", time.Time{}, dsAt(3*time.Hour)))
	must(srv.AddGroupMember(dsAdmins, dsDaemon))
	must(srv.SetServicePrincipalEnabled(dsRobot, false))
	must(srv.AddAdministrativeUnit(dsAU, "Paris"))
	must(srv.AddAdministrativeUnit(dsAU2, "Lyon"))
	must(srv.AddAdministrativeUnitMember(dsAU2, dsDave))
	must(srv.AddAdministrativeUnitMember(dsAU, dsDave))
	must(srv.AddAdministrativeUnitMember(dsAU, dsAlice))
	must(srv.AddAdministrativeUnitMember(dsAU, dsStaff))

	clock.Set(dsAt(time.Hour))
	activate(srv.ActivateRole(dsCarol, dsGA, "/", 4*time.Hour)) // capped at the eligibility's end, +3h
	activate(srv.ActivateGroup(dsSecops, dsFrank, graphtest.AccessMember, 2*time.Hour))
	must(srv.RevokeSignInSessions(dsJudy))
	must(srv.ChangePassword(dsJudy))

	clock.Set(dsAt(2 * time.Hour))
	must(srv.DeactivateRole(dsMallory, dsGA, "/"))
	return srv, clock
}

func dsUser(oid string, need graphcheck.Need) graphcheck.Principal {
	return graphcheck.Principal{TenantID: graphtest.TenantID, ObjectID: oid, Need: need}
}

// dsChecking returns p checking the live membership of groups.
func dsChecking(tb testing.TB, p graphcheck.Principal, groups ...string) graphcheck.Principal {
	tb.Helper()
	var err error
	p.CheckGroups, err = graphcheck.NewGroupSet(groups...)
	dsMust(tb, err)
	return p
}

// dsAllGroups are the groups the lookups check: every group of the
// directory, a GUID that is no group, and enough made-up ones to need a
// second checkMemberGroups call (20 groups each).
func dsAllGroups() []string {
	ids := []string{dsAdmins, dsSecops, dsStaff, dsEveryone, dsNoGroup}
	for i := range 20 {
		ids = append(ids, fmt.Sprintf("%08x-0000-4000-8000-0000000000f8", i))
	}
	return ids
}

func dsApp(oid string, need graphcheck.Need) graphcheck.Principal {
	return graphcheck.Principal{TenantID: graphtest.TenantID, ObjectID: oid, ServicePrincipal: true, Need: need}
}

// dsLookups are the principals the equivalence test looks up at every
// instant: every user and service principal with no facts, with the
// account and risk, and checking the membership of every group; and the
// kinds of absence.
func dsLookups(tb testing.TB) []graphcheck.Principal {
	var ps []graphcheck.Principal
	for _, u := range []string{dsAlice, dsBob, dsCarol, dsDave, dsErin, dsFrank, dsGrace, dsHeidi, dsIvan, dsJudy, dsKen, dsLeo, dsMallory, dsNobody} {
		ps = append(ps, dsUser(u, 0), dsUser(u, graphcheck.NeedAccount|graphcheck.NeedRisk), dsChecking(tb, dsUser(u, 0), dsAllGroups()...))
	}
	for _, sp := range []string{dsDaemon, dsRobot} {
		ps = append(ps, dsApp(sp, 0), dsApp(sp, graphcheck.NeedAccount|graphcheck.NeedRisk), dsChecking(tb, dsApp(sp, 0), dsAllGroups()...))
	}
	return append(ps,
		dsUser(dsDaemon, graphcheck.NeedAccount), // a service principal looked up as a user
		dsApp(dsAlice, 0),                        // a user looked up as a service principal
		dsUser(strings.ToUpper(dsAlice), graphcheck.NeedAccount),
	)
}

// dsInstants are the instants the equivalence test looks at: before the
// +1h starts, at them, between, at the +2h and +3h ends exactly, after.
var dsInstants = []time.Duration{0, time.Hour, 90 * time.Minute, 2 * time.Hour, 3 * time.Hour, 4 * time.Hour}

// dsSentinels are the error classes the tests compare.
var dsSentinels = []error{graphcheck.ErrInvalidPrincipal, graphcheck.ErrPrincipalNotFound, graphcheck.ErrPermissionDenied,
	graphcheck.ErrLicenseRequired, graphcheck.ErrUnavailable, graphcheck.ErrOutage}

func dsClass(err error) []error {
	var out []error
	for _, s := range dsSentinels {
		if errors.Is(err, s) {
			out = append(out, s)
		}
	}
	return out
}

// TestSourceMatchesGraphHalf looks up every principal at every instant
// with the direct Source and through the Graph half's HTTP endpoints (read
// as graphcheck/msgraph reads them, by dsViaHTTP), and wants the same
// State or the same class of error, with and without
// ExpandGroupRoleInstances.
func TestSourceMatchesGraphHalf(t *testing.T) {
	for _, expand := range []bool{false, true} {
		t.Run(fmt.Sprintf("expand=%v", expand), func(t *testing.T) {
			srv, clock := dsTenant(t, graphtest.Options{ExpandGroupRoleInstances: expand})
			src := srv.Source()
			states := 0
			for _, d := range dsInstants {
				clock.Set(dsAt(d))
				for _, p := range dsLookups(t) {
					t.Run(fmt.Sprintf("+%v/%s/sp=%v/need=%d", d, p.ObjectID[:8], p.ServicePrincipal, p.Need), func(t *testing.T) {
						got, gotErr := src.Lookup(context.Background(), p)
						want, wantErr := dsViaHTTP(t, srv, p)
						if !reflect.DeepEqual(dsClass(gotErr), dsClass(wantErr)) {
							t.Fatalf("error %v, want %v", gotErr, wantErr)
						}
						if !reflect.DeepEqual(got, want) {
							t.Fatalf("direct\n %s\nover HTTP\n %s", dsJSON(got), dsJSON(want))
						}
						if got != nil && !got.Empty() {
							states++
						}
					})
				}
			}
			// A comparison of nothing but empty states and errors proves
			// nothing.
			if states < 50 {
				t.Errorf("only %d lookups had an assignment", states)
			}
		})
	}
}

func dsJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// dsViaHTTP reads p's state from the Graph half as graphcheck/msgraph
// does, one plain GET at a time, and joins it with graphcheck.Combine: the
// principal's role and PIM for Groups instances (leaving out memberType
// "Group"), its transitive groups (404: not found), the role-assignable
// groups' role instances when it belongs to one, and the account and risk
// Need asks for. It is this test's stand-in for msgraph, which graphtest's
// tests must not import.
func dsViaHTTP(t *testing.T, srv *graphtest.Server, p graphcheck.Principal) (*graphcheck.State, error) {
	t.Helper()
	if err := p.Validate(); err != nil {
		return nil, err
	}
	oid := strings.ToLower(p.ObjectID)
	f := graphcheck.Facts{Principal: p, FetchedAt: srv.Clock().Now()}
	var roles []struct {
		RoleDefinitionID, DirectoryScopeID, AssignmentType, MemberType string
		AppScopeID                                                     *string
		StartDateTime, EndDateTime                                     *string
	}
	byPrincipal := "?$filter=" + url.QueryEscape("principalId eq '"+oid+"'")
	dsGetList(t, srv, "/roleManagement/directory/roleAssignmentScheduleInstances"+byPrincipal, &roles)
	for _, r := range roles {
		if r.MemberType == "Group" {
			continue
		}
		f.Own = append(f.Own, graphcheck.RoleAssignment{RoleDefinitionID: r.RoleDefinitionID, DirectoryScopeID: r.DirectoryScopeID,
			AssignmentType: r.AssignmentType, Window: dsWindow(t, r.StartDateTime, r.EndDateTime)})
	}
	var pim []struct {
		GroupID, AccessID, AssignmentType string
		StartDateTime, EndDateTime        *string
	}
	dsGetList(t, srv, "/identityGovernance/privilegedAccess/group/assignmentScheduleInstances"+byPrincipal, &pim)
	for _, m := range pim {
		f.Memberships = append(f.Memberships, graphcheck.GroupMembership{GroupID: m.GroupID, AccessID: m.AccessID,
			AssignmentType: m.AssignmentType, Window: dsWindow(t, m.StartDateTime, m.EndDateTime)})
	}
	kind := "users"
	if p.ServicePrincipal {
		kind = "servicePrincipals"
	}
	var groups []struct {
		ID                 string
		IsAssignableToRole bool
	}
	if status := dsGet(t, srv, "/"+kind+"/"+oid+"/transitiveMemberOf/graph.group?$select=id,isAssignableToRole", &dsPage{Value: &groups}); status == http.StatusNotFound {
		return nil, graphcheck.ErrPrincipalNotFound
	}
	assignable := false
	for _, g := range groups {
		f.Groups = append(f.Groups, graphcheck.GroupRef{ID: g.ID, IsAssignableToRole: g.IsAssignableToRole})
		assignable = assignable || g.IsAssignableToRole
	}
	if p.Need.Has(graphcheck.NeedAccount) {
		var acc struct {
			AccountEnabled                                              bool
			SignInSessionsValidFromDateTime, LastPasswordChangeDateTime *string
		}
		sel := "?$select=id,accountEnabled,signInSessionsValidFromDateTime,lastPasswordChangeDateTime"
		if p.ServicePrincipal {
			sel = "?$select=id,accountEnabled"
		}
		if status := dsGet(t, srv, "/"+kind+"/"+oid+sel, &acc); status == http.StatusNotFound {
			return nil, graphcheck.ErrPrincipalNotFound
		}
		f.Account = &graphcheck.Account{Enabled: acc.AccountEnabled,
			SessionsValidFrom: dsTime(t, acc.SignInSessionsValidFromDateTime), PasswordChanged: dsTime(t, acc.LastPasswordChangeDateTime)}
	}
	var member []string
	for chunk := range slices.Chunk(p.CheckGroups.IDs(), 20) {
		var answer struct{ Value []string }
		body, _ := json.Marshal(map[string][]string{"groupIds": chunk})
		if status := dsDo(t, srv, http.MethodPost, "/"+kind+"/"+oid+"/checkMemberGroups", body, &answer); status == http.StatusNotFound {
			return nil, graphcheck.ErrPrincipalNotFound
		}
		member = append(member, answer.Value...)
	}
	if p.Need.Has(graphcheck.NeedRisk) && !p.ServicePrincipal {
		var risk struct{ RiskLevel, RiskState string }
		f.Risk = &graphcheck.Risk{Level: graphcheck.RiskLevelNone, State: graphcheck.RiskStateNone, FetchedAt: f.FetchedAt}
		switch status := dsGet(t, srv, "/identityProtection/riskyUsers/"+oid+"?$select=id,riskLevel,riskState", &risk); {
		case status == http.StatusNotFound:
		case risk.RiskLevel == "hidden":
			return nil, graphcheck.ErrLicenseRequired
		default:
			f.Risk = &graphcheck.Risk{Level: risk.RiskLevel, State: risk.RiskState, Recorded: true, FetchedAt: f.FetchedAt}
		}
	}
	if assignable {
		var all []struct{ ID string }
		dsGetList(t, srv, "/groups?$filter="+url.QueryEscape("isAssignableToRole eq true")+"&$select=id", &all)
		f.GroupRoles = map[string][]graphcheck.RoleAssignment{}
		for _, g := range all {
			roles = nil
			dsGetList(t, srv, "/roleManagement/directory/roleAssignmentScheduleInstances?$filter="+url.QueryEscape("principalId eq '"+g.ID+"'"), &roles)
			for _, r := range roles {
				f.GroupRoles[g.ID] = append(f.GroupRoles[g.ID], graphcheck.RoleAssignment{RoleDefinitionID: r.RoleDefinitionID,
					DirectoryScopeID: r.DirectoryScopeID, AssignmentType: r.AssignmentType, Window: dsWindow(t, r.StartDateTime, r.EndDateTime)})
			}
		}
	}
	st := graphcheck.Combine(f)
	if p.CheckGroups.Len() > 0 {
		slices.Sort(member)
		st.CheckedGroups, st.MemberOf = p.CheckGroups.IDs(), member
	}
	return st, nil
}

// dsPage is one page of a Graph collection; the emulator pages only when
// told to, which these tests never do.
type dsPage struct {
	Value    any     `json:"value"`
	NextLink *string `json:"@odata.nextLink"`
}

// dsGetList GETs a collection below GraphURL into value, wanting 200 and a
// single page.
func dsGetList(t *testing.T, srv *graphtest.Server, path string, value any) {
	t.Helper()
	var pg dsPage
	pg.Value = value
	if status := dsGet(t, srv, path, &pg); status != http.StatusOK || pg.NextLink != nil {
		t.Fatalf("GET %s: %d, nextLink %v", path, status, pg.NextLink)
	}
}

// dsGet GETs path below GraphURL and decodes a 200 answer into v; it
// returns the status, failing the test on anything but 200 and 404.
func dsGet(t *testing.T, srv *graphtest.Server, path string, v any) int {
	t.Helper()
	return dsDo(t, srv, http.MethodGet, path, nil, v)
}

// dsDo is dsGet for any method, with an optional JSON body.
func dsDo(t *testing.T, srv *graphtest.Server, method, path string, body []byte, v any) int {
	t.Helper()
	req, err := http.NewRequest(method, srv.GraphURL()+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		if err := json.Unmarshal(answer, v); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, answer)
		}
	case http.StatusNotFound:
	default:
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, answer)
	}
	return resp.StatusCode
}

// dsWindow parses a start and an end as msgraph does (see dsTime).
func dsWindow(t *testing.T, start, end *string) graphcheck.Window {
	t.Helper()
	return graphcheck.Window{Start: dsTime(t, start), End: dsTime(t, end)}
}

// dsTime parses a nullable RFC 3339 date-time as msgraph does: in UTC,
// null the zero time.
func dsTime(t *testing.T, s *string) time.Time {
	t.Helper()
	if s == nil {
		return time.Time{}
	}
	v, err := time.Parse(time.RFC3339Nano, *s)
	if err != nil {
		t.Fatal(err)
	}
	return v.UTC()
}

// TestSourceStates pins what the direct Source answers for each kind of
// assignment at instants around its window, written out by hand: before
// the start, at it, during, at the end exactly (no longer active) and
// after.
func TestSourceStates(t *testing.T) {
	srv, clock := dsTenant(t, graphtest.Options{})
	src := srv.Source()
	role := func(id, scope, typ string, start, end time.Time) graphcheck.RoleAssignment {
		return graphcheck.RoleAssignment{RoleDefinitionID: id, DirectoryScopeID: scope, AssignmentType: typ,
			Window: graphcheck.Window{Start: start, End: end}}
	}
	via := func(r graphcheck.RoleAssignment, group string) graphcheck.RoleAssignment {
		r.ViaGroupID = group
		return r
	}
	member := func(g, access, typ string, start, end time.Time) graphcheck.GroupMembership {
		return graphcheck.GroupMembership{GroupID: g, AccessID: access, AssignmentType: typ, Window: graphcheck.Window{Start: start, End: end}}
	}
	var (
		zero             time.Time
		assigned, active = graphcheck.AssignmentAssigned, graphcheck.AssignmentActivated
		h1, h2, h3       = dsAt(time.Hour), dsAt(2 * time.Hour), dsAt(3 * time.Hour)
		adminsGA         = via(role(dsGA, "/", assigned, zero, zero), dsAdmins)
		adminsSec        = via(role(dsSecAdm, "/", assigned, zero, h2), dsAdmins)
	)
	tests := []struct {
		name   string
		at     time.Duration
		p      graphcheck.Principal
		roles  []graphcheck.RoleAssignment
		groups []graphcheck.GroupMembership
	}{
		{"permanent and through a permanent membership", 90 * time.Minute, dsUser(dsAlice, 0),
			[]graphcheck.RoleAssignment{role(dsReader, "/", assigned, zero, zero), adminsGA, adminsSec}, nil},
		{"the group's role ends at its own end", 2 * time.Hour, dsUser(dsAlice, 0),
			[]graphcheck.RoleAssignment{role(dsReader, "/", assigned, zero, zero), adminsGA}, nil},
		{"time-bound before its start", 0, dsUser(dsBob, 0), nil, nil},
		{"time-bound at its start", time.Hour, dsUser(dsBob, 0),
			[]graphcheck.RoleAssignment{role(dsUserAdm, "/", assigned, h1, h3)}, nil},
		{"time-bound at its end", 3 * time.Hour, dsUser(dsBob, 0), nil, nil},
		{"activated, capped at the eligibility's end", 90 * time.Minute, dsUser(dsCarol, 0),
			[]graphcheck.RoleAssignment{role(dsGA, "/", active, h1, h3)}, nil},
		{"activated, after its end", 4 * time.Hour, dsUser(dsCarol, 0), nil, nil},
		{"administrative unit", 0, dsUser(dsDave, 0),
			[]graphcheck.RoleAssignment{role(dsUserAdm, dsAUScope, assigned, zero, h3)}, nil},
		{"PIM member before the membership", 0, dsUser(dsErin, 0), nil, nil},
		{"PIM member: the group's roles within the membership", 90 * time.Minute, dsUser(dsErin, 0),
			[]graphcheck.RoleAssignment{via(role(dsGA, "/", assigned, h1, h3), dsAdmins), via(role(dsSecAdm, "/", assigned, h1, h2), dsAdmins)},
			[]graphcheck.GroupMembership{member(dsAdmins, graphcheck.AccessMember, assigned, h1, h3)}},
		{"activated PIM member of a group holding an AU role; owner of another", 90 * time.Minute, dsUser(dsFrank, 0),
			[]graphcheck.RoleAssignment{via(role(dsGroupAdm, dsAUScope, assigned, h1, h3), dsSecops)},
			[]graphcheck.GroupMembership{member(dsStaff, graphcheck.AccessOwner, assigned, zero, h3),
				member(dsSecops, graphcheck.AccessMember, active, h1, h3)}},
		{"activated PIM member at the activation's end", 3 * time.Hour, dsUser(dsFrank, 0), nil, nil},
		{"nested plain groups hold no roles", 90 * time.Minute, dsUser(dsGrace, 0), nil,
			[]graphcheck.GroupMembership{member(dsEveryone, graphcheck.AccessMember, assigned, h1, h3)}},
		{"a PIM membership caps a permanent one", 0, dsUser(dsHeidi, 0),
			[]graphcheck.RoleAssignment{via(role(dsGA, "/", assigned, zero, h2), dsAdmins), adminsSec},
			[]graphcheck.GroupMembership{member(dsAdmins, graphcheck.AccessMember, assigned, zero, h2)}},
		{"eligible only", 90 * time.Minute, dsUser(dsIvan, 0), nil, nil},
		{"deactivated early", 90 * time.Minute, dsUser(dsMallory, 0),
			[]graphcheck.RoleAssignment{role(dsGA, "/", active, dsT0, h2)}, nil},
		{"deactivated early, at the deactivation", 2 * time.Hour, dsUser(dsMallory, 0), nil, nil},
		{"service principal", 0, dsApp(dsDaemon, 0),
			[]graphcheck.RoleAssignment{role(dsReader, "/", assigned, zero, h3), adminsGA, adminsSec}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock.Set(dsAt(tt.at))
			st, err := src.Lookup(context.Background(), tt.p)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(st.Roles, tt.roles) || !reflect.DeepEqual(st.Groups, tt.groups) {
				t.Errorf("got roles %s groups %s\nwant roles %s groups %s", dsJSON(st.Roles), dsJSON(st.Groups), dsJSON(tt.roles), dsJSON(tt.groups))
			}
			if st.TenantID != graphtest.TenantID || st.ObjectID != tt.p.ObjectID || !st.FetchedAt.Equal(dsAt(tt.at)) {
				t.Errorf("state of %s/%s at %v", st.TenantID, st.ObjectID, st.FetchedAt)
			}
			if st.Account != nil || st.Risk != nil {
				t.Errorf("account %+v, risk %+v not asked for", st.Account, st.Risk)
			}
		})
	}
}

// TestSourceFacts checks the account and risk facts and the lookups that
// fail without a fault.
func TestSourceFacts(t *testing.T) {
	srv, clock := dsTenant(t, graphtest.Options{})
	src := srv.Source()
	clock.Set(dsAt(90 * time.Minute))
	both := graphcheck.NeedAccount | graphcheck.NeedRisk
	h1 := dsAt(time.Hour)
	tests := []struct {
		name    string
		p       graphcheck.Principal
		account *graphcheck.Account
		risk    *graphcheck.Risk
		err     error
	}{
		{"enabled user never flagged", dsUser(dsAlice, both),
			&graphcheck.Account{Enabled: true, SessionsValidFrom: dsT0, PasswordChanged: dsT0},
			&graphcheck.Risk{Level: "none", State: "none", FetchedAt: dsAt(90 * time.Minute)}, nil},
		{"disabled, revoked, at risk", dsUser(dsJudy, both),
			&graphcheck.Account{Enabled: false, SessionsValidFrom: h1, PasswordChanged: h1},
			&graphcheck.Risk{Level: "high", State: "atRisk", Recorded: true, FetchedAt: dsAt(90 * time.Minute)}, nil},
		{"account only", dsUser(dsJudy, graphcheck.NeedAccount),
			&graphcheck.Account{Enabled: false, SessionsValidFrom: h1, PasswordChanged: h1}, nil, nil},
		{"risk only", dsUser(dsJudy, graphcheck.NeedRisk), nil,
			&graphcheck.Risk{Level: "high", State: "atRisk", Recorded: true, FetchedAt: dsAt(90 * time.Minute)}, nil},
		{"risk hidden", dsUser(dsKen, graphcheck.NeedRisk), nil, nil, graphcheck.ErrLicenseRequired},
		{"risk hidden, not asked", dsUser(dsKen, graphcheck.NeedAccount),
			&graphcheck.Account{Enabled: true, SessionsValidFrom: dsT0, PasswordChanged: dsT0}, nil, nil},
		{"service principal: no risk", dsApp(dsRobot, both), &graphcheck.Account{Enabled: false}, nil, nil},
		{"deleted", dsUser(dsLeo, 0), nil, nil, graphcheck.ErrPrincipalNotFound},
		{"never existed", dsUser(dsNobody, both), nil, nil, graphcheck.ErrPrincipalNotFound},
		{"a service principal as a user", dsUser(dsDaemon, 0), nil, nil, graphcheck.ErrPrincipalNotFound},
		{"a user as a service principal", dsApp(dsAlice, graphcheck.NeedAccount), nil, nil, graphcheck.ErrPrincipalNotFound},
		{"not a GUID", dsUser("alice@contoso.test", 0), nil, nil, graphcheck.ErrInvalidPrincipal},
		{"tenant not a GUID", graphcheck.Principal{TenantID: "contoso", ObjectID: dsAlice}, nil, nil, graphcheck.ErrInvalidPrincipal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := src.Lookup(context.Background(), tt.p)
			if tt.err != nil {
				if !errors.Is(err, tt.err) || st != nil {
					t.Fatalf("got %v, %v; want %v", st, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(st.Account, tt.account) || !reflect.DeepEqual(st.Risk, tt.risk) {
				t.Errorf("account %+v risk %+v, want %+v %+v", st.Account, st.Risk, tt.account, tt.risk)
			}
		})
	}
}

// TestSourceCheckGroups checks live group membership: direct, nested,
// through PIM for Groups while it lasts, for service principals too, and
// never of a group that is not one or of a group merely owned.
func TestSourceCheckGroups(t *testing.T) {
	srv, clock := dsTenant(t, graphtest.Options{})
	src := srv.Source()
	tests := []struct {
		name   string
		at     time.Duration
		p      graphcheck.Principal
		groups []string
		want   []string // MemberOf, sorted
	}{
		{"direct and nested", 0, dsUser(dsGrace, 0), []string{dsEveryone, dsStaff, dsAdmins, dsNoGroup}, []string{dsStaff, dsEveryone}},
		{"PIM member before the membership", 0, dsUser(dsErin, 0), []string{dsAdmins}, nil},
		{"PIM member during it", 90 * time.Minute, dsUser(dsErin, 0), []string{dsAdmins}, []string{dsAdmins}},
		{"PIM member at its end", 3 * time.Hour, dsUser(dsErin, 0), []string{dsAdmins}, nil},
		{"activated member, owner of another", 90 * time.Minute, dsUser(dsFrank, 0), []string{dsSecops, dsStaff}, []string{dsSecops}},
		{"eligible only", 90 * time.Minute, dsUser(dsIvan, 0), []string{dsAdmins}, nil},
		{"service principal", 0, dsApp(dsDaemon, 0), []string{dsAdmins, dsSecops}, []string{dsAdmins}},
		{"more than one call's worth", 0, dsUser(dsAlice, 0), append(dsAllGroups(), strings.ToUpper(dsAdmins)), []string{dsAdmins}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock.Set(dsAt(tt.at))
			p := dsChecking(t, tt.p, tt.groups...)
			st, err := src.Lookup(context.Background(), p)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(st.MemberOf, tt.want) || !reflect.DeepEqual(st.CheckedGroups, p.CheckGroups.IDs()) {
				t.Errorf("member of %v, checked %v; want %v, %v", st.MemberOf, st.CheckedGroups, tt.want, p.CheckGroups.IDs())
			}
			if !st.CheckedAll(p.CheckGroups) {
				t.Error("CheckedAll is false")
			}
		})
	}
	if st, err := src.Lookup(context.Background(), dsUser(dsGrace, 0)); err != nil || st.CheckedGroups != nil || st.MemberOf != nil {
		t.Errorf("no groups asked: %+v, %v", st, err)
	}
	if _, err := src.Lookup(context.Background(), dsChecking(t, dsUser(dsNobody, 0), dsAdmins)); !errors.Is(err, graphcheck.ErrPrincipalNotFound) {
		t.Errorf("nobody: %v", err)
	}
}

// TestSourceUser checks the directory's users as a UserDirectory describes
// them, against what the Graph half serves for msgraph's two requests.
func TestSourceUser(t *testing.T) {
	srv, _ := dsTenant(t, graphtest.Options{})
	src := srv.Source()
	tests := []struct {
		name   string
		tenant string
		id     string
		units  []string
		err    error
	}{
		{"in a unit", graphtest.TenantID, dsAlice, []string{dsAU}, nil},
		{"in two units, upper case", strings.ToUpper(graphtest.TenantID), strings.ToUpper(dsDave), []string{dsAU, dsAU2}, nil},
		{"in none; its group is", graphtest.TenantID, dsGrace, nil, nil},
		{"deleted", graphtest.TenantID, dsLeo, nil, graphcheck.ErrPrincipalNotFound},
		{"a service principal", graphtest.TenantID, dsDaemon, nil, graphcheck.ErrPrincipalNotFound},
		{"a group", graphtest.TenantID, dsStaff, nil, graphcheck.ErrPrincipalNotFound},
		{"never existed", graphtest.TenantID, dsNobody, nil, graphcheck.ErrPrincipalNotFound},
		{"not a GUID", graphtest.TenantID, "alice@contoso.test", nil, graphcheck.ErrInvalidPrincipal},
		{"tenant not a GUID", "contoso", dsAlice, nil, graphcheck.ErrInvalidPrincipal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := src.User(context.Background(), tt.tenant, tt.id)
			if tt.err != nil {
				if !errors.Is(err, tt.err) || u != nil {
					t.Fatalf("got %+v, %v; want %v", u, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			id := strings.ToLower(tt.id)
			var self struct{ ID, DisplayName, UserPrincipalName string }
			dsGet(t, srv, "/users/"+id+"?$select=id,displayName,userPrincipalName", &self)
			var units []struct{ ID string }
			dsGetList(t, srv, "/users/"+id+"/memberOf/graph.administrativeUnit?$select=id", &units)
			var viaHTTP []string
			for _, u := range units {
				viaHTTP = append(viaHTTP, u.ID)
			}
			slices.Sort(viaHTTP)
			want := &graphcheck.DirectoryUser{TenantID: strings.ToLower(tt.tenant), ID: id, DisplayName: self.DisplayName,
				UserPrincipalName: self.UserPrincipalName, AdministrativeUnits: viaHTTP}
			if !reflect.DeepEqual(u, want) || !reflect.DeepEqual(u.AdministrativeUnits, tt.units) || u.UserPrincipalName != id[:8]+"@contoso.test" {
				t.Errorf("got %+v\nover HTTP %+v, units %v", u, want, tt.units)
			}
			for _, au := range tt.units {
				if !u.InAdministrativeUnit(au) {
					t.Errorf("not in %s", au)
				}
			}
		})
	}
	defer srv.InjectGraphFault(graphtest.MatchPath("/users/"+dsAlice+"/memberOf/"), graphtest.DeniedFault())()
	var pe *graphcheck.PermissionError
	if _, err := src.User(context.Background(), graphtest.TenantID, dsAlice); !errors.As(err, &pe) || pe.Permission != "AdministrativeUnit.Read.All" {
		t.Errorf("units denied: %v", err)
	}
}

// TestSourceFaults injects each kind of fault on the requests msgraph
// would send and wants the error msgraph classifies it as.
func TestSourceFaults(t *testing.T) {
	srv, clock := dsTenant(t, graphtest.Options{})
	src := srv.Source()
	clock.Set(dsAt(90 * time.Minute))
	both := graphcheck.NeedAccount | graphcheck.NeedRisk
	path := func(p string) graphtest.GraphMatch { return graphtest.GraphMatch{Path: p} }
	denied, unavailable, outage := graphcheck.ErrPermissionDenied, graphcheck.ErrUnavailable, graphcheck.ErrOutage
	tests := []struct {
		name  string
		match graphtest.GraphMatch
		fault graphtest.Fault
		p     graphcheck.Principal
		want  []error // classes; nil: the lookup succeeds
		perm  string  // the PermissionError's Permission, if any
		check func(t *testing.T, st *graphcheck.State)
	}{
		{"group memberships denied", graphtest.MatchPath("/users/"), graphtest.DeniedFault(), dsUser(dsBob, 0),
			[]error{denied}, "GroupMember.Read.All", nil},
		{"PIM scope not granted", graphtest.MatchPath("/roleManagement/"), graphtest.ScopeNotGrantedFault(), dsUser(dsBob, 0),
			[]error{denied}, "RoleAssignmentSchedule.Read.Directory", nil},
		{"PIM licence", graphtest.MatchPath("/identityGovernance/"), graphtest.LicenseRequiredFault(), dsUser(dsBob, 0),
			[]error{graphcheck.ErrLicenseRequired}, "a Microsoft Entra ID P2 or Microsoft Entra ID Governance licence", nil},
		{"Identity Protection licence", graphtest.MatchPath("/identityProtection/"), graphtest.LicenseRequiredFault(), dsUser(dsBob, both),
			[]error{graphcheck.ErrLicenseRequired}, "a Microsoft Entra ID P2 licence (Identity Protection)", nil},
		{"risk not asked: not read", graphtest.MatchPath("/identityProtection/"), graphtest.LicenseRequiredFault(), dsUser(dsBob, graphcheck.NeedAccount),
			nil, "", nil},
		{"service principal memberships denied", graphtest.MatchPath("/servicePrincipals/"), graphtest.DeniedFault(), dsApp(dsDaemon, 0),
			[]error{denied}, "Application.Read.All", nil},
		{"throttled", graphtest.MatchPath("/roleManagement/"), graphtest.ThrottledFault("2"), dsUser(dsBob, 0),
			[]error{unavailable, outage}, "", nil},
		{"5xx", graphtest.MatchPath(""), graphtest.Fault{Status: http.StatusBadGateway}, dsUser(dsBob, 0),
			[]error{unavailable, outage}, "", nil},
		{"the $batch itself fails", path("/$batch"), graphtest.Fault{}, dsUser(dsBob, 0),
			[]error{unavailable, outage}, "", nil},
		{"dropped connection", graphtest.MatchPath("/identityGovernance/"), graphtest.Fault{Kind: graphtest.FaultDropConnection}, dsUser(dsBob, 0),
			[]error{unavailable, outage}, "", nil},
		{"malformed answer: not an outage", graphtest.MatchPath("/identityGovernance/"), graphtest.MalformedJSONFault(), dsUser(dsBob, 0),
			[]error{unavailable}, "", nil},
		{"wrong shape", graphtest.MatchPath("/users/"), graphtest.WrongShapeFault(), dsUser(dsBob, 0),
			[]error{unavailable}, "", nil},
		{"off-host nextLink", graphtest.MatchPath("/roleManagement/"), graphtest.NextLinkOffHostFault(), dsUser(dsBob, 0),
			[]error{unavailable}, "", nil},
		{"nextLink on a single object changes nothing", path("/users/" + dsJudy), graphtest.NextLinkOffHostFault(), dsUser(dsJudy, graphcheck.NeedAccount),
			nil, "", func(t *testing.T, st *graphcheck.State) {
				if st.Account == nil || st.Account.Enabled {
					t.Errorf("account %+v", st.Account)
				}
			}},
		{"404 on the principal", graphtest.MatchPath("/users/" + dsAlice), graphtest.Fault{Status: http.StatusNotFound}, dsUser(dsAlice, 0),
			[]error{graphcheck.ErrPrincipalNotFound}, "", nil},
		{"404 elsewhere is no answer", graphtest.MatchPath("/roleManagement/"), graphtest.Fault{Status: http.StatusNotFound}, dsUser(dsAlice, 0),
			[]error{unavailable}, "", nil},
		{"404 on the riskyUser: no risk", graphtest.MatchPath("/identityProtection/"), graphtest.Fault{Status: http.StatusNotFound}, dsUser(dsJudy, both),
			nil, "", func(t *testing.T, st *graphcheck.State) {
				if st.Risk == nil || st.Risk.Recorded || st.Risk.AtRisk() {
					t.Errorf("risk %+v", st.Risk)
				}
			}},
		{"404 on the riskyUser of a hidden user: no risk", graphtest.MatchPath("/identityProtection/"), graphtest.Fault{Status: http.StatusNotFound}, dsUser(dsKen, both),
			nil, "", nil},
		{"the tenant's groups denied", path("/groups"), graphtest.DeniedFault(), dsUser(dsAlice, 0),
			[]error{denied}, "GroupMember.Read.All", nil},
		{"the tenant's groups not read without a role-assignable group", path("/groups"), graphtest.DeniedFault(), dsUser(dsBob, 0),
			nil, "", nil},
		{"outside a batch: never matched", graphtest.GraphMatch{PathPrefix: "/roleManagement/", Scope: graphtest.OutsideBatch}, graphtest.Fault{}, dsUser(dsAlice, 0),
			nil, "", nil},
		{"method mismatch", graphtest.GraphMatch{PathPrefix: "/users/", Method: http.MethodPost}, graphtest.Fault{}, dsUser(dsAlice, 0),
			nil, "", nil},
		{"checkMemberGroups denied", graphtest.GraphMatch{PathPrefix: "/users/", Method: http.MethodPost}, graphtest.DeniedFault(), dsChecking(t, dsUser(dsAlice, 0), dsAdmins),
			[]error{denied}, "GroupMember.Read.All and User.Read.All", nil},
		{"checkMemberGroups denied to an app", graphtest.GraphMatch{PathPrefix: "/servicePrincipals/", Method: http.MethodPost}, graphtest.DeniedFault(), dsChecking(t, dsApp(dsDaemon, 0), dsAdmins),
			[]error{denied}, "Application.Read.All", nil},
		{"checkMemberGroups malformed", graphtest.GraphMatch{PathPrefix: "/users/", Method: http.MethodPost}, graphtest.MalformedJSONFault(), dsChecking(t, dsUser(dsAlice, 0), dsAdmins),
			[]error{unavailable}, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			remove := srv.InjectGraphFault(tt.match, tt.fault)
			defer remove()
			st, err := src.Lookup(context.Background(), tt.p)
			if got := dsClass(err); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("error %v: classes %v, want %v", err, got, tt.want)
			}
			if err != nil && st != nil {
				t.Fatalf("a State with the error %v", err)
			}
			var pe *graphcheck.PermissionError
			if tt.perm != "" && (!errors.As(err, &pe) || pe.Permission != tt.perm) {
				t.Errorf("error %v does not name %q", err, tt.perm)
			}
			if tt.check != nil {
				tt.check(t, st)
			}
		})
	}
}

// TestSourceFaultPrecedence checks what wins when several requests of a
// round fail, and that faults are used up as msgraph's requests would use
// them.
func TestSourceFaultPrecedence(t *testing.T) {
	srv, _ := dsTenant(t, graphtest.Options{})
	src := srv.Source()
	ctx := context.Background()

	t.Run("a refusal beats a throttle msgraph would retry", func(t *testing.T) {
		defer srv.InjectGraphFault(graphtest.MatchPath("/roleManagement/"), graphtest.ThrottledFault("1"))()
		defer srv.InjectGraphFault(graphtest.MatchPath("/identityGovernance/"), graphtest.DeniedFault())()
		if _, err := src.Lookup(ctx, dsUser(dsBob, 0)); !errors.Is(err, graphcheck.ErrPermissionDenied) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("the principal's absence beats a throttle", func(t *testing.T) {
		defer srv.InjectGraphFault(graphtest.MatchPath("/roleManagement/"), graphtest.ThrottledFault("1"))()
		if _, err := src.Lookup(ctx, dsUser(dsNobody, 0)); !errors.Is(err, graphcheck.ErrPrincipalNotFound) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("a fault on an earlier request beats the absence", func(t *testing.T) {
		defer srv.InjectGraphFault(graphtest.MatchPath("/roleManagement/"), graphtest.DeniedFault())()
		if _, err := src.Lookup(ctx, dsUser(dsNobody, 0)); !errors.Is(err, graphcheck.ErrPermissionDenied) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("a nextLink changes no 404", func(t *testing.T) {
		defer srv.InjectGraphFault(graphtest.MatchPath("/users/"), graphtest.NextLinkOffHostFault())()
		if _, err := src.Lookup(ctx, dsUser(dsNobody, 0)); !errors.Is(err, graphcheck.ErrPrincipalNotFound) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("a looping nextLink fails after the round", func(t *testing.T) {
		// msgraph follows it and finds the loop on the next page; the
		// principal's absence ends the lookup first.
		defer srv.InjectGraphFault(graphtest.MatchPath("/roleManagement/"), graphtest.Fault{Kind: graphtest.FaultNextLinkLoop})()
		if _, err := src.Lookup(ctx, dsUser(dsNobody, 0)); !errors.Is(err, graphcheck.ErrPrincipalNotFound) {
			t.Fatalf("absent: %v", err)
		}
		if _, err := src.Lookup(ctx, dsUser(dsBob, 0)); !errors.Is(err, graphcheck.ErrUnavailable) || errors.Is(err, graphcheck.ErrOutage) {
			t.Fatalf("present: %v", err)
		}
	})
	t.Run("Times counts sub-requests", func(t *testing.T) {
		// Bob's lookup sends three sub-requests: four 500s fail the first
		// lookup (all three used) and the second (its first), not the
		// third.
		defer srv.InjectGraphFault(graphtest.GraphMatch{Scope: graphtest.InsideBatch}, graphtest.Fault{Status: http.StatusInternalServerError, Times: 4})()
		for i, want := range []error{graphcheck.ErrOutage, graphcheck.ErrOutage, nil} {
			if _, err := src.Lookup(ctx, dsUser(dsBob, 0)); !errors.Is(err, want) {
				t.Fatalf("lookup %d: %v, want %v", i+1, err, want)
			}
		}
	})
	t.Run("Times counts checkMemberGroups calls", func(t *testing.T) {
		// 25 groups take two calls: two 500s fail one lookup.
		p := dsChecking(t, dsUser(dsAlice, 0), dsAllGroups()...)
		defer srv.InjectGraphFault(graphtest.GraphMatch{Method: http.MethodPost, Scope: graphtest.InsideBatch}, graphtest.Fault{Status: http.StatusInternalServerError, Times: 2})()
		for i, want := range []error{graphcheck.ErrOutage, nil} {
			if _, err := src.Lookup(ctx, p); !errors.Is(err, want) {
				t.Fatalf("lookup %d: %v, want %v", i+1, err, want)
			}
		}
	})
	t.Run("Times counts the $batch", func(t *testing.T) {
		// A failed $batch fails the lookup before any sub-request.
		defer srv.InjectGraphFault(graphtest.MatchPath(""), graphtest.Fault{Status: http.StatusInternalServerError, Times: 2})()
		for i, want := range []error{graphcheck.ErrOutage, graphcheck.ErrOutage, nil} {
			if _, err := src.Lookup(ctx, dsUser(dsBob, 0)); !errors.Is(err, want) {
				t.Fatalf("lookup %d: %v, want %v", i+1, err, want)
			}
		}
	})
	t.Run("a dropped sub-request leaves later faults unused", func(t *testing.T) {
		defer srv.InjectGraphFault(graphtest.MatchPath("/roleManagement/"), graphtest.Fault{Kind: graphtest.FaultDropConnection, Times: 1})()
		remove := srv.InjectGraphFault(graphtest.MatchPath("/users/"), graphtest.Fault{Status: http.StatusBadGateway, Times: 1})
		defer remove()
		if _, err := src.Lookup(ctx, dsUser(dsBob, 0)); !errors.Is(err, graphcheck.ErrOutage) {
			t.Fatalf("first: %v", err)
		}
		if _, err := src.Lookup(ctx, dsUser(dsBob, 0)); !errors.Is(err, graphcheck.ErrOutage) || !strings.Contains(err.Error(), "502") {
			t.Fatalf("second: %v, want the 502 left unused", err)
		}
		if _, err := src.Lookup(ctx, dsUser(dsBob, 0)); err != nil {
			t.Fatalf("third: %v", err)
		}
	})
	t.Run("a login-side fault on Graph's path", func(t *testing.T) {
		defer srv.InjectFault(graphtest.PathPrefix("/v1.0/"), http.StatusServiceUnavailable)()
		if _, err := src.Lookup(ctx, dsUser(dsBob, 0)); !errors.Is(err, graphcheck.ErrOutage) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("a login-side fault elsewhere", func(t *testing.T) {
		defer srv.InjectFault(graphtest.PathPrefix("/common/"), http.StatusServiceUnavailable)()
		if _, err := src.Lookup(ctx, dsUser(dsBob, 0)); err != nil {
			t.Fatalf("got %v", err)
		}
	})
}

// TestSourceHang checks that a hung request waits for the caller's
// context, and for the server's closing: a deadline or the closing is an
// outage, a cancellation only the caller giving up.
func TestSourceHang(t *testing.T) {
	srv, _ := dsTenant(t, graphtest.Options{})
	src := srv.Source()
	defer srv.InjectGraphFault(graphtest.MatchPath("/identityGovernance/"), graphtest.Fault{Kind: graphtest.FaultHang})()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := src.Lookup(ctx, dsUser(dsBob, 0)); !errors.Is(err, graphcheck.ErrOutage) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deadline: %v", err)
	}

	ctx, cancel = context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := src.Lookup(ctx, dsUser(dsBob, 0))
		errc <- err
	}()
	cancel()
	if err := <-errc; !errors.Is(err, graphcheck.ErrUnavailable) || errors.Is(err, graphcheck.ErrOutage) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}

	go func() {
		_, err := src.Lookup(context.Background(), dsUser(dsBob, 0))
		errc <- err
	}()
	srv.Close()
	if err := <-errc; !errors.Is(err, graphcheck.ErrOutage) {
		t.Fatalf("closed: %v", err)
	}
}

func TestSourcePreflight(t *testing.T) {
	srv, _ := dsTenant(t, graphtest.Options{})
	src := srv.Source()
	both := graphcheck.NeedAccount | graphcheck.NeedRisk
	tests := []struct {
		name  string
		match graphtest.GraphMatch
		fault graphtest.Fault
		need  graphcheck.Need
		want  []string // permissions named, in order
	}{
		{"no fault", graphtest.GraphMatch{Path: "/nothing"}, graphtest.Fault{}, both, nil},
		{"groups denied", graphtest.GraphMatch{Path: "/groups"}, graphtest.DeniedFault(), 0, []string{"GroupMember.Read.All"}},
		{"users denied, account needed", graphtest.GraphMatch{Path: "/users"}, graphtest.DeniedFault(), graphcheck.NeedAccount, []string{"User.Read.All"}},
		{"users denied, account not needed", graphtest.GraphMatch{Path: "/users"}, graphtest.DeniedFault(), 0, nil},
		{"users denied, membership needed", graphtest.GraphMatch{Path: "/users"}, graphtest.DeniedFault(), graphcheck.NeedGroupMembership, []string{"User.Read.All"}},
		{"units denied", graphtest.GraphMatch{Path: "/directory/administrativeUnits"}, graphtest.DeniedFault(), graphcheck.NeedAdministrativeUnits, []string{"AdministrativeUnit.Read.All"}},
		{"units denied, not needed", graphtest.GraphMatch{Path: "/directory/administrativeUnits"}, graphtest.DeniedFault(), both, nil},
		{"every request denied", graphtest.MatchPath(""), graphtest.Fault{Status: http.StatusForbidden}, both | graphcheck.NeedAdministrativeUnits,
			[]string{"RoleAssignmentSchedule.Read.Directory", "PrivilegedAssignmentSchedule.Read.AzureADGroup", "GroupMember.Read.All",
				"User.Read.All", "IdentityRiskyUser.Read.All", "AdministrativeUnit.Read.All"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer srv.InjectGraphFault(tt.match, tt.fault)()
			err := src.Preflight(context.Background(), tt.need)
			var got []string
			if err != nil {
				for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
					var pe *graphcheck.PermissionError
					if !errors.As(e, &pe) {
						t.Fatalf("%v is not a PermissionError", e)
					}
					got = append(got, pe.Permission)
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v (%v), want %v", got, err, tt.want)
			}
		})
	}
}

// TestSourceBehindGuard runs a Guard over the direct Source on the
// tenant's clock: a role held through PIM for Groups is granted from the
// activation of the membership (once the empty state's NegativeTTL has
// passed) to its end, and an outage answers 503.
func TestSourceBehindGuard(t *testing.T) {
	srv, clock := dsTenant(t, graphtest.Options{})
	clock.Set(dsAt(90 * time.Minute))
	must := func(err error) { t.Helper(); dsMust(t, err) }
	quiet := slog.New(slog.DiscardHandler)

	// Ivan is eligible for membership of admins, which holds Global
	// Administrator, and holds nothing else: his state is empty.
	auth, err := middleware.NewAuthenticator(context.Background(), middleware.AuthenticatorConfig{
		Tenants: []string{graphtest.TenantID}, Audiences: []string{graphtest.APIClientID},
		Authority: srv.URL, Now: srv.Clock().Now, Logger: quiet,
	})
	must(err)
	guard, err := middleware.NewGuard(middleware.GuardConfig{Source: srv.Source(), Now: srv.Clock().Now, Logger: quiet})
	must(err)
	h := auth.Handler(guard.Require(middleware.Role(dsGA))(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "ok")
	})))
	token := srv.MustMint(graphtest.Token{ObjectID: dsIvan, Lifetime: 12 * time.Hour})
	call := func(want int, wantCode string) {
		t.Helper()
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var body struct{ Code string }
		_ = json.Unmarshal(rec.Body.Bytes(), &body)
		if rec.Code != want || body.Code != wantCode {
			t.Fatalf("at %v: %d %s, want %d %s", clock.Now().Sub(dsT0), rec.Code, rec.Body, want, wantCode)
		}
	}

	call(http.StatusForbidden, middleware.CodeRoleNotActive)
	end, err := srv.ActivateGroup(dsAdmins, dsIvan, graphtest.AccessMember, time.Hour)
	must(err)
	call(http.StatusForbidden, middleware.CodeRoleNotActive) // the empty state is cached for NegativeTTL
	clock.Advance(middleware.DefaultNegativeStateTTL)
	call(http.StatusOK, "")
	clock.Set(end.Add(-time.Second))
	call(http.StatusOK, "")
	clock.Set(end)
	call(http.StatusForbidden, middleware.CodeRoleNotActive)

	guard.PurgeAll()
	defer srv.InjectGraphFault(graphtest.MatchPath(""), graphtest.Fault{Status: http.StatusServiceUnavailable})()
	call(http.StatusServiceUnavailable, middleware.CodePIMUnavailable)
}

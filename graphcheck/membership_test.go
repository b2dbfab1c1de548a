package graphcheck_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
)

const (
	groupB = "7c1f0a3e-5b2d-4e6f-8a9b-0c1d2e3f4a5b"
	groupC = "e3f4a5b6-c7d8-49e0-a1b2-c3d4e5f6a7b8"
	unitA  = "5d1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b"
)

func mustGroups(t *testing.T, ids ...string) graphcheck.GroupSet {
	t.Helper()
	g, err := graphcheck.NewGroupSet(ids...)
	if err != nil {
		t.Fatalf("NewGroupSet(%q): %v", ids, err)
	}
	return g
}

// guids returns n distinct GUIDs.
func guids(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%08x-0000-4000-8000-000000000000", i)
	}
	return out
}

func TestNewGroupSet(t *testing.T) {
	g := mustGroups(t, strings.ToUpper(groupB), groupA, groupB, groupA)
	if got, want := g.IDs(), []string{groupA, groupB}; !slices.Equal(got, want) {
		t.Errorf("IDs() = %q, want %q (lower case, sorted, distinct)", got, want)
	}
	if g.Len() != 2 || !g.Contains(strings.ToUpper(groupA)) || g.Contains(groupC) {
		t.Errorf("Len %d, Contains(A) %v, Contains(C) %v", g.Len(), g.Contains(groupA), g.Contains(groupC))
	}
	ids := g.IDs()
	ids[0] = groupC
	if g.Contains(groupC) {
		t.Error("IDs() returned the set's own slice")
	}
	if g != mustGroups(t, groupB, groupA) || g == mustGroups(t, groupA) {
		t.Error("== does not compare the groups")
	}
	// A Principal holding a set stays comparable (and usable as a map key).
	_ = map[graphcheck.Principal]bool{{CheckGroups: g}: true}
	if k := g.Key(); !strings.HasPrefix(k, "/g2:") || len(k) != len("/g2:")+43 {
		t.Errorf("Key() = %q, want /g2: and a base64url SHA-256", k)
	}
	if e := mustGroups(t); e.Len() != 0 || e.Key() != "" || e != (graphcheck.GroupSet{}) || e.IDs() != nil {
		t.Errorf("NewGroupSet() = %+v, want the zero set", e)
	}
	for _, n := range []int{1, 2, 3, graphcheck.MaxCheckGroups} {
		ids := guids(n)
		g := mustGroups(t, ids...)
		if g.Len() != n || !slices.Equal(g.IDs(), ids) {
			t.Errorf("%d groups: Len %d, IDs %d", n, g.Len(), len(g.IDs()))
		}
		for _, id := range ids {
			if !g.Contains(id) {
				t.Errorf("%d groups: Contains(%s) false", n, id)
			}
		}
		if g.Contains(groupA) || g.Contains(ids[0][:35]) || g.Contains(ids[0]+",") {
			t.Errorf("%d groups: Contains is true for what is not in it", n)
		}
	}
	for name, ids := range map[string][]string{
		"not a GUID":    {groupA, "admins"},
		"empty ID":      {""},
		"a $filter":     {groupA + "' or 1 eq 1"},
		"too many":      guids(graphcheck.MaxCheckGroups + 1),
		"braced GUID":   {"{" + groupA + "}"},
		"GUID with tab": {groupA + "\t"},
	} {
		if _, err := graphcheck.NewGroupSet(ids...); err == nil {
			t.Errorf("%s: NewGroupSet accepted %.60q", name, ids)
		}
	}
}

// TestLookupKeyCheckGroups checks that two lookups asking about different
// groups never share a cache entry, that asking about none keeps the key
// as it was, and that the groups part costs no extra allocation.
func TestLookupKeyCheckGroups(t *testing.T) {
	const tid, oid = "72f988bf-86f1-41af-91ab-2d7cd011db47", "4d5e6f70-8192-4a3b-8c4d-5e6f70819203"
	sets := []graphcheck.GroupSet{{}, mustGroups(t, groupA), mustGroups(t, groupB), mustGroups(t, groupA, groupB), mustGroups(t, groupA, groupB, groupC)}
	seen := map[string]string{}
	for _, sp := range []bool{false, true} {
		for need := range graphcheck.Need(4) {
			for i, g := range sets {
				p := graphcheck.Principal{TenantID: tid, ObjectID: oid, ServicePrincipal: sp, Need: need, CheckGroups: g}
				k := p.LookupKey()
				what := fmt.Sprintf("groups %s, need %d, service principal %v", g, need, sp)
				if prev, dup := seen[k]; dup {
					t.Errorf("LookupKey() = %q for both %s and %s", k, prev, what)
				}
				seen[k] = what
				if p.Key() != tid+"/"+oid {
					t.Errorf("%s: Key() = %q", what, p.Key())
				}
				without := p
				without.CheckGroups = graphcheck.GroupSet{}
				if i > 0 && k != without.LookupKey()+g.Key() {
					t.Errorf("%s: LookupKey() = %q, want the key without groups followed by %q", what, k, g.Key())
				}
			}
		}
	}
	if got, want := (graphcheck.Principal{TenantID: tid, ObjectID: oid, Need: graphcheck.NeedAccount}).LookupKey(), tid+"/"+oid+"/u/a"; got != want {
		t.Errorf("without groups: LookupKey() = %q, want %q", got, want)
	}
	// A Need bit without a code still carries the groups.
	odd := graphcheck.Principal{TenantID: tid, ObjectID: oid, Need: graphcheck.NeedGroupMembership, CheckGroups: sets[1]}
	if k := odd.LookupKey(); !strings.HasSuffix(k, sets[1].Key()) {
		t.Errorf("LookupKey() = %q lacks the groups part", k)
	}
	for _, g := range []graphcheck.GroupSet{{}, sets[4]} {
		p := graphcheck.Principal{TenantID: tid, ObjectID: oid, Need: graphcheck.NeedAccount | graphcheck.NeedRisk, CheckGroups: g}
		if n := testing.AllocsPerRun(100, func() { _ = p.LookupKey() }); n > 1 {
			t.Errorf("%d groups: LookupKey allocates %v times, want at most 1", g.Len(), n)
		}
	}
}

func TestNeedBitsAreDistinct(t *testing.T) {
	all := []graphcheck.Need{graphcheck.NeedAccount, graphcheck.NeedRisk, graphcheck.NeedGroupMembership, graphcheck.NeedAdministrativeUnits}
	var seen graphcheck.Need
	for _, n := range all {
		if n == 0 || n&(n-1) != 0 || seen&n != 0 {
			t.Errorf("Need %#x is zero, not one bit, or shared", uint8(n))
		}
		seen |= n
	}
}

func TestStateMemberOfGroup(t *testing.T) {
	pim := func(group, access string, end time.Time) graphcheck.GroupMembership {
		return graphcheck.GroupMembership{GroupID: group, AccessID: access, AssignmentType: graphcheck.AssignmentActivated, Window: graphcheck.Window{Start: at(-time.Hour), End: end}}
	}
	checked := []string{groupA, groupB}
	tests := []struct {
		name          string
		s             *graphcheck.State
		now           time.Time
		group         string
		member, known bool
	}{
		{"member", &graphcheck.State{CheckedGroups: checked, MemberOf: []string{groupA}}, t0, groupA, true, true},
		{"member, other case", &graphcheck.State{CheckedGroups: checked, MemberOf: []string{groupA}}, t0, strings.ToUpper(groupA), true, true},
		{"checked, not a member", &graphcheck.State{CheckedGroups: checked, MemberOf: []string{groupA}}, t0, groupB, false, true},
		{"not checked", &graphcheck.State{CheckedGroups: checked, MemberOf: []string{groupA}}, t0, groupC, false, false},
		{"in MemberOf but not checked", &graphcheck.State{CheckedGroups: []string{groupB}, MemberOf: []string{groupA}}, t0, groupA, false, false},
		{"nothing checked", &graphcheck.State{}, t0, groupA, false, false},
		{"nil State", nil, t0, groupA, false, false},
		{"unsorted lists", &graphcheck.State{CheckedGroups: []string{groupB, groupA}, MemberOf: []string{groupB, groupA}}, t0, groupA, true, true},
		{"PIM membership still running", &graphcheck.State{CheckedGroups: checked, MemberOf: []string{groupA},
			Groups: []graphcheck.GroupMembership{pim(groupA, graphcheck.AccessMember, at(time.Hour))}}, at(59 * time.Minute), groupA, true, true},
		{"PIM membership ended: may have been the one", &graphcheck.State{CheckedGroups: checked, MemberOf: []string{groupA},
			Groups: []graphcheck.GroupMembership{pim(groupA, graphcheck.AccessMember, at(time.Hour))}}, at(time.Hour), groupA, false, false},
		{"another group's PIM membership ended: may have nested it", &graphcheck.State{CheckedGroups: checked, MemberOf: []string{groupA},
			Groups: []graphcheck.GroupMembership{pim(groupC, graphcheck.AccessMember, at(time.Hour))}}, at(2 * time.Hour), groupA, false, false},
		{"an ownership ended: no membership", &graphcheck.State{CheckedGroups: checked, MemberOf: []string{groupA},
			Groups: []graphcheck.GroupMembership{pim(groupA, graphcheck.AccessOwner, at(time.Hour))}}, at(2 * time.Hour), groupA, true, true},
		{"permanent PIM membership", &graphcheck.State{CheckedGroups: checked, MemberOf: []string{groupA},
			Groups: []graphcheck.GroupMembership{pim(groupA, graphcheck.AccessMember, time.Time{})}}, at(100 * time.Hour), groupA, true, true},
		{"not a member, PIM membership ended", &graphcheck.State{CheckedGroups: checked,
			Groups: []graphcheck.GroupMembership{pim(groupA, graphcheck.AccessMember, at(time.Hour))}}, at(2 * time.Hour), groupA, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			member, known := tt.s.MemberOfGroup(tt.now, tt.group)
			if member != tt.member || known != tt.known {
				t.Errorf("MemberOfGroup = (%v, %v), want (%v, %v)", member, known, tt.member, tt.known)
			}
			// Within NotAfter, a checked group is always known: the
			// cache's freshness already bounds the PIM ends.
			if tt.s != nil && tt.s.CheckedAll(mustGroups(t, tt.group)) && (tt.s.NotAfter().IsZero() || tt.now.Before(tt.s.NotAfter())) && !known {
				t.Errorf("unknown before NotAfter %v", tt.s.NotAfter())
			}
		})
	}
}

func TestStateCheckedAll(t *testing.T) {
	s := &graphcheck.State{CheckedGroups: []string{groupA, groupB}}
	for _, tt := range []struct {
		g    graphcheck.GroupSet
		want bool
	}{
		{graphcheck.GroupSet{}, true},
		{mustGroups(t, groupA), true},
		{mustGroups(t, groupB, groupA), true},
		{mustGroups(t, groupA, groupC), false},
	} {
		if got := s.CheckedAll(tt.g); got != tt.want {
			t.Errorf("CheckedAll(%s) = %v, want %v", tt.g, got, tt.want)
		}
	}
	g := mustGroups(t, groupA, groupB)
	if n := testing.AllocsPerRun(100, func() { _ = s.CheckedAll(g) }); n != 0 {
		t.Errorf("CheckedAll allocates %v times", n)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = s.MemberOfGroup(t0, groupB) }); n != 0 {
		t.Errorf("MemberOfGroup allocates %v times", n)
	}
	var none *graphcheck.State
	if none.CheckedAll(mustGroups(t, groupA)) || !none.CheckedAll(graphcheck.GroupSet{}) {
		t.Error("a nil State: CheckedAll is wrong")
	}
}

func TestDirectoryUser(t *testing.T) {
	u := &graphcheck.DirectoryUser{ID: groupA, AdministrativeUnits: []string{unitA}}
	if !u.InAdministrativeUnit(strings.ToUpper(unitA)) || u.InAdministrativeUnit(groupB) {
		t.Error("InAdministrativeUnit is wrong")
	}
	if got, want := u.Scopes(), []string{"/", "/administrativeUnits/" + unitA}; !slices.Equal(got, want) {
		t.Errorf("Scopes() = %q, want %q", got, want)
	}
	var none *graphcheck.DirectoryUser
	if none.InAdministrativeUnit(unitA) || !slices.Equal(none.Scopes(), []string{"/"}) {
		t.Error("a nil DirectoryUser: wrong answers")
	}
	// The scopes are what RoleActive matches exactly.
	s := &graphcheck.State{Roles: []graphcheck.RoleAssignment{{RoleDefinitionID: helpdesk, DirectoryScopeID: "/administrativeUnits/" + unitA}}}
	found := false
	for _, scope := range u.Scopes() {
		if _, ok := s.RoleActive(t0, helpdesk, scope); ok {
			found = true
		}
	}
	if !found {
		t.Error("an assignment scoped to the user's unit matched none of its Scopes")
	}
}

// TestStateJSON checks that the membership fields travel through JSON (a
// shared tier) and that a State without them encodes as it did before.
func TestStateJSON(t *testing.T) {
	plain, err := json.Marshal(&graphcheck.State{TenantID: "t", ObjectID: "o"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(plain), "CheckedGroups") || strings.Contains(string(plain), "MemberOf") {
		t.Errorf("a State without membership encodes it: %s", plain)
	}
	b, err := json.Marshal(&graphcheck.State{CheckedGroups: []string{groupA, groupB}, MemberOf: []string{groupA}})
	if err != nil {
		t.Fatal(err)
	}
	var back graphcheck.State
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if m, known := back.MemberOfGroup(t0, groupA); !m || !known {
		t.Errorf("after JSON: MemberOfGroup = %v, %v (%s)", m, known, b)
	}
}

package msgraph_test

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/graphcheck/msgraph"
	"github.com/pimguard/pimguard/middleware"
)

// newSnapshot returns a Snapshot over the stack's Source, configured by
// cfg with refresh-ahead off unless cfg sets it (background sweeps would
// make request counts depend on the scheduler).
func newSnapshot(tb testing.TB, s *stack, cfg msgraph.SnapshotConfig) *msgraph.Snapshot {
	tb.Helper()
	cfg.RefreshAhead = cmp.Or(cfg.RefreshAhead, msgraph.NoRefreshAhead)
	sn, err := msgraph.NewSnapshot(s.src, cfg)
	if err != nil {
		tb.Fatalf("NewSnapshot: %v", err)
	}
	return sn
}

// seedSnapshotTenant gives the test directory a bit of everything a
// snapshot holds: alice an activation (ending at +10m), bob a role scoped
// to au1, carol membership of the role-assignable group admins (holding
// User Administrator) through PIM for Groups until +20m, dave a PIM for
// Groups membership of staff, erin ownership of staff, and the service
// principal daemon a permanent role.
func seedSnapshotTenant(tb testing.TB, s *stack) {
	tb.Helper()
	now := s.clock.Now()
	must(tb, s.srv.MakeEligible(alice, graphtest.RoleUserAdministrator, "/", time.Time{}))
	if _, err := s.srv.ActivateRole(alice, graphtest.RoleUserAdministrator, "/", 10*time.Minute); err != nil {
		tb.Fatal(err)
	}
	must(tb, s.srv.AssignRole(bob, graphtest.RoleUserAdministrator, "/administrativeUnits/"+au1, time.Time{}, time.Time{}))
	must(tb, s.srv.AssignRole(admins, graphtest.RoleUserAdministrator, "/", time.Time{}, time.Time{}))
	must(tb, s.srv.AssignGroup(admins, carol, graphtest.AccessMember, time.Time{}, now.Add(20*time.Minute)))
	must(tb, s.srv.AssignGroup(staff, dave, graphtest.AccessMember, time.Time{}, now.Add(time.Hour)))
	must(tb, s.srv.AssignGroup(staff, erin, graphtest.AccessOwner, time.Time{}, time.Time{}))
	must(tb, s.srv.AssignRole(daemon, graphtest.RoleGlobalReader, "/", time.Time{}, time.Time{}))
}

// sameAssignments reports whether two states hold the same roles and
// groups, in any order; groups only of the groups in read when read is
// not nil (a snapshot holds the groups it read).
func sameAssignments(a, b *graphcheck.State, read []string) bool {
	groups := func(s *graphcheck.State) []graphcheck.GroupMembership {
		return slices.DeleteFunc(slices.Clone(s.Groups), func(m graphcheck.GroupMembership) bool {
			return read != nil && !slices.Contains(read, m.GroupID)
		})
	}
	byRole := func(x, y graphcheck.RoleAssignment) int {
		return cmp.Or(strings.Compare(x.RoleDefinitionID, y.RoleDefinitionID), strings.Compare(x.DirectoryScopeID, y.DirectoryScopeID), strings.Compare(x.ViaGroupID, y.ViaGroupID))
	}
	byGroup := func(x, y graphcheck.GroupMembership) int {
		return cmp.Or(strings.Compare(x.GroupID, y.GroupID), strings.Compare(x.AccessID, y.AccessID))
	}
	ra, rb := slices.SortedFunc(slices.Values(a.Roles), byRole), slices.SortedFunc(slices.Values(b.Roles), byRole)
	ga, gb := slices.SortedFunc(slices.Values(groups(a)), byGroup), slices.SortedFunc(slices.Values(groups(b)), byGroup)
	return slices.EqualFunc(ra, rb, func(x, y graphcheck.RoleAssignment) bool { return x == y }) &&
		slices.EqualFunc(ga, gb, func(x, y graphcheck.GroupMembership) bool { return x == y })
}

// A snapshot answers every principal as a Lookup of the Source does (roles
// with their windows and scopes, roles held through a role-assignable
// group capped by the PIM for Groups membership, PIM for Groups instances
// of the groups read), and after its sweep it answers with no Graph
// request at all.
func TestSnapshotAnswersLikeLookup(t *testing.T) {
	e := newEnv(t, graphtest.Options{}, nil)
	seedSnapshotTenant(t, e)
	sn := newSnapshot(t, e, msgraph.SnapshotConfig{Groups: []string{staff}})
	ctx := context.Background()
	principals := []graphcheck.Principal{user(alice), user(bob), user(carol), user(dave), user(erin), user(frank), app(daemon), user(nobody)}

	e.srv.ResetRequests()
	for _, p := range principals {
		got, err := sn.Lookup(ctx, p)
		if err != nil {
			t.Fatalf("snapshot Lookup(%s): %v", p.ObjectID, err)
		}
		if got.ObjectID != p.ObjectID || got.TenantID != p.TenantID || !got.FetchedAt.Equal(e.clock.Now()) {
			t.Errorf("%s: state of %s/%s fetched at %v", p.ObjectID, got.TenantID, got.ObjectID, got.FetchedAt)
		}
		if p.ObjectID == nobody {
			if !got.Empty() {
				t.Errorf("a principal the directory lacks: %+v, want an empty state", got)
			}
			continue
		}
		want := e.mustLookup(p)
		if !sameAssignments(got, want, []string{staff, admins}) {
			t.Errorf("%s: snapshot %+v\nLookup %+v", p.ObjectID, got, want)
		}
	}
	e.srv.ResetRequests()
	for _, p := range principals {
		if _, err := sn.Lookup(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(e.srv.Requests()); n != 0 {
		t.Errorf("%d Graph requests for %d lookups answered from the snapshot, want 0", n, len(principals))
	}
	// carol's role through admins ends with her membership.
	st, _ := sn.Lookup(ctx, user(carol))
	if r, ok := st.RoleActive(e.clock.Now(), graphtest.RoleUserAdministrator, "/"); !ok || r.ViaGroupID != admins || !r.End.Equal(e.clock.Now().Add(20*time.Minute)) {
		t.Errorf("carol's role via admins: %+v, %v; want it to end with her membership", r, ok)
	}
	info, ok := sn.Info(graphtest.TenantID)
	if !ok || info.RoleInstances != 4 || info.GroupInstances != 3 || info.Groups != 2 {
		t.Errorf("Info: %+v, %v; want 4 role instances, 3 PIM for Groups instances, 2 groups read", info, ok)
	}
}

// The sweep reads every collection to its end, paging, in few round trips.
func TestSnapshotSweepPages(t *testing.T) {
	e := newEnv(t, graphtest.Options{GraphPageSize: 1}, nil)
	seedSnapshotTenant(t, e)
	sn := newSnapshot(t, e, msgraph.SnapshotConfig{Groups: []string{staff}})
	e.srv.ResetRequests()
	st, err := sn.Lookup(context.Background(), user(carol))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := st.RoleActive(e.clock.Now(), graphtest.RoleUserAdministrator, "/"); !ok {
		t.Errorf("carol: %+v; want the role of admins (read on later pages)", st.Roles)
	}
	// 4 role instances, one a page, read in sequence: 4 round trips for
	// pass 1 (the groups and staff's instances travel alongside), then
	// admins' members (carol) and instances in one: 5.
	if n := e.graphLookups(); n != 5 {
		t.Errorf("%d $batch round trips, want 5", n)
	}
}

// No snapshot, or one older than SweepInterval + MaxStale, fails closed
// with the sweep's own error class; within MaxStale the previous snapshot
// answers while sweeps fail.
func TestSnapshotFailsClosed(t *testing.T) {
	for _, maxStale := range []time.Duration{0, time.Minute} {
		t.Run("MaxStale="+maxStale.String(), func(t *testing.T) {
			e := newEnv(t, graphtest.Options{}, func(_ *stack, c *msgraph.Config) { c.MaxRetries = msgraph.NoRetries })
			seedSnapshotTenant(t, e)
			sn := newSnapshot(t, e, msgraph.SnapshotConfig{SweepInterval: 30 * time.Second, MaxStale: maxStale})
			ctx := context.Background()

			remove := e.srv.InjectGraphFault(inside("/roleManagement/"), graphtest.Fault{Status: http.StatusServiceUnavailable})
			st, err := sn.Lookup(ctx, user(alice))
			if st != nil || !errors.Is(err, graphcheck.ErrUnavailable) || !errors.Is(err, graphcheck.ErrOutage) {
				t.Fatalf("no snapshot yet, Graph down: %+v, %v; want ErrUnavailable and ErrOutage", st, err)
			}
			remove()
			if _, err := sn.Lookup(ctx, user(alice)); err != nil {
				t.Fatal(err)
			}

			e.clock.Advance(30 * time.Second)
			remove = e.srv.InjectGraphFault(inside("/roleManagement/"), graphtest.DeniedFault())
			st, err = sn.Lookup(ctx, user(alice))
			if maxStale == 0 {
				if st != nil || !errors.Is(err, graphcheck.ErrPermissionDenied) {
					t.Fatalf("snapshot SweepInterval old, sweep refused: %+v, %v; want ErrPermissionDenied", st, err)
				}
			} else {
				if err != nil || len(st.Roles) != 1 {
					t.Fatalf("within MaxStale: %+v, %v; want the previous snapshot's state", st, err)
				}
				e.clock.Advance(maxStale)
				if st, err = sn.Lookup(ctx, user(alice)); st != nil || !errors.Is(err, graphcheck.ErrPermissionDenied) {
					t.Fatalf("past SweepInterval + MaxStale: %+v, %v; want ErrPermissionDenied", st, err)
				}
			}
			if h := sn.Health(); len(h) != 1 || h[0].Ready || !h[0].Degraded {
				t.Errorf("Health while failing: %+v; want not ready, degraded", h)
			}
			remove()
			if _, err := sn.Lookup(ctx, user(alice)); err != nil {
				t.Fatalf("Graph back: %v", err)
			}
			if h := sn.Health(); len(h) != 1 || !h[0].Ready || h[0].Degraded {
				t.Errorf("Health once swept: %+v; want ready", h)
			}
		})
	}
}

// A sweep that fails part-way (its first pass read, its second refused)
// publishes nothing: Lookups are answered from the previous complete
// snapshot, never from the half-read one.
func TestSnapshotPartialSweepKeepsThePreviousSnapshot(t *testing.T) {
	e := newEnv(t, graphtest.Options{}, func(_ *stack, c *msgraph.Config) { c.MaxRetries = msgraph.NoRetries })
	seedSnapshotTenant(t, e)
	sn := newSnapshot(t, e, msgraph.SnapshotConfig{SweepInterval: 30 * time.Second, MaxStale: time.Minute})
	ctx := context.Background()
	if _, err := sn.Lookup(ctx, user(alice)); err != nil {
		t.Fatal(err)
	}
	before, _ := sn.Info(graphtest.TenantID)

	// alice's activation ends early: pass 1 of the next sweep sees it.
	must(t, e.srv.DeactivateRole(alice, graphtest.RoleUserAdministrator, "/"))
	e.clock.Advance(30 * time.Second)
	e.srv.ResetRequests()
	remove := e.srv.InjectGraphFault(graphtest.GraphMatch{PathPrefix: "/groups/" + admins + "/members", Scope: graphtest.InsideBatch}, graphtest.Fault{Status: http.StatusServiceUnavailable})
	st, err := sn.Lookup(ctx, user(alice))
	if err != nil {
		t.Fatal(err)
	}
	if e.subRequests("/roleManagement/") != 1 || e.subRequests("/groups/"+admins+"/members") != 1 {
		t.Fatalf("the sweep did not get to its second pass: %v", e.srv.Requests())
	}
	if _, ok := st.RoleActive(e.clock.Now(), graphtest.RoleUserAdministrator, "/"); !ok {
		t.Errorf("alice: %+v; want the previous complete snapshot (active), not the half-read sweep", st.Roles)
	}
	if after, _ := sn.Info(graphtest.TenantID); after != before {
		t.Errorf("Info after a failed sweep: %+v, want %+v", after, before)
	}
	remove()
	e.clock.Advance(time.Second)
	if st, err = sn.Lookup(ctx, user(alice)); err != nil || len(st.Roles) != 0 {
		t.Errorf("after a complete sweep: %+v, %v; want no role", st, err)
	}
}

// Behind a Guard, a scheduled end is denied at its endDateTime (lag 0)
// with no sweep and no Graph request, while a deactivation waits for the
// next sweep; account checks still go to Graph per principal, asking only
// for the account.
func TestSnapshotBehindAGuard(t *testing.T) {
	s := newStack(t, stackOptions{})
	seedSnapshotTenant(t, s)
	sn := newSnapshot(t, s, msgraph.SnapshotConfig{SweepInterval: time.Hour})
	g := s.newGuard(t, func(c *middleware.GuardConfig) { c.Source = sn; c.CacheTTL = time.Hour })
	req := middleware.Role(graphtest.RoleUserAdministrator)
	tok := s.mint(graphtest.Token{ObjectID: alice})

	s.expect("activated", s.with(g, req, tok), http.StatusOK, "")
	s.srv.ResetRequests()
	s.clock.Advance(10*time.Minute - time.Second)
	s.expect("a second before the end", s.with(g, req, tok), http.StatusOK, "")
	s.clock.Advance(time.Second)
	s.expect("at endDateTime", s.with(g, req, tok), http.StatusForbidden, "role_not_active")
	if n := len(s.srv.Requests()); n != 0 {
		t.Errorf("%d Graph requests between the sweep and the end, want 0", n)
	}

	// Account checks: one $batch per principal with the account alone.
	ga := s.newGuard(t, func(c *middleware.GuardConfig) {
		c.Source, c.AccountChecks = sn, middleware.CheckAccountEnabled
	})
	bobTok := s.mint(graphtest.Token{ObjectID: bob})
	s.srv.ResetRequests()
	s.expect("account checks", s.with(ga, middleware.RoleInScope(graphtest.RoleUserAdministrator, middleware.AdministrativeUnitScope(au1)), bobTok), http.StatusOK, "")
	if b := s.batches(); len(b) != 1 || len(b[0]) != 1 || b[0][0].Path != "/v1.0/users/"+bob {
		t.Errorf("account check: %v; want one $batch asking /users/{id} alone", b)
	}
	must(t, s.srv.SetAccountEnabled(bob, false))
	ga.Purge(graphtest.TenantID, bob)
	s.expect("disabled", s.with(ga, middleware.RoleInScope(graphtest.RoleUserAdministrator, middleware.AdministrativeUnitScope(au1)), bobTok), http.StatusUnauthorized, "account_disabled")
}

// Purge re-reads one principal per principal, once, until a sweep that
// started after it; PurgeAll makes the next Lookup wait for a full sweep.
// Neither serves what was read before it.
func TestSnapshotPurge(t *testing.T) {
	e := newEnv(t, graphtest.Options{}, nil)
	seedSnapshotTenant(t, e)
	sn := newSnapshot(t, e, msgraph.SnapshotConfig{SweepInterval: time.Hour})
	ctx := context.Background()
	active := func(oid string) bool {
		t.Helper()
		st, err := sn.Lookup(ctx, user(oid))
		if err != nil {
			t.Fatal(err)
		}
		_, ok := st.RoleActive(e.clock.Now(), graphtest.RoleUserAdministrator, "/")
		return ok
	}
	if !active(alice) || !active(carol) {
		t.Fatal("alice and carol should start active")
	}
	must(t, e.srv.DeactivateRole(alice, graphtest.RoleUserAdministrator, "/"))
	must(t, e.srv.RemoveGroupAssignment(admins, carol, graphtest.AccessMember))
	if !active(alice) {
		t.Fatal("before the purge the snapshot answers (deactivation seen at the next sweep)")
	}

	sn.Purge(graphtest.TenantID, strings.ToUpper(alice))
	e.srv.ResetRequests()
	if active(alice) {
		t.Error("after Purge: alice still active")
	}
	if n, roles := e.graphLookups(), e.subRequests("/roleManagement/"); n != 1 || roles != 1 || e.countRequests(func(r graphtest.Request) bool {
		return strings.Contains(r.Query, "principalId")
	}) == 0 {
		t.Errorf("the re-read: %d $batch, %d role requests; want one per-principal Lookup", n, roles)
	}
	e.srv.ResetRequests()
	if active(alice) || !active(carol) {
		t.Error("after the re-read: want alice inactive (her re-read state) and carol active (the snapshot)")
	}
	if n := len(e.srv.Requests()); n != 0 {
		t.Errorf("after the re-read: %d Graph requests, want none", n)
	}

	sn.PurgeAll()
	e.srv.ResetRequests()
	if active(carol) {
		t.Error("after PurgeAll: carol still active through admins")
	}
	if e.subRequests("/roleManagement/directory/roleAssignmentScheduleInstances") != 1 || e.subRequests("/groups") == 0 {
		t.Errorf("after PurgeAll: %v; want a full sweep", e.srv.Requests())
	}
}

// A Guard tells the snapshot the groups of its GroupMember and GroupOwner
// requirements; a group watched after a snapshot exists makes the next
// Lookup wait for a sweep that reads it, never answer "not a member" of a
// group it did not read.
func TestSnapshotWatchesTheGuardsGroups(t *testing.T) {
	s := newStack(t, stackOptions{})
	seedSnapshotTenant(t, s)
	sn := newSnapshot(t, s, msgraph.SnapshotConfig{SweepInterval: time.Hour})
	g := s.newGuard(t, func(c *middleware.GuardConfig) { c.Source = sn })
	daveTok := s.mint(graphtest.Token{ObjectID: dave})
	erinTok := s.mint(graphtest.Token{ObjectID: erin})

	s.expect("a role first", s.with(g, middleware.Role(graphtest.RoleUserAdministrator), s.mint(graphtest.Token{ObjectID: alice})), http.StatusOK, "")
	s.srv.ResetRequests()
	member := g.Require(middleware.GroupMember(staff)) // the snapshot now watches staff
	s.expect("member of staff", s.run(member, daveTok), http.StatusOK, "")
	if n := s.countRequests(func(r graphtest.Request) bool { return r.BatchID != "" && strings.Contains(r.Query, staff) }); n != 1 {
		t.Errorf("%v; want a sweep reading staff's instances", s.srv.Requests())
	}
	s.expect("owner of staff", s.with(g, middleware.GroupOwner(staff), erinTok), http.StatusOK, "")
	s.expect("not a member", s.run(member, erinTok), http.StatusForbidden, "group_not_active")
}

// NewSnapshot refuses what would not work.
func TestNewSnapshotRefuses(t *testing.T) {
	e := newEnv(t, graphtest.Options{}, nil)
	for _, c := range []struct {
		name string
		cfg  msgraph.SnapshotConfig
	}{
		{"negative SweepInterval", msgraph.SnapshotConfig{SweepInterval: -time.Second}},
		{"negative MaxStale", msgraph.SnapshotConfig{MaxStale: -time.Second}},
		{"negative SweepTimeout", msgraph.SnapshotConfig{SweepTimeout: -time.Second}},
		{"RefreshAhead below NoRefreshAhead", msgraph.SnapshotConfig{RefreshAhead: -2}},
		{"RefreshAhead as long as SweepInterval", msgraph.SnapshotConfig{SweepInterval: time.Second, RefreshAhead: time.Second}},
		{"group not a GUID", msgraph.SnapshotConfig{Groups: []string{"staff"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := msgraph.NewSnapshot(e.src, c.cfg); !errors.Is(err, msgraph.ErrInvalidConfig) {
				t.Errorf("NewSnapshot: %v, want ErrInvalidConfig", err)
			}
		})
	}
	if _, err := msgraph.NewSnapshot(nil, msgraph.SnapshotConfig{}); !errors.Is(err, msgraph.ErrInvalidConfig) {
		t.Errorf("NewSnapshot(nil): %v, want ErrInvalidConfig", err)
	}
	if _, err := newSnapshot(t, e, msgraph.SnapshotConfig{}).Lookup(context.Background(), user("not-a-guid")); !errors.Is(err, graphcheck.ErrInvalidPrincipal) {
		t.Errorf("Lookup of an ID that is no GUID: %v", err)
	}
}

// With RefreshAhead, a Lookup that finds the snapshot in its last fifth
// answers at once and sweeps in the background.
func TestSnapshotRefreshAhead(t *testing.T) {
	e := newEnv(t, graphtest.Options{}, nil)
	seedSnapshotTenant(t, e)
	sn, err := msgraph.NewSnapshot(e.src, msgraph.SnapshotConfig{SweepInterval: 50 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := sn.Lookup(ctx, user(alice)); err != nil {
		t.Fatal(err)
	}
	first, _ := sn.Info(graphtest.TenantID)
	e.clock.Advance(40 * time.Second)
	if _, err := sn.Lookup(ctx, user(alice)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second) // a bound on a wait, not a figure
	for {
		if info, _ := sn.Info(graphtest.TenantID); info.FetchedAt.After(first.FetchedAt) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no background sweep after a Lookup in the refresh window")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

package msgraph_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/graphcheck/msgraph"
)

// lookupResult is what a Lookup run in the background returned.
type lookupResult struct {
	st  *graphcheck.State
	err error
}

// lookupAsync runs a Lookup of p in the background.
func lookupAsync(src *msgraph.Source, ctx context.Context, p graphcheck.Principal) <-chan lookupResult {
	ch := make(chan lookupResult, 1)
	go func() {
		st, err := src.Lookup(ctx, p)
		ch <- lookupResult{st, err}
	}()
	return ch
}

// A Purge issued while a Lookup is in flight is not undone by that Lookup:
// the risk it read before the purge ("no record") is not cached after it,
// so the next Lookup reads the risk an incident responder just raised.
// Without the purge generation, the first Lookup stored "no risk" after
// the purge and the user read "no risk" for RiskTTL.
func TestPurgeDuringLookupDoesNotCacheTheRiskReadBefore(t *testing.T) {
	for _, all := range []bool{false, true} {
		name := "Purge"
		if all {
			name = "PurgeAll"
		}
		t.Run(name, func(t *testing.T) {
			g := newGate(1, true) // the lookup's only $batch, answered
			e := newEnv(t, graphtest.Options{}, func(_ *stack, c *msgraph.Config) { c.Transport = g })
			risky := need(user(alice), graphcheck.NeedRisk)

			first := lookupAsync(e.src, context.Background(), risky)
			<-g.held // Graph has answered "no riskyUser record"; the Source has not read it
			must(t, e.srv.SetUserRisk(alice, "high", "atRisk"))
			if all {
				e.src.PurgeAll()
			} else {
				e.src.Purge(graphtest.TenantID, alice)
			}
			close(g.released)
			if r := <-first; r.err != nil || r.st.Risk.AtRisk() {
				t.Fatalf("first lookup: %+v, %v; want the risk read before the purge", r.st, r.err)
			}

			st := e.mustLookup(risky)
			if !st.Risk.AtRisk() {
				t.Errorf("after the purge: risk %+v, want high and atRisk", st.Risk)
			}
			if n := e.subRequests("/identityProtection/"); n != 2 {
				t.Errorf("%d riskyUser requests, want 2: the second lookup must not be served from the cache", n)
			}
		})
	}
}

// PurgeAll issued while the tenant's group-roles fetch is in flight: that
// fetch still answers the Lookup that started it, but its map is not
// stored, and a Lookup starting after the purge does not join it but
// fetches its own. Without the generation, the old fetch stored the map it
// read before the purge (a role the group no longer holds) over the fresh
// one; without a new singleflight group, the later Lookup joined the old
// fetch and waited for the pre-purge answer.
func TestPurgeAllDuringGroupRolesFetch(t *testing.T) {
	g := newGate(3, true) // 1: alice's $batch, 2: the group list, 3: the groups' role instances
	e := newEnv(t, graphtest.Options{}, func(_ *stack, c *msgraph.Config) { c.Transport = g })
	must(t, e.srv.AssignRole(admins, ga, "/", time.Time{}, time.Time{}))
	must(t, e.srv.AddGroupMember(admins, alice))

	first := lookupAsync(e.src, context.Background(), user(alice))
	<-g.held // Graph has said that admins holds Global Administrator
	must(t, e.srv.RemoveRoleAssignment(admins, ga, "/"))
	e.src.PurgeAll()

	// A Lookup after the purge fetches the groups' roles itself. Had it
	// joined the held fetch, it would wait until this deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	second := <-lookupAsync(e.src, ctx, user(alice))
	if errors.Is(second.err, context.DeadlineExceeded) {
		t.Fatal("the Lookup after PurgeAll joined the group-roles fetch that started before it")
	}
	if second.err != nil {
		t.Fatal(second.err)
	}
	if _, ok := second.st.RoleActive(t0, ga, "/"); ok {
		t.Error("the Lookup after PurgeAll holds the role the group lost")
	}

	close(g.released)
	if r := <-first; r.err != nil {
		t.Fatalf("first lookup: %v", r.err)
	}
	// Within GroupRolesTTL, from the cache: the map stored after the purge.
	e.srv.ResetRequests()
	st := e.mustLookup(user(alice))
	if _, ok := st.RoleActive(t0, ga, "/"); ok {
		t.Error("the group-roles map read before PurgeAll was stored after it")
	}
	if n := e.subRequests("/groups"); n != 0 {
		t.Errorf("the group list was fetched %d times, want 0 (cached since the purge)", n)
	}
}

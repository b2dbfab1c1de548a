package middleware

// Memory figures (issue 7, item 6): the live heap one entry of each cache
// costs, measured as runtime.MemStats.HeapAlloc after GC before and after
// filling a fresh cache, divided by the number of entries.
//
//	go test -run XXX -bench Memory -benchmem ./middleware/
//
// The Guard's figure with a real msgraph.Source is
// BenchmarkMemoryPerPrincipal in graphcheck/msgraph; the one here uses a
// SourceFunc that builds the same typical state, so the two can be compared.
// These benchmarks live in package middleware to check the caches' lengths.

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/graphcheck/graphtest"
)

// memEntries is how many tokens or principals fill a cache.
const memEntries = 5000

var memT0 = time.Date(2025, 6, 2, 8, 0, 0, 0, time.UTC)

func memOID(i int) string { return fmt.Sprintf("e0000000-0000-4000-8000-%012x", i) }

// memHeap returns the live heap after two collections.
func memHeap() int64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// BenchmarkMemoryPerToken verifies 5000 distinct access tokens with a
// fresh Authenticator and reports the live heap its verified-token cache
// gained per token (B/token): the SHA-256 key, the entry and the Principal
// with every claim it copies. The tokens are typical user tokens (name,
// username, scp, two wids, one group); the raw tokens, kept by the caller,
// are not counted (the cache holds only their hash).
func BenchmarkMemoryPerToken(b *testing.B) {
	clock := graphtest.NewClock(memT0)
	tenant := graphtest.NewServer(graphtest.Options{Clock: clock})
	b.Cleanup(tenant.Close)
	toks := make([]string, memEntries)
	size := 0
	for i := range toks {
		toks[i] = tenant.MustMint(graphtest.Token{
			ObjectID: memOID(i), Name: "Jane Doe", Username: fmt.Sprintf("user%05d@contoso.example", i),
			Wids:   []string{RoleHelpdeskAdministrator, RoleUserAdministrator},
			Groups: []string{"9e000000-0000-4000-8000-0000000000e1"},
		})
		size += len(toks[i])
	}
	cfg := AuthenticatorConfig{
		Tenants: []string{graphtest.TenantID}, Audiences: []string{graphtest.APIClientID},
		Authority: tenant.URL, Now: clock.Now, Logger: slog.New(slog.DiscardHandler),
	}
	ctx := context.Background()
	var perToken float64
	for b.Loop() {
		a, err := NewAuthenticator(ctx, cfg)
		if err != nil {
			b.Fatal(err)
		}
		before := memHeap()
		for _, raw := range toks {
			if _, err := a.Verify(ctx, raw); err != nil {
				b.Fatal(err)
			}
		}
		after := memHeap()
		if n := a.cache.len(); n != memEntries {
			b.Fatalf("token cache holds %d tokens, want %d", n, memEntries)
		}
		perToken = float64(after-before) / memEntries
		runtime.KeepAlive(a)
	}
	b.ReportMetric(perToken, "B/token")
	b.ReportMetric(float64(size)/memEntries, "token-bytes")
}

// BenchmarkMemoryPerCachedState fills a fresh Guard's cache with 5000
// principals whose Source (a SourceFunc) answers with a typical state, as
// msgraph.Source would decode it: 2 roles and 1 PIM-for-Groups membership,
// every string freshly allocated. It reports the live heap gained per
// principal (B/principal). Target: at most 2 KB.
func BenchmarkMemoryPerCachedState(b *testing.B) {
	end := memT0.Add(8 * time.Hour)
	src := graphcheck.SourceFunc(func(_ context.Context, p graphcheck.Principal) (*graphcheck.State, error) {
		return &graphcheck.State{
			TenantID: p.TenantID, ObjectID: p.ObjectID, FetchedAt: memT0,
			Roles: []graphcheck.RoleAssignment{
				{RoleDefinitionID: strings.Clone(RoleHelpdeskAdministrator), DirectoryScopeID: strings.Clone("/"),
					AssignmentType: graphcheck.AssignmentAssigned},
				{RoleDefinitionID: strings.Clone(RoleUserAdministrator), DirectoryScopeID: strings.Clone("/"),
					AssignmentType: graphcheck.AssignmentActivated, Window: graphcheck.Window{Start: memT0, End: end}},
			},
			Groups: []graphcheck.GroupMembership{
				{GroupID: strings.Clone("9e000000-0000-4000-8000-0000000000e1"), AccessID: strings.Clone(graphcheck.AccessMember),
					AssignmentType: graphcheck.AssignmentAssigned},
			},
		}, nil
	})
	cfg := GuardConfig{Source: src, Now: func() time.Time { return memT0 }, Logger: slog.New(slog.DiscardHandler)}
	oids := make([]string, memEntries)
	for i := range oids {
		oids[i] = memOID(i)
	}
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	var perPrincipal float64
	for b.Loop() {
		g, err := NewGuard(cfg)
		if err != nil {
			b.Fatal(err)
		}
		h := g.Require(Role(RoleHelpdeskAdministrator))(ok)
		before := memHeap()
		for _, oid := range oids {
			// The IDs are copied, as the Authenticator's Principal would
			// own them, so that what the cache keeps of them is counted.
			r := httptest.NewRequest(http.MethodGet, "/api/admin", nil)
			p := &Principal{TenantID: strings.Clone(graphtest.TenantID), ObjectID: strings.Clone(oid)}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r.WithContext(ContextWithPrincipal(r.Context(), p)))
			if rec.Code != http.StatusOK {
				b.Fatalf("%s: status %d", oid, rec.Code)
			}
		}
		after := memHeap()
		if n := g.cache.Len(); n != memEntries {
			b.Fatalf("state cache holds %d principals, want %d", n, memEntries)
		}
		perPrincipal = float64(after-before) / memEntries
		runtime.KeepAlive(g)
	}
	b.ReportMetric(perPrincipal, "B/principal")
}

package redisstore_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/internal/redistest"
	"github.com/pimguard/pimguard/middleware"
	"github.com/pimguard/pimguard/redisstore"
)

// The one test stack of this package: a real redis-server, a fake Source
// whose answer the test controls, and n replicas, each a Store and a Guard
// in front of a handler that answers 200.
const (
	tenantID = "11111111-1111-4111-8111-111111111111"
	userID   = "22222222-2222-4222-8222-222222222222"
	roleID   = "62e90394-69f5-4237-9190-012177145e10" // Global Administrator
)

// testKey is a fleet key for tests (32 bytes). Never use a fixed key in
// production.
var testKey = []byte("pimguard-test-fleet-key-32-bytes")

// source is a Source whose answer the test switches: the role active or
// not (for everyone, or never for the principals in never), an optional
// delay, and a count of lookups.
type source struct {
	active  atomic.Bool
	lookups atomic.Int64
	delay   atomic.Int64 // nanoseconds
	fail    atomic.Bool
	now     func() time.Time // nil: time.Now
	never   sync.Map         // object IDs that never hold the role
}

func (s *source) Lookup(ctx context.Context, p graphcheck.Principal) (*graphcheck.State, error) {
	s.lookups.Add(1)
	if d := time.Duration(s.delay.Load()); d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if s.fail.Load() {
		return nil, graphcheck.ErrUnavailable
	}
	now := time.Now()
	if s.now != nil {
		now = s.now()
	}
	st := &graphcheck.State{TenantID: p.TenantID, ObjectID: p.ObjectID, FetchedAt: now}
	if _, never := s.never.Load(p.ObjectID); s.active.Load() && !never {
		st.Roles = []graphcheck.RoleAssignment{{RoleDefinitionID: roleID, DirectoryScopeID: "/", AssignmentType: graphcheck.AssignmentActivated,
			Window: graphcheck.Window{Start: now.Add(-time.Hour), End: now.Add(time.Hour)}}}
	}
	return st, nil
}

type replica struct {
	store   *redisstore.Store
	guard   *middleware.Guard
	handler http.Handler
}

type fleet struct {
	redis    *redistest.Server
	src      *source
	replicas []*replica
}

type fleetOptions struct {
	storeConfig func(*redisstore.Config)
	guardConfig func(*middleware.GuardConfig)
	local       bool             // no Shared tier: replicas as they were before fleet mode
	now         func() time.Time // the clock of Source, Guards and Stores; nil: time.Now
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newFleet starts redis-server and n replicas against it.
func newFleet(t testing.TB, n int, o fleetOptions) *fleet {
	t.Helper()
	f := &fleet{src: &source{now: o.now}}
	if !o.local {
		f.redis = redistest.Start(t)
	}
	f.src.active.Store(true)
	for range n {
		f.replicas = append(f.replicas, f.newReplica(t, o))
	}
	return f
}

func (f *fleet) newReplica(t testing.TB, o fleetOptions) *replica {
	t.Helper()
	gcfg := middleware.GuardConfig{Source: f.src, Logger: quiet(), Now: o.now}
	var st *redisstore.Store
	if !o.local {
		cfg := redisstore.Config{URL: f.redis.URL(), Key: testKey, Logger: quiet(), ProbeInterval: 50 * time.Millisecond, Now: o.now}
		if o.storeConfig != nil {
			o.storeConfig(&cfg)
		}
		var err error
		if st, err = redisstore.New(cfg); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		gcfg.Shared = st
	}
	if o.guardConfig != nil {
		o.guardConfig(&gcfg)
	}
	g, err := middleware.NewGuard(gcfg)
	if err != nil {
		t.Fatal(err)
	}
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	return &replica{store: st, guard: g, handler: g.Require(middleware.Role(roleID))(ok)}
}

// do sends one request as the test user through replica r and returns
// the status.
func (r *replica) do() int {
	return r.doAs(userID)
}

func (r *replica) doAs(oid string) int {
	req := httptest.NewRequest(http.MethodGet, "/admin", nil)
	req = req.WithContext(middleware.ContextWithPrincipal(req.Context(), &middleware.Principal{TenantID: tenantID, ObjectID: oid}))
	rec := httptest.NewRecorder()
	r.handler.ServeHTTP(rec, req)
	return rec.Code
}

// waitConnected waits (bounded) until every replica's Store reaches Redis.
func (f *fleet) waitConnected(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, r := range f.replicas {
		for r.store != nil && !r.store.Connected() {
			if time.Now().After(deadline) {
				t.Fatal("a replica did not connect to Redis within 10s")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

package middleware_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/internal/syncio"
	"github.com/pimguard/pimguard/middleware"
)

// fakeDirectory is a live PIM source over a mutable in-memory directory. Each
// lookup builds graphcheck.Facts the way a Graph source would (only what is
// active at the clock's now; a PIM-for-Groups member instance makes the
// principal a transitive member of the group while it lasts) and applies
// graphcheck.Combine, so the domain rules are those of production.
type fakeDirectory struct {
	clock *graphtest.Clock

	mu          sync.Mutex
	roles       map[string][]graphcheck.RoleAssignment  // by principal
	memberships map[string][]graphcheck.GroupMembership // by principal
	groupRoles  map[string][]graphcheck.RoleAssignment  // by role-assignable group
	err         error                                   // returned by every lookup while set
	onLookup    func(graphcheck.Principal)              // called at the start of each lookup

	calls   atomic.Int64
	lastSP  atomic.Bool // ServicePrincipal of the last lookup
	lastKey atomic.Value
}

func newFakeDirectory(clock *graphtest.Clock) *fakeDirectory {
	return &fakeDirectory{
		clock:       clock,
		roles:       map[string][]graphcheck.RoleAssignment{},
		memberships: map[string][]graphcheck.GroupMembership{},
		groupRoles:  map[string][]graphcheck.RoleAssignment{},
	}
}

// source is the fake as a graphcheck.Source.
func (d *fakeDirectory) source() graphcheck.Source { return graphcheck.SourceFunc(d.lookup) }

func (d *fakeDirectory) lookup(ctx context.Context, p graphcheck.Principal) (*graphcheck.State, error) {
	d.calls.Add(1)
	d.lastSP.Store(p.ServicePrincipal)
	d.lastKey.Store(p.Key())
	d.mu.Lock()
	hook := d.onLookup
	d.mu.Unlock()
	if hook != nil {
		hook(p)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err != nil {
		return nil, d.err
	}
	now := d.clock.Now()
	f := graphcheck.Facts{Principal: p, FetchedAt: now, GroupRoles: map[string][]graphcheck.RoleAssignment{}}
	f.Own = append(f.Own, d.roles[p.ObjectID]...)
	for _, m := range d.memberships[p.ObjectID] {
		if !m.ActiveAt(now) {
			continue
		}
		f.Memberships = append(f.Memberships, m)
		if m.AccessID == graphcheck.AccessMember {
			_, assignable := d.groupRoles[m.GroupID]
			f.Groups = append(f.Groups, graphcheck.GroupRef{ID: m.GroupID, IsAssignableToRole: assignable})
			f.GroupRoles[m.GroupID] = d.groupRoles[m.GroupID]
		}
	}
	return graphcheck.Combine(f), nil
}

func (d *fakeDirectory) edit(f func(d *fakeDirectory)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f(d)
}

// activateRole gives oid an active assignment of role in scope from now for dur
// (0: permanent).
func (d *fakeDirectory) activateRole(oid, role, scope string, dur time.Duration) time.Time {
	now := d.clock.Now()
	var end time.Time
	if dur > 0 {
		end = now.Add(dur)
	}
	d.edit(func(d *fakeDirectory) {
		d.roles[oid] = append(d.roles[oid], graphcheck.RoleAssignment{
			RoleDefinitionID: role, DirectoryScopeID: scope, AssignmentType: graphcheck.AssignmentActivated,
			Window: graphcheck.Window{Start: now, End: end},
		})
	})
	return end
}

func (d *fakeDirectory) deactivateRoles(oid string) {
	d.edit(func(d *fakeDirectory) { delete(d.roles, oid) })
}

// activateGroup gives oid an active PIM-for-Groups instance from now for dur.
func (d *fakeDirectory) activateGroup(oid, gid, access string, dur time.Duration) time.Time {
	now := d.clock.Now()
	end := now.Add(dur)
	d.edit(func(d *fakeDirectory) {
		d.memberships[oid] = append(d.memberships[oid], graphcheck.GroupMembership{
			GroupID: gid, AccessID: access, AssignmentType: graphcheck.AssignmentActivated,
			Window: graphcheck.Window{Start: now, End: end},
		})
	})
	return end
}

func (d *fakeDirectory) deactivateGroups(oid string) {
	d.edit(func(d *fakeDirectory) { delete(d.memberships, oid) })
}

// makeRoleAssignable gives the group a permanent tenant-wide role.
func (d *fakeDirectory) makeRoleAssignable(gid, role string) {
	d.edit(func(d *fakeDirectory) {
		d.groupRoles[gid] = append(d.groupRoles[gid], graphcheck.RoleAssignment{
			RoleDefinitionID: role, DirectoryScopeID: graphcheck.TenantScope, AssignmentType: graphcheck.AssignmentAssigned,
		})
	})
}

func (d *fakeDirectory) fail(err error) { d.edit(func(d *fakeDirectory) { d.err = err }) }

// guardFixture is a fake tenant, an Authenticator, a fake live source and a
// Guard, all on one fake clock.
type guardFixture struct {
	*fixture
	dir    *fakeDirectory
	guard  *middleware.Guard
	glogs  *syncio.Buffer
	served atomic.Int64 // calls of the protected handler
}

func newGuardFixture(t *testing.T, edit func(*middleware.GuardConfig)) *guardFixture {
	t.Helper()
	f := newFixture(t, nil)
	g := &guardFixture{fixture: f, dir: newFakeDirectory(f.clock), glogs: &syncio.Buffer{}}
	cfg := middleware.GuardConfig{
		Source: g.dir.source(),
		Now:    f.clock.Now,
		Logger: slog.New(slog.NewJSONHandler(g.glogs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if edit != nil {
		edit(&cfg)
	}
	guard, err := middleware.NewGuard(cfg)
	if err != nil {
		t.Fatalf("NewGuard: %v", err)
	}
	g.guard = guard
	return g
}

// protected answers 200 with the string form of the active roles and groups.
func (g *guardFixture) protected() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.served.Add(1)
		var out []string
		if s, ok := middleware.LiveStateFromContext(r.Context()); ok {
			for _, ra := range s.ActiveRoles(g.clock.Now()) {
				out = append(out, "role:"+ra.RoleDefinitionID+"@"+ra.DirectoryScopeID+"/via="+ra.ViaGroupID)
			}
			for _, gm := range s.ActiveGroups(g.clock.Now()) {
				out = append(out, "group-"+gm.AccessID+":"+gm.GroupID)
			}
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte(strings.Join(out, "\n")))
	})
}

// do sends GET /admin with the token through Authenticator and Require(req).
func (g *guardFixture) do(req middleware.Requirement, token string) *httptest.ResponseRecorder {
	g.t.Helper()
	return g.doWith(g.guard.Require(req), token)
}

func (g *guardFixture) doWith(mw func(http.Handler) http.Handler, token string) *httptest.ResponseRecorder {
	g.t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/admin", nil)
	r.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	g.auth.Handler(mw(g.protected())).ServeHTTP(rec, r)
	return rec
}

// guardBody is a rejection body with the Guard's members.
type guardBody struct {
	Error            string   `json:"error"`
	ErrorDescription string   `json:"error_description"`
	Code             string   `json:"code"`
	Required         []string `json:"required"`
	EndedAt          string   `json:"ended_at"`
}

func decodeBody(t *testing.T, rec *httptest.ResponseRecorder) guardBody {
	t.Helper()
	var b guardBody
	if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
		t.Fatalf("body %q: %v", rec.Body, err)
	}
	return b
}

// expect checks status and, for rejections, the code.
func expect(t *testing.T, rec *httptest.ResponseRecorder, status int, code string) guardBody {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status %d, want %d; body %s", rec.Code, status, rec.Body)
	}
	if status == http.StatusOK {
		return guardBody{}
	}
	b := decodeBody(t, rec)
	if b.Code != code {
		t.Fatalf("code %q, want %q; body %s", b.Code, code, rec.Body)
	}
	return b
}

// logRecords parses the JSON lines of the guard's log.
func (g *guardFixture) logRecords() []map[string]any {
	g.t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(g.glogs.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			g.t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func (g *guardFixture) lastRecord() map[string]any {
	g.t.Helper()
	recs := g.logRecords()
	if len(recs) == 0 {
		g.t.Fatal("no decision record")
	}
	return recs[len(recs)-1]
}

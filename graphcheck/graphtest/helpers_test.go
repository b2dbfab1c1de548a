package graphtest_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck/graphtest"
)

// Object IDs used across the tests.
const (
	alice    = "a11ce000-0000-4000-8000-000000000001"
	bob      = "b0b00000-0000-4000-8000-000000000002"
	carol    = "ca201000-0000-4000-8000-000000000003"
	daemon   = "dae30000-0000-4000-8000-000000000004" // a service principal
	admins   = "ad315000-0000-4000-8000-00000000000a" // role-assignable
	staff    = "57aff000-0000-4000-8000-00000000000b" // plain
	everyone = "e7e20000-0000-4000-8000-00000000000c" // plain, contains staff
	au1      = "a0000000-0000-4000-8000-0000000000a1" // an administrative unit
)

var t0 = time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)

// fixture is a seeded tenant and a plain HTTP client for its Graph half.
type fixture struct {
	t     *testing.T
	srv   *graphtest.Server
	clock *graphtest.Clock
	token string // sent as the bearer token when non-empty
}

func newFixture(t *testing.T, opts graphtest.Options) *fixture {
	t.Helper()
	clock := graphtest.NewClock(t0)
	opts.Clock = clock
	srv := graphtest.NewServer(opts)
	t.Cleanup(srv.Close)
	f := &fixture{t: t, srv: srv, clock: clock}
	must(t, srv.AddUser(alice, "alice@contoso.test"))
	must(t, srv.AddUser(bob, "bob@contoso.test"))
	must(t, srv.AddUser(carol, "carol@contoso.test"))
	must(t, srv.AddServicePrincipal(daemon, "daemon"))
	must(t, srv.AddGroup(admins, "Admins", true))
	must(t, srv.AddGroup(staff, "Staff", false))
	must(t, srv.AddGroup(everyone, "Everyone", false))
	must(t, srv.AddGroupMember(everyone, staff))
	return f
}

// with returns a copy of f reporting to t (for subtests).
func (f *fixture) with(t *testing.T) *fixture {
	g := *f
	g.t = t
	return &g
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// reply is a decoded Graph answer.
type reply struct {
	status int
	header http.Header
	raw    []byte
	body   map[string]any
}

func (r reply) values(t *testing.T) []map[string]any {
	t.Helper()
	vs, ok := r.body["value"].([]any)
	if !ok {
		t.Fatalf("no value array in %d %s", r.status, r.raw)
	}
	out := make([]map[string]any, len(vs))
	for i, v := range vs {
		out[i] = v.(map[string]any)
	}
	return out
}

func (r reply) errorCode() string {
	e, _ := r.body["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

// do sends a request to path (relative to GraphURL unless absolute) with an
// optional JSON body and header pairs.
func (f *fixture) do(method, path string, body any, hdr ...string) reply {
	f.t.Helper()
	u := path
	if !strings.HasPrefix(path, "http") {
		u = f.srv.GraphURL() + path
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			f.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		f.t.Fatal(err)
	}
	if f.token != "" {
		req.Header.Set("Authorization", "Bearer "+f.token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		f.t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	r := reply{status: resp.StatusCode, header: resp.Header, raw: raw}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

func (f *fixture) get(path string, hdr ...string) reply {
	f.t.Helper()
	return f.do(http.MethodGet, path, nil, hdr...)
}

// getOK fetches path and fails the test unless the answer is 200.
func (f *fixture) getOK(path string, hdr ...string) reply {
	f.t.Helper()
	r := f.get(path, hdr...)
	if r.status != http.StatusOK {
		f.t.Fatalf("GET %s: %d %s", path, r.status, r.raw)
	}
	return r
}

func byPrincipal(oid string) string {
	return "?$filter=" + strings.ReplaceAll("principalId eq '"+oid+"'", " ", "%20")
}

const (
	assignmentsPath = "/roleManagement/directory/roleAssignmentScheduleInstances"
	groupAssignPath = "/identityGovernance/privilegedAccess/group/assignmentScheduleInstances"
)

// ids returns the named property of each item.
func ids(items []map[string]any, prop string) []string {
	var out []string
	for _, it := range items {
		s, _ := it[prop].(string)
		out = append(out, s)
	}
	return out
}

// groupsOf returns the IDs of the groups GET
// .../transitiveMemberOf/microsoft.graph.group lists.
func (f *fixture) groupsOf(kind, oid string) []string {
	f.t.Helper()
	return ids(f.getOK("/"+kind+"/"+oid+"/transitiveMemberOf/microsoft.graph.group?$select=id,isAssignableToRole").values(f.t), "id")
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// list GETs a collection and checks the ids of its items, in order, and its
// @odata.context ({GraphURL}/$metadata#{context}); it returns the items.
func (f *fixture) list(path string, wantIDs []string, context string) []map[string]any {
	f.t.Helper()
	r := f.getOK(path)
	items := r.values(f.t)
	if got := ids(items, "id"); !equal(got, wantIDs) {
		f.t.Fatalf("ids %v, want %v", got, wantIDs)
	}
	if want := f.srv.GraphURL() + "/$metadata#" + context; r.body["@odata.context"] != want {
		f.t.Errorf("context %v, want %s", r.body["@odata.context"], want)
	}
	return items
}

package graphtest_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck/graphtest"
)

type batchReq struct {
	ID        string            `json:"id"`
	Method    string            `json:"method"`
	URL       string            `json:"url"`
	Headers   map[string]string `json:"headers,omitempty"`
	Body      any               `json:"body,omitempty"`
	DependsOn []string          `json:"dependsOn,omitempty"`
}

// batch posts requests to /$batch and returns the sub-responses by id.
func (f *fixture) batch(reqs ...batchReq) (reply, map[string]map[string]any) {
	f.t.Helper()
	r := f.do(http.MethodPost, "/$batch", map[string]any{"requests": reqs})
	if r.status != http.StatusOK {
		return r, nil
	}
	out := map[string]map[string]any{}
	resps, _ := r.body["responses"].([]any)
	for _, x := range resps {
		m := x.(map[string]any)
		out[m["id"].(string)] = m
	}
	return r, out
}

func subStatus(m map[string]any) int {
	n, _ := m["status"].(float64)
	return int(n)
}

func subBody(m map[string]any) map[string]any {
	b, _ := m["body"].(map[string]any)
	return b
}

// clientBatch is a batch like those msgraph's Source sends for one
// principal: its role and PIM for Groups instances, the role instances of
// a role-assignable group, its groups, the role-assignable groups and its
// account.
func clientBatch(oid string) []batchReq {
	eq := "$filter=principalId eq '" + oid + "'"
	return []batchReq{
		{ID: "1", Method: "GET", URL: assignmentsPath + "?" + eq + "&$select=roleDefinitionId,directoryScopeId,assignmentType,endDateTime"},
		{ID: "2", Method: "GET", URL: assignmentsPath + "?$filter=principalId eq '" + admins + "'"},
		{ID: "3", Method: "GET", URL: groupAssignPath + "?" + eq},
		{ID: "4", Method: "GET", URL: "/users/" + oid + "/transitiveMemberOf/microsoft.graph.group?$select=id,isAssignableToRole"},
		{ID: "5", Method: "GET", URL: "groups?$filter=isAssignableToRole eq true&$select=id"},
		{ID: "6", Method: "GET", URL: "/users/" + oid + "?$select=id,accountEnabled,signInSessionsValidFromDateTime,lastPasswordChangeDateTime"},
	}
}

func TestBatch(t *testing.T) {
	f := newFixture(t, graphtest.Options{})
	s := f.srv
	must(t, s.MakeEligible(alice, graphtest.RoleGlobalAdministrator, "/", time.Time{}))
	_, err := s.ActivateRole(alice, graphtest.RoleGlobalAdministrator, "/", time.Hour)
	must(t, err)
	must(t, s.AssignGroup(admins, alice, graphtest.AccessMember, time.Time{}, t0.Add(time.Hour)))
	f.token = s.MustMint(graphtest.Token{ObjectID: daemon, App: true, Audience: "https://graph.microsoft.com"})

	r, subs := f.batch(clientBatch(alice)...)
	if r.status != http.StatusOK || len(subs) != 6 {
		t.Fatalf("batch: %d %s", r.status, r.raw)
	}
	for id, m := range subs {
		if subStatus(m) != http.StatusOK {
			t.Fatalf("sub-request %s: %v", id, m)
		}
		if h, _ := m["headers"].(map[string]any); !strings.HasPrefix(fmt.Sprint(h["Content-Type"]), "application/json") {
			t.Errorf("sub-request %s headers: %v", id, h)
		}
	}
	if v := subBody(subs["1"])["value"].([]any); len(v) != 1 || v[0].(map[string]any)["assignmentType"] != "Activated" {
		t.Errorf("roles: %v", v)
	}
	if v := subBody(subs["4"])["value"].([]any); len(v) != 1 || v[0].(map[string]any)["id"] != admins {
		t.Errorf("groups: %v", v)
	}
	if u := subBody(subs["6"]); u["accountEnabled"] != true {
		t.Errorf("user: %v", u)
	}
	// Recorded: the outer POST, then each sub-request with the outer token.
	reqs := s.Requests()
	if len(reqs) != 7 || reqs[0].Path != "/v1.0/$batch" || reqs[0].BatchID != "" {
		t.Fatalf("recorded %+v", reqs)
	}
	for i, rq := range reqs[1:] {
		if rq.BatchID != fmt.Sprint(i+1) || rq.BearerToken != f.token || !strings.HasPrefix(rq.Path, "/v1.0/") {
			t.Errorf("sub-request record %+v", rq)
		}
	}
	if reqs[5].Path != "/v1.0/groups" || reqs[5].Query != "$filter=isAssignableToRole eq true&$select=id" {
		t.Errorf("relative URL without slash recorded as %+v", reqs[5])
	}

	t.Run("partial failure", func(t *testing.T) {
		f := f.with(t)
		remove := s.InjectGraphFault(graphtest.GraphMatch{PathPrefix: "/roleManagement/", Scope: graphtest.InsideBatch}, graphtest.ScopeNotGrantedFault())
		defer remove()
		_, subs := f.batch(clientBatch(alice)...)
		for _, id := range []string{"1", "2"} {
			if subStatus(subs[id]) != http.StatusForbidden || subBody(subs[id])["error"].(map[string]any)["code"] != "UnknownError" {
				t.Errorf("sub-request %s: %v", id, subs[id])
			}
		}
		for _, id := range []string{"3", "4", "5", "6"} {
			if subStatus(subs[id]) != http.StatusOK {
				t.Errorf("sub-request %s: %v", id, subs[id])
			}
		}
		// InsideBatch leaves standalone requests alone.
		f.getOK(assignmentsPath)
	})

	t.Run("20-request cap", func(t *testing.T) {
		f := f.with(t)
		var reqs []batchReq
		for i := range 21 {
			reqs = append(reqs, batchReq{ID: fmt.Sprint(i), Method: "GET", URL: "/users/" + alice + "?$select=id"})
		}
		r, subs := f.batch(reqs[:20]...)
		if r.status != http.StatusOK || len(subs) != 20 {
			t.Fatalf("20 requests: %d", r.status)
		}
		r, _ = f.batch(reqs...)
		if r.status != http.StatusBadRequest || r.errorCode() != "BadRequest" {
			t.Fatalf("21 requests: %d %s", r.status, r.raw)
		}
	})

	t.Run("malformed batches", func(t *testing.T) {
		f := f.with(t)
		tests := []struct {
			name string
			reqs []batchReq
		}{
			{"empty", nil},
			{"duplicate id", []batchReq{{ID: "1", Method: "GET", URL: "/groups"}, {ID: "1", Method: "GET", URL: "/groups"}}},
			{"missing id", []batchReq{{Method: "GET", URL: "/groups"}}},
			{"missing url", []batchReq{{ID: "1", Method: "GET"}}},
			{"dependency on a later request", []batchReq{{ID: "1", Method: "GET", URL: "/groups", DependsOn: []string{"2"}}, {ID: "2", Method: "GET", URL: "/groups"}}},
		}
		for _, tt := range tests {
			if r, _ := f.batch(tt.reqs...); r.status != http.StatusBadRequest {
				t.Errorf("%s: %d %s", tt.name, r.status, r.raw)
			}
		}
		if r := f.do(http.MethodPost, "/$batch", "not an object"); r.status != http.StatusBadRequest {
			t.Errorf("not JSON object: %d", r.status)
		}
		if r := f.get("/$batch"); r.status != http.StatusMethodNotAllowed {
			t.Errorf("GET $batch: %d", r.status)
		}
	})

	t.Run("gzip-compressed batch", func(t *testing.T) {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_ = json.NewEncoder(zw).Encode(map[string]any{"requests": clientBatch(alice)})
		_ = zw.Close()
		req, _ := http.NewRequest(http.MethodPost, s.GraphURL()+"/$batch", &buf)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Content-Encoding", "gzip")
		resp, err := s.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct{ Responses []map[string]any }
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 || len(out.Responses) != 6 {
			t.Fatalf("gzip batch: %d %v %v", resp.StatusCode, err, out)
		}
	})

	t.Run("sub-request errors", func(t *testing.T) {
		f := f.with(t)
		_, subs := f.batch(
			batchReq{ID: "a", Method: "GET", URL: "/users/00000000-0000-4000-8000-000000000000"},
			batchReq{ID: "b", Method: "GET", URL: "/users/" + alice, DependsOn: []string{"a"}},
			batchReq{ID: "c", Method: "POST", URL: "/$batch"},
			batchReq{ID: "d", Method: "GET", URL: "https://graph.microsoft.com/v1.0/users/" + bob},
			batchReq{ID: "e", Method: "DELETE", URL: groupAssignPath},
			batchReq{ID: "f", Method: "GET", URL: "/users/" + bob + "?$select=id"},
		)
		want := map[string]int{"a": 404, "b": 424, "c": 400, "d": 400, "e": 405, "f": 200}
		for id, st := range want {
			if subStatus(subs[id]) != st {
				t.Errorf("sub-request %s: %v, want status %d", id, subs[id], st)
			}
		}
		if code := subBody(subs["a"])["error"].(map[string]any)["code"]; code != "Request_ResourceNotFound" {
			t.Errorf("404 code %v", code)
		}
	})

	t.Run("nextLink in a sub-response is absolute", func(t *testing.T) {
		f := f.with(t)
		s.SetGraphPageSize(1)
		defer s.SetGraphPageSize(0)
		must(t, s.AssignRole(alice, graphtest.RoleGlobalReader, "/", time.Time{}, time.Time{}))
		_, subs := f.batch(batchReq{ID: "1", Method: "GET", URL: assignmentsPath + "?$filter=principalId eq '" + alice + "'"})
		next, _ := subBody(subs["1"])["@odata.nextLink"].(string)
		if !strings.HasPrefix(next, s.GraphURL()+assignmentsPath+"?") {
			t.Fatalf("nextLink %q", next)
		}
		if items := f.getOK(next).values(t); len(items) != 1 {
			t.Fatalf("second page: %v", items)
		}
	})
}

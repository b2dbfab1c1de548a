package graphtest_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck/graphtest"
)

// samplesDir holds Microsoft's documented response bodies (see SOURCES.md
// there), relative to this package's directory.
const samplesDir = "../../../shared/graph-samples"

// shape is the JSON types seen at one place in a document, merged over array
// elements.
type shape struct {
	types map[string]bool
	props map[string]*shape
	elem  *shape
}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case float64:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	default:
		return "object"
	}
}

func infer(s *shape, v any) *shape {
	if s == nil {
		s = &shape{types: map[string]bool{}}
	}
	s.types[jsonType(v)] = true
	switch v := v.(type) {
	case map[string]any:
		if s.props == nil {
			s.props = map[string]*shape{}
		}
		for k, x := range v {
			s.props[k] = infer(s.props[k], x)
		}
	case []any:
		for _, x := range v {
			s.elem = infer(s.elem, x)
		}
	}
	return s
}

// How property sets are compared.
type keyMode int

const (
	sameKeys     keyMode = iota // ours has exactly the sample's properties
	oursInside                  // ours is within the sample's (a $select)
	sampleInside                // the sample's are within ours (ours adds detail)
)

// compare reports where ours differs from the sample's shape: a property
// missing or extra (per mode; extra @-annotations are always allowed) or a
// JSON type the sample never shows there.
func compare(sample *shape, ours any, path string, mode keyMode) []string {
	var diffs []string
	if typ := jsonType(ours); !sample.types[typ] {
		return []string{path + ": " + typ + ", sample has " + strings.Join(sortedSet(sample.types), "|")}
	}
	switch ours := ours.(type) {
	case map[string]any:
		for k, v := range ours {
			ps, ok := sample.props[k]
			if !ok {
				if mode != sampleInside && !strings.HasPrefix(k, "@") {
					diffs = append(diffs, path+"."+k+": not in the sample")
				}
				continue
			}
			diffs = append(diffs, compare(ps, v, path+"."+k, mode)...)
		}
		if mode != oursInside {
			for k := range sample.props {
				if _, ok := ours[k]; !ok {
					diffs = append(diffs, path+"."+k+": missing")
				}
			}
		}
	case []any:
		for _, v := range ours {
			if sample.elem != nil {
				diffs = append(diffs, compare(sample.elem, v, path+"[]", mode)...)
			}
		}
	}
	return diffs
}

func sortedSet(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func decode(t *testing.T, raw []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, raw)
	}
	return v
}

// sampleCase produces the emulator's answer for the request a sample
// documents, and how to compare it.
type sampleCase struct {
	mode keyMode
	run  func(f *fixture) reply
	// skip explains why the sample's endpoint is not emulated.
	skip string
}

var sampleCases = map[string]sampleCase{
	"role_assignment_schedule_instances_list.json": {run: func(f *fixture) reply {
		must(f.t, f.srv.AssignRole(alice, graphtest.RoleGlobalAdministrator, "/", time.Time{}, time.Time{}))
		must(f.t, f.srv.AssignRole(bob, graphtest.RoleGlobalAdministrator, "/", time.Time{}, time.Time{}))
		return f.getOK(assignmentsPath)
	}},
	"role_assignment_schedule_instances_filterbycurrentuser.json": {run: func(f *fixture) reply {
		must(f.t, f.srv.AssignRole(alice, graphtest.RoleGlobalAdministrator, "/", time.Time{}, time.Time{}))
		f.token = f.srv.MustMint(graphtest.Token{ObjectID: alice})
		return f.getOK(assignmentsPath + "/filterByCurrentUser(on='principal')")
	}},
	"role_eligibility_schedule_instances_list.json": {run: func(f *fixture) reply {
		must(f.t, f.srv.MakeEligible(alice, graphtest.RoleUserAdministrator, "/", t0.Add(24*time.Hour)))
		return f.getOK(eligibilityPath)
	}},
	"role_assignments_filter_principalid.json": {run: func(f *fixture) reply {
		must(f.t, f.srv.AssignRole(alice, graphtest.RoleGlobalAdministrator, "/", time.Time{}, time.Time{}))
		must(f.t, f.srv.AssignRole(alice, graphtest.RoleGlobalReader, "/", time.Time{}, time.Time{}))
		return f.getOK("/roleManagement/directory/roleAssignments" + byPrincipal(alice))
	}},
	"transitive_role_assignments_beta.json": {run: func(f *fixture) reply {
		must(f.t, f.srv.AddGroupMember(admins, alice))
		must(f.t, f.srv.AssignRole(alice, graphtest.RoleUserAdministrator, "/", time.Time{}, time.Time{}))
		must(f.t, f.srv.AssignRole(admins, graphtest.RoleGlobalAdministrator, "/administrativeUnits/"+au1, time.Time{}, time.Time{}))
		return f.getOK(f.srv.URL+"/beta/roleManagement/directory/transitiveRoleAssignments?$count=true&$filter=principalId%20eq%20'"+alice+"'",
			"ConsistencyLevel", "eventual")
	}},
	"pim_group_assignment_schedule_instances_list.json": {run: func(f *fixture) reply {
		must(f.t, f.srv.AssignGroup(staff, alice, graphtest.AccessMember, t0.Add(-time.Hour), t0.Add(time.Hour)))
		must(f.t, f.srv.AssignGroup(staff, bob, graphtest.AccessMember, time.Time{}, time.Time{}))
		return f.getOK(groupAssignPath + "?$filter=groupId%20eq%20'" + staff + "'")
	}},
	"pim_group_assignment_schedule_instances_filterbycurrentuser.json": {run: func(f *fixture) reply {
		must(f.t, f.srv.AssignGroup(staff, alice, graphtest.AccessMember, time.Time{}, time.Time{}))
		f.token = f.srv.MustMint(graphtest.Token{ObjectID: alice})
		return f.getOK(groupAssignPath + "/filterByCurrentUser(on='principal')")
	}},
	"directoryobject_get_user_beta.json": {mode: oursInside, run: func(f *fixture) reply {
		r := f.getOK(f.srv.URL + "/beta/directoryObjects/" + alice +
			"?$select=id,accountEnabled,displayName,mail,signInSessionsValidFromDateTime,userPrincipalName,userType")
		if len(r.body) != 9 { // @odata.context, @odata.type and the seven selected
			f.t.Errorf("selected properties missing: %s", r.raw)
		}
		return r
	}},
	"user_revokesigninsessions.json": {run: func(f *fixture) reply {
		f.token = f.srv.MustMint(graphtest.Token{ObjectID: alice})
		r := f.do(http.MethodPost, "/me/revokeSignInSessions", nil)
		if r.status != http.StatusOK {
			f.t.Fatalf("revoke: %d %s", r.status, r.raw)
		}
		return r
	}},
	"error_generic_example.json": {mode: sampleInside, run: func(f *fixture) reply {
		return f.get("/users/00000000-0000-4000-8000-000000000000")
	}},
	"error_429_throttling.json": {run: func(f *fixture) reply {
		headers, err := os.ReadFile(filepath.Join(samplesDir, "error_429_throttling.headers"))
		if err != nil {
			f.t.Fatal(err)
		}
		want := ""
		for _, line := range strings.Split(string(headers), "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Retry-After:"); ok {
				want = strings.TrimSpace(v)
			}
		}
		f.srv.InjectGraphFault(graphtest.GraphMatch{}, graphtest.ThrottledFault(want))
		r := f.get("/users/" + alice)
		if r.status != http.StatusTooManyRequests || want == "" || r.header.Get("Retry-After") != want {
			f.t.Errorf("429: %d, Retry-After %q, sample %q", r.status, r.header.Get("Retry-After"), want)
		}
		return r
	}},
	// The beta sample predates the current beta schema: it has isGuest (since
	// dropped) and lacks isProcessing, so the emulator's answer is compared
	// on the properties both have, all of which must be there.
	"riskyuser_get_beta.json": {mode: oursInside, run: func(f *fixture) reply {
		must(f.t, f.srv.SetUserRisk(alice, "high", "confirmedCompromised"))
		r := f.getOK(f.srv.URL + "/beta/riskyUsers/" + alice +
			"?$select=id,riskLastUpdatedDateTime,isDeleted,riskDetail,riskLevel,riskState,userDisplayName,userPrincipalName")
		if len(r.body) != 9 { // @odata.context and the eight selected
			f.t.Errorf("selected properties missing: %s", r.raw)
		}
		return r
	}},
	// The tutorial filters on userDisplayName, which the emulator does not
	// (it filters riskyUsers on id only), and its v1.0 answer names /beta/
	// in @odata.context; the emulator names the version asked for.
	"riskyusers_list_filter_v1_tutorial.json": {run: func(f *fixture) reply {
		must(f.t, f.srv.SetUserRisk(alice, "none", "dismissed"))
		must(f.t, f.srv.SetUserRisk(bob, "high", "atRisk"))
		r := f.getOK("/identityProtection/riskyUsers?$filter=id%20eq%20'" + alice + "'")
		items := r.values(f.t)
		if len(items) != 1 || items[0]["riskDetail"] != "adminDismissedAllRiskForUser" ||
			r.body["@odata.context"] != f.srv.GraphURL()+"/$metadata#identityProtection/riskyUsers" {
			f.t.Errorf("answer: %s", r.raw)
		}
		return r
	}},
	"roledefinition_get_builtin.json": {skip: "role definitions are not emulated"},
}

func TestSampleShapes(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(samplesDir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Skipf("no samples in %s", samplesDir)
	}
	for _, file := range files {
		name := filepath.Base(file)
		t.Run(strings.TrimSuffix(name, ".json"), func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			sample := decode(t, raw)
			if name == "batch_response_with_403_authorization_requestdenied.json" {
				checkBatchSample(t, sample)
				return
			}
			c, ok := sampleCases[name]
			switch {
			case !ok:
				t.Skip("no emulator request mapped to this sample")
			case c.skip != "":
				t.Skip(c.skip)
			}
			f := newFixture(t, graphtest.Options{})
			r := c.run(f)
			for _, d := range compare(infer(nil, sample), decode(t, r.raw), "$", c.mode) {
				t.Error(d)
			}
		})
	}
}

// checkBatchSample compares a batch with a paged success, a 403 and a 405
// against Microsoft's batch sample, sub-response by sub-response.
func checkBatchSample(t *testing.T, sample any) {
	f := newFixture(t, graphtest.Options{GraphPageSize: 1})
	must(t, f.srv.AddGroupMember(staff, alice))
	must(t, f.srv.AddGroupMember(admins, alice))
	f.srv.InjectGraphFault(graphtest.GraphMatch{PathPrefix: "/groups", Scope: graphtest.InsideBatch}, graphtest.DeniedFault())
	r, _ := f.batch(
		batchReq{ID: "1", Method: "GET", URL: "/users/" + alice + "/memberOf"},
		batchReq{ID: "3", Method: "GET", URL: "/groups?$select=id"},
		batchReq{ID: "4", Method: "DELETE", URL: "/users/" + alice + "/memberOf"},
	)
	if r.status != http.StatusOK {
		t.Fatalf("batch: %d %s", r.status, r.raw)
	}
	ours := decode(t, r.raw).(map[string]any)
	responses := sample.(map[string]any)["responses"].([]any)
	byID := map[string]map[string]any{}
	for _, x := range responses {
		m := x.(map[string]any)
		byID[m["id"].(string)] = m
	}
	// The envelope: {"responses":[{"id","status","headers","body"}]}.
	envelope := infer(nil, map[string]any{"responses": []any{map[string]any{"id": "", "status": 0.0, "headers": map[string]any{}, "body": map[string]any{}}}})
	for _, x := range ours["responses"].([]any) {
		m := x.(map[string]any)
		for _, d := range compare(envelope, map[string]any{"responses": []any{map[string]any{
			"id": m["id"], "status": m["status"], "headers": map[string]any{}, "body": map[string]any{},
		}}}, "$", sameKeys) {
			t.Error(d)
		}
		if _, ok := m["headers"].(map[string]any); !ok {
			t.Errorf("sub-response %v: headers is not an object", m["id"])
		}
		body := m["body"].(map[string]any)
		switch m["id"] {
		case "1": // success with paging: same top-level properties as the sample's
			want := infer(nil, byID["1"]["body"])
			want.props["value"] = infer(nil, []any{}) // the item types differ (directoryRole vs group)
			delete(body, "@odata.count")
			if _, ok := body["@odata.nextLink"]; !ok {
				t.Errorf("sub-response 1 has no nextLink: %v", body)
			}
			body["value"] = []any{}
			for _, d := range compare(want, body, "$.responses[1].body", sameKeys) {
				t.Error(d)
			}
		default: // errors: the same envelope as the sample's Authorization_RequestDenied
			for _, d := range compare(infer(nil, byID["3"]["body"]), body, "$.responses["+m["id"].(string)+"].body", sameKeys) {
				t.Error(d)
			}
		}
	}
	wantStatus := map[string]float64{"1": 200, "3": 403, "4": 405}
	for _, x := range ours["responses"].([]any) {
		m := x.(map[string]any)
		if m["status"] != wantStatus[m["id"].(string)] || m["status"] != byID[m["id"].(string)]["status"] {
			t.Errorf("sub-response %v: status %v", m["id"], m["status"])
		}
	}
	if code := ours["responses"].([]any)[1].(map[string]any)["body"].(map[string]any)["error"].(map[string]any)["code"]; code != "Authorization_RequestDenied" {
		t.Errorf("403 code %v", code)
	}
}

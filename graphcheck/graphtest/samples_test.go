package graphtest_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck/graphtest"
)

// samplesDir holds Microsoft's documented response bodies, each with the
// request it answers (.url); SOURCES.md there says where each comes from.
const samplesDir = "testdata/graph-samples"

// readSample returns a file of samplesDir. A missing file fails the test:
// the samples are part of the repository.
func readSample(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(samplesDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

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
		return []string{path + ": " + typ + ", sample has " + strings.Join(slices.Sorted(maps.Keys(sample.types)), "|")}
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

// getOne fetches a collection that must hold one item.
func (f *fixture) getOne(path string) reply {
	f.t.Helper()
	r := f.getOK(path)
	if n := len(r.values(f.t)); n != 1 {
		f.t.Fatalf("GET %s: %d items, want 1", path, n)
	}
	return r
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
// documents, and how to compare it; or, when check is set, compares on its
// own.
type sampleCase struct {
	mode  keyMode
	run   func(f *fixture) reply
	check func(t *testing.T, sample any)
}

var sampleCases = map[string]sampleCase{
	"role_assignment_schedule_instances_list.json": {run: func(f *fixture) reply {
		must(f.t, f.srv.AssignRole(alice, graphtest.RoleGlobalAdministrator, "/", time.Time{}, time.Time{}))
		must(f.t, f.srv.AssignRole(bob, graphtest.RoleGlobalAdministrator, "/", time.Time{}, time.Time{}))
		return f.getOK(assignmentsPath)
	}},
	// The filterByCurrentUser samples hold the items the lists hold, with
	// @odata.type: the emulator serves no filterByCurrentUser, so its
	// answer to the principalId filter msgraph's Source sends must fit
	// within them.
	"role_assignment_schedule_instances_filterbycurrentuser.json": {mode: oursInside, run: func(f *fixture) reply {
		must(f.t, f.srv.AssignRole(alice, graphtest.RoleGlobalAdministrator, "/", time.Time{}, time.Time{}))
		return f.getOne(assignmentsPath + byPrincipal(alice))
	}},
	"pim_group_assignment_schedule_instances_list.json": {run: func(f *fixture) reply {
		must(f.t, f.srv.AssignGroup(staff, alice, graphtest.AccessMember, t0.Add(-time.Hour), t0.Add(time.Hour)))
		must(f.t, f.srv.AssignGroup(staff, bob, graphtest.AccessMember, time.Time{}, time.Time{}))
		return f.getOK(groupAssignPath + "?$filter=groupId%20eq%20'" + staff + "'")
	}},
	"pim_group_assignment_schedule_instances_filterbycurrentuser.json": {mode: oursInside, run: func(f *fixture) reply {
		must(f.t, f.srv.AssignGroup(staff, alice, graphtest.AccessMember, time.Time{}, time.Time{}))
		return f.getOne(groupAssignPath + byPrincipal(alice))
	}},
	// The only documented user with accountEnabled and
	// signInSessionsValidFromDateTime is a beta directoryObject; the
	// account check reads them from the v1.0 user.
	"directoryobject_get_user_beta.json": {mode: oursInside, run: func(f *fixture) reply {
		r := f.getOK("/users/" + alice +
			"?$select=id,accountEnabled,displayName,mail,signInSessionsValidFromDateTime,userPrincipalName,userType")
		if len(r.body) != 8 { // @odata.context and the seven selected
			f.t.Errorf("selected properties missing: %s", r.raw)
		}
		return r
	}},
	"error_generic_example.json": {mode: sampleInside, run: func(f *fixture) reply {
		return f.get("/users/00000000-0000-4000-8000-000000000000")
	}},
	"error_429_throttling.json": {run: func(f *fixture) reply {
		headers := readSample(f.t, "error_429_throttling.headers")
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
	// The beta sample (the v1.0 page shows a placeholder) predates the
	// current schema: it has isGuest (since dropped) and lacks isProcessing,
	// so the emulator's v1.0 answer is compared on the properties both have,
	// all of which must be there.
	"riskyuser_get_beta.json": {mode: oursInside, run: func(f *fixture) reply {
		must(f.t, f.srv.SetUserRisk(alice, "high", "confirmedCompromised"))
		r := f.getOK(riskyPath + "/" + alice +
			"?$select=id,riskLastUpdatedDateTime,isDeleted,riskDetail,riskLevel,riskState,userDisplayName,userPrincipalName")
		if len(r.body) != 9 { // @odata.context and the eight selected
			f.t.Errorf("selected properties missing: %s", r.raw)
		}
		return r
	}},
	// The tutorial filters on userDisplayName, which the emulator does not
	// (it filters riskyUsers on id only), and its v1.0 answer names /beta/
	// in @odata.context; the emulator names v1.0.
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
	"batch_response_with_403_authorization_requestdenied.json": {check: checkBatchSample},
	// The documented request asks about five groups of a directory
	// object; the emulator serves the same action on /users/{id}. The
	// same body, in a tenant where the user is a member of the four groups
	// the sample answers, must give the sample's answer exactly.
	"directoryobject_checkmembergroups.json": {run: func(f *fixture) reply {
		url := string(readSample(f.t, "directoryobject_checkmembergroups.url"))
		_, body, ok := strings.Cut(url, "\n\n")
		var req struct {
			GroupIDs []string `json:"groupIds"`
		}
		if !ok || json.Unmarshal([]byte(body), &req) != nil || len(req.GroupIDs) != 5 {
			f.t.Fatalf("the .url holds no request body with five groupIds: %q", url)
		}
		sample := decode(f.t, readSample(f.t, "directoryobject_checkmembergroups.json")).(map[string]any)
		for i, g := range req.GroupIDs {
			must(f.t, f.srv.AddGroup(g, fmt.Sprint("group ", i), false))
			if slices.Contains(sample["value"].([]any), any(g)) {
				must(f.t, f.srv.AddGroupMember(g, alice))
			}
		}
		r := f.do(http.MethodPost, "/users/"+alice+"/checkMemberGroups", req)
		if r.status != http.StatusOK || !reflect.DeepEqual(r.body["value"], sample["value"]) {
			f.t.Errorf("answer %d %s, want the sample's value %v", r.status, r.raw, sample["value"])
		}
		return r
	}},
	"administrativeunits_list.json": {check: checkAdminUnitsSample},
}

// checkAdminUnitsSample compares GET /directory/administrativeUnits with
// Microsoft's sample: the same properties, of the sample's types, except
// that every property but id may be null (the sample's unit has a
// description and hidden membership; the emulator's have neither).
func checkAdminUnitsSample(t *testing.T, sample any) {
	f := newFixture(t, graphtest.Options{})
	must(t, f.srv.AddAdministrativeUnit(au1, "Seattle District Technical Schools"))
	r := f.getOK("/directory/administrativeUnits")
	want := infer(nil, sample)
	for k, p := range want.props["value"].elem.props {
		if k != "id" {
			p.types["null"] = true
		}
	}
	for _, d := range compare(want, decode(t, r.raw), "$", sameKeys) {
		t.Error(d)
	}
	if items := r.values(t); len(items) != 1 || items[0]["id"] != au1 {
		t.Errorf("answer: %s", r.raw)
	}
}

func TestSampleShapes(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(samplesDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		if _, ok := sampleCases[filepath.Base(file)]; !ok {
			t.Errorf("%s: no case compares the emulator with it", file)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(sampleCases)) {
		t.Run(strings.TrimSuffix(name, ".json"), func(t *testing.T) {
			sample := decode(t, readSample(t, name))
			readSample(t, strings.TrimSuffix(name, ".json")+".url") // the request travels with its answer
			c := sampleCases[name]
			if c.check != nil {
				c.check(t, sample)
				return
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
	groups := "/users/" + alice + "/transitiveMemberOf/microsoft.graph.group"
	r, _ := f.batch(
		batchReq{ID: "1", Method: "GET", URL: groups},
		batchReq{ID: "3", Method: "GET", URL: "/groups?$select=id"},
		batchReq{ID: "4", Method: "DELETE", URL: groups},
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

package graphtest_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck/graphtest"
)

const riskyPath = "/identityProtection/riskyUsers"

func TestUserRisk(t *testing.T) {
	f := newFixture(t, graphtest.Options{})
	s := f.srv
	must(t, s.SetUserRisk(alice, "high", "atRisk"))

	r := f.getOK(riskyPath + "/" + alice)
	want := map[string]any{
		"@odata.context":          s.GraphURL() + "/$metadata#identityProtection/riskyUsers/$entity",
		"id":                      alice,
		"isDeleted":               false,
		"isProcessing":            false,
		"riskLevel":               "high",
		"riskState":               "atRisk",
		"riskDetail":              "none",
		"riskLastUpdatedDateTime": "2025-03-01T09:00:00Z",
		"userDisplayName":         "alice",
		"userPrincipalName":       "alice@contoso.test",
	}
	if len(r.body) != len(want) {
		t.Errorf("properties: %s", r.raw)
	}
	for k, v := range want {
		if r.body[k] != v {
			t.Errorf("%s = %v, want %v", k, r.body[k], v)
		}
	}
	if !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") || r.header.Get("request-id") == "" {
		t.Errorf("headers: %v", r.header)
	}

	// An update keeps one record and moves riskLastUpdatedDateTime.
	f.clock.Advance(90 * time.Minute)
	must(t, s.SetUserRisk(strings.ToUpper(alice), "none", "dismissed"))
	b := f.getOK(riskyPath + "/" + alice).body
	if b["riskLevel"] != "none" || b["riskState"] != "dismissed" || b["riskDetail"] != "adminDismissedAllRiskForUser" ||
		b["riskLastUpdatedDateTime"] != "2025-03-01T10:30:00Z" {
		t.Errorf("after update: %v", b)
	}
	if items := f.getOK(riskyPath).values(t); len(items) != 1 {
		t.Errorf("an update added a record: %v", items)
	}

	paths := []struct {
		name, url, context string
	}{
		{"v1.0", s.GraphURL() + riskyPath + "/" + alice, s.GraphURL() + "/$metadata#identityProtection/riskyUsers"},
		{"case-insensitive", s.GraphURL() + "/IdentityProtection/RiskyUsers/" + strings.ToUpper(alice), s.GraphURL() + "/$metadata#identityProtection/riskyUsers"},
	}
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			f := f.with(t)
			b := f.getOK(p.url).body
			if b["@odata.context"] != p.context+"/$entity" || b["id"] != alice || b["riskState"] != "dismissed" {
				t.Fatalf("%v", b)
			}
			b = f.getOK(p.url + "?$select=riskLevel,RISKSTATE").body
			if len(b) != 4 || b["@odata.context"] != p.context+"(riskLevel,riskState)/$entity" || b["id"] != alice ||
				b["riskLevel"] != "none" || b["riskState"] != "dismissed" {
				t.Fatalf("$select: %v", b)
			}
		})
	}

	errs := []struct {
		name, path string
		status     int
		code       string
	}{
		{"user without a record", riskyPath + "/" + bob, 404, "Request_ResourceNotFound"},
		{"unknown ID", riskyPath + "/00000000-0000-4000-8000-000000000000", 404, "Request_ResourceNotFound"},
		{"service principal", riskyPath + "/" + daemon, 404, "Request_ResourceNotFound"},
		{"not a GUID", riskyPath + "/alice@contoso.test", 404, "Request_ResourceNotFound"},
		{"old beta path", "/riskyUsers/" + alice, 400, "BadRequest"},
		{"risk detections", "/identityProtection/riskDetections", 400, "BadRequest"},
		{"history", riskyPath + "/" + alice + "/history", 400, "BadRequest"},
		{"unknown $select", riskyPath + "/" + alice + "?$select=isGuest", 400, "BadRequest"},
		{"$filter on an entity", riskyPath + "/" + alice + "?$filter=id%20eq%20'" + alice + "'", 400, "BadRequest"},
	}
	for _, tt := range errs {
		if r := f.get(tt.path); r.status != tt.status || r.errorCode() != tt.code {
			t.Errorf("%s: %d %s, want %d %s", tt.name, r.status, r.raw, tt.status, tt.code)
		}
	}
	if r := f.do(http.MethodPost, riskyPath+"/dismiss", map[string]any{"userIds": []string{alice}}); r.status != http.StatusMethodNotAllowed {
		t.Errorf("POST dismiss: %d %s", r.status, r.raw)
	}

	// ClearUserRisk removes the record; a user without one is left alone.
	must(t, s.ClearUserRisk(alice))
	if r := f.get(riskyPath + "/" + alice); r.status != http.StatusNotFound || r.errorCode() != "Request_ResourceNotFound" {
		t.Fatalf("after ClearUserRisk: %d %s", r.status, r.raw)
	}
	must(t, s.ClearUserRisk(alice))
	must(t, s.ClearUserRisk(bob))
}

func TestUserRiskDetails(t *testing.T) {
	f := newFixture(t, graphtest.Options{})
	tests := []struct{ level, state, detail string }{
		{"low", "atRisk", "none"},
		{"medium", "atRisk", "none"},
		{"none", "none", "none"},
		{"high", "confirmedCompromised", "adminConfirmedUserCompromised"},
		{"none", "dismissed", "adminDismissedAllRiskForUser"},
		{"none", "remediated", "userPerformedSecuredPasswordChange"},
		{"none", "confirmedSafe", "adminConfirmedSigninSafe"},
		{"hidden", "atRisk", "hidden"},
	}
	for _, tt := range tests {
		t.Run(tt.level+"/"+tt.state, func(t *testing.T) {
			f := f.with(t)
			must(t, f.srv.SetUserRisk(carol, tt.level, tt.state))
			b := f.getOK(riskyPath + "/" + carol + "?$select=riskLevel,riskState,riskDetail").body
			if b["riskLevel"] != tt.level || b["riskState"] != tt.state || b["riskDetail"] != tt.detail {
				t.Fatalf("%v, want riskDetail %s", b, tt.detail)
			}
		})
	}
}

func TestUserRiskErrors(t *testing.T) {
	f := newFixture(t, graphtest.Options{})
	s := f.srv
	unknown := "00000000-0000-4000-8000-00000000dead"
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"level in the wrong case", s.SetUserRisk(alice, "High", "atRisk"), graphtest.ErrInvalid},
		{"unknown level", s.SetUserRisk(alice, "critical", "atRisk"), graphtest.ErrInvalid},
		{"unknownFutureValue level", s.SetUserRisk(alice, "unknownFutureValue", "atRisk"), graphtest.ErrInvalid},
		{"empty level", s.SetUserRisk(alice, "", "atRisk"), graphtest.ErrInvalid},
		{"unknown state", s.SetUserRisk(alice, "high", "compromised"), graphtest.ErrInvalid},
		{"state in the wrong case", s.SetUserRisk(alice, "high", "AtRisk"), graphtest.ErrInvalid},
		{"unknown user", s.SetUserRisk(unknown, "high", "atRisk"), graphtest.ErrNotFound},
		{"service principal", s.SetUserRisk(daemon, "high", "atRisk"), graphtest.ErrNotFound},
		{"group", s.SetUserRisk(staff, "high", "atRisk"), graphtest.ErrNotFound},
		{"clear unknown", s.ClearUserRisk(unknown), graphtest.ErrNotFound},
		{"clear a group", s.ClearUserRisk(staff), graphtest.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !errors.Is(tt.err, tt.want) {
				t.Fatalf("err = %v, want %v", tt.err, tt.want)
			}
		})
	}
	if r := f.get(riskyPath); len(r.values(t)) != 0 {
		t.Fatalf("failed calls left records: %s", r.raw)
	}
}

func TestUserRiskOfDeletedUser(t *testing.T) {
	f := newFixture(t, graphtest.Options{})
	s := f.srv
	must(t, s.SetUserRisk(alice, "high", "confirmedCompromised"))
	must(t, s.DeleteUser(alice))
	if r := f.get("/users/" + alice); r.status != http.StatusNotFound {
		t.Fatalf("deleted user: %d", r.status)
	}
	b := f.getOK(riskyPath + "/" + alice).body
	if b["isDeleted"] != true || b["userPrincipalName"] != "alice@contoso.test" || b["userDisplayName"] != "alice" || b["riskLevel"] != "high" {
		t.Fatalf("record of a deleted user: %v", b)
	}
	if err := s.SetUserRisk(alice, "none", "dismissed"); !errors.Is(err, graphtest.ErrNotFound) {
		t.Fatalf("SetUserRisk on a deleted user: %v", err)
	}
	// Added again, the user's record is live again.
	must(t, s.AddUser(alice, "alice@contoso.test"))
	if b := f.getOK(riskyPath + "/" + alice).body; b["isDeleted"] != false {
		t.Fatalf("record of a re-added user: %v", b)
	}
	must(t, s.DeleteUser(alice))
	must(t, s.ClearUserRisk(alice)) // a deleted user's record can be cleared
	if r := f.get(riskyPath + "/" + alice); r.status != http.StatusNotFound {
		t.Fatalf("cleared record of a deleted user: %d %s", r.status, r.raw)
	}
	if err := s.ClearUserRisk(alice); !errors.Is(err, graphtest.ErrNotFound) {
		t.Fatalf("second ClearUserRisk on a deleted user: %v", err)
	}
}

func TestRiskyUsersCollection(t *testing.T) {
	f := newFixture(t, graphtest.Options{})
	s := f.srv
	must(t, s.SetUserRisk(carol, "medium", "atRisk"))
	must(t, s.SetUserRisk(alice, "high", "atRisk"))
	must(t, s.SetUserRisk(bob, "low", "atRisk"))
	must(t, s.ClearUserRisk(bob))
	q := func(filter string) string { return "$filter=" + url.QueryEscape(filter) }
	tests := []struct {
		name, path string
		wantIDs    []string
		keys       int // properties of each item
		context    string
	}{
		{"all", riskyPath, []string{carol, alice}, 9, "identityProtection/riskyUsers"},
		{"$select", riskyPath + "?$select=riskLevel,riskLastUpdatedDateTime", []string{carol, alice}, 3,
			"identityProtection/riskyUsers(riskLevel,riskLastUpdatedDateTime)"},
		{"id eq", riskyPath + "?" + q("id eq '"+alice+"'"), []string{alice}, 9, "identityProtection/riskyUsers"},
		{"id in", riskyPath + "?" + q("id in ('"+bob+"', '"+alice+"', '"+carol+"')") + "&$select=id", []string{carol, alice}, 1,
			"identityProtection/riskyUsers(id)"},
		{"no match", riskyPath + "?" + q("id eq '"+bob+"'"), []string{}, 0, "identityProtection/riskyUsers"},
		{"$top", riskyPath + "?$top=1", []string{carol}, 9, "identityProtection/riskyUsers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			items := f.with(t).list(tt.path, tt.wantIDs, tt.context)
			for _, it := range items {
				if len(it) != tt.keys {
					t.Errorf("item %v, want %d properties", it, tt.keys)
				}
			}
		})
	}
	for _, p := range []string{
		riskyPath + "?" + q("riskLevel eq 'high'"),
		riskyPath + "?" + q("id eq 'alice'"),
		riskyPath + "?" + q("id ne '"+alice+"'"),
		riskyPath + "?$orderby=riskLastUpdatedDateTime%20desc",
		riskyPath + "?$top=0",
	} {
		if r := f.get(p); r.status != http.StatusBadRequest || r.errorCode() != "BadRequest" {
			t.Errorf("%s: %d %s", p, r.status, r.raw)
		}
	}
	// Paging as in every collection.
	items, pages := f.follow(riskyPath + "?$top=1&$select=id")
	if got := ids(items, "id"); !equal(got, []string{carol, alice}) || len(pages) != 2 {
		t.Fatalf("$top=1: %v over %v", got, pages)
	}
	s.SetGraphPageSize(1)
	items, pages = f.follow(riskyPath + "?" + q("id in ('"+alice+"','"+carol+"')"))
	if got := ids(items, "id"); !equal(got, []string{carol, alice}) || len(pages) != 2 {
		t.Fatalf("page size 1: %v over %v", got, pages)
	}
}

// throttledNoRetryAfter fails unless status, code and headers are Identity
// Protection's throttling answer without Retry-After.
func throttledNoRetryAfter(t *testing.T, what string, status int, code string, header map[string]string) {
	t.Helper()
	if status != http.StatusTooManyRequests || code != "TooManyRequests" {
		t.Errorf("%s: %d %s, want 429 TooManyRequests", what, status, code)
	}
	for k := range header {
		if strings.EqualFold(k, "Retry-After") {
			t.Errorf("%s: Retry-After %q", what, header[k])
		}
	}
}

func flat(h http.Header) map[string]string {
	out := map[string]string{}
	for k := range h {
		out[k] = h.Get(k)
	}
	return out
}

func TestRiskyUsersThrottling(t *testing.T) {
	f := newFixture(t, graphtest.Options{RiskyUsersPerSecond: 1})
	s := f.srv
	must(t, s.SetUserRisk(alice, "high", "atRisk"))
	one := riskyPath + "/" + alice

	// The clock's second is the window: t0 is on a whole second.
	steps := []struct {
		name    string
		advance time.Duration
		path    string
		status  int
	}{
		{"first request", 0, one, 200},
		{"second in the same second", 0, riskyPath, 429},
		{"an unknown record is throttled too", 0, riskyPath + "/" + bob, 429},
		{"other endpoints are not throttled", 0, "/users/" + alice, 200},
		{"still the same second", 999 * time.Millisecond, one, 429},
		{"the next second", time.Millisecond, one, 200},
		{"again refused", 0, one, 429},
		{"a 404 counts", time.Second, riskyPath + "/" + bob, 404},
		{"after the 404", 0, one, 429},
		{"two seconds later", 2 * time.Second, riskyPath + "?$top=1", 200},
	}
	for _, st := range steps {
		f.clock.Advance(st.advance)
		r := f.get(st.path)
		if st.status == 429 {
			throttledNoRetryAfter(t, st.name, r.status, r.errorCode(), flat(r.header))
			continue
		}
		if r.status != st.status {
			t.Errorf("%s: %d %s, want %d", st.name, r.status, r.raw, st.status)
		}
	}

	t.Run("inside $batch each sub-request counts", func(t *testing.T) {
		f := f.with(t)
		f.clock.Advance(time.Second)
		_, subs := f.batch(
			batchReq{ID: "1", Method: "GET", URL: one},
			batchReq{ID: "2", Method: "GET", URL: "/users/" + alice + "?$select=id,accountEnabled"},
			batchReq{ID: "3", Method: "GET", URL: one + "?$select=riskLevel"},
			batchReq{ID: "4", Method: "GET", URL: riskyPath},
		)
		if len(subs) != 4 || subStatus(subs["1"]) != 200 || subBody(subs["1"])["riskLevel"] != "high" || subStatus(subs["2"]) != 200 {
			t.Fatalf("batch: %v", subs)
		}
		for _, id := range []string{"3", "4"} {
			h := map[string]string{}
			for k, v := range subs[id]["headers"].(map[string]any) {
				h[k] = fmt.Sprint(v)
			}
			code, _ := subBody(subs[id])["error"].(map[string]any)["code"].(string)
			throttledNoRetryAfter(t, "sub-request "+id, subStatus(subs[id]), code, h)
		}
		// A standalone request in the same second is refused as well.
		r := f.get(one)
		throttledNoRetryAfter(t, "after the batch", r.status, r.errorCode(), flat(r.header))
	})

	t.Run("SetRiskyUsersPerSecond", func(t *testing.T) {
		f := f.with(t)
		f.clock.Advance(time.Second)
		s.SetRiskyUsersPerSecond(2)
		var reqs []batchReq
		for i := range 3 {
			reqs = append(reqs, batchReq{ID: fmt.Sprint(i), Method: "GET", URL: one})
		}
		_, subs := f.batch(reqs...)
		if subStatus(subs["0"]) != 200 || subStatus(subs["1"]) != 200 || subStatus(subs["2"]) != 429 {
			t.Fatalf("limit 2: %v", subs)
		}
		s.SetRiskyUsersPerSecond(0) // unlimited, even within a spent second
		reqs = reqs[:0]
		for i := range graphtest.MaxBatchRequests {
			reqs = append(reqs, batchReq{ID: fmt.Sprint(i), Method: "GET", URL: one})
		}
		_, subs = f.batch(reqs...)
		for id, m := range subs {
			if subStatus(m) != 200 {
				t.Errorf("unlimited: sub-request %s: %v", id, m)
			}
		}
		s.SetRiskyUsersPerSecond(1)
		if r := f.get(one); r.status != 429 {
			t.Errorf("limit 1 after a spent second: %d", r.status)
		}
	})

	t.Run("faults and auth are checked first and do not count", func(t *testing.T) {
		f := f.with(t)
		f.clock.Advance(time.Second)
		remove := s.InjectGraphFault(graphtest.MatchPath("/identityProtection/"), graphtest.LicenseRequiredFault())
		for range 2 {
			if r := f.get(one); r.status != http.StatusForbidden || r.errorCode() != "AadPremiumLicenseRequired" {
				t.Fatalf("licence fault: %d %s", r.status, r.raw)
			}
		}
		remove()
		s.SetRequireGraphAuth(true)
		if r := f.get(one); r.status != http.StatusUnauthorized {
			t.Fatalf("without token: %d %s", r.status, r.raw)
		}
		s.SetRequireGraphAuth(false)
		f.getOK(one)
		if r := f.get(one); r.status != http.StatusTooManyRequests {
			t.Fatalf("second counted request: %d %s", r.status, r.raw)
		}
	})

	// Every request, throttled or not, is in the request log.
	if n := s.CountRequests("/v1.0" + riskyPath); n < 20 {
		t.Errorf("recorded %d riskyUsers requests", n)
	}
}

func TestRiskyUsersUnthrottledByDefault(t *testing.T) {
	f := newFixture(t, graphtest.Options{})
	must(t, f.srv.SetUserRisk(alice, "low", "atRisk"))
	for i := range 5 {
		if r := f.get(riskyPath + "/" + alice); r.status != http.StatusOK {
			t.Fatalf("request %d: %d %s", i, r.status, r.raw)
		}
	}
}

func TestRiskyUsersFaults(t *testing.T) {
	f := newFixture(t, graphtest.Options{})
	must(t, f.srv.SetUserRisk(alice, "low", "atRisk"))
	tests := []struct {
		name   string
		fault  graphtest.Fault
		status int
		code   string
	}{
		{"no P2 licence", graphtest.LicenseRequiredFault(), 403, "AadPremiumLicenseRequired"},
		{"no IdentityRiskyUser.Read.All", graphtest.DeniedFault(), 403, "Authorization_RequestDenied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := f.with(t)
			remove := f.srv.InjectGraphFault(graphtest.MatchPath("/identityProtection/"), tt.fault)
			defer remove()
			for _, p := range []string{riskyPath + "/" + alice, riskyPath} {
				if r := f.get(p); r.status != tt.status || r.errorCode() != tt.code {
					t.Errorf("%s: %d %s", p, r.status, r.raw)
				}
			}
			f.getOK("/users/" + alice)
		})
	}
}

package graphtest_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck/graphtest"
)

func TestFaultResponses(t *testing.T) {
	tests := []struct {
		name       string
		fault      graphtest.Fault
		status     int
		code       string
		retryAfter string
		check      func(t *testing.T, r reply)
	}{
		{name: "denied", fault: graphtest.DeniedFault(), status: 403, code: "Authorization_RequestDenied"},
		{name: "PIM scope not granted", fault: graphtest.ScopeNotGrantedFault(), status: 403, code: "UnknownError",
			check: func(t *testing.T, r reply) {
				var inner struct{ ErrorCode string }
				msg := r.body["error"].(map[string]any)["message"].(string)
				if err := json.Unmarshal([]byte(msg), &inner); err != nil || inner.ErrorCode != "PermissionScopeNotGranted" {
					t.Fatalf("message %q: %v", msg, err)
				}
			}},
		{name: "licence", fault: graphtest.LicenseRequiredFault(), status: 403, code: "AadPremiumLicenseRequired"},
		{name: "404", fault: graphtest.Fault{Status: 404}, status: 404, code: "Request_ResourceNotFound"},
		{name: "500", fault: graphtest.Fault{}, status: 500, code: "InternalServerError"},
		{name: "502", fault: graphtest.Fault{Status: 502}, status: 502, code: "BadGateway"},
		{name: "503 with Retry-After", fault: graphtest.Fault{Status: 503, RetryAfter: "7"}, status: 503, code: "ServiceUnavailable", retryAfter: "7"},
		{name: "504", fault: graphtest.Fault{Status: 504, Code: "timeout", Message: "took too long"}, status: 504, code: "timeout"},
		{name: "429 integer", fault: graphtest.ThrottledFault("3"), status: 429, code: "TooManyRequests", retryAfter: "3"},
		{name: "429 fractional", fault: graphtest.ThrottledFault("2.128"), status: 429, code: "TooManyRequests", retryAfter: "2.128"},
		{name: "429 without Retry-After", fault: graphtest.ThrottledFault(""), status: 429, code: "TooManyRequests"},
		{name: "malformed JSON", fault: graphtest.MalformedJSONFault(), status: 200,
			check: func(t *testing.T, r reply) {
				if json.Valid(r.raw) {
					t.Fatalf("valid JSON: %s", r.raw)
				}
			}},
		{name: "wrong shape", fault: graphtest.WrongShapeFault(), status: 200,
			check: func(t *testing.T, r reply) {
				if _, isArray := r.body["value"].([]any); isArray || !json.Valid(r.raw) {
					t.Fatalf("body %s", r.raw)
				}
			}},
	}
	f := newFixture(t, graphtest.Options{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := f.with(t)
			remove := f.srv.InjectGraphFault(graphtest.MatchPath("/roleManagement/"), tt.fault)
			defer remove()
			r := f.get(assignmentsPath + byPrincipal(alice))
			if r.status != tt.status || r.errorCode() != tt.code {
				t.Fatalf("%d %s, want %d %s", r.status, r.raw, tt.status, tt.code)
			}
			if got := r.header.Get("Retry-After"); got != tt.retryAfter {
				t.Fatalf("Retry-After %q, want %q", got, tt.retryAfter)
			}
			if tt.check != nil {
				tt.check(t, r)
			}
			f.getOK("/users/" + alice) // other paths are unaffected
		})
	}
}

func TestFaultTimesAndMatching(t *testing.T) {
	f := newFixture(t, graphtest.Options{})
	s := f.srv
	s.InjectGraphFault(graphtest.MatchPath("/v1.0/users/"), graphtest.Fault{Status: 503, Times: 2})
	for i, want := range []int{503, 503, 200, 200} {
		if r := f.get("/users/" + alice); r.status != want {
			t.Fatalf("request %d: %d, want %d", i, r.status, want)
		}
	}
	remove := s.InjectGraphFault(graphtest.GraphMatch{PathPrefix: "/users/", Method: "POST"}, graphtest.DeniedFault())
	f.getOK("/users/" + alice)
	if r := f.do(http.MethodPost, "/users/"+alice, nil); r.status != 403 {
		t.Fatalf("POST: %d", r.status)
	}
	remove()
	remove() // idempotent

	// Path matches one resource exactly, not the ones below it.
	remove = s.InjectGraphFault(graphtest.GraphMatch{Path: "/v1.0/users/" + strings.ToUpper(alice)}, graphtest.DeniedFault())
	if r := f.get("/users/" + alice + "?$select=accountEnabled"); r.status != 403 {
		t.Fatalf("exact path: %d, want 403", r.status)
	}
	f.getOK("/users/" + alice + "/transitiveMemberOf/microsoft.graph.group")
	remove()

	// A fault on the whole batch.
	s.InjectGraphFault(graphtest.GraphMatch{PathPrefix: "/$batch", Scope: graphtest.OutsideBatch}, graphtest.Fault{Status: 503, RetryAfter: "1", Times: 1})
	if r, _ := f.batch(clientBatch(alice)...); r.status != 503 || r.header.Get("Retry-After") != "1" {
		t.Fatalf("batch fault: %d", r.status)
	}
	// Times counts sub-requests one by one.
	s.InjectGraphFault(graphtest.GraphMatch{Scope: graphtest.InsideBatch}, graphtest.Fault{Status: 429, RetryAfter: "2.128", Times: 2})
	r, subs := f.batch(clientBatch(alice)...)
	if r.status != 200 {
		t.Fatalf("batch: %d", r.status)
	}
	for id, want := range map[string]int{"1": 429, "2": 429, "3": 200, "6": 200} {
		if subStatus(subs[id]) != want {
			t.Errorf("sub-request %s: %v", id, subs[id])
		}
	}
	if h := subs["1"]["headers"].(map[string]any); h["Retry-After"] != "2.128" {
		t.Errorf("sub-request Retry-After: %v", h)
	}
	// A malformed body inside a batch arrives as a JSON string.
	s.InjectGraphFault(graphtest.GraphMatch{PathPrefix: "/groups", Scope: graphtest.InsideBatch}, graphtest.MalformedJSONFault())
	_, subs = f.batch(clientBatch(alice)...)
	if b, ok := subs["5"]["body"].(string); !ok || json.Valid([]byte(b)) {
		t.Errorf("malformed sub-response: %v", subs["5"])
	}
}

func TestFaultNextLinks(t *testing.T) {
	f := newFixture(t, graphtest.Options{})
	seedRoles(t, f.srv, 2)
	remove := f.srv.InjectGraphFault(graphtest.MatchPath("/roleManagement/"), graphtest.NextLinkOffHostFault())
	r := f.getOK(assignmentsPath)
	u, err := url.Parse(r.body["@odata.nextLink"].(string))
	if err != nil || u.Host == "" || strings.Contains(f.srv.URL, u.Host) {
		t.Fatalf("off-host nextLink %v", r.body["@odata.nextLink"])
	}
	if r := f.getOK("/users/" + alice); r.body["@odata.nextLink"] != nil {
		t.Fatal("nextLink fault changed a non-collection")
	}
	remove()

	f.srv.InjectGraphFault(graphtest.MatchPath("/roleManagement/"), graphtest.Fault{Kind: graphtest.FaultNextLinkLoop})
	f.srv.SetGraphPageSize(1)
	first := f.getOK(assignmentsPath + byPrincipal(alice))
	link := first.body["@odata.nextLink"].(string)
	for range 3 {
		r := f.getOK(link)
		if r.body["@odata.nextLink"] != link || len(r.values(t)) != 1 {
			t.Fatalf("loop broke: %s", r.raw)
		}
	}
}

// waitRecorded waits until the server has recorded n requests.
func waitRecorded(t *testing.T, s *graphtest.Server, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(s.Requests()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d requests recorded", len(s.Requests()))
		}
		time.Sleep(time.Millisecond)
	}
}

func TestFaultTransport(t *testing.T) {
	t.Run("drop", func(t *testing.T) {
		for _, scope := range []graphtest.BatchScope{graphtest.OutsideBatch, graphtest.InsideBatch} {
			f := newFixture(t, graphtest.Options{})
			f.srv.InjectGraphFault(graphtest.GraphMatch{PathPrefix: "/users/", Scope: scope}, graphtest.Fault{Kind: graphtest.FaultDropConnection})
			var err error
			if scope == graphtest.OutsideBatch {
				_, err = f.srv.Client().Get(f.srv.GraphURL() + "/users/" + alice)
			} else {
				body := strings.NewReader(`{"requests":[{"id":"1","method":"GET","url":"/users/` + alice + `"}]}`)
				_, err = f.srv.Client().Post(f.srv.GraphURL()+"/$batch", "application/json", body)
			}
			if err == nil {
				t.Fatalf("scope %v: request survived a dropped connection", scope)
			}
		}
	})
	t.Run("hang until the client gives up", func(t *testing.T) {
		for _, scope := range []graphtest.BatchScope{graphtest.OutsideBatch, graphtest.InsideBatch} {
			f := newFixture(t, graphtest.Options{})
			f.srv.InjectGraphFault(graphtest.GraphMatch{PathPrefix: "/users/", Scope: scope}, graphtest.Fault{Kind: graphtest.FaultHang})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				var req *http.Request
				if scope == graphtest.OutsideBatch {
					req, _ = http.NewRequestWithContext(ctx, http.MethodGet, f.srv.GraphURL()+"/users/"+alice, nil)
				} else {
					body := strings.NewReader(`{"requests":[{"id":"1","method":"GET","url":"/users/` + alice + `"}]}`)
					req, _ = http.NewRequestWithContext(ctx, http.MethodPost, f.srv.GraphURL()+"/$batch", body)
				}
				resp, err := f.srv.Client().Do(req)
				if err == nil {
					resp.Body.Close()
				}
				done <- err
			}()
			want := 1
			if scope == graphtest.InsideBatch {
				want = 2
			}
			waitRecorded(t, f.srv, want)
			select {
			case err := <-done:
				t.Fatalf("answered while hanging: %v", err)
			default:
			}
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Fatalf("scope %v: %v, want context.Canceled", scope, err)
			}
		}
	})
	t.Run("Close releases a hung request", func(t *testing.T) {
		srv := graphtest.NewServer(graphtest.Options{})
		srv.InjectGraphFault(graphtest.GraphMatch{}, graphtest.Fault{Kind: graphtest.FaultHang})
		done := make(chan error, 1)
		go func() {
			resp, err := srv.Client().Get(srv.GraphURL() + "/groups")
			if err == nil {
				resp.Body.Close()
			}
			done <- err
		}()
		waitRecorded(t, srv, 1)
		srv.Close()
		<-done
	})
}

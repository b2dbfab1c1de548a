package msgraph

// FuzzGraphResponse feeds arbitrary bytes to the Source as Graph's answers:
// either the body of the whole $batch answer (with an arbitrary HTTP
// status), or the body of one $batch sub-response (with an arbitrary
// status) among otherwise valid ones. The answers come from an in-memory
// RoundTripper below the SDK's middleware, so a whole Lookup (SDK, batch
// plumbing, decoding, classification, retries with a stubbed Sleep) runs
// per input without a network. Properties:
//
//   - nothing panics;
//   - Lookup returns a State or an error wrapping a graphcheck sentinel,
//     never both, never neither;
//   - a non-2xx answer that is not retried, and a 2xx answer that does not
//     decode, fail the Lookup; assignments in a State come only from 2xx
//     answers that decode;
//   - no request leaves the configured host, and no sub-request URL names
//     another host;
//   - the decoders, used directly, return no assignment with an error, and
//     Retry-After parsing stays within [0, 24h].
//
// Run: go test -run XXX -fuzz '^FuzzGraphResponse$' -fuzztime 10000x ./graphcheck/msgraph/
// (as CI does: a -fuzztime duration can end in a spurious "context
// deadline exceeded" with Go 1.26, go.dev/issue/75804).
// The seed corpus is in testdata/fuzz/FuzzGraphResponse (Microsoft Graph
// documentation samples and hand-made answers), and every sample in
// ../graphtest/testdata/graph-samples is added.

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/pimguard/pimguard/graphcheck"
)

const (
	fzSamples = samplesDir
	fzOID     = "a11ce000-0000-4000-8000-000000000001"
	fzBase    = "https://graph.fuzz.test/v1.0"
)

// Sub-requests of a Lookup's first $batch, in the order the Source sends
// them; mode 1+i fuzzes the answer to sub-request i.
const (
	fzRoles = iota
	fzPIM
	fzMemberOf
)

// fzTransport answers the Source's requests from memory. The first $batch
// gets the fuzzed answer; every later one (retries, next pages, the
// group-roles fetch) gets empty collections, so that whatever a State holds
// comes from the fuzzed answer. The Source sends each $batch with fresh
// sub-request ids, so a request with the first $batch's ids is that batch
// sent again by the SDK's middleware (the compression handler resends a 415
// uncompressed) and gets the fuzzed answer again.
type fzTransport struct {
	mode   int
	status int
	body   []byte

	mu       sync.Mutex
	ids      []string // sub-request ids of the first $batch, in request order
	served   []byte   // mode 0: the $batch answer as sent, {IDn} filled in
	problems []string
}

func (f *fzTransport) problem(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.problems = append(f.problems, fmt.Sprintf(format, args...))
}

func (f *fzTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Host != "graph.fuzz.test" || r.URL.Scheme != "https" {
		f.problem("request to %s://%s", r.URL.Scheme, r.URL.Host)
		return nil, errors.New("off host")
	}
	if r.Method != http.MethodPost || r.URL.Path != "/v1.0/$batch" {
		f.problem("unexpected %s %s", r.Method, r.URL.Path)
		return nil, errors.New("unexpected request")
	}
	var rd io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			return nil, err
		}
		rd = zr
	}
	raw, err := io.ReadAll(rd)
	if err != nil {
		return nil, err
	}
	var in struct {
		Requests []struct {
			ID  string `json:"id"`
			URL string `json:"url"`
		} `json:"requests"`
	}
	if err := json.Unmarshal(raw, &in); err != nil {
		f.problem("unreadable $batch request: %v", err)
		return nil, err
	}
	for _, q := range in.Requests {
		if !strings.HasPrefix(q.URL, "/") || strings.HasPrefix(q.URL, "//") || strings.Contains(q.URL, "://") {
			f.problem("sub-request URL %q is not below the base URL", q.URL)
		}
	}
	ids := make([]string, len(in.Requests))
	for i, q := range in.Requests {
		ids[i] = q.ID
	}
	f.mu.Lock()
	if f.ids == nil {
		f.ids = ids
	}
	first := slices.Equal(ids, f.ids)
	f.mu.Unlock()

	status, body := http.StatusOK, []byte(nil)
	switch {
	case first && f.mode == 0:
		status = f.status
		body = f.body
		for i, q := range in.Requests {
			body = bytes.ReplaceAll(body, []byte(fmt.Sprintf("{ID%d}", i)), []byte(q.ID))
		}
		f.mu.Lock()
		f.served = body
		f.mu.Unlock()
	default:
		var out []string
		for i, q := range in.Requests {
			st, b := 200, []byte(`{"value":[]}`)
			if first && i == f.mode-1 {
				st, b = f.status, fzEmbed(f.body)
			}
			out = append(out, fmt.Sprintf(`{"id":%q,"status":%d,"headers":{"Content-Type":"application/json"},"body":%s}`, q.ID, st, b))
		}
		body = []byte(`{"responses":[` + strings.Join(out, ",") + `]}`)
	}
	return &http.Response{
		StatusCode: status, Status: fmt.Sprintf("%d fuzz", status), Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": {"application/json"}},
		Body:   io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)), Request: r,
	}, nil
}

// fzEmbed is how a sub-response body travels inside the $batch answer: as
// is when it is JSON, else as a JSON string (as Graph and graphtest do).
func fzEmbed(b []byte) []byte {
	if len(bytes.TrimSpace(b)) > 0 && json.Valid(b) {
		return b
	}
	s, _ := json.Marshal(string(b))
	return s
}

// fzDecodes reports whether a 2xx sub-response body of sub-request kind
// decodes, with the package's own decoders.
func fzDecodes(kind int, body json.RawMessage) bool {
	v, _, err := decodePage(body)
	if err != nil {
		return false
	}
	switch kind {
	case fzRoles:
		_, err = decodeRoles(v, true)
	case fzPIM:
		_, err = decodeMemberships(v)
	default:
		_, err = decodeGroups(v)
	}
	return err == nil
}

func ok2xx(status int) bool { return status >= 200 && status < 300 }

func FuzzGraphResponse(f *testing.F) {
	// Samples of Microsoft Graph's documentation (a few are also in
	// testdata as seeds).
	names, err := filepath.Glob(filepath.Join(fzSamples, "*.json"))
	if err != nil || len(names) == 0 {
		f.Fatalf("no Graph samples in %s (%v)", fzSamples, err)
	}
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			f.Fatal(err)
		}
		status := 200
		if strings.HasPrefix(filepath.Base(n), "error_429") {
			status = 429
		}
		for mode := uint8(0); mode <= 3; mode++ {
			f.Add(mode, status, b)
		}
	}
	valid := `{"responses":[` +
		`{"id":"{ID0}","status":200,"body":{"value":[{"roleDefinitionId":"62e90394-69f5-4237-9190-012177145e10","directoryScopeId":"/","assignmentType":"Activated","memberType":"Direct","startDateTime":"2025-03-01T08:00:00Z","endDateTime":"2025-03-01T10:00:00Z"}]}},` +
		`{"id":"{ID1}","status":200,"body":{"value":[{"groupId":"ad315000-0000-4000-8000-00000000000a","accessId":"member","assignmentType":"Assigned","endDateTime":null}]}},` +
		`{"id":"{ID2}","status":200,"body":{"value":[{"@odata.type":"#microsoft.graph.group","id":"ad315000-0000-4000-8000-00000000000a","isAssignableToRole":true}]}}]}`
	f.Add(uint8(0), 200, []byte(valid))
	f.Add(uint8(0), 200, []byte(strings.Replace(valid, `"status":200`, `"status":429,"headers":{"Retry-After":"2.128"}`, 1)))
	f.Add(uint8(0), 503, []byte(valid))
	f.Add(uint8(1), 200, []byte(`{"value":[{"roleDefinitionId":"62e90394-69f5-4237-9190-012177145e10","directoryScopeId":"/","endDateTime":"tomorrow"}]}`))
	f.Add(uint8(1), 200, []byte(`{"value":[],"@odata.nextLink":"https://graph.fuzz.test.evil/v1.0/x"}`))
	f.Add(uint8(2), 403, []byte(`{"error":{"code":"UnknownError","message":"{\"errorCode\":\"PermissionScopeNotGranted\"}"}}`))
	f.Add(uint8(3), 404, []byte(`{"error":{"code":"Request_ResourceNotFound"}}`))
	f.Add(uint8(1), 200, []byte(`{"value":[{"roleDefinitionId":"62e90394-69f5-4237-9190-012177145e10","directoryScopeId":"/","assignmentType":"Assigned","memberType":"Direct","endDateTime":"0001-01-01T00:00:00Z"}]}`))
	f.Add(uint8(2), 200, []byte(`{"value":[{"groupId":"ad315000-0000-4000-8000-00000000000a","accessId":"member","assignmentType":"Assigned","startDateTime":"2025-03-01T10:00:00Z","endDateTime":"2025-03-01T09:00:00Z"}]}`))
	f.Add(uint8(0), 200, []byte(`{"id":"`+fzOID+`","accountEnabled":true,"signInSessionsValidFromDateTime":null}`))

	f.Fuzz(func(t *testing.T, mode uint8, status int, body []byte) {
		fzDecoders(t, body)

		m := int(mode % 4)
		if m == 0 && (status < 100 || status > 599) {
			// A real HTTP status line: 100..599.
			status = 100 + (status%500+500)%500
		}
		tr := &fzTransport{mode: m, status: status, body: body}
		src, err := New(Config{
			BaseURL:    fzBase,
			Scope:      "https://graph.microsoft.com/.default",
			Credential: fzCredential{},
			Transport:  tr,
			Now:        func() time.Time { return time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC) },
			Sleep:      func(ctx context.Context, _ time.Duration) error { return ctx.Err() },
		})
		if err != nil {
			t.Fatal(err)
		}
		st, err := src.Lookup(context.Background(), graphcheck.Principal{TenantID: "8d3f0a52-6b1e-4c2a-9f4e-1a7b2c3d4e5f", ObjectID: fzOID})
		for _, p := range tr.problems {
			t.Error(p)
		}
		switch {
		case (st == nil) == (err == nil):
			t.Fatalf("Lookup = %v, %v: want exactly one of a State and an error", st, err)
		case err != nil && !errors.Is(err, graphcheck.ErrUnavailable) && !errors.Is(err, graphcheck.ErrPermissionDenied) &&
			!errors.Is(err, graphcheck.ErrLicenseRequired) && !errors.Is(err, graphcheck.ErrPrincipalNotFound):
			t.Fatalf("error %v wraps no graphcheck sentinel", err)
		}
		if err != nil {
			return
		}

		// A State came back: every answer it rests on was 2xx and decoded.
		roles, groups := len(st.Roles) > 0, len(st.Groups) > 0
		if m == 0 {
			if !ok2xx(status) && !retryable(status) {
				t.Fatalf("a State (%d roles, %d groups) from a $batch answered %d", len(st.Roles), len(st.Groups), status)
			}
			if !roles && !groups {
				return
			}
			if !ok2xx(status) {
				t.Fatalf("assignments from a $batch answered %d", status)
			}
			// Judge the answer the Source was given, with the real, random
			// ids in place of {IDn}: the placeholders can change what
			// parses ("\{ID0}" is a bad escape, "\f4…" is not).
			byID, err := decodeBatch(tr.served)
			if err != nil {
				t.Fatalf("a State with assignments from an unreadable $batch answer: %v", err)
			}
			for kind, has := range map[int]bool{fzRoles: roles, fzPIM: groups} {
				a, ok := byID[tr.ids[kind]]
				if has && (!ok || !ok2xx(a.status) || !fzDecodes(kind, a.body)) {
					t.Fatalf("assignments of sub-request %d from an answer that is missing, not 2xx or unreadable (%d)", kind, a.status)
				}
			}
			return
		}
		kind := m - 1
		switch {
		case status < 100 || status > 599:
			t.Fatalf("a State from a sub-response with status %d", status)
		case !ok2xx(status) && !retryable(status):
			t.Fatalf("a State from a sub-response answered %d", status)
		case ok2xx(status) && !fzDecodes(kind, fzEmbed(body)):
			t.Fatalf("a State from an unreadable 2xx sub-response %q", body)
		case roles && !(kind == fzRoles && ok2xx(status)), groups && !(kind == fzPIM && ok2xx(status)):
			t.Fatalf("assignments (%d roles, %d groups) that sub-response %d (%d) cannot carry", len(st.Roles), len(st.Groups), kind, status)
		}
	})
}

// fzDecoders checks the decoders directly on body.
func fzDecoders(t *testing.T, body []byte) {
	if d, ok := retryAfter(string(body)); d < 0 || d > maxRetryAfter || (!ok && d != 0) {
		t.Fatalf("retryAfter(%q) = %v, %v", body, d, ok)
	}
	_, _ = errorCode(body)
	fzAccountDecoders(t, body)
	if byID, err := decodeBatch(body); err == nil {
		for id, a := range byID {
			if a.status < 100 || a.status > 599 {
				t.Fatalf("decodeBatch kept sub-response %q with status %d", id, a.status)
			}
		}
	}
	v, link, err := decodePage(body)
	if err != nil {
		return
	}
	if len(v) == 0 || v[0] != '[' {
		t.Fatalf("decodePage returned value %q", v)
	}
	for _, skip := range []bool{true, false} {
		if r, err := decodeRoles(v, skip); err != nil && len(r) != 0 {
			t.Fatalf("decodeRoles returned %d assignments with error %v", len(r), err)
		}
	}
	if g, err := decodeMemberships(v); err != nil && len(g) != 0 {
		t.Fatalf("decodeMemberships returned %d memberships with error %v", len(g), err)
	}
	// An endDateTime that is there and not null never decodes as
	// "permanent", and no decoded date is before 1970 or ends before it
	// starts. (decodeRoles without skipping keeps the items' order.)
	var items []map[string]json.RawMessage
	if json.Unmarshal(v, &items) == nil {
		var windows []graphcheck.Window
		if r, err := decodeRoles(v, false); err == nil {
			for _, a := range r {
				windows = append(windows, a.Window)
			}
		} else if g, err := decodeMemberships(v); err == nil {
			for _, m := range g {
				windows = append(windows, m.Window)
			}
		}
		for i, w := range windows {
			end, n := fzMember(items[i], "endDateTime")
			if w.End.IsZero() && n == 1 && string(bytes.TrimSpace(end)) != "null" {
				t.Fatalf("endDateTime %s decoded as permanent", end)
			}
			if (!w.Start.IsZero() && w.Start.Before(minDateTime)) || (!w.End.IsZero() && w.End.Before(minDateTime)) ||
				(!w.Start.IsZero() && !w.End.IsZero() && w.End.Before(w.Start)) {
				t.Fatalf("decoded an impossible window %+v", w)
			}
		}
	}
	if g, err := decodeGroups(v); err != nil && len(g) != 0 {
		t.Fatalf("decodeGroups returned %d groups with error %v", len(g), err)
	}
	if link != "" {
		s := &Source{cfg: fzSettings()}
		if rel, err := s.relativeLink(link); err == nil {
			u, err := url.Parse(s.cfg.baseStr + rel)
			if err != nil || !strings.HasPrefix(rel, "/") || u.Host != s.cfg.base.Host || u.Scheme != s.cfg.base.Scheme {
				t.Fatalf("relativeLink(%q) = %q: leaves %s", link, rel, s.cfg.base.Host)
			}
		}
	}
}

// fzAccountDecoders checks the one-object decoders of the account checks:
// an account comes only from an object that says accountEnabled and is the
// principal asked for, a user's only from one that has both dates (null or
// a date, never absent, and a date never read as "no value"), and a risk
// only from one with riskLevel and riskState, never "hidden".
func fzAccountDecoders(t *testing.T, body []byte) {
	for _, user := range []bool{true, false} {
		a, err := decodeAccount(body, fzOID, user)
		if err != nil {
			if a != nil {
				t.Fatalf("decodeAccount returned %+v with error %v", a, err)
			}
			continue
		}
		var o map[string]json.RawMessage
		if a == nil || json.Unmarshal(bytes.TrimSpace(body), &o) != nil || o["accountEnabled"] == nil || string(o["accountEnabled"]) == "null" {
			t.Fatalf("decodeAccount(%q) = %+v without an accountEnabled", body, a)
		}
		if id, ok := o["id"]; ok && !strings.EqualFold(strings.Trim(string(id), `"`), fzOID) && string(id) != "null" {
			t.Fatalf("decodeAccount(%q) took another object's account", body)
		}
		if !user {
			if !a.SessionsValidFrom.IsZero() || !a.PasswordChanged.IsZero() {
				t.Fatalf("decodeAccount(%q) gave a service principal user dates: %+v", body, a)
			}
			continue
		}
		for name, got := range map[string]time.Time{"signInSessionsValidFromDateTime": a.SessionsValidFrom, "lastPasswordChangeDateTime": a.PasswordChanged} {
			raw, n := fzMember(o, name)
			switch {
			case n > 1:
				// Spellings differing in case: encoding/json keeps the last
				// in the text, which the map does not say.
			case n == 0:
				t.Fatalf("decodeAccount(%q) read a user without %s", body, name)
			case got.IsZero() != (string(bytes.TrimSpace(raw)) == "null"):
				t.Fatalf("decodeAccount(%q): %s %s read as %v", body, name, raw, got)
			case !got.IsZero() && got.Before(minDateTime):
				t.Fatalf("decodeAccount(%q): %s %v is before 1970", body, name, got)
			}
		}
	}
	r, err := decodeRisk(body, fzOID)
	switch {
	case err != nil && r != (graphcheck.Risk{}):
		t.Fatalf("decodeRisk returned %+v with error %v", r, err)
	case err == nil && (!r.Recorded || r.Level == "" || r.State == "" || strings.EqualFold(r.Level, graphcheck.RiskLevelHidden)):
		t.Fatalf("decodeRisk(%q) = %+v", body, r)
	}
}

// fzMember returns the member of o named name, compared as encoding/json
// matches names (case-insensitively), and how many members match.
func fzMember(o map[string]json.RawMessage, name string) (json.RawMessage, int) {
	var v json.RawMessage
	n := 0
	for k, raw := range o {
		if strings.EqualFold(k, name) {
			v, n = raw, n+1
		}
	}
	return v, n
}

var fzSettingsOnce = sync.OnceValue(func() *settings {
	s, err := Config{BaseURL: fzBase, Credential: fzCredential{}, Scope: "https://graph.microsoft.com/.default"}.resolve()
	if err != nil {
		panic(err)
	}
	return s
})

func fzSettings() *settings { return fzSettingsOnce() }

// fzCredential hands out a fixed token without any network call.
type fzCredential struct{}

func (fzCredential) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: "fuzz-token", ExpiresOn: time.Now().Add(time.Hour)}, nil
}

package msgraph

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	abstractions "github.com/microsoft/kiota-abstractions-go"
	"github.com/microsoftgraph/msgraph-sdk-go/models/odataerrors"

	"github.com/pimguard/pimguard/graphcheck"
)

// samplesDir holds verbatim Microsoft Graph documentation responses, with
// their provenance in SOURCES.md; graphtest's tests read the same copies.
const samplesDir = "../graphtest/testdata/graph-samples"

func sample(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(samplesDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// The documented role assignment schedule instance samples decode.
func TestSampleRoleInstances(t *testing.T) {
	for _, name := range []string{"role_assignment_schedule_instances_list.json", "role_assignment_schedule_instances_filterbycurrentuser.json"} {
		t.Run(name, func(t *testing.T) {
			value, next, err := decodePage(sample(t, name))
			if err != nil || next != "" {
				t.Fatalf("decodePage: %q, %v", next, err)
			}
			roles, err := decodeRoles(value, true)
			if err != nil || len(roles) == 0 {
				t.Fatalf("decodeRoles: %v, %v", roles, err)
			}
			for _, r := range roles {
				if !graphcheck.IsGUID(r.RoleDefinitionID) || r.DirectoryScopeID == "" ||
					(r.AssignmentType != graphcheck.AssignmentAssigned && r.AssignmentType != graphcheck.AssignmentActivated) {
					t.Errorf("decoded %+v", r)
				}
			}
		})
	}
	value, _, _ := decodePage(sample(t, "role_assignment_schedule_instances_list.json"))
	roles, _ := decodeRoles(value, true)
	want := graphcheck.RoleAssignment{RoleDefinitionID: "62e90394-69f5-4237-9190-012177145e10", DirectoryScopeID: "/", AssignmentType: "Assigned"}
	if len(roles) != 2 || roles[0] != want {
		t.Errorf("roles = %+v, want 2 like %+v", roles, want)
	}
}

// The documented PIM for Groups samples decode, PascalCase "Assigned" and
// all: the SDK's case-sensitive enum parser would have returned nil.
func TestSamplePIMGroups(t *testing.T) {
	value, _, err := decodePage(sample(t, "pim_group_assignment_schedule_instances_list.json"))
	if err != nil {
		t.Fatal(err)
	}
	ms, err := decodeMemberships(value)
	if err != nil {
		t.Fatal(err)
	}
	want := []graphcheck.GroupMembership{
		{GroupID: "2b5ed229-4072-478d-9504-a047ebd4b07d", AccessID: "member", AssignmentType: "Assigned",
			Window: graphcheck.Window{Start: mustTime(t, "2023-09-29T15:48:00.273Z"), End: mustTime(t, "2024-03-27T15:47:19.653Z")}},
		{GroupID: "2b5ed229-4072-478d-9504-a047ebd4b07d", AccessID: "member", AssignmentType: "Assigned"},
	}
	if len(ms) != 2 || ms[0] != want[0] || ms[1] != want[1] {
		t.Errorf("memberships\n got %+v\nwant %+v", ms, want)
	}

	// Its body starts with a blank line and its context is singular.
	value, _, err = decodePage(sample(t, "pim_group_assignment_schedule_instances_filterbycurrentuser.json"))
	if err != nil {
		t.Fatal(err)
	}
	if ms, err = decodeMemberships(value); err != nil || len(ms) != 1 || ms[0].AccessID != graphcheck.AccessMember || !ms[0].End.IsZero() {
		t.Errorf("filterByCurrentUser: %+v, %v", ms, err)
	}
}

// Each sub-response of the documented $batch answer is classified: the
// 403s name the permission of the request they answer, the 405 is an
// outage, the 200s decode, and the beta nextLink is not followed from v1.0.
func TestSampleBatch(t *testing.T) {
	byID, err := decodeBatch(sample(t, "batch_response_with_403_authorization_requestdenied.json"))
	if err != nil || len(byID) != 5 {
		t.Fatalf("decodeBatch: %d answers, %v", len(byID), err)
	}
	classify := func(id string) error {
		a := byID[id]
		code, msg := errorCode(a.body)
		return classifyStatus(epUserGroups, a.status, code, msg)
	}
	for id, code := range map[string]string{"2": "403 Forbidden", "3": "Authorization_RequestDenied"} {
		var pe *graphcheck.PermissionError
		if err := classify(id); !errors.As(err, &pe) || !errors.Is(err, graphcheck.ErrPermissionDenied) ||
			pe.Permission != PermissionGroupMember || pe.Code != code {
			t.Errorf("response %s: %v", id, err)
		}
	}
	if err := classify("4"); !errors.Is(err, graphcheck.ErrUnavailable) || !strings.Contains(err.Error(), "405 Request_BadRequest") {
		t.Errorf("response 4: %v", err)
	}
	for _, id := range []string{"1", "5"} {
		if _, _, err := decodePage(byID[id].body); err != nil || byID[id].status != 200 {
			t.Errorf("response %s: %v", id, err)
		}
	}
	if got := headerValue(byID["1"].header, "content-type"); !strings.HasPrefix(got, "application/json") {
		t.Errorf("Content-Type header = %q", got)
	}
	_, next, _ := decodePage(byID["1"].body)
	v1 := &Source{cfg: mustResolve(t, Config{BaseURL: "https://graph.microsoft.com/v1.0", Credential: nopCredential{}})}
	if rel, err := v1.relativeLink(next); err == nil {
		t.Errorf("v1.0 source follows a beta nextLink: %q", rel)
	}
	beta := &Source{cfg: mustResolve(t, Config{BaseURL: "https://graph.microsoft.com/beta", Credential: nopCredential{}})}
	if rel, err := beta.relativeLink(next); err != nil || !strings.HasPrefix(rel, "/me/memberOf?$top=1&$skiptoken=RFNwdAoAAQ") {
		t.Errorf("beta source: %q, %v", rel, err)
	}
}

// The documented throttling answer: 429 TooManyRequests with a fractional
// Retry-After.
func TestSampleThrottling(t *testing.T) {
	body := sample(t, "error_429_throttling.json")
	var retryAfterHeader string
	sc := bufio.NewScanner(strings.NewReader(string(sample(t, "error_429_throttling.headers"))))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.EqualFold(k, "Retry-After") {
			retryAfterHeader = strings.TrimSpace(v)
		}
	}
	d, ok := retryAfter(retryAfterHeader)
	if !ok || d != 2128*time.Millisecond {
		t.Errorf("Retry-After %q = %v, %v; want 2.128s", retryAfterHeader, d, ok)
	}
	code, msg := errorCode(body)
	err := classifyStatus(epRoles, http.StatusTooManyRequests, code, msg)
	if !retryable(http.StatusTooManyRequests) || !errors.Is(err, graphcheck.ErrUnavailable) || !strings.Contains(err.Error(), "TooManyRequests") {
		t.Errorf("classified as %v", err)
	}
	if c, _ := errorCode(sample(t, "error_generic_example.json")); c == "" {
		t.Error("the generic error example has no code")
	}
}

func TestRetryAfter(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"10", 10 * time.Second, true},
		{"2.128", 2128 * time.Millisecond, true},
		{" 0 ", 0, true},
		{"", 0, false},
		{"-1", 0, false},
		{"NaN", 0, false},
		{"soon", 0, false},
		{"1e12", maxRetryAfter, true},
		{"Inf", maxRetryAfter, true},
		{"Wed, 21 Oct 2015 07:28:00 GMT", 0, true}, // in the past
	}
	for _, tt := range tests {
		if got, ok := retryAfter(tt.in); got != tt.want || ok != tt.ok {
			t.Errorf("retryAfter(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
	future := time.Now().Add(time.Minute).UTC().Format(http.TimeFormat)
	if got, ok := retryAfter(future); !ok || got < 50*time.Second || got > time.Minute {
		t.Errorf("retryAfter(%q) = %v, %v", future, got, ok)
	}
}

// classifyErr reads SDK error values without calling ODataError.Error(),
// which panics on a body without an "error" object.
func TestClassifyErr(t *testing.T) {
	bare := odataerrors.NewODataError()
	bare.SetStatusCode(http.StatusForbidden)
	func() {
		defer func() {
			if recover() == nil {
				t.Log("ODataError.Error() no longer panics without an error object")
			}
		}()
		_ = bare.Error()
	}()

	licence := odataerrors.NewODataError()
	licence.SetStatusCode(http.StatusForbidden)
	main := odataerrors.NewMainError()
	code := "AadPremiumLicenseRequired"
	main.SetCode(&code)
	licence.SetErrorEscaped(main)

	gone := odataerrors.NewODataError()
	gone.SetStatusCode(http.StatusNotFound)
	nf := odataerrors.NewMainError()
	nfCode := "Request_ResourceNotFound"
	nf.SetCode(&nfCode)
	gone.SetErrorEscaped(nf)

	refused := &url.Error{Op: "Post", URL: "https://graph.microsoft.com/v1.0/$batch",
		Err: &net.OpError{Op: "dial", Net: "tcp", Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}}
	badCert := &url.Error{Op: "Post", URL: "https://graph.microsoft.com/v1.0/$batch",
		Err: &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}}
	tests := []struct {
		name   string
		ep     *endpoint
		err    error
		want   error
		outage bool // Graph down for everyone (graphcheck.ErrOutage)
	}{
		{"ODataError without error object", epRoles, bare, graphcheck.ErrPermissionDenied, false},
		{"ODataError licence", epGroupPIM, licence, graphcheck.ErrLicenseRequired, false},
		{"ODataError 404 for the principal", epUserGroups, gone, graphcheck.ErrPrincipalNotFound, false},
		{"ODataError 404 for a collection", epRoles, gone, graphcheck.ErrUnavailable, false},
		{"body-less ApiError 503", epRoles, &abstractions.ApiError{ResponseStatusCode: 503}, graphcheck.ErrUnavailable, true},
		{"body-less ApiError 429", epRoles, &abstractions.ApiError{ResponseStatusCode: 429}, graphcheck.ErrUnavailable, true},
		{"body-less ApiError 400", epRoles, &abstractions.ApiError{ResponseStatusCode: 400}, graphcheck.ErrUnavailable, false},
		{"body-less ApiError 403", epGroups, &abstractions.ApiError{ResponseStatusCode: 403}, graphcheck.ErrPermissionDenied, false},
		{"ApiError without status", epRoles, &abstractions.ApiError{Message: "boom"}, graphcheck.ErrUnavailable, false},
		{"deadline", epRoles, context.DeadlineExceeded, context.DeadlineExceeded, true},
		{"deadline, wrapped", epRoles, fmt.Errorf("Post: %w", context.DeadlineExceeded), context.DeadlineExceeded, true},
		{"canceled", epRoles, context.Canceled, context.Canceled, false},
		{"connection refused", epRoles, refused, graphcheck.ErrUnavailable, true},
		{"connection reset", epRoles, &url.Error{Op: "Post", Err: syscall.ECONNRESET}, graphcheck.ErrUnavailable, true},
		{"dropped: EOF", epRoles, &url.Error{Op: "Post", URL: "x", Err: io.EOF}, graphcheck.ErrUnavailable, true},
		{"body cut short", epRoles, io.ErrUnexpectedEOF, graphcheck.ErrUnavailable, true},
		{"DNS", epRoles, &url.Error{Op: "Post", Err: &net.DNSError{Err: "no such host", Name: "graph.microsoft.com"}}, graphcheck.ErrUnavailable, true},
		{"TLS certificate", epRoles, badCert, graphcheck.ErrUnavailable, false},
		{"an error string that only reads like one", epRoles, errors.New("connection reset by peer"), graphcheck.ErrUnavailable, false},
	}
	for _, tt := range tests {
		got := classifyErr(tt.ep, tt.err)
		if !errors.Is(got, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
		if o := errors.Is(got, graphcheck.ErrOutage); o != tt.outage {
			t.Errorf("%s: errors.Is(%v, ErrOutage) = %v, want %v", tt.name, got, o, tt.outage)
		}
		if !errors.Is(got, graphcheck.ErrUnavailable) && !errors.Is(got, graphcheck.ErrPermissionDenied) &&
			!errors.Is(got, graphcheck.ErrLicenseRequired) && !errors.Is(got, graphcheck.ErrPrincipalNotFound) {
			t.Errorf("%s: %v wraps no graphcheck sentinel", tt.name, got)
		}
	}
}

func TestRelativeLink(t *testing.T) {
	s := &Source{cfg: mustResolve(t, Config{BaseURL: "https://graph.microsoft.com/v1.0", Credential: nopCredential{}})}
	tests := []struct {
		link string
		want string // "" = refused
	}{
		{"https://graph.microsoft.com/v1.0/users/x/transitiveMemberOf?$skiptoken=abc", "/users/x/transitiveMemberOf?$skiptoken=abc"},
		{"https://GRAPH.microsoft.com/v1.0/groups?%24skiptoken=a%2Bb", "/groups?%24skiptoken=a%2Bb"},
		{"http://graph.microsoft.com/v1.0/groups?$skiptoken=a", ""},
		{"https://graph.microsoft.com.attacker.invalid/v1.0/groups", ""},
		{"https://graph.microsoft.com:8443/v1.0/groups", ""},
		{"https://user@graph.microsoft.com/v1.0/groups", ""},
		{"https://graph.microsoft.com/beta/groups", ""},
		{"https://graph.microsoft.com/v1.0x/groups", ""},
		{"/v1.0/groups?$skiptoken=a", ""},
		{"//graph.microsoft.com/v1.0/groups", ""},
		{"::", ""},
	}
	for _, tt := range tests {
		got, err := s.relativeLink(tt.link)
		if tt.want == "" && err == nil {
			t.Errorf("relativeLink(%q) = %q, want refusal", tt.link, got)
		}
		if tt.want != "" && (err != nil || got != tt.want) {
			t.Errorf("relativeLink(%q) = %q, %v; want %q", tt.link, got, err, tt.want)
		}
	}
}

func TestResolve(t *testing.T) {
	tests := []struct {
		cfg   Config
		scope string // "" = error expected
	}{
		{Config{Credential: nopCredential{}}, "https://graph.microsoft.com/.default"},
		{Config{BaseURL: "https://graph.microsoft.us/v1.0", Credential: nopCredential{}}, "https://graph.microsoft.us/.default"},
		{Config{BaseURL: "https://dod-graph.microsoft.us/v1.0/", Credential: nopCredential{}}, "https://dod-graph.microsoft.us/.default"},
		{Config{BaseURL: "https://microsoftgraph.chinacloudapi.cn/beta", Credential: nopCredential{}}, "https://microsoftgraph.chinacloudapi.cn/.default"},
		{Config{BaseURL: "http://127.0.0.1:8080/v1.0", Credential: nopCredential{}}, "https://graph.microsoft.com/.default"},
		{Config{BaseURL: "http://[::1]:8080/v1.0", Credential: nopCredential{}}, "https://graph.microsoft.com/.default"},
		{Config{BaseURL: "https://graph.contoso.test/v1.0", Credential: nopCredential{}, Scope: "api://proxy/.default"}, "api://proxy/.default"},
		{Config{BaseURL: "https://graph.contoso.test/v1.0", Credential: nopCredential{}}, ""},
	}
	for _, tt := range tests {
		st, err := tt.cfg.resolve()
		switch {
		case tt.scope == "" && err == nil:
			t.Errorf("resolve(%q) accepted, scope %q", tt.cfg.BaseURL, st.Scope)
		case tt.scope != "" && err != nil:
			t.Errorf("resolve(%q): %v", tt.cfg.BaseURL, err)
		case tt.scope != "" && st.Scope != tt.scope:
			t.Errorf("resolve(%q) scope = %q, want %q", tt.cfg.BaseURL, st.Scope, tt.scope)
		}
	}
	st := mustResolve(t, Config{Credential: nopCredential{}})
	if st.Timeout != DefaultTimeout || st.GroupRolesTTL != DefaultGroupRolesTTL || st.MaxPages != DefaultMaxPages ||
		st.MaxRetries != DefaultMaxRetries || st.RetryDelay != DefaultRetryDelay || st.baseStr != DefaultBaseURL ||
		st.Now == nil || st.Sleep == nil || st.Logger == nil {
		t.Errorf("defaults not applied: %+v", st)
	}
}

func TestSleep(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if err := sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) || time.Since(start) > time.Second {
		t.Errorf("sleep on a canceled context: %v after %v", err, time.Since(start))
	}
	if err := sleep(context.Background(), 0); err != nil {
		t.Errorf("sleep(0): %v", err)
	}
}

func mustResolve(t *testing.T, c Config) *settings {
	t.Helper()
	st, err := c.resolve()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// nopCredential is a credential that is never asked for a token.
type nopCredential struct{}

func (nopCredential) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{}, errors.New("nopCredential: no token")
}

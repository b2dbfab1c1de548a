package msgraph_test

import (
	"context"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/graphcheck/msgraph"
)

// Object IDs of the test tenant.
const (
	alice  = "a11ce000-0000-4000-8000-000000000001"
	bob    = "b0b00000-0000-4000-8000-000000000002"
	carol  = "ca201000-0000-4000-8000-000000000003"
	dave   = "da7e0000-0000-4000-8000-000000000004"
	erin   = "e2140000-0000-4000-8000-000000000005"
	frank  = "f2a00000-0000-4000-8000-000000000006"
	nobody = "00000000-0000-4000-8000-0000000000ff" // not in the directory
	daemon = "dae30000-0000-4000-8000-000000000007" // a service principal

	admins = "ad315000-0000-4000-8000-00000000000a" // role-assignable
	secops = "5ec00000-0000-4000-8000-00000000000b" // role-assignable
	staff  = "57aff000-0000-4000-8000-00000000000c" // plain
	au1    = "a0000000-0000-4000-8000-0000000000a1" // an administrative unit
)

var t0 = time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)

const fakeToken = "eyJ0eXAiOiJKV1QifQ.eyJmYWtlIjoidG9rZW4ifQ.c2lnbmF0dXJl"

// fakeCredential is an azcore.TokenCredential that hands out a fixed token
// and records the scopes it was asked for.
type fakeCredential struct {
	mu     sync.Mutex
	scopes [][]string
}

func (c *fakeCredential) GetToken(_ context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.scopes = append(c.scopes, append([]string(nil), opts.Scopes...))
	return azcore.AccessToken{Token: fakeToken, ExpiresOn: time.Now().Add(time.Hour)}, nil
}

func (c *fakeCredential) requested() [][]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]string(nil), c.scopes...)
}

// sleeper records the waits a Source asks for and returns at once: tests
// never sleep for real.
type sleeper struct {
	mu     sync.Mutex
	waits  []time.Duration
	result error // returned instead of nil when set
}

func (s *sleeper) Sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.waits = append(s.waits, d)
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.result
}

func (s *sleeper) slept() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.waits...)
}

// env is a seeded fake tenant and a Source reading it through the real SDK.
type env struct {
	t     *testing.T
	srv   *graphtest.Server
	clock *graphtest.Clock
	cred  *fakeCredential
	sleep *sleeper
	src   *msgraph.Source
}

// newEnv starts a fake tenant with a small directory and a Source with a
// fake credential and a recording sleeper; edit adjusts the Config.
func newEnv(t *testing.T, opts graphtest.Options, edit func(*env, *msgraph.Config)) *env {
	t.Helper()
	e := &env{t: t, clock: graphtest.NewClock(t0), cred: &fakeCredential{}, sleep: &sleeper{}}
	opts.Clock = e.clock
	e.srv = graphtest.NewServer(opts)
	t.Cleanup(e.srv.Close)
	for _, u := range []string{alice, bob, carol, dave, erin, frank} {
		must(t, e.srv.AddUser(u, u[:4]+"@contoso.test"))
	}
	must(t, e.srv.AddServicePrincipal(daemon, "daemon"))
	must(t, e.srv.AddGroup(admins, "Admins", true))
	must(t, e.srv.AddGroup(secops, "SecOps", true))
	must(t, e.srv.AddGroup(staff, "Staff", false))
	cfg := msgraph.Config{
		BaseURL:    e.srv.GraphURL(),
		Credential: e.cred,
		Now:        e.clock.Now,
		Sleep:      e.sleep.Sleep,
	}
	if edit != nil {
		edit(e, &cfg)
	}
	src, err := msgraph.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.src = src
	return e
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func user(oid string) graphcheck.Principal {
	return graphcheck.Principal{TenantID: graphtest.TenantID, ObjectID: oid}
}

func app(oid string) graphcheck.Principal {
	return graphcheck.Principal{TenantID: graphtest.TenantID, ObjectID: oid, ServicePrincipal: true}
}

func (e *env) lookup(p graphcheck.Principal) (*graphcheck.State, error) {
	e.t.Helper()
	st, err := e.src.Lookup(context.Background(), p)
	if err != nil && st != nil {
		e.t.Errorf("Lookup returned a State with error %v", err)
	}
	return st, err
}

func (e *env) mustLookup(p graphcheck.Principal) *graphcheck.State {
	e.t.Helper()
	st, err := e.lookup(p)
	if err != nil {
		e.t.Fatalf("Lookup(%s): %v", p.ObjectID, err)
	}
	return st
}

// roundTrips counts real HTTP requests (not $batch sub-requests).
func (e *env) roundTrips() int {
	n := 0
	for _, r := range e.srv.Requests() {
		if r.BatchID == "" {
			n++
		}
	}
	return n
}

// batches returns the sub-requests of each $batch, in order.
func (e *env) batches() [][]graphtest.Request {
	var out [][]graphtest.Request
	for _, r := range e.srv.Requests() {
		switch {
		case r.BatchID == "":
			out = append(out, nil)
		case len(out) > 0:
			out[len(out)-1] = append(out[len(out)-1], r)
		}
	}
	return out
}

// subPaths counts sub-requests by path prefix below /v1.0.
func (e *env) subRequests(prefix string) int {
	n := 0
	for _, r := range e.srv.Requests() {
		if r.BatchID != "" && strings.HasPrefix(r.Path, "/v1.0"+prefix) {
			n++
		}
	}
	return n
}

func query(t *testing.T, raw string) url.Values {
	t.Helper()
	v, err := url.ParseQuery(raw)
	if err != nil {
		t.Fatalf("query %q: %v", raw, err)
	}
	return v
}

func at(d time.Duration) time.Time { return t0.Add(d) }

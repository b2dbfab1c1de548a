package msgraph_test

import (
	"net/url"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/graphcheck/graphtest"
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

// seedDirectory adds the test directory to a fake tenant: the users
// alice to frank, the service principal daemon, the role-assignable groups
// admins and secops and the plain group staff, none holding any role.
func seedDirectory(tb testing.TB, srv *graphtest.Server) {
	tb.Helper()
	for _, u := range []string{alice, bob, carol, dave, erin, frank} {
		must(tb, srv.AddUser(u, u[:4]+"@contoso.test"))
	}
	must(tb, srv.AddServicePrincipal(daemon, "daemon"))
	must(tb, srv.AddGroup(admins, "Admins", true))
	must(tb, srv.AddGroup(secops, "SecOps", true))
	must(tb, srv.AddGroup(staff, "Staff", false))
}

func must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

func user(oid string) graphcheck.Principal {
	return graphcheck.Principal{TenantID: graphtest.TenantID, ObjectID: oid}
}

func app(oid string) graphcheck.Principal {
	return graphcheck.Principal{TenantID: graphtest.TenantID, ObjectID: oid, ServicePrincipal: true}
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

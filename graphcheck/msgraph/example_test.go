package msgraph_test

import (
	"context"
	"fmt"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/graphcheck/msgraph"
)

// A Source reads a fake tenant in which Alice activated Global
// Administrator through PIM for an hour and belongs to a role-assignable
// group holding Security Administrator. In production, leave BaseURL empty
// and let Credential default to DefaultAzureCredential.
func Example() {
	clock := graphtest.NewClock(time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC))
	tenant := graphtest.NewServer(graphtest.Options{Clock: clock})
	defer tenant.Close()

	const alice = "a11ce000-0000-4000-8000-000000000001"
	const admins = "ad315000-0000-4000-8000-00000000000a"
	for _, err := range []error{
		tenant.AddUser(alice, "alice@contoso.test"),
		tenant.MakeEligible(alice, graphtest.RoleGlobalAdministrator, "/", time.Time{}),
		tenant.AddGroup(admins, "Security admins", true),
		tenant.AssignRole(admins, graphtest.RoleSecurityAdministrator, "/", time.Time{}, time.Time{}),
		tenant.AddGroupMember(admins, alice),
	} {
		if err != nil {
			panic(err)
		}
	}
	if _, err := tenant.ActivateRole(alice, graphtest.RoleGlobalAdministrator, "/", time.Hour); err != nil {
		panic(err)
	}

	src, err := msgraph.New(msgraph.Config{
		BaseURL:              tenant.GraphURL(),
		InsecureNoCredential: true, // loopback only
		Now:                  clock.Now,
	})
	if err != nil {
		panic(err)
	}
	st, err := src.Lookup(context.Background(), graphcheck.Principal{TenantID: graphtest.TenantID, ObjectID: alice})
	if err != nil {
		panic(err)
	}
	for _, r := range st.Roles {
		until := "permanent"
		if !r.End.IsZero() {
			until = "until " + r.End.Format(time.Kitchen)
		}
		if r.ViaGroupID != "" {
			until += ", through group " + r.ViaGroupID
		}
		fmt.Println(r.RoleDefinitionID, r.AssignmentType, until)
	}
	_, ok := st.RoleActive(clock.Now().Add(time.Hour), graphtest.RoleGlobalAdministrator, "/")
	fmt.Println("Global Administrator active in an hour:", ok)
	// Output:
	// 62e90394-69f5-4237-9190-012177145e10 Activated until 10:00AM
	// 194ae4cb-b126-40b2-bd5b-6091b380977d Assigned permanent, through group ad315000-0000-4000-8000-00000000000a
	// Global Administrator active in an hour: false
}

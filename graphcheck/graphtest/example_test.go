package graphtest_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"time"

	"github.com/pimguard/pimguard/graphcheck/graphtest"
)

// A user is made eligible for Global Administrator, activates it for an hour
// through PIM, and a Graph request sees the activated assignment until the
// fake clock passes its end.
func Example() {
	clock := graphtest.NewClock(time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC))
	srv := graphtest.NewServer(graphtest.Options{Clock: clock})
	defer srv.Close()

	const user = "a11ce000-0000-4000-8000-000000000001"
	if err := srv.AddUser(user, "alice@contoso.test"); err != nil {
		panic(err)
	}
	if err := srv.MakeEligible(user, graphtest.RoleGlobalAdministrator, "/", time.Time{}); err != nil {
		panic(err)
	}
	end, err := srv.ActivateRole(user, graphtest.RoleGlobalAdministrator, "/", time.Hour)
	if err != nil {
		panic(err)
	}
	fmt.Println("activated until", end.Format(time.Kitchen))

	activeRoles := func() {
		u := srv.GraphURL() + "/roleManagement/directory/roleAssignmentScheduleInstances?$filter=" +
			url.QueryEscape("principalId eq '"+user+"'") + "&$select=roleDefinitionId,assignmentType,endDateTime"
		resp, err := srv.Client().Get(u)
		if err != nil {
			panic(err)
		}
		defer resp.Body.Close()
		var page struct {
			Value []struct {
				RoleDefinitionID string `json:"roleDefinitionId"`
				AssignmentType   string `json:"assignmentType"`
				EndDateTime      string `json:"endDateTime"`
			} `json:"value"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
			panic(err)
		}
		fmt.Printf("%s: %d active\n", clock.Now().Format(time.Kitchen), len(page.Value))
		for _, v := range page.Value {
			fmt.Println(" ", v.RoleDefinitionID, v.AssignmentType, v.EndDateTime)
		}
	}
	activeRoles()
	clock.Advance(time.Hour)
	activeRoles()
	// Output:
	// activated until 10:00AM
	// 9:00AM: 1 active
	//   62e90394-69f5-4237-9190-012177145e10 Activated 2025-03-01T10:00:00Z
	// 10:00AM: 0 active
}

// Identity Protection reports a user at high risk. It allows about one
// request per second per tenant: the second request in the same second of
// the fake clock is throttled, without Retry-After, and one a second later
// is served again.
func ExampleServer_SetUserRisk() {
	clock := graphtest.NewClock(time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC))
	srv := graphtest.NewServer(graphtest.Options{Clock: clock, RiskyUsersPerSecond: 1})
	defer srv.Close()

	const user = "a11ce000-0000-4000-8000-000000000001"
	if err := srv.AddUser(user, "alice@contoso.test"); err != nil {
		panic(err)
	}
	if err := srv.SetUserRisk(user, "high", "atRisk"); err != nil {
		panic(err)
	}
	riskOf := func() {
		resp, err := srv.Client().Get(srv.GraphURL() + "/identityProtection/riskyUsers/" + user + "?$select=riskLevel,riskState")
		if err != nil {
			panic(err)
		}
		defer resp.Body.Close()
		var body struct {
			RiskLevel string `json:"riskLevel"`
			RiskState string `json:"riskState"`
			Error     struct {
				Code string `json:"code"`
			} `json:"error"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			panic(err)
		}
		if resp.StatusCode != 200 {
			fmt.Printf("%d %s, Retry-After %q\n", resp.StatusCode, body.Error.Code, resp.Header.Get("Retry-After"))
			return
		}
		fmt.Println(resp.StatusCode, body.RiskLevel, body.RiskState)
	}
	riskOf()
	riskOf()
	clock.Advance(time.Second)
	riskOf()
	// Output:
	// 200 high atRisk
	// 429 TooManyRequests, Retry-After ""
	// 200 high atRisk
}

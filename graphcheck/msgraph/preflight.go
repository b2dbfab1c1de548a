package msgraph

import (
	"context"
	"encoding/json"
	"errors"

	abstractions "github.com/microsoft/kiota-abstractions-go"
	"github.com/microsoftgraph/msgraph-sdk-go/directory"
	"github.com/microsoftgraph/msgraph-sdk-go/groups"
	"github.com/microsoftgraph/msgraph-sdk-go/identityprotection"
	"github.com/microsoftgraph/msgraph-sdk-go/users"

	"github.com/pimguard/pimguard/graphcheck"
)

var _ graphcheck.Preflighter = (*Source)(nil)

// nobodyID is a GUID no directory object has: PIM requests filtered on it
// exercise the permission and answer an empty collection.
const nobodyID = "00000000-0000-0000-0000-000000000000"

// Preflight checks, with one cheap Graph request per feature, that the
// application may read everything Lookups asking for need will read, so
// that a missing permission or licence fails a service at start instead
// of turning every request into a 503:
//
//	GET /roleManagement/directory/roleAssignmentScheduleInstances?$filter=principalId eq '{nobody}'   RoleAssignmentSchedule.Read.Directory, PIM licence
//	GET /identityGovernance/privilegedAccess/group/assignmentScheduleInstances?$filter=…              PrivilegedAssignmentSchedule.Read.AzureADGroup
//	GET /groups?$filter=isAssignableToRole eq true&$select=id&$top=1                                  GroupMember.Read.All
//	GET /users?$select=id,accountEnabled,…&$top=1 (NeedAccount, NeedGroupMembership, NeedAdministrativeUnits) User.Read.All
//	GET /identityProtection/riskyUsers?$select=id&$top=1 (need has NeedRisk)                          IdentityRiskyUser.Read.All, P2 licence
//	GET /directory/administrativeUnits?$select=id&$top=1 (need has NeedAdministrativeUnits)           AdministrativeUnit.Read.All
//
// Live group membership ([graphcheck.NeedGroupMembership]: lookups with
// CheckGroups) calls checkMemberGroups, which needs User.Read.All and
// GroupMember.Read.All: the /users and /groups probes check those, since a
// checkMemberGroups probe would need a real user. [Source.User]
// ([graphcheck.NeedAdministrativeUnits]) needs User.Read.All and
// AdministrativeUnit.Read.All.
//
// It sends them all and returns every failure, joined ([errors.Join]); each
// refusal is a [*graphcheck.PermissionError] naming the permission or
// licence, and anything else wraps [graphcheck.ErrUnavailable]. A user
// list whose first user comes back without accountEnabled (the
// application has User.ReadBasic.All only) is reported as a missing
// User.Read.All. Service principals' Application.Read.All is not probed:
// grant it if app-only callers are expected.
//
// Each request is bounded by ctx and [Config.Timeout]. Preflight does not
// know the tenant the credential signs in to, so it neither waits for a
// tenant's pause nor sets one (see [Config.TenantLimits]); its 429s are
// retried like a Lookup's. It is safe for concurrent use and changes no
// cached state.
func (s *Source) Preflight(ctx context.Context, need graphcheck.Need) error {
	ctx, o := s.tel.start(ctx, spanPreflight, needAttr(need))
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	builders := []func() (*collection, error){
		func() (*collection, error) {
			return s.roleInstances(ctx, nobodyID, true, func([]graphcheck.RoleAssignment) {})
		},
		func() (*collection, error) {
			return s.groupInstances(ctx, nobodyID, func([]graphcheck.GroupMembership) {})
		},
		func() (*collection, error) {
			filter, top := "isAssignableToRole eq true", int32(1)
			return s.probe(epGroups)(s.client.Groups().ToGetRequestInformation(ctx, &groups.GroupsRequestBuilderGetRequestConfiguration{
				QueryParameters: &groups.GroupsRequestBuilderGetQueryParameters{Filter: &filter, Select: []string{"id"}, Top: &top},
			}))
		},
	}
	if need&(graphcheck.NeedAccount|graphcheck.NeedGroupMembership|graphcheck.NeedAdministrativeUnits) != 0 {
		builders = append(builders, func() (*collection, error) {
			top := int32(1)
			c, err := s.probe(epUsers)(s.client.Users().ToGetRequestInformation(ctx, &users.UsersRequestBuilderGetRequestConfiguration{
				QueryParameters: &users.UsersRequestBuilderGetQueryParameters{Select: userSelect, Top: &top},
			}))
			if c != nil {
				c.add = checkAccountReadable
			}
			return c, err
		})
	}
	if need.Has(graphcheck.NeedRisk) {
		builders = append(builders, func() (*collection, error) {
			top := int32(1)
			return s.probe(epRiskyUsers)(s.client.IdentityProtection().RiskyUsers().ToGetRequestInformation(ctx, &identityprotection.RiskyUsersRequestBuilderGetRequestConfiguration{
				QueryParameters: &identityprotection.RiskyUsersRequestBuilderGetQueryParameters{Select: []string{"id"}, Top: &top},
			}))
		})
	}
	if need.Has(graphcheck.NeedAdministrativeUnits) {
		builders = append(builders, func() (*collection, error) {
			top := int32(1)
			return s.probe(epUnits)(s.client.Directory().AdministrativeUnits().ToGetRequestInformation(ctx, &directory.AdministrativeUnitsRequestBuilderGetRequestConfiguration{
				QueryParameters: &directory.AdministrativeUnitsRequestBuilderGetQueryParameters{Select: []string{"id"}, Top: &top},
			}))
		})
	}
	var errs []error
	for _, build := range builders {
		c, err := build()
		if err == nil {
			c.onePage = true
			err = s.fetch(ctx, "", []*collection{c}) // the tenant is the credential's: unknown here
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	o.end(errs...)
	return errors.Join(errs...)
}

// probe returns a builder of a one-page collection for ep whose items are
// not kept, from a request the SDK's builders made.
func (s *Source) probe(ep *endpoint) func(*abstractions.RequestInformation, error) (*collection, error) {
	return func(ri *abstractions.RequestInformation, err error) (*collection, error) {
		rel, err := s.relative(ri, err)
		if err != nil {
			return nil, unavailable("building %s: %v", ep.request(), err)
		}
		return &collection{ep: ep, next: rel, add: func(json.RawMessage) error { return nil }}, nil
	}
}

// checkAccountReadable fails when the first listed user lacks
// accountEnabled: Graph drops properties the application may not read
// instead of refusing the request.
func checkAccountReadable(value json.RawMessage) error {
	var items []map[string]json.RawMessage
	if err := json.Unmarshal(value, &items); err != nil {
		return err
	}
	if len(items) == 0 {
		return nil
	}
	if v, ok := items[0]["accountEnabled"]; !ok || string(v) == "null" {
		return &graphcheck.PermissionError{Permission: PermissionUser, Request: epUsers.path,
			Code: "accountEnabled not returned", Err: graphcheck.ErrPermissionDenied}
	}
	return nil
}

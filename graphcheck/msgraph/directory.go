package msgraph

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/microsoftgraph/msgraph-sdk-go/users"
	"go.opentelemetry.io/otel/attribute"

	"github.com/pimguard/pimguard/graphcheck"
)

var _ graphcheck.UserDirectory = (*Source)(nil)

// User returns the user userID of tenant tenantID as the directory holds it
// now: display name, userPrincipalName and the administrative units it is
// a member of. It validates both IDs first (an ID that is not a GUID wraps
// [graphcheck.ErrInvalidPrincipal] and nothing is sent), then reads, in
// one $batch,
//
//	GET /users/{id}?$select=id,displayName,userPrincipalName                        User.Read.All
//	GET /users/{id}/memberOf/graph.administrativeUnit?$select=id&$top=999          AdministrativeUnit.Read.All
//
// following the units' @odata.nextLink as a Lookup does. A 404
// Request_ResourceNotFound wraps [graphcheck.ErrPrincipalNotFound]: no
// such user (a service principal's or a group's ID is no user either).
// Other failures are classified as a Lookup's, a refusal naming
// [PermissionUser] or [PermissionAdministrativeUnit]; no failure yields a
// user. It is bounded by ctx and [Config.Timeout], caches nothing, and is
// safe for concurrent use. It is what an API that decides on a target
// user ("Helpdesk Administrator tenant-wide or in a unit that holds the
// user") asks; graphcheck.UserDirectory declares it.
func (s *Source) User(ctx context.Context, tenantID, userID string) (_ *graphcheck.DirectoryUser, err error) {
	p := graphcheck.Principal{TenantID: tenantID, ObjectID: userID}
	attrs := []attribute.KeyValue{}
	if graphcheck.IsGUID(tenantID) {
		attrs = append(attrs, attribute.String("pimguard.tenant_id", strings.ToLower(tenantID)))
	}
	ctx, o := s.tel.start(ctx, spanUser, attrs...)
	defer func() { o.end(err) }()
	if err := p.Validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(withPace(ctx), s.cfg.Timeout)
	defer cancel()
	oid, tenant := strings.ToLower(userID), strings.ToLower(tenantID)

	u := &graphcheck.DirectoryUser{TenantID: tenant, ID: oid}
	rel, err := s.relative(s.client.Users().ByUserId(oid).ToGetRequestInformation(ctx, &users.UserItemRequestBuilderGetRequestConfiguration{
		QueryParameters: &users.UserItemRequestBuilderGetQueryParameters{Select: directoryUserSelect},
	}))
	if err != nil {
		return nil, unavailable("building %s: %v", epUser.request(), err)
	}
	self := &collection{ep: epUser, next: rel, single: true, add: func(body json.RawMessage) error {
		return decodeDirectoryUser(body, u)
	}}
	top := int32(999)
	rel, err = s.relative(s.client.Users().ByUserId(oid).MemberOf().GraphAdministrativeUnit().ToGetRequestInformation(ctx,
		&users.ItemMemberOfGraphAdministrativeUnitRequestBuilderGetRequestConfiguration{
			QueryParameters: &users.ItemMemberOfGraphAdministrativeUnitRequestBuilderGetQueryParameters{Select: []string{"id"}, Top: &top},
		}))
	if err != nil {
		return nil, unavailable("building %s: %v", epUserUnits.request(), err)
	}
	units := &collection{ep: epUserUnits, next: rel, add: func(v json.RawMessage) error {
		ids, err := decodeUnits(v)
		u.AdministrativeUnits = append(u.AdministrativeUnits, ids...)
		return err
	}}
	if err := s.fetch(ctx, tenant, []*collection{self, units}); err != nil {
		return nil, err
	}
	slices.Sort(u.AdministrativeUnits)
	u.AdministrativeUnits = slices.Compact(u.AdministrativeUnits)
	return u, nil
}

// directoryUserSelect are the properties of a user that User reads.
var directoryUserSelect = []string{"id", "displayName", "userPrincipalName"}

// decodeDirectoryUser reads GET /users/{id} into u, whose ID it must be.
// displayName and userPrincipalName may be null (limited information).
func decodeDirectoryUser(body []byte, u *graphcheck.DirectoryUser) error {
	var o struct {
		ID                *string `json:"id"`
		DisplayName       *string `json:"displayName"`
		UserPrincipalName *string `json:"userPrincipalName"`
	}
	if err := decodeObject(body, "the user", &o); err != nil {
		return err
	}
	if o.ID == nil || !strings.EqualFold(*o.ID, u.ID) {
		return fmt.Errorf("%w: asked for the user %s, got the object %.40q", errShape, u.ID, deref(o.ID))
	}
	u.DisplayName, u.UserPrincipalName = deref(o.DisplayName), deref(o.UserPrincipalName)
	return nil
}

// decodeUnits decodes a page of memberOf/graph.administrativeUnit. Objects
// typed as something other than an administrative unit are skipped; every
// unit must have a GUID id.
func decodeUnits(value json.RawMessage) ([]string, error) {
	return decodeIDs(value, "an administrative unit", "microsoft.graph.administrativeUnit")
}

// decodeIDs decodes a page of directory objects into their IDs, lower
// case. An object whose @odata.type is none of types (compared without
// case or a leading '#') is skipped; every other object, what, must have a
// GUID id.
func decodeIDs(value json.RawMessage, what string, types ...string) ([]string, error) {
	var items []struct {
		ODataType *string `json:"@odata.type"`
		ID        *string `json:"id"`
	}
	if err := json.Unmarshal(value, &items); err != nil {
		return nil, err
	}
	out := make([]string, 0, len(items))
	for _, it := range items {
		if it.ODataType != nil && !slices.ContainsFunc(types, func(t string) bool {
			return strings.EqualFold(strings.TrimPrefix(*it.ODataType, "#"), t)
		}) {
			continue
		}
		if it.ID == nil || !graphcheck.IsGUID(*it.ID) {
			return nil, fmt.Errorf("%w: %s has no GUID id (%.40q)", errShape, what, deref(it.ID))
		}
		out = append(out, strings.ToLower(*it.ID))
	}
	return out, nil
}

package msgraph

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/microsoftgraph/msgraph-sdk-go/users"

	"github.com/pimguard/pimguard/graphcheck"
)

// ResolveUser returns the user that userIDOrUPN names in tenant tenantID:
// an object ID, or a userPrincipalName (jane@contoso.com), which Graph
// resolves (GET /users/{upn}, User.Read.All). It then answers as
// [Source.User]. It is meant for tools that start from what a person
// types ("why was jane@contoso.com denied?"), not for the request path,
// where the token carries the object ID.
func (s *Source) ResolveUser(ctx context.Context, tenantID, userIDOrUPN string) (*graphcheck.DirectoryUser, error) {
	if graphcheck.IsGUID(userIDOrUPN) {
		return s.User(ctx, tenantID, userIDOrUPN)
	}
	upn := strings.TrimSpace(userIDOrUPN)
	if !graphcheck.IsGUID(tenantID) || !strings.Contains(upn, "@") || strings.ContainsAny(upn, "/?#") {
		return nil, fmt.Errorf("%w: %.80q is neither an object ID nor a userPrincipalName", graphcheck.ErrInvalidPrincipal, userIDOrUPN)
	}
	tctx, cancel := context.WithTimeout(withPace(ctx), s.cfg.Timeout)
	defer cancel()
	rel, err := s.relative(s.client.Users().ByUserId(upn).ToGetRequestInformation(tctx, &users.UserItemRequestBuilderGetRequestConfiguration{
		QueryParameters: &users.UserItemRequestBuilderGetQueryParameters{Select: []string{"id"}},
	}))
	if err != nil {
		return nil, unavailable("building %s: %v", epUser.request(), err)
	}
	var id string
	self := &collection{ep: epUser, next: rel, single: true, add: func(body json.RawMessage) error {
		var o struct {
			ID *string `json:"id"`
		}
		if err := decodeObject(body, "the user", &o); err != nil {
			return err
		}
		if o.ID == nil || !graphcheck.IsGUID(*o.ID) {
			return fmt.Errorf("%w: the user %s has no GUID id (%.40q)", errShape, upn, deref(o.ID))
		}
		id = *o.ID
		return nil
	}}
	if err := s.fetch(tctx, strings.ToLower(tenantID), []*collection{self}); err != nil {
		return nil, err
	}
	return s.User(ctx, tenantID, id)
}

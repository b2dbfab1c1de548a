package msgraph

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	abstractions "github.com/microsoft/kiota-abstractions-go"

	"github.com/pimguard/pimguard/graphcheck"
)

// maxCheckMemberGroups is how many group IDs one checkMemberGroups call
// may carry ("You can check up to a maximum of 20 groups per request").
const maxCheckMemberGroups = 20

// checkMemberGroups returns the collections that ask Graph, with POST
// /users/{oid}/checkMemberGroups (or /servicePrincipals/...), which of
// groups oid is a transitive member of: one per 20 groups, each sent in
// the lookup's $batch. Graph answers the IDs of the groups asked that the
// object belongs to, however many groups it belongs to in all, so the cost
// is one sub-request per 20 groups asked. add receives each call's answer.
// A 404 Request_ResourceNotFound is the principal's deletion.
func (s *Source) checkMemberGroups(ctx context.Context, oid string, servicePrincipal bool, groups []string, add func([]string)) ([]*collection, error) {
	ep := epUserCheckGroups
	var b *abstractions.BaseRequestBuilder
	if servicePrincipal {
		ep = epSPCheckGroups
		b = &s.client.ServicePrincipals().ByServicePrincipalId(oid).CheckMemberGroups().BaseRequestBuilder
	} else {
		b = &s.client.Users().ByUserId(oid).CheckMemberGroups().BaseRequestBuilder
	}
	// The URL comes from the SDK's builder; the body is encoded here, not
	// through the SDK's request body model, whose constructor reads the
	// backing-store factory that every New writes (kiota-http-go's
	// EnableBackingStore) without a lock.
	rel, err := s.relative(abstractions.NewRequestInformationWithMethodAndUrlTemplateAndPathParameters(abstractions.POST, b.UrlTemplate, b.PathParameters), nil)
	if err != nil {
		return nil, unavailable("building %s: %v", ep.request(), err)
	}
	var cols []*collection
	for chunk := range slices.Chunk(groups, maxCheckMemberGroups) {
		body, err := json.Marshal(struct {
			GroupIDs []string `json:"groupIds"`
		}{chunk})
		if err != nil {
			return nil, unavailable("building %s: %v", ep.request(), err)
		}
		cols = append(cols, &collection{ep: ep, next: rel, single: true, post: body, add: func(body json.RawMessage) error {
			m, err := decodeMemberGroups(body, chunk)
			if err == nil {
				add(m)
			}
			return err
		}})
	}
	return cols, nil
}

// decodeMemberGroups reads a checkMemberGroups answer to a call that asked
// about the groups asked (lower case): {"value":[ids]}, every ID one of
// those asked. An ID it did not ask about, a value that is not an array of
// strings, or a further page (an action's answer has none; a partial
// answer must not pass for "not a member") makes the answer unreadable.
func decodeMemberGroups(body []byte, asked []string) ([]string, error) {
	var a struct {
		Value    *[]string       `json:"value"`
		NextLink json.RawMessage `json:"@odata.nextLink"`
	}
	if err := decodeObject(body, "the checkMemberGroups answer", &a); err != nil {
		return nil, err
	}
	switch {
	case a.Value == nil:
		return nil, fmt.Errorf("%w: the checkMemberGroups answer has no \"value\" array", errShape)
	case a.NextLink != nil:
		return nil, fmt.Errorf("%w: the checkMemberGroups answer has an @odata.nextLink", errShape)
	}
	out := make([]string, 0, len(*a.Value))
	for _, id := range *a.Value {
		id = strings.ToLower(id)
		if !slices.Contains(asked, id) {
			return nil, fmt.Errorf("%w: checkMemberGroups answered a group it was not asked about: %.40q", errShape, id)
		}
		out = append(out, id)
	}
	return out, nil
}

// memberOfState records on st which groups the lookup checked and which of
// them the principal belongs to, both sorted.
func memberOfState(st *graphcheck.State, checked, member []string) {
	if len(checked) == 0 {
		return
	}
	st.CheckedGroups = checked
	slices.Sort(member)
	st.MemberOf = slices.Compact(member)
}

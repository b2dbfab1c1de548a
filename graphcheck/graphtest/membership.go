package graphtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
)

// Live group membership: POST .../checkMemberGroups, and the direct
// memberships (groups and administrative units) of GET .../memberOf.

// MaxCheckMemberGroups is the number of group IDs one checkMemberGroups
// call may ask about, as in Microsoft Graph ("You can check up to a
// maximum of 20 groups per request"); more is a 400.
const MaxCheckMemberGroups = 20

// memberGroups returns those of groupIDs that the object id is a member of
// at now, directly or through nested groups, permanently or through an
// active PIM for Groups member instance (what checkMemberGroups answers):
// lower case, in the order asked, each once. IDs that name no group are
// not memberships. Callers hold d.mu.
func (d *directory) memberGroups(id string, groupIDs []string, now time.Time) []string {
	in := d.transitiveGroups(strings.ToLower(id), now)
	out := []string{}
	seen := map[string]bool{}
	for _, g := range groupIDs {
		g = strings.ToLower(g)
		if in[g] && !seen[g] {
			seen[g] = true
			out = append(out, g)
		}
	}
	return out
}

// checkMemberGroups serves POST /users/{id}/checkMemberGroups and
// /servicePrincipals/{id}/checkMemberGroups: the body is
// {"groupIds":[...]} with up to MaxCheckMemberGroups group IDs, the answer
// {"value":[...]} those of them the object is a transitive member of at
// the clock's now (see memberGroups), as a Collection(Edm.String).
func (s *Server) checkMemberGroups(req *graphRequest, kind objKind, id string) graphResponse {
	ids, msg := parseGroupIDs(req.body)
	if msg != "" {
		return s.graphError(req, http.StatusBadRequest, "Request_BadRequest", msg)
	}
	now := s.clock.Now()
	d := &s.dir
	d.mu.Lock()
	o, err := d.need(id, kind)
	var member []string
	if err == nil {
		member = d.memberGroups(o.id, ids, now)
	}
	d.mu.Unlock()
	if err != nil {
		return s.resourceNotFound(req, id)
	}
	return s.ok(req, entity{
		{"@odata.context", s.metadata() + "Collection(Edm.String)"},
		{"value", member},
	})
}

// parseGroupIDs reads a checkMemberGroups body strictly: a JSON object
// whose groupIds is an array of at most MaxCheckMemberGroups GUID strings.
// It returns the message of a 400 when the body is anything else.
func parseGroupIDs(body []byte) ([]string, string) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 || body[0] != '{' {
		return nil, "Empty Payload. JSON content expected."
	}
	var in struct {
		GroupIDs *[]json.RawMessage `json:"groupIds"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, "Invalid JSON payload: " + err.Error()
	}
	if in.GroupIDs == nil {
		return nil, "The request body must include the parameter 'groupIds'."
	}
	if n := len(*in.GroupIDs); n > MaxCheckMemberGroups {
		return nil, fmt.Sprintf("Too many groupIds: %d, at most %d may be checked per request.", n, MaxCheckMemberGroups)
	}
	ids := make([]string, 0, len(*in.GroupIDs))
	for _, raw := range *in.GroupIDs {
		var id string
		if json.Unmarshal(raw, &id) != nil || !graphcheck.IsGUID(id) {
			return nil, fmt.Sprintf("Invalid object identifier '%s'.", strings.Trim(string(raw), `"`))
		}
		ids = append(ids, id)
	}
	return ids, ""
}

// directMemberOf serves GET /users/{id}/memberOf/{cast} (and
// /servicePrincipals/...): the object's direct memberships, in creation
// order, of the type cast names: microsoft.graph.administrativeUnit (or
// graph.administrativeUnit, as the Go SDK sends it) for the administrative
// units it is a member of, microsoft.graph.group for the groups it is a
// direct member of at now (permanently or through an active PIM for Groups
// member instance). memberOf without a cast, and other casts, are not
// modelled (400).
func (s *Server) directMemberOf(req *graphRequest, kind objKind, id, cast string) graphResponse {
	var ep *endpoint
	switch strings.TrimPrefix(strings.ToLower(cast), "microsoft.") {
	case "graph.administrativeunit":
		ep = &memberOfAdminUnitEndpoint
	case "graph.group":
		ep = &memberOfEndpoint
	default:
		return s.segmentNotFound(req, cast)
	}
	return s.related(req, ep, kind, id, false, func(d *directory, o *dirObject, now time.Time) []string {
		if ep == &memberOfEndpoint {
			return inOrder(d, d.directGroups(o.id, now))
		}
		return d.adminUnitsOf(o.id)
	})
}

package graphtest

import "time"

// The members of a group, GET /groups/{id}/members: what a tenant-wide
// snapshot of PIM state (graphcheck/msgraph's Snapshot) reads for each
// role-assignable group that holds an active role, since a role-assignable
// group cannot have groups as members and its direct members are therefore
// all the principals the group's roles reach.

// groupMembersEndpoint is GET /groups/{id}/members: directory objects of
// several types, each rendered as its own single-object GET renders it,
// with its @odata.type. Not filterable (Graph would, as an advanced query).
var groupMembersEndpoint = endpoint{
	context:  "directoryObjects",
	typeName: "microsoft.graph.directoryObject",
	props: []string{"id", "displayName", "userPrincipalName", "accountEnabled", "appId", "isAssignableToRole",
		"mail", "userType", "servicePrincipalType", "securityEnabled", "groupTypes"},
	defaults:  []string{"displayName", "userPrincipalName", "accountEnabled", "appId", "isAssignableToRole"},
	directory: true,
}

// groupMembers serves GET /groups/{id}/members: the group's direct members
// at the clock's now — permanent ones ([Server.AddGroupMember]) and those
// an active PIM for Groups member instance makes members, as Entra adds
// them to the group while the instance lasts — in creation order, paged.
// An ID that is not a group answers 404 Request_ResourceNotFound.
func (s *Server) groupMembers(req *graphRequest, gid string) graphResponse {
	return s.related(req, &groupMembersEndpoint, kindGroup, gid, true, func(d *directory, g *dirObject, now time.Time) []string {
		members := map[string]bool{}
		for id := range g.members {
			members[id] = true
		}
		for _, x := range d.groups.active {
			if x.groupID == g.id && x.accessID == AccessMember && x.activeAt(now) {
				members[x.principalID] = true
			}
		}
		return inOrder(d, members)
	})
}

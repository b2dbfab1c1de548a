package graphtest

import (
	"fmt"
	"net/http"
	"strings"
	"time"
)

// The directory objects of the Graph half: users, service principals and
// groups, one at a time, listed, and the groups a principal belongs to.

var userEndpoint = endpoint{
	context:  "users",
	typeName: "microsoft.graph.user",
	props: []string{"id", "businessPhones", "displayName", "givenName", "jobTitle", "mail", "mobilePhone",
		"officeLocation", "preferredLanguage", "surname", "userPrincipalName", "accountEnabled", "userType",
		"createdDateTime", "lastPasswordChangeDateTime", "signInSessionsValidFromDateTime"},
	defaults: []string{"businessPhones", "displayName", "givenName", "jobTitle", "mail", "mobilePhone",
		"officeLocation", "preferredLanguage", "surname", "userPrincipalName"},
	directory: true,
}

// userListEndpoint is GET /users, filterable on id and accountEnabled.
var userListEndpoint = withFilters(userEndpoint, map[string]filterKind{"id": filterGUID, "accountEnabled": filterBool})

var servicePrincipalEndpoint = endpoint{
	context:   "servicePrincipals",
	typeName:  "microsoft.graph.servicePrincipal",
	props:     []string{"id", "accountEnabled", "appId", "displayName", "servicePrincipalType"},
	directory: true,
}

// groupEndpoint is GET /groups, filterable on id and isAssignableToRole.
var groupEndpoint = endpoint{
	context:  "groups",
	typeName: "microsoft.graph.group",
	props: []string{"id", "description", "displayName", "groupTypes", "isAssignableToRole", "mailEnabled",
		"securityEnabled", "createdDateTime"},
	filterable: map[string]filterKind{"id": filterGUID, "isAssignableToRole": filterBool},
	directory:  true,
}

// memberOfEndpoint is .../transitiveMemberOf/microsoft.graph.group, which
// the emulator does not filter (Graph would, as an advanced query).
var memberOfEndpoint = withFilters(groupEndpoint, nil)

func withFilters(ep endpoint, f map[string]filterKind) endpoint {
	ep.filterable = f
	return ep
}

// objectEntity renders o. Callers hold s.dir.mu.
func objectEntity(o *dirObject) entity {
	switch o.kind {
	case kindUser:
		return entity{
			{"id", o.id},
			{"businessPhones", []string{}},
			{"displayName", o.displayName},
			{"givenName", nil},
			{"jobTitle", nil},
			{"mail", o.upn},
			{"mobilePhone", nil},
			{"officeLocation", nil},
			{"preferredLanguage", nil},
			{"surname", nil},
			{"userPrincipalName", o.upn},
			{"accountEnabled", o.accountEnabled},
			{"userType", "Member"},
			{"createdDateTime", jsonTime(o.created)},
			{"lastPasswordChangeDateTime", jsonTime(o.lastPasswordChange)},
			{"signInSessionsValidFromDateTime", jsonTime(o.sessionsValidFrom)},
		}
	case kindServicePrincipal:
		return entity{
			{"id", o.id},
			{"accountEnabled", o.accountEnabled},
			{"appId", o.appID},
			{"displayName", o.displayName},
			{"servicePrincipalType", "Application"},
		}
	case kindAdministrativeUnit:
		// As in Graph's List administrativeUnits sample; a null
		// visibility is public, a null membershipType assigned.
		return entity{
			{"id", o.id},
			{"deletedDateTime", nil},
			{"displayName", o.displayName},
			{"description", nil},
			{"membershipRule", nil},
			{"membershipType", nil},
			{"membershipRuleProcessingState", nil},
			{"visibility", nil},
		}
	}
	return entity{
		{"id", o.id},
		{"description", nil},
		{"displayName", o.displayName},
		{"groupTypes", []string{}},
		{"isAssignableToRole", o.roleAssignable},
		{"mailEnabled", false},
		{"securityEnabled", true},
		{"createdDateTime", jsonTime(o.created)},
	}
}

func (s *Server) resourceNotFound(req *graphRequest, id string) graphResponse {
	return s.graphError(req, http.StatusNotFound, "Request_ResourceNotFound",
		fmt.Sprintf("Resource '%s' does not exist or one of its queried reference-property objects are not present.", id))
}

// getObject serves GET /users/{id} and /servicePrincipals/{id}: the object
// id of kind, described by ep; a user's id may also be its
// userPrincipalName, as in Graph.
func (s *Server) getObject(req *graphRequest, ep *endpoint, kind objKind, id string) graphResponse {
	q, resp, ok := s.parseQuery(req, ep)
	if !ok {
		return resp
	}
	s.dir.mu.Lock()
	o, err := s.dir.need(id, kind)
	if err != nil && kind == kindUser && strings.Contains(id, "@") {
		// Graph also finds a user by its userPrincipalName.
		for _, other := range s.dir.objects {
			if other.kind == kindUser && strings.EqualFold(other.upn, id) {
				o, err = other, nil
			}
		}
	}
	var e entity
	if err == nil {
		e = objectEntity(o)
	}
	s.dir.mu.Unlock()
	if err != nil {
		return s.resourceNotFound(req, id)
	}
	return s.single(req, ep, q, e)
}

// listObjects serves GET /users, /groups and
// /directory/administrativeUnits: the objects of kind in
// creation order, rendered as the single-object GETs render them (users
// with their default properties unless $select says otherwise).
func (s *Server) listObjects(req *graphRequest, ep *endpoint, kind objKind) graphResponse {
	q, resp, ok := s.parseQuery(req, ep)
	if !ok {
		return resp
	}
	s.dir.mu.Lock()
	var items []entity
	for _, id := range s.dir.order {
		if o := s.dir.objects[id]; o.kind == kind {
			items = append(items, objectEntity(o))
		}
	}
	s.dir.mu.Unlock()
	return s.collection(req, ep, q, items)
}

// memberOf serves GET /users/{id}/transitiveMemberOf/microsoft.graph.group
// (and /servicePrincipals/...): the groups the object id of kind belongs to
// at now, directly, through nesting or through PIM for Groups, in creation
// order. cast may also be graph.group, the namespace alias the Go SDK
// sends.
func (s *Server) memberOf(req *graphRequest, kind objKind, id, cast string) graphResponse {
	if c := strings.ToLower(cast); c != "microsoft.graph.group" && c != "graph.group" {
		return s.segmentNotFound(req, cast)
	}
	return s.related(req, &memberOfEndpoint, kind, id, false, func(d *directory, o *dirObject, now time.Time) []string {
		return inOrder(d, d.transitiveGroups(o.id, now))
	})
}

// related serves ep, a collection of the directory objects that ids
// names for the object id of kind at the clock's now (ids runs under
// s.dir.mu), in the order ids gives them, paged; typed starts each with
// its @odata.type, as a collection of several types carries it. An ID
// that names no object of kind answers 404 Request_ResourceNotFound.
func (s *Server) related(req *graphRequest, ep *endpoint, kind objKind, id string, typed bool, ids func(d *directory, o *dirObject, now time.Time) []string) graphResponse {
	q, resp, ok := s.parseQuery(req, ep)
	if !ok {
		return resp
	}
	now := s.clock.Now()
	d := &s.dir
	d.mu.Lock()
	o, err := d.need(id, kind)
	var items []entity
	if err == nil {
		for _, rid := range ids(d, o, now) {
			r := d.objects[rid]
			if typed {
				items = append(items, append(entity{{"@odata.type", "#microsoft.graph." + r.kind.String()}}, objectEntity(r)...))
			} else {
				items = append(items, objectEntity(r))
			}
		}
	}
	d.mu.Unlock()
	if err != nil {
		return s.resourceNotFound(req, id)
	}
	return s.collection(req, ep, q, items)
}

package graphtest

import ()

// Administrative units: objects of the directory whose members (users and
// groups) a role assignment scoped to "/administrativeUnits/{id}" covers.

// adminUnitEndpoint is GET /directory/administrativeUnits, filterable on
// id.
var adminUnitEndpoint = endpoint{
	context:  "directory/administrativeUnits",
	typeName: "microsoft.graph.administrativeUnit",
	props: []string{"id", "deletedDateTime", "displayName", "description", "membershipRule", "membershipType",
		"membershipRuleProcessingState", "visibility"},
	filterable: map[string]filterKind{"id": filterGUID},
	directory:  true,
}

// memberOfAdminUnitEndpoint is .../memberOf/microsoft.graph.administrativeUnit.
var memberOfAdminUnitEndpoint = func() endpoint {
	ep := withFilters(adminUnitEndpoint, nil)
	ep.context = "administrativeUnits"
	return ep
}()

// AddAdministrativeUnit adds an administrative unit with the given object
// ID (a GUID) and display name. Its members are added with
// [Server.AddAdministrativeUnitMember]. A role assigned at scope
// "/administrativeUnits/{id}" ([Server.AssignRole]) need not name an
// existing unit: the emulator does not check scopes against units. Dynamic
// membership rules, hidden membership and restricted management are not
// modelled.
func (s *Server) AddAdministrativeUnit(auID, displayName string) error {
	return s.addObject(&dirObject{id: auID, kind: kindAdministrativeUnit, displayName: displayName, members: map[string]bool{}})
}

// AddAdministrativeUnitMember makes memberID (a user or a group) a member
// of the administrative unit auID. Membership is direct: the members of a
// group in a unit are not members of the unit. It wraps [ErrNotFound] for
// an unknown unit or member (or a service principal, which Entra does not
// put in units) and [ErrConflict] for a member the unit already has.
func (s *Server) AddAdministrativeUnitMember(auID, memberID string) error {
	return s.addMember(auID, kindAdministrativeUnit, memberID, []objKind{kindUser, kindGroup}, nil)
}

// RemoveAdministrativeUnitMember removes a member added by
// [Server.AddAdministrativeUnitMember]; it wraps [ErrNotActive] when
// memberID is not a member.
func (s *Server) RemoveAdministrativeUnitMember(auID, memberID string) error {
	return s.removeMember(auID, kindAdministrativeUnit, memberID)
}

// adminUnitsOf returns the IDs of the administrative units the object id
// (lower case) is a direct member of, in creation order. Callers hold
// d.mu.
func (d *directory) adminUnitsOf(id string) []string {
	var out []string
	for _, oid := range d.order {
		if o := d.objects[oid]; o.kind == kindAdministrativeUnit && o.members[id] {
			out = append(out, oid)
		}
	}
	return out
}

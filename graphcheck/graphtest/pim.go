package graphtest

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
)

// PIM for directory roles and for groups: what each kind validates, how it
// names and renders its instances, and the exported seeding methods, thin
// wrappers around the lifecycle in schedule.go.

// Object IDs of a few built-in Microsoft Entra roles. A built-in role's
// definition ID equals its template ID in every tenant, so these are the
// roleDefinitionId values Graph reports. The emulator accepts any GUID as a
// role definition; these are conveniences.
const (
	// RoleGlobalAdministrator is the Global Administrator role.
	RoleGlobalAdministrator = "62e90394-69f5-4237-9190-012177145e10"
	// RolePrivilegedRoleAdministrator is the Privileged Role Administrator role.
	RolePrivilegedRoleAdministrator = "e8611ab8-c189-46e8-94e1-60213ab1f814"
	// RoleSecurityAdministrator is the Security Administrator role.
	RoleSecurityAdministrator = "194ae4cb-b126-40b2-bd5b-6091b380977d"
	// RoleUserAdministrator is the User Administrator role.
	RoleUserAdministrator = "fe930be7-5e62-47db-91af-98c3a49a38b1"
	// RoleGroupsAdministrator is the Groups Administrator role.
	RoleGroupsAdministrator = "fdd7a751-b60b-444a-984c-02652fe8fa1c"
	// RoleGlobalReader is the Global Reader role.
	RoleGlobalReader = "f2ef992c-3afb-46b9-b7cf-a126ee74c451"
)

// Values of accessId in PIM for Groups, for [Server.AssignGroup] and friends.
const (
	// AccessMember is membership of the group; an active member instance
	// makes the principal a member for as long as it lasts.
	AccessMember = "member"
	// AccessOwner is ownership of the group. Ownership is reported by the
	// PIM for Groups endpoint but grants nothing else in the emulator.
	AccessOwner = "owner"
)

// ---- directory roles ----

var roleKind = pimKind{
	valid: validRole,
	norm:  normRole,
	ids: func(d *directory, g grant, typ string) (id, scheduleID, originID string) {
		id = d.roleInstanceID(g.roleDefinitionID, g.principalID)
		if typ == assigned {
			return id, id, id
		}
		return id, d.pseudoGUID(), id
	},
	endpoint:  &roleInstanceEndpoint,
	entity:    roleInstanceEntity,
	inherited: inheritedRoles,
}

func roleGrant(principalID, roleDefinitionID, scope string) grant {
	return grant{principalID: principalID, roleDefinitionID: roleDefinitionID, scope: scope}
}

// validRole checks a role's principal (a user, service principal or
// role-assignable group), definition and scope. Callers hold d.mu.
func validRole(d *directory, g grant, _ time.Time) (grant, error) {
	p, err := d.need(g.principalID, principalKinds...)
	if err != nil {
		return g, err
	}
	if err := checkGUID("role definition ID", g.roleDefinitionID); err != nil {
		return g, err
	}
	if g, err = normRole(g); err != nil {
		return g, err
	}
	if p.kind == kindGroup && !p.roleAssignable {
		return g, fmt.Errorf("%w: group %s is not role-assignable", ErrConflict, p.id)
	}
	return g, nil
}

func normRole(g grant) (grant, error) {
	var err error
	g.principalID, g.roleDefinitionID = strings.ToLower(g.principalID), strings.ToLower(g.roleDefinitionID)
	g.scope, err = normScope(g.scope)
	return g, err
}

// normScope validates a directoryScopeId: "/" or /administrativeUnits/{guid}.
func normScope(scope string) (string, error) {
	if scope == "" || scope == "/" {
		return "/", nil
	}
	if au, ok := strings.CutPrefix(scope, "/administrativeUnits/"); ok && graphcheck.IsGUID(au) {
		return "/administrativeUnits/" + strings.ToLower(au), nil
	}
	return "", fmt.Errorf("%w: scope %q is neither \"/\" nor /administrativeUnits/{id}", ErrInvalid, scope)
}

// roleInstanceID imitates Entra's instance IDs: the role and principal GUIDs
// in base64url (Microsoft byte order) and a counter.
func (d *directory) roleInstanceID(roleID, principalID string) string {
	key := guidB64(roleID) + guidB64(principalID)
	d.idCount[key]++
	return fmt.Sprintf("%s-%d", key, d.idCount[key])
}

func guidB64(g string) string {
	h := strings.ReplaceAll(g, "-", "")
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != 16 {
		return base64.RawURLEncoding.EncodeToString([]byte(g))
	}
	b[0], b[1], b[2], b[3] = b[3], b[2], b[1], b[0]
	b[4], b[5] = b[5], b[4]
	b[6], b[7] = b[7], b[6]
	return base64.RawURLEncoding.EncodeToString(b)
}

var roleInstanceEndpoint = endpoint{
	context:  "roleManagement/directory/roleAssignmentScheduleInstances",
	typeName: "microsoft.graph.unifiedRoleAssignmentScheduleInstance",
	props: []string{"id", "principalId", "roleDefinitionId", "directoryScopeId", "appScopeId", "startDateTime",
		"endDateTime", "assignmentType", "memberType", "roleAssignmentOriginId", "roleAssignmentScheduleId"},
	filterable: map[string]filterKind{"principalId": filterGUID, "roleDefinitionId": filterGUID},
}

// roleInstanceEntity renders a unifiedRoleAssignmentScheduleInstance.
// Callers hold s.dir.mu.
func roleInstanceEntity(x *schedule, memberType string) entity {
	return entity{
		{"id", x.id},
		{"principalId", x.principalID},
		{"roleDefinitionId", x.roleDefinitionID},
		{"directoryScopeId", x.scope},
		{"appScopeId", nil},
		{"startDateTime", jsonTime(x.start)},
		{"endDateTime", jsonTime(x.end)},
		{"assignmentType", x.assignmentType},
		{"memberType", memberType},
		{"roleAssignmentOriginId", x.originID},
		{"roleAssignmentScheduleId", x.scheduleID},
	}
}

// inheritedRoles returns, for each of principals, a memberType "Group"
// instance of every role instance in force that a role-assignable group it
// is a direct member of holds, ending when the role or the membership ends
// (see [Options.ExpandGroupRoleInstances]). Callers hold d.mu.
func inheritedRoles(d *directory, principals []string, now time.Time) []entity {
	var items []entity
	for _, p := range principals {
		direct := d.directGroups(p, now)
		for _, gid := range inOrder(d, direct) {
			if !d.objects[gid].roleAssignable {
				continue
			}
			for _, x := range d.roles.active {
				if x.principalID != gid || !x.activeAt(now) {
					continue
				}
				cp := *x
				cp.principalID = p
				cp.id = x.id + "-" + guidB64(p)
				if mEnd := direct[gid]; !mEnd.IsZero() && (cp.end.IsZero() || mEnd.Before(cp.end)) {
					cp.end = mEnd
				}
				items = append(items, roleInstanceEntity(&cp, "Group"))
			}
		}
	}
	return items
}

// AssignRole gives principalID (a user, service principal or role-assignable
// group) the directory role roleDefinitionID at scope ("/" or
// "/administrativeUnits/{id}") from start until end: an "Assigned" instance,
// as a permanent or time-bound active assignment in PIM. A zero start means
// "already in force" (startDateTime null); a zero end means permanent. It
// fails with [ErrConflict] while an earlier assignment of the same role at the
// same scope has not ended. Role definitions are not checked against a
// catalogue, and app scopes (appScopeId) are not modelled.
func (s *Server) AssignRole(principalID, roleDefinitionID, scope string, start, end time.Time) error {
	return s.assign(&s.dir.roles, roleGrant(principalID, roleDefinitionID, scope), start, end)
}

// RemoveRoleAssignment ends, at the clock's now, the "Assigned" instances of
// a role for a principal at a scope that have not ended yet. Activations are
// ended with [Server.DeactivateRole] instead.
func (s *Server) RemoveRoleAssignment(principalID, roleDefinitionID, scope string) error {
	return s.endInstances(&s.dir.roles, roleGrant(principalID, roleDefinitionID, scope), assigned)
}

// MakeEligible makes principalID eligible, from the clock's now until end
// (zero: permanently), to activate roleDefinitionID at scope with
// [Server.ActivateRole]. Eligibility grants nothing by itself, and the
// emulator does not serve eligibility instances. Activation policies
// (maximum duration, MFA, justification, approval) are not modelled.
func (s *Server) MakeEligible(principalID, roleDefinitionID, scope string, end time.Time) error {
	return s.makeEligible(&s.dir.roles, roleGrant(principalID, roleDefinitionID, scope), end)
}

// RemoveEligibility ends, at the clock's now, a principal's current
// eligibility for a role at a scope. An activation made from it keeps
// running until it ends or is deactivated.
func (s *Server) RemoveEligibility(principalID, roleDefinitionID, scope string) error {
	return s.endInstances(&s.dir.roles, roleGrant(principalID, roleDefinitionID, scope), eligible)
}

// ActivateRole activates an eligibility created by [Server.MakeEligible] for
// d, creating an "Activated" instance from the clock's now. The end is capped
// at the eligibility's end and returned. It fails with [ErrNotEligible]
// without a current eligibility and with [ErrConflict] if the role is
// already active for the principal at that scope (activated or assigned).
// Requests, approvals and policy limits are not modelled.
func (s *Server) ActivateRole(principalID, roleDefinitionID, scope string, d time.Duration) (end time.Time, err error) {
	return s.activate(&s.dir.roles, roleGrant(principalID, roleDefinitionID, scope), d)
}

// DeactivateRole ends, at the clock's now, an activation made with
// [Server.ActivateRole]. The eligibility stays.
func (s *Server) DeactivateRole(principalID, roleDefinitionID, scope string) error {
	return s.endInstances(&s.dir.roles, roleGrant(principalID, roleDefinitionID, scope), activated)
}

// ---- PIM for Groups ----

var groupKind = pimKind{
	valid: validGroup,
	norm:  normGroup,
	ids: func(d *directory, g grant, typ string) (id, scheduleID, originID string) {
		id = groupInstanceID(g, d.pseudoGUID())
		if typ == assigned {
			return id, id, ""
		}
		return id, groupInstanceID(g, d.pseudoGUID()), ""
	},
	endpoint: &groupInstanceEndpoint,
	entity:   groupInstanceEntity,
}

func groupGrant(gid, principalID, accessID string) grant {
	return grant{principalID: principalID, groupID: gid, accessID: accessID}
}

// validGroup checks a PIM for Groups target: a group, a principal and an
// accessId, and for membership that the principal may join the group.
// Callers hold d.mu.
func validGroup(d *directory, g grant, now time.Time) (grant, error) {
	grp, err := d.need(g.groupID, kindGroup)
	if err != nil {
		return g, err
	}
	p, err := d.need(g.principalID, principalKinds...)
	if err != nil {
		return g, err
	}
	if g, err = normGroup(g); err != nil {
		return g, err
	}
	if g.accessID == AccessMember {
		return g, d.canJoin(grp, p, now)
	}
	return g, nil
}

func normGroup(g grant) (grant, error) {
	var err error
	g.principalID, g.groupID = strings.ToLower(g.principalID), strings.ToLower(g.groupID)
	switch g.accessID = strings.ToLower(g.accessID); g.accessID {
	case AccessMember, AccessOwner:
	default:
		err = fmt.Errorf("%w: accessId %q is neither %q nor %q", ErrInvalid, g.accessID, AccessMember, AccessOwner)
	}
	return g, err
}

// groupInstanceID imitates Entra's PIM for Groups IDs:
// {groupId}_{accessId}_{guid}.
func groupInstanceID(g grant, guid string) string { return g.groupID + "_" + g.accessID + "_" + guid }

var groupInstanceEndpoint = endpoint{
	context:  "identityGovernance/privilegedAccess/group/assignmentScheduleInstances",
	typeName: "microsoft.graph.privilegedAccessGroupAssignmentScheduleInstance",
	props: []string{"id", "principalId", "startDateTime", "endDateTime", "assignmentType", "accessId", "groupId",
		"memberType", "assignmentScheduleId"},
	filterable:  map[string]filterKind{"principalId": filterGUID, "groupId": filterGUID},
	needsFilter: []string{"groupId", "principalId"},
}

// groupInstanceEntity renders a
// privilegedAccessGroupAssignmentScheduleInstance. Callers hold s.dir.mu.
func groupInstanceEntity(x *schedule, memberType string) entity {
	return entity{
		{"id", x.id},
		{"principalId", x.principalID},
		{"startDateTime", jsonTime(x.start)},
		{"endDateTime", jsonTime(x.end)},
		{"assignmentType", x.assignmentType},
		{"accessId", x.accessID},
		{"groupId", x.groupID},
		{"memberType", memberType},
		{"assignmentScheduleId", x.scheduleID},
	}
}

// AssignGroup gives principalID a PIM for Groups active assignment
// ("Assigned") of accessId ("member" or "owner") in group gid from start to
// end (zero start: already in force, reported as null; zero end: permanent).
// A member assignment makes the principal a member of the group while it is
// in force. It fails with [ErrConflict] while an earlier one has not ended.
func (s *Server) AssignGroup(gid, principalID, accessID string, start, end time.Time) error {
	return s.assign(&s.dir.groups, groupGrant(gid, principalID, accessID), start, end)
}

// RemoveGroupAssignment ends, at the clock's now, the "Assigned" PIM for
// Groups instances of accessId for a principal in a group.
func (s *Server) RemoveGroupAssignment(gid, principalID, accessID string) error {
	return s.endInstances(&s.dir.groups, groupGrant(gid, principalID, accessID), assigned)
}

// MakeGroupEligible makes principalID eligible, from the clock's now until
// end (zero: permanently), to activate accessId ("member" or "owner") in
// group gid with [Server.ActivateGroup]. Eligibility grants no membership.
func (s *Server) MakeGroupEligible(gid, principalID, accessID string, end time.Time) error {
	return s.makeEligible(&s.dir.groups, groupGrant(gid, principalID, accessID), end)
}

// ActivateGroup activates a PIM for Groups eligibility for d, creating an
// "Activated" instance from the clock's now whose end (returned) is capped
// at the eligibility's end. An activated member instance makes the principal
// a member of the group until it ends. Errors as for [Server.ActivateRole].
func (s *Server) ActivateGroup(gid, principalID, accessID string, d time.Duration) (end time.Time, err error) {
	return s.activate(&s.dir.groups, groupGrant(gid, principalID, accessID), d)
}

// DeactivateGroup ends, at the clock's now, an activation made with
// [Server.ActivateGroup]. The eligibility stays.
func (s *Server) DeactivateGroup(gid, principalID, accessID string) error {
	return s.endInstances(&s.dir.groups, groupGrant(gid, principalID, accessID), activated)
}

package graphtest

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
)

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
	// PIM for Groups endpoints but grants nothing else in the emulator.
	AccessOwner = "owner"
)

// Errors the directory and PIM seeding methods wrap; test them with
// [errors.Is].
var (
	// ErrInvalid reports a malformed argument: an ID that is not a GUID, a bad
	// scope or accessId, an end before the start, a non-positive duration.
	ErrInvalid = errors.New("graphtest: invalid argument")
	// ErrNotFound reports an unknown user, service principal or group.
	ErrNotFound = errors.New("graphtest: no such directory object")
	// ErrConflict reports something that already exists (an object ID, a
	// membership, an assignment or eligibility that has not ended) or that
	// Entra forbids (a group nested into a role-assignable group, a role
	// assigned to a group that is not role-assignable, a membership cycle).
	ErrConflict = errors.New("graphtest: conflict")
	// ErrNotEligible reports an activation without a current eligibility.
	ErrNotEligible = errors.New("graphtest: principal is not eligible")
	// ErrNotActive reports a deactivation or removal of something that is
	// not currently active.
	ErrNotActive = errors.New("graphtest: nothing active to end")
)

type objKind int

const (
	kindUser objKind = iota + 1
	kindServicePrincipal
	kindGroup
)

func (k objKind) String() string {
	switch k {
	case kindUser:
		return "user"
	case kindServicePrincipal:
		return "servicePrincipal"
	default:
		return "group"
	}
}

type dirObject struct {
	id                 string
	kind               objKind
	displayName        string
	upn                string // users
	appID              string // service principals
	accountEnabled     bool
	created            time.Time
	sessionsValidFrom  time.Time
	lastPasswordChange time.Time
	roleAssignable     bool            // groups
	members            map[string]bool // groups: permanent direct members
}

// schedule is one schedule instance: a directory-role assignment or
// eligibility, or a PIM for Groups assignment or eligibility.
type schedule struct {
	id, scheduleID, originID string
	principalID              string
	roleDefinitionID, scope  string // directory roles
	groupID, accessID        string // PIM for Groups
	assignmentType           string // "Assigned" or "Activated"; "" for eligibilities
	start, end               time.Time
	// startNull reports the start as null (a permanent assignment made
	// without a start time).
	startNull bool
}

// activeAt reports whether the instance is in force at now: started, and not
// yet ended.
func (sc *schedule) activeAt(now time.Time) bool {
	if !sc.start.IsZero() && sc.start.After(now) {
		return false
	}
	return sc.end.IsZero() || sc.end.After(now)
}

// notEnded reports whether the instance still matters at now (active or in
// the future).
func (sc *schedule) notEnded(now time.Time) bool { return sc.end.IsZero() || sc.end.After(now) }

type directory struct {
	mu            sync.Mutex
	objects       map[string]*dirObject
	order         []string // object IDs in creation order
	roleActive    []*schedule
	roleEligible  []*schedule
	groupActive   []*schedule
	groupEligible []*schedule
	risky         map[string]*riskRecord // Identity Protection, by user ID
	riskyOrder    []string               // user IDs in the order their records were created
	seq           uint64
	idCount       map[string]int
}

func (d *directory) init() {
	d.objects = map[string]*dirObject{}
	d.risky = map[string]*riskRecord{}
	d.idCount = map[string]int{}
}

// pseudoGUID returns a deterministic, random-looking version 4 GUID.
// Callers hold d.mu.
func (d *directory) pseudoGUID() string {
	d.seq++
	sum := sha256.Sum256(fmt.Appendf(nil, "graphtest-%d", d.seq))
	b := sum[:16]
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
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

func checkGUID(what, s string) error {
	if !graphcheck.IsGUID(s) {
		return fmt.Errorf("%w: %s %q is not a GUID", ErrInvalid, what, s)
	}
	return nil
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

func normAccess(access string) (string, error) {
	switch a := strings.ToLower(access); a {
	case AccessMember, AccessOwner:
		return a, nil
	}
	return "", fmt.Errorf("%w: accessId %q is neither %q nor %q", ErrInvalid, access, AccessMember, AccessOwner)
}

func (s *Server) addObject(o *dirObject) error {
	if err := checkGUID("object ID", o.id); err != nil {
		return err
	}
	o.id = strings.ToLower(o.id)
	now := s.clock.Now()
	o.created, o.sessionsValidFrom, o.lastPasswordChange = now, now, now
	d := &s.dir
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, dup := d.objects[o.id]; dup {
		return fmt.Errorf("%w: object %s already exists", ErrConflict, o.id)
	}
	if o.kind == kindUser {
		for _, other := range d.objects {
			if other.kind == kindUser && strings.EqualFold(other.upn, o.upn) {
				return fmt.Errorf("%w: userPrincipalName %s already in use", ErrConflict, o.upn)
			}
		}
	}
	d.objects[o.id] = o
	d.order = append(d.order, o.id)
	return nil
}

// AddUser adds an enabled member user with the given object ID (a GUID) and
// userPrincipalName, whose sign-in sessions and password date from the
// clock's now. It models no licences, guests, managers or other attributes.
func (s *Server) AddUser(oid, upn string) error {
	if upn == "" {
		return fmt.Errorf("%w: empty userPrincipalName", ErrInvalid)
	}
	name, _, _ := strings.Cut(upn, "@")
	return s.addObject(&dirObject{id: oid, kind: kindUser, displayName: name, upn: upn, accountEnabled: true})
}

// AddServicePrincipal adds an enabled service principal (an application's
// identity in the tenant) with the given object ID. Its appId is a made-up
// GUID; app roles and owners are not modelled.
func (s *Server) AddServicePrincipal(oid, displayName string) error {
	s.dir.mu.Lock()
	appID := s.dir.pseudoGUID()
	s.dir.mu.Unlock()
	return s.addObject(&dirObject{id: oid, kind: kindServicePrincipal, displayName: displayName, appID: appID, accountEnabled: true})
}

// AddGroup adds a security group. A role-assignable group
// (isAssignableToRole) may hold directory roles and, as in Entra, cannot have
// groups as members. Dynamic membership, Microsoft 365 groups and owners
// outside PIM for Groups are not modelled.
func (s *Server) AddGroup(gid, displayName string, roleAssignable bool) error {
	return s.addObject(&dirObject{id: gid, kind: kindGroup, displayName: displayName, roleAssignable: roleAssignable, members: map[string]bool{}})
}

// lookup returns the object with the given ID (case-insensitive). Callers
// hold d.mu.
func (d *directory) lookup(id string) *dirObject { return d.objects[strings.ToLower(id)] }

func (d *directory) need(id string, kinds ...objKind) (*dirObject, error) {
	o := d.lookup(id)
	if o == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if len(kinds) > 0 {
		for _, k := range kinds {
			if o.kind == k {
				return o, nil
			}
		}
		return nil, fmt.Errorf("%w: %s is a %s", ErrNotFound, id, o.kind)
	}
	return o, nil
}

// canJoin checks that member may become a member of group g (permanently or
// through PIM for Groups). Callers hold d.mu.
func (d *directory) canJoin(g, member *dirObject, now time.Time) error {
	if member.kind != kindGroup {
		return nil
	}
	if g.roleAssignable {
		return fmt.Errorf("%w: a group cannot be a member of role-assignable group %s", ErrConflict, g.id)
	}
	if member.id == g.id || d.transitiveGroups(g.id, now)[member.id] {
		return fmt.Errorf("%w: adding %s to %s would create a membership cycle", ErrConflict, member.id, g.id)
	}
	return nil
}

// AddGroupMember makes memberID (a user, service principal or group) a
// permanent direct member of group gid. Groups nest, except into
// role-assignable groups, and cycles are refused. The membership is plain
// directory membership: it does not appear in the PIM for Groups endpoints
// (use [Server.AssignGroup] for that).
func (s *Server) AddGroupMember(gid, memberID string) error {
	d := &s.dir
	d.mu.Lock()
	defer d.mu.Unlock()
	g, err := d.need(gid, kindGroup)
	if err != nil {
		return err
	}
	m, err := d.need(memberID)
	if err != nil {
		return err
	}
	if g.members[m.id] {
		return fmt.Errorf("%w: %s is already a member of %s", ErrConflict, m.id, g.id)
	}
	if err := d.canJoin(g, m, s.clock.Now()); err != nil {
		return err
	}
	g.members[m.id] = true
	return nil
}

// RemoveGroupMember ends a permanent membership added by
// [Server.AddGroupMember]. It does not touch PIM for Groups instances.
func (s *Server) RemoveGroupMember(gid, memberID string) error {
	d := &s.dir
	d.mu.Lock()
	defer d.mu.Unlock()
	g, err := d.need(gid, kindGroup)
	if err != nil {
		return err
	}
	id := strings.ToLower(memberID)
	if !g.members[id] {
		return fmt.Errorf("%w: %s is not a permanent member of %s", ErrNotActive, memberID, gid)
	}
	delete(g.members, id)
	return nil
}

// updateObject calls f with the object oid of kind, under the directory's
// lock (f may read and write s.dir), or returns need's error.
func (s *Server) updateObject(oid string, kind objKind, f func(*dirObject)) error {
	d := &s.dir
	d.mu.Lock()
	defer d.mu.Unlock()
	o, err := d.need(oid, kind)
	if err != nil {
		return err
	}
	f(o)
	return nil
}

// SetAccountEnabled sets a user's accountEnabled. Disabling a user changes
// nothing but that property: tokens and role assignments stay as they are.
func (s *Server) SetAccountEnabled(oid string, enabled bool) error {
	return s.updateObject(oid, kindUser, func(u *dirObject) { u.accountEnabled = enabled })
}

// RevokeSignInSessions sets a user's signInSessionsValidFromDateTime to the
// clock's now, as POST /users/{id}/revokeSignInSessions does. It revokes no
// token by itself: verifiers must compare that property with a token's iat.
func (s *Server) RevokeSignInSessions(oid string) error {
	now := s.clock.Now()
	return s.updateObject(oid, kindUser, func(u *dirObject) { u.sessionsValidFrom = now })
}

// ChangePassword sets a user's lastPasswordChangeDateTime to the clock's
// now. It does not revoke sessions (Entra does for a user-initiated change;
// call [Server.RevokeSignInSessions] as well to model that).
func (s *Server) ChangePassword(oid string) error {
	now := s.clock.Now()
	return s.updateObject(oid, kindUser, func(u *dirObject) { u.lastPasswordChange = now })
}

// SetServicePrincipalEnabled sets a service principal's accountEnabled, as
// PATCH /servicePrincipals/{id} does. It changes nothing but that property:
// [Server.Mint] still signs tokens for it and its roles stay. An unknown ID,
// or the ID of a user or group, wraps [ErrNotFound].
func (s *Server) SetServicePrincipalEnabled(oid string, enabled bool) error {
	return s.updateObject(oid, kindServicePrincipal, func(sp *dirObject) { sp.accountEnabled = enabled })
}

// DeleteUser removes a user, as DELETE /users/{id} does, except that
// nothing goes to a recycle bin (directory/deletedItems and restoring are
// not modelled). Afterwards the ID is unknown like any other:
// /users/{id}, /directoryObjects/{id}, /me for its tokens, its memberOf and
// transitiveMemberOf and its revokeSignInSessions answer 404
// Request_ResourceNotFound, and the seeding methods wrap [ErrNotFound]. Its
// permanent group memberships and every PIM instance naming it as principal
// (role and PIM for Groups assignments, activations and eligibilities) are
// removed rather than ended: they appear in no answer, whatever the clock
// says, and a user added later with the same ID starts with none. Its
// riskyUser record, if any, stays with isDeleted true (see
// [Server.SetUserRisk]). Tokens already minted for it still verify: the
// token half knows nothing of the directory. An unknown ID, or the ID of a
// service principal or group, wraps [ErrNotFound].
func (s *Server) DeleteUser(oid string) error { return s.deleteObject(oid, kindUser) }

// DeleteServicePrincipal removes a service principal as [Server.DeleteUser]
// removes a user: GET /servicePrincipals/{id} and /directoryObjects/{id}
// answer 404 Request_ResourceNotFound, and its group memberships and PIM
// instances are gone. An unknown ID, or the ID of a user or group, wraps
// [ErrNotFound].
func (s *Server) DeleteServicePrincipal(oid string) error {
	return s.deleteObject(oid, kindServicePrincipal)
}

func (s *Server) deleteObject(oid string, kind objKind) error {
	d := &s.dir
	d.mu.Lock()
	defer d.mu.Unlock()
	o, err := d.need(oid, kind)
	if err != nil {
		return err
	}
	delete(d.objects, o.id)
	d.order = slices.DeleteFunc(d.order, func(id string) bool { return id == o.id })
	for _, g := range d.objects {
		if g.kind == kindGroup {
			delete(g.members, o.id)
		}
	}
	held := func(x *schedule) bool { return x.principalID == o.id }
	d.roleActive = slices.DeleteFunc(d.roleActive, held)
	d.roleEligible = slices.DeleteFunc(d.roleEligible, held)
	d.groupActive = slices.DeleteFunc(d.groupActive, held)
	d.groupEligible = slices.DeleteFunc(d.groupEligible, held)
	return nil
}

// checkRoleArgs validates a role principal, role definition and scope.
// Callers hold d.mu.
func (d *directory) checkRoleArgs(principalID, roleID, scope string) (*dirObject, string, error) {
	p, err := d.need(principalID)
	if err != nil {
		return nil, "", err
	}
	if err := checkGUID("role definition ID", roleID); err != nil {
		return nil, "", err
	}
	sc, err := normScope(scope)
	if err != nil {
		return nil, "", err
	}
	if p.kind == kindGroup && !p.roleAssignable {
		return nil, "", fmt.Errorf("%w: group %s is not role-assignable", ErrConflict, p.id)
	}
	return p, sc, nil
}

func sameRole(sc *schedule, principalID, roleID, scope string) bool {
	return sc.principalID == principalID && sc.roleDefinitionID == roleID && sc.scope == scope
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
	d := &s.dir
	d.mu.Lock()
	defer d.mu.Unlock()
	p, sc, err := d.checkRoleArgs(principalID, roleDefinitionID, scope)
	if err != nil {
		return err
	}
	if !end.IsZero() && !start.IsZero() && !end.After(start) {
		return fmt.Errorf("%w: end %v is not after start %v", ErrInvalid, end, start)
	}
	role := strings.ToLower(roleDefinitionID)
	now := s.clock.Now()
	for _, x := range d.roleActive {
		if sameRole(x, p.id, role, sc) && x.assignmentType == "Assigned" && x.notEnded(now) {
			return fmt.Errorf("%w: %s already has role %s at %s", ErrConflict, p.id, role, sc)
		}
	}
	id := d.roleInstanceID(role, p.id)
	d.roleActive = append(d.roleActive, &schedule{
		id: id, scheduleID: id, originID: id,
		principalID: p.id, roleDefinitionID: role, scope: sc,
		assignmentType: "Assigned", start: start, startNull: start.IsZero(), end: end,
	})
	return nil
}

// RemoveRoleAssignment ends, at the clock's now, the "Assigned" instances of
// a role for a principal at a scope that have not ended yet. Activations are
// ended with [Server.DeactivateRole] instead.
func (s *Server) RemoveRoleAssignment(principalID, roleDefinitionID, scope string) error {
	return s.endRole(principalID, roleDefinitionID, scope, "Assigned")
}

// MakeEligible makes principalID eligible, from the clock's now until end
// (zero: permanently), to activate roleDefinitionID at scope with
// [Server.ActivateRole]. Eligibility grants nothing by itself. Activation
// policies (maximum duration, MFA, justification, approval) are not
// modelled.
func (s *Server) MakeEligible(principalID, roleDefinitionID, scope string, end time.Time) error {
	d := &s.dir
	d.mu.Lock()
	defer d.mu.Unlock()
	p, sc, err := d.checkRoleArgs(principalID, roleDefinitionID, scope)
	if err != nil {
		return err
	}
	now := s.clock.Now()
	if !end.IsZero() && !end.After(now) {
		return fmt.Errorf("%w: eligibility end %v is not after now %v", ErrInvalid, end, now)
	}
	role := strings.ToLower(roleDefinitionID)
	for _, x := range d.roleEligible {
		if sameRole(x, p.id, role, sc) && x.notEnded(now) {
			return fmt.Errorf("%w: %s is already eligible for role %s at %s", ErrConflict, p.id, role, sc)
		}
	}
	d.roleEligible = append(d.roleEligible, &schedule{
		id: d.roleInstanceID(role, p.id) + "-e", scheduleID: d.pseudoGUID(),
		principalID: p.id, roleDefinitionID: role, scope: sc, start: now, end: end,
	})
	return nil
}

// RemoveEligibility ends, at the clock's now, a principal's current
// eligibility for a role at a scope. An activation made from it keeps
// running until it ends or is deactivated.
func (s *Server) RemoveEligibility(principalID, roleDefinitionID, scope string) error {
	d := &s.dir
	d.mu.Lock()
	defer d.mu.Unlock()
	sc, err := normScope(scope)
	if err != nil {
		return err
	}
	now := s.clock.Now()
	ended := false
	for _, x := range d.roleEligible {
		if sameRole(x, strings.ToLower(principalID), strings.ToLower(roleDefinitionID), sc) && x.notEnded(now) {
			x.end, ended = now, true
		}
	}
	if !ended {
		return fmt.Errorf("%w: %s has no eligibility for %s at %s", ErrNotActive, principalID, roleDefinitionID, sc)
	}
	return nil
}

// ActivateRole activates an eligibility created by [Server.MakeEligible] for
// d, creating an "Activated" instance from the clock's now. The end is capped
// at the eligibility's end and returned. It fails with [ErrNotEligible]
// without a current eligibility and with [ErrConflict] if the role is
// already active for the principal at that scope (activated or assigned).
// Requests, approvals and policy limits are not modelled.
func (s *Server) ActivateRole(principalID, roleDefinitionID, scope string, d time.Duration) (end time.Time, err error) {
	dir := &s.dir
	dir.mu.Lock()
	defer dir.mu.Unlock()
	if d <= 0 {
		return time.Time{}, fmt.Errorf("%w: activation duration %v", ErrInvalid, d)
	}
	p, sc, err := dir.checkRoleArgs(principalID, roleDefinitionID, scope)
	if err != nil {
		return time.Time{}, err
	}
	role := strings.ToLower(roleDefinitionID)
	now := s.clock.Now()
	end, err = activationEnd(dir.roleEligible, dir.roleActive, now, d, func(x *schedule) bool { return sameRole(x, p.id, role, sc) })
	switch {
	case errors.Is(err, ErrNotEligible):
		return time.Time{}, fmt.Errorf("%w: %s for role %s at %s", ErrNotEligible, p.id, role, sc)
	case err != nil:
		return time.Time{}, fmt.Errorf("%w: role %s is already active for %s at %s", ErrConflict, role, p.id, sc)
	}
	id := dir.roleInstanceID(role, p.id)
	dir.roleActive = append(dir.roleActive, &schedule{
		id: id, scheduleID: dir.pseudoGUID(), originID: id,
		principalID: p.id, roleDefinitionID: role, scope: sc,
		assignmentType: "Activated", start: now, end: end,
	})
	return end, nil
}

// DeactivateRole ends, at the clock's now, an activation made with
// [Server.ActivateRole]. The eligibility stays.
func (s *Server) DeactivateRole(principalID, roleDefinitionID, scope string) error {
	return s.endRole(principalID, roleDefinitionID, scope, "Activated")
}

func (s *Server) endRole(principalID, roleID, scope, typ string) error {
	d := &s.dir
	d.mu.Lock()
	defer d.mu.Unlock()
	sc, err := normScope(scope)
	if err != nil {
		return err
	}
	pid, rid := strings.ToLower(principalID), strings.ToLower(roleID)
	ended := endSchedules(d.roleActive, s.clock.Now(), typ, func(x *schedule) bool { return sameRole(x, pid, rid, sc) })
	if !ended {
		return fmt.Errorf("%w: no %s instance of role %s for %s at %s", ErrNotActive, strings.ToLower(typ), roleID, principalID, sc)
	}
	return nil
}

// activationEnd is the PIM rule shared by role and group activation: an
// eligibility selected by match must be active at now and no matching
// instance may be active already (ErrNotEligible, ErrConflict otherwise);
// the activation lasts d, capped at the eligibility's end. Callers hold d.mu.
func activationEnd(eligible, active []*schedule, now time.Time, d time.Duration, match func(*schedule) bool) (time.Time, error) {
	var elig *schedule
	for _, x := range eligible {
		if match(x) && x.activeAt(now) {
			elig = x
		}
	}
	if elig == nil {
		return time.Time{}, ErrNotEligible
	}
	for _, x := range active {
		if match(x) && x.activeAt(now) {
			return time.Time{}, ErrConflict
		}
	}
	end := now.Add(d)
	if !elig.end.IsZero() && end.After(elig.end) {
		end = elig.end
	}
	return end, nil
}

// endSchedules ends at now every schedule of type typ that match selects
// and that has not ended, and reports whether there was one. Callers hold
// d.mu.
func endSchedules(list []*schedule, now time.Time, typ string, match func(*schedule) bool) bool {
	ended := false
	for _, x := range list {
		if match(x) && x.assignmentType == typ && x.notEnded(now) {
			x.end, ended = now, true
			if x.start.After(now) {
				x.start = now
			}
		}
	}
	return ended
}

// checkGroupArgs validates a PIM for Groups target. Callers hold d.mu.
func (d *directory) checkGroupArgs(gid, principalID, access string, now time.Time) (g, p *dirObject, acc string, err error) {
	if g, err = d.need(gid, kindGroup); err != nil {
		return
	}
	if p, err = d.need(principalID); err != nil {
		return
	}
	if acc, err = normAccess(access); err != nil {
		return
	}
	if acc == AccessMember {
		err = d.canJoin(g, p, now)
	}
	return
}

func sameGroup(sc *schedule, gid, principalID, access string) bool {
	return sc.groupID == gid && sc.principalID == principalID && sc.accessID == access
}

func groupInstanceID(gid, access, guid string) string { return gid + "_" + access + "_" + guid }

// AssignGroup gives principalID a PIM for Groups active assignment
// ("Assigned") of accessId ("member" or "owner") in group gid from start to
// end (zero start: already in force, reported as null; zero end: permanent).
// A member assignment makes the principal a member of the group while it is
// in force. It fails with [ErrConflict] while an earlier one has not ended.
func (s *Server) AssignGroup(gid, principalID, accessID string, start, end time.Time) error {
	d := &s.dir
	d.mu.Lock()
	defer d.mu.Unlock()
	now := s.clock.Now()
	g, p, acc, err := d.checkGroupArgs(gid, principalID, accessID, now)
	if err != nil {
		return err
	}
	if !end.IsZero() && !start.IsZero() && !end.After(start) {
		return fmt.Errorf("%w: end %v is not after start %v", ErrInvalid, end, start)
	}
	for _, x := range d.groupActive {
		if sameGroup(x, g.id, p.id, acc) && x.assignmentType == "Assigned" && x.notEnded(now) {
			return fmt.Errorf("%w: %s already has %s access to %s", ErrConflict, p.id, acc, g.id)
		}
	}
	id := groupInstanceID(g.id, acc, d.pseudoGUID())
	d.groupActive = append(d.groupActive, &schedule{
		id: id, scheduleID: id, principalID: p.id, groupID: g.id, accessID: acc,
		assignmentType: "Assigned", start: start, startNull: start.IsZero(), end: end,
	})
	return nil
}

// RemoveGroupAssignment ends, at the clock's now, the "Assigned" PIM for
// Groups instances of accessId for a principal in a group.
func (s *Server) RemoveGroupAssignment(gid, principalID, accessID string) error {
	return s.endGroup(gid, principalID, accessID, "Assigned")
}

// MakeGroupEligible makes principalID eligible, from the clock's now until
// end (zero: permanently), to activate accessId ("member" or "owner") in
// group gid with [Server.ActivateGroup]. Eligibility grants no membership.
func (s *Server) MakeGroupEligible(gid, principalID, accessID string, end time.Time) error {
	d := &s.dir
	d.mu.Lock()
	defer d.mu.Unlock()
	now := s.clock.Now()
	g, p, acc, err := d.checkGroupArgs(gid, principalID, accessID, now)
	if err != nil {
		return err
	}
	if !end.IsZero() && !end.After(now) {
		return fmt.Errorf("%w: eligibility end %v is not after now %v", ErrInvalid, end, now)
	}
	for _, x := range d.groupEligible {
		if sameGroup(x, g.id, p.id, acc) && x.notEnded(now) {
			return fmt.Errorf("%w: %s is already eligible for %s of %s", ErrConflict, p.id, acc, g.id)
		}
	}
	d.groupEligible = append(d.groupEligible, &schedule{
		id:          groupInstanceID(g.id, acc, d.pseudoGUID()),
		scheduleID:  groupInstanceID(g.id, acc, d.pseudoGUID()),
		principalID: p.id, groupID: g.id, accessID: acc, start: now, end: end,
	})
	return nil
}

// ActivateGroup activates a PIM for Groups eligibility for d, creating an
// "Activated" instance from the clock's now whose end (returned) is capped
// at the eligibility's end. An activated member instance makes the principal
// a member of the group until it ends. Errors as for [Server.ActivateRole].
func (s *Server) ActivateGroup(gid, principalID, accessID string, d time.Duration) (end time.Time, err error) {
	dir := &s.dir
	dir.mu.Lock()
	defer dir.mu.Unlock()
	if d <= 0 {
		return time.Time{}, fmt.Errorf("%w: activation duration %v", ErrInvalid, d)
	}
	now := s.clock.Now()
	g, p, acc, err := dir.checkGroupArgs(gid, principalID, accessID, now)
	if err != nil {
		return time.Time{}, err
	}
	end, err = activationEnd(dir.groupEligible, dir.groupActive, now, d, func(x *schedule) bool { return sameGroup(x, g.id, p.id, acc) })
	switch {
	case errors.Is(err, ErrNotEligible):
		return time.Time{}, fmt.Errorf("%w: %s for %s of group %s", ErrNotEligible, p.id, acc, g.id)
	case err != nil:
		return time.Time{}, fmt.Errorf("%w: %s access to %s is already active for %s", ErrConflict, acc, g.id, p.id)
	}
	dir.groupActive = append(dir.groupActive, &schedule{
		id:          groupInstanceID(g.id, acc, dir.pseudoGUID()),
		scheduleID:  groupInstanceID(g.id, acc, dir.pseudoGUID()),
		principalID: p.id, groupID: g.id, accessID: acc,
		assignmentType: "Activated", start: now, end: end,
	})
	return end, nil
}

// DeactivateGroup ends, at the clock's now, an activation made with
// [Server.ActivateGroup]. The eligibility stays.
func (s *Server) DeactivateGroup(gid, principalID, accessID string) error {
	return s.endGroup(gid, principalID, accessID, "Activated")
}

func (s *Server) endGroup(gid, principalID, accessID, typ string) error {
	d := &s.dir
	d.mu.Lock()
	defer d.mu.Unlock()
	acc, err := normAccess(accessID)
	if err != nil {
		return err
	}
	g, pid := strings.ToLower(gid), strings.ToLower(principalID)
	ended := endSchedules(d.groupActive, s.clock.Now(), typ, func(x *schedule) bool { return sameGroup(x, g, pid, acc) })
	if !ended {
		return fmt.Errorf("%w: no %s %s instance for %s in %s", ErrNotActive, strings.ToLower(typ), acc, principalID, gid)
	}
	return nil
}

// directGroups returns the groups id is a direct member of at now
// (permanently or through an active PIM for Groups member instance), with
// the time each membership ends (zero: no end). Callers hold d.mu.
func (d *directory) directGroups(id string, now time.Time) map[string]time.Time {
	out := map[string]time.Time{}
	for _, gid := range d.order {
		if g := d.objects[gid]; g.kind == kindGroup && g.members[id] {
			out[gid] = time.Time{}
		}
	}
	for _, x := range d.groupActive {
		if x.principalID != id || x.accessID != AccessMember || !x.activeAt(now) {
			continue
		}
		if end, ok := out[x.groupID]; ok && (end.IsZero() || (!x.end.IsZero() && !x.end.After(end))) {
			continue
		}
		out[x.groupID] = x.end
	}
	return out
}

// transitiveGroups returns the set of groups id belongs to at now, directly
// or through nesting. Callers hold d.mu.
func (d *directory) transitiveGroups(id string, now time.Time) map[string]bool {
	seen := map[string]bool{}
	queue := []string{id}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		for g := range d.directGroups(cur, now) {
			if !seen[g] {
				seen[g] = true
				queue = append(queue, g)
			}
		}
	}
	delete(seen, id)
	return seen
}

// groupsInOrder returns the IDs in set in creation order. Callers hold d.mu.
func (d *directory) groupsInOrder(set map[string]bool) []string {
	var out []string
	for _, id := range d.order {
		if set[id] {
			out = append(out, id)
		}
	}
	return out
}

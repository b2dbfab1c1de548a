package graphtest

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
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
	kindAdministrativeUnit
)

// principalKinds are the kinds that may be members of groups and hold
// roles: everything but administrative units.
var principalKinds = []objKind{kindUser, kindServicePrincipal, kindGroup}

func (k objKind) String() string {
	switch k {
	case kindUser:
		return "user"
	case kindServicePrincipal:
		return "servicePrincipal"
	case kindAdministrativeUnit:
		return "administrativeUnit"
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
	members            map[string]bool // groups and administrative units: permanent direct members
	seq                uint64          // creation number: the order of d.order
}

type directory struct {
	mu         sync.Mutex
	objects    map[string]*dirObject
	order      []string               // object IDs in creation order
	groupOrder []string               // group IDs in creation order (groups are never deleted)
	created    uint64                 // objects ever inserted: the next one's seq
	roles      pimSchedules           // directory roles
	groups     pimSchedules           // PIM for Groups
	risky      map[string]*riskRecord // Identity Protection, by user ID
	riskyOrder []string               // user IDs in the order their records were created
	seq        uint64
	idCount    map[string]int
}

func (d *directory) init() {
	d.objects = map[string]*dirObject{}
	d.risky = map[string]*riskRecord{}
	d.idCount = map[string]int{}
	d.roles.kind, d.groups.kind = &roleKind, &groupKind
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

func checkGUID(what, s string) error {
	if !graphcheck.IsGUID(s) {
		return fmt.Errorf("%w: %s %q is not a GUID", ErrInvalid, what, s)
	}
	return nil
}

func (s *Server) addObject(o *dirObject) error {
	if err := checkGUID("object ID", o.id); err != nil {
		return err
	}
	o.id = strings.ToLower(o.id)
	now := s.clock.Now()
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
	d.insert(o, now)
	return nil
}

// insert adds o, whose ID is new, to the directory, created (its sign-in
// sessions and password too) at now. Callers hold d.mu.
func (d *directory) insert(o *dirObject, now time.Time) {
	o.created, o.sessionsValidFrom, o.lastPasswordChange = now, now, now
	d.created++
	o.seq = d.created
	d.objects[o.id] = o
	d.order = append(d.order, o.id)
	if o.kind == kindGroup {
		d.groupOrder = append(d.groupOrder, o.id)
	}
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
// directory membership: it does not appear in the PIM for Groups endpoint
// (use [Server.AssignGroup] for that), but it counts, directly and through
// nesting, in transitiveMemberOf and checkMemberGroups, as an active PIM
// for Groups member assignment does while it lasts.
func (s *Server) AddGroupMember(gid, memberID string) error {
	return s.addMember(gid, kindGroup, memberID, principalKinds, func(d *directory, g, m *dirObject) error {
		return d.canJoin(g, m, s.clock.Now())
	})
}

// RemoveGroupMember ends a permanent membership added by
// [Server.AddGroupMember]. It does not touch PIM for Groups instances.
func (s *Server) RemoveGroupMember(gid, memberID string) error {
	return s.removeMember(gid, kindGroup, memberID)
}

// addMember makes memberID, an object of one of memberKinds, a direct
// member of the object id of kind (a group or an administrative unit),
// after check, if any, allows it.
func (s *Server) addMember(id string, kind objKind, memberID string, memberKinds []objKind, check func(d *directory, o, m *dirObject) error) error {
	return s.updateObject(id, kind, func(d *directory, o *dirObject) error {
		m, err := d.need(memberID, memberKinds...)
		if err != nil {
			return err
		}
		if o.members[m.id] {
			return fmt.Errorf("%w: %s is already a member of %s", ErrConflict, m.id, o.id)
		}
		if check != nil {
			if err := check(d, o, m); err != nil {
				return err
			}
		}
		o.members[m.id] = true
		return nil
	})
}

// removeMember ends the direct membership of memberID in the object id of
// kind.
func (s *Server) removeMember(id string, kind objKind, memberID string) error {
	return s.updateObject(id, kind, func(_ *directory, o *dirObject) error {
		mid := strings.ToLower(memberID)
		if !o.members[mid] {
			return fmt.Errorf("%w: %s is not a direct member of %s", ErrNotActive, memberID, id)
		}
		delete(o.members, mid)
		return nil
	})
}

// updateObject calls f with the directory and its object oid of kind, under
// the directory's lock, and returns f's error, or need's when there is no
// such object.
func (s *Server) updateObject(oid string, kind objKind, f func(d *directory, o *dirObject) error) error {
	d := &s.dir
	d.mu.Lock()
	defer d.mu.Unlock()
	o, err := d.need(oid, kind)
	if err != nil {
		return err
	}
	return f(d, o)
}

// setObject is updateObject for a change that cannot fail.
func (s *Server) setObject(oid string, kind objKind, set func(*dirObject)) error {
	return s.updateObject(oid, kind, func(_ *directory, o *dirObject) error {
		set(o)
		return nil
	})
}

// SetAccountEnabled sets a user's accountEnabled. Disabling a user changes
// nothing but that property: tokens and role assignments stay as they are.
func (s *Server) SetAccountEnabled(oid string, enabled bool) error {
	return s.setObject(oid, kindUser, func(u *dirObject) { u.accountEnabled = enabled })
}

// RevokeSignInSessions sets a user's signInSessionsValidFromDateTime to the
// clock's now, as Graph's POST /users/{id}/revokeSignInSessions does (the
// emulator does not serve that action). It revokes no token by itself:
// verifiers must compare that property with a token's iat.
func (s *Server) RevokeSignInSessions(oid string) error {
	now := s.clock.Now()
	return s.setObject(oid, kindUser, func(u *dirObject) { u.sessionsValidFrom = now })
}

// ChangePassword sets a user's lastPasswordChangeDateTime to the clock's
// now. It does not revoke sessions (Entra does for a user-initiated change;
// call [Server.RevokeSignInSessions] as well to model that).
func (s *Server) ChangePassword(oid string) error {
	now := s.clock.Now()
	return s.setObject(oid, kindUser, func(u *dirObject) { u.lastPasswordChange = now })
}

// SetServicePrincipalEnabled sets a service principal's accountEnabled, as
// PATCH /servicePrincipals/{id} does. It changes nothing but that property:
// [Server.Mint] still signs tokens for it and its roles stay. An unknown ID,
// or the ID of a user or group, wraps [ErrNotFound].
func (s *Server) SetServicePrincipalEnabled(oid string, enabled bool) error {
	return s.setObject(oid, kindServicePrincipal, func(sp *dirObject) { sp.accountEnabled = enabled })
}

// DeleteUser removes a user, as DELETE /users/{id} does, except that
// nothing goes to a recycle bin (directory/deletedItems and restoring are
// not modelled). Afterwards the ID is unknown like any other: /users/{id}
// and its transitiveMemberOf answer 404 Request_ResourceNotFound, and the
// seeding methods wrap [ErrNotFound]. Its
// permanent group and administrative unit memberships and every PIM instance naming it as principal
// (role and PIM for Groups assignments, activations and eligibilities) are
// removed rather than ended: they appear in no answer, whatever the clock
// says, and a user added later with the same ID starts with none. Its
// riskyUser record, if any, stays with isDeleted true (see
// [Server.SetUserRisk]). Tokens already minted for it still verify: the
// token half knows nothing of the directory. An unknown ID, or the ID of a
// service principal or group, wraps [ErrNotFound].
func (s *Server) DeleteUser(oid string) error { return s.deleteObject(oid, kindUser) }

// DeleteServicePrincipal removes a service principal as [Server.DeleteUser]
// removes a user: GET /servicePrincipals/{id} and its transitiveMemberOf
// answer 404 Request_ResourceNotFound, and its group memberships and PIM
// instances are gone. An unknown ID, or the ID of a user or group, wraps
// [ErrNotFound].
func (s *Server) DeleteServicePrincipal(oid string) error {
	return s.deleteObject(oid, kindServicePrincipal)
}

func (s *Server) deleteObject(oid string, kind objKind) error {
	return s.updateObject(oid, kind, func(d *directory, o *dirObject) error {
		delete(d.objects, o.id)
		d.order = slices.DeleteFunc(d.order, func(id string) bool { return id == o.id })
		for _, g := range d.objects {
			delete(g.members, o.id) // groups and administrative units
		}
		held := func(x *schedule) bool { return x.principalID == o.id }
		for _, ps := range []*pimSchedules{&d.roles, &d.groups} {
			ps.active = slices.DeleteFunc(ps.active, held)
			ps.eligible = slices.DeleteFunc(ps.eligible, held)
		}
		return nil
	})
}

// directGroups returns the groups id is a direct member of at now
// (permanently or through an active PIM for Groups member instance), with
// the time each membership ends (zero: no end). Callers hold d.mu.
func (d *directory) directGroups(id string, now time.Time) map[string]time.Time {
	out := map[string]time.Time{}
	for _, gid := range d.groupOrder {
		if g := d.objects[gid]; g.members[id] {
			out[gid] = time.Time{}
		}
	}
	for _, x := range d.groups.active {
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

// inOrder returns the IDs in set in creation order. Callers hold d.mu.
func inOrder[V any](d *directory, set map[string]V) []string {
	var out []string
	if len(set) > len(d.order)/8 {
		for _, id := range d.order {
			if _, ok := set[id]; ok {
				out = append(out, id)
			}
		}
		return out
	}
	// A few IDs of a large (generated) directory: sort them by their
	// creation number rather than walk every object.
	for id := range set {
		if _, ok := d.objects[id]; ok {
			out = append(out, id)
		}
	}
	slices.SortFunc(out, func(a, b string) int { return cmp.Compare(d.objects[a].seq, d.objects[b].seq) })
	return out
}

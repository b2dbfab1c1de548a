package graphtest

import (
	"fmt"
	"slices"
	"time"
)

// The PIM schedule lifecycle, written once for directory roles and PIM for
// Groups: assign, make eligible, activate within the eligibility, and end.
// A [pimKind] says what sets the two apart; the exported per-kind methods
// in pim.go are thin wrappers.

// Values of assignmentType. An eligibility instance has none.
const (
	assigned  = "Assigned"
	activated = "Activated"
	eligible  = ""
)

// grant is what a schedule instance gives its principal: a directory role
// at a scope, or an access (member or owner) to a group. The other kind's
// fields stay empty, so two instances grant the same thing exactly when
// their grants are equal.
type grant struct {
	principalID             string
	roleDefinitionID, scope string // directory roles
	groupID, accessID       string // PIM for Groups
}

func (g grant) String() string {
	if g.groupID != "" {
		return g.accessID + " access to group " + g.groupID
	}
	return "role " + g.roleDefinitionID + " at " + g.scope
}

// schedule is one schedule instance: an "Assigned" or "Activated"
// assignment instance, or an eligibility instance (which is never served,
// so it has no IDs).
type schedule struct {
	grant
	id, scheduleID, originID string
	assignmentType           string // assigned, activated or eligible
	// start is zero for an assignment made without a start time (reported
	// as null), end for a permanent one.
	start, end time.Time
}

// activeAt reports whether the instance is in force at now: started, and not
// yet ended.
func (sc *schedule) activeAt(now time.Time) bool {
	if !sc.start.IsZero() && sc.start.After(now) {
		return false
	}
	return sc.notEnded(now)
}

// notEnded reports whether the instance still matters at now (active or in
// the future).
func (sc *schedule) notEnded(now time.Time) bool { return sc.end.IsZero() || sc.end.After(now) }

// pimKind is what sets directory roles and PIM for Groups apart.
type pimKind struct {
	// valid normalises g for a new instance and checks that it may be
	// granted, wrapping [ErrNotFound], [ErrInvalid] or [ErrConflict].
	// Callers hold d.mu.
	valid func(d *directory, g grant, now time.Time) (grant, error)
	// norm normalises g to select existing instances; no object need
	// exist.
	norm func(g grant) (grant, error)
	// ids names a new assignment instance of type typ (assigned or
	// activated). Callers hold d.mu.
	ids func(d *directory, g grant, typ string) (id, scheduleID, originID string)
	// endpoint and entity serve the kind's assignmentScheduleInstances;
	// memberType is "Direct", or "Group" for an instance inherited.
	endpoint *endpoint
	entity   func(x *schedule, memberType string) entity
	// inherited, if set, returns the instances principals hold through
	// their groups, served when [Options.ExpandGroupRoleInstances] is set
	// and a $filter names them. Callers hold d.mu.
	inherited func(d *directory, principals []string, now time.Time) []entity
}

// pimSchedules is one kind's instances, each list in creation order.
// Callers hold directory.mu.
type pimSchedules struct {
	kind     *pimKind
	active   []*schedule // assigned and activated
	eligible []*schedule
}

// add records a new instance of g. Callers hold d.mu.
func (ps *pimSchedules) add(d *directory, g grant, typ string, start, end time.Time) {
	x := &schedule{grant: g, assignmentType: typ, start: start, end: end}
	if typ == eligible {
		ps.eligible = append(ps.eligible, x)
		return
	}
	x.id, x.scheduleID, x.originID = ps.kind.ids(d, g, typ)
	ps.active = append(ps.active, x)
}

// withGrant validates g for ps and calls f with the normalised grant and
// the clock's now, all under the directory's lock.
func (s *Server) withGrant(ps *pimSchedules, g grant, f func(d *directory, g grant, now time.Time) error) error {
	d := &s.dir
	d.mu.Lock()
	defer d.mu.Unlock()
	now := s.clock.Now()
	g, err := ps.kind.valid(d, g, now)
	if err != nil {
		return err
	}
	return f(d, g, now)
}

// assign adds an "Assigned" instance of g from start (zero: already in
// force) to end (zero: permanent), unless an earlier one has not ended.
func (s *Server) assign(ps *pimSchedules, g grant, start, end time.Time) error {
	return s.withGrant(ps, g, func(d *directory, g grant, now time.Time) error {
		if !end.IsZero() && !start.IsZero() && !end.After(start) {
			return fmt.Errorf("%w: end %v is not after start %v", ErrInvalid, end, start)
		}
		for _, x := range ps.active {
			if x.grant == g && x.assignmentType == assigned && x.notEnded(now) {
				return fmt.Errorf("%w: %s already has %s", ErrConflict, g.principalID, g)
			}
		}
		ps.add(d, g, assigned, start, end)
		return nil
	})
}

// makeEligible adds an eligibility for g from now until end (zero:
// permanent), unless one has not ended.
func (s *Server) makeEligible(ps *pimSchedules, g grant, end time.Time) error {
	return s.withGrant(ps, g, func(d *directory, g grant, now time.Time) error {
		if !end.IsZero() && !end.After(now) {
			return fmt.Errorf("%w: eligibility end %v is not after now %v", ErrInvalid, end, now)
		}
		for _, x := range ps.eligible {
			if x.grant == g && x.notEnded(now) {
				return fmt.Errorf("%w: %s is already eligible for %s", ErrConflict, g.principalID, g)
			}
		}
		ps.add(d, g, eligible, now, end)
		return nil
	})
}

// activate is PIM's activation: an eligibility for g must be in force at
// now ([ErrNotEligible]) and no instance of g may be ([ErrConflict]); the
// "Activated" instance lasts dur from now, capped at the eligibility's end,
// which it returns.
func (s *Server) activate(ps *pimSchedules, g grant, dur time.Duration) (end time.Time, err error) {
	if dur <= 0 {
		return time.Time{}, fmt.Errorf("%w: activation duration %v", ErrInvalid, dur)
	}
	err = s.withGrant(ps, g, func(d *directory, g grant, now time.Time) error {
		var elig *schedule
		for _, x := range ps.eligible {
			if x.grant == g && x.activeAt(now) {
				elig = x
			}
		}
		if elig == nil {
			return fmt.Errorf("%w: %s for %s", ErrNotEligible, g.principalID, g)
		}
		for _, x := range ps.active {
			if x.grant == g && x.activeAt(now) {
				return fmt.Errorf("%w: %s is already active for %s", ErrConflict, g, g.principalID)
			}
		}
		end = now.Add(dur)
		if !elig.end.IsZero() && end.After(elig.end) {
			end = elig.end
		}
		ps.add(d, g, activated, now, end)
		return nil
	})
	if err != nil {
		return time.Time{}, err
	}
	return end, nil
}

// endInstances ends at now the instances of g of type typ (assigned,
// activated or eligible) that have not ended, or wraps [ErrNotActive] if
// there is none. An instance that has not started yet never will: its
// start moves to now.
func (s *Server) endInstances(ps *pimSchedules, g grant, typ string) error {
	d := &s.dir
	d.mu.Lock()
	defer d.mu.Unlock()
	g, err := ps.kind.norm(g)
	if err != nil {
		return err
	}
	list := ps.active
	if typ == eligible {
		list = ps.eligible
	}
	now := s.clock.Now()
	ended := false
	for _, x := range list {
		if x.grant == g && x.assignmentType == typ && x.notEnded(now) {
			x.end, ended = now, true
			if x.start.After(now) {
				x.start = now
			}
		}
	}
	if !ended {
		what := map[string]string{assigned: "assignment", activated: "activation", eligible: "eligibility"}[typ]
		return fmt.Errorf("%w: %s has no %s for %s", ErrNotActive, g.principalID, what, g)
	}
	return nil
}

// instances serves GET on ps's assignmentScheduleInstances: the instances
// in force at now in creation order (then, with
// [Options.ExpandGroupRoleInstances], those a principalId $filter names
// inherit), as the query filters and pages them.
func (s *Server) instances(req *graphRequest, ps *pimSchedules) graphResponse {
	k := ps.kind
	q, resp, ok := s.parseQuery(req, k.endpoint)
	if !ok {
		return resp
	}
	s.mu.Lock()
	expand := s.expandGroupRole && k.inherited != nil
	s.mu.Unlock()
	now := s.clock.Now()
	d := &s.dir
	d.mu.Lock()
	// Instances a principalId or groupId clause leaves out are skipped
	// before they are rendered (the $filter would drop them anyway), so
	// that a filtered read of a large generated tenant costs what its
	// answer holds, not what the tenant holds.
	principals, byPrincipal := q.filter.values("principalId")
	groupIDs, byGroup := q.filter.values("groupId")
	var items []entity
	for _, x := range ps.active {
		switch {
		case !x.activeAt(now),
			byPrincipal && !slices.Contains(principals, x.principalID),
			byGroup && !slices.Contains(groupIDs, x.groupID):
			continue
		}
		items = append(items, k.entity(x, "Direct"))
	}
	if expand && byPrincipal {
		items = append(items, k.inherited(d, principals, now)...)
	}
	d.mu.Unlock()
	return s.collection(req, k.endpoint, q, items)
}

package msgraph

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/microsoftgraph/msgraph-sdk-go/groups"
	"github.com/microsoftgraph/msgraph-sdk-go/rolemanagement"
	"go.opentelemetry.io/otel/metric"

	"github.com/pimguard/pimguard/cache"
	"github.com/pimguard/pimguard/graphcheck"
)

// Defaults applied by [NewSnapshot] to the zero fields of a
// [SnapshotConfig].
const (
	// DefaultSweepInterval equals middleware's DefaultStateTTL: a snapshot
	// is at most as old as a cached state.
	DefaultSweepInterval = 30 * time.Second
	// DefaultSweepTimeout bounds one sweep, every page and retry included.
	DefaultSweepTimeout = 30 * time.Second
)

// NoRefreshAhead is the [SnapshotConfig.RefreshAhead] value that turns
// sweeps ahead of time off: a sweep then starts only when a Lookup finds
// the snapshot SweepInterval old, and that Lookup waits for it.
const NoRefreshAhead = -1

// SnapshotConfig configures a [Snapshot]. The zero value is valid; every
// zero field takes its default and [NewSnapshot] refuses negative
// durations (except RefreshAhead = [NoRefreshAhead]).
type SnapshotConfig struct {
	// SweepInterval is how old a tenant's snapshot may get before a Lookup
	// waits for a new sweep: the longest a deactivation or removal before
	// an assignment's end can go unseen by the snapshot. A Guard's state
	// cache adds its CacheTTL on top (a state built from a snapshot is
	// cached like any other), so choose SweepInterval + CacheTTL to be the
	// lag you accept, e.g. both 15 s for today's 30 s. Scheduled ends are
	// never late: every end time is kept. 0 means [DefaultSweepInterval].
	SweepInterval time.Duration

	// RefreshAhead starts a sweep in the background when a Lookup finds the
	// snapshot older than SweepInterval − RefreshAhead, answering from the
	// current one meanwhile, so that a busy tenant's requests never wait
	// for a sweep. A tenant without requests is not swept at all. 0 means
	// SweepInterval / 5; [NoRefreshAhead] turns it off.
	RefreshAhead time.Duration

	// MaxStale lets a snapshot answer for up to SweepInterval + MaxStale
	// while sweeps fail (a failed sweep keeps the previous complete
	// snapshot; a partial one is never served). Past that, or with no
	// snapshot at all, a Lookup fails with [graphcheck.ErrUnavailable]
	// (and [graphcheck.ErrOutage] when the sweep's failure is one), which a
	// Guard answers 503 pim_unavailable. 0 (the default) serves no
	// snapshot older than SweepInterval.
	MaxStale time.Duration

	// SweepTimeout bounds one sweep of a tenant, every page and retry
	// included; 0 means [DefaultSweepTimeout]. A Lookup waiting for a
	// sweep also stops at its own deadline.
	SweepTimeout time.Duration

	// Groups are PIM-for-Groups groups to read besides those a Guard
	// watches ([graphcheck.GroupWatcher]): list the groups of requirements
	// built per request for Guard.Check here, and every group the Guard
	// requires when a wrapper (graphcheck/breaker) stands between the
	// Guard and the Snapshot and hides WatchGroups. IDs must be GUIDs.
	Groups []string

	// Store, when set, shares snapshots between the replicas of a fleet
	// (redisstore implements it on Redis): a replica that needs a sweep
	// first reads the tenant's snapshot from the store, and sweeps only
	// when there is none young enough and it takes the tenant's sweep
	// lease; while another replica holds the lease it waits for that
	// replica's snapshot. Every replica still decides on its own copy,
	// answers its purges itself, and sweeps alone when the store cannot
	// be reached. The store authenticates the bytes: a snapshot grants
	// roles. nil: every replica sweeps for itself.
	Store graphcheck.SnapshotStore
}

// Snapshot is a [graphcheck.Source] that answers a principal's roles and
// PIM-for-Groups memberships from a tenant-wide snapshot instead of asking
// Graph per principal, so that Graph's cost does not grow with the number
// of callers. Create it with [NewSnapshot] over a [Source]; it is safe for
// concurrent use.
//
// A sweep of a tenant reads, with the Source's $batch, paging, retries,
// throttling pauses and error classification:
//
//	GET /roleManagement/directory/roleAssignmentScheduleInstances?$select=…&$top=999    every active role instance
//	GET /groups?$filter=isAssignableToRole eq true&$select=id&$top=999                  the role-assignable groups
//	GET /identityGovernance/privilegedAccess/group/assignmentScheduleInstances?$filter=groupId eq '{id}'
//	                                   for each watched group and each role-assignable group holding an active role
//	GET /groups/{id}/members?$select=id&$top=999                                        for each role-assignable group holding an active role
//
// in two passes of $batch requests (the members and instances of the
// groups that hold roles are known only after the first): for 2 000 role
// assignments, 40 role-assignable groups and 50 watched groups, 9 round
// trips carrying 134 sub-requests. It needs the permissions a Lookup
// needs, no more.
//
// A Lookup then costs no Graph request for what the snapshot holds: the
// principal's own role instances (tenant-wide and scoped), the roles of the
// role-assignable groups it is a member of (capped by its PIM-for-Groups
// membership, as [graphcheck.Combine] does for a Lookup), and its
// PIM-for-Groups instances in the groups read. Every end time is kept, so a
// scheduled end is denied at its endDateTime. What the snapshot cannot hold
// is still asked per principal, in one $batch as a Lookup does: the
// [graphcheck.Need] facts ([graphcheck.NeedAccount], [graphcheck.NeedRisk])
// and live membership ([graphcheck.Principal.CheckGroups], with the
// principal's PIM-for-Groups instances that [graphcheck.State.MemberOfGroup]
// needs).
//
// Differences from a Lookup: State.Groups holds instances of the groups
// read only (those watched, and role-assignable groups holding a role), not
// of every group; a principal the directory deleted gets an empty State
// (no role, so denied) rather than [graphcheck.ErrPrincipalNotFound],
// unless account facts are asked; and an assignment made or ended early is
// seen at the next sweep, not at the next Lookup.
//
// Purge makes the next Lookup of that principal read its state per
// principal (a Lookup of the Source) until a sweep that started after the
// purge replaces it; PurgeAll drops every snapshot, so that the next Lookup
// of each tenant waits for a full sweep. Neither serves anything read
// before it was called.
type Snapshot struct {
	src *Source
	cfg SnapshotConfig

	flight cache.Flight[*snapshot] // one sweep per tenant at a time

	mu      sync.Mutex
	watched map[string]bool      // lower-case group IDs whose PIM-for-Groups instances are read
	current map[string]*snapshot // the newest complete snapshot, by lower-case tenant ID
	// watchedVer counts the groups WatchGroups added to watched; a
	// snapshot that records the current count read every watched group.
	watchedVer uint64
	// epoch counts purges; a sweep records it when it starts. A snapshot
	// answers for a principal only if it started after the principal's
	// last purge (dirty) and after the last PurgeAll (minEpoch).
	epoch, minEpoch uint64
	purgedAllAt     time.Time               // Config.Now at the last PurgeAll, for shared snapshots
	dirty           map[string]purge        // Principal.Key → its last purge
	reread          map[string]*rereadState // Principal.Key → its state read per principal after the purge
	failing         map[string]bool         // tenants whose last sweep failed (one log line per outage)
	refreshing      map[string]bool         // tenants with a sweep started ahead of time running

	sweeps metric.Int64Counter // pimguard.snapshot.sweeps (snapshot_metrics.go)
}

// purge is when a principal was purged: the epoch it started, and the
// instant on Config.Now (shared snapshots swept elsewhere carry only that).
type purge struct {
	epoch uint64
	at    time.Time
}

// rereadState is a principal's roles and groups read per principal after a
// purge, with the epoch when that read started.
type rereadState struct {
	epoch uint64
	state *graphcheck.State // Account, Risk and MemberOf left out
}

var (
	_ graphcheck.Source         = (*Snapshot)(nil)
	_ graphcheck.Purger         = (*Snapshot)(nil)
	_ graphcheck.GroupWatcher   = (*Snapshot)(nil)
	_ graphcheck.Preflighter    = (*Snapshot)(nil)
	_ graphcheck.UserDirectory  = (*Snapshot)(nil)
	_ graphcheck.HealthReporter = (*Snapshot)(nil)
)

// NewSnapshot returns a Snapshot reading through src (its base URL,
// credential, limits, clock, logger and telemetry). It makes no network
// call: a tenant's first sweep runs when its first Lookup arrives. It
// returns an error wrapping [ErrInvalidConfig] for a configuration it
// refuses.
func NewSnapshot(src *Source, cfg SnapshotConfig) (*Snapshot, error) {
	if src == nil {
		return nil, fmt.Errorf("%w: NewSnapshot needs a Source", ErrInvalidConfig)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"SweepInterval", cfg.SweepInterval}, {"MaxStale", cfg.MaxStale}, {"SweepTimeout", cfg.SweepTimeout}} {
		if d.v < 0 {
			return nil, fmt.Errorf("%w: SnapshotConfig.%s is negative", ErrInvalidConfig, d.name)
		}
	}
	if cfg.RefreshAhead < NoRefreshAhead {
		return nil, fmt.Errorf("%w: SnapshotConfig.RefreshAhead is negative (use NoRefreshAhead to turn it off)", ErrInvalidConfig)
	}
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = DefaultSweepInterval
	}
	if cfg.SweepTimeout == 0 {
		cfg.SweepTimeout = DefaultSweepTimeout
	}
	switch {
	case cfg.RefreshAhead == NoRefreshAhead:
		cfg.RefreshAhead = 0
	case cfg.RefreshAhead == 0:
		cfg.RefreshAhead = cfg.SweepInterval / 5
	case cfg.RefreshAhead >= cfg.SweepInterval:
		return nil, fmt.Errorf("%w: SnapshotConfig.RefreshAhead (%v) is not shorter than SweepInterval (%v)", ErrInvalidConfig, cfg.RefreshAhead, cfg.SweepInterval)
	}
	sn := &Snapshot{src: src, cfg: cfg, watched: map[string]bool{}, current: map[string]*snapshot{},
		dirty: map[string]purge{}, reread: map[string]*rereadState{}, failing: map[string]bool{}, refreshing: map[string]bool{}}
	for _, id := range cfg.Groups {
		if !graphcheck.IsGUID(id) {
			return nil, fmt.Errorf("%w: SnapshotConfig.Groups: %.40q is not a GUID", ErrInvalidConfig, id)
		}
		sn.watched[strings.ToLower(id)] = true
	}
	sn.cfg.Groups = slices.Sorted(maps.Keys(sn.watched))
	if err := sn.initMetrics(); err != nil {
		return nil, err
	}
	return sn, nil
}

// WatchGroups adds groups whose PIM-for-Groups instances every later sweep
// reads (see [graphcheck.GroupWatcher]): a Guard calls it from Require.
// The current snapshots do not hold them: a group added while a tenant
// already has a snapshot makes the tenant's next Lookup wait for a sweep
// that reads it, so that no principal is told "not a member" of a group
// that was never read. IDs that are not GUIDs are ignored.
func (sn *Snapshot) WatchGroups(ids ...string) {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	for _, id := range ids {
		if id = strings.ToLower(id); graphcheck.IsGUID(id) && !sn.watched[id] {
			sn.watched[id] = true
			sn.watchedVer++
		}
	}
}

// snapshot is one tenant's PIM state as one complete sweep read it. It is
// never modified once published.
type snapshot struct {
	tenant    string
	fetchedAt time.Time // when the sweep sent its first request
	epoch     uint64    // Snapshot.epoch when the sweep started
	// own are the principals' own role instances, by lower-case object ID.
	own map[string][]packedRole
	// groupRoles are the role-assignable groups' role instances, by group.
	groupRoles map[string][]packedRole
	// memberships are the principals' PIM-for-Groups instances in the
	// groups read, by object ID.
	memberships map[string][]packedMembership
	// strs are the strings the packed instances name by index.
	strs []string
	// groupsOf are the role-assignable groups holding a role that each
	// principal is a member of, by object ID.
	groupsOf map[string][]string
	// read are the groups whose PIM-for-Groups instances were read.
	read map[string]bool
	// watchedVer is the Snapshot.watchedVer of the watched groups it is
	// known to have read: while it is current, read need not be checked.
	watchedVer uint64
	// roleInstances and groupInstances count what the sweep read.
	roleInstances, groupInstances int
}

// Lookup answers p's state from its tenant's snapshot, sweeping the tenant
// first when it has no snapshot younger than SweepInterval (a sweep that
// fails leaves Lookups to the previous snapshot for MaxStale, and
// otherwise fails them), and asks Graph per principal only for the facts
// a snapshot does not hold (see [Snapshot]). It validates p first. Errors
// wrap the sentinels of [Source.Lookup]; no failure yields a State.
func (sn *Snapshot) Lookup(ctx context.Context, p graphcheck.Principal) (*graphcheck.State, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	tenant, oid := strings.ToLower(p.TenantID), strings.ToLower(p.ObjectID)
	snap, err := sn.fresh(ctx, tenant)
	if err != nil {
		return nil, err
	}
	key := graphcheck.Principal{TenantID: tenant, ObjectID: oid}.Key()
	sn.mu.Lock()
	purged, rr, epoch := sn.dirty[key].epoch, sn.reread[key], sn.epoch
	sn.mu.Unlock()

	var base *graphcheck.State
	reread := false
	switch {
	case purged <= snap.epoch:
		base = snap.state(p, oid)
	case rr != nil && rr.epoch >= purged:
		base, reread = rr.state, true
	default:
		// Purged after this snapshot's sweep started: read the principal
		// itself, everything its Lookup asks included.
		st, err := sn.src.Lookup(ctx, p)
		if err != nil {
			return nil, err
		}
		kept := *st
		kept.Account, kept.Risk, kept.CheckedGroups, kept.MemberOf = nil, nil, nil, nil
		sn.mu.Lock()
		if cur := sn.reread[key]; cur == nil || cur.epoch < epoch {
			sn.reread[key] = &rereadState{epoch: epoch, state: &kept}
		}
		sn.mu.Unlock()
		return st, nil
	}
	if !p.Need.Has(graphcheck.NeedAccount) && !p.Need.Has(graphcheck.NeedRisk) && p.CheckGroups.Len() == 0 {
		return base, nil
	}
	extra, err := sn.src.lookup(ctx, p, false)
	if err != nil {
		return nil, err
	}
	st := *base
	st.Account, st.Risk = extra.Account, extra.Risk
	if p.CheckGroups.Len() > 0 {
		// The principal's instances in groups the snapshot did not read,
		// so that MemberOfGroup and NotAfter see every membership that may
		// have made it a member. A state read after a purge has them all.
		if !reread {
			st.Groups = slices.Clone(st.Groups)
			for _, m := range extra.Groups {
				if !snap.read[m.GroupID] {
					st.Groups = append(st.Groups, m)
				}
			}
		}
		st.CheckedGroups, st.MemberOf = extra.CheckedGroups, extra.MemberOf
	}
	return &st, nil
}

// state builds p's State from the snapshot, as graphcheck.Combine builds a
// Lookup's.
func (snap *snapshot) state(p graphcheck.Principal, oid string) *graphcheck.State {
	f := graphcheck.Facts{
		Principal: p,
		Own:       snap.roles(snap.own[oid]),
		FetchedAt: snap.fetchedAt,
	}
	if ms := snap.memberships[oid]; len(ms) > 0 {
		f.Memberships = make([]graphcheck.GroupMembership, len(ms))
		for i, m := range ms {
			f.Memberships[i] = graphcheck.GroupMembership{GroupID: snap.strs[m.group], AccessID: snap.strs[m.access],
				AssignmentType: snap.strs[m.typ], Window: m.window()}
		}
	}
	if gs := snap.groupsOf[oid]; len(gs) > 0 {
		f.Groups = make([]graphcheck.GroupRef, len(gs))
		f.GroupRoles = make(map[string][]graphcheck.RoleAssignment, len(gs))
		for i, g := range gs {
			f.Groups[i] = graphcheck.GroupRef{ID: g, IsAssignableToRole: true}
			f.GroupRoles[g] = snap.roles(snap.groupRoles[g])
		}
	}
	return graphcheck.Combine(f)
}

// packedWindow is a Window in Unix nanoseconds, noTime for a zero bound
// (parseTime refuses dates before 1970, so no bound is negative).
type packedWindow struct{ start, end int64 }

const noTime = -1

func pack(w graphcheck.Window) packedWindow {
	p := packedWindow{noTime, noTime}
	if !w.Start.IsZero() {
		p.start = w.Start.UnixNano()
	}
	if !w.End.IsZero() {
		p.end = w.End.UnixNano()
	}
	return p
}

func (p packedWindow) window() graphcheck.Window {
	var w graphcheck.Window
	if p.start != noTime {
		w.Start = time.Unix(0, p.start).UTC()
	}
	if p.end != noTime {
		w.End = time.Unix(0, p.end).UTC()
	}
	return w
}

// packedRole is a RoleAssignment as a snapshot keeps it: 32 bytes, its
// strings indexes into snapshot.strs. A snapshot holds thousands; a
// RoleAssignment is 128 bytes before its strings.
type packedRole struct {
	packedWindow
	role, scope, appScope, typ uint32
}

// packedMembership is a GroupMembership as a snapshot keeps it.
type packedMembership struct {
	packedWindow
	group, access, typ uint32
}

// roles unpacks role instances.
func (snap *snapshot) roles(ps []packedRole) []graphcheck.RoleAssignment {
	if len(ps) == 0 {
		return nil
	}
	out := make([]graphcheck.RoleAssignment, len(ps))
	for i, r := range ps {
		out[i] = graphcheck.RoleAssignment{RoleDefinitionID: snap.strs[r.role], DirectoryScopeID: snap.strs[r.scope],
			AppScopeID: snap.strs[r.appScope], AssignmentType: snap.strs[r.typ], Window: r.window()}
	}
	return out
}

// fresh returns the tenant's snapshot to answer from: the current one while
// it is younger than SweepInterval (starting a sweep in the background once
// it is older than SweepInterval − RefreshAhead), else a new one from a
// sweep this call starts or joins, else, when the sweep fails, the current
// one while it is younger than SweepInterval + MaxStale.
func (sn *Snapshot) fresh(ctx context.Context, tenant string) (*snapshot, error) {
	now := sn.src.cfg.Now()
	cur := sn.usable(tenant)
	if cur != nil {
		age := now.Sub(cur.fetchedAt)
		if age < sn.cfg.SweepInterval {
			if sn.cfg.RefreshAhead > 0 && age >= sn.cfg.SweepInterval-sn.cfg.RefreshAhead {
				sn.refreshAhead(ctx, tenant)
			}
			return cur, nil
		}
	}
	snap, err := sn.sweep(ctx, tenant)
	if err == nil {
		return snap, nil
	}
	if cur != nil && now.Sub(cur.fetchedAt) < sn.cfg.SweepInterval+sn.cfg.MaxStale && ctx.Err() == nil {
		return cur, nil
	}
	return nil, fmt.Errorf("msgraph: no PIM snapshot of tenant %s to answer from: %w", tenant, err)
}

// refreshAhead starts a sweep of the tenant in the background unless one
// this Snapshot started ahead of time is still running: one goroutine,
// however many requests arrive meanwhile. The sweep logs its own failure.
func (sn *Snapshot) refreshAhead(ctx context.Context, tenant string) {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	if sn.refreshing[tenant] {
		return
	}
	sn.refreshing[tenant] = true
	go func() {
		_, _ = sn.sweep(context.WithoutCancel(ctx), tenant)
		sn.mu.Lock()
		delete(sn.refreshing, tenant)
		sn.mu.Unlock()
	}()
}

// usable returns the tenant's current snapshot unless a PurgeAll or a
// newly watched group made it unusable.
func (sn *Snapshot) usable(tenant string) *snapshot {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	cur := sn.current[tenant]
	if cur == nil || cur.epoch < sn.minEpoch || (cur.watchedVer != sn.watchedVer && !cur.readAll(sn.watched)) {
		return nil
	}
	return cur
}

// readAll reports whether the snapshot read the PIM-for-Groups instances
// of every group in groups: one that did not must not tell a principal it
// is no member of a group it never read.
func (snap *snapshot) readAll(groups map[string]bool) bool {
	for g := range groups {
		if !snap.read[g] {
			return false
		}
	}
	return true
}

// sweep reads the tenant's snapshot in a sweep it starts or joins (one per
// tenant at a time, detached from ctx and bounded by SweepTimeout; ctx
// bounds only the wait) and publishes it, unless a PurgeAll came after the
// sweep started.
func (sn *Snapshot) sweep(ctx context.Context, tenant string) (*snapshot, error) {
	return sn.flight.Do(ctx, tenant, sn.cfg.SweepTimeout, func(ctx context.Context) (*snapshot, error) {
		share := func(*snapshot) {}
		if sn.cfg.Store != nil {
			var snap *snapshot
			if snap, share = sn.shared(ctx, tenant); snap != nil {
				sn.countSweep(ctx, "shared", nil)
				sn.mu.Lock()
				defer sn.mu.Unlock()
				sn.publish(snap)
				return snap, nil
			}
		}
		sn.mu.Lock()
		epoch, watchedVer, watched := sn.epoch, sn.watchedVer, slices.Sorted(maps.Keys(sn.watched))
		sn.mu.Unlock()
		snap, err := sn.read(withPace(ctx), tenant, watched)
		share(snap)
		sn.countSweep(ctx, "graph", err)
		sn.mu.Lock()
		defer sn.mu.Unlock()
		log := sn.src.cfg.Logger
		if err != nil {
			if !sn.failing[tenant] {
				log.WarnContext(ctx, "msgraph: PIM snapshot sweep failed; the previous snapshot stays", "tenant_id", tenant, "error", err.Error())
			}
			sn.failing[tenant] = true
			return nil, err
		}
		if sn.failing[tenant] {
			log.InfoContext(ctx, "msgraph: PIM snapshot sweep succeeded again", "tenant_id", tenant)
			delete(sn.failing, tenant)
		}
		snap.epoch, snap.watchedVer = epoch, watchedVer
		sn.publish(snap)
		log.DebugContext(ctx, "msgraph: PIM snapshot swept", "tenant_id", tenant,
			"role_instances", snap.roleInstances, "group_instances", snap.groupInstances, "principals", len(snap.own))
		return snap, nil
	})
}

// publish makes snap its tenant's current snapshot, unless a PurgeAll
// overtook its sweep (the callers that joined the sweep still get it) or a
// newer one is current, and forgets the purges it covers. Callers hold
// sn.mu.
func (sn *Snapshot) publish(snap *snapshot) {
	if snap.epoch < sn.minEpoch {
		return
	}
	tenant := snap.tenant
	if cur := sn.current[tenant]; cur == nil || !cur.fetchedAt.After(snap.fetchedAt) {
		sn.current[tenant] = snap
	}
	for k, d := range sn.dirty {
		if d.epoch <= snap.epoch && strings.HasPrefix(k, tenant+"/") {
			delete(sn.dirty, k)
			delete(sn.reread, k)
		}
	}
}

// snapRole is a role assignment schedule instance of the unfiltered
// listing: a roleInstance with its principal.
type snapRole struct {
	roleInstance
	PrincipalID *string `json:"principalId"`
}

// snapGroupInstance is a PIM-for-Groups instance of a listing by group.
type snapGroupInstance struct {
	groupInstance
	PrincipalID *string `json:"principalId"`
}

// read sweeps the tenant: every request of the sweep must succeed, or read
// returns an error and no snapshot.
func (sn *Snapshot) read(ctx context.Context, tenant string, watched []string) (*snapshot, error) {
	s := sn.src
	in := &interner{index: map[string]uint32{}}
	snap := &snapshot{tenant: tenant, own: map[string][]packedRole{}, groupRoles: map[string][]packedRole{},
		memberships: map[string][]packedMembership{}, groupsOf: map[string][]string{}, read: map[string]bool{}}
	snap.fetchedAt = s.cfg.Now()

	// Pass 1: every role instance, the role-assignable groups, and the
	// watched groups' PIM-for-Groups instances.
	type held struct {
		principal string
		a         packedRole
	}
	var roles []held
	top := int32(999)
	roleList, err := s.roleInstanceList(ctx, &rolemanagement.DirectoryRoleAssignmentScheduleInstancesRequestBuilderGetQueryParameters{
		Select: append([]string{"principalId"}, roleSelect...), Top: &top}, func(v json.RawMessage) error {
		var items []snapRole
		if err := json.Unmarshal(v, &items); err != nil {
			return err
		}
		for i := range items {
			if items[i].inherited() {
				continue // derived from the group's own instance, as in a Lookup
			}
			pid := strings.ToLower(deref(items[i].PrincipalID))
			if !graphcheck.IsGUID(pid) {
				return fmt.Errorf("%w: a role assignment instance has no GUID principalId (%.40q)", errShape, pid)
			}
			a, err := items[i].assignment()
			if err != nil {
				return err
			}
			roles = append(roles, held{pid, in.role(a)})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	cols := []*collection{roleList}
	assignable := map[string]bool{}
	groupList, err := s.assignableGroups(ctx, func(gid string) { assignable[gid] = true })
	if err != nil {
		return nil, err
	}
	cols = append(cols, groupList)
	for _, gid := range watched {
		c, err := sn.groupInstancesOf(ctx, gid, snap, in)
		if err != nil {
			return nil, err
		}
		cols = append(cols, c)
	}
	if err := s.fetch(ctx, tenant, cols); err != nil {
		return nil, err
	}
	for _, h := range roles {
		if assignable[h.principal] {
			snap.groupRoles[h.principal] = append(snap.groupRoles[h.principal], h.a)
		} else {
			snap.own[h.principal] = append(snap.own[h.principal], h.a)
		}
	}
	snap.roleInstances = len(roles)

	// Pass 2: the members and PIM-for-Groups instances of the
	// role-assignable groups that hold a role. A role-assignable group
	// cannot have groups as members, so its direct members are all the
	// principals its roles reach.
	holders := slices.Sorted(maps.Keys(snap.groupRoles))
	cols = nil
	for _, gid := range holders {
		gid := in.strs[in.idx(gid)]
		c, err := sn.members(ctx, gid, func(ids []string) {
			for _, id := range ids {
				snap.groupsOf[id] = append(snap.groupsOf[id], gid)
			}
		})
		if err != nil {
			return nil, err
		}
		cols = append(cols, c)
		if !snap.read[gid] {
			c, err := sn.groupInstancesOf(ctx, gid, snap, in)
			if err != nil {
				return nil, err
			}
			cols = append(cols, c)
		}
	}
	if err := s.fetch(ctx, tenant, cols); err != nil {
		return nil, err
	}
	// Exact-size copies: append's spare capacity would be a quarter of
	// the snapshot.
	for k, v := range snap.own {
		snap.own[k] = slices.Clone(v)
	}
	for k, v := range snap.memberships {
		snap.memberships[k] = slices.Clone(v)
	}
	for k, v := range snap.groupsOf {
		snap.groupsOf[k] = slices.Clone(v)
	}
	snap.strs = slices.Clip(in.strs)
	return snap, nil
}

// groupInstancesOf is the collection of group gid's PIM-for-Groups
// instances (Graph lists them by group or by principal only), added to
// snap.memberships by principal. It marks gid as read in snap.
func (sn *Snapshot) groupInstancesOf(ctx context.Context, gid string, snap *snapshot, in *interner) (*collection, error) {
	snap.read[gid] = true
	filter := "groupId eq '" + gid + "'" // a validated GUID
	return sn.src.groupInstanceList(ctx, filter, append([]string{"principalId"}, groupSelect...), func(v json.RawMessage) error {
		var items []snapGroupInstance
		if err := json.Unmarshal(v, &items); err != nil {
			return err
		}
		for i := range items {
			pid := strings.ToLower(deref(items[i].PrincipalID))
			if !graphcheck.IsGUID(pid) {
				return fmt.Errorf("%w: a PIM for Groups instance has no GUID principalId (%.40q)", errShape, pid)
			}
			m, err := items[i].membership()
			if err != nil {
				return err
			}
			if m.GroupID != gid {
				return fmt.Errorf("%w: asked for the instances of group %s, got one of %.40q", errShape, gid, m.GroupID)
			}
			snap.memberships[pid] = append(snap.memberships[pid], packedMembership{packedWindow: pack(m.Window),
				group: in.idx(m.GroupID), access: in.idx(m.AccessID), typ: in.idx(m.AssignmentType)})
			snap.groupInstances++
		}
		return nil
	})
}

// epGroupMembers is GET /groups/{id}/members, read for role-assignable
// groups holding a role.
var epGroupMembers = &endpoint{path: "/groups/{id}/members", permission: PermissionGroupMember}

// members is the collection of group gid's direct members' IDs (users and
// service principals; other objects are skipped).
func (sn *Snapshot) members(ctx context.Context, gid string, add func([]string)) (*collection, error) {
	s := sn.src
	top := int32(999)
	rel, err := s.relative(s.client.Groups().ByGroupId(gid).Members().ToGetRequestInformation(ctx,
		&groups.ItemMembersRequestBuilderGetRequestConfiguration{
			QueryParameters: &groups.ItemMembersRequestBuilderGetQueryParameters{Select: []string{"id"}, Top: &top},
		}))
	if err != nil {
		return nil, unavailable("building GET %s: %v", epGroupMembers.path, err)
	}
	return &collection{ep: epGroupMembers, next: rel, add: func(v json.RawMessage) error {
		ids, err := decodeIDs(v, "a group member", "microsoft.graph.user", "microsoft.graph.servicePrincipal")
		if err == nil {
			add(ids)
		}
		return err
	}}, nil
}

// interner numbers the strings that repeat across a snapshot's instances
// (role IDs, scopes, types, group IDs): each is kept once, in strs.
type interner struct {
	index map[string]uint32
	strs  []string
}

func (in *interner) idx(s string) uint32 {
	if i, ok := in.index[s]; ok {
		return i
	}
	i := uint32(len(in.strs))
	in.index[s] = i
	in.strs = append(in.strs, s)
	return i
}

func (in *interner) role(a graphcheck.RoleAssignment) packedRole {
	return packedRole{packedWindow: pack(a.Window), role: in.idx(a.RoleDefinitionID), scope: in.idx(a.DirectoryScopeID),
		appScope: in.idx(a.AppScopeID), typ: in.idx(a.AssignmentType)}
}

// Purge makes the next Lookup of the principal read its state per
// principal (one Lookup of the Source, whose own caches it purges too)
// instead of answering from a snapshot whose sweep started before the
// purge; the state read then answers until a sweep that started after the
// purge is published. It is safe for concurrent use.
func (sn *Snapshot) Purge(tenantID, objectID string) {
	sn.src.Purge(tenantID, objectID)
	key := graphcheck.Principal{TenantID: strings.ToLower(tenantID), ObjectID: strings.ToLower(objectID)}.Key()
	sn.mu.Lock()
	defer sn.mu.Unlock()
	sn.epoch++
	sn.dirty[key] = purge{epoch: sn.epoch, at: sn.src.cfg.Now()}
	delete(sn.reread, key)
}

// PurgeAll drops every snapshot and every state read after a purge, and
// the Source's caches: the next Lookup of each tenant waits for a full
// sweep that starts after the call (a sweep already running answers the
// Lookups waiting for it but is not kept). It is safe for concurrent use.
func (sn *Snapshot) PurgeAll() {
	sn.src.PurgeAll()
	sn.mu.Lock()
	sn.epoch++
	sn.minEpoch = sn.epoch
	sn.purgedAllAt = sn.src.cfg.Now()
	clear(sn.current)
	clear(sn.dirty)
	clear(sn.reread)
	sn.mu.Unlock()
	sn.flight.ForgetAll()
}

// Preflight checks the permissions of the Source's Lookups ([Source.Preflight]),
// which are those a sweep needs too.
func (sn *Snapshot) Preflight(ctx context.Context, need graphcheck.Need) error {
	return sn.src.Preflight(ctx, need)
}

// User reads a user and its administrative units through the Source
// ([Source.User]); the snapshot does not hold users.
func (sn *Snapshot) User(ctx context.Context, tenantID, userID string) (*graphcheck.DirectoryUser, error) {
	return sn.src.User(ctx, tenantID, userID)
}

// SnapshotInfo describes a tenant's current snapshot.
type SnapshotInfo struct {
	// FetchedAt is when its sweep sent its first request.
	FetchedAt time.Time
	// RoleInstances and GroupInstances are the active role assignment
	// instances and PIM-for-Groups instances it holds; Principals the
	// principals holding a role of their own.
	RoleInstances, GroupInstances, Principals int
	// Groups are the groups whose PIM-for-Groups instances it read.
	Groups int
}

// Info describes the tenant's current snapshot; ok is false when it has
// none.
func (sn *Snapshot) Info(tenantID string) (info SnapshotInfo, ok bool) {
	sn.mu.Lock()
	cur := sn.current[strings.ToLower(tenantID)]
	sn.mu.Unlock()
	if cur == nil {
		return info, false
	}
	return SnapshotInfo{FetchedAt: cur.fetchedAt, RoleInstances: cur.roleInstances, GroupInstances: cur.groupInstances,
		Principals: len(cur.own), Groups: len(cur.read)}, true
}

// Health reports one check per tenant swept, "snapshot/<tenant>": ready
// while its snapshot may answer (younger than SweepInterval + MaxStale),
// degraded while it is older than SweepInterval (sweeps failing, MaxStale
// serving), with its age and size. It makes no network call.
func (sn *Snapshot) Health() []graphcheck.HealthCheck {
	now := sn.src.cfg.Now()
	sn.mu.Lock()
	defer sn.mu.Unlock()
	var out []graphcheck.HealthCheck
	for _, tenant := range slices.Sorted(maps.Keys(sn.current)) {
		cur := sn.current[tenant]
		age := now.Sub(cur.fetchedAt)
		c := graphcheck.HealthCheck{Name: "snapshot/" + tenant, Since: cur.fetchedAt,
			Ready:    age < sn.cfg.SweepInterval+sn.cfg.MaxStale,
			Degraded: age >= sn.cfg.SweepInterval || sn.failing[tenant],
			Detail: fmt.Sprintf("%d role and %d PIM for Groups instances, swept %v ago",
				cur.roleInstances, cur.groupInstances, age.Truncate(time.Second))}
		if sn.failing[tenant] {
			c.Detail += "; the last sweep failed"
		}
		out = append(out, c)
	}
	return out
}

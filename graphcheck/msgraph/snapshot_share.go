package msgraph

import (
	"bytes"
	"context"
	"encoding/gob"
	"fmt"
	"time"
)

// Fleet mode of a Snapshot (SnapshotConfig.Store): a snapshot one replica
// swept, shared with the others through a graphcheck.SnapshotStore, which
// authenticates the bytes (redisstore seals them with the fleet key for the
// tenant's Redis key). The encoding below is this package's alone; its
// decoder still checks every index, so that even an authenticated but
// inconsistent value fails closed instead of panicking.

// wireSnapshot is a snapshot as it crosses to the store (encoding/gob).
type wireSnapshot struct {
	Version        int
	Tenant         string
	FetchedAt      time.Time
	Strs           []string
	Own            map[string][]wireRole
	GroupRoles     map[string][]wireRole
	Memberships    map[string][]wireMembership
	GroupsOf       map[string][]string
	Read           []string
	RoleInstances  int
	GroupInstances int
}

type wireRole struct {
	Start, End                  int64
	Role, Scope, AppScope, Type uint32
}

type wireMembership struct {
	Start, End          int64
	Group, Access, Type uint32
}

// wireVersion changes with wireSnapshot's meaning; a replica reads only
// its own version and sweeps itself otherwise.
const wireVersion = 1

func encodeSnapshot(snap *snapshot) ([]byte, error) {
	role := func(p packedRole) wireRole { return wireRole{p.start, p.end, p.role, p.scope, p.appScope, p.typ} }
	w := wireSnapshot{Version: wireVersion, Tenant: snap.tenant, FetchedAt: snap.fetchedAt, Strs: snap.strs,
		Own: convert(snap.own, role), GroupRoles: convert(snap.groupRoles, role),
		Memberships: convert(snap.memberships, func(m packedMembership) wireMembership {
			return wireMembership{m.start, m.end, m.group, m.access, m.typ}
		}),
		GroupsOf: snap.groupsOf, RoleInstances: snap.roleInstances, GroupInstances: snap.groupInstances}
	for g := range snap.read {
		w.Read = append(w.Read, g)
	}
	var b bytes.Buffer
	if err := gob.NewEncoder(&b).Encode(&w); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// decodeSnapshot reads a shared snapshot of tenant, refusing one of
// another tenant or version and any index out of range.
func decodeSnapshot(data []byte, tenant string) (*snapshot, error) {
	var w wireSnapshot
	if err := gob.NewDecoder(bytes.NewReader(data)).Decode(&w); err != nil {
		return nil, err
	}
	switch {
	case w.Version != wireVersion:
		return nil, fmt.Errorf("shared snapshot of version %d, not %d", w.Version, wireVersion)
	case w.Tenant != tenant:
		return nil, fmt.Errorf("shared snapshot of tenant %.40q, not %s", w.Tenant, tenant)
	}
	n := uint32(len(w.Strs))
	bad := false
	role := func(r wireRole) packedRole {
		bad = bad || r.Role >= n || r.Scope >= n || r.AppScope >= n || r.Type >= n
		return packedRole{packedWindow{r.Start, r.End}, r.Role, r.Scope, r.AppScope, r.Type}
	}
	snap := &snapshot{tenant: tenant, fetchedAt: w.FetchedAt, strs: w.Strs,
		own: convert(w.Own, role), groupRoles: convert(w.GroupRoles, role),
		memberships: convert(w.Memberships, func(m wireMembership) packedMembership {
			bad = bad || m.Group >= n || m.Access >= n || m.Type >= n
			return packedMembership{packedWindow{m.Start, m.End}, m.Group, m.Access, m.Type}
		}),
		groupsOf: w.GroupsOf, read: map[string]bool{}, roleInstances: w.RoleInstances, groupInstances: w.GroupInstances}
	for _, g := range w.Read {
		snap.read[g] = true
	}
	if snap.groupsOf == nil {
		snap.groupsOf = map[string][]string{}
	}
	if bad {
		return nil, fmt.Errorf("shared snapshot of tenant %s names a string it does not hold", tenant)
	}
	return snap, nil
}

// convert maps every element of m's slices through f, into a new map.
func convert[A, B any](m map[string][]A, f func(A) B) map[string][]B {
	out := make(map[string][]B, len(m))
	for k, v := range m {
		bs := make([]B, len(v))
		for i, a := range v {
			bs[i] = f(a)
		}
		out[k] = bs
	}
	return out
}

// Polling bounds of a replica waiting for the snapshot another is sweeping.
const (
	firstSharedPoll = 10 * time.Millisecond
	maxSharedPoll   = 250 * time.Millisecond
)

// shared is the fleet part of a sweep: it returns a snapshot another
// replica stored that this one may answer from, waiting for it while
// another replica holds the sweep lease; or, when this replica should
// sweep, nil and a function that stores what it swept (and releases the
// lease). A store that cannot be reached makes this replica sweep on its
// own, as without a store.
func (sn *Snapshot) shared(ctx context.Context, tenant string) (*snapshot, func(*snapshot)) {
	st := sn.cfg.Store
	log := sn.src.cfg.Logger
	poll := firstSharedPoll
	for {
		if snap := sn.fromStore(ctx, tenant); snap != nil {
			return snap, nil
		}
		release, ok, err := st.ClaimSweep(ctx, tenant, sn.cfg.SweepTimeout)
		switch {
		case err != nil:
			log.DebugContext(ctx, "msgraph: shared snapshot store unavailable; sweeping alone", "tenant_id", tenant, "error", err.Error())
			return nil, func(*snapshot) {}
		case ok:
			return nil, func(snap *snapshot) {
				defer release()
				if snap == nil {
					return
				}
				data, err := encodeSnapshot(snap)
				if err == nil {
					err = st.PutSnapshot(ctx, tenant, data, sn.cfg.SweepInterval+sn.cfg.MaxStale)
				}
				if err != nil {
					log.DebugContext(ctx, "msgraph: could not share the snapshot; the other replicas sweep alone", "tenant_id", tenant, "error", err.Error())
				}
			}
		}
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, func(*snapshot) {} // out of patience: sweep alone (the sweep then fails on ctx too)
		case <-t.C:
		}
		poll = min(2*poll, maxSharedPoll)
	}
}

// fromStore returns the tenant's shared snapshot when this replica may
// answer from it: young enough not to need a sweep yet (outside the
// refresh-ahead window), reading every group this replica watches, and
// swept after this replica's last PurgeAll; nil otherwise. Its epoch is
// set so that the principals purged here before it was swept are answered
// from it, and those purged since are not.
func (sn *Snapshot) fromStore(ctx context.Context, tenant string) *snapshot {
	data, err := sn.cfg.Store.GetSnapshot(ctx, tenant)
	if err != nil || data == nil {
		return nil
	}
	snap, err := decodeSnapshot(data, tenant)
	if err != nil {
		sn.src.cfg.Logger.WarnContext(ctx, "msgraph: ignored a shared snapshot", "tenant_id", tenant, "error", err.Error())
		return nil
	}
	if sn.src.cfg.Now().Sub(snap.fetchedAt) >= sn.cfg.SweepInterval-sn.cfg.RefreshAhead {
		return nil
	}
	sn.mu.Lock()
	defer sn.mu.Unlock()
	if !snap.readAll(sn.watched) {
		return nil
	}
	snap.watchedVer = sn.watchedVer
	if !sn.purgedAllAt.IsZero() && !snap.fetchedAt.After(sn.purgedAllAt) {
		return nil
	}
	snap.epoch = sn.minEpoch
	for _, d := range sn.dirty {
		if d.at.Before(snap.fetchedAt) {
			snap.epoch = max(snap.epoch, d.epoch)
		}
	}
	return snap
}

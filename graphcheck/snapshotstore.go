package graphcheck

import (
	"context"
	"time"
)

// SnapshotStore shares tenant-wide snapshots of PIM state between the
// replicas of a fleet, so that one replica sweeps a tenant at a time and
// the others read what it swept (graphcheck/msgraph's Snapshot with
// SnapshotConfig.Store; redisstore implements it on Redis). The bytes are
// the Snapshot's own encoding; the store authenticates them: a value that
// a holder of the fleet's key did not write for that tenant must never be
// returned, since a snapshot grants roles.
//
// An error means the store could not be reached: the caller then sweeps
// on its own, as a replica without a store does, never serves nothing or
// something unverified. Implementations must be safe for concurrent use
// and bound every call.
type SnapshotStore interface {
	// ClaimSweep tries to take the tenant's sweep lease for ttl. ok is true
	// when the caller holds it and should sweep, and release then gives it
	// back early (it expires after ttl anyway); ok is false while another
	// process holds it.
	ClaimSweep(ctx context.Context, tenantID string, ttl time.Duration) (release func(), ok bool, err error)
	// PutSnapshot stores data as the tenant's snapshot for ttl, sealed for
	// that tenant.
	PutSnapshot(ctx context.Context, tenantID string, data []byte, ttl time.Duration) error
	// GetSnapshot returns the tenant's snapshot, or nil when there is none,
	// it has expired, or it fails verification (which the store counts).
	GetSnapshot(ctx context.Context, tenantID string) ([]byte, error)
}

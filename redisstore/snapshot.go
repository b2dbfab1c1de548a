package redisstore

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pimguard/pimguard/cache"
	"github.com/pimguard/pimguard/graphcheck"
)

// Tenant-wide snapshots of PIM state (graphcheck/msgraph's Snapshot in
// fleet mode): one replica sweeps a tenant at a time, under a lease, and
// stores what it read; the others read it. A snapshot is sealed like every
// cache entry (envelope.go): HMAC under the fleet key over its Redis key,
// which names the tenant, so a snapshot forged without the key, edited or
// copied to another tenant's key is ignored and counted, never returned.

var _ graphcheck.SnapshotStore = (*Store)(nil)

// snapshotKey and sweepKey are the tenant's snapshot and sweep lease, at
// the fleet's epoch: an InvalidateAll (a Guard's PurgeAll) leaves every
// snapshot behind, as it leaves every cached state.
func (s *Store) snapshotKey(tenantID string) string {
	return s.cfg.Prefix + ":v1:snapshot:{" + strings.ToLower(tenantID) + "}:" + strconv.FormatUint(s.epoch.Load(), 10)
}

func (s *Store) sweepKey(tenantID string) string {
	return s.cfg.Prefix + ":v1:sweep:{" + strings.ToLower(tenantID) + "}:" + strconv.FormatUint(s.epoch.Load(), 10)
}

// ClaimSweep implements [graphcheck.SnapshotStore] with SET NX PX and a
// random token; release deletes the lease only while it is still this
// claim's.
func (s *Store) ClaimSweep(ctx context.Context, tenantID string, ttl time.Duration) (release func(), ok bool, err error) {
	if s.unflushed.Load() {
		return nil, false, ErrUnavailable // a purge is still to be replayed: sweep alone
	}
	key, token := s.sweepKey(tenantID), newToken()
	err = s.call(ctx, "sweep_claim", func(ctx context.Context) error {
		var err error
		ok, err = s.client.SetNX(ctx, key, token, max(ttl, time.Millisecond)).Result()
		return err
	})
	if err != nil || !ok {
		return nil, false, err
	}
	return func() { s.release(context.Background(), "sweep_release", key, token) }, true, nil
}

// PutSnapshot implements [graphcheck.SnapshotStore]: the sealed snapshot
// is kept for ttl.
func (s *Store) PutSnapshot(ctx context.Context, tenantID string, data []byte, ttl time.Duration) error {
	if ttl.Milliseconds() <= 0 {
		return nil
	}
	key := s.snapshotKey(tenantID)
	envelope := seal(s.cfg.Key, key, cache.SharedEntry{Data: data, Expires: s.cfg.Now().Add(ttl)})
	return s.call(ctx, "snapshot_put", func(ctx context.Context) error {
		return s.client.Set(ctx, key, envelope, ttl).Err()
	})
}

// GetSnapshot implements [graphcheck.SnapshotStore]: nil for no snapshot,
// an expired one, or one that fails verification (counted in
// pimguard.shared.rejected).
func (s *Store) GetSnapshot(ctx context.Context, tenantID string) ([]byte, error) {
	if s.unflushed.Load() {
		return nil, ErrUnavailable
	}
	key := s.snapshotKey(tenantID)
	var raw []byte
	err := s.call(ctx, "snapshot_get", func(ctx context.Context) error {
		var err error
		raw, err = s.client.Get(ctx, key).Bytes()
		if err == redis.Nil {
			raw = nil
		}
		return err
	})
	if err != nil || raw == nil {
		return nil, err
	}
	e, ok := open(s.keys, key, raw)
	if !ok {
		s.reject(key)
		return nil, nil
	}
	if !s.cfg.Now().Before(e.Expires) {
		return nil, nil
	}
	return e.Data, nil
}

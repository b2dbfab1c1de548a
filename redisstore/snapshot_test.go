package redisstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/pimguard/pimguard/redisstore"
)

const otherTenant = "0d3f0a52-6b1e-4c2a-9f4e-1a7b2c3d4e5f"

// A snapshot stored by one replica is read by another; the sweep lease is
// held by one claimant at a time until released; and a snapshot edited,
// forged without the key or copied to another tenant's key is never
// returned.
func TestSnapshotStore(t *testing.T) {
	f := newFleet(t, 2, fleetOptions{})
	f.waitConnected(t)
	a, b := f.replicas[0].store, f.replicas[1].store
	ctx := context.Background()

	if data, err := b.GetSnapshot(ctx, tenantID); data != nil || err != nil {
		t.Fatalf("before any sweep: %q, %v", data, err)
	}
	release, ok, err := a.ClaimSweep(ctx, tenantID, time.Minute)
	if !ok || err != nil {
		t.Fatalf("first claim: %v, %v", ok, err)
	}
	if _, ok, err := b.ClaimSweep(ctx, tenantID, time.Minute); ok || err != nil {
		t.Fatalf("second claim while the first holds the lease: %v, %v", ok, err)
	}
	if _, ok, err := b.ClaimSweep(ctx, otherTenant, time.Minute); !ok || err != nil {
		t.Fatalf("another tenant's lease: %v, %v", ok, err)
	}
	if err := a.PutSnapshot(ctx, tenantID, []byte("snapshot of the tenant"), time.Minute); err != nil {
		t.Fatal(err)
	}
	release()
	if r, ok, err := b.ClaimSweep(ctx, tenantID, time.Minute); !ok || err != nil {
		t.Fatalf("claim after release: %v, %v", ok, err)
	} else {
		r()
	}
	if data, err := b.GetSnapshot(ctx, tenantID); string(data) != "snapshot of the tenant" || err != nil {
		t.Fatalf("read by the other replica: %q, %v", data, err)
	}
	if data, _ := b.GetSnapshot(ctx, otherTenant); data != nil {
		t.Fatalf("another tenant: %q", data)
	}

	raw := rawClient(t, f)
	key := "pimguard:v1:snapshot:{" + tenantID + "}:0"
	otherKey := "pimguard:v1:snapshot:{" + otherTenant + "}:0"
	sealed, err := raw.Get(ctx, key).Bytes()
	if err != nil {
		t.Fatalf("the snapshot is not where expected: %v", err)
	}
	for _, tc := range []struct {
		name, key string
		value     []byte
		tenant    string
	}{
		{"copied to another tenant", otherKey, sealed, otherTenant},
		{"edited", key, append(append([]byte(nil), sealed[:12]...), append([]byte("X"), sealed[13:]...)...), tenantID},
		{"forged", key, []byte("\x01\x7f\xff\xff\xff\xff\xff\xff\xffgrant everyone Global Administrator" + string(make([]byte, 32))), tenantID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := raw.Set(ctx, tc.key, tc.value, time.Minute).Err(); err != nil {
				t.Fatal(err)
			}
			if data, err := b.GetSnapshot(ctx, tc.tenant); data != nil || err != nil {
				t.Errorf("GetSnapshot: %q, %v; want nothing", data, err)
			}
		})
	}
}

// With another key, a replica reads nothing another fleet stored.
func TestSnapshotStoreOtherKey(t *testing.T) {
	f := newFleet(t, 1, fleetOptions{})
	other := make([]byte, len(testKey))
	copy(other, testKey)
	other[0] ^= 1
	g := f.newReplica(t, fleetOptions{storeConfig: func(c *redisstore.Config) { c.Key = other }})
	f.replicas = append(f.replicas, g)
	f.waitConnected(t)
	ctx := context.Background()
	if err := f.replicas[0].store.PutSnapshot(ctx, tenantID, []byte("x"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if data, err := g.store.GetSnapshot(ctx, tenantID); data != nil || err != nil {
		t.Errorf("read with another key: %q, %v", data, err)
	}
}

package redisstore_test

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pimguard/pimguard/cache"
	"github.com/pimguard/pimguard/internal/redistest"
	"github.com/pimguard/pimguard/redisstore"
)

// Regression tests from the review of fleet mode: a purge must never be
// undone by Redis, whatever the timing. Each failed on the first version.

type strCodec struct{}

func (strCodec) Encode(v string) ([]byte, error) { return []byte(v), nil }
func (strCodec) Decode(b []byte) (string, error) { return string(b), nil }

// blipHook fails every command while on: a network blip that a killed
// server cannot stand for (the server keeps its entries).
type blipHook struct{ on *atomic.Bool }

func (h blipHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h blipHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if h.on.Load() {
			err := &net.OpError{Op: "read", Err: errors.New("blip")}
			cmd.SetErr(err)
			return err
		}
		return next(ctx, cmd)
	}
}
func (h blipHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if h.on.Load() {
			err := &net.OpError{Op: "read", Err: errors.New("blip")}
			for _, c := range cmds {
				c.SetErr(err)
			}
			return err
		}
		return next(ctx, cmds)
	}
}

func waitConnected(t *testing.T, st *redisstore.Store, up bool) {
	t.Helper()
	for i := 0; i < 500 && st.Connected() != up; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if st.Connected() != up {
		t.Fatalf("Connected() != %v after 5s", up)
	}
}

func switchableCache(t *testing.T, st cache.Shared, state *atomic.Value) *cache.Cache[string, string] {
	t.Helper()
	c, err := cache.NewShared(cache.Config{TTL: time.Minute}, func(context.Context, string) (cache.Result[string], error) {
		return cache.Result[string]{Value: state.Load().(string)}, nil
	}, st, cache.Codec[string](strCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A purge made while Redis cannot be reached is replayed when it answers
// again, before anything is read from it.
func TestPurgeDuringABlipIsReplayed(t *testing.T) {
	srv := redistest.Start(t)
	var blip atomic.Bool
	cl := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	cl.AddHook(blipHook{&blip})
	t.Cleanup(func() { cl.Close() })
	st, err := redisstore.New(redisstore.Config{Client: cl, Key: testKey, ProbeInterval: 20 * time.Millisecond, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var state atomic.Value
	state.Store("active")
	c := switchableCache(t, st, &state)
	ctx := context.Background()
	waitConnected(t, st, true)
	if v, _, _ := c.Get(ctx, "k"); v != "active" {
		t.Fatalf("first Get = %q", v)
	}
	state.Store("revoked")
	blip.Store(true)
	c.Purge("k")
	if v, _, _ := c.Get(ctx, "k"); v != "revoked" {
		t.Fatalf("during the blip, Get = %q", v)
	}
	blip.Store(false)
	waitConnected(t, st, true)
	if v, info, _ := c.Get(ctx, "k"); v != "revoked" {
		t.Errorf("after the blip, Get = %q (source %v): the pre-purge state came back from Redis", v, info.Source)
	}
}

// A Purge on a replica that has not yet heard of another's PurgeAll still
// removes the entry at the fleet's new epoch; and a replica that learns
// of the new epoch by reading it drops its local copies.
func TestPurgeAtAStaleEpoch(t *testing.T) {
	srv := redistest.Start(t)
	newStore := func() *redisstore.Store {
		st, err := redisstore.New(redisstore.Config{URL: srv.URL(), Key: testKey, ProbeInterval: time.Hour, Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		waitConnected(t, st, true)
		return st
	}
	a, b := newStore(), newStore()
	var state atomic.Value
	state.Store("active")
	ca, cb := switchableCache(t, a, &state), switchableCache(t, b, &state)
	time.Sleep(50 * time.Millisecond) // both subscribed
	gate := make(chan struct{})
	var armed atomic.Bool
	armed.Store(true)
	b.Subscribe(func([]string) { // B's subscriber lags behind
		if armed.CompareAndSwap(true, false) {
			<-gate
		}
	})
	raw := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer raw.Close()
	ctx := context.Background()
	raw.Publish(ctx, "pimguard:v1:invalidate", "k\nunrelated") // parks B's subscriber
	time.Sleep(50 * time.Millisecond)
	ca.PurgeAll() // epoch 0 → 1; B has not heard
	time.Sleep(50 * time.Millisecond)
	if v, _, _ := ca.Get(ctx, "k"); v != "active" {
		t.Fatalf("Get = %q", v)
	}
	state.Store("revoked")
	cb.Purge("k")
	time.Sleep(50 * time.Millisecond)
	close(gate)
	time.Sleep(50 * time.Millisecond)
	if v, info, _ := ca.Get(ctx, "k"); v != "revoked" {
		t.Errorf("after B's Purge, A's Get = %q (source %v): the entry at the new epoch survived", v, info.Source)
	}
}
